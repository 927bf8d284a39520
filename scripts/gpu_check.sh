#!/usr/bin/env bash
# One command for a GPU machine (<= 8 minutes on one GPU): the GPU tests, the demo on CUDA
# (timed, twice, compared with the CPU demo where the semantics say they must agree) and the
# LRP / PGD benchmarks at S = 100 on CUDA. Writes OUT/gpu_check.md (+ logs, runs, JSON).
# Without CUDA it writes one line saying so and exits 0.
#
# Usage: scripts/gpu_check.sh OUT [PYTHON]      (PYTHON default: .venv/bin/python)
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU (tiny benchmarks): a dry run of this
# script on a machine without a GPU; its "no shared artifact" check then fails, as it must.
set -u
DEV=${GPU_CHECK_DEVICE:-cuda}
BENCH_SIZE="--samples 100 --images 500"
[ "$DEV" = cpu ] && BENCH_SIZE="--samples 3 --images 20"
OUT=${1:?usage: scripts/gpu_check.sh OUT [PYTHON]}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${2:-${PYTHON:-$ROOT/.venv/bin/python}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPORT=$OUT/gpu_check.md
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

bl() { "$PY" -c 'import sys; from bayeslrp.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
now() { date +%s.%N; }
secs() { "$PY" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

if [ "$DEV" != cpu ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    line="gpu_check: no CUDA device here (torch $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || echo '?')); nothing run"
    echo "$line" | tee "$REPORT"
    exit 0
fi

status=0
{
    echo "# GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo
    echo '```'
    "$PY" -c 'import json, sys, torch; from bayeslrp.devices import configure_torch; print(json.dumps(configure_torch(sys.argv[1]), indent=1)); print("GPUs:", torch.cuda.device_count())' "$DEV"
    echo '```'
} > "$REPORT"

t0=$(now)
make -s test-gpu BIN="$(dirname "$PY")" > "$OUT/test_gpu.log" 2>&1; rc=$?
t1=$(now)
[ $rc -eq 0 ] || status=1
{ echo; echo "## make test-gpu: exit $rc, $(secs "$t0" "$t1") s"; echo '```'; tail -n 15 "$OUT/test_gpu.log"; echo '```'; } >> "$REPORT"

demo() {  # demo DEVICE DIR -> seconds on stdout
    local s e
    s=$(now); bl demo --device "$1" --run-dir "$2" --quiet --threads 1 > "$2.log" 2>&1; local rc=$?; e=$(now)
    [ $rc -eq 0 ] || { echo "failed (exit $rc, see $2.log)"; return 1; }
    secs "$s" "$e"
}
rm -rf "$OUT/demo_cpu" "$OUT/demo_cuda" "$OUT/demo_cuda_again"
cpu_s=$(demo cpu "$OUT/demo_cpu") || status=1
cuda_s=$(demo "$DEV" "$OUT/demo_cuda") || status=1
again_s=$(demo "$DEV" "$OUT/demo_cuda_again") || status=1
{ echo; echo "## demo (threads 1): CPU $cpu_s s, $DEV $cuda_s s, $DEV again $again_s s"; echo '```'; } >> "$REPORT"
if "$PY" scripts/gpu_compare.py "$OUT/demo_cpu" "$OUT/demo_cuda" "$OUT/demo_cuda_again" >> "$REPORT" 2>&1; then :; else status=1; fi
echo '```' >> "$REPORT"

t0=$(now)
"$PY" benchmarks/gpu.py --device "$DEV" $BENCH_SIZE --json "$OUT/bench_cuda.json" > "$OUT/bench.log" 2>&1 || status=1
t1=$(now)
{ echo; echo "## LRP / PGD benchmarks ($BENCH_SIZE, $DEV; $(secs "$t0" "$t1") s in all)"; echo '```'; grep -E '_s |memory|device_name' "$OUT/bench.log"; echo '```'; } >> "$REPORT"

echo >> "$REPORT"
echo "overall: $([ $status -eq 0 ] && echo ok || echo FAILED)" >> "$REPORT"
cat "$REPORT"
exit $status
