#!/usr/bin/env bash
# Fetch the QA datasets and convert them into gumbel_rerank's question format (JSONL, one
# question per line, gold passages flagged from the dataset's own supervision), so configs can
# point at DIR/<name>/train.jsonl etc. Run from the repository root.
#
#   bash data/get_data.sh [--dry-run] [--keep-raw] [--dest DIR] NAME... | all
#
# Names (written to DIR/<name>/, DIR defaults to data):
#   nq tqa       NQ / TriviaQA with FiD's 100 DPR passages, built by FiD's own get-data.sh
#                (downloads ~20 GB incl. the DPR Wikipedia dump)     -> {train,dev,test}.jsonl
#   hotpotqa     HotpotQA train + dev, distractor setting            -> {train,dev}.jsonl
#   musique      MuSiQue-Ans v1.0 (Google Drive: gdown, or by hand)  -> {train,dev}.jsonl
#   2wiki        2WikiMultihopQA (Dropbox zip)                       -> {train,dev}.jsonl
#   gumbel-data  syhuang/gumbel-reranking-data (Hugging Face hub), already in our format: each
#                .json/.jsonl file is validated and written as .jsonl at the same relative path
#
# Idempotent: a dataset whose folder holds a .complete marker is skipped. Downloads go to
# DIR/raw/.tmp-SOURCE and conversions to DIR/.tmp-NAME, each renamed into place only when
# complete, so an interrupted run never leaves half a dataset. Raw downloads are deleted once
# converted unless --keep-raw. --dry-run prints every command and writes nothing. PYTHON picks
# the interpreter that runs `-m gumbel_rerank convert` (default: python).
set -euo pipefail

# Sources, checked against the upstream repositories' own download scripts and READMEs:
# - FiD (facebookresearch/FiD, get-data.sh + src/preprocess.py): there is no ready-made NQ/TQA
#   file; get-data.sh downloads psgs_w100.tsv.gz (DPR), NQ-open, TriviaQA-unfiltered and, from
#   https://dl.fbaipublicfiles.com/FiD/data/, dataindex.tar.gz, nq_passages.tar.gz and
#   tqa_passages.tar.gz, then src/preprocess.py joins them into
#   open_domain_data/{NQ,TQA}/{train,dev,test}.json (a JSON list per split; passages carry id,
#   title, text; no has_answer, so gold is computed by answer matching). preprocess.py has an
#   unused `import parser` (a module removed in Python 3.10): an empty stand-in goes on
#   PYTHONPATH. It needs wget, torch and numpy, and holds all 21M passages in memory.
# - HotpotQA: http://curtis.ml.cmu.edu/datasets/hotpot/ (links of hotpotqa.github.io).
# - MuSiQue (StonyBrookNLP/musique, download_data.sh): Google Drive file
#   1tGdADlNjWFaHLeZZGShh2IRcpO6Lv24h = musique_v1.0.zip, unpacking to
#   data/musique_{ans,full}_v1.0_{train,dev,test}.jsonl. Drive wants a confirmation for large
#   files, which gdown handles; without gdown the script says where to put the zip by hand.
# - 2WikiMultihopQA (Alab-NII/2wikimultihop, README "full dataset"):
#   https://www.dropbox.com/s/npidmtadreo6df2/data.zip, unpacking to data/{train,dev,test}.json.
# - gumbel-data: the hub repository's file layout was not verifiable here, hence "every
#   .json/.jsonl file"; look at DIR/gumbel-data/ for the split names.
# Test splits without answers (HotpotQA, MuSiQue, 2Wiki) are not converted: the format needs one.

FID_REPO=https://github.com/facebookresearch/FiD
HOTPOT_URL=http://curtis.ml.cmu.edu/datasets/hotpot
MUSIQUE_GDRIVE_ID=1tGdADlNjWFaHLeZZGShh2IRcpO6Lv24h
TWOWIKI_URL="https://www.dropbox.com/s/npidmtadreo6df2/data.zip?dl=1"
GUMBEL_DATA_REPO=syhuang/gumbel-reranking-data
ALL=(nq tqa hotpotqa musique 2wiki gumbel-data)
PYTHON="${PYTHON:-python}"

dry_run=0
keep_raw=0
dest=data
names=()

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --keep-raw) keep_raw=1 ;;
        --dest) dest="${2:?--dest needs a folder}"; shift ;;
        -h|--help) usage; exit 0 ;;
        all) names+=("${ALL[@]}") ;;
        -*) echo "get_data.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) names+=("$1") ;;
    esac
    shift
done
[[ ${#names[@]} -gt 0 ]] || { usage >&2; exit 2; }

contains() { local x="$1"; shift; local y; for y in "$@"; do [[ "$x" == "$y" ]] && return 0; done; return 1; }

todo=()
for name in "${names[@]}"; do  # refuse unknown names before running anything; drop repeats
    contains "$name" "${ALL[@]}" || { echo "get_data.sh: unknown dataset '$name' (known: ${ALL[*]} all)" >&2; exit 2; }
    [[ ${#todo[@]} -gt 0 ]] && contains "$name" "${todo[@]}" && continue
    todo+=("$name")
done

raw_root="$dest/raw"
manual=()    # datasets waiting for a download by hand
downloaded=1 # set by download: 0 when it waits for a download by hand
finished=()  # datasets completed (or, with --dry-run, that would be)
fetched=()   # sources downloaded by this run

# Prints what would run; runs it unless --dry-run.
step() {
    echo "+ $*"
    [[ $dry_run -eq 1 ]] || "$@"
}

in_dir() { (cd "$1" && shift && "$@"); }

absolute() { if [[ "$1" == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }

need() {  # tool... : fail early, before a long download, if a tool is missing
    [[ $dry_run -eq 1 ]] && return 0
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || { echo "get_data.sh: '$tool' is needed for this dataset but not installed" >&2; exit 1; }
    done
}

expect_files() {  # file... : after unpacking, check the layout this script relies on
    [[ $dry_run -eq 1 ]] && return 0
    local f
    for f in "$@"; do
        [[ -f "$f" ]] || { echo "get_data.sh: expected $f after unpacking; found:" >&2; find "$(dirname "$f")" -maxdepth 2 >&2 || true; exit 1; }
    done
}

convert() {  # kind src dst
    step "$PYTHON" -m gumbel_rerank convert "$@"
}

hub_download_dataset() {  # repo folder
    if command -v hf >/dev/null 2>&1; then
        step hf download "$1" --repo-type dataset --local-dir "$2"
    else
        need huggingface-cli
        step huggingface-cli download "$1" --repo-type dataset --local-dir "$2"
    fi
}

source_of() { case "$1" in nq|tqa) echo fid ;; *) echo "$1" ;; esac; }

# Prints where to get a file by hand; outside --dry-run, marks the dataset as waiting for it.
# (A flag rather than a return status: a function called as `f || ...` runs without set -e.)
manual_download() {  # name what url file
    cat <<EOF
$1: this file has to be downloaded by hand:
    $2
    $3
  Save it as $4 and run this script again.
EOF
    if [[ $dry_run -eq 0 ]]; then
        manual+=("$1")
        downloaded=0
    fi
}

# download SOURCE: fills $raw_root/SOURCE (with a .complete marker); sets downloaded=0 when a
# file must first be downloaded by hand.
download() {
    local src="$1" dir="$raw_root/$1" tmp="$raw_root/.tmp-$1" zip
    downloaded=1
    # (fetched: with --dry-run nothing is marked complete, yet nq and tqa share FiD's download)
    if [[ -f "$dir/.complete" ]] || contains "$src" ${fetched[@]+"${fetched[@]}"}; then
        echo "$src: downloads already in $dir"
        return 0
    fi
    step rm -rf "$tmp"
    step mkdir -p "$tmp"
    case "$src" in
        fid)
            need git wget
            echo "fid: running FiD's get-data.sh (downloads ~20 GB; needs torch and numpy)"
            step git clone --depth 1 "$FID_REPO" "$tmp/FiD"
            step mkdir -p "$tmp/pyshim"
            step touch "$tmp/pyshim/parser.py"
            step in_dir "$tmp/FiD" env PYTHONPATH="$(absolute "$tmp/pyshim")" \
                bash get-data.sh -o "$(absolute "$tmp/open_domain_data")"
            expect_files "$tmp/open_domain_data/NQ/train.json" "$tmp/open_domain_data/TQA/train.json"
            # Only the question files are needed: drop the 13 GB passage file and the clone.
            step rm -rf "$tmp/FiD" "$tmp/pyshim" "$tmp/open_domain_data/psgs_w100.tsv"
            ;;
        hotpotqa)
            need curl
            step curl -fL --retry 3 -o "$tmp/hotpot_train_v1.1.json" "$HOTPOT_URL/hotpot_train_v1.1.json"
            step curl -fL --retry 3 -o "$tmp/hotpot_dev_distractor_v1.json" "$HOTPOT_URL/hotpot_dev_distractor_v1.json"
            ;;
        musique)
            zip="$raw_root/musique_v1.0.zip"  # where a hand-downloaded copy goes
            if [[ -f "$zip" ]]; then
                echo "musique: using $zip"
            elif command -v gdown >/dev/null 2>&1; then
                if ! step gdown "https://drive.google.com/uc?id=$MUSIQUE_GDRIVE_ID" -O "$tmp/musique_v1.0.zip"; then
                    manual_download musique "MuSiQue v1.0 (gdown failed; Google Drive may need a browser)" \
                        "https://drive.google.com/file/d/$MUSIQUE_GDRIVE_ID/view" "$zip"
                    [[ $downloaded -eq 1 ]] || { step rm -rf "$tmp"; return 0; }
                fi
                zip="$tmp/musique_v1.0.zip"
            else
                manual_download musique "MuSiQue v1.0 (or: pip install gdown, and run again)" \
                    "https://drive.google.com/file/d/$MUSIQUE_GDRIVE_ID/view" "$zip"
                [[ $downloaded -eq 1 ]] || { step rm -rf "$tmp"; return 0; }
            fi
            step "$PYTHON" -m zipfile -e "$zip" "$tmp"
            expect_files "$tmp/data/musique_ans_v1.0_train.jsonl" "$tmp/data/musique_ans_v1.0_dev.jsonl"
            step rm -f "$tmp/musique_v1.0.zip"
            ;;
        2wiki)
            zip="$raw_root/2wiki_data.zip"  # where a hand-downloaded copy goes
            if [[ -f "$zip" ]]; then
                echo "2wiki: using $zip"
            else
                need curl
                if ! step curl -fL --retry 3 -o "$tmp/data.zip" "$TWOWIKI_URL"; then
                    manual_download 2wiki "2WikiMultihopQA data.zip (see github.com/Alab-NII/2wikimultihop)" \
                        "${TWOWIKI_URL%%\?*}" "$zip"
                    [[ $downloaded -eq 1 ]] || { step rm -rf "$tmp"; return 0; }
                fi
                zip="$tmp/data.zip"
            fi
            step "$PYTHON" -m zipfile -e "$zip" "$tmp"
            expect_files "$tmp/data/train.json" "$tmp/data/dev.json"
            step rm -f "$tmp/data.zip"
            ;;
        gumbel-data)
            hub_download_dataset "$GUMBEL_DATA_REPO" "$tmp"
            ;;
    esac
    step touch "$tmp/.complete"
    step rm -rf "$dir"
    step mv "$tmp" "$dir"
    fetched+=("$src")
}

convert_gumbel_data() {  # raw out
    local raw="$1" out="$2" file rel found=0
    if [[ ! -d "$raw" ]]; then  # --dry-run before the download: the file names are not known yet
        convert gumbel-data "$raw/<each .json/.jsonl file>" "$out/<same relative path>.jsonl"
        return
    fi
    while IFS= read -r -d '' file; do
        rel="${file#"$raw"/}"
        convert gumbel-data "$file" "$out/${rel%.*}.jsonl"
        found=1
    done < <(find "$raw" -mindepth 1 -name '.*' -prune -o -type f \( -name '*.json' -o -name '*.jsonl' \) -print0 | sort -z)
    [[ $found -eq 1 ]] || { echo "get_data.sh: no .json/.jsonl file in $raw" >&2; exit 1; }
}

fetch() {
    local name="$1" target="$dest/$1" tmp="$dest/.tmp-$1" src raw split
    if [[ -f "$target/.complete" ]]; then
        echo "$name: already in $target, skipping"
        finished+=("$name")
        return
    fi
    src="$(source_of "$name")"
    raw="$raw_root/$src"
    echo "$name -> $target"
    download "$src"
    [[ $downloaded -eq 1 ]] || return 0  # waits for a download by hand (listed at the end)
    step rm -rf "$tmp"
    step mkdir -p "$tmp"
    case "$name" in
        nq|tqa)
            local upper
            upper="$(echo "$name" | tr '[:lower:]' '[:upper:]')"
            for split in train dev test; do
                convert fid "$raw/open_domain_data/$upper/$split.json" "$tmp/$split.jsonl"
            done
            ;;
        hotpotqa)
            convert hotpotqa "$raw/hotpot_train_v1.1.json" "$tmp/train.jsonl"
            convert hotpotqa "$raw/hotpot_dev_distractor_v1.json" "$tmp/dev.jsonl"
            ;;
        musique)
            for split in train dev; do
                convert musique "$raw/data/musique_ans_v1.0_$split.jsonl" "$tmp/$split.jsonl"
            done
            ;;
        2wiki)
            for split in train dev; do
                convert 2wiki "$raw/data/$split.json" "$tmp/$split.jsonl"
            done
            ;;
        gumbel-data)
            convert_gumbel_data "$raw" "$tmp"
            ;;
    esac
    step touch "$tmp/.complete"
    step rm -rf "$target"
    step mv "$tmp" "$target"
    finished+=("$name")
    if [[ $keep_raw -eq 0 ]]; then
        # nq and tqa share FiD's download: it goes when both are converted.
        if [[ "$src" != fid ]] || { contains nq "${finished[@]}" && contains tqa "${finished[@]}"; }; then
            step rm -rf "$raw"
        fi
    fi
}

[[ $dry_run -eq 1 ]] || mkdir -p "$dest"
for name in "${todo[@]}"; do
    fetch "$name"
done
if [[ ${#manual[@]} -gt 0 ]]; then
    echo "get_data.sh: waiting for files downloaded by hand (see above): ${manual[*]}" >&2
    exit 1
fi
