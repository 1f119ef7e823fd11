#!/usr/bin/env bash
# Fetch released reader checkpoints into a folder, for loading with
# `reader.path` in a config (FiDReader.from_pretrained). Idempotent: a model whose
# folder holds a .complete marker is skipped, and downloads land in a temporary folder that is
# renamed into place only when complete, so an interrupted fetch never leaves a half model.
#
#   bash readers/get_model.sh [--dry-run] [--dest DIR] NAME... | all
#
# Names:
#   nq_reader_base nq_reader_large tqa_reader_base tqa_reader_large   FiD tarballs (FiD project)
#   hopo_reader_base hopo_reader_large musique_reader_base musique_reader_large
#   2wiki_reader_base 2wiki_reader_large       Hugging Face hub (syhuang/...), load them with
#                                              --base-config t5-base | t5-large
#   t5-base-tokenizer                          the t5-base sentencepiece tokenizer every FiD
#                                              reader uses (released readers ship none)
#   bge-reranker-base                          BAAI/bge-reranker-base, the cross-encoder the
#                                              configs/ start from
set -euo pipefail

FID_URL=https://dl.fbaipublicfiles.com/FiD/pretrained_models
HF_USER=syhuang
FID_MODELS=(nq_reader_base nq_reader_large tqa_reader_base tqa_reader_large)
HUB_MODELS=(hopo_reader_base hopo_reader_large musique_reader_base musique_reader_large
            2wiki_reader_base 2wiki_reader_large)
ALL=("${FID_MODELS[@]}" "${HUB_MODELS[@]}" t5-base-tokenizer bge-reranker-base)

dry_run=0
dest=readers/checkpoints
names=()

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --dest) dest="${2:?--dest needs a folder}"; shift ;;
        -h|--help) usage; exit 0 ;;
        all) names+=("${ALL[@]}") ;;
        -*) echo "get_model.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) names+=("$1") ;;
    esac
    shift
done
[[ ${#names[@]} -gt 0 ]] || { usage >&2; exit 2; }

contains() { local x="$1"; shift; local y; for y in "$@"; do [[ "$x" == "$y" ]] && return 0; done; return 1; }

for name in "${names[@]}"; do  # refuse unknown names before fetching anything
    contains "$name" "${ALL[@]}" || { echo "get_model.sh: unknown model '$name' (known: ${ALL[*]})" >&2; exit 2; }
done

# Prints what would run; runs it unless --dry-run.
step() {
    echo "+ $*"
    [[ $dry_run -eq 1 ]] || "$@"
}

hub_download() {  # repo folder
    if command -v hf >/dev/null 2>&1; then
        step hf download "$1" --local-dir "$2"
    else
        step huggingface-cli download "$1" --local-dir "$2"
    fi
}

fetch() {
    local name="$1" target="$dest/$1" tmp
    if [[ -f "$target/.complete" ]]; then
        echo "$name: already in $target, skipping"
        return
    fi
    tmp="$dest/.tmp-$name"
    echo "$name -> $target"
    step rm -rf "$tmp"
    step mkdir -p "$tmp"
    if contains "$name" "${FID_MODELS[@]}"; then
        step curl -fL --retry 3 -o "$tmp/$name.tar.gz" "$FID_URL/$name.tar.gz"
        step tar -xzf "$tmp/$name.tar.gz" -C "$tmp"
        step rm "$tmp/$name.tar.gz"
        # the tarball holds one folder named like the model
        step mv "$tmp/$name" "$tmp/model"
    elif contains "$name" "${HUB_MODELS[@]}"; then
        hub_download "$HF_USER/$name" "$tmp/model"
    elif [[ "$name" == bge-reranker-base ]]; then
        hub_download BAAI/bge-reranker-base "$tmp/model"
    else  # t5-base-tokenizer
        hub_download google-t5/t5-base "$tmp/hub"
        step mkdir -p "$tmp/model"
        step cp "$tmp/hub/spiece.model" "$tmp/hub/tokenizer.json" "$tmp/hub/tokenizer_config.json" "$tmp/model/"
    fi
    step touch "$tmp/model/.complete"
    step rm -rf "$target"
    step mv "$tmp/model" "$target"
    step rm -rf "$tmp"
}

[[ $dry_run -eq 1 ]] || mkdir -p "$dest"
for name in "${names[@]}"; do
    fetch "$name"
done
