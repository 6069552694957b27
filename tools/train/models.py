"""PyTorch definitions of the two architectures that the training script writes, in the Hugging Face hub layout:
DeepSeek-V3 (MLA, DeepSeekMoE with sigmoid scores + correction bias + group-limited top-k, one MTP module) and
Qwen2. They compute what transformers' DeepseekV3ForCausalLM / Qwen2ForCausalLM and fixtures/spec/*.py compute
(`check_fixtures.py` proves it against the fixtures' reference logits); they exist because training needs what
those do not give: the MTP module and its loss, routed experts evaluated as one batched product, dropout.

Parameter names are the hub's, except the routed experts, stacked per layer for speed
(`experts_gate_proj` [E, I, H] and friends); `hub_state_dict` / `load_hub_state_dict` convert.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# The dtype of the routed experts' batched products when autocast is on (einsum is not on autocast's list).
COMPUTE_DTYPE = None


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * x).to(dtype)


def attention(q, k, v, scale, dropout):
    """Causal attention over [B, heads, T, d]; v may be narrower than q and k."""
    if hasattr(F, "scaled_dot_product_attention"):
        dv = v.shape[-1]
        if dv != q.shape[-1]:
            v = F.pad(v, (0, q.shape[-1] - dv))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, dropout_p=dropout)
        return o[..., :dv]
    t = q.shape[-2]
    s = (q @ k.transpose(-1, -2)).float() * scale
    s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    p = F.dropout(s.softmax(-1), dropout, True) if dropout else s.softmax(-1)
    return p.to(v.dtype) @ v


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def yarn_inverse_frequencies(dim, theta, scaling):
    """Default or YaRN frequencies and the magnitude on cos/sin, as in fixtures/spec/deepseek_numpy.py."""
    pos = theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    extrapolated = 1.0 / pos
    kind = (scaling or {}).get("type", (scaling or {}).get("rope_type"))
    if kind != "yarn":
        return extrapolated, 1.0
    factor = scaling["factor"]
    interpolated = 1.0 / (factor * pos)
    original = scaling["original_max_position_embeddings"]

    def correction_dim(rotations):
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(scaling.get("beta_fast", 32))), 0)
    high = min(math.ceil(correction_dim(scaling.get("beta_slow", 1))), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp

    def mscale(s, m=1.0):
        return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0

    if scaling.get("mscale_all_dim"):
        magnitude = mscale(factor, scaling.get("mscale", 1)) / mscale(factor, scaling["mscale_all_dim"])
    else:
        magnitude = mscale(factor)
    return interpolated * (1 - extrapolation) + extrapolated * extrapolation, magnitude


class Rotary(nn.Module):
    """cos/sin tables; `interleave` first regroups pairs (x0, x1), (x2, x3).. into halves, as DeepSeek does."""

    def __init__(self, dim, theta, scaling, max_positions, interleave):
        super().__init__()
        inv, magnitude = yarn_inverse_frequencies(dim, theta, scaling)
        ang = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv)
        ang = torch.cat([ang, ang], -1)
        self.register_buffer("cos", (ang.cos() * magnitude).float(), persistent=False)
        self.register_buffer("sin", (ang.sin() * magnitude).float(), persistent=False)
        self.interleave = interleave

    def forward(self, x):  # [B, heads, T, d]
        t = x.shape[-2]
        if self.interleave:
            x = torch.cat([x[..., 0::2], x[..., 1::2]], -1)
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)
        return x * cos + rotate_half(x) * sin


class Mlp(nn.Module):
    def __init__(self, hidden, width):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, width, bias=False)
        self.up_proj = nn.Linear(hidden, width, bias=False)
        self.down_proj = nn.Linear(width, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


# ----------------------------------------------------------------------------------------------- DeepSeek-V3


class LatentAttention(nn.Module):
    def __init__(self, c, rotary):
        super().__init__()
        h, self.heads = c["hidden_size"], c["num_attention_heads"]
        self.nope, self.rope_dim, self.value = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        self.kv_rank = c["kv_lora_rank"]
        qk = self.nope + self.rope_dim
        self.q_a_proj = nn.Linear(h, c["q_lora_rank"], bias=False)
        self.q_a_layernorm = RMSNorm(c["q_lora_rank"], c["rms_norm_eps"])
        self.q_b_proj = nn.Linear(c["q_lora_rank"], self.heads * qk, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(h, self.kv_rank + self.rope_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(self.kv_rank, c["rms_norm_eps"])
        self.kv_b_proj = nn.Linear(self.kv_rank, self.heads * (self.nope + self.value), bias=False)
        self.o_proj = nn.Linear(self.heads * self.value, h, bias=False)
        self.rotary = rotary
        self.scale = qk ** -0.5
        scaling = c.get("rope_scaling") or {}
        if scaling.get("mscale_all_dim") and scaling.get("factor", 1) > 1:
            m = 0.1 * scaling["mscale_all_dim"] * math.log(scaling["factor"]) + 1
            self.scale *= m * m
        self.dropout = c.get("attention_dropout", 0.0)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))).view(b, t, self.heads, -1).transpose(1, 2)
        q_nope, q_rope = q.split([self.nope, self.rope_dim], -1)
        latent, k_rope = self.kv_a_proj_with_mqa(x).split([self.kv_rank, self.rope_dim], -1)
        kv = self.kv_b_proj(self.kv_a_layernorm(latent)).view(b, t, self.heads, -1).transpose(1, 2)
        k_nope, v = kv.split([self.nope, self.value], -1)
        q_rope = self.rotary(q_rope)
        k_rope = self.rotary(k_rope.view(b, 1, t, self.rope_dim)).expand(b, self.heads, t, self.rope_dim)
        q = torch.cat([q_nope, q_rope], -1)
        k = torch.cat([k_nope, k_rope], -1)
        o = attention(q, k, v, self.scale, self.dropout if self.training else 0.0)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, self.heads * self.value))


class Router(nn.Module):
    """Sigmoid scores; the correction bias steers the choice only (aux-loss-free balancing, updated outside)."""

    def __init__(self, hidden, experts):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(experts, hidden))
        self.register_buffer("e_score_correction_bias", torch.zeros(experts))


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, e, w = c["hidden_size"], c["n_routed_experts"], c["moe_intermediate_size"]
        self.experts, self.top_k = e, c["num_experts_per_tok"]
        self.groups, self.top_groups = c["n_group"], c["topk_group"]
        self.normalize, self.scaling = c["norm_topk_prob"], c["routed_scaling_factor"]
        self.gate = Router(h, e)
        self.experts_gate_proj = nn.Parameter(torch.empty(e, w, h))
        self.experts_up_proj = nn.Parameter(torch.empty(e, w, h))
        self.experts_down_proj = nn.Parameter(torch.empty(e, h, w))
        self.shared_experts = Mlp(h, w * c["n_shared_experts"])
        self.last_load = None  # experts chosen per token, summed over the last batch (for the bias update)
        self.balance_loss = None  # DeepSeek-V3's complementary balance loss over the last batch (training only)

    def route(self, x):
        logits = F.linear(x.float(), self.gate.weight.float())
        scores = logits.sigmoid()
        choice = scores + self.gate.e_score_correction_bias.float()
        n = x.shape[0]
        group_scores = choice.view(n, self.groups, -1).topk(2, -1).values.sum(-1)
        group_index = group_scores.topk(self.top_groups, -1).indices
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_index, 1.0)
        expert_mask = group_mask.repeat_interleave(self.experts // self.groups, 1)
        choice = choice.masked_fill(expert_mask == 0, 0.0)
        index = choice.topk(self.top_k, -1).indices
        weights = scores.gather(1, index)
        if self.normalize:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return index, weights * self.scaling, scores

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        index, weights, scores = self.route(x)
        with torch.no_grad():
            self.last_load = torch.zeros(self.experts, device=x.device).scatter_add_(
                0, index.flatten(), torch.ones(index.numel(), device=x.device))
        if self.training:
            # sum_i f_i * P_i: f_i the fraction of choices that went to expert i (times E / k), P_i its mean
            # normalised score; small, it only keeps the router from collapsing before the bias catches up.
            f = self.last_load * self.experts / index.numel()
            p = (scores / scores.sum(-1, keepdim=True)).mean(0)
            self.balance_loss = (f * p).sum()
        combine = torch.zeros(x.shape[0], self.experts, device=x.device, dtype=weights.dtype)
        combine = combine.scatter(1, index, weights)
        # Every expert on every token, then the routing weights (zero off the chosen ones): one batched product
        # beats gathering when the experts are this small.
        dt = COMPUTE_DTYPE or x.dtype
        xe = x.to(dt)
        g = torch.einsum("nh,eih->eni", xe, self.experts_gate_proj.to(dt))
        u = torch.einsum("nh,eih->eni", xe, self.experts_up_proj.to(dt))
        y = torch.einsum("eni,ehi->enh", F.silu(g) * u, self.experts_down_proj.to(dt))
        out = torch.einsum("enh,ne->nh", y, combine.to(dt))
        return (out + self.shared_experts(x)).view(shape)


class DecoderLayer(nn.Module):
    def __init__(self, c, index, rotary):
        super().__init__()
        h, eps = c["hidden_size"], c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(h, eps)
        self.self_attn = LatentAttention(c, rotary)
        self.post_attention_layernorm = RMSNorm(h, eps)
        self.mlp = Mlp(h, c["intermediate_size"]) if index < c["first_k_dense_replace"] else MoE(c)
        self.dropout = c.get("hidden_dropout", 0.0)

    def forward(self, x):
        drop = self.dropout if self.training else 0.0
        x = x + F.dropout(self.self_attn(self.input_layernorm(x)), drop, self.training)
        return x + F.dropout(self.mlp(self.post_attention_layernorm(x)), drop, self.training)


class SharedHead(nn.Module):
    def __init__(self, h, eps):
        super().__init__()
        self.norm = RMSNorm(h, eps)


class MtpLayer(DecoderLayer):
    """The MTP module: [enorm(embed(t[j+1])) | hnorm(final-norm hidden h[j])] -> eh_proj -> a decoder block ->
    shared_head.norm -> the (shared) output head, predicting t[j+2]. The embedding is zero at position 0."""

    def __init__(self, c, index, rotary):
        super().__init__(c, index, rotary)
        h, eps = c["hidden_size"], c["rms_norm_eps"]
        self.enorm = RMSNorm(h, eps)
        self.hnorm = RMSNorm(h, eps)
        self.eh_proj = nn.Linear(2 * h, h, bias=False)
        self.shared_head = SharedHead(h, eps)

    def forward(self, next_embedding, hidden):
        next_embedding = next_embedding.clone()
        next_embedding[:, 0] = 0
        x = self.eh_proj(torch.cat([self.enorm(next_embedding), self.hnorm(hidden)], -1))
        return self.shared_head.norm(super().forward(x))


class DeepseekV3(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        rotary = Rotary(c["qk_rope_head_dim"], c.get("rope_theta", 10000.0), c.get("rope_scaling"),
                        c["max_position_embeddings"], c.get("rope_interleave", True))
        self.layers = nn.ModuleList(DecoderLayer(c, i, rotary) for i in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mtp = MtpLayer(c, c["num_hidden_layers"], rotary) if c.get("num_nextn_predict_layers") else None
        self.lm_head = None if c.get("tie_word_embeddings") else nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.shared_head_weight = None  # set when loading a checkpoint whose MTP head differs from the main head

    def head(self, x):
        return F.linear(x, self.lm_head.weight if self.lm_head is not None else self.embed_tokens.weight)

    def forward(self, ids, mtp_next=None):
        """ids [B, T] -> (logits [B, T, V], final-norm hidden). With mtp_next [B, T] (token j+1 at j), also the
        MTP logits [B, T, V] predicting token j+2."""
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        hidden = self.norm(x)
        logits = self.head(hidden)
        if mtp_next is None or self.mtp is None:
            return logits, hidden, None
        m = self.mtp(self.embed_tokens(mtp_next), hidden)
        mtp_logits = F.linear(m, self.shared_head_weight) if self.shared_head_weight is not None else self.head(m)
        return logits, hidden, mtp_logits

    def moe_layers(self):
        return [m for m in self.modules() if isinstance(m, MoE)]


# ------------------------------------------------------------------------------------------------------ Qwen2


class GqaAttention(nn.Module):
    def __init__(self, c, rotary):
        super().__init__()
        h = c["hidden_size"]
        self.heads, self.kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        self.dim = h // self.heads
        self.q_proj = nn.Linear(h, self.heads * self.dim, bias=True)
        self.k_proj = nn.Linear(h, self.kv_heads * self.dim, bias=True)
        self.v_proj = nn.Linear(h, self.kv_heads * self.dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.dim, h, bias=False)
        self.rotary = rotary
        self.dropout = c.get("attention_dropout", 0.0)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.rotary(self.q_proj(x).view(b, t, self.heads, self.dim).transpose(1, 2))
        k = self.rotary(self.k_proj(x).view(b, t, self.kv_heads, self.dim).transpose(1, 2))
        v = self.v_proj(x).view(b, t, self.kv_heads, self.dim).transpose(1, 2)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        o = attention(q, k, v, self.dim ** -0.5, self.dropout if self.training else 0.0)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))


class Qwen2Layer(nn.Module):
    def __init__(self, c, rotary):
        super().__init__()
        h, eps = c["hidden_size"], c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(h, eps)
        self.self_attn = GqaAttention(c, rotary)
        self.post_attention_layernorm = RMSNorm(h, eps)
        self.mlp = Mlp(h, c["intermediate_size"])
        self.dropout = c.get("hidden_dropout", 0.0)

    def forward(self, x):
        drop = self.dropout if self.training else 0.0
        x = x + F.dropout(self.self_attn(self.input_layernorm(x)), drop, self.training)
        return x + F.dropout(self.mlp(self.post_attention_layernorm(x)), drop, self.training)


class Qwen2(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        rotary = Rotary(c["hidden_size"] // c["num_attention_heads"], c.get("rope_theta", 10000.0), None,
                        c["max_position_embeddings"], False)
        self.layers = nn.ModuleList(Qwen2Layer(c, rotary) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = None if c.get("tie_word_embeddings") else nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, ids, mtp_next=None):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        hidden = self.norm(x)
        w = self.lm_head.weight if self.lm_head is not None else self.embed_tokens.weight
        return F.linear(hidden, w), hidden, None


# ---------------------------------------------------------------------------------------- initialisation, I/O


def initialise(model, std=0.02):
    """Normal(0, std) weights, output projections shrunk by 1/sqrt(2 * blocks), norms at 1, biases at 0."""
    blocks = len(model.layers) + (1 if getattr(model, "mtp", None) is not None else 0)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            nn.init.ones_(p)
        elif name.endswith(".bias"):
            nn.init.zeros_(p)
        elif any(s in name for s in ("o_proj", "down_proj")):
            nn.init.normal_(p, 0.0, std / math.sqrt(2 * blocks))
        else:
            nn.init.normal_(p, 0.0, std)


def hub_state_dict(model):
    """The model's tensors under the hub's names (per-expert keys, MTP at model.layers.{L}, heads resolved)."""
    c = model.config
    out = {}
    mtp_index = c["num_hidden_layers"]
    for name, t in model.state_dict().items():
        if name.startswith("mtp."):
            name = f"layers.{mtp_index}." + name[len("mtp."):]
        if name == "lm_head.weight":
            out[name] = t
            continue
        hub = "model." + name
        if ".mlp.experts_" in hub:
            prefix, kind = hub.split(".mlp.experts_")
            for e in range(t.shape[0]):
                out[f"{prefix}.mlp.experts.{e}.{kind}.weight"] = t[e]
        else:
            out[hub] = t
    if getattr(model, "mtp", None) is not None:
        head = model.lm_head.weight if model.lm_head is not None else model.embed_tokens.weight
        out[f"model.layers.{mtp_index}.shared_head.head.weight"] = head.detach()
    return out


def load_hub_state_dict(model, tensors):
    """Inverse of hub_state_dict; tensors the model does not use (e.g. an MTP layer's embed_tokens copy) are
    skipped. Returns the names that were skipped."""
    c = model.config
    mtp_index = c["num_hidden_layers"]
    own = model.state_dict()
    stacked = {}
    skipped = []
    for hub, t in tensors.items():
        name = hub[len("model."):] if hub.startswith("model.") else hub
        if name.startswith(f"layers.{mtp_index}."):
            name = "mtp." + name[len(f"layers.{mtp_index}."):]
        if name == "mtp.shared_head.head.weight":
            head = own["lm_head.weight"] if "lm_head.weight" in own else own["embed_tokens.weight"]
            if not torch.equal(head.float(), t.float().to(head.device)):
                model.shared_head_weight = nn.Parameter(t.to(head.dtype).clone(), requires_grad=False)
            continue
        if ".mlp.experts." in name:
            prefix, rest = name.split(".mlp.experts.")
            e, kind, _ = rest.split(".")
            stacked.setdefault(f"{prefix}.mlp.experts_{kind}", {})[int(e)] = t
            continue
        if name not in own:
            skipped.append(hub)
            continue
        own[name].copy_(t.to(own[name].dtype))
    for name, parts in stacked.items():
        own[name].copy_(torch.stack([parts[e] for e in range(len(parts))]).to(own[name].dtype))
    if "lm_head.weight" in own and "lm_head.weight" not in tensors:
        own["lm_head.weight"].copy_(own["embed_tokens.weight"])
    return skipped
