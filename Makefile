# Two commands on a fresh machine:
#   make demo   create .venv, install vsr, train the tiny reference method on the built-in sample
#               clips (stops by itself in a few minutes) and write restored sample videos to disk
#   make test   the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= reference.ReferenceVSR
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools<81" wheel
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vsr fit --model $(MODEL)
	@echo "Restored sample videos (LQ | restored | GT): runs/*/version_*/samples/"

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --durations=15

clean:
	rm -rf runs lightning_logs
