# Two commands on a fresh Python 3.11 machine:  `make demo`  and  `make test`.
# Both create (or reuse) the virtual environment .venv at the repository root.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ephw-installed

.PHONY: setup demo test bench clean-venv

setup: $(STAMP)

# Re-install only when the dependency list or the install steps change.
# lava-nc declares Python <3.11: its requirements come with ephw's (pyproject.toml), lava-nc
# itself is installed without them, and ephw/lava/compat.py repairs its 3.11 import (docs/lava.md).
# The aihwkit backend plugin (backends/aihwkit, docs in its README): aihwkit 1.1.0's wheel lists build
# tools and its cloud/experiment extras (cmake, scikit-build, pybind11, mypy, requests, protobuf,
# torchvision) as requirements, so it is installed with --no-deps; what its inference tiles import
# (torch, numpy, scipy, scikit-learn, tqdm) is pinned in backends/aihwkit/pyproject.toml.
$(STAMP): pyproject.toml backends/aihwkit/pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps --ignore-requires-python lava-nc==0.10.0
	$(BIN)/python -m pip install --quiet --no-deps aihwkit==1.1.0
	$(BIN)/python -m pip install --quiet -e backends/aihwkit
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ephw settle --backend all

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/ephw bench settle --config paper --batch 64

clean-venv:
	rm -rf $(VENV)
