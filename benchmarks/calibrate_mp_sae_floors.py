"""Where the floors of tests/test_mp_sae.py come from.

Fits the tests' own configurations over several seeds and prints what the
floors were set below:

* the planted hierarchy (``_hierarchy_fits``): mean best cosine of the
  learned atoms to all planted atoms and to the parents, and R², for
  MatchingPursuitSAE and TopKSAE, data seeds x model seeds;
* training on planted sparse data (``_planted``): R² of the barely moved
  initial model (step 1e-12) and of the trained one, per model seed.

    python benchmarks/calibrate_mp_sae_floors.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_mp_sae import _hierarchy_fits, _planted  # noqa: E402  (the tests' exact settings)

from sklearn_interp.decomposition import MatchingPursuitSAE, TopKSAE  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)

    rows = []
    for data_seed in range(args.seeds):
        for model_seed in range(args.seeds):
            data, fits = _hierarchy_fits(data_seed, model_seed)
            for name, (sae, cosines) in fits.items():
                rows.append(
                    {
                        "model": name,
                        "data seed": data_seed,
                        "model seed": model_seed,
                        "best cos, all": cosines.mean(),
                        "best cos, parents": cosines[data.is_parent].mean(),
                        "R²": sae.score(data.data),
                    }
                )
    hierarchy = pd.DataFrame(rows)
    print("Planted hierarchy (test_matching_pursuit_recovers_a_planted_hierarchy_that_topk_misses)")
    print(hierarchy.groupby("model")[["best cos, all", "best cos, parents", "R²"]].agg(["min", "max"]).round(3).to_string())

    X, _, _ = _planted(2000)
    rows = []
    for estimator in (MatchingPursuitSAE, TopKSAE):
        for seed in range(args.seeds):
            params = {"n_components": 16, "k": 3, "batch_size": 64, "random_state": seed, "device": "cpu"}
            untrained = estimator(**params, learning_rate=1e-12, max_epochs=1).fit(X).score(X)
            trained = estimator(**params, learning_rate=1e-2, max_epochs=15).fit(X).score(X)
            rows.append({"model": estimator.__name__, "seed": seed, "R² initial": untrained, "R² trained": trained})
    print("\nPlanted sparse data (test_training_improves_reconstruction_of_planted_sparse_data)")
    print(pd.DataFrame(rows).groupby("model")[["R² initial", "R² trained"]].agg(["min", "max"]).round(3).to_string())


if __name__ == "__main__":
    main()
