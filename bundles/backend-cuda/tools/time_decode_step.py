"""Times one batch-1 decode step of the DeepSeek-R1-Distill-Qwen-1.5B shape built from the CUDA backend's kernels
exactly as the Java side issues them (fusions included: q/k/v in one launch, gate/up with SiLU, each RMSNorm inside
the product after it and each residual add inside the product before it, the decode attention kernel (or the split
kernel) rotating q and k and writing the new cache entry itself, over a bf16 cache), replayed as one CUDA graph, with
and without programmatic dependent launches (PDL), and with parts of the step swapped or left out to show what each
part costs on the GPU.

The bound is the weight bytes of one token over the device-to-device copy bandwidth measured in the same run.
Needs CuPy and NumPy on a CUDA machine. Usage: python3 time_decode_step.py [path/to/kernels.cu[,other.cu...]] [context]
With several sources (variants of kernels.cu), each row is timed with each source in turn, for ROUNDS rounds.
"""
import math
import os
import sys

import cupy as cp
import numpy as np
import kiln_nvrtc

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = (sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, "..", "src", "main", "resources", "dev", "kiln", "backend", "cuda", "internal", "kernels.cu")).split(",")
CONTEXT = int(sys.argv[2]) if len(sys.argv) > 2 else 256
i32, i64, f32, u64 = np.int32, np.int64, np.float32, np.uint64


def compile_cubin(source, arch):
    return kiln_nvrtc.compile_cubin(source, arch, "kernels.cu")


props = cp.cuda.runtime.getDeviceProperties(0)
major, minor = props["major"], props["minor"]
arch = f"sm_{major}{minor}" + ("a" if (major, minor) == (9, 0) else "")
modules = []
for i, source in enumerate(SOURCES):
    path = f"/tmp/kiln-step-kernels-{i}.cubin"
    with open(path, "wb") as f:
        f.write(compile_cubin(open(source).read(), arch))
    modules.append(cp.RawModule(path=path))
current = [0]  # the source whose kernels launch() takes
functions = {}
stream = cp.cuda.Stream(non_blocking=True)
programmatic = [False]


def launch(name, grid, block, args, shared=0, cluster_y=1):
    """cuLaunchKernelEx, a programmatic launch when programmatic[0] (as the Java recorder makes them)."""
    shared = max(shared, smem_floor.get(name, 0))
    fn = functions.get((current[0], name))
    if fn is None:
        fn = functions[(current[0], name)] = modules[current[0]].get_function(name)
    kiln_nvrtc.launch_ex(fn, grid, block, args, shared, stream.ptr, cluster_y, programmatic[0])


# ---- the model --------------------------------------------------------------------------------------------------
H, I, L, NH, KVH, V, D, BS = 1536, 8960, 28, 12, 2, 151936, 128, 16


def random_bf16(r, c):  # magnitudes in [2^-7, 2^-6), random mantissas
    return (cp.random.randint(0, 256, size=(r, c), dtype=cp.int32) + 0x3c00).astype(cp.uint16)


n = 1 << 30
a_, b_ = cp.empty(n, cp.uint8), cp.empty(n, cp.uint8)
a_.fill(1)
start, end = cp.cuda.Event(), cp.cuda.Event()
rates = []
for i in range(10):
    start.record()
    b_.data.copy_from_device(a_.data, n)
    end.record()
    end.synchronize()
    rates.append(2 * n / (cp.cuda.get_elapsed_time(start, end) / 1e3))
bandwidth = float(np.median(rates))
del a_, b_
layers = [dict(q=random_bf16(NH * D, H), k=random_bf16(KVH * D, H), v=random_bf16(KVH * D, H), o=random_bf16(H, NH * D),
               g=random_bf16(I, H), u=random_bf16(I, H), d=random_bf16(H, I), qb=cp.zeros(NH * D, cp.float32),
               kb=cp.zeros(KVH * D, cp.float32), vb=cp.zeros(KVH * D, cp.float32),
               n1=cp.ones(H, cp.float32), n2=cp.ones(H, cp.float32)) for _ in range(L)]
lm_head = random_bf16(V, H)
table = random_bf16(V, H)
per_token = sum(m.nbytes for layer in layers for k_, m in layer.items() if m.dtype == cp.uint16) + lm_head.nbytes
bound = bandwidth / per_token
print(f"device {props['name'].decode()}; copy {bandwidth / 1e9:.0f} GB/s; {per_token / 1e9:.3f} GB a token -> bound "
      f"{bound:.0f} tok/s; context {CONTEXT}")

# One sequence at position CONTEXT - 1: the metadata as AttentionBatch.pack lays it out (bucket of the context).
bucket = 256
while bucket < CONTEXT:
    bucket *= 2
stride = bucket // BS
blocks_used = -(-CONTEXT // BS)
meta = cp.asarray(np.array([0, CONTEXT - 1, CONTEXT - 1] + list(range(blocks_used)) + [-1] * (stride - blocks_used), np.int32))
# A bf16 cache, the CUDA backend's default (kv-cache-dtype auto).
keys = [random_bf16(blocks_used * KVH * BS, D) for _ in range(L)]
vals = [random_bf16(blocks_used * KVH * BS, D) for _ in range(L)]
# SplitAttentionPlan for 1 token, 12/2 heads of 128 (see check_kernels.split_plan): one head block of 6 heads.
group, hpb = NH // KVH, NH // KVH
tile = 64
shared = lambda t: 4 * (hpb * D + 3 * D + t * (D + 4) + t * (D + 4) + hpb * t + 3 * hpb)
while shared(tile) > 48 * 1024:
    tile //= 2
rows_ = KVH
splits = 1
while splits * 2 <= 2 * props["multiProcessorCount"] // rows_:
    splits *= 2
splits = min(splits, 4096, max(1, bucket // 32))
most_tile = tile
partials = cp.zeros(NH * max(splits, 16) * (D + 4), cp.float32)
ang = np.arange(bucket)[:, None] * np.array([10000 ** (-2.0 * i / D) for i in range(D // 2)])[None, :]
cos_t, sin_t = cp.asarray(np.cos(ang).astype(np.float32)), cp.asarray(np.sin(ang).astype(np.float32))

x = cp.asarray(np.random.default_rng(1).uniform(-1, 1, (1, H)).astype(np.float32))
h = cp.empty((1, H), cp.float32)
q = cp.empty((1, NH * D), cp.float32)
k = cp.empty((1, KVH * D), cp.float32)
v = cp.empty((1, KVH * D), cp.float32)
att = cp.empty((1, NH * D), cp.float32)
gate = cp.empty((1, I), cp.float32)
up = cp.empty((1, I), cp.float32)
logits = cp.empty((1, V), cp.float32)
best_values = cp.empty(64, cp.float32)
best_indices = cp.empty(64, cp.int32)
chosen = cp.empty(1, cp.int32)
ids = cp.asarray(np.array([17], np.int32))
placeholder = cp.asarray(np.array([-1], np.int32))
readback = cp.cuda.alloc_pinned_memory(64)
eps = f32(1e-6)


NONE = (u64(0), f32(0), u64(0))  # no norm fused before a product


smem_floor = {}  # kernel name -> dynamic shared memory to launch it with at least (to cap its blocks per SM)


staging = cp.cuda.alloc_pinned_memory(256)
uploaded = cp.empty(64, cp.uint8)


def upload():
    cp.cuda.runtime.memcpyAsync(uploaded.data.ptr, staging.ptr, 64, cp.cuda.runtime.memcpyHostToDevice, stream.ptr)


def step(parts):
    """parts: "rotary" (folded into the attention unless "separate rotary" or "separate cache write"), "attention"
    (with "separate cache write": kiln_write_kv before it), "norms" (separate norm
    kernels, the residual add inside the second) or
    "fused norms" (each norm inside the next product, each residual add inside the product before it)."""
    smem_floor.clear()
    smem_floor.update({p[1]: p[2] for p in parts if isinstance(p, tuple) and p[0] == "smem"})
    fused = "fused norms" in parts
    # The one-token warp-per-row products (gate/up, lm_head) stage x in shared memory when given 4 bytes a column, as
    # the Java side launches them ("unstaged": without).
    staged = 0 if "unstaged" in parts else 4 * H
    # Diagnostics: "no normed stores" (the fused norms skip storing the normed rows that later readers could read),
    # "no residual adds" (the o and down products store their rows only; the values are wrong, the timing is not).
    normed_out = u64(0) if "no normed stores" in parts else h
    residual = x if fused and "no residual adds" not in parts else u64(0)
    # "upload at start" / "upload before attention": a small host-to-device copy from page-locked memory (the Java
    # side's per-step arrays, which its upload ring copies in), at the step's start or between layer 0's q/k/v product
    # and its attention, where the attention metadata's upload lands when the first layer asks for it.
    if "upload at start" in parts:
        upload()
    if "resolve" in parts:  # as Java queues an overlapped step: the token id taken from the step ahead's choice
        launch("kiln_resolve_tokens", (1,), 256, (placeholder, chosen, ids, i32(1)))
    launch("kiln_embed_bf16", (1,), 256, (table, ids, x, i32(H)))
    if not fused:
        launch("kiln_rms_norm", (1,), 256, (x, layers[0]["n1"], eps, h, i32(H), np.uint64(0), np.uint64(0)))
    for l, w in enumerate(layers):
        launch("kiln_gemv3_split_bf16_t1", (NH * D + 2 * KVH * D,), 128,
               (x if fused else h, i32(H), i32(1), w["q"], q, i32(NH * D), w["qb"], w["k"], k, i32(KVH * D), w["kb"],
                w["v"], v, i32(KVH * D), w["vb"]) + ((w["n1"], eps, normed_out) if fused else NONE))
        fused_write = "attention" in parts and "separate cache write" not in parts
        if l == 0 and "upload before attention" in parts:
            upload()
        fold_rotary = fused_write and "rotary" in parts and "separate rotary" not in parts
        if "rotary" in parts and not fold_rotary:
            launch("kiln_rotary2", (1, 2), 256, (q, i32(NH * D), i32(NH), k, i32(KVH * D), i32(KVH), u64(meta.data.ptr + 4),
                                               cos_t, sin_t, i32(D), i32(0), i32(D // 2), i32(0)))
            if not fused_write:
                launch("kiln_write_kv_bf16", (1,), 256, (k, v, keys[l], vals[l], u64(meta.data.ptr + 8), i32(KVH), i32(D), i32(D), i32(BS)))
        if "empty attention" in parts:
            launch("kiln_add", (1,), 32, (att, att, i64(0)))  # a kernel that only waits for the one ahead
        decode = next((p[1] for p in parts if isinstance(p, tuple) and p[0] == "decode"), None)
        if decode is not None:  # kiln_decode_attention_bf16 over `decode` splits, the cache write and rotary folded in
            launch("kiln_decode_attention_bf16", (KVH, decode), 256, (
                q, att, keys[l], vals[l], u64(meta.data.ptr + 4), u64(meta.data.ptr + 12), i32(stride), i32(NH), i32(KVH),
                i32(BS), i32(bucket // decode), f32(1 / math.sqrt(D)), k, v, u64(meta.data.ptr + 8),
                u64(meta.data.ptr + 4), cos_t, sin_t, i32(D // 2), i32(0)), 0, decode)
        elif "attention" in parts:
            new_rows = (k, v, u64(meta.data.ptr + 8)) if fused_write else (u64(0), u64(0), u64(0))
            new_rows += (u64(meta.data.ptr + 4), cos_t, sin_t, i32(0), i32(D // 2), i32(0)) if fold_rotary \
                else (u64(0), u64(0), u64(0), i32(0), i32(0), i32(0))
            # The plan's splits merged in a cluster when at most 16, else by the combine kernel; ("splits", n) forces n.
            n_splits = next((p[1] for p in parts if isinstance(p, tuple) and p[0] == "splits"), splits)
            chunk = bucket // n_splits
            tile = min(most_tile, chunk)
            clustered = 1 < n_splits <= 16 and "combine kernel" not in parts
            launch("kiln_paged_attention_split_bf16", (rows_, n_splits), 256, (
                q, att, partials if n_splits > 1 and not clustered else u64(0), keys[l], vals[l], meta, u64(meta.data.ptr + 4),
                u64(meta.data.ptr + 12), i32(stride), i32(NH), i32(KVH), i32(hpb), i32(D), i32(D), i32(D), i32(BS),
                i32(chunk), i32(tile), f32(1 / math.sqrt(D))) + new_rows, shared(tile), n_splits if clustered else 1)
            if n_splits > 1 and not clustered:
                launch("kiln_paged_attention_combine", (1, NH), 256, (partials, att, u64(meta.data.ptr + 4), i32(NH),
                                                                      i32(D), i32(chunk), i32(n_splits)), 4 * n_splits)
        launch("kiln_gemv_split_bf16_t1", (H,), 128, (w["o"], att, h, i32(H), i32(NH * D), i32(1), i32(1), u64(0),
                                                     residual) + NONE)
        if "norms" in parts:
            launch("kiln_add_rms_norm", (1,), 256, (x, h, w["n2"], eps, h, i32(H), np.uint64(0), np.uint64(0)))
        launch("kiln_gemv_silu_bf16_t1", ((I + 3) // 4,), 128, (x if fused else h, i32(H), i32(1), w["g"], w["u"], gate,
                                                                  up, gate, i32(I)) + ((w["n2"], eps, normed_out) if fused else NONE),
               staged)
        launch("kiln_gemv_split_bf16_t1", (H,), 128, (w["d"], gate, h, i32(H), i32(I), i32(1), i32(1), u64(0),
                                                     residual) + NONE)
        if "norms" in parts:
            nxt = layers[l + 1]["n1"] if l + 1 < L else layers[l]["n1"]
            launch("kiln_add_rms_norm", (1,), 256, (x, h, nxt, eps, h, i32(H), np.uint64(0), np.uint64(0)))
    launch("kiln_gemv_bf16_t1", ((V + 3) // 4,), 128, (lm_head, x if fused else h, logits, i32(V), i32(H), i32(1), i32(1),
                                                       u64(0), u64(0)) + ((layers[0]["n1"], eps, h) if fused else NONE),
           0 if "lm_head unstaged" in parts else staged)
    launch("kiln_argmax_slices", (64, 1), 256, (logits, i32(V), best_values, best_indices))
    launch("kiln_argmax_merge", (1,), 64, (best_values, best_indices, i32(64), chosen))


def time_step(parts, pdl, repeats=30):
    programmatic[0] = pdl
    # "readback": the chosen token copied to page-locked memory after each replay, outside the graph, as Java's
    # TokenReadbacks does.
    copy_back = (lambda: cp.cuda.runtime.memcpyAsync(readback.ptr, chosen.data.ptr, 4, cp.cuda.runtime.memcpyDeviceToHost,
                                                      stream.ptr)) if "readback" in parts else (lambda: None)
    with stream:
        stream.begin_capture()
        step(parts)
        graph = stream.end_capture()
        for _ in range(3):
            graph.launch(stream)
            copy_back()
        stream.synchronize()
        times = []
        # "two replays": two steps back to back between the timing events (the time of one reported), so that one
        # graph's end and the next one's start are inside the timing, as in steady decoding.
        replays = 2 if "two replays" in parts else 1
        for _ in range(repeats):
            start.record(stream)
            for _ in range(replays):
                graph.launch(stream)
                copy_back()
            end.record(stream)
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end) / 1e3 / replays)
    return float(np.median(times))


cp.cuda.Device().synchronize()
# The attention the Java side picks for this step: the decode kernel (DecodeAttentionPlan: up to 16 splits of a cluster
# that keep 32 to 128 keys each), else the split kernel.
decode_splits = min(16, bucket // 32, 2 * props["multiProcessorCount"] // (2 * KVH))
decode_plan = {("decode", decode_splits)} if bucket // decode_splits <= 128 else set()
everything = {"rotary", "attention", "fused norms"} | decode_plan
split_kernel = everything - decode_plan
variants = [("whole step", everything), ("resolve, readback (as Java)", everything | {"resolve", "readback"}),
            ("unstaged", everything | {"unstaged"}), ("lm_head unstaged", everything | {"lm_head unstaged"}),
            ("readback", everything | {"readback"}), ("resolve", everything | {"resolve"}),
            ("two steps a timing", everything | {"two replays"}),
            ("two steps a timing, resolve, readback", everything | {"two replays", "resolve", "readback"}), ("upload at start", everything | {"upload at start"}),
            ("upload before attention", everything | {"upload before attention"}), ("split attention kernel", split_kernel),
            ("split kernel, combine kernel", split_kernel | {"combine kernel"}),
            ("attention an empty kernel", everything - decode_plan - {"attention", "rotary"} | {"empty attention"}), ("split kernel, rotary apart", split_kernel | {"separate rotary"}),
            ("split kernel, cache write apart", split_kernel | {"separate cache write"}),
            ("norms as kernels of their own", everything - {"fused norms"} | {"norms"}),
            ("without attention", everything - decode_plan - {"attention", "rotary"}),
            ("split kernel, without rotary", split_kernel - {"rotary"}),
            ("fused norms, no normed stores", everything | {"no normed stores"}),
            ("fused norms, no residual adds", everything | {"no residual adds"}),
            ("without any norm", everything - {"fused norms"}), ("GEMVs (+ embed, argmax) only", set())]
# Experiments: fewer blocks per SM for one product kernel (dynamic shared memory as the limiter)
for kernel, caps in (("kiln_gemv_silu_bf16_t1", (5, 4)), ("kiln_gemv_split_bf16_t1", (10, 8, 6)),
                     ("kiln_gemv3_split_bf16_t1", (10, 8)), ("kiln_gemv_bf16_t1", (7, 6))):
    for cap in caps:
        variants.append((f"cap {kernel[5:]} {cap}", everything | {("smem", kernel, (228 // cap - 1) * 1024)}))
# KILN_STEP_VARIANTS="label;label..." times only the rows whose labels start so; KILN_STEP_PDL_ONLY=1 skips the
# plain-launch column.
wanted = [w for w in os.environ.get("KILN_STEP_VARIANTS", "").split(";") if w]
pdl_only = os.environ.get("KILN_STEP_PDL_ONLY") == "1"
print(f"{'':32} {'plain launches':>22} {'programmatic (PDL)':>26}")
for round_ in range(int(os.environ.get("ROUNDS", "1"))):
    for label, parts in variants:
        if wanted and not any(label.startswith(w) for w in wanted):
            continue
        for current[0], source in enumerate(SOURCES):
            t0, t1 = (float("nan") if pdl_only else time_step(parts, False)), time_step(parts, True)
            name = label if len(SOURCES) == 1 else f"{label} [{os.path.basename(source)}]"
            print(f"{name:32} {t0 * 1e3:7.3f} ms {100 / t0 / bound:4.0f}%    {t1 * 1e3:7.3f} ms {100 / t1 / bound:4.0f}% "
                  f"({1 / t1:.0f} tok/s)")
