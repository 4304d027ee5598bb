"""SAE folders in SAELens's layout: round trips, the documented keys, and SAELens's own SAEs loaded."""

import json
import pickle
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sklearn_interp.decomposition import MatchingPursuitSAE, SNMFDecomposer, TopKSAE
from sklearn_interp.io import PretrainedSAE, load_pretrained, save_pretrained

RNG = np.random.default_rng(0)
X = RNG.normal(size=(150, 12)).astype(np.float32)


def _fitted(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return estimator.fit(X)


ESTIMATORS = [
    TopKSAE(24, 3, max_epochs=2, random_state=0, device="cpu"),
    MatchingPursuitSAE(24, 3, max_epochs=2, tied=False, random_state=0, device="cpu"),
    MatchingPursuitSAE(24, 2, max_epochs=2, nonnegative=False, residual_threshold=0.1, random_state=0, device="cpu"),
    SNMFDecomposer(4, max_iter=20, random_state=0, device="cpu"),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_a_saved_estimator_loads_back_with_identical_codes(estimator, tmp_path):
    fitted = _fitted(estimator)
    fitted.save_pretrained(tmp_path, hook_name="blocks.3.hook_mlp_out", model_name="all-MiniLM-L6-v2")
    loaded = load_pretrained(tmp_path, device="cpu")
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    codes = fitted.transform(X)
    np.testing.assert_array_equal(loaded.transform(X), codes)
    np.testing.assert_array_equal(loaded.inverse_transform(codes), fitted.inverse_transform(codes))
    np.testing.assert_array_equal(loaded.loss_curve_, fitted.loss_curve_)
    assert loaded.n_features_in_ == fitted.n_features_in_
    # Pickle stays.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(loaded)).transform(X), codes)


def test_a_topk_folder_has_saelens_keys_and_saelens_encoding_gives_our_codes(tmp_path):
    sae = _fitted(TopKSAE(24, 3, max_epochs=2, random_state=0, device="cpu"))
    save_pretrained(sae, tmp_path, hook_name="blocks.3.hook_resid_post")
    weights = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert {name: value.shape for name, value in weights.items()} == {
        "W_enc": (12, 24), "W_dec": (24, 12), "b_enc": (24,), "b_dec": (12,),
    }
    config = json.loads((tmp_path / "cfg.json").read_text())
    assert config["architecture"] == "topk" and config["k"] == 3
    assert (config["d_in"], config["d_sae"], config["dtype"]) == (12, 24, "float32")
    assert config["hook_name"] == config["metadata"]["hook_name"] == "blocks.3.hook_resid_post"
    assert config["apply_b_dec_to_input"] is True and config["normalize_activations"] == "none"
    # SAELens's TopK encode and decode, in NumPy, on the saved weights.
    pre = (X - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    top = np.argsort(-pre, axis=1, kind="stable")[:, :3]
    codes = np.zeros_like(pre)
    np.put_along_axis(codes, top, np.maximum(np.take_along_axis(pre, top, axis=1), 0), axis=1)
    np.testing.assert_allclose(sae.transform(X), codes, rtol=1e-5, atol=1e-6)  # float32 reordering
    np.testing.assert_allclose(sae.inverse_transform(codes), codes @ weights["W_dec"] + weights["b_dec"], rtol=1e-5, atol=1e-5)


def _saelens_folder(path, architecture, k=None, apply_b_dec_to_input=True):
    rng = np.random.default_rng(1)
    weights = {
        "W_enc": rng.normal(size=(12, 20)).astype(np.float32), "b_enc": rng.normal(size=20).astype(np.float32),
        "W_dec": rng.normal(size=(20, 12)).astype(np.float32), "b_dec": rng.normal(size=12).astype(np.float32),
    }
    save_file(weights, str(path / "sae_weights.safetensors"))
    config = {"architecture": architecture, "d_in": 12, "d_sae": 20, "dtype": "float32", "device": "cpu",
              "apply_b_dec_to_input": apply_b_dec_to_input, "normalize_activations": "none",
              "metadata": {"hook_name": "blocks.0.hook_resid_pre"}}
    if k is not None:
        config["k"] = k
    (path / "cfg.json").write_text(json.dumps(config))
    return weights


@pytest.mark.parametrize("architecture, k, apply_b_dec", [("standard", None, True), ("standard", None, False), ("topk", 5, True)])
def test_an_saelens_folder_loads_as_its_encode_and_decode(tmp_path, architecture, k, apply_b_dec):
    weights = _saelens_folder(tmp_path, architecture, k, apply_b_dec)
    sae = load_pretrained(tmp_path, device="cpu")
    assert isinstance(sae, PretrainedSAE) and sae.architecture == architecture
    pre = (X - weights["b_dec"] * apply_b_dec) @ weights["W_enc"] + weights["b_enc"]
    if architecture == "standard":
        expected = np.maximum(pre, 0)
    else:
        expected = np.where(pre >= np.sort(pre, axis=1)[:, [-k]], np.maximum(pre, 0), 0)
    codes = sae.transform(X)
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sae.inverse_transform(codes), codes @ weights["W_dec"] + weights["b_dec"], rtol=1e-5, atol=1e-4)
    assert sae.get_feature_names_out()[0] == "pretrainedsae0"


def test_bad_folders_and_weights_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks cfg.json, sae_weights.safetensors"):
        load_pretrained(tmp_path)
    _saelens_folder(tmp_path, "jumprelu")
    with pytest.raises(ValueError, match="architecture 'jumprelu' is not supported"):
        load_pretrained(tmp_path)
    _saelens_folder(tmp_path, "topk")
    with pytest.raises(ValueError, match="needs k"):
        load_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"W_dec has shape \(3, 12\)"):
        PretrainedSAE(np.zeros((12, 20)), np.zeros(20), np.zeros((3, 12)), np.zeros(12)).fit()
    with pytest.raises(TypeError, match="save_pretrained saves"):
        save_pretrained(PretrainedSAE(np.zeros((2, 2)), np.zeros(2), np.zeros((2, 2)), np.zeros(2)).fit(), tmp_path)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TopKSAE(4, 1).save_pretrained(tmp_path)


@pytest.mark.slow
def test_saelens_itself_loads_our_topk_sae_with_identical_codes(tmp_path):
    """Only where sae-lens is installed (it is not among this project's extras: 47 further packages)."""
    torch = pytest.importorskip("torch")
    sae_lens = pytest.importorskip("sae_lens")
    ours = _fitted(TopKSAE(24, 3, max_epochs=2, random_state=0, device="cpu"))
    ours.save_pretrained(tmp_path)
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path), device="cpu")
    with torch.no_grad():
        codes = theirs.encode(torch.from_numpy(X)).numpy()
        reconstruction = theirs.decode(torch.from_numpy(codes)).numpy()
    np.testing.assert_allclose(codes, ours.transform(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reconstruction, ours.inverse_transform(codes), rtol=1e-5, atol=1e-5)
