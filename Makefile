# Two commands do all set-up on a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The local CPU build; on a CUDA machine use e.g. `make TORCH='torch>=2.3,<2.14' test`.
TORCH  ?= torch==2.13.0
DEMO   ?= demo-out

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The main job on the bundled sample: align the auxiliary pairs to the target, report what the
# alignment did, pack the target, train briefly on both corpora (configs/demo.toml), fuse the
# target pairs (with a comparison sheet), evaluate the fusions.
demo: install
	$(BIN)/crossfuse-align build --target data_manifests/sample-target.json \
		--aux data_manifests/sample-aux.json --out $(DEMO)/sample-aligned.zarr \
		-k 256 --stride 64 --overwrite
	$(BIN)/crossfuse-align inspect $(DEMO)/sample-aligned.zarr
	$(BIN)/crossfuse-align verify $(DEMO)/sample-aligned.zarr
	$(BIN)/crossfuse-align report $(DEMO)/sample-aligned.zarr --out $(DEMO)/report
	$(BIN)/crossfuse-align pack --manifest data_manifests/sample-target.json \
		--out $(DEMO)/sample-target.zarr --stride 64 --overwrite
	$(BIN)/crossfuse train --data $(DEMO)/sample-aligned.zarr --data $(DEMO)/sample-target.zarr \
		--out $(DEMO)/run --config configs/demo.toml --overwrite
	$(BIN)/crossfuse fuse --checkpoint $(DEMO)/run/checkpoints/latest.pth \
		--pairs data_manifests/sample-target.json --out $(DEMO)/fused --overwrite --sheet $(DEMO)/sheet.png
	$(BIN)/crossfuse eval --fused $(DEMO)/fused --pairs data_manifests/sample-target.json \
		--csv $(DEMO)/metrics.csv --overwrite
	@echo "pictures: $(DEMO)/report/index.html, $(DEMO)/sheet.png, $(DEMO)/fused/*.png, $(DEMO)/run/*.png"

test: install
	$(BIN)/python -m pytest -q

# The benchmark suite (about 20 minutes on 2 cores; needs ../shared); results go in BENCHMARKS.md.
bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
