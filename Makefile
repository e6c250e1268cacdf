# sonic-bench: everything the project needs is installed from here.
#   make setup             virtualenv, Python packages, Debian packages (when root), model
#                          files, NVIDIA's perf_analyzer (.venv/bin/perf_analyzer)
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

.PHONY: setup system-packages test serve bench-standalone baseline bench bench-smoke bench-variants bench-micro \
	bench-micro-save docs lint clean

setup: $(BIN)/.installed system-packages $(ONNX) $(BIN)/perf_analyzer

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The Triton Python-backend stub embeds the system libpython of this Python version;
# Prometheus records the server's metrics; perf_analyzer links libb64; nginx is the gateway
# in front of replicas (--gateway) and openssl makes its certificate. Installed only when
# missing and when root (Debian's nginx package does not start a service in a container).
system-packages:
	@missing=""; \
	ldconfig -p | grep -q "libpython$(PYVER).so.1.0" || missing="$$missing libpython$(PYVER)"; \
	ldconfig -p | grep -q "libb64.so.0d" || missing="$$missing libb64-0d"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v nginx >/dev/null || missing="$$missing nginx"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
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

# NVIDIA's perf_analyzer, the reference the native engine is measured against: the binary
# from the tritonclient 2.50.0 wheel and libcudart from nvidia-cuda-runtime-cu12 (pinned in
# sonic_bench/perf_analyzer/install.py), behind a wrapper that sets the library path.
$(BIN)/perf_analyzer: $(BIN)/.installed src/sonic_bench/perf_analyzer/install.py
	$(BIN)/python -m sonic_bench.perf_analyzer.install $(VENV)

# Offline validation of the Kubernetes custom resources (KEDA, Prometheus operator) against
# their CRD schemas: npm packages pinned in deploy/k8s/validate/package-lock.json.
K8S_VALIDATE := deploy/k8s/validate
$(K8S_VALIDATE)/node_modules/.installed: $(K8S_VALIDATE)/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --silent --no-audit --no-fund --prefix $(K8S_VALIDATE) && touch $@; \
	else echo "warning: npm missing: Kubernetes custom resources will not be validated"; fi

test: setup $(K8S_VALIDATE)/node_modules/.installed
	$(BIN)/python -m pytest

serve: setup
	$(BIN)/sonic-bench serve

baseline: setup
	$(BIN)/sonic-bench baseline --results $(RESULTS)

# The paper's standalone measurement on the embedded CPU server: batch ~235 and ~1693,
# dynamic batching on and off, concurrency 1-8 (the CPU server saturates at 2), plus the
# CPU-only baseline that the served throughput is compared with (one thread, and the
# machine's cores as one process of N threads and as N processes of one: the best is the
# reference), all in one job folder, then the analysis (report.md, plots, the standalone
# story) into JOB/analysis. Every level gets a verdict (VALID or INVALID, with reasons).
# Windows are count windows (perf_analyzer's count_windows): at least 2 s and at least 50
# answers each, so that slow, large requests and dynamic batching's bursts fill every
# window alike and each level can settle (with 24 answers, batch ~1693 with dynamic
# batching at concurrency 4 swung +-14% in average latency from window to window). Three
# windows of 50 hold the 139 answers a p90 needs (measure/verdict.py); a p99 would need
# 1,522, ~5 minutes a level at batch ~1693 on this CPU, so the main job reports p50 and p90.
# REPEAT whole sweeps: one sweep takes ~6 minutes on a 2-core machine and the baseline
# ~1.5, so one keeps the job under 10 minutes; REPEAT=3 gives every level a t-interval.
STAMP := $(shell date -u +%Y%m%dT%H%M%SZ)
JOB ?= $(RESULTS)/standalone-$(STAMP)
REPEAT ?= 1
STANDALONE_SWEEP ?= --batch small,large --dynamic-batching both --concurrency 1,2,4,8 \
	--window 2 --window-requests 50 --warmup 2 --max-windows 6 --percentiles 50,90 \
	--repeat $(REPEAT)
bench-standalone: setup
	@echo "main job: $(REPEAT) sweep(s) of 16 levels (~6 min each on 2 cores) and the baseline" \
		"(~1.5 min): under 10 minutes with REPEAT=1; REPEAT=3 for t-intervals across sweeps"
	$(BIN)/sonic-bench baseline --results $(JOB)
	$(BIN)/sonic-bench sweep $(STANDALONE_SWEEP) --results $(JOB) $(BENCH_ARGS)
	$(BIN)/sonic-bench analyze $(JOB) --output $(JOB)/analysis
	@echo "run folders: $(JOB)/"
	@echo "report:      $(JOB)/analysis/report.md"

# The CI smoke benchmark: repeated trials with the in-process reference, judged against
# the committed baseline by the committed thresholds (exit 1 on a regression).
SMOKE_SWEEP ?= --batch small --dynamic-batching off --concurrency 1,2 --trials 5 --percentiles 50 --reference \
	--reference-seconds 1.5 --window 1 --warmup 0.5 --max-windows 8 --pool-batches 8 --metrics off
bench-smoke: setup
	rm -rf $(RESULTS)/smoke $(RESULTS)/smoke-accuracy
	$(BIN)/sonic-bench sweep $(SMOKE_SWEEP) --http-port 8010 --grpc-port 8011 --metrics-port 8012 \
		--results $(RESULTS)/smoke --label smoke
	$(BIN)/sonic-bench check $$(ls -d $(RESULTS)/smoke/*/ | head -n 1) \
		--baseline bench/baselines/smoke.json --thresholds bench/thresholds.toml
	$(BIN)/sonic-bench accuracy --events 2 --event-scale 0.05 --http-port 8010 --grpc-port 8011 \
		--metrics-port 8012 --results $(RESULTS)/smoke-accuracy
	$(BIN)/sonic-bench check $$(ls -d $(RESULTS)/smoke-accuracy/*/ | tail -n 1) \
		--thresholds bench/thresholds.toml

# The reduced-precision variants beside FP32 in one job: each model's sweep at batch ~235
# with dynamic batching, then its accuracy run over 20 ProtoDUNE-SP events (a tenth of the
# detector each), one table of throughput at saturation, p99 at the knee and drift.
VARIANTS ?= cnn_emtrkmichel_1,cnn_emtrkmichel_fp16,cnn_emtrkmichel_int8,cnn_emtrkmichel_int8_dynamic
bench-variants: setup
	$(BIN)/sonic-bench sweep --model $(VARIANTS) --batch small --concurrency 1,2,4 --window 2 \
		--window-requests 50 --warmup 2 --max-windows 6 --percentiles 50,90 --accuracy \
		--results $(RESULTS)/variants-$(STAMP) $(BENCH_ARGS)
	$(BIN)/sonic-bench analyze $(RESULTS)/variants-$(STAMP) --output $(RESULTS)/variants-$(STAMP)/analysis

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

# The documentation site from docs/ (MkDocs, Material theme) into build/site; --strict
# fails on a broken link, a page missing from the navigation or a snippet not found.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
	find model_repository -name '*.onnx' -delete
