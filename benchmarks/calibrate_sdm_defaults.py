"""Choose SDMCalibrator's training defaults: which settings find a high-reliability region on real data.

For each candidate setting (optimiser step, epochs, repeats, exemplar size),
data set and seed, it fits at ``alpha`` 0.95 on a stratified 70 % and, for
every required accuracy (0.95, and 0.9 through ``with_alpha``, which equals
a refit at that ``alpha``), prints the held-out share admitted at that
accuracy (the estimator's ``score``), the share admitted at all, the worst
class- or prediction-conditional accuracy among admitted rows, and the fit
time. "digits, ordered" is the README's split: the first 1,400 digits to
fit, the last 397 to test (other writers). The defaults are the cheapest
setting that finds a region everywhere; ``--reference`` adds the
reference's own setting (10 repeats × 200 epochs at step 1e-5).

    .venv/bin/python benchmarks/calibrate_sdm_defaults.py             # the grid (about 10 minutes)
    .venv/bin/python benchmarks/calibrate_sdm_defaults.py --defaults  # the library's defaults only
"""

import argparse
import functools
import itertools
import time
import warnings

import pandas as pd
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklearn_interp.calibration import SDMCalibrator, admitted_fraction, index_conditional_accuracy

REFERENCE = {"learning_rate": 1e-5, "max_epochs": 200, "n_repeats": 10, "exemplar_dim": 1000}
GRID = {
    "learning_rate": [1e-3, 3e-3],
    "max_epochs": [50, 100],
    "n_repeats": [3],
    "exemplar_dim": [1000],
}


@functools.lru_cache(maxsize=1)
def minilm_topics():
    """Mean-pooled MiniLM embeddings of the standard library's docstring topics."""
    from sklearn_interp.activations import SentenceEmbeddings
    from sklearn_interp.datasets import load_python_docs_topics

    docs = load_python_docs_topics(n_per_class=300, random_state=0)
    return SentenceEmbeddings(device="cpu").fit_transform(docs.data), docs.target


def data_sets(with_minilm, seed):
    """(name, X_fit, X_test, y_fit, y_test): scikit-learn's tabular sets are standardised, as a user would."""
    def split(X, y, scale=False):
        X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
        if scale:
            scaler = StandardScaler().fit(X_fit)
            X_fit, X_test = scaler.transform(X_fit), scaler.transform(X_test)
        return X_fit, X_test, y_fit, y_test

    digits = load_digits(return_X_y=True)
    yield ("digits", *split(*digits))
    yield ("digits, ordered", digits[0][:1400], digits[0][1400:], digits[1][:1400], digits[1][1400:])
    yield ("breast cancer", *split(*load_breast_cancer(return_X_y=True), scale=True))
    yield ("wine", *split(*load_wine(return_X_y=True), scale=True))
    if with_minilm:
        yield ("MiniLM topics", *split(*minilm_topics()))


def evaluate(setting, X_fit, X_test, y_fit, y_test, seed, alphas):
    sdm = SDMCalibrator(alpha=max(alphas), device="cpu", random_state=seed, **setting)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sdm.fit(X_fit, y_fit)
    seconds = time.perf_counter() - start
    for alpha in alphas:
        at_alpha = sdm.with_alpha(alpha)
        selective = at_alpha.predict_selective(X_test)
        yield alpha, {
            "region": at_alpha.hr_found_,
            "score": at_alpha.score(X_test, y_test),
            "admitted": admitted_fraction(selective),
            "worst accuracy": index_conditional_accuracy(y_test, selective),
            "seconds": seconds,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--defaults", action="store_true", help="only the library's defaults")
    parser.add_argument("--reference", action="store_true", help="add the reference's (slow) setting")
    parser.add_argument("--no-minilm", action="store_true", help="skip the MiniLM topic embeddings")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.95, 0.9])
    args = parser.parse_args()
    default_params = clone(SDMCalibrator()).get_params()
    if args.defaults:
        settings = [{name: default_params[name] for name in GRID}]
    else:
        settings = [REFERENCE] if args.reference else []
        settings += [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    rows = []
    for seed in args.seeds:
        for name, X_fit, X_test, y_fit, y_test in data_sets(not args.no_minilm, seed):
            for setting in settings:
                for alpha, result in evaluate(setting, X_fit, X_test, y_fit, y_test, seed, args.alphas):
                    rows.append({"data": name, **setting, "alpha": alpha, "seed": seed, **result})
                    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    keys = list(GRID)
    summary = table.groupby(keys + ["data", "alpha"]).agg(
        regions=("region", "sum"), runs=("region", "size"), score_min=("score", "min"),
        score_mean=("score", "mean"), worst_accuracy=("worst accuracy", "min"), seconds=("seconds", "mean"),
    )
    pd.set_option("display.width", 200)
    print(summary.round(3).to_string())
    overall = table.groupby(keys).agg(
        every_run_admits=("score", lambda s: bool((s > 0).all())), score_min=("score", "min"),
        score_mean=("score", "mean"), seconds=("seconds", "mean"),
    )
    print(overall.round(3).to_string())


if __name__ == "__main__":
    main()
