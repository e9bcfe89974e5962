# tfnas: training-free NAS for RNN and transformer language models.
# `make quickstart` installs and runs a quick sweep on real data; `make test` runs the tests.
# The data folder: $TFNAS_DATA_DIR if set (a relative path is taken from here), else shared/data
# beside the repository (conf/paths/default.yaml).

VENV    ?= .venv
PY      ?= $(VENV)/bin/python
PIP     ?= $(PY) -m pip
RESULTS ?= results
N       ?= 20

.PHONY: help install quickstart test score score-full score-bert train analyze tensorboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: a CPU wheel where one is at hand; the range in pyproject.toml stops below 2.14
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,launchers]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install tfnas with test and launcher extras

quickstart: install  ## install, score the first N (20) NAS-Bench-NLP architectures on real data, analyze them
	$(PY) score.py -m 'arch=range(0,$(N))' paths.results_dir=$(RESULTS)
	$(PY) analyze.py results_dir=$(RESULTS) out_dir=$(RESULTS)/analysis

test: install  ## run the test suite on the real data
	$(PY) -m pytest -q

score: install  ## quick sweep: the first N architectures
	$(PY) score.py -m 'arch=range(0,$(N))' paths.results_dir=$(RESULTS)

score-full: install  ## every architecture of the benchmark, 100 per job
	$(PY) score.py -m 'shard=range(0,4)' shard_size=100 paths.results_dir=$(RESULTS)

score-bert: install  ## every NAS-Bench-BERT architecture, reduced CPU batch
	$(PY) score.py -m space=nasbench_bert data=text_cpu 'shard=range(0,5)' shard_size=100 paths.results_dir=$(RESULTS)

train: install  ## train the LSTM recipe's LM on PTB with the quick config
	$(PY) train.py experiment=quick paths.results_dir=$(RESULTS)

analyze: install  ## correlations, figures and search views of everything in $(RESULTS)
	$(PY) analyze.py results_dir=$(RESULTS) out_dir=$(RESULTS)/analysis

tensorboard: install  ## serve TensorBoard over the results
	$(VENV)/bin/tensorboard --logdir $(RESULTS)

clean:  ## remove results, logs and caches (keeps .venv)
	rm -rf $(RESULTS) logs outputs multirun .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
