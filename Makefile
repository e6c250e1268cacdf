# sonic-bench: everything the project needs is installed from here.
#   make setup             virtualenv, Python packages, Debian packages (when root), model files
#   make test              the test suite (real tritonserver, real Prometheus, real Locust)
#   make serve             the embedded Triton server in the foreground
#   make bench-standalone  the main job: a concurrency sweep of the embedded server
#   make lint              ruff

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ONNX := model_repository/embedded/cnn_emtrkmichel_1/1/model.onnx
RESULTS ?= results
BENCH_ARGS ?=

.PHONY: setup system-packages test serve bench-standalone baseline bench bench-smoke bench-micro \
	bench-micro-save lint clean

setup: $(BIN)/.installed system-packages $(ONNX)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The Triton Python-backend stub embeds the system libpython of this Python version;
# Prometheus records the server's metrics. Installed only when missing and when root.
system-packages:
	@missing=""; \
	ldconfig -p | grep -q "libpython$(PYVER).so.1.0" || missing="$$missing libpython$(PYVER)"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "warning: missing system packages:$$missing (install them as root)"; \
	  fi; \
	fi

$(ONNX): $(BIN)/.installed
	$(BIN)/sonic-bench model export

test: setup
	$(BIN)/python -m pytest

serve: setup
	$(BIN)/sonic-bench serve

baseline: setup
	$(BIN)/sonic-bench baseline --results $(RESULTS)

# The paper's standalone measurement on the embedded CPU server: batch ~235 and ~1693,
# dynamic batching on and off, concurrency 1-8 (the CPU server saturates at 2), plus the
# in-process baseline that the served throughput is compared with. Windows start at 2 s
# and are lengthened where they hold fewer than 20 answers (batch 1693).
STANDALONE_SWEEP ?= --batch small,large --dynamic-batching both --concurrency 1,2,4,8 \
	--window 2 --warmup 2 --max-windows 5
bench-standalone: setup
	$(BIN)/sonic-bench baseline --duration 3 --results $(RESULTS)
	$(BIN)/sonic-bench sweep $(STANDALONE_SWEEP) --results $(RESULTS) $(BENCH_ARGS)

# The CI smoke benchmark: repeated trials with the in-process reference, judged against
# the committed baseline by the committed thresholds (exit 1 on a regression).
SMOKE_SWEEP ?= --batch small --dynamic-batching off --concurrency 1,2 --repeat 5 --reference \
	--reference-seconds 1.5 --window 1 --warmup 0.5 --max-windows 4 --pool-batches 8 --metrics off
bench-smoke: setup
	rm -rf $(RESULTS)/smoke
	$(BIN)/sonic-bench sweep $(SMOKE_SWEEP) --http-port 8010 --grpc-port 8011 --metrics-port 8012 \
		--results $(RESULTS)/smoke --label smoke
	$(BIN)/sonic-bench check $$(ls -d $(RESULTS)/smoke/*/ | head -n 1) \
		--baseline bench/baselines/smoke.json --thresholds bench/thresholds.toml

# Figures that the issues ask for, each a ratio measured in one run (see bench/README.md).
bench: setup
	$(BIN)/python bench/server_overhead.py
	$(BIN)/python bench/harness_overhead.py
	$(BIN)/python bench/workload_speed.py
	$(BIN)/python bench/scrape_overhead.py
	$(BIN)/python bench/analysis_speed.py

MICRO := $(BIN)/python -m pytest bench/test_micro.py -p no:cacheprovider \
	--benchmark-storage=bench/.benchmarks --benchmark-min-rounds=5
bench-micro: setup
	$(MICRO) --benchmark-compare --benchmark-compare-fail=mean:50%
bench-micro-save: setup
	$(MICRO) --benchmark-save=baseline

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
	find model_repository -name '*.onnx' -delete
