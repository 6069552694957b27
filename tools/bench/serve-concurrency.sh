#!/usr/bin/env bash
# Output throughput of `kiln serve` at several concurrencies on one model (default: a synthetic
# DeepSeek-R1-Distill-Qwen-1.5B), with `kiln bench-serve` as the client, in one sitting.
#   tools/bench/serve-concurrency.sh [MODEL_DIR] [CONCURRENCIES...]
# Results: one JSON per concurrency under target/bench-serve/, and a summary table on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kiln="$root/kiln"
model=${1:-$root/target/synth/r1-distill-qwen-1.5b}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then concurrencies=("$@"); else concurrencies=(1 4 16); fi
out="$root/target/bench-serve"
mkdir -p "$out"
if [ ! -f "$model/config.json" ]; then
    "$kiln" synth --like r1-distill-qwen-1.5b --out "$model"
fi
port=8765
data=$(mktemp -d)
"$kiln" serve --model "$model" --port $port --data "$data" --max-model-len 1024 > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/v1/models" | grep -q '"id"' && break
    sleep 1
done
printf '| concurrency | requests | output tok/s | TTFT median ms | TPOT median ms |\n|---|---|---|---|---|\n'
for c in "${concurrencies[@]}"; do
    n=$(( c * 2 ))
    "$kiln" bench-serve --base-url "http://127.0.0.1:$port" --input-len 128 --output-len 128 --vocab 150000 \
        --num-prompts $n --concurrency "$c" --result-file "$out/c$c.json" > "$out/c$c.txt" 2>/dev/null
    python3 - "$out/c$c.json" "$c" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['output_throughput']:.2f} | {r['ttft_ms']['median']:.0f} | {r['tpot_ms']['median']:.1f} |")
PY
done
