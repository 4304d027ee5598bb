"""Feature dashboards: static pages whose highlighted token, histogram and vocabulary are the right ones."""

import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch

from sklearn_interp.activations import TransformerActivations
from sklearn_interp.decomposition import SNMFDecomposer, TopKSAE
from sklearn_interp.plotting import FeatureDashboard
from sklearn_interp.testing import tiny_causal_lm, zen_of_python


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny random Llama, its residual activations after block 1 on the Zen of Python, a TopK SAE on them."""
    model, tokenizer = tiny_causal_lm(random_state=0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    acts = TransformerActivations(str(folder), layer=1, site="residual", device="cpu").fit()
    X = acts.transform(zen_of_python())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae = TopKSAE(16, 2, max_epochs=5, batch_size=32, random_state=0, device="cpu").fit(X)
    return model, tokenizer, acts, X, sae


def test_each_page_highlights_the_top_token_and_projects_the_right_vocabulary(lm_run, tmp_path):
    model, tokenizer, acts, X, sae = lm_run
    dashboard = FeatureDashboard.from_estimator(
        sae, X, acts, n_examples=5, language_model=model, tokenizer=tokenizer, layer=1, source="tiny Llama, block 1"
    )
    index = dashboard.save(tmp_path)
    codes = sae.transform(X)
    active = np.flatnonzero((codes > 0).any(axis=0))
    assert [page["feature"] for page in dashboard.features] == active.tolist()
    assert sorted(p.name for p in tmp_path.glob("feature_*.html")) == sorted(f"feature_{f}.html" for f in active)
    index_text = index.read_text()
    for feature in active:
        assert f"href='feature_{feature}.html'" in index_text
    table = acts.token_table()
    unembedding = model.get_output_embeddings().weight.detach().numpy()
    for page in dashboard.features:
        feature = page["feature"]
        text = (tmp_path / f"feature_{feature}.html").read_text()
        top_row = int(np.argmax(codes[:, feature]))
        start, end = table[["context_start", "context_end"]].iloc[top_row]
        marked = table["context"].iloc[top_row][start:end]
        assert re.search(r"<mark>(.*?)</mark>", text).group(1) == marked
        assert page["examples"][0]["value"] == pytest.approx(codes[top_row, feature])
        assert page["frequency"] == pytest.approx(np.mean(codes[:, feature] > 0))
        assert text.count("<rect") == 30  # the histogram's bars
        # The tokens shown carry the 10 largest and 10 smallest logits (compared by value: near-ties may
        # order differently in another float32 matrix product).
        logits = sae.components_[feature] @ unembedding.T
        for shown, expected in ((page["vocab"]["up"], np.sort(logits)[::-1][:10]), (page["vocab"]["down"], np.sort(logits)[:10])):
            np.testing.assert_allclose(logits[tokenizer.convert_tokens_to_ids(shown)], expected, rtol=1e-5, atol=1e-6)


def test_a_dashboard_without_a_model_or_contexts_and_bad_input(lm_run, tmp_path):
    _, _, acts, X, _ = lm_run
    snmf = SNMFDecomposer(4, max_iter=20, random_state=0, device="cpu").fit(X)
    dashboard = FeatureDashboard.from_estimator(snmf, X, acts.tokens_, features=[0, 2])
    dashboard.save(tmp_path)
    page = (tmp_path / "feature_2.html").read_text()
    assert "<mark>" in page and "Vocabulary projection" not in page
    with pytest.raises(ValueError, match="tokens describe 3 rows but X has"):
        FeatureDashboard.from_estimator(snmf, X, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"features must lie in \[0, 4\)"):
        FeatureDashboard.from_estimator(snmf, X, acts, features=[7])
    with pytest.raises(ValueError, match="needs its tokenizer"):
        FeatureDashboard.from_estimator(snmf, X, acts, language_model=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no feature 1"):
        dashboard.feature_html(1)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium (Debian's chromium) is not installed")
def test_a_feature_page_renders_in_headless_chromium(lm_run, tmp_path):
    model, tokenizer, acts, X, sae = lm_run
    dashboard = FeatureDashboard.from_estimator(sae, X, acts, language_model=model, tokenizer=tokenizer, layer=1)
    dashboard.save(tmp_path)
    feature = dashboard.features[0]["feature"]
    page = tmp_path / f"feature_{feature}.html"
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu"]
    dom = subprocess.run([*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60).stdout
    marked = re.findall(r"<mark>(.*?)</mark>", dom)
    top = dashboard.features[0]["examples"][0]
    assert marked and marked[0] == top["context"][slice(*top["span"])]
    assert dom.count("<rect") == 30 and "Vocabulary projection" in dom
    screenshot = tmp_path / "feature.png"
    subprocess.run([*command, "--window-size=1000,900", f"--screenshot={screenshot}", page.as_uri()],
                   capture_output=True, timeout=60)
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one


def test_the_highlight_follows_the_span_when_the_text_holds_double_brackets():
    from sklearn_interp.plotting._dashboard import _highlighted

    # The text "Callable[[int], str]" around the token "str": its own "[[" comes first.
    context = "Callable[[int], [[str]]]"
    assert _highlighted(context, "str", (18, 21)) == "Callable[[int], <mark>str</mark>]"
    assert _highlighted(None, "<b>") == "<mark>&lt;b&gt;</mark>"
