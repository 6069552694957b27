#!/usr/bin/env bash
# Serving throughput on a CUDA GPU: `kiln serve --backend cuda` driven by `kiln bench-serve` at several
# concurrencies (prompt 128, output 256 by default), then Hugging Face transformers `generate` on the same
# checkpoint at the same batch sizes as the baseline, in one sitting.
#   tools/bench/gpu-serve.sh [MODEL_DIR] [CONCURRENCIES...]
# Env: INPUT_LEN, OUTPUT_LEN, KV_CACHE (default 16G), KV_CACHE_DTYPE (auto, f32 or bf16; default the server's, auto:
# bf16 on cuda), QUANTIZATION (e.g. weight_only_int8), SKIP_BASELINE=1,
# TEMPERATURE and TOP_P (sent by the client; default greedy), VOCAB (prompt token ids are drawn below it; default
# 150000, the Qwen vocabulary; 100000 for DeepSeek-V2's).
# Results: JSON per concurrency under target/gpu-serve/, a summary table on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kiln="$root/kiln"
model=${1:-$root/target/synth/r1-distill-qwen-1.5b}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then concurrencies=("$@"); else concurrencies=(1 32 128); fi
input=${INPUT_LEN:-128}
output=${OUTPUT_LEN:-256}
out="$root/target/gpu-serve"
mkdir -p "$out"
if [ ! -f "$model/config.json" ]; then
    "$kiln" synth --like r1-distill-qwen-1.5b --out "$model"
fi
max=1
for c in "${concurrencies[@]}"; do [ "$c" -gt "$max" ] && max=$c; done
port=8765
data=$(mktemp -d)
serve_options=()
[ -n "${QUANTIZATION:-}" ] && serve_options=(--quantization "$QUANTIZATION")
[ -n "${KV_CACHE_DTYPE:-}" ] && serve_options+=(--kv-cache-dtype "$KV_CACHE_DTYPE")
"$kiln" serve --backend cuda --model "$model" --port $port --data "$data" --max-model-len $(( input + output + 64 )) \
    --max-num-seqs "$max" --kv-cache-memory "${KV_CACHE:-16G}" "${serve_options[@]}" > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/v1/models" | grep -q '"id"' && break
    kill -0 $server 2>/dev/null || { tail -20 "$out/serve.log"; exit 1; }
    sleep 1
done
grep -i "engine for\|backend" "$out/serve.log" | head -5
printf '| engine | concurrency | requests | output tok/s | TTFT median ms | TPOT median ms |\n|---|---|---|---|---|---|\n'
for c in "${concurrencies[@]}"; do
    n=$(( c * 2 ))
    [ "$c" -eq 1 ] && n=4
    "$kiln" bench-serve --base-url "http://127.0.0.1:$port" --input-len "$input" --output-len "$output" --vocab "${VOCAB:-150000}" \
        --num-prompts $n --concurrency "$c" --temperature "${TEMPERATURE:-0}" --top-p "${TOP_P:-1}" --result-file "$out/c$c.json" > "$out/c$c.txt" 2>/dev/null
    python3 - "$out/c$c.json" "$c" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| kiln (cuda) | {sys.argv[2]} | {sys.argv[3]} | {r['output_throughput']:.1f} | {r['ttft_ms']['median']:.0f} | {r['tpot_ms']['median']:.2f} |")
PY
done
kill $server 2>/dev/null; wait $server 2>/dev/null || true
if [ -z "${SKIP_BASELINE:-}" ]; then
    batches=$(IFS=,; echo "${concurrencies[*]}")
    python3 "$root/tools/bench/hf_generate.py" "$model" --batches "$batches" --prompt "$input" --new "$output" \
        > "$out/transformers.jsonl"
    python3 - "$out/transformers.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"| transformers generate (bf16, eager) | {r['batch']} | {r['batch']} | {r['output_tok_s']:.1f} | | |")
PY
fi
