"""Proves that models.py computes what the fixtures' reference computes (transformers' own models, float64):
DeepSeek-V3 logits and MTP logits on fixtures/models/deepseek-v3-tiny, Qwen2 logits on qwen2-tiny.
Runs on a CPU in seconds; exits non-zero on a mismatch.

usage: python3 check_fixtures.py [FIXTURES_DIR]   (default: fixtures/models of this repository)
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import safetensors_io  # noqa: E402


def check(fixture, build, tolerance=1e-6):
    config = json.load(open(os.path.join(fixture, "config.json")))
    model = build(config).double().eval()
    weights = safetensors_io.load(os.path.join(fixture, "model.safetensors"))
    skipped = models.load_hub_state_dict(model, {k: v.double() for k, v in weights.items()})
    reference = safetensors_io.load(os.path.join(fixture, "reference.safetensors"))
    worst = 0.0

    def run(ids):
        ids = ids.view(1, -1)
        nxt = torch.cat([ids[:, 1:], torch.zeros(1, 1, dtype=ids.dtype)], 1)
        with torch.no_grad():
            logits, _, mtp = model(ids, nxt)
        return logits[0], None if mtp is None else mtp[0]

    def relative(got, want):
        return (got.double() - want.double()).abs().max().item() / want.abs().max().item()

    i = 0
    while f"input_ids_{i}" in reference:
        logits, mtp = run(reference[f"input_ids_{i}"])
        found = {"logits": relative(logits, reference[f"logits_{i}"])}
        if f"mtp_logits_{i}" in reference:
            want = reference[f"mtp_logits_{i}"]
            found["MTP logits"] = relative(mtp[:want.shape[0]], want)
        if f"greedy_logits_{i}" in reference:
            found["greedy-sequence logits"] = relative(run(reference[f"greedy_ids_{i}"])[0], reference[f"greedy_logits_{i}"])
        print(f"{os.path.basename(fixture)} prompt {i}: relative max|diff| "
              + ", ".join(f"{k} {v:.2e}" for k, v in found.items()))
        worst = max([worst] + list(found.values()))
        i += 1
    if skipped:
        print("  not used:", ", ".join(skipped))
    return worst <= tolerance


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "models")
    ok = check(os.path.join(root, "deepseek-v3-tiny"), models.DeepseekV3)
    ok &= check(os.path.join(root, "qwen2-tiny"), models.Qwen2)
    print("fixtures reproduced" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
