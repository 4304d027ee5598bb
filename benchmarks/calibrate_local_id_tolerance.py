"""Sampling spread of the global TwoNN on noiseless linear subspaces.

Sets the tolerance of ``test_linear_subspaces_read_their_dimension``: for
each latent law (Gaussian, uniform cube) and dimension d, the relative
error |d̂ / d − 1| of ``intrinsic_dimension`` over many seeds, at the spec's
N = 600 and at the N = 2 000 the test draws. The test's bound is 0.25.

    python benchmarks/calibrate_local_id_tolerance.py [--seeds 1500] [--n 600 2000]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from sklearn_interp.manifold import intrinsic_dimension
from sklearn_interp.testing import _orthonormal_columns


def relative_errors(n_samples, dim, latent, seeds):
    errors = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        if latent == "gaussian":
            Z = rng.standard_normal((n_samples, dim))
        else:
            Z = rng.uniform(-1.0, 1.0, size=(n_samples, dim))
        X = Z @ _orthonormal_columns(rng, dim + 1, dim).T
        errors.append(abs(intrinsic_dimension(X, device="cpu") / dim - 1))
    return np.asarray(errors)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1500)
    parser.add_argument("--n", type=int, nargs="+", default=[600, 2000])
    args = parser.parse_args(argv)
    rows = []
    for n_samples in args.n:
        for latent in ("gaussian", "uniform"):
            for dim in (1, 2, 3):
                errors = relative_errors(n_samples, dim, latent, args.seeds)
                rows.append(
                    {
                        "N": n_samples,
                        "latent": latent,
                        "d": dim,
                        "median": np.median(errors),
                        "p99": np.quantile(errors, 0.99),
                        "p99.9": np.quantile(errors, 0.999),
                        "max": errors.max(),
                        "share > 0.25": np.mean(errors > 0.25),
                    }
                )
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
