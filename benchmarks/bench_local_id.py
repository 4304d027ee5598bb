"""LocalIDEstimator against scikit-dimension (and DADApy where installed).

One process, one point cloud: ``n`` points on a ``d``-dimensional linear
manifold (Gaussian latent, random orthonormal embedding in ``D``
dimensions) plus isotropic noise, the spec's anchor (specs/local_id.md §8.1:
10 000 × 384, d = 10, noise 0.01, L = 100). Printed per run: seconds,
mean / median local ID (or the global estimate), the largest absolute
difference from scikit-dimension's estimate, peak resident memory above the
start of the run, and the speed-up over scikit-dimension.

Anchors are optional: a missing package is reported as missing, never
replaced by a number. DADApy 0.3.4 pins ``numpy < 2`` and so is not
installed next to this library; run it in its own environment.

    python benchmarks/bench_local_id.py [--n 10000] [--D 384] [--d 10] [--noise 0.01] [--k 100]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
import torch
from _common import add_quick_arguments, run_quick, timed

from sklearn_interp.manifold import LocalIDEstimator, intrinsic_dimension
from sklearn_interp.manifold._local_id import _nearest_neighbors


def make_cloud(n, D, d, noise, seed=0):
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((D, d)))
    return rng.standard_normal((n, d)) @ basis.T + noise * rng.standard_normal((n, D))



def quick(device):
    """The GPU check's workload: local IDs of 5,000 points near a 10-d subspace of R^64 (50 neighbours)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 10)) @ rng.standard_normal((10, 64)) + 0.01 * rng.standard_normal((5000, 64))
    return LocalIDEstimator(n_neighbors=50, device=device).fit(X).local_ids_


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--D", type=int, default=384)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--k", type=int, default=100, help="n_neighbors")
    add_quick_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        return run_quick(quick, args)
    X = make_cloud(args.n, args.D, args.d, args.noise)
    print(f"{args.n} points, D = {args.D}, {args.d}-dimensional manifold + noise {args.noise}, L = {args.k}\n")

    try:
        import skdim
    except ImportError:
        skdim = None
    try:
        import dadapy
    except ImportError:
        dadapy = None

    rows = []

    def add(run, kind, seconds, mib, estimate, anchor=None):
        estimate = np.atleast_1d(estimate)
        rows.append(
            {
                "run": run,
                "kind": kind,
                "seconds": seconds,
                "mean": float(np.mean(estimate)),
                "median": float(np.median(estimate)),
                "max |Δ| vs skdim": float(np.max(np.abs(estimate - anchor))) if anchor is not None else np.nan,
                "peak MiB": mib,
            }
        )

    # Local estimates. handle_duplicates="keep" computes exactly what
    # scikit-dimension computes (the cloud has no duplicates anyway).
    local = LocalIDEstimator(n_neighbors=args.k, handle_duplicates="keep", device="cpu")
    local_float32 = LocalIDEstimator(n_neighbors=args.k, handle_duplicates="keep", device="cpu", dtype="float32")
    anchor_local = anchor_global = None
    if skdim is not None:
        anchor_local, seconds, mib = timed(lambda: skdim.id.TwoNN().fit_pw(X, n_neighbors=args.k).dimension_pw_)
        add("skdim TwoNN().fit_pw (n_jobs=1)", "local", seconds, mib, anchor_local, anchor_local)
    fitted, seconds, mib = timed(lambda: local.fit(X))
    add("ours LocalIDEstimator, float64", "local", seconds, mib, fitted.local_ids_, anchor_local)
    fitted32, seconds, mib = timed(lambda: local_float32.fit(X))
    add("ours LocalIDEstimator, float32", "local", seconds, mib, fitted32.local_ids_, anchor_local)
    # Where the time goes: the exact k-NN graph alone (float64 distance
    # product and row-wise top-k); the rest of the fit is the estimate.
    centred = torch.from_numpy(X - X.mean(0))
    _, seconds, mib = timed(
        lambda: _nearest_neighbors(centred, centred, args.k, exclude_self=True, batch_size=local.batch_size)
    )
    add("  of which: k-NN graph, float64", "local", seconds, mib, np.nan)

    # Global estimates.
    if skdim is not None:
        anchor_global, seconds, mib = timed(lambda: skdim.id.TwoNN().fit(X).dimension_)
        add("skdim TwoNN().fit", "global", seconds, mib, anchor_global, anchor_global)
    value, seconds, mib = timed(lambda: intrinsic_dimension(X, device="cpu"))
    add("ours intrinsic_dimension", "global", seconds, mib, value, anchor_global)
    if dadapy is not None:

        def dadapy_twonn():
            data = dadapy.Data(X)
            data.compute_distances(maxk=args.k)
            return data.compute_id_2NN()[0]

        value, seconds, mib = timed(dadapy_twonn)
        add("DADApy compute_id_2NN", "global", seconds, mib, value, anchor_global)
    for n1 in (1, 4, 16):
        value, seconds, mib = timed(
            lambda n1=n1: intrinsic_dimension(X, estimator="gride", gride_n1=n1, device="cpu")
        )
        add(f"ours GRIDE n1={n1}", "global", seconds, mib, value)

    table = pd.DataFrame(rows)
    reference = {}
    if skdim is not None:
        reference = {kind: table.loc[(table.kind == kind) & table.run.str.startswith("skdim"), "seconds"].iloc[0] for kind in ("local", "global")}
    table["skdim time ÷ this"] = [
        reference[kind] / seconds if kind in reference else np.nan for kind, seconds in zip(table.kind, table.seconds)
    ]
    # A stage of a run is not a run: no ratio for it.
    table.loc[table.run.str.startswith("  of which"), "skdim time ÷ this"] = np.nan
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    missing = [name for name, module in (("scikit-dimension", skdim), ("dadapy", dadapy)) if module is None]
    if missing:
        print(f"\nmissing anchors (not installed, not run): {', '.join(missing)}")
    if "dadapy" in missing:
        print("DADApy 0.3.4 pins numpy<2 (and jax/flax); install it in its own environment to compare.")


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        main()
