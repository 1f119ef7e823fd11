#!/usr/bin/env bash
# The prepared GPU check (issue 20): one device call, every part under its own timeout, all
# output tee'd into $OUT as it goes (a killed call still returns what ran).
#
#   OUT=/path bash benchmarks/gpu_check.sh           # on the GPU machine (about 8 minutes)
#   OUT=/path bash benchmarks/gpu_check.sh --tiny    # the CPU rehearsal the test suite runs
#
# Before a device call, on this machine: `python benchmarks/gpu_check.py pack-minilm` (int8
# MiniLM for the demo part) and the wheels of ../shared/docs/gpu.md into carry/wheels; both
# travel in the call's `carry`. Parts: environment, models and data, the user's `run.sh` on
# FiD-base / FiD-large configs (DeepSpeed ZeRO-2 bf16, n = 20 and 100, one plain torch run),
# the CUDA tests, predict against sentence-transformers, the demo, then the report
# ($OUT/gpu_check.md; copy it to benchmarks/results/ with the date).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=full
[[ "${1:-}" == "--tiny" ]] && mode=tiny
OUT="${OUT:-runs/gpu_check}"
WORK="${WORK:-/tmp/gpu_check_work}"
mkdir -p "$OUT" "$WORK"
OUT="$(cd "$OUT" && pwd)"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
python="${PYTHON:-python3}"
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && python=.venv/bin/python
export PYTHON="$python"  # run.sh uses the same interpreter
if [[ -d carry/wheels ]]; then  # the packages the image lacks (gpu.md)
    "$python" -m pip install -q --no-index --no-deps --target "$WORK/site" carry/wheels/*.whl
    export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
log="$OUT/gpu_check.log"
failed=0

part() {  # part NAME SECONDS COMMAND...: run it under a timeout, tee its output, note its exit
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most $limit s)" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    local status=${PIPESTATUS[0]}
    echo "== $name exit $status" | tee -a "$log"
    [[ $status -eq 0 ]] || failed=$((failed + 1))
}

check=("$python" benchmarks/gpu_check.py)
common=(--mode "$mode" --out "$OUT" --work "$WORK")

if [[ $mode == full ]]; then
    part env 60 "${check[@]}" env "${common[@]}"
    part build 150 "${check[@]}" build "${common[@]}"
    for run in base:20:ds large:20:ds large:100:ds base:20:torch; do
        part "train $run" 120 "${check[@]}" train --run "$run" "${common[@]}"
    done
    part "cuda tests" 90 "$python" -m pytest -q -p no:cacheprovider -p no:xdist -o addopts=-ra -m cuda tests
    part predict 60 "${check[@]}" predict "${common[@]}"
    part "decoder reader step (Qwen2-0.5B shape, bf16)" 120 "$python" benchmarks/decoder_reader_cost.py --sizes qwen05 --ns 20 50 --device cuda --repeats 3 --results "$OUT/decoder_reader_gpu.md"
    if [[ -f carry/minilm_int8.pt ]]; then
        part "demo (int8-packed MiniLM)" 150 bash -c "$(printf '%q ' "$python") benchmarks/gpu_check.py unpack-minilm --out $(printf '%q' "$OUT") --work $(printf '%q' "$WORK") && $(printf '%q ' "$python") -m gumbel_rerank demo --out $(printf '%q' "$WORK/demo") --reranker.path=$(printf '%q' "$WORK/minilm")"
    fi
else
    part env 60 "${check[@]}" env "${common[@]}"
    part build 120 "${check[@]}" build "${common[@]}"
    for run in base:20:ds large:100:ds base:20:torch; do
        part "train $run" 300 "${check[@]}" train --run "$run" "${common[@]}"
    done
    part predict 120 "${check[@]}" predict "${common[@]}"
    part "decoder reader step (tiny)" 120 "$python" benchmarks/decoder_reader_cost.py --sizes tiny --ns 4 --repeats 1 --results "$OUT/decoder_reader_gpu.md"
fi
part report 30 "${check[@]}" report "${common[@]}"
echo "gpu_check: $failed part(s) failed; log $log, results $OUT/gpu_check.md" | tee -a "$log"
exit $((failed > 0))
