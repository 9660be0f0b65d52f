# Set-up and main jobs. Everything installs into ./.venv; nothing is downloaded at run time.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test test-all test-slow bench soundness-table docs clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# The CPU wheel: a plain `torch` requirement would pull the multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	# complete: highspy, the exact LP/MIP of lirpa_diffai.verify (its tests run in CI);
	# docs: mkdocs, whose strict build of the documentation site is a test
	$(BIN)/pip install -e '.[test,complete,docs]'
	# auto_LiRPA 0.3 pins torch<1.13 and torchvision; lirpa_diffai.lirpa03 makes it run on torch 2.
	# Installed last and with --no-deps, so pip's resolver never weighs its pins (a later
	# `pip install` into this venv prints "auto-lirpa 0.3 requires torch<1.13.0": expected).
	$(BIN)/pip install --no-deps auto_LiRPA==0.3
	touch $@

# The start-up hook (.pth) that patches auto_LiRPA on import; rewritten when its source changes.
HOOK := $(VENV)/.hook

$(HOOK): $(STAMP) $(wildcard lirpa_diffai/lirpa03/*.py)
	rm -f $(VENV)/lib/python3*/site-packages/lirpa_diffai_compat.pth  # an older hook may not load this tree
	$(BIN)/python -m lirpa_diffai install-hook
	touch $@

install: $(HOOK)

# Train ConvSmall on MNIST (examples/goals/mnist_small.yaml) into runs/mnist_small, then certify
# it on 1000 test images. Running it again resumes (a finished run is only certified again).
# THREADS=1: the 2-core machines here are shared; more threads than free cores slow torch down.
THREADS ?= 1
DEMO    := runs/mnist_small

demo: install
	$(BIN)/python -m lirpa_diffai train examples/goals/mnist_small.yaml --out $(DEMO) --resume --threads $(THREADS)
	$(BIN)/python -m lirpa_diffai certify $(DEMO) --methods hzono,IBP,CROWN-IBP,CROWN --limit 1000 --threads $(THREADS) --json $(DEMO)/certify.json

# ruff with the rules of ruff.toml; make test runs it before the tests.
lint: install
	$(BIN)/ruff check .

# The quick tier: every test not marked slow (3280 tests, about 7.5 minutes of CPU on one core of
# the 2-core machine, start-up included). Each parametrized grid keeps a deterministic draw of its
# cases here and marks the rest slow (tests/support.py: draw; the fuzzer's: tests/soundness/tiers.py).
# To see where the CPU goes: pytest -q -m "not slow" --cpu-durations=30
test: lint
	$(BIN)/python -m pytest -q -m "not slow"

# The slow tier alone (6360 cases, about 24 minutes of CPU), then everything: both tiers.
test-slow: install
	$(BIN)/python -m pytest -q -m slow

test-all: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m benchmarks.bounds

# The soundness fuzzer's operator-by-method table (docs/soundness-table.md) and its list of known failing
# cases (tests/soundness/expected_failures.txt); about a minute on one core.
soundness-table: install
	$(BIN)/python -m benchmarks.soundness_table --seeds 1 --json runs/soundness.json \
		--write-expected tests/soundness/expected_failures.txt --markdown-out docs/soundness-table.md

# The documentation site (mkdocs.yml, docs/*.md) into ./site
docs: install
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build site *.egg-info
