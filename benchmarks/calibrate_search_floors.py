"""The curves behind the planted-truth search tests, and the README's searches with the old and new criteria.

For each planted problem of the tests (SNMF's rank, the SAEs' number of
active atoms, LocalID's pieces of different dimension, SDM's well- and
badly-trained settings) it runs the tests' search over more seeds and prints
every candidate's mean score and standard error under each criterion, and
the candidate each rule picks. ``--readme`` runs the README's own searches
(and the SDM search of the issue) under the old criterion (held-out R², the
mean local ID, the never-abstaining accuracy) and the new one.

    .venv/bin/python benchmarks/calibrate_search_floors.py --estimator snmf mp_sae topk local_id sdm
    .venv/bin/python benchmarks/calibrate_search_floors.py --estimator mp_sae_size local_id_curved  # the guide's limits
    .venv/bin/python benchmarks/calibrate_search_floors.py --readme
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, KFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_local_id import _pieces_of_different_dimension  # noqa: E402
from test_model_selection import planted_semi_nmf, planted_sparse_codes  # noqa: E402

from sklearn_interp.calibration import SDMCalibrator  # noqa: E402
from sklearn_interp.decomposition import MatchingPursuitSAE, SNMFDecomposer, TopKSAE  # noqa: E402
from sklearn_interp.manifold import LocalIDEstimator, mean_lid_scorer  # noqa: E402
from sklearn_interp.model_selection import dictionary_scoring, one_se_table, simplest_within_one_se  # noqa: E402


def _report(title, search, complexity, metrics):
    rows = {}
    for metric in metrics:
        table = one_se_table(search.cv_results_, complexity, scoring=metric)
        rows[f"{metric} mean"] = table["mean"].to_numpy()
        rows[f"{metric} SE"] = table["standard_error"].to_numpy()
        best = table["params"].iloc[int(np.nanargmax(table["mean"].to_numpy()))]
        chosen = table["params"].iloc[int(np.flatnonzero(table["chosen"].to_numpy())[0])]
        print(f"  {metric}: best {best}, simplest within one SE {chosen}")
    frame = pd.DataFrame(rows, index=[str(p) for p in search.cv_results_["params"]])
    print(f"{title}\n{frame.round(4).to_string()}\n", flush=True)


def snmf(seed):
    search = GridSearchCV(
        SNMFDecomposer(sparsity=None, random_state=0, device="cpu"), {"n_components": [2, 4, 6, 10, 16]},
        scoring=dictionary_scoring(random_state=0), refit=simplest_within_one_se("n_components", scoring="bicv_r2"),
        cv=5,
    ).fit(planted_semi_nmf(seed))
    _report(f"SNMF, planted rank 6, seed {seed}", search, "n_components", ["r2", "bicv_r2"])


def sae(estimator, n_samples, max_epochs):
    def run(seed):
        search = GridSearchCV(
            estimator(12, 3, max_epochs=max_epochs, learning_rate=1e-2, batch_size=128, random_state=0, device="cpu"),
            {"k": [1, 2, 3, 5, 8]}, scoring=dictionary_scoring(random_state=0),
            refit=simplest_within_one_se("k", scoring="bicv_r2"), cv=3,
        ).fit(planted_sparse_codes(seed, n_samples=n_samples)[0])
        _report(f"{estimator.__name__}, planted k = 3, seed {seed}", search, "k", ["r2", "bicv_r2"])

    return run


def local_id(seed):
    search = GridSearchCV(
        LocalIDEstimator(device="cpu"), {"n_neighbors": [10, 25, 60, 150, 600]},
        scoring={"score": lambda est, X, y=None: est.score(X), "mean_lid": mean_lid_scorer}, refit="score",
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(_pieces_of_different_dimension(seed))
    _report(f"LocalID, pieces of dimension 1, 3, 6 (≈267 training rows each), seed {seed}", search, "n_neighbors",
            ["score", "mean_lid"])


def mp_sae_size(seed):
    """The limit the guide states: a search over the SAE's size, where the true 12 trains worse than 24."""
    search = GridSearchCV(
        MatchingPursuitSAE(12, 3, max_epochs=20, learning_rate=1e-2, batch_size=128, random_state=0, device="cpu"),
        {"n_components": [3, 6, 12, 24, 48]}, scoring=dictionary_scoring(random_state=0),
        refit=simplest_within_one_se("n_components", scoring="bicv_r2"), cv=3,
    ).fit(planted_sparse_codes(seed)[0])
    _report(f"MatchingPursuitSAE, planted 12 atoms (k = 3), seed {seed}", search, "n_components", ["r2", "bicv_r2"])


def local_id_curved(seed):
    """The limit the guide states: on a curved 2-D (swiss roll) or 1-D (wound helix) manifold, larger is better."""
    from sklearn.datasets import make_swiss_roll

    rng = np.random.default_rng(seed)
    roll = np.hstack([make_swiss_roll(1500, random_state=seed)[0], np.zeros((1500, 7))])
    roll = roll @ np.linalg.qr(rng.standard_normal((10, 10)))[0]
    t = rng.uniform(0, 2 * np.pi, 1500)
    helix = np.stack([np.cos(t), np.sin(t), 0.3 * np.cos(7 * t), 0.3 * np.sin(7 * t)], axis=1)
    for name, X in (("swiss roll in 10-D", roll), ("helix wound 7 times", helix)):
        search = GridSearchCV(LocalIDEstimator(device="cpu"), {"n_neighbors": [10, 20, 50, 200, 500]}, cv=3).fit(X)
        _report(f"LocalID, {name}, seed {seed}", search, "n_neighbors", ["score"])


def sdm(seed):
    from sklearn.datasets import load_breast_cancer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    params = dict(exemplar_dim=64, n_repeats=1, max_epochs=15, alpha=0.9, device="cpu", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search = GridSearchCV(
            make_pipeline(StandardScaler(), SDMCalibrator(**params)), {"sdmcalibrator__learning_rate": [1e-6, 3e-3]},
            scoring={"score": lambda est, X, y: est.score(X, y), "accuracy": "accuracy"}, refit="score", cv=3,
        ).fit(X, y)
    _report(f"SDM on breast cancer, step 1e-6 vs 3e-3, seed {seed}", search,
            "sdmcalibrator__learning_rate", ["score", "accuracy"])


def readme():
    """The README's searches (and the issue's SDM search), with the old and the new criterion."""
    from sklearn.datasets import load_digits

    from sklearn_interp.activations import TransformerActivations
    from sklearn_interp.datasets import load_python_docs

    texts = load_python_docs(n_sentences=300).data
    X = TransformerActivations(layer=3, site="mlp").fit_transform(texts)
    search = GridSearchCV(
        SNMFDecomposer(max_iter=100, patience=10, random_state=0), {"n_components": [16, 32], "sparsity": [0.01, 0.1]},
        scoring=dictionary_scoring(random_state=0),
        refit=simplest_within_one_se(["n_components", "sparsity"], scoring="bicv_r2"), cv=3,
    ).fit(X)
    _report("README: SNMF on MiniLM block 3 MLP activations (old: best r2; new: one SE on bicv_r2)", search,
            ["n_components", "sparsity"], ["r2", "bicv_r2", "l0"])
    emb = TransformerActivations(layer=5, site="residual").fit_transform(texts)
    search = GridSearchCV(
        LocalIDEstimator(), {"n_neighbors": [30, 100]}, cv=3,
        scoring={"score": lambda est, X, y=None: est.score(X), "mean_lid": mean_lid_scorer}, refit="score",
    ).fit(emb)
    _report("README: LocalID on MiniLM block 5 residual (old score: the mean LID; new: held-out likelihood)", search,
            "n_neighbors", ["score", "mean_lid"])
    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search = GridSearchCV(
            SDMCalibrator(random_state=0, device="cpu"), {"learning_rate": [1e-5, 1e-3, 3e-3]}, cv=2,
            scoring={"score": lambda est, X, y: est.score(X, y), "accuracy": "accuracy"}, refit="score",
        ).fit(X, y)
    _report("SDM on digits over the step (old score: accuracy of predict; new: admitted at alpha 0.95)", search,
            "learning_rate", ["score", "accuracy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    runs = {"snmf": snmf, "mp_sae": sae(MatchingPursuitSAE, 3000, 20), "topk": sae(TopKSAE, 1500, 10),
            "local_id": local_id, "sdm": sdm, "mp_sae_size": mp_sae_size, "local_id_curved": local_id_curved}
    parser.add_argument("--estimator", nargs="+", choices=sorted(runs), default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    for name in args.estimator:
        for seed in args.seeds:
            runs[name](seed)
    if args.readme:
        readme()
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
