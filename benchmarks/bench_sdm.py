"""SDMCalibrator against the selective rules a user would pick instead, in and out of distribution.

One process, per data set and seed: the data are split 80/20 into a fitting
and a test part (stratified); the fitting part is split 50/50 into the
training (support) and calibration halves for the baselines, while
SDMCalibrator draws its own ``n_repeats`` 50/50 splits of it. Rules, each
admitting a row or abstaining, at alpha = 0.95:

* ``SDM v2``: ``predict_selective`` (the DKW lower estimate);
* ``SDM v2 (point)``: the same without the lower estimate;
* ``softmax(z′) ≥ α``: the SDM network's own logits, thresholded;
* ``LR + CCV sigmoid / isotonic ≥ α``: ``CalibratedClassifierCV`` over a
  ``LogisticRegression`` fitted on the training half, calibrated on the
  calibration half (``FrozenEstimator``);
* ``LR + MAPIE singletons``: split-conformal LAC sets at confidence α from
  MAPIE (optional ``bench`` extra), a row admitted when its set is one class.

Test sets: in distribution; covariate-shifted (digits moved one pixel right;
sentences cut to their first half); far-OOD (digits with each row's pixels
permuted; sentences of packages the model never saw, where every admitted
prediction is wrong). Printed per rule: admitted fraction, marginal
accuracy, and the worst class- and prediction-conditional accuracy among
admitted rows (mean over seeds), and fit seconds; SDM's fit time is also
given per epoch × repeat. Settings: M = 1000 exemplar dimensions, 2 repeats
× 30 epochs, Adam 3e-3, batch 50 (spec §10.1 ran the reference at 2 × 10
epochs with step 1e-3). A second table ranks the confidences themselves on
the in-distribution and shifted sets: AURC, excess AURC and expected
calibration error (15 equal-width bins, top-label and classwise) of SDM's
probabilities, the softmax of its logits, the logistic regression alone and
through ``CalibratedClassifierCV``, and MAPIE's split-conformal sets (the
highest level at which a row's set is a singleton).

    python benchmarks/bench_sdm.py [--seeds 0 1 2] [--skip-minilm]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from _common import add_quick_arguments, run_quick

from sklearn_interp.calibration import SDMCalibrator, aurc, excess_aurc, expected_calibration_error, selective_report
from sklearn_interp.datasets import (
    load_python_docs_topics,
    permute_features,
    translate_images,
    truncate_words,
)

ALPHA = 0.95
N_REPEATS, MAX_EPOCHS, LEARNING_RATE = 2, 30, 3e-3
REJECT = -1


def _summary(y_true, selective, classes):
    """Admitted fraction, accuracy and worst conditional accuracies of a selective prediction."""
    admitted = selective != REJECT
    report = selective_report(y_true, selective, reject_label=REJECT, labels=classes)
    return {
        "admitted": admitted.mean(),
        "accuracy": np.mean(selective[admitted] == y_true[admitted]) if admitted.any() else np.nan,
        "worst class-cond.": report["class_conditional_accuracy"].min(),
        "worst pred.-cond.": report["prediction_conditional_accuracy"].min(),
    }


def _threshold_rule(proba, classes):
    return np.where(proba.max(axis=1) >= ALPHA, classes[proba.argmax(axis=1)], REJECT)


def _mapie_rule(model, X_calibration, y_calibration):
    """A function X -> selective predictions from MAPIE's singleton sets, or None if MAPIE is missing."""
    try:
        from mapie.classification import SplitConformalClassifier
    except ImportError:
        return None
    mapie = SplitConformalClassifier(estimator=model, confidence_level=ALPHA, prefit=True)
    mapie.conformalize(X_calibration, y_calibration)

    def rule(X):
        prediction, sets = mapie.predict_set(X)
        singleton = sets[:, :, 0].sum(axis=1) == 1
        return np.where(singleton, prediction, REJECT)

    return rule


def _run(name, X_fit, y_fit, test_sets, seed):
    """Fit every rule on the fitting part; summarise each on every test set."""
    classes = np.unique(y_fit)
    X_train, X_cal, y_train, y_cal = train_test_split(X_fit, y_fit, test_size=0.5, random_state=seed, stratify=y_fit)
    sdm = SDMCalibrator(
        exemplar_dim=1000, n_repeats=N_REPEATS, max_epochs=MAX_EPOCHS, learning_rate=LEARNING_RATE, device="cpu", random_state=seed
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # hr_found_ is printed instead
        sdm.fit(X_fit, y_fit)
    sdm_seconds = time.perf_counter() - start
    start = time.perf_counter()
    logistic = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(X_train, y_train)
    logistic_seconds = time.perf_counter() - start
    calibrated, calibration_seconds = {}, {}
    for method in ("sigmoid", "isotonic"):
        start = time.perf_counter()
        calibrated[method] = CalibratedClassifierCV(FrozenEstimator(logistic), method=method).fit(X_cal, y_cal)
        calibration_seconds[method] = logistic_seconds + time.perf_counter() - start
    start = time.perf_counter()
    mapie = _mapie_rule(logistic, X_cal, y_cal)
    mapie_seconds = logistic_seconds + time.perf_counter() - start

    rules = {
        "SDM v2": (lambda X: sdm.predict_selective(X), sdm_seconds),
        "SDM v2 (point)": (lambda X: sdm.set_params(use_lower=False).predict_selective(X), sdm_seconds),
        "softmax(z′) ≥ α": (lambda X: _threshold_rule(sdm.predict_proba(X, kind="softmax"), sdm.classes_), sdm_seconds),
        "LR + CCV sigmoid ≥ α": (lambda X: _threshold_rule(calibrated["sigmoid"].predict_proba(X), classes), calibration_seconds["sigmoid"]),
        "LR + CCV isotonic ≥ α": (lambda X: _threshold_rule(calibrated["isotonic"].predict_proba(X), classes), calibration_seconds["isotonic"]),
        "LR + MAPIE singletons": (mapie, mapie_seconds),
    }
    confidences = {
        # (predictions, confidence, probabilities for ECE or None)
        "SDM v2": lambda X: _from_proba(sdm.predict_proba(X), sdm.classes_),
        "softmax(z′)": lambda X: _from_proba(sdm.predict_proba(X, kind="softmax"), sdm.classes_),
        "LR": lambda X: _from_proba(logistic.predict_proba(X), classes),
        "LR + CCV sigmoid": lambda X: _from_proba(calibrated["sigmoid"].predict_proba(X), classes),
        "LR + CCV isotonic": lambda X: _from_proba(calibrated["isotonic"].predict_proba(X), classes),
        "LR + MAPIE": _mapie_confidence(logistic, X_cal, y_cal),
    }
    ranking = []
    for rule, confidence_of in confidences.items():
        for test_name, (X_test, y_test) in test_sets.items():
            if test_name.startswith("far-OOD"):
                continue  # every prediction is wrong there: every ranking has the same risk
            if confidence_of is None:
                ranking.append({"data": name, "seed": seed, "rule": rule + " (missing)", "test set": test_name})
                continue
            predictions, confidence, proba = confidence_of(X_test)
            ranking.append({
                "data": name, "seed": seed, "rule": rule, "test set": test_name,
                "AURC": aurc(y_test, predictions, confidence),
                "E-AURC": excess_aurc(y_test, predictions, confidence),
                "ECE (top-label)": np.nan if proba is None else expected_calibration_error(y_test, proba, labels=classes),
                "ECE (classwise)": np.nan if proba is None else expected_calibration_error(
                    y_test, proba, labels=classes, kind="classwise"),
            })
    rows = []
    for rule, (predict, seconds) in rules.items():
        for test_name, (X_test, y_test) in test_sets.items():
            sdm.set_params(use_lower=True)
            values = {"admitted": np.nan} if predict is None else _summary(y_test, predict(X_test), classes)
            rows.append({"data": name, "seed": seed, "rule": rule if predict is not None else rule + " (missing)",
                         "test set": test_name, **values, "fit s": seconds})
    extra = {"data": name, "seed": seed, "hr_found": sdm.hr_found_, "q′_min": sdm.q_prime_min_,
             "s per epoch×repeat": sdm_seconds / (N_REPEATS * MAX_EPOCHS), "best epoch": sdm.best_epoch_}
    return rows, extra, ranking


def _from_proba(proba, classes):
    return classes[proba.argmax(axis=1)], proba.max(axis=1), proba


def _mapie_confidence(model, X_calibration, y_calibration):
    """MAPIE has sets, not probabilities: a row's confidence is the highest level at which its set is a singleton.

    Levels 0.50, 0.51, ..., 0.99; 0 when the set is never a singleton. No
    ECE (there is no probability to calibrate). None if MAPIE is missing.
    """
    try:
        from mapie.classification import SplitConformalClassifier
    except ImportError:
        return None
    levels = np.round(np.arange(0.50, 0.995, 0.01), 2)
    mapie = SplitConformalClassifier(estimator=model, confidence_level=list(levels), prefit=True)
    mapie.conformalize(X_calibration, y_calibration)

    def confidence_of(X):
        prediction, sets = mapie.predict_set(X)
        singleton = sets.sum(axis=1) == 1  # (n_samples, n_levels)
        confidence = np.where(singleton, levels[None, :], 0.0).max(axis=1)
        return prediction, confidence, None

    return confidence_of


def digits(seed):
    X, y = load_digits(return_X_y=True)
    X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    test_sets = {
        "in distribution": (X_test, y_test),
        "shifted 1 px": (translate_images(X_test, (8, 8)), y_test),
        "far-OOD permuted": (permute_features(X_test, random_state=seed), y_test),
    }
    return _run("digits", X_fit, y_fit, test_sets, seed)


def minilm(seed, embed):
    docs = load_python_docs_topics(n_per_class=300, random_state=seed)
    unseen = load_python_docs_topics(("xml", "unittest"), n_per_class=150, random_state=seed)
    texts = np.asarray(docs.data, dtype=object)
    fit, test = train_test_split(np.arange(len(texts)), test_size=0.2, random_state=seed, stratify=docs.target)
    X = embed(list(texts))
    test_sets = {
        "in distribution": (X[test], docs.target[test]),
        "first half of words": (embed(truncate_words(list(texts[test]))), docs.target[test]),
        # Labels outside the classes: every admitted prediction is wrong.
        "far-OOD unseen packages": (embed(unseen.data), np.full(len(unseen.data), -99)),
    }
    return _run("MiniLM topics", X[fit], docs.target[fit], test_sets, seed)



def quick(device):
    """The GPU check's workload: SDM on 1,400 digits (one repeat of 10 epochs), probabilities of the rest."""
    X, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sdm = SDMCalibrator(n_repeats=1, max_epochs=10, learning_rate=3e-3, random_state=0, device=device)
        sdm.fit(X[:1400], y[:1400])
    return sdm.predict_proba(X[1400:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--skip-minilm", action="store_true")
    add_quick_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        return run_quick(quick, args)
    rows, extras, ranking = [], [], []
    start = time.perf_counter()
    for seed in args.seeds:
        result, extra, ranked = digits(seed)
        rows += result
        extras.append(extra)
        ranking += ranked
    if not args.skip_minilm:
        from sklearn_interp.activations import SentenceEmbeddings

        embedder = SentenceEmbeddings(device="cpu").fit()
        for seed in args.seeds:
            result, extra, ranked = minilm(seed, embedder.transform)
            rows += result
            extras.append(extra)
            ranking += ranked
    table = pd.DataFrame(rows)
    columns = ["admitted", "accuracy", "worst class-cond.", "worst pred.-cond.", "fit s"]
    summary = table.groupby(["data", "test set", "rule"], sort=False)[columns].mean()
    spread = table.groupby(["data", "test set", "rule"], sort=False)["admitted"].agg(["min", "max"])
    summary["admitted range"] = [f"{low:.2f}–{high:.2f}" for low, high in spread.to_numpy()]
    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 20)
    print(f"alpha = {ALPHA}, seeds {args.seeds}; means over seeds (NaN: nothing admitted in any seed)\n")
    print(summary.round(3).to_string())
    print()
    print(pd.DataFrame(extras).round(3).to_string(index=False))
    metrics = ["AURC", "E-AURC", "ECE (top-label)", "ECE (classwise)"]
    ranked = pd.DataFrame(ranking).reindex(columns=["data", "test set", "rule", *metrics])
    ranked = ranked.sort_values(["data", "test set"], kind="stable")
    print("\nHow well each confidence ranks and measures errors (means over seeds; lower is better;")
    print("MAPIE's confidence: the highest level at which its set is a singleton, so it has no ECE)\n")
    print(ranked.groupby(["data", "test set", "rule"], sort=False)[metrics].mean().round(4).to_string())
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
