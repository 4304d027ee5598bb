"""Measure the figures behind the floors of the slow tests in tests/test_ccm.py.

    python benchmarks/calibrate_ccm_floors.py [--seeds 0 1 2 3 4]

Runs the tests' own helpers on several seeds: the adjusted Rand index and
the sharpness (mean largest assignment probability) of the learned channel
clusters against the planted groups, equal groups at noise 0.3 and unequal
ones (2, 4, 6 channels) at noise 0.5; and the zero-shot MSE on unseen
fertility countries against the last value. The test floors sit below
every seed measured here.

    python benchmarks/calibrate_ccm_floors.py --report-thresholds [--seeds 0 1 2]

instead measures what ChannelClusterForecaster.cluster_report's thresholds
(normalised sharpness 0.5, separation 0.1) must tell apart: i.i.d. white
noise, i.i.d. random walks and macrodata (no planted structure) against
planted groups.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_ccm import _fertility_zero_shot, _recovery_experiment  # noqa: E402

from sklearn_interp.datasets import load_macrodata, make_channel_groups  # noqa: E402
from sklearn_interp.forecasting import ChannelClusterForecaster, make_windows  # noqa: E402


def report_thresholds(seeds):
    """The report's normalised sharpness and separation on data with and without channel groups."""
    for seed in seeds:
        rng = np.random.default_rng(seed)
        cases = [
            ("i.i.d. noise", rng.normal(size=(1000, 12)), 3, 96, 24),
            ("i.i.d. random walks", np.cumsum(rng.normal(size=(1000, 12)), axis=0), 3, 96, 24),
            ("planted groups", make_channel_groups(1000, 12, 3, drivers="mixed", random_state=seed)[0], 3, 96, 24),
            ("macrodata", load_macrodata().to_numpy(), 4, 16, 4),
        ]
        for name, series, n_clusters, lookback, horizon in cases:
            n_train = int(0.7 * len(series))
            series = (series - series[:n_train].mean(0)) / series[:n_train].std(0)
            X, y = make_windows(series[:n_train], lookback, horizon)
            model = ChannelClusterForecaster(
                "linear", n_clusters=n_clusters, max_epochs=30, random_state=seed, device="cpu"
            ).fit(X, y)
            report = model.cluster_report()
            print(f"seed {seed} {name}: normalised sharpness {report.normalized_sharpness:.2f}, separation "
                  f"{report.separation:.3f}, structure found {report.structure_found}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--report-thresholds", action="store_true", help="calibrate cluster_report's thresholds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as under pytest-xdist
    if args.report_thresholds:
        return report_thresholds(args.seeds)
    for seed in args.seeds:
        ari, report = _recovery_experiment(seed)
        unequal, unequal_report = _recovery_experiment(seed, group_sizes=[2, 4, 6], noise=0.5)
        ccm, last_value = _fertility_zero_shot(seed)
        print(f"seed {seed}: planted ARI {ari:.3f} (sharpness {report.sharpness:.3f}), unequal groups ARI "
              f"{unequal:.3f} (sharpness {unequal_report.sharpness:.3f}); unseen-country MSE CCM {ccm:.5f}, "
              f"last value {last_value:.5f}", flush=True)


if __name__ == "__main__":
    main()
