"""Does a drop in mean local ID precede a gain? MiniLM fine-tuned on standard-library docstring topics.

Ruppik et al. (2025) propose that "reductions in the mean local dimension
tend to accompany and predict subsequent performance gains". This script
tests that on real fine-tuning runs, with :class:`LocalIDTracker`:

- task: which package (asyncio, email, logging, tkinter) a docstring
  sentence of Python's standard library documents
  (``load_python_docs_topics``); a held-out validation split, and sentences
  of two packages the classifier never sees (unittest, xml) as the
  out-of-domain split;
- model: the bundled all-MiniLM-L6-v2 with a linear head on its
  mean-pooled last layer, fine-tuned end to end (AdamW, batches of 16);
- every ``--every`` steps, a Hugging Face checkpoint folder is written and
  validation accuracy and loss are measured; afterwards
  :meth:`LocalIDTracker.record_checkpoints` reads the token embeddings of a
  fixed sample of texts of each split at two layers from every
  checkpoint and records their mean local ID (``n_neighbors`` 128, the
  paper's, on a fixed sample of tokens);
- per seed, :meth:`LocalIDTracker.lag_correlation`: Pearson's r between
  the fall of the mean LID from one checkpoint to the next and the gain in
  validation accuracy ``lag`` checkpoints later. The heuristic predicts
  r > 0 at lag 1 (a drop precedes a gain).

The verdict per split and layer pools the seeds' lag-1 correlations by
Fisher's z (each ``atanh(r)`` weighted by its ``n_pairs − 3``, the inverse
of its variance): "supported" when the pooled z-test is positive at the
two-sided 5 % level, "contradicted" when it is negative at that level,
"undecided" otherwise. Six splits × layers are tested, so one nominal
5 % result among them is what chance alone gives about a quarter of the
time; successive checkpoints are also not independent, which the test
ignores.

    python benchmarks/bench_lid_training.py [--seeds 0 1 2] [--steps 150] [--every 10] [--figure PNG] [--table CSV]

Whole run (3 seeds) about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sklearn_interp.activations._language_model import _quiet_transformers
from sklearn_interp.activations._transformer import resolve_model_path
from sklearn_interp.datasets import load_python_docs_topics
from sklearn_interp.manifold import LocalIDTracker

SEEN = ("asyncio", "email", "logging", "tkinter")
UNSEEN = ("unittest", "xml")
LAYERS = (2, 5)
MAX_LENGTH = 64


def _splits(seed, n_valid, n_probe):
    """Train and validation sentences of the seen packages; probe texts of train, valid and unseen packages."""
    rng = np.random.default_rng(seed)
    seen = load_python_docs_topics(SEEN)
    unseen = load_python_docs_topics(UNSEEN)
    order = rng.permutation(len(seen.data))
    valid, train = order[:n_valid], order[n_valid:]
    texts = np.asarray(seen.data, dtype=object)
    probes = {
        "train": list(texts[rng.choice(train, n_probe, replace=False)]),
        "valid": list(texts[rng.choice(valid, n_probe, replace=False)]),
        "ood": list(np.asarray(unseen.data, dtype=object)[rng.choice(len(unseen.data), n_probe, replace=False)]),
    }
    return (list(texts[train]), seen.target[train]), (list(texts[valid]), seen.target[valid]), probes


class _TopicClassifier(torch.nn.Module):
    def __init__(self, encoder, n_classes, generator):
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(encoder.config.hidden_size, n_classes)
        with torch.no_grad():
            bound = 1 / np.sqrt(encoder.config.hidden_size)
            self.head.weight.copy_(torch.empty_like(self.head.weight).uniform_(-bound, bound, generator=generator))
            self.head.bias.zero_()

    def forward(self, encoded):
        hidden = self.encoder(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1))


def _evaluate(model, tokenizer, texts, target, batch_size=64):
    model.eval()
    losses, correct = [], 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                max_length=MAX_LENGTH, return_tensors="pt")
            logits = model(encoded)
            labels = torch.as_tensor(target[start:start + batch_size])
            losses.append(torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item())
            correct += int((logits.argmax(1) == labels).sum())
    model.train()
    return {"val_accuracy": correct / len(texts), "val_loss": sum(losses) / len(texts)}


def run_seed(seed, args, folder):
    """Fine-tune one run, writing checkpoints into ``folder``; return its tracker."""
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)  # dropout inside MiniLM
    (train_texts, train_target), (valid_texts, valid_target), probes = _splits(seed, args.n_valid, args.n_probe)
    path = resolve_model_path("all-MiniLM-L6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path)
    model = _TopicClassifier(encoder, len(SEEN), torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    batches = np.random.default_rng([seed, 1]).permutation(
        np.resize(np.arange(len(train_texts)), args.steps * args.batch_size)
    ).reshape(args.steps, args.batch_size)
    checkpoints, metrics = [], []

    def checkpoint(step):
        target = Path(folder) / f"checkpoint-{step}"
        model.encoder.save_pretrained(target)
        tokenizer.save_pretrained(target)
        checkpoints.append(target)
        metrics.append(_evaluate(model, tokenizer, valid_texts, valid_target))

    model.train()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            checkpoint(step)
        if step == args.steps:
            break
        rows = batches[step]
        encoded = tokenizer([train_texts[i] for i in rows], padding=True, truncation=True,
                            max_length=MAX_LENGTH, return_tensors="pt")
        loss = torch.nn.functional.cross_entropy(model(encoded), torch.as_tensor(train_target[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tracker = LocalIDTracker(n_neighbors=args.n_neighbors, n_samples=args.n_tokens, random_state=seed, device="cpu")
    tracker.record_checkpoints(checkpoints, probes, layer=list(LAYERS), metrics=metrics, max_length=MAX_LENGTH)
    return tracker


def _mean_sd(values):
    """Mean and standard deviation over seeds of the finite values (NaN where there are too few)."""
    finite = values[np.isfinite(values)]
    mean = finite.mean() if len(finite) else float("nan")
    return mean, (finite.std(ddof=1) if len(finite) > 1 else float("nan"))


def pooled_correlation(correlations, n_pairs):
    """Fisher's pooled correlation of independent runs, its z statistic and two-sided p-value."""
    usable = np.isfinite(correlations) & (n_pairs > 3)
    if not usable.any():
        return float("nan"), float("nan"), float("nan")
    z = np.arctanh(np.clip(correlations[usable], -0.999999, 0.999999))
    weights = n_pairs[usable] - 3.0
    pooled = float((weights * z).sum() / weights.sum())
    statistic = pooled * np.sqrt(weights.sum())
    return float(np.tanh(pooled)), float(statistic), float(math.erfc(abs(statistic) / math.sqrt(2)))


def verdict(statistic, p_value, level=0.05):
    if not np.isfinite(statistic) or p_value >= level:
        return "undecided"
    return "supported" if statistic > 0 else "contradicted"


def summarise(tables, correlations):
    """Per split and layer: LID and accuracy at the start and end, and the lag correlations over seeds."""
    rows = []
    for (split, layer), group in correlations.groupby(["split", "layer"], sort=False):
        row = {"split": split, "layer": layer}
        for lag, at_lag in group.groupby("lag"):
            values = at_lag["correlation"].to_numpy()
            mean, spread = _mean_sd(values)
            row[f"r lag {lag}"] = f"{mean:+.2f} ± {spread:.2f}"
            if lag == 1:
                pooled, statistic, p_value = pooled_correlation(values, at_lag["n_pairs"].to_numpy())
                row["seeds r>0"] = f"{int((values > 0).sum())}/{len(values)}"
                row["pooled r (p)"] = f"{pooled:+.2f} ({p_value:.3f})"
                row["verdict (lag 1)"] = verdict(statistic, p_value)
        start = tables[(tables["split"] == split) & (tables["layer"] == layer)]
        first, last = start["step"].min(), start["step"].max()
        row["mean LID start → end"] = (
            f"{start[start['step'] == first]['mean_lid'].mean():.2f} → {start[start['step'] == last]['mean_lid'].mean():.2f}"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def plot(tables, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One panel above the other, so that the figure stays legible at a text column's width.
    figure, axes = plt.subplots(len(LAYERS), 1, figsize=(6.4, 6.4), sharex=True)
    for axis, layer in zip(axes, LAYERS):
        at_layer = tables[tables["layer"] == layer]
        for split, colour in (("train", "tab:blue"), ("valid", "tab:orange"), ("ood", "tab:green")):
            curve = at_layer[at_layer["split"] == split].groupby("step")["mean_lid"].agg(["mean", "std"])
            axis.plot(curve.index, curve["mean"], color=colour, marker=".", label=f"mean LID, {split}")
            axis.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                              color=colour, alpha=0.15)
        axis.set(ylabel=f"mean local ID, block {layer}")
        accuracy_axis = axis.twinx()
        accuracy = at_layer[at_layer["split"] == "valid"].groupby("step")["val_accuracy"].mean()
        accuracy_axis.plot(accuracy.index, accuracy, color="black", linestyle="--", label="validation accuracy")
        accuracy_axis.set(ylim=(0, 1), ylabel="validation accuracy")
        handles = axis.get_legend_handles_labels()[0] + accuracy_axis.get_legend_handles_labels()[0]
    axes[-1].set_xlabel("fine-tuning step")
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False)
    figure.suptitle(f"MiniLM fine-tuned on docstring topics, {tables['seed'].nunique()} seeds (mean ± sd)", fontsize=11)
    figure.tight_layout(rect=(0, 0.09, 1, 1))
    figure.savefig(path, dpi=110)
    print(f"figure written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=10, help="steps between checkpoints")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--n-valid", type=int, default=300, help="validation sentences")
    parser.add_argument("--n-probe", type=int, default=120, help="texts per split whose tokens are embedded")
    parser.add_argument("--n-tokens", type=int, default=1500, help="fixed token sample per split and layer")
    parser.add_argument("--n-neighbors", type=int, default=128)
    parser.add_argument("--figure", type=Path, default=None, help="where to write the figure (PNG)")
    parser.add_argument("--table", type=Path, default=None, help="where to write every tracker row (CSV)")
    args = parser.parse_args(argv)

    tables, correlations = [], []
    for seed in args.seeds:
        start = time.perf_counter()
        # No 'Loading weights' bar per checkpoint.
        with tempfile.TemporaryDirectory() as folder, _quiet_transformers(verbose=0):
            tracker = run_seed(seed, args, folder)
        table = tracker.table().assign(seed=seed)
        lagged = tracker.lag_correlation("val_accuracy", lags=(0, 1, 2)).assign(seed=seed)
        tables.append(table)
        correlations.append(lagged)
        accuracy = table.groupby("step")["val_accuracy"].first()
        print(f"seed {seed}: validation accuracy {accuracy.iloc[0]:.2f} → {accuracy.iloc[-1]:.2f} "
              f"over {args.steps} steps, {time.perf_counter() - start:.0f} s")
    tables, correlations = pd.concat(tables, ignore_index=True), pd.concat(correlations, ignore_index=True)

    print(f"\nMean LID (n_neighbors={args.n_neighbors}, {args.n_tokens} tokens) against validation accuracy, "
          f"checkpoints every {args.every} steps; r: the fall of the mean LID against the accuracy gain "
          f"'lag' checkpoints later (mean ± sd over {len(args.seeds)} seeds)\n")
    print(summarise(tables, correlations).to_string(index=False))
    per_seed = correlations[correlations["lag"] == 1].pivot(index=["split", "layer"], columns="seed", values="correlation")
    print("\nr at lag 1, per seed\n")
    print(per_seed.round(2).to_string())
    if args.table is not None:
        tables.to_csv(args.table, index=False)
    if args.figure is not None:
        plot(tables, args.figure)


if __name__ == "__main__":
    main()
