#!/usr/bin/env bash
# The whole run on a GPU machine with PyTorch, tokenizers (and optionally transformers, matplotlib):
# tokenizer, default model, draft model, export to models/default and models/default-draft, measurements.
#   tools/train/train_all.sh [train.py options]      (after tools/train/prepare_data.sh)
# DATA (default .device/data) holds train.txt/valid.txt; WORK (default .device/work) receives the tokenizer,
# checkpoints, histories, eval.json, loss.csv and loss.png.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${DATA:-$root/.device/data}"
work="${WORK:-$root/.device/work}"
mkdir -p "$work"
python3 "$here/check_fixtures.py" "$root/fixtures/models"
python3 "$here/train_tokenizer.py" --data "$data" --out "$work/tokenizer"
python3 "$here/train.py" --data "$data" --tokenizer "$work/tokenizer" --work "$work" \
    --export-main "$root/models/default" --export-draft "$root/models/default-draft" "$@"
