"""Does a sentence-level DiffMean direction make SmolLM2 say its word? The check behind the steering guide.

For each word, DiffMean of the block-``--layer`` MLP activations (every
token) of docstring sentences containing the word against sentences without
it, steered at calibrated KL targets after "I think that": how often the word
appears in 16 sampled continuations of 30 tokens (steered and unsteered,
the same seed), and the probability of the word as the very next token,
clean, steered, and the largest over 8 random directions steered to the same
KL.

Run: ``.venv/bin/python benchmarks/word_steering.py`` (about 5 minutes on
two cores).
"""

from __future__ import annotations

import argparse
import re
import warnings

import numpy as np
import pandas as pd
import torch

from sklearn_interp.activations import load_language_model
from sklearn_interp.datasets import load_python_docs
from sklearn_interp.decomposition import DiffMeanDirections
from sklearn_interp.intervention import calibrate_alpha, read_activations, sample_continuations, steering_kl
from sklearn_interp.intervention._steering import DEFAULT_PROMPT, _last_log_probs, _prompt_ids, _unit_directions


def _has(word, text):
    return re.search(rf"\b{word}\b", text.lower()) is not None


def _count(word, texts):
    return sum(len(re.findall(rf"\b{word}\b", text.lower())) for text in texts)


def _word_probability(model, tokenizer, layer, directions, alphas, word_ids):
    """Probability of the word's tokens right after the prompt, one per direction (clean for alphas=None)."""
    prompt_ids = _prompt_ids(tokenizer, DEFAULT_PROMPT, "cpu")
    if alphas is None:
        log_probs = _last_log_probs(model, prompt_ids, 1, layer, "mlp")
    else:
        units = _unit_directions(model, layer, "mlp", directions)
        log_probs = _last_log_probs(model, prompt_ids, len(units), layer, "mlp", units, alphas)
    return log_probs.exp()[:, word_ids].sum(-1).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", nargs="+", default=["file", "thread", "email"])
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--kl-targets", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--sentences", type=int, default=120, help="with and without the word, each")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    lm = load_language_model("smollm2", device="cpu")
    model, tokenizer = lm
    corpus = load_python_docs(n_sentences=4000).data
    sampling = dict(n_samples=16, max_new_tokens=30, random_state=0)
    _, unsteered = sample_continuations(model, tokenizer, args.layer, "mlp", **sampling)
    random = np.random.default_rng(0).normal(size=(8, model.config.intermediate_size))
    rows = []
    for word in args.words:
        with_word = [s for s in corpus if _has(word, s)][: args.sentences]
        without = [s for s in corpus if not _has(word, s)][: args.sentences]
        X = [read_activations(lm, texts, layer=args.layer, site="mlp", max_length=64) for texts in (with_word, without)]
        labels = np.r_[np.ones(len(X[0])), np.zeros(len(X[1]))]
        direction = DiffMeanDirections(device="cpu").fit(np.concatenate(X), labels).components_[1:2]
        word_ids = sorted({tokenizer.convert_tokens_to_ids(t) for t in (word, "Ġ" + word)} - {tokenizer.unk_token_id})
        clean = float(_word_probability(model, tokenizer, args.layer, None, None, word_ids)[0])
        for target in args.kl_targets:
            alpha = calibrate_alpha(model, tokenizer, args.layer, "mlp", direction, target_kl=target)
            _, steered = sample_continuations(model, tokenizer, args.layer, "mlp", direction, alpha, **sampling)
            random_alphas = calibrate_alpha(model, tokenizer, args.layer, "mlp", random, target_kl=target)
            rows.append({
                "word": word, "kl": target,
                "reached kl": float(steering_kl(model, tokenizer, args.layer, "mlp", direction, alpha)[0]),
                "count steered": _count(word, steered), "count unsteered": _count(word, unsteered),
                "p clean": clean,
                "p steered": float(_word_probability(model, tokenizer, args.layer, direction, alpha, word_ids)[0]),
                "p random max": float(_word_probability(model, tokenizer, args.layer, random, random_alphas,
                                                        word_ids).max()),
            })
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1,
                                                    float_format=lambda v: f"{v:.3g}"), flush=True)
    print(f"\nSmolLM2 block {args.layer} MLP, prompt {DEFAULT_PROMPT!r}; counts over 16 continuations of 30 tokens:")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
