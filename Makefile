# reslab — the README's commands. Each target does its own set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: install test test-slow demo data-fashion-mnist docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Fashion-MNIST from Debian's package when it is missing and apt can install it; otherwise
# `reslab data get` downloads it into data/ (with the official checksums; skipped when there).
data-fashion-mnist: $(STAMP)
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -q && apt-get install -y -q dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: apt could not install dataset-fashion-mnist; downloading it"; \
	fi
	@if [ ! -d $(FMNIST) ]; then $(BIN)/reslab data get fashion-mnist; fi

# The main job: ResNet-20 on Fashion-MNIST with a shortened recipe (2 epochs; the lr ramps up to
# 0.2 over the first 10%, then decays linearly to 0; label smoothing 0.1, Nesterov momentum;
# docs/RESULTS.md), selected on val5k, then the test-set
# evaluation (once, by `reslab eval`: hence --test-split none). A second `make demo` resumes
# (or just re-evaluates) runs/demo.
DEMO_RUN := runs/demo
demo: $(STAMP) data-fashion-mnist
	@mkdir -p runs
	@if [ -f $(DEMO_RUN)/trainer_state.pt ]; then $(BIN)/reslab train --resume $(DEMO_RUN); \
	else $(BIN)/reslab train --model resnet20 --data fashion-mnist --epochs 2 --schedule linear \
		--lr 0.2 --lr-ramp 0.2 --label-smoothing 0.1 --nesterov --no-augment --channels-last \
		--eval-every 1000000 --log-every 50 --test-split none --out $(DEMO_RUN); fi
	$(BIN)/reslab eval $(DEMO_RUN) --data fashion-mnist --split test

docs: $(STAMP)
	$(BIN)/reslab models --markdown --output docs/MODELS.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
