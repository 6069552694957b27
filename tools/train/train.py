"""Trains Kiln's embedded default model (DeepSeek-V3 architecture: MLA, DeepSeekMoE, one MTP module) and its
Qwen2 draft model from scratch, exports both in the Hugging Face hub layout, and measures them.

Stages (--stages, in this order; each reads what the earlier ones wrote to --work):
  main    the default model: next-token loss + MTP_WEIGHT x (MTP next-next-token loss + MTP_DISTILL x KL from the
          main model's own next-token distribution at j+1, which the MTP module at j should reproduce)
  main2   optional second generation of the default model, trained from scratch with MAIN_DISTILL x KL from the
          first one (self-distillation regularises on this small corpus); the one with the lower held-out loss is kept
  draft   the draft model: next-token loss + DRAFT_DISTILL x KL from the trained default model
  export  bf16 safetensors (sharded under 16 MiB), config.json, tokenizer files -> --export-main/--export-draft
  eval    reloads the exported files and measures perplexity, MTP and draft acceptance, samples (eval.json)
Each training stage checkpoints to --work every --eval-every steps and resumes from there (--resume).

usage: python3 train.py --data DIR --tokenizer DIR --work DIR --export-main DIR --export-draft DIR [options]
"""
import argparse
import contextlib
import copy
import csv
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import safetensors_io  # noqa: E402

PAD, BOS, EOS = 0, 1, 2
MAX_FILE_BYTES = 15 * 1024 * 1024  # each shard stays under the 16 MiB limit on a file in the repository

MAIN_CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "vocab_size": 8192,
    "hidden_size": 320,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "q_lora_rank": 128,
    "kv_lora_rank": 64,
    "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16,
    "qk_head_dim": 48,
    "head_dim": 16,
    "v_head_dim": 32,
    "intermediate_size": 768,
    "first_k_dense_replace": 1,
    "moe_intermediate_size": 128,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "n_group": 4,
    "topk_group": 2,
    "topk_method": "noaux_tc",
    "scoring_func": "sigmoid",
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "num_nextn_predict_layers": 1,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "rope_interleave": True,
    "max_position_embeddings": 1024,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "tie_word_embeddings": True,
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "pad_token_id": PAD,
    "use_cache": True,
    "torch_dtype": "bfloat16",
}

DRAFT_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "vocab_size": 8192,
    "hidden_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 384,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "max_position_embeddings": 1024,
    "max_window_layers": 3,
    "use_sliding_window": False,
    "sliding_window": None,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "tie_word_embeddings": True,
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "pad_token_id": PAD,
    "use_cache": True,
    "torch_dtype": "bfloat16",
}

# Reduced shapes for a dry run on a CPU (--tiny): same code paths, minutes become seconds.
TINY_MAIN = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, q_lora_rank=32,
                 kv_lora_rank=16, intermediate_size=128, moe_intermediate_size=32, max_position_embeddings=128)
TINY_DRAFT = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                  intermediate_size=64, max_position_embeddings=128)

PROMPTS = [
    "The old man walked slowly down the road, and",
    "In the beginning",
    "The committee said on Friday that the new school",
]
CHAT = [{"role": "user", "content": "Tell me a story about a king and his three sons."}]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# -------------------------------------------------------------------------------------------------------- data


class Tokens:
    """A token stream (uint16 file) on the device, cut into random or consecutive windows."""

    def __init__(self, path, device):
        self.ids = torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64)).to(device)

    def batch(self, n, length, generator):
        starts = torch.randint(0, self.ids.numel() - length, (n,), generator=generator)
        return self.ids[starts.to(self.ids.device)[:, None] + torch.arange(length, device=self.ids.device)]

    def windows(self, length, stride):
        """Windows of `length` tokens, `stride` apart: each predicted token is scored once."""
        count = (self.ids.numel() - length) // stride + 1
        return self.ids[torch.arange(count, device=self.ids.device)[:, None] * stride
                        + torch.arange(length, device=self.ids.device)]


class ByteTokenizer:
    """Stand-in for dry runs where the tokenizers package is absent: ids 0-5 special, then the 256 bytes."""

    class Encoding:
        def __init__(self, ids):
            self.ids = ids

    SPECIAL = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]

    def get_vocab_size(self):
        return 6 + 256

    def encode(self, text):
        ids, i = [], 0
        while i < len(text):
            for k, s in enumerate(self.SPECIAL):
                if text.startswith(s, i):
                    ids.append(k)
                    i += len(s)
                    break
            else:
                ids.extend(b + 6 for b in text[i].encode("utf-8"))
                i += 1
        return self.Encoding(ids)

    def decode(self, ids, skip_special_tokens=True):
        out = b""
        for t in ids:
            out += bytes([t - 6]) if t >= 6 else (b"" if skip_special_tokens else self.SPECIAL[t].encode())
        return out.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------------- training


def autocast(enabled):
    """bf16 autocast on the GPU; nothing elsewhere."""
    return torch.autocast("cuda", torch.bfloat16) if enabled else contextlib.nullcontext()


def kl(teacher_logits, student_logits):
    """KL(teacher || student) per token, averaged: the teacher's distribution is the target."""
    t = F.log_softmax(teacher_logits.float(), -1)
    s = F.log_softmax(student_logits.float(), -1)
    return (t.exp() * (t - s)).sum(-1).mean()


def losses(model, x, seq, args, teacher=None):
    """x: [B, seq + 2] tokens. Returns (total, parts) for the main or the draft objective."""
    inp, nxt = x[:, :seq], x[:, 1:seq + 1]
    is_main = isinstance(model, models.DeepseekV3)
    logits, _, mtp = model(inp, nxt if is_main else None)
    v = logits.shape[-1]
    ce = F.cross_entropy(logits.float().view(-1, v), nxt.reshape(-1))
    parts = {"ce": ce.item()}
    total = ce
    if mtp is not None:
        mtp_ce = F.cross_entropy(mtp.float().view(-1, v), x[:, 2:seq + 2].reshape(-1))
        distill = kl(logits[:, 1:].detach(), mtp[:, :-1]) if args.mtp_distill else torch.zeros((), device=x.device)
        total = total + args.mtp_weight * (mtp_ce + args.mtp_distill * distill)
        parts.update(mtp_ce=mtp_ce.item(), mtp_kl=distill.item())
    if is_main and args.balance_loss:
        balance = sum(m.balance_loss for m in model.moe_layers())
        total = total + args.balance_loss * balance
        parts["balance"] = balance.item()
    if teacher is not None:
        with torch.no_grad():
            teacher_logits = teacher(inp)[0]
        distill = kl(teacher_logits, logits)
        total = total + (args.main_distill if is_main else args.draft_distill) * distill
        parts["kl"] = distill.item()
    return total, parts


@torch.no_grad()
def evaluate(model, windows, seq, batch, teacher=None, use_autocast=True):
    """Mean losses over held-out windows, and the greedy agreements that speculative decoding turns into accepted
    tokens: MTP argmax at j vs the main model's argmax at j+1 (both predict token j+2 from the true prefix), and
    draft argmax vs the main model's argmax (same position)."""
    model.eval()
    sums, n = {}, 0
    for i in range(0, windows.shape[0], batch):
        x = windows[i:i + batch]
        with autocast(use_autocast and x.is_cuda):
            inp, nxt = x[:, :seq], x[:, 1:seq + 1]
            logits, _, mtp = model(inp, nxt if isinstance(model, models.DeepseekV3) else None)
            ref = teacher(inp)[0] if teacher is not None else None
        logits = logits.float()
        v = logits.shape[-1]
        out = {"loss": F.cross_entropy(logits.view(-1, v), nxt.reshape(-1), reduction="sum").item(),
               "top1": (logits.argmax(-1) == nxt).sum().item()}
        if mtp is not None:
            mtp = mtp.float()
            out["mtp_loss"] = F.cross_entropy(mtp.view(-1, v), x[:, 2:seq + 2].reshape(-1), reduction="sum").item()
            out["mtp_top1"] = (mtp.argmax(-1) == x[:, 2:seq + 2]).sum().item()
            out["mtp_acceptance"] = (mtp[:, :-1].argmax(-1) == logits[:, 1:].argmax(-1)).sum().item() * seq / (seq - 1)
        if ref is not None:
            out["draft_acceptance"] = (logits.argmax(-1) == ref.float().argmax(-1)).sum().item()
        for k, val in out.items():
            sums[k] = sums.get(k, 0.0) + val
        n += x.shape[0] * seq
    model.train()
    return {k: val / n for k, val in sums.items()}


def lr_at(step, args, steps, peak):
    if step < args.warmup:
        return peak * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, steps - args.warmup))
    return peak * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def optimizer(model, lr, weight_decay, device):
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "embed_tokens" not in name else plain).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    kwargs = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, **kwargs)


def train(kind, model, train_tokens, valid_windows, args, device, teacher=None):
    """Trains `model` in place; keeps and returns the state with the lowest held-out next-token loss."""
    steps, peak = (args.draft_steps, args.draft_lr) if kind == "draft" else (args.main_steps, args.main_lr)
    budget = {"main": args.main_budget_s, "main2": args.main2_budget_s, "draft": args.draft_budget_s}[kind]
    seq = args.seq
    opt = optimizer(model, peak, args.weight_decay, device)
    generator = torch.Generator().manual_seed(args.seed + {"main": 1, "draft": 2, "main2": 3}[kind])
    ckpt_path = os.path.join(args.work, f"checkpoint-{kind}.pt")
    start, best, history = 0, None, []
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        generator.set_state(ck["generator"])
        start, best, history = ck["step"], ck["best"], ck["history"]
        log(f"{kind}: resumed at step {start}")
    moe = model.moe_layers() if isinstance(model, models.DeepseekV3) else []
    tokens_per_step = args.batch * seq
    log(f"{kind}: {sum(p.numel() for p in model.parameters()):,} parameters, {steps} steps of {tokens_per_step:,} "
        f"tokens ({steps * tokens_per_step / train_tokens.ids.numel():.1f} epochs)")
    model.train()
    t0 = time.time()
    running = {}
    step = start
    stopped_early = False
    while step < steps:
        lr = lr_at(step, args, steps, peak)
        for g in opt.param_groups:
            g["lr"] = lr
        x = train_tokens.batch(args.batch, seq + 2, generator)
        with autocast(device.type == "cuda"):
            total, parts = losses(model, x, seq, args, teacher)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip).item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            # DeepSeek-V3's auxiliary-loss-free balancing: nudge the choice bias of under-loaded experts up.
            for m in moe:
                load = m.last_load
                m.gate.e_score_correction_bias += args.bias_update * torch.sign(load.mean() - load)
        step += 1
        for k, v in parts.items():
            running[k] = running.get(k, 0.0) + v
        running["n"] = running.get("n", 0) + 1
        if step % args.eval_every == 0 or step == steps or time.time() - t0 > budget:
            val = evaluate(model, valid_windows, seq, args.eval_batch, teacher if kind == "draft" else None)
            row = {"step": step, "tokens": step * tokens_per_step, "seconds": round(time.time() - t0, 1), "lr": lr,
                   "grad_norm": round(grad_norm, 3)}
            row.update({f"train_{k}": round(v / running["n"], 4) for k, v in running.items() if k != "n"})
            row.update({f"val_{k}": round(v, 4) for k, v in val.items()})
            if moe:
                load = torch.stack([m.last_load for m in moe])
                row["expert_load_max_over_mean"] = round((load.max(1).values / load.mean(1)).max().item(), 3)
            history.append(row)
            running = {}
            log(kind, json.dumps(row))
            if best is None or val["loss"] < best["val_loss"]:
                best = {"val_loss": val["loss"], "step": step,
                        "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": generator.get_state(),
                        "step": step, "best": best, "history": history}, ckpt_path)
            if time.time() - t0 > budget:
                log(f"{kind}: time budget of {budget}s reached at step {step}")
                stopped_early = True
                break
    elapsed = time.time() - t0
    model.load_state_dict(best["state"])
    log(f"{kind}: kept step {best['step']} (held-out loss {best['val_loss']:.4f}); {elapsed:.0f}s")
    with open(os.path.join(args.work, f"history-{kind}.json"), "w") as f:
        json.dump({"history": history, "best_step": best["step"], "best_val_loss": best["val_loss"], "seconds": elapsed,
                   "stopped_early": stopped_early},
                  f, indent=1)
    return model


# ------------------------------------------------------------------------------------------------------ export


def export(model, config, directory, tokenizer_dir, generation):
    """Hub layout: config.json, bf16 safetensors (sharded with an index past MAX_FILE_BYTES), tokenizer files."""
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    tensors = {k: v.detach().to("cpu", torch.bfloat16) for k, v in models.hub_state_dict(model).items()}
    total = sum(t.numel() * 2 for t in tensors.values())
    if total <= MAX_FILE_BYTES:
        safetensors_io.save(os.path.join(directory, "model.safetensors"), tensors, {"format": "pt"})
    else:
        shards, current, size = [], {}, 0
        for name in sorted(tensors):
            b = tensors[name].numel() * 2
            if current and size + b > MAX_FILE_BYTES - 65536:
                shards.append(current)
                current, size = {}, 0
            current[name] = tensors[name]
            size += b
        shards.append(current)
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            safetensors_io.save(os.path.join(directory, fname), shard, {"format": "pt"})
            weight_map.update({k: fname for k in shard})
        with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, "generation_config.json"), "w") as f:
        json.dump(generation, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(directory, name))
    files = {n: os.path.getsize(os.path.join(directory, n)) for n in sorted(os.listdir(directory))}
    log(f"exported {directory}: {sum(files.values()):,} bytes", json.dumps(files))
    return files


def load_export(directory, device):
    config = json.load(open(os.path.join(directory, "config.json")))
    model = (models.DeepseekV3 if config["model_type"] == "deepseek_v3" else models.Qwen2)(config)
    tensors = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            tensors.update(safetensors_io.load(os.path.join(directory, name)))
    skipped = models.load_hub_state_dict(model, {k: v.float() for k, v in tensors.items()})
    assert not skipped, skipped
    return model.to(device).eval(), config


# -------------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def generate(model, ids, new_tokens, temperature=0.0, top_k=0, generator=None, stop=None):
    """Full recompute each step (the models are small): greedy when temperature is 0."""
    ids = ids.clone()
    for _ in range(new_tokens):
        logits = model(ids[:, -model.config["max_position_embeddings"]:])[0][:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k:
                kth = logits.topk(top_k, -1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator).to(ids.device)
        ids = torch.cat([ids, nxt], 1)
        if stop is not None and ids.shape[0] == 1 and nxt.item() == stop:
            break
    return ids


@torch.no_grad()
def speculation_on_greedy_text(main, draft, prompts, new_tokens, max_draft):
    """Greedy continuations of held-out prompts by the main model; on them, how often the MTP module's and the
    draft's proposals equal what the main model then emits, and the tokens accepted per verification step."""
    seqs = generate(main, prompts, new_tokens)
    p = prompts.shape[1]
    nxt = torch.cat([seqs[:, 1:], torch.zeros_like(seqs[:, :1])], 1)
    _, _, mtp = main(seqs, nxt)
    # MTP at j proposes token j+2; inside the generated part token j+2 is the main model's greedy choice.
    j = torch.arange(p - 1, seqs.shape[1] - 2, device=seqs.device)
    mtp_hits = (mtp[:, j].argmax(-1) == seqs[:, j + 2]).float()
    d = draft(seqs)[0].argmax(-1)  # draft at j proposes token j+1
    j = torch.arange(p - 1, seqs.shape[1] - 1, device=seqs.device)
    hits = (d[:, j] == seqs[:, j + 1])
    accepted = {}
    for k in range(1, max_draft + 1):
        # With k drafted tokens from position i, the run of hits starting at i (capped at k) is accepted, plus the
        # main model's own token.
        run = torch.zeros_like(hits, dtype=torch.long)
        for i in range(hits.shape[1]):
            r = torch.zeros(hits.shape[0], dtype=torch.long, device=hits.device)
            alive = torch.ones(hits.shape[0], dtype=torch.bool, device=hits.device)
            for t in range(k):
                if i + t >= hits.shape[1]:
                    break
                alive &= hits[:, i + t]
                r += alive.long()
            run[:, i] = r
        accepted[k] = round(1 + run[:, :hits.shape[1] - max_draft].float().mean().item(), 3)
    return {"mtp_acceptance": round(mtp_hits.mean().item(), 4), "draft_acceptance": round(hits.float().mean().item(), 4),
            "draft_tokens_per_step_by_k": accepted, "mtp_tokens_per_step": round(1 + mtp_hits.mean().item(), 3),
            "sequences": seqs}


def run_eval(args, device, valid_windows, tokenizer):
    models.COMPUTE_DTYPE = None  # float32 throughout, as the shipped weights are computed by Kiln
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    main, _ = load_export(args.export_main, device)
    draft, _ = load_export(args.export_draft, device)
    results = {"measured_on": "the exported bf16 weights, computed in float32, held-out split (valid.bin)",
               "held_out_tokens": int(valid_windows.shape[0] * args.seq)}
    m = evaluate(main, valid_windows, args.seq, args.eval_batch, use_autocast=False)
    d = evaluate(draft, valid_windows, args.seq, args.eval_batch, teacher=main, use_autocast=False)
    results["main"] = {"perplexity": round(math.exp(m["loss"]), 3), "loss": round(m["loss"], 4),
                       "top1_accuracy": round(m["top1"], 4),
                       "mtp_perplexity_token_j_plus_2": round(math.exp(m["mtp_loss"]), 3),
                       "mtp_top1_accuracy_token_j_plus_2": round(m["mtp_top1"], 4),
                       "mtp_acceptance_true_prefix": round(m["mtp_acceptance"], 4)}
    results["draft"] = {"perplexity": round(math.exp(d["loss"]), 3), "loss": round(d["loss"], 4),
                        "top1_accuracy": round(d["top1"], 4),
                        "draft_acceptance_true_prefix": round(d["draft_acceptance"], 4)}
    prompts = valid_windows[:: max(1, valid_windows.shape[0] // 16)][:16, :32]
    spec = speculation_on_greedy_text(main, draft, prompts, 96, 4)
    seqs = spec.pop("sequences")
    results["on_greedy_generations"] = {"prompts": int(prompts.shape[0]), "prompt_tokens": 32, "new_tokens": 96, **spec}
    samples = []
    g = torch.Generator().manual_seed(args.seed)
    for text in PROMPTS:
        ids = torch.tensor([tokenizer.encode(text).ids], device=device)
        for name, model in (("default", main), ("draft", draft)):
            greedy = generate(model, ids, 60)
            sampled = generate(model, ids, 60, temperature=0.8, top_k=40, generator=g)
            samples.append({"model": name, "prompt": text, "greedy": tokenizer.decode(greedy[0, ids.shape[1]:].tolist()),
                            "sampled (T=0.8, top-k 40)": tokenizer.decode(sampled[0, ids.shape[1]:].tolist())})
    chat_prompt = "".join(f"<|{m['role']}|>{m['content']}<|eos|>" for m in CHAT) + "<|assistant|>"
    ids = torch.tensor([tokenizer.encode(chat_prompt).ids], device=device)
    for name, model in (("default", main), ("draft", draft)):
        greedy = generate(model, ids, 100, stop=EOS)
        sampled = generate(model, ids, 100, temperature=0.8, top_k=40, generator=g, stop=EOS)
        samples.append({"model": name, "chat": chat_prompt,
                        "greedy": tokenizer.decode(greedy[0, ids.shape[1]:].tolist(), skip_special_tokens=False),
                        "sampled (T=0.8, top-k 40)": tokenizer.decode(sampled[0, ids.shape[1]:].tolist(),
                                                                     skip_special_tokens=False)})
    results["samples"] = samples
    results["greedy_generation_example"] = tokenizer.decode(seqs[0].tolist())
    results["transformers_cross_check"] = cross_check(args, main, draft, valid_windows, device)
    with open(os.path.join(args.work, "eval.json"), "w") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
    log("eval", json.dumps({k: v for k, v in results.items() if k != "samples"}, ensure_ascii=False))
    for s in samples:
        log("sample", json.dumps(s, ensure_ascii=False))


def cross_check(args, main, draft, valid_windows, device):
    """Loads the exported directories with transformers' own DeepseekV3ForCausalLM / Qwen2ForCausalLM and
    compares their logits with ours (float32, no TF32)."""
    out = {}
    try:
        import transformers
        out["transformers_version"] = transformers.__version__
        x = valid_windows[:2, :256]
        for name, directory, ours in (("default", args.export_main, main), ("draft", args.export_draft, draft)):
            cls = transformers.AutoModelForCausalLM
            hf = cls.from_pretrained(directory, dtype=torch.float32).to(device).eval()
            with torch.no_grad():
                theirs = hf(x).logits.float()
                mine = ours(x)[0].float()
            out[name] = {"max_abs_logit_diff": float((theirs - mine).abs().max()),
                         "logit_scale": float(mine.abs().max()),
                         "argmax_agreement": float((theirs.argmax(-1) == mine.argmax(-1)).float().mean())}
            del hf
    except Exception as e:  # the check is informative; the export stands on check_fixtures.py
        out["error"] = f"{type(e).__name__}: {e}"
    return out


# ---------------------------------------------------------------------------------------------------- plotting


def plot(work, path_png):
    rows = {}
    for kind in ("main", "main2", "draft"):
        p = os.path.join(work, f"history-{kind}.json")
        if os.path.exists(p):
            rows[kind] = json.load(open(p))["history"]
    with open(os.path.join(work, "loss.csv"), "w", newline="") as f:
        keys = sorted({k for rs in rows.values() for r in rs for k in r})
        w = csv.DictWriter(f, fieldnames=["model"] + keys)
        w.writeheader()
        for kind, rs in rows.items():
            for r in rs:
                w.writerow({"model": kind, **r})
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: loss.csv only")
        return
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    styles = {"train_ce": "-", "val_loss": "--", "train_mtp_ce": "-", "val_mtp_loss": "--"}
    labels = {"train_ce": "train, next token", "val_loss": "held-out, next token",
              "train_mtp_ce": "train, MTP (token j+2)", "val_mtp_loss": "held-out, MTP (token j+2)"}
    for kind in ("main", "main2", "draft"):
        i = 1 if kind == "draft" else 0
        for key, style in styles.items():
            pts = [(r["tokens"] / 1e6, r[key]) for r in rows.get(kind, []) if key in r]
            if pts:
                ax[i].plot(*zip(*pts), style, label=labels[key] + (" (2nd generation)" if kind == "main2" else ""))
        ax[i].set_title("draft model (Qwen2)" if kind == "draft" else "default model (DeepSeek-V3 + MTP)")
        ax[i].set_xlabel("training tokens (millions)")
        ax[i].set_ylabel("cross-entropy (nats)")
        ax[i].grid(alpha=0.3)
        ax[i].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path_png)
    log("wrote", path_png)


# -------------------------------------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with train.bin and valid.bin (train_tokenizer.py)")
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--work", required=True, help="checkpoints, histories, eval.json, loss.csv/png")
    ap.add_argument("--export-main", required=True)
    ap.add_argument("--export-draft", required=True)
    ap.add_argument("--stages", default="main,main2,draft,export,eval")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-batch", type=int, default=16)
    ap.add_argument("--main-steps", type=int, default=1800)
    ap.add_argument("--draft-steps", type=int, default=1000)
    ap.add_argument("--main-lr", type=float, default=2e-3)
    ap.add_argument("--draft-lr", type=float, default=3e-3)
    ap.add_argument("--main-budget-s", type=float, default=170)
    ap.add_argument("--main2-budget-s", type=float, default=200)
    ap.add_argument("--draft-budget-s", type=float, default=80)
    ap.add_argument("--attention-dropout", type=float, default=0.1)
    ap.add_argument("--draft-dropout", type=float, default=0.1)
    ap.add_argument("--main-distill", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--mtp-weight", type=float, default=0.3)
    ap.add_argument("--mtp-distill", type=float, default=2.0)
    ap.add_argument("--draft-distill", type=float, default=1.0)
    ap.add_argument("--bias-update", type=float, default=1e-3)
    ap.add_argument("--balance-loss", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="reduced shapes for a dry run")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    stages = args.stages.split(",")
    device = torch.device(args.device)
    os.makedirs(args.work, exist_ok=True)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        models.COMPUTE_DTYPE = torch.bfloat16

    try:
        from tokenizers import Tokenizer
        tokenizer = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    except ImportError:
        log("the tokenizers package is missing: bytes stand in for tokens (dry runs only)")
        tokenizer = ByteTokenizer()
    vocab = tokenizer.get_vocab_size()
    main_config = dict(MAIN_CONFIG, **(TINY_MAIN if args.tiny else {}))
    draft_config = dict(DRAFT_CONFIG, **(TINY_DRAFT if args.tiny else {}))
    main_config["vocab_size"] = draft_config["vocab_size"] = max(vocab, 8) if args.tiny else MAIN_CONFIG["vocab_size"]
    assert vocab <= main_config["vocab_size"], (vocab, main_config["vocab_size"])
    assert args.seq <= main_config["max_position_embeddings"]

    train_tokens = Tokens(os.path.join(args.data, "train.bin"), device)
    valid = Tokens(os.path.join(args.data, "valid.bin"), device)
    valid_windows = valid.windows(args.seq + 2, args.seq)
    log(f"train {train_tokens.ids.numel():,} tokens, held-out {valid.ids.numel():,} ({valid_windows.shape[0]} windows)")

    def training_config(c, dropout):
        return dict(c, hidden_dropout=dropout, attention_dropout=args.attention_dropout)

    def best_loss(kind):
        return json.load(open(os.path.join(args.work, f"history-{kind}.json")))["best_val_loss"]

    main_path = os.path.join(args.work, "main-final.pt")
    if "main" in stages:
        model = models.DeepseekV3(training_config(main_config, args.dropout))
        models.initialise(model)
        model = train("main", model.to(device), train_tokens, valid_windows, args, device)
        torch.save(model.state_dict(), os.path.join(args.work, "main-best.pt"))
        shutil.copy(os.path.join(args.work, "main-best.pt"), main_path)
        chosen = {"generation": 1, "held_out_loss": best_loss("main")}
        if "main2" in stages:
            teacher = models.DeepseekV3(main_config).to(device)
            teacher.load_state_dict(model.state_dict())
            teacher.eval().requires_grad_(False)
            del model
            model = models.DeepseekV3(training_config(main_config, args.dropout))
            models.initialise(model)
            model = train("main2", model.to(device), train_tokens, valid_windows, args, device, teacher)
            torch.save(model.state_dict(), os.path.join(args.work, "main2-best.pt"))
            del teacher
            if best_loss("main2") < best_loss("main"):
                shutil.copy(os.path.join(args.work, "main2-best.pt"), main_path)
                chosen = {"generation": 2, "held_out_loss": best_loss("main2")}
        log("default model: keeping", json.dumps(chosen))
        with open(os.path.join(args.work, "main-chosen.json"), "w") as f:
            json.dump(chosen, f)
    if "draft" in stages:
        teacher = models.DeepseekV3(main_config).to(device)
        teacher.load_state_dict(torch.load(main_path, map_location=device))
        teacher.eval().requires_grad_(False)
        draft = models.Qwen2(training_config(draft_config, args.draft_dropout))
        models.initialise(draft)
        draft = train("draft", draft.to(device), train_tokens, valid_windows, args, device, teacher)
        torch.save(draft.state_dict(), os.path.join(args.work, "draft-best.pt"))
        del teacher
    if "export" in stages:
        generation = {"bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD, "do_sample": True,
                      "temperature": 0.8, "top_k": 40, "max_new_tokens": 256}
        main = models.DeepseekV3(main_config)
        main.load_state_dict(torch.load(main_path, map_location="cpu"))
        export(main, main_config, args.export_main, args.tokenizer, generation)
        draft = models.Qwen2(draft_config)
        draft.load_state_dict(torch.load(os.path.join(args.work, "draft-best.pt"), map_location="cpu"))
        export(draft, draft_config, args.export_draft, args.tokenizer, generation)
        plot(args.work, os.path.join(args.work, "loss.png"))
    if "eval" in stages:
        run_eval(args, device, valid_windows, tokenizer)


if __name__ == "__main__":
    main()
