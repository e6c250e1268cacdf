#!/usr/bin/env bash
# Issue 31's GPU measurement in one call of at most 8 minutes on a machine with one GPU:
# the embedded tritonserver with the exported EmTrackMichelId weights run by torch on the
# GPU (onnx2torch; FP32, FP16, BF16), sweeps of batch ~235 and ~1693 with dynamic batching
# on and off (concurrency 1-32), an accuracy run of the FP16 and BF16 variants against
# FP32 in onnxruntime, the zero-compute model for the transport, Triton's GPU metrics
# read directly; the run folders packed into OUT (a few files), to analyse anywhere:
#
#   bench/gpu_check.sh OUT [--device cuda] [--compute torch] [--wheels DIR] [--quick]
#   tar -xzf OUT/results.tar.gz -C somewhere && sonic-bench analyze somewhere/results
#
# --wheels DIR installs the wheels it holds first (a machine that cannot fetch: they
# travel with the working tree); --device cpu --compute onnx --quick is the dry run a
# machine without GPU or torch can do (tests/test_gpu_check.py).
set -euo pipefail

OUT=${1:?usage: bench/gpu_check.sh OUT [--device D] [--compute torch|onnx] [--wheels DIR] [--quick]}
shift
DEVICE=cuda
COMPUTE=torch
WHEELS=
QUICK=0
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=$2; shift 2 ;;
    --compute) COMPUTE=$2; shift 2 ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "bench/gpu_check.sh: unknown option $1 (--device, --compute, --wheels, --quick)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/sonic-gpu-XXXXXX)
SERVE=
stop() {
  if [ -n "$SERVE" ]; then kill -TERM "$SERVE" 2>/dev/null || true; wait "$SERVE" || true; fi
  rm -rf "$WORK"
}
trap stop EXIT
exec > >(tee "$OUT/gpu_check.log") 2>&1

if [ -n "$WHEELS" ]; then
  "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --target "$WORK/site" "$WHEELS"/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
sb() { "$PY" -m sonic_bench.cli "$@"; }

if [ "$QUICK" = 1 ]; then  # the dry run: every step once, as briefly as it goes
  LEVELS=1
  BATCHES=small
  WINDOWS=(--window 0.3 --warmup 0.1 --max-windows 2 --percentiles 50)
  ACCURACY=(--accuracy-events 1 --accuracy-event-scale 0.02)
else
  LEVELS=1,2,4,8,16,32
  BATCHES=small,large
  WINDOWS=(--window 2 --window-requests 50 --warmup 1 --max-windows 4 --percentiles 50,90)
  ACCURACY=(--accuracy-events 5)
fi
read -r HTTP GRPC METRICS < <("$PY" -c 'from sonic_bench.process import free_port as f; print(f(), f(), f())')
SERVER=(--url "127.0.0.1:$GRPC" --metrics direct --metrics-url "http://127.0.0.1:$METRICS/metrics"
  --results "$WORK/results")

echo "== $(date -u +%FT%TZ) device $DEVICE, compute $COMPUTE; $(nproc) cores"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
sb model export >/dev/null
sb model torch-repository --device "$DEVICE" --compute "$COMPUTE" --output "$WORK/repo"
# One server for every sweep (a start loads five models): ready when it says so.
"$PY" -m sonic_bench.cli serve --repository "$WORK/repo" --gpu-metrics --http-port "$HTTP" --grpc-port "$GRPC" \
  --metrics-port "$METRICS" > "$WORK/serve.log" 2>&1 &
SERVE=$!
until grep -q "^tritonserver ready" "$WORK/serve.log" 2>/dev/null; do
  kill -0 "$SERVE" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
  sleep 1
done
echo "== FP32, batch ~235 and ~1693, dynamic batching on and off"
sb sweep "${SERVER[@]}" --model cnn_emtrkmichel_1,cnn_emtrkmichel_1_nodb --batch "$BATCHES" \
  --concurrency "$LEVELS" "${WINDOWS[@]}" --label gpu || echo "== (it exited $?)"
echo "== FP16 and BF16 beside FP32, with their answers checked"
sb sweep "${SERVER[@]}" --model cnn_emtrkmichel_torch_fp16,cnn_emtrkmichel_torch_bf16 \
  --batch "${BATCHES##*,}" --concurrency "$LEVELS" "${WINDOWS[@]}" --accuracy "${ACCURACY[@]}" \
  --label gpu-reduced || echo "== (it exited $?)"
echo "== the transport alone: the zero-compute model"
sb sweep "${SERVER[@]}" --calibration --batch "$BATCHES" --concurrency "$LEVELS" \
  "${WINDOWS[@]}" --label gpu-transport || echo "== (it exited $?)"
echo "== analysis"
sb analyze "$WORK/results" --output "$WORK/analysis" --no-plots || true
cp "$WORK/analysis/report.md" "$OUT/report.md" 2>/dev/null || true
tar -czf "$OUT/results.tar.gz" -C "$WORK" results
echo "== $(date -u +%FT%TZ) done: $(ls "$OUT" | tr '\n' ' ')"
