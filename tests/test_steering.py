"""Steering evaluation: DiffMean directions, calibrated α, seeded continuations, the offline judges, detection.

Every test runs on a tiny random Llama (sklearn_interp.testing.tiny_causal_lm); what the protocol finds on SmolLM2
is measured by benchmarks/bench_steering.py and benchmarks/word_steering.py.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer

from sklearn_interp.decomposition import DiffMeanDirections
from sklearn_interp.intervention import (
    calibrate_alpha,
    concept_detection,
    evaluate_steering,
    judge_continuations,
    logit_lens,
    read_activations,
    sample_continuations,
    steering_kl,
    top_contexts,
)
from sklearn_interp.intervention._steering import _prompt_ids
from sklearn_interp.testing import tiny_causal_lm, zen_of_python

PROMPT = "beautiful is better than"  # the tiny vocabulary is the Zen of Python's words
N_LAYERS, WIDTH, MLP_WIDTH = 3, 32, 64


@pytest.fixture(scope="module")
def lm():
    return tiny_causal_lm(n_layers=N_LAYERS, width=WIDTH, mlp_width=MLP_WIDTH, random_state=0)


def _width(site):
    return MLP_WIDTH if site == "mlp" else WIDTH


# -- DiffMeanDirections ------------------------------------------------------------------------------------------


@given(seed=st.integers(0, 2**16), n_classes=st.integers(2, 5))
@settings(max_examples=20)
def test_diffmean_directions_match_a_numpy_closed_form(seed, n_classes):
    rng = np.random.default_rng(seed)
    y = np.r_[np.arange(n_classes), rng.integers(0, n_classes, size=40)]
    X = rng.normal(size=(len(y), 6)) + 3.0 * np.eye(6)[y % 6]
    diffmean = DiffMeanDirections(dtype="float64", device="cpu").fit(X, y)
    for c in range(n_classes):
        difference = X[y == c].mean(0) - X[y != c].mean(0)
        np.testing.assert_allclose(diffmean.components_[c], difference / np.linalg.norm(difference), rtol=1e-9)
        np.testing.assert_allclose(diffmean.norms_[c], np.linalg.norm(difference), rtol=1e-9)
    np.testing.assert_allclose(diffmean.transform(X), X @ diffmean.components_.T, rtol=1e-9)
    assert diffmean.class_counts_.sum() == len(y)


def test_diffmean_errors_name_the_problem():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="at least two concepts"):
        DiffMeanDirections(device="cpu").fit(X, np.zeros(10))
    with pytest.raises(ValueError, match="same mean"):
        DiffMeanDirections(device="cpu").fit(np.ones((4, 3)), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="one label per row"):
        DiffMeanDirections(device="cpu").fit(X, [0, 1])


# -- calibrated steering strength --------------------------------------------------------------------------------


@given(layer=st.integers(0, N_LAYERS - 1), site=st.sampled_from(["mlp", "residual"]), seed=st.integers(0, 2**16),
       sign=st.sampled_from([1, -1]))
@settings(max_examples=15)
def test_kl_grows_monotonically_with_the_step_up_to_the_protocols_largest_target(lm, layer, site, seed, sign):
    model, tokenizer = lm
    direction = np.random.default_rng(seed).normal(size=_width(site))
    largest = calibrate_alpha(model, tokenizer, layer, site, direction, target_kl=0.5, prompt=PROMPT, sign=sign)[0]
    alphas = np.linspace(0.0, largest, 25)
    kl = steering_kl(model, tokenizer, layer, site, np.tile(direction, (25, 1)), alphas, prompt=PROMPT)
    assert kl[0] < 1e-12
    assert np.all(np.diff(kl) > 0), kl


@pytest.mark.parametrize("site", ["mlp", "attn", "residual"])
@pytest.mark.parametrize("target", [0.025, 0.1, 0.5])
def test_calibration_hits_its_target_for_either_sign(lm, site, target):
    model, tokenizer = lm
    directions = np.random.default_rng(1).normal(size=(4, _width(site)))
    for sign in (1, -1):
        alphas = calibrate_alpha(model, tokenizer, 1, site, directions, target_kl=target, prompt=PROMPT, sign=sign)
        assert np.all(np.sign(alphas) == sign)
        kl = steering_kl(model, tokenizer, 1, site, directions, alphas, prompt=PROMPT)
        assert np.all(np.abs(kl - target) <= 0.05 * target), (kl, target)


def test_batched_calibration_equals_one_direction_at_a_time(lm):
    model, tokenizer = lm
    directions = np.random.default_rng(2).normal(size=(6, MLP_WIDTH))
    together = calibrate_alpha(model, tokenizer, 2, "mlp", directions, target_kl=0.2, prompt=PROMPT)
    alone = [calibrate_alpha(model, tokenizer, 2, "mlp", d, target_kl=0.2, prompt=PROMPT)[0] for d in directions]
    # The same bisection decisions; float32 logits of a 6-row and a 1-row batch differ by rounding only.
    np.testing.assert_allclose(together, alone, rtol=1e-4)


def test_each_row_is_steered_by_its_own_step_only(lm):
    model, tokenizer = lm
    directions = np.random.default_rng(3).normal(size=(3, MLP_WIDTH))
    kl = steering_kl(model, tokenizer, 1, "mlp", directions, [0.0, 5.0, 0.0], prompt=PROMPT)
    assert kl[0] < 1e-6 and kl[2] < 1e-6 and kl[1] > 1e-3


def test_an_unreachable_target_is_a_clear_error_or_nan(lm):
    model, tokenizer = lm
    directions = np.random.default_rng(4).normal(size=(2, MLP_WIDTH))
    with pytest.raises(ValueError, match="cannot be reached"):
        calibrate_alpha(model, tokenizer, 1, "mlp", directions, target_kl=0.5, prompt=PROMPT, max_alpha=1e-3)
    alphas = calibrate_alpha(model, tokenizer, 1, "mlp", directions, target_kl=0.5, prompt=PROMPT, max_alpha=1e-3,
                             unreachable="nan")
    assert np.isnan(alphas).all()
    for bad, match in [(dict(target_kl=0), "target_kl"), (dict(target_kl=0.1, sign=2), "sign"),
                       (dict(target_kl=0.1, prompt=""), "prompt")]:
        with pytest.raises(ValueError, match=match):
            calibrate_alpha(model, tokenizer, 1, "mlp", directions, **{"prompt": PROMPT, **bad})
    with pytest.raises(ValueError, match="zero length"):
        calibrate_alpha(model, tokenizer, 1, "mlp", np.zeros(MLP_WIDTH), target_kl=0.1, prompt=PROMPT)
    with pytest.raises(ValueError, match="shape"):
        calibrate_alpha(model, tokenizer, 1, "mlp", np.ones(WIDTH), target_kl=0.1, prompt=PROMPT)


# -- seeded continuations ------------------------------------------------------------------------------------------


def test_a_zero_step_gives_the_unsteered_continuations(lm):
    model, tokenizer = lm
    directions = np.random.default_rng(5).normal(size=(3, MLP_WIDTH))
    sampling = dict(prompt=PROMPT, max_new_tokens=12, top_p=0.9, random_state=7)
    steered, _ = sample_continuations(model, tokenizer, 1, "mlp", directions, np.zeros(3), n_samples=2, **sampling)
    unsteered, _ = sample_continuations(model, tokenizer, 1, "mlp", n_samples=6, **sampling)
    assert steered == unsteered
    moved, _ = sample_continuations(model, tokenizer, 1, "mlp", directions, np.full(3, 40.0), n_samples=2,
                                    **sampling)
    assert moved != unsteered
    with pytest.raises(ValueError, match="give the directions too"):
        sample_continuations(model, tokenizer, 1, "mlp", alphas=np.zeros(3), n_samples=2, **sampling)
    with pytest.raises(ValueError, match="Give alphas"):
        sample_continuations(model, tokenizer, 1, "mlp", directions, n_samples=2, **sampling)


def test_the_same_seed_gives_the_same_continuations(lm):
    model, tokenizer = lm
    directions = np.random.default_rng(6).normal(size=(2, MLP_WIDTH))
    run = dict(model=lm, layer=1, site="mlp", kl_targets=(0.1,), signs=(1, -1), n_samples=3, max_new_tokens=8,
               prompt=PROMPT, top_p=0.9)
    first = evaluate_steering(directions, random_state=0, **run)
    again = evaluate_steering(directions, random_state=0, **run)
    other = evaluate_steering(directions, random_state=1, **run)
    assert first["continuation"].tolist() == again["continuation"].tolist()
    np.testing.assert_array_equal(first["score"], again["score"])
    assert first["continuation"].tolist() != other["continuation"].tolist()
    assert set(first["sign"]) == {0, 1, -1} and len(first) == 2 * 3 * 3
    steered = first[first["sign"] != 0]
    assert np.all(np.abs(steered["kl"] - 0.1) <= 0.005)
    assert first[["concept", "fluency", "score"]].apply(lambda c: c.between(0, 2).all()).all()


def test_sampling_keeps_only_the_nucleus(lm):
    model, tokenizer = lm
    ids = _prompt_ids(tokenizer, PROMPT, "cpu")
    with torch.no_grad():
        probabilities = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    best = int(probabilities.argmax())
    assert probabilities[best] > 0.01  # a tiny top_p keeps the most likely token only
    first, _ = sample_continuations(model, tokenizer, 1, "mlp", prompt=PROMPT, n_samples=5, max_new_tokens=1,
                                    top_p=1e-9, random_state=0)
    assert {row[0] for row in first} == {best}
    allowed = set(probabilities.topk(3).indices.tolist())
    drawn, _ = sample_continuations(model, tokenizer, 1, "mlp", prompt=PROMPT, n_samples=60, max_new_tokens=1,
                                    top_k=3, top_p=1.0, random_state=0)
    assert {row[0] for row in drawn} <= allowed and len({row[0] for row in drawn}) > 1


# -- the judges ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["mlp", "residual"])
def test_logit_lens_is_the_down_projection_final_norm_and_unembedding(lm, site):
    model, _ = lm
    directions = np.random.default_rng(7).normal(size=(3, _width(site)))
    units = torch.as_tensor(directions / np.linalg.norm(directions, axis=1, keepdims=True), dtype=torch.float32)
    residual = units @ model.model.layers[1].mlp.down_proj.weight.T if site == "mlp" else units
    rms = residual.pow(2).mean(-1, keepdim=True).add(model.config.rms_norm_eps).sqrt()
    logits = (residual / rms * model.model.norm.weight) @ model.lm_head.weight.T
    np.testing.assert_array_equal(logit_lens(model, 1, site, directions, n_tokens=7),
                                  logits.topk(7, dim=-1).indices.numpy())


def _judge(lm, continuations, vocabulary, concepts=None, embedder=None):
    model, tokenizer = lm
    unsteered, _ = sample_continuations(model, tokenizer, 1, "mlp", prompt=PROMPT, n_samples=8, max_new_tokens=12,
                                        top_p=0.9, random_state=0)
    centroids = self_similarity = None
    if concepts is not None:
        from sklearn_interp.intervention._judges import _concept_centroids

        centroids, self_similarity = _concept_centroids(embedder, concepts)
    return unsteered, judge_continuations(
        continuations, np.zeros(len(continuations), dtype=int), model=model, tokenizer=tokenizer,
        prompt_ids=_prompt_ids(tokenizer, PROMPT, "cpu"), vocabularies=[vocabulary], unsteered=unsteered,
        centroids=centroids, self_similarity=self_similarity, embedder=embedder, random_state=0,
    )


def test_fluency_rates_the_models_own_text_above_shuffled_and_repeated_text(lm):
    model, tokenizer = lm
    unsteered, _ = _judge(lm, [[5]], np.array([5]))
    rng = np.random.default_rng(0)
    shuffled = [list(rng.permutation(ids)) for ids in unsteered]
    repeated = [[ids[0]] * len(ids) for ids in unsteered]
    _, own = _judge(lm, unsteered, np.array([5]))
    _, salad = _judge(lm, shuffled, np.array([5]))
    _, loop = _judge(lm, repeated, np.array([5]))
    assert own["fluency"].mean() > 1.5
    assert salad["fluency"].mean() < own["fluency"].mean() - 0.5
    assert loop["fluency"].mean() < 0.5
    assert own.attrs["ce_shuffled"] > own.attrs["ce_unsteered"]


def test_the_output_judge_counts_the_directions_promoted_tokens(lm):
    model, tokenizer = lm
    vocabulary = logit_lens(model, 1, "mlp", np.random.default_rng(8).normal(size=(1, MLP_WIDTH)), n_tokens=5)[0]
    on_concept = [list(vocabulary) * 3, list(vocabulary[:2]) * 6]
    unsteered, judged = _judge(lm, on_concept, vocabulary)
    assert np.all(judged["vocabulary_share"] == 1.0) and np.all(judged["concept_output"] == 2.0)
    _, floor = _judge(lm, unsteered, vocabulary)
    assert floor["concept_output"].mean() < 0.5


def test_the_input_judge_rates_concept_text_above_other_text(lm):
    embedder = HashingVectorizer(n_features=2**12, alternate_sign=False)  # stateless: no fit, no download
    model, tokenizer = lm
    concept = ["errors should never pass silently", "unless explicitly silenced", "errors should never pass"]
    on_concept = [tokenizer(text)["input_ids"] for text in ("errors should never pass silently", "explicitly silenced")]
    off_concept = [tokenizer(text)["input_ids"] for text in ("flat is better than nested", "namespaces are great")]
    _, judged = _judge(lm, on_concept + off_concept, np.array([5]), concepts=[concept], embedder=embedder)
    assert judged["concept_input"][:2].min() > judged["concept_input"][2:].max()
    assert judged["concept_input"][:2].min() > 1.0
    assert np.all(judged["score"] <= 2.0)


def test_evaluate_steering_checks_its_inputs(lm):
    directions = np.ones((2, MLP_WIDTH))
    run = dict(model=lm, layer=1, site="mlp", prompt=PROMPT)
    with pytest.raises(ValueError, match="one list of texts per direction"):
        evaluate_steering(directions, [["a", "b"]], **run)
    with pytest.raises(ValueError, match="at least two"):
        evaluate_steering(directions, [["a", "b"], ["c"]], **run)
    with pytest.raises(ValueError, match="kl_targets"):
        evaluate_steering(directions, kl_targets=(0.0,), **run)
    with pytest.raises(ValueError, match="signs"):
        evaluate_steering(directions, signs=(2,), **run)
    with pytest.raises(TypeError, match="model must be"):
        evaluate_steering(directions, model=3, layer=1, site="mlp")


def test_an_unreachable_direction_is_left_out_with_a_warning(lm):
    model, tokenizer = lm
    directions = np.random.default_rng(9).normal(size=(2, MLP_WIDTH))
    with pytest.warns(UserWarning, match="cannot move the KL"):
        result = evaluate_steering(directions, model=lm, layer=1, site="mlp", kl_targets=(0.1, 1e4), signs=(1,),
                                   n_samples=2, max_new_tokens=4, prompt=PROMPT, random_state=0)
    assert set(result["kl_target"]) == {0.0, 0.1}


# -- the input side ------------------------------------------------------------------------------------------------


def test_top_contexts_keep_each_context_once_strongest_first():
    scores = np.array([[3.0], [2.0], [1.0], [0.5]])
    contexts = ["a [[b]] c", "a [[b]] c", "d [[e]]", "f [[g]]"]
    assert top_contexts(scores, contexts, n_top=3) == [["a b c", "d e"]]
    assert top_contexts(scores, contexts, n_top=1, strip_marks=False) == [["a [[b]] c"]]
    with pytest.raises(ValueError, match="one row per context"):
        top_contexts(scores, contexts[:2])


@pytest.mark.parametrize("word", ["better", "is", "never", "the"])
def test_concept_detection_finds_a_planted_token_direction(word):
    """With weights of std 0.02 block 0's output is mostly the token embedding: a word's embedding detects it."""
    import re

    model, tokenizer = tiny_causal_lm(n_layers=2, init_std=0.02, random_state=0)
    lines = [line.lower() for line in zen_of_python()]
    positives = [line for line in lines if word in re.findall(r"\w+", line)]
    negatives = [line for line in lines if word not in re.findall(r"\w+", line)]
    embedding = model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids(word)].detach().numpy()
    found = concept_detection(embedding[None], [positives], negatives, model=(model, tokenizer), layer=0,
                              site="residual")
    assert found["auc"][0] == 1.0 and found["positive_mean"][0] > 0.8 > found["negative_mean"][0]
    assert found["n_positive"][0] == len(positives) and found["n_negative"][0] == len(negatives)


def test_concept_detection_against_a_numpy_oracle(lm):
    from sklearn.metrics import roc_auc_score

    lines = zen_of_python()
    directions = np.random.default_rng(10).normal(size=(3, MLP_WIDTH))
    positives = [lines[:6], lines[6:12], lines[:3]]
    negatives = lines[12:]
    result = concept_detection(directions, positives, negatives, model=lm, layer=1, site="mlp", batch_size=3)
    units = directions / np.linalg.norm(directions, axis=1, keepdims=True)

    def best_cosine(text, d):
        rows = read_activations(lm, [text], layer=1, site="mlp").astype(np.float64)
        return np.max(rows @ units[d] / np.linalg.norm(rows, axis=1))

    for d in range(3):
        scores = [best_cosine(t, d) for t in positives[d] + negatives]
        labels = [1] * len(positives[d]) + [0] * len(negatives)
        assert result["auc"][d] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        np.testing.assert_allclose(result["positive_mean"][d], np.mean(scores[: len(positives[d])]), rtol=1e-5)


# -- the benchmark's verdict -----------------------------------------------------------------------------------


def _features_table(snmf_scores, other_scores):
    import pandas as pd

    rows = []
    for method in ("SNMF", "MP-SAE", "TopK", "DiffMean", "random"):
        scores = snmf_scores if method == "SNMF" else other_scores
        for direction, score in enumerate(scores):
            rows.append({"method": method, "seed": 0, "direction": direction, "kl_target": 0.1, "sign": 1,
                         "score": score})
    return pd.DataFrame(rows)


def test_the_benchmark_verdict_needs_a_difference_beyond_two_standard_errors():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_steering import verdict

    rng = np.random.default_rng(0)
    clear = verdict(_features_table(1.5 + 0.1 * rng.normal(size=16), 0.5 + 0.1 * rng.normal(size=16)))
    assert "3 of 3 comparisons" in clear and "claim holds" in clear
    assert "(better), MP-SAE +0.000 (tied)" in clear  # SNMF above the random floor, the others on it
    noisy = verdict(_features_table(0.6 + 0.5 * rng.normal(size=16), 0.5 + 0.5 * rng.normal(size=16)))
    assert "does not hold" in noisy and "tied in 3" in noisy
