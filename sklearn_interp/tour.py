"""A tour of every estimator of sklearn_interp on bundled real data.

Run ``python -m sklearn_interp.tour`` (``make tour`` sets everything up
first). Every step fits one estimator on real data that ships with Python
or a dependency, and the tour prints one table (method, data, fit time and
the method's quality figure) and writes its figures and an HTML page to
``tour_output/``.

Each estimator adds one step: a function taking the shared
:class:`TourData` and returning a :class:`TourStep`, listed in ``STEPS``.
"""

from __future__ import annotations

import argparse
import html
import textwrap
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

# Training images of the part-prototype step: both models train in about a minute each.
TOUR_PART_OBJECTS = 1500
TOUR_PART_SEEDS = (0, 1, 2)


@dataclass
class TourStep:
    """What one step reports: a table row, figures and an HTML section."""

    method: str
    data: str
    fit_time: float
    quality: str
    figures: list = field(default_factory=list)
    html: str = ""
    printed: list = field(default_factory=list)  # lines the console shows after the table


@dataclass
class TourData:
    """Real data shared by the steps, computed once and only when asked."""

    out: Path
    n_sentences: int = 1000
    verbose: int = 1
    _residual: dict = field(default_factory=dict, repr=False)

    @cached_property
    def texts(self):
        from .datasets import load_python_docs

        return load_python_docs(n_sentences=self.n_sentences).data

    @cached_property
    def minilm_layer3(self):
        """MLP activations of MiniLM's block 3 over the texts, and the extractor."""
        from .activations import TransformerActivations

        extractor = TransformerActivations(layer=3, site="mlp", verbose=self.verbose).fit()
        return extractor.transform(self.texts), extractor

    @property
    def tokens(self):
        """The token strings of the texts, one per row of every activation matrix."""
        return self.minilm_layer3[1].tokens_

    def save(self, figure, name):
        """Write ``figure`` to ``out/name`` and close it; returns the path."""
        import matplotlib.pyplot as plt

        figure.tight_layout()
        path = self.out / name
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path

    def minilm_residual(self, layer):
        """Token embeddings (block outputs) of MiniLM's block ``layer`` over the texts."""
        from .activations import TransformerActivations

        if layer not in self._residual:
            extractor = TransformerActivations(layer=layer, site="residual", verbose=self.verbose).fit()
            self._residual[layer] = extractor.transform(self.texts)
        return self._residual[layer]


def snmf_step(data):
    """SNMFDecomposer on MiniLM MLP activations with the paper's 1 % sparsity."""
    import matplotlib.pyplot as plt

    from .decomposition import SNMFDecomposer
    from .decomposition._snmf import svd_bound_r2
    from .plotting import SNMFFeatureDisplay

    X, extractor = data.minilm_layer3
    rank, sparsity = 64, 0.01
    snmf = SNMFDecomposer(rank, sparsity=sparsity, max_iter=150, random_state=0, verbose=data.verbose)
    start = time.perf_counter()
    snmf.fit(X)
    fit_time = time.perf_counter() - start
    r2 = snmf.score(X)
    bound = svd_bound_r2(X, rank)
    kept = int(np.count_nonzero(snmf.components_, axis=1).max())

    figure, axis = plt.subplots(figsize=(5, 3))
    axis.plot(snmf.loss_curve_ / np.sum(X.astype(np.float64) ** 2))
    axis.axvline(snmf.best_iter_, color="grey", linestyle=":", label="returned iterate")
    axis.set(xlabel="iteration", ylabel="‖X − G Fᵀ‖² / ‖X‖²", title="SNMF loss (winner-take-all is not monotone)")
    axis.legend(fontsize=8)
    loss_path = data.save(figure, "snmf_loss.png")

    display = SNMFFeatureDisplay.from_estimator(snmf, extractor.tokens_, n_tokens=8)
    features_path = data.save(display.figure_, "snmf_features.png")

    top = snmf.top_activating(n=12)
    rows = "".join(
        f"<tr><td>{feature}</td><td>{html.escape(' '.join(extractor.tokens_[top[feature]]))}</td></tr>"
        for feature in display.features
    )
    section = (
        f"<p>{X.shape[0]} tokens of {len(data.texts)} standard-library docstring sentences, "
        f"MiniLM block 3 MLP (post-GELU, {X.shape[1]} units). Rank {rank}, each feature keeps "
        f"{kept} of {X.shape[1]} neurons. R² {r2:.3f}; the unconstrained rank-{rank} SVD "
        f"reaches {bound:.3f}.</p>"
        f"<table><tr><th>feature</th><th>top tokens</th></tr>{rows}</table>"
    )
    return TourStep(
        method="SNMFDecomposer",
        data=f"MiniLM L3 MLP, {X.shape[0]}×{X.shape[1]}",
        fit_time=fit_time,
        quality=f"R² {r2:.3f} at {kept}/{X.shape[1]} neurons per feature (SVD bound {bound:.3f})",
        figures=[loss_path, features_path],
        html=section,
    )


def local_id_step(data):
    """LocalIDEstimator on MiniLM token embeddings after the first and the last block."""
    import matplotlib.pyplot as plt

    from .manifold import LocalIDEstimator

    n_neighbors, layers = 100, (0, 5)
    fitted, fit_time = {}, 0.0
    for layer in layers:
        X = data.minilm_residual(layer)
        start = time.perf_counter()
        fitted[layer] = LocalIDEstimator(n_neighbors=n_neighbors, verbose=data.verbose).fit(X)
        fit_time += time.perf_counter() - start

    figure, axis = plt.subplots(figsize=(5, 3))
    for layer, estimator in fitted.items():
        axis.hist(estimator.local_ids_[estimator.sample_indices_], bins=50, alpha=0.6, label=f"block {layer}")
    axis.set(xlabel=f"local intrinsic dimension (L = {n_neighbors})", ylabel="distinct tokens")
    axis.set_title("LID of MiniLM token embeddings")
    axis.legend(fontsize=8)
    path = data.save(figure, "local_id_minilm.png")

    rows = "".join(
        f"<tr><td>{layer}</td><td>{len(e.local_ids_)}</td><td>{len(e.X_fit_)}</td>"
        f"<td>{e.mean_local_id_:.2f}</td><td>{e.median_local_id_:.2f}</td><td>{e.global_id_:.2f}</td></tr>"
        for layer, e in fitted.items()
    )
    section = (
        f"<p>Token embeddings (block outputs, 384 dimensions) of {len(data.texts)} standard-library "
        f"docstring sentences; exact duplicate tokens removed; TwoNN on each token's {n_neighbors} "
        "nearest neighbours. LIDs compare only at equal n_neighbors and sample size.</p>"
        "<table><tr><th>block</th><th>tokens</th><th>distinct</th><th>mean LID</th>"
        f"<th>median LID</th><th>global TwoNN</th></tr>{rows}</table>"
    )
    first, last = (fitted[layer] for layer in layers)
    return TourStep(
        method="LocalIDEstimator",
        data=f"MiniLM blocks {layers[0]} and {layers[1]}, {len(first.local_ids_)}×{first.X_fit_.shape[1]}",
        fit_time=fit_time,
        quality=(
            f"mean LID {first.mean_local_id_:.2f} → {last.mean_local_id_:.2f} "
            f"(global {first.global_id_:.2f} → {last.global_id_:.2f}), L={n_neighbors}"
        ),
        figures=[path],
        html=section,
    )


def mp_sae_step(data):
    """MatchingPursuitSAE (and the TopK baseline) on MiniLM block-3 outputs."""
    import matplotlib.pyplot as plt

    from .decomposition import MatchingPursuitSAE, TopKSAE

    X = data.minilm_residual(3)
    params = {"n_components": 1024, "k": 16, "max_epochs": 3, "random_state": 0, "verbose": data.verbose}
    start = time.perf_counter()
    mp = MatchingPursuitSAE(**params).fit(X)
    fit_time = time.perf_counter() - start
    topk = TopKSAE(**params).fit(X)
    steps = [1, 2, 4, 8, 16, 32, 64]
    curves = {name: [model.score(X, k=k) for k in steps] for name, model in (("MP", mp), ("TopK", topk))}

    figure, axis = plt.subplots(figsize=(5, 3))
    axis.plot(steps, curves["MP"], "o-", label="MatchingPursuitSAE")
    axis.plot(steps, curves["TopK"], "s--", label="TopKSAE (same training)")
    axis.axvline(mp.k, color="grey", linestyle=":", label="k in training")
    axis.set(xscale="log", xlabel="atoms per token at inference (k)", ylabel="R²")
    axis.set_xticks(steps, [str(k) for k in steps])
    axis.set_title("Adaptive sparsity on MiniLM block 3")
    axis.legend(fontsize=8)
    path = data.save(figure, "mp_sae_r2_vs_k.png")

    # A few atoms across the usage ranking, with the tokens that use them most.
    tokens = data.tokens
    used = np.argsort(-mp.atom_usage_)[: int((mp.atom_usage_ > 0).sum())]
    atoms = used[np.linspace(0, len(used) - 1, 8).astype(int)]
    top = mp.top_activating(X, n=10)
    rows = "".join(
        f"<tr><td>{atom}</td><td>{mp.atom_usage_[atom]}</td><td>{html.escape(' '.join(tokens[top[atom]]))}</td></tr>"
        for atom in atoms
    )
    r2 = dict(zip(steps, curves["MP"]))
    section = (
        f"<p>{X.shape[0]} tokens × {X.shape[1]} (block-3 outputs of MiniLM over {len(data.texts)} docstring "
        f"sentences); {mp.n_components} atoms, k = {mp.k} in training, {mp.n_iter_} epochs of Adam. R² with "
        f"per-feature centring at inference k: "
        + ", ".join(f"{k}: {value:.3f}" for k, value in r2.items())
        + f". The TopK SAE trained the same way reaches {curves['TopK'][steps.index(16)]:.3f} at k = 16 and "
        f"{curves['TopK'][-1]:.3f} at k = 64. Dead atoms in the last epoch: {int(mp.dead_atoms_.sum())}.</p>"
        "<table><tr><th>atom</th><th>picks in the last epoch</th><th>top tokens</th></tr>" + rows + "</table>"
    )
    return TourStep(
        method="MatchingPursuitSAE",
        data=f"MiniLM L3 residual, {X.shape[0]}×{X.shape[1]}",
        fit_time=fit_time,
        quality=f"R² {r2[16]:.3f} at k=16, {r2[64]:.3f} at k=64 (TopK {curves['TopK'][steps.index(16)]:.3f} at k=16)",
        figures=[path],
        html=section,
    )


def diffroar_step(data):
    """DiffROAR on BlockDigits: input gradients of a standard and a robust MLP, oracle, random."""
    import warnings

    import matplotlib.pyplot as plt

    from .datasets import make_block_digits
    from .evaluation import DiffROAR
    from .neural_network import TorchMLPClassifier

    blocks = make_block_digits(random_state=0)
    fractions = (0.1, 0.2, 0.3, 0.5)
    common = {"fractions": fractions, "n_jobs": 2, "random_state": 0, "verbose": data.verbose}
    standard = TorchMLPClassifier(random_state=0)
    robust = TorchMLPClassifier(adversarial="pgd", epsilon=0.1, random_state=0)
    runs = {
        "standard gradients": DiffROAR(standard, "input_gradient", **common),
        "robust gradients": DiffROAR(robust, "input_gradient", retrain_estimator=standard, **common),
        "oracle (signal block)": DiffROAR(standard, "oracle", **common),
        "random": DiffROAR(standard, "random", **common),
    }
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The leakage flag is reported in the table below.
        warnings.simplefilter("ignore", UserWarning)
        for roar in runs.values():
            roar.fit(blocks.data, blocks.target, signal_mask=blocks.signal_mask)
    fit_time = time.perf_counter() - start

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for name, roar in runs.items():
        roar.plot(ax=axis, label=name)
    axis.set_title("DiffROAR on BlockDigits (fill = train mean)")
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    path = data.save(figure, "diffroar_blockdigits.png")

    rows = "".join(
        f"<tr><td>{name}</td><td>{r.fraction:g}</td><td>{r.diffroar:+.3f}</td><td>{r.accuracy_top:.3f}</td>"
        f"<td>{r.accuracy_bottom:.3f}</td><td>{r.leakage_top:.2f} / {r.leakage_bottom:.2f}</td>"
        f"<td>{'yes' if r.leakage_dominates else 'no'}</td><td>{r.signal_fraction_top:.2f}</td></tr>"
        for name, roar in runs.items()
        for r in roar.curve_.itertuples()
    )
    section = (
        f"<p>BlockDigits: {len(blocks.target)} of scikit-learn's digits stacked with a label-free 4×4 patch "
        "block (16×8 images, signal on top or at the bottom at random). MLP 2×256; the robust model is "
        "trained with L∞ PGD (ε = 0.1). A stratified quarter is held out; the retrained model is a fresh "
        "MLP. The mask-only columns give the accuracy of an MLP trained on the keep pattern alone: where "
        "it reaches the masked data's accuracy, DiffROAR measures the mask, not the kept pixels.</p>"
        "<table><tr><th>attribution</th><th>k</th><th>DiffROAR</th><th>acc top-k</th><th>acc bottom-k</th>"
        "<th>mask-only top / bottom</th><th>leakage dominates</th><th>signal share of top-k</th></tr>"
        + rows
        + "</table>"
    )
    at_small_k = {name: roar.curve_["diffroar"].iloc[0] for name, roar in runs.items()}
    return TourStep(
        method="DiffROAR",
        data=f"BlockDigits, {blocks.data.shape[0]}×{blocks.data.shape[1]}",
        fit_time=fit_time,
        quality=(
            f"DiffROAR at k={fractions[0]}: robust {at_small_k['robust gradients']:+.2f}, "
            f"standard {at_small_k['standard gradients']:+.2f}, oracle {at_small_k['oracle (signal block)']:+.2f}, "
            f"random {at_small_k['random']:+.2f}"
        ),
        figures=[path],
        html=section,
    )


def sdm_step(data):
    """SDMCalibrator on digits: admitted fraction and accuracy in distribution, shifted and far-OOD."""
    import warnings

    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from .calibration import SDMCalibrator, admitted_fraction, index_conditional_accuracy
    from .datasets import permute_features, translate_images

    X, y = load_digits(return_X_y=True)
    X_fit, X_test, y_fit, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    sdm = SDMCalibrator(
        exemplar_dim=1000, n_repeats=2, max_epochs=30, learning_rate=3e-3, random_state=0, verbose=data.verbose
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # hr_found_ is reported below.
        warnings.simplefilter("ignore", UserWarning)
        sdm.fit(X_fit, y_fit)
    fit_time = time.perf_counter() - start
    test_sets = {
        "in distribution": X_test,
        "shifted one pixel right": translate_images(X_test, (8, 8)),
        "far-OOD (pixels permuted)": permute_features(X_test, random_state=0),
    }

    def operating_point(selective):
        admitted = selective != sdm.reject_label
        return {
            "admitted": admitted_fraction(selective, reject_label=sdm.reject_label),
            "accuracy": np.mean(selective[admitted] == y_test[admitted]) if admitted.any() else np.nan,
            "worst conditional accuracy": index_conditional_accuracy(y_test, selective, reject_label=sdm.reject_label),
        }

    rows, curves = [], {}
    for name, X_set in test_sets.items():
        prediction = sdm.predict(X_set)
        softmax = sdm.predict_proba(X_set, kind="softmax").max(axis=1)
        sdm_lower = sdm.predict_proba(X_set, kind="lower").max(axis=1)
        points = {
            "SDM (admitted region)": operating_point(sdm.predict_selective(X_set)),
            f"softmax ≥ {sdm.alpha}": operating_point(np.where(softmax >= sdm.alpha, prediction, sdm.reject_label)),
        }
        for rule, point in points.items():
            rows.append({"test set": name, "rule": rule, **point})
        correct = prediction == y_test
        curves[name] = {
            score_name: np.cumsum(correct[np.argsort(-score, kind="stable")]) / np.arange(1, len(correct) + 1)
            for score_name, score in (("softmax", softmax), ("SDM lower", sdm_lower))
        }
    table = pd.DataFrame(rows)

    figure, axes = plt.subplots(1, len(curves), figsize=(11, 3.3), sharey=True)
    for axis, (name, by_score) in zip(axes, curves.items()):
        coverage = np.arange(1, len(y_test) + 1) / len(y_test)
        for score_name, accuracy in by_score.items():
            axis.plot(coverage, accuracy, label=f"ranked by {score_name}")
        for row in table[table["test set"] == name].to_dict("records"):
            if row["admitted"] > 0:
                style = {"marker": "o", "color": "black"} if row["rule"].startswith("SDM") else {"marker": "x", "color": "red"}
                axis.scatter([row["admitted"]], [row["accuracy"]], zorder=3, label=row["rule"], **style)
        axis.axhline(sdm.alpha, color="grey", lw=0.8, ls="--")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("admitted fraction")
    axes[0].set_ylabel("accuracy among admitted")
    axes[-1].legend(fontsize=7, loc="lower left")
    path = data.save(figure, "sdm_digits.png")

    section = (
        f"<p>scikit-learn's digits: 80 % to fit (two repeats of a 50/50 training/calibration split, "
        f"30 epochs at step 3e-3, M = 1000 exemplar dimensions), 20 % to test. Region found: {sdm.hr_found_} "
        f"(q′<sub>min</sub> = {sdm.q_prime_min_:.1f}). Worst conditional accuracy is the minimum over classes of the "
        "accuracy among admitted rows of each true class and each predicted class (NaN: nothing admitted). "
        "The figure ranks the test rows by each score and plots the accuracy of the top ones; the markers are "
        "the two rules' operating points.</p>"
        + table.to_html(index=False, float_format=lambda v: f"{v:.3f}")
    )
    lookup = {(r["test set"], r["rule"].split(" ")[0]): r for r in rows}
    inside, far = lookup[("in distribution", "SDM")], lookup[("far-OOD (pixels permuted)", "SDM")]
    far_softmax = lookup[("far-OOD (pixels permuted)", "softmax")]
    return TourStep(
        method="SDMCalibrator",
        data=f"digits, {X_fit.shape[0]}×{X_fit.shape[1]}",
        fit_time=fit_time,
        quality=(
            f"in-dist admits {inside['admitted']:.0%} at {inside['worst conditional accuracy']:.2f}; far-OOD admits "
            f"{far['admitted']:.0%} (softmax ≥ {sdm.alpha}: {far_softmax['admitted']:.0%} at "
            f"{far_softmax['worst conditional accuracy']:.2f})"
        ),
        figures=[path],
        html=section,
    )


def consistency_step(data):
    """ConsistencyScorer on a ProtoPNet-like baseline and on SDFA + SA, on part-annotated objects."""
    from sklearn.frozen import FrozenEstimator

    from .datasets import PART_OBJECT_PARTS, make_part_objects
    from .evaluation import ConsistencyScorer
    from .prototypes import PartPrototypeClassifier

    # No part-annotated real images ship with any package (CUB-200-2011 cannot), so the
    # step uses the synthetic objects whose keypoints are exact.
    X, y, _ = make_part_objects(TOUR_PART_OBJECTS, random_state=0)
    X_test, y_test, locs_test = make_part_objects(400, random_state=1)
    # One draw decides little: the two models' accuracies differ by about as much
    # as one model's across seeds, or across torch thread counts (floating-point
    # sums in another order take training elsewhere). So each is fitted with
    # TOUR_PART_SEEDS seeds and the table gives the mean ± standard deviation.
    rows, scorers, fit_time = [], {}, 0.0
    metrics = ["accuracy", "consistency", "stability"]
    for name, switches in (("ProtoPNet-like", {"sdfa": False, "score_aggregation": False}),
                           ("SDFA + SA", {"sdfa": True, "score_aggregation": True})):
        per_seed = []
        for seed in TOUR_PART_SEEDS:
            clf = PartPrototypeClassifier(**switches, random_state=seed, verbose=data.verbose)
            start = time.perf_counter()
            clf.fit(X, y)
            fit_time += time.perf_counter() - start
            scorer = ConsistencyScorer(FrozenEstimator(clf), part_names=PART_OBJECT_PARTS, random_state=0).fit(X, y)
            table = scorer.evaluate(X_test, y_test, locs_test)
            per_seed.append(scorer.summary_[metrics].astype(float))
            if seed == TOUR_PART_SEEDS[0]:
                scorers[name], first_table = scorer, table
        per_seed = pd.DataFrame(per_seed)
        rows.append({"model": name, **{m: per_seed[m].mean() for m in metrics},
                     **{f"{m} sd": per_seed[m].std(ddof=1) for m in metrics},
                     f"parts of consistent prototypes (seed {TOUR_PART_SEEDS[0]})": ", ".join(
                         f"{part} {count}"
                         for part, count in first_table.loc[first_table.consistent, "best_part_name"].value_counts().items())})
    summary = pd.DataFrame(rows)

    paths = []
    for name, scorer in scorers.items():
        axes = scorer.plot(X_test, y_test, locs_test, n_prototypes=4, n_images=5)
        figure = axes[0, 0].figure
        figure.suptitle(f"{name}: each row one prototype, its box on five test images of its class", fontsize=9)
        paths.append(data.save(figure, f"consistency_{name.split()[0].lower().replace('-', '_')}.png"))
    section = (
        f"<p>Mean and standard deviation over seeds {', '.join(map(str, TOUR_PART_SEEDS))}; the pictures show seed "
        f"{TOUR_PART_SEEDS[0]}. {len(X)} synthetic 64 px objects to train, 400 to test; five parts with exact keypoints, the class "
        "decided by head colour, tail shape and wing texture, one distractor per image. A prototype is consistent "
        "when its 21 px box (the reference's 72/224 of the side) covers one part in at least 80 % of its class's "
        "images; stable on an image when noise of 0.2 (clipped at 0.25, ImageNet units) leaves the covered parts "
        "unchanged. White dots: visible parts, filled when inside the box.</p>"
        + summary.to_html(index=False, float_format=lambda v: f"{v:.3f}")
    )
    base, improved = rows

    def change(metric):
        return (f"{metric} {base[metric]:.2f}±{base[metric + ' sd']:.2f} → "
                f"{improved[metric]:.2f}±{improved[metric + ' sd']:.2f}")

    return TourStep(
        method="ConsistencyScorer",
        data=f"part objects, {len(X)}×3×64×64, {len(TOUR_PART_SEEDS)} seeds",
        fit_time=fit_time,
        quality=", ".join(change(m) for m in metrics) + " (ProtoPNet-like → SDFA + SA)",
        figures=paths,
        html=section,
    )


def ccm_step(data):
    """ChannelClusterForecaster on statsmodels' US macro series, against its one-cluster base."""
    import matplotlib.pyplot as plt

    from sklearn.metrics import adjusted_rand_score

    from .datasets import load_macrodata, make_channel_groups
    from .forecasting import ChannelClusterForecaster, make_windows

    frame = load_macrodata()
    lookback, horizon, n_train = 16, 4, 161
    z = (frame - frame.iloc[:n_train].mean()) / frame.iloc[:n_train].std()
    X, y = make_windows(z.iloc[:n_train], lookback, horizon)
    X_test, y_test = make_windows(z.iloc[n_train - lookback :], lookback, horizon)
    settings = dict(decomposition_kernel=5, lr_schedule="constant", learning_rate=3e-3, max_epochs=60,
                    patience=6, random_state=0, verbose=0)
    start = time.perf_counter()
    model = ChannelClusterForecaster(n_clusters=4, **settings).fit(X, y)
    fit_time = time.perf_counter() - start
    base = ChannelClusterForecaster(n_clusters=1, **settings).fit(X, y)
    errors = {
        "CCM (K = 4)": np.mean((model.predict(X_test) - y_test) ** 2),
        "DLinear base (K = 1)": np.mean((base.predict(X_test) - y_test) ** 2),
        "last value": np.mean((X_test[:, -1:] - y_test) ** 2),
        "training mean": np.mean(y_test**2),
    }
    table = pd.DataFrame({"test MSE (z units)": errors}).rename_axis("model").reset_index()

    report = model.cluster_report(channel_names=frame.columns)
    ax = model.plot_similarity(channel_names=frame.columns)
    paths = [data.save(ax.figure, "ccm_similarity.png")]
    shown = ["realgdp", "cpi", "unemp", "infl"]
    figure, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 2.8))
    context = z.iloc[-lookback - horizon : -horizon]
    forecast = model.forecast(context)
    for ax, name in zip(axes, shown):
        channel = list(frame.columns).index(name)
        z[name].iloc[-3 * lookback :].plot(ax=ax, color="black", linewidth=1, label="observed")
        forecast[name].plot(ax=ax, color="tab:red", marker="o", markersize=3, label="forecast")
        ax.set_title(f"{name} (cluster {model.channel_labels_[channel]})" if report.structure_found else name, fontsize=9)
        ax.set_xlabel("")
    axes[0].legend(fontsize=7)
    figure.suptitle("Four quarters ahead from the last 16, z units", fontsize=9)
    paths.append(data.save(figure, "ccm_forecast.png"))
    if report.structure_found:
        found = f"{report.message} Clusters: {' | '.join(report.clusters['channels'])}."
    else:
        found = report.message
    # The same estimator on channels with planted groups, so that a reader sees what structure looks like.
    planted, groups = make_channel_groups(600, 12, 3, drivers="mixed", random_state=0)
    planted_X, planted_y = make_windows(planted, 96, 24)
    planted_model = ChannelClusterForecaster("linear", n_clusters=3, max_epochs=30, random_state=0, verbose=0)
    planted_report = planted_model.fit(planted_X, planted_y).cluster_report()
    planted_ari = adjusted_rand_score(groups, planted_model.channel_labels_)
    planted_line = (
        f"On 12 planted channels in 3 groups (sine, square wave, random walk) it finds: {planted_report.message} "
        f"ARI against the planted groups {planted_ari:.2f}."
    )
    section = (
        f"<p>{frame.shape[1]} US macro series (growth rates and changes, 1959–2009), z-scored on the first "
        f"{n_train} quarters; windows of {lookback} quarters forecast the next {horizon}. "
        f"{html.escape(found)} {html.escape(planted_line)} A year ahead these series are barely predictable; the "
        "benchmark (benchmarks/bench_ccm.py) compares CCM with a base given the same tuning budget.</p>"
        + table.to_html(index=False, float_format=lambda v: f"{v:.3f}")
    )
    return TourStep(
        method="ChannelClusterForecaster",
        data=f"macrodata, {len(X)} windows × {lookback} quarters × {frame.shape[1]} series",
        fit_time=fit_time,
        quality=(
            f"test MSE {errors['CCM (K = 4)']:.3f} vs base {errors['DLinear base (K = 1)']:.3f}, last value "
            f"{errors['last value']:.3f}, mean {errors['training mean']:.3f}"
        ),
        figures=paths,
        html=section,
        printed=[f"CCM on macrodata: {report.message}", planted_line],
    )


def sesa_step(data):
    """SESARanker on the standard library's docs: find a docstring from its summary, explained by modules."""
    import matplotlib.pyplot as plt
    from sklearn.feature_extraction.text import TfidfVectorizer

    from .datasets import load_docs_ranking
    from .ranking import SESARanker, grouped_ndcg_score

    docs = load_docs_ranking(random_state=0)
    frame = docs.frame.assign(item_modules=[[docs.concept_names[k]] for k in docs.item_concepts.argmax(1)])
    test = (frame["split"] == "test").to_numpy()
    ranker = SESARanker(
        encoder="minilm", shared_encoder=True, concepts=docs.concept_names, concept_texts=docs.concept_texts,
        item_concepts_col="item_modules", max_epochs=60, patience=10, random_state=0,
    )
    start = time.perf_counter()
    ranker.fit(frame[~test], docs.target[~test], item_concepts=docs.item_concepts[~test],
               query_concepts=docs.query_concepts[~test])
    fit_time = time.perf_counter() - start
    ndcg = ranker.score(frame[test], docs.target[test])
    train_texts = pd.concat([frame["query"][~test], frame["item"][~test]])
    vectorizer = TfidfVectorizer().fit(train_texts)
    cosine = np.asarray(vectorizer.transform(frame["query"][test]).multiply(vectorizer.transform(frame["item"][test])).sum(1))
    tfidf = grouped_ndcg_score(docs.target[test], cosine.ravel(), frame["qid"][test])

    # One test query: its candidates ranked, and the modules behind the top three scores.
    query_rows = np.flatnonzero((frame["qid"] == frame["qid"][test].iloc[0]).to_numpy())
    candidates = frame.iloc[query_rows]
    order = np.argsort(-ranker.predict(candidates), kind="stable")[:3]
    explanation = ranker.explain(candidates.iloc[order], top_k=3)
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharex=True)
    grades = {2: " (its own body)", 1: " (same module)", 0: ""}
    for position, (ax, (_, table)) in enumerate(zip(axes, explanation.groupby("row"))):
        row = query_rows[order[position]]
        ax.barh(table["concept"][::-1], table["contribution"][::-1], color="tab:blue")
        ax.set_title(f"#{position + 1}{grades[int(docs.target[row])]}: {frame['item'].iloc[row][:34]}…", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[1].set_xlabel("contribution to the score")
    figure.suptitle(f"Query ({frame['qid'].iloc[query_rows[0]]}): {frame['query'].iloc[query_rows[0]][:70]}", fontsize=9)
    paths = [data.save(figure, "sesa_explanations.png")]
    section = (
        f"<p>The Python standard library's docstrings: each query is an object's summary line, its "
        f"{len(query_rows)} candidates docstring bodies (its own: relevance 2; another object of the same module: "
        f"1), 10 of them the most similar by tf-idf. The {ranker.n_concepts_} axes are modules, pretrained on the "
        f"module docstrings; each item also lists its module. Test NDCG@10 {ndcg:.3f} on objects never seen in "
        f"training (tf-idf cosine: {tfidf:.3f}). Every score is the sum of its modules' contributions; the bars "
        "are the three largest for the top three candidates of one query. benchmarks/bench_sesa.py compares the "
        "encoders, tf-idf, ESA and LightGBM here, on a synthetic task and on ESCO.</p>"
        + explanation.head(9).to_html(index=False, float_format=lambda v: f"{v:.3f}")
    )
    return TourStep(
        method="SESARanker",
        data=f"stdlib docs, {int((~test).sum())} training pairs, {ranker.n_concepts_} modules",
        fit_time=fit_time,
        quality=f"test NDCG@10 {ndcg:.3f} (tf-idf {tfidf:.3f}); contributions sum to the scores",
        figures=paths,
        html=section,
    )


def causal_step(data):
    """Splice decompositions into SmolLM2 and read how far its next-token distribution moves."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from .activations import TransformerActivations
    from .decomposition import MatchingPursuitSAE, SNMFDecomposer
    from .intervention import loss_recovered

    layer, sizes = 15, (8, 32)
    fit_texts, held_out = data.texts[:300], data.texts[-40:]
    acts = TransformerActivations("smollm2", layer=layer, site="mlp", max_length=64, verbose=data.verbose).fit()
    X = acts.transform(fit_texts)
    rows, fit_time = [], 0.0
    for n_components in sizes:
        candidates = {
            "PCA": PCA(n_components, random_state=0),
            "SNMF dense": SNMFDecomposer(n_components, sparsity=None, max_iter=100, patience=10, random_state=0),
            "SNMF 1 %": SNMFDecomposer(n_components, sparsity=0.01, max_iter=100, patience=10, random_state=0),
            "MP-SAE k=4": MatchingPursuitSAE(n_components=4 * n_components, k=4, max_epochs=5, random_state=0),
        }
        for name, decomposition in candidates.items():
            start = time.perf_counter()
            decomposition.fit(X)
            fit_time += time.perf_counter() - start
            result = loss_recovered(decomposition, held_out, model="smollm2", layer=layer, site="mlp", max_length=64,
                                    ablation="zero")
            rows.append({"decomposition": name, "components": n_components, **result.iloc[0].to_dict()})
    table = pd.DataFrame(rows)
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for name, part in table.groupby("decomposition", sort=False):
        axis.plot(part["l0"], part["kl_spliced"], "o-", label=name)
    axis.set(xscale="log", xlabel="L0 (non-zero codes per token)", ylabel="KL(clean ‖ spliced), nats/token",
             title=f"SmolLM2-135M block {layer} MLP, held-out sentences")
    axis.legend(fontsize=8)
    path = data.save(figure, "causal_loss_recovered.png")
    shown = table[["decomposition", "components", "r2", "l0", "fraction_recovered", "kl_spliced",
                   "ce_clean", "ce_spliced", "ce_ablated"]]
    section = (
        f"<p>Each decomposition is fitted on the block-{layer} MLP activations of {X.shape[0]} tokens "
        f"({len(fit_texts)} docstring sentences), then spliced into SmolLM2 on {len(held_out)} other sentences "
        f"({int(table['n_tokens'].iloc[0])} predicted tokens). Fraction recovered = (CE ablated − CE spliced) / "
        "(CE ablated − CE clean), with zero ablation. Ablating this one MLP block moves SmolLM2's CE little, so "
        "that ratio is noisy and can leave [0, 1]; the figure shows the KL of the next-token distributions, "
        "lower is better.</p>" + shown.to_html(index=False, float_format=lambda v: f"{v:.3f}")
    )
    best = table.loc[table["kl_spliced"].idxmin()]
    return TourStep(
        method="loss_recovered (intervention)",
        data=f"SmolLM2 L{layer} MLP, {X.shape[0]}×{X.shape[1]}",
        fit_time=fit_time,
        quality=(
            f"KL(clean‖spliced) at {sizes[-1]} components: "
            f"{', '.join(f'{r.decomposition} {r.kl_spliced:.3f}' for r in table.itertuples() if r.components == sizes[-1])}"
            f" (lowest: {best['decomposition']} {int(best['components'])})"
        ),
        figures=[path],
        html=section,
    )


def steering_step(data):
    """Steer SmolLM2 along SNMF features at calibrated KL and rate the continuations offline."""
    import matplotlib.pyplot as plt

    from .activations import TransformerActivations, load_language_model
    from .datasets import load_python_docs_topics
    from .decomposition import DiffMeanDirections, SNMFDecomposer
    from .intervention import evaluate_steering, top_contexts

    layer, n_features, kl_targets = 15, 4, (0.05, 0.1, 0.25)
    docs = load_python_docs_topics(n_per_class=60, random_state=0)
    acts = TransformerActivations("smollm2", layer=layer, site="mlp", max_length=64, verbose=data.verbose).fit()
    X = acts.transform(docs.data)
    table = acts.token_table()
    labels = docs.target_names[docs.target[table["document"].to_numpy()]]
    start = time.perf_counter()
    snmf = SNMFDecomposer(32, sparsity=0.01, max_iter=100, patience=10, random_state=0).fit(X)
    diffmean = DiffMeanDirections(device="cpu").fit(X, labels)
    fit_time = time.perf_counter() - start
    codes = snmf.transform(X)
    chosen = np.argsort(-(codes > 0).sum(0))[:n_features]  # the most often active features
    rng = np.random.default_rng(0)
    random = rng.normal(size=(n_features, X.shape[1]))
    directions = np.concatenate([snmf.feature_directions()[chosen], diffmean.components_, random])
    methods = np.repeat(["SNMF", "DiffMean", "random"], [n_features, len(diffmean.classes_), n_features])
    scores = np.concatenate([codes[:, chosen], diffmean.transform(X), X @ random.T], axis=1)
    concepts = top_contexts(scores, table["context"].tolist(), n_top=25)
    lm = load_language_model("smollm2")
    result = evaluate_steering(directions, concepts, model=lm, layer=layer, site="mlp", kl_targets=kl_targets,
                               signs=(1,), n_samples=2, max_new_tokens=20, random_state=0)
    result["method"] = methods[result["direction"]]
    steered = result[result["sign"] == 1]
    curve = steered.groupby(["method", "kl_target"])["score"].mean().unstack(0)
    figure, axis = plt.subplots(figsize=(5, 3.2))
    for method in curve.columns:
        axis.plot(curve.index, curve[method], "o-", label=method)
    floor = result.loc[result["sign"] == 0, "score"].mean()
    axis.axhline(floor, color="grey", linestyle=":", label="unsteered")
    axis.set(xscale="log", xlabel="target KL after 'I think that' (nats)", ylabel="score (0–2, offline judges)",
             title=f"Steering SmolLM2 block {layer} MLP")
    axis.legend(fontsize=8)
    path = data.save(figure, "steering_score_vs_kl.png")

    feature = 0  # the most often active SNMF feature, shown before and after steering
    before = result[(result["sign"] == 0) & (result["direction"] == feature)]["continuation"].tolist()[:2]
    after = steered[(steered["direction"] == feature) & (steered["kl_target"] == max(kl_targets))]
    printed = [f"Steering SmolLM2 block {layer} along SNMF feature {chosen[feature]} "
               f"(top context: {concepts[feature][0][:60]!r}), KL {max(kl_targets)}:"]
    one_line = lambda text: " ".join(f"I think that{text}".split())[:100]  # noqa: E731
    printed += [f"  before: {one_line(text)}" for text in before]
    printed += [f"  after:  {one_line(text)}" for text in after["continuation"].tolist()[:2]]
    rows = "".join(
        f"<tr><td>{html.escape(kind)}</td><td>I think that{html.escape(text)}</td></tr>"
        for kind, texts in (("unsteered", before), (f"SNMF {chosen[feature]}, KL {max(kl_targets)}",
                                                       after["continuation"].tolist()[:2]))
        for text in texts
    )
    section = (
        f"<p>SNMF (32 features, 1 % sparsity) and DiffMean (one direction per package) on the block-{layer} MLP "
        f"activations of {X.shape[0]} tokens of {len(docs.data)} docstring sentences; the {n_features} most often "
        "active SNMF features, the four DiffMean directions and random directions are steered with α calibrated "
        "to each target KL of the next-token distribution after 'I think that'. Offline judges (see the user "
        "guide's steering page): concept presence from the direction's logit-lens vocabulary and the MiniLM "
        "similarity to its top-activating contexts, fluency from the unsteered model's cross-entropy; the score "
        f"is their harmonic mean (0–2). Unsteered floor {floor:.3f}.</p>"
        + curve.to_html(float_format=lambda v: f"{v:.3f}")
        + "<table><tr><th>model</th><th>continuation</th></tr>" + rows + "</table>"
    )
    best = curve.loc[max(kl_targets)]
    return TourStep(
        method="evaluate_steering (intervention)",
        data=f"SmolLM2 L{layer} MLP, {X.shape[0]}×{X.shape[1]}",
        fit_time=fit_time,
        quality=f"score at KL {max(kl_targets)}: " + ", ".join(f"{m} {best[m]:.2f}" for m in curve.columns)
        + f" (unsteered {floor:.2f})",
        figures=[path],
        html=section,
        printed=printed,
    )


STEPS = [snmf_step, local_id_step, mp_sae_step, diffroar_step, sdm_step, consistency_step, ccm_step, sesa_step,
         causal_step, steering_step]
# Console width the printed table is wrapped to.
TABLE_WIDTH = 100


def _step_name(step):
    return step.__name__.removesuffix("_step")


def format_table(table, width=TABLE_WIDTH):
    """The tour's table as text no wider than ``width``: long cells wrap inside their column."""
    columns = list(table.columns)
    cells = [[str(value) for value in row] for row in table.itertuples(index=False)]
    natural = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]
    # Narrow columns keep their width; the widest ones share what is left.
    widths = list(natural)
    gaps = 2 * (len(columns) - 1)
    while sum(widths) + gaps > width:
        widest = int(np.argmax(widths))
        widths[widest] -= 1
    lines = []

    def emit(row):
        wrapped = [textwrap.wrap(cell, widths[i]) or [""] for i, cell in enumerate(row)]
        for k in range(max(len(parts) for parts in wrapped)):
            parts = [(w[k] if k < len(w) else "").ljust(widths[i]) for i, w in enumerate(wrapped)]
            lines.append("  ".join(parts).rstrip())

    emit(columns)
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        emit(row)
    return "\n".join(lines)


def _write_html(steps, table, out):
    sections = []
    for step in steps:
        images = "".join(f'<img src="{path.name}" alt="{step.method}">' for path in step.figures)
        sections.append(f"<h2>{step.method}</h2>{step.html}{images}")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>sklearn_interp tour</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}</style></head><body><h1>sklearn_interp tour</h1>"
        + table.to_html(index=False)
        + "".join(sections)
        + "</body></html>"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def run_tour(out="tour_output", *, n_sentences=1000, verbose=0, steps=None, log=None):
    """Run every step and write the table, figures and page to ``out``.

    Parameters
    ----------
    out : str or path, default="tour_output"
    n_sentences : int, default=1000
        Docstring sentences embedded for the language-model steps.
    verbose : int, default=0
        0: no progress bars (the library's or Hugging Face's); 1: the bars.
    steps : list of str, default=None
        Names of the steps to run (``"snmf"``, ``"local_id"``, ...); all by
        default.
    log : callable, default=None
        Called with one line when each step is done (``print`` in the
        console tour).

    Returns
    -------
    table : pandas.DataFrame
        One row per estimator: method, data, fit time (s) and quality.
    """
    import matplotlib

    matplotlib.use("Agg")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = STEPS if steps is None else [step for step in STEPS if _step_name(step) in set(steps)]
    unknown = sorted(set(steps or ()) - {_step_name(step) for step in STEPS})
    if unknown:
        raise ValueError(f"Unknown tour steps {unknown}; the steps are {[_step_name(s) for s in STEPS]}.")
    data = TourData(out=out, n_sentences=n_sentences, verbose=verbose)
    steps = []
    from .activations._language_model import _quiet_transformers

    with _quiet_transformers(verbose):
        for position, step in enumerate(chosen, start=1):
            start = time.perf_counter()
            steps.append(step(data))
            if log is not None:
                log(f"[{position}/{len(chosen)}] {steps[-1].method}: done in {time.perf_counter() - start:.0f} s")
    table = pd.DataFrame(
        {
            "method": [s.method for s in steps],
            "data": [s.data for s in steps],
            "fit time (s)": [round(s.fit_time, 1) for s in steps],
            "quality": [s.quality for s in steps],
        }
    )
    _write_html(steps, table, out)
    table.attrs["printed"] = [line for step in steps for line in step.printed]
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tour_output", help="folder for figures and index.html")
    parser.add_argument("--n-sentences", type=int, default=1000, help="docstring sentences to embed")
    parser.add_argument("--verbose", action="store_true", help="show progress bars")
    parser.add_argument("--steps", nargs="+", default=None, help="run only these steps (snmf, local_id, ...)")
    args = parser.parse_args(argv)
    table = run_tour(
        args.out, n_sentences=args.n_sentences, verbose=int(args.verbose), steps=args.steps,
        log=lambda line: print(line, flush=True),
    )
    print()
    print(format_table(table))
    for line in table.attrs.get("printed", []):
        print(textwrap.fill(line, TABLE_WIDTH, subsequent_indent="    ", break_long_words=False))
    print(f"\nFigures and page: {Path(args.out) / 'index.html'}")


if __name__ == "__main__":
    main()
