#!/usr/bin/env bash
# Local launcher: one CPU process, or N GPU processes with DeepSpeed, same entry point as run.slurm.
#
#   bash run.sh CONFIG [--section.key=value ...]             # train a reranker (G-Rerank)
#   JOB=train-reader bash run.sh CONFIG [...]                 # fine-tune a FiD reader
#   NGPUS=4 bash run.sh configs/hotpotqa_fid_base.yaml        # 4 GPUs (the config names a DeepSpeed JSON)
#
# NGPUS defaults to the number of visible GPUs (0 on a CPU machine: one plain process).
# A run folder that already has checkpoints is continued (--resume).
set -euo pipefail
cd "$(dirname "$0")"
config="${1:?usage: bash run.sh CONFIG [--section.key=value ...]}"
shift
job="${JOB:-train}"
python="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] && python="${PYTHON:-.venv/bin/python}"
if [[ -z "${NGPUS:-}" ]]; then
    NGPUS=$("$python" -c 'import torch; print(torch.cuda.device_count())')
fi
if [[ "$NGPUS" -gt 1 ]]; then
    exec "$python" -m torch.distributed.run --standalone --nproc_per_node="$NGPUS" \
        -m gumbel_rerank "$job" --config "$config" --resume "$@"
fi
exec "$python" -m gumbel_rerank "$job" --config "$config" --resume "$@"
