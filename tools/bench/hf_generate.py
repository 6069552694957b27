"""Baseline for the GPU serving benchmark: Hugging Face transformers `generate` on the same checkpoint folder.

Greedy decoding of random prompts at several batch sizes, every sequence forced to produce exactly the requested
number of new tokens (min_new_tokens = max_new_tokens), timed after one warm-up call per batch size. Prints one
JSON object per batch size: output tokens per second over the whole generate call (prefill included, as a serving
benchmark counts it).

Usage: python3 hf_generate.py MODEL_DIR [--batches 1,32,128] [--prompt 128] [--new 256]
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batches", default="1,32,128")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=256)
    args = parser.parse_args()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16).to("cuda").eval()
    vocab = model.config.vocab_size
    generator = torch.Generator(device="cuda").manual_seed(1)
    for batch in (int(b) for b in args.batches.split(",")):
        ids = torch.randint(0, vocab, (batch, args.prompt), device="cuda", generator=generator)
        mask = torch.ones_like(ids)
        kwargs = dict(attention_mask=mask, do_sample=False, max_new_tokens=args.new, min_new_tokens=args.new,
                      pad_token_id=0)
        with torch.inference_mode():
            model.generate(ids, **{**kwargs, "max_new_tokens": 8, "min_new_tokens": 8})
            torch.cuda.synchronize()
            start = time.perf_counter()
            out = model.generate(ids, **kwargs)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        produced = (out.shape[1] - args.prompt) * batch
        print(json.dumps({"engine": "transformers", "batch": batch, "prompt": args.prompt, "new_tokens": args.new,
                          "seconds": round(seconds, 3), "output_tok_s": round(produced / seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
