# Two commands do all set-up on a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The local CPU build; on a CUDA machine use e.g. `make TORCH='torch>=2.3,<2.14' test`.
TORCH  ?= torch==2.13.0
DEMO   ?= demo-out

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/crossfuse-align build --target data_manifests/sample-target.json \
		--aux data_manifests/sample-aux.json --out $(DEMO)/sample-aligned.zarr \
		-k 256 --stride 64 --overwrite
	$(BIN)/crossfuse-align inspect $(DEMO)/sample-aligned.zarr
	$(BIN)/crossfuse-align verify $(DEMO)/sample-aligned.zarr

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
