"""Checks the CUDA backend's kernels on a CUDA machine without Java, and times a decode step's kernels.

Compiles src/main/resources/dev/kiln/backend/cuda/internal/kernels.cu with NVRTC and the options the Java side
uses, runs every kernel on random inputs against a float64 NumPy reference (inputs freshly drawn, outputs poisoned
with NaN first; the paged attention over f32 and bf16 KV caches, a bf16 cache against the reference over its keys and
values rounded to bf16), checks the cuBLAS call the Java side makes for bf16 prefill products (activations split into
bf16 high and low parts, two GEMMs accumulating in f32), times the attention of that model's shape per layer
(per-head kernel vs split kernel + combine, decode at contexts 256, 2048 and 8192, batch 32, a prefill chunk; an f32
and a bf16 cache), then times the kernels of one batch-1 decode step of the
DeepSeek-R1-Distill-Qwen-1.5B shape, launched one by one and replayed as a CUDA graph, against the bound set by the
device-to-device copy bandwidth measured in the same run.

Needs CuPy and NumPy. Usage: python3 check_kernels.py [path/to/kernels.cu]
"""
import ctypes
import math
import os
import sys
import traceback

import cupy as cp
import numpy as np
from cupy_backends.cuda.libs import cublas
import kiln_nvrtc

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, "..", "src", "main", "resources", "dev", "kiln", "backend", "cuda", "internal", "kernels.cu")
THREADS = 256
failures = []


def compile_cubin(source, arch):
    return kiln_nvrtc.compile_cubin(source, arch, "kernels.cu")


def check(name, actual, expected, tolerance):
    actual = cp.asnumpy(actual).astype(np.float64)
    diff = np.max(np.abs(actual - expected)) if actual.size else 0.0
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    ok = bool(np.isfinite(diff)) and diff <= tolerance * scale
    print(f"{'PASS' if ok else 'FAIL'} {name}: max |diff| = {diff:.3e} (scale {scale:.3g})")
    if not ok:
        failures.append(name)


def bf16_bits(x):
    """Round-to-nearest-even bf16 bits of float32 values."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def section(fn):
    try:
        fn()
    except Exception:
        failures.append(fn.__name__)
        print(f"FAIL {fn.__name__}: exception")
        traceback.print_exc()


rng = np.random.default_rng(11)
dev = cp.cuda.Device(0)
props = cp.cuda.runtime.getDeviceProperties(0)
major, minor = props["major"], props["minor"]
arch = f"sm_{major}{minor}" + ("a" if (major, minor) == (9, 0) else "")
print(f"device {props['name'].decode()} cc {major}.{minor}, {props['multiProcessorCount']} SMs -> {arch}")
path = "/tmp/kiln-kernels.cubin"
try:
    with open(path, "wb") as f:
        f.write(compile_cubin(open(SOURCE).read(), arch))
    mod = cp.RawModule(path=path)
except Exception:
    traceback.print_exc()
    failures.append("compilation with the Java side's options")
    print("falling back to CuPy's own NVRTC options")
    mod = cp.RawModule(code=open(SOURCE).read(), options=("--std=c++17",))
K = {n: mod.get_function(n) for n in [
    "kiln_add", "kiln_add_halves", "kiln_add_halves_rms_norm", "kiln_add_bias", "kiln_scale", "kiln_silu_mul", "kiln_split_bf16", "kiln_rms_norm", "kiln_add_rms_norm", "kiln_embed_bf16",
    "kiln_embed_f32", "kiln_copy_columns", "kiln_gather_rows", "kiln_scatter_add_rows", "kiln_rotary", "kiln_rotary2", "kiln_gemv_bf16",
    "kiln_gemv_f32", "kiln_write_kv", "kiln_paged_attention", "kiln_paged_attention_split",
    "kiln_paged_attention_combine", "kiln_write_kv_bf16", "kiln_paged_attention_bf16",
    "kiln_paged_attention_split_bf16", "kiln_decode_attention_bf16", "kiln_prefill_attention_bf16",
    "kiln_prefill_attention_wide_bf16"] + [f"kiln_gemv_bf16_t{t}" for t in range(1, 9)]
     + [f"kiln_gemv3_bf16_t{t}" for t in range(1, 9)] + [f"kiln_gemv_silu_bf16_t{t}" for t in range(1, 9)]
     + [f"kiln_gemv_split_bf16_t{t}" for t in range(1, 9)] + [f"kiln_gemv3_split_bf16_t{t}" for t in range(1, 9)]
     + [f"kiln_gemv{kind}_{fmt}_t{t}" for kind in ("", "_split", "3", "3_split", "_silu") for t in range(1, 5)
        for fmt in ("int8", "fp8")] + [f"kiln_gemv{kind}_int4_t1" for kind in ("", "_split", "3", "3_split", "_silu")]
     + [f"kiln_skinny{kind}_{fmt}_n{nt}_r{r}" for kind in ("", "_silu") for fmt in ("bf16", "int8", "int4", "fp8")
        for nt in ((1, 2, 4) if fmt in ("bf16", "int8") else (1, 2)) for r in (1, 2, 4) if r <= nt]
     + [f"kiln_skinny{kind}_{fmt}_n4_r4_t2" for kind in ("", "_silu") for fmt in ("int4", "fp8")]}
i32, i64, f32 = np.int32, np.int64, np.float32


def split_grid(rows, tokens):
    """Blocks of kiln_gemv_split / kiln_gemv3_split: a row each, two from two tokens on (SPLIT_ROWS)."""
    per_block = 2 if tokens >= 2 else 1
    return (rows + per_block - 1) // per_block


def blocks(n):
    return (min(1 << 20, (n + THREADS - 1) // THREADS),)


def poison(shape):
    return cp.full(shape, cp.nan, dtype=cp.float32)


def elementwise():
    n = 9 * 1000
    a, x = rng.uniform(-1, 1, n).astype(np.float32), rng.uniform(-1, 1, n).astype(np.float32)
    da = cp.asarray(a)
    K["kiln_add"](blocks(n), (THREADS,), (da, cp.asarray(x), i64(n)))
    check("add", da, a.astype(np.float64) + x, 1e-6)
    bias = rng.uniform(-1, 1, 1000).astype(np.float32)
    da = cp.asarray(a)
    K["kiln_add_bias"](blocks(n), (THREADS,), (da, cp.asarray(bias), i64(n), i32(1000)))
    check("add_bias", da, a.astype(np.float64) + np.tile(bias, 9), 1e-6)
    da = cp.asarray(a)
    K["kiln_scale"](blocks(n), (THREADS,), (da, f32(-1.75), i64(n)))
    check("scale", da, a.astype(np.float64) * -1.75, 1e-6)
    g = (a * 8).astype(np.float64)
    out = poison(n)
    K["kiln_silu_mul"](blocks(n), (THREADS,), (cp.asarray(a * 8), cp.asarray(x), out, i64(n)))
    check("silu_mul", out, g / (1 + np.exp(-g)) * x, 2e-6)
    big = rng.standard_normal(n).astype(np.float32) * 1000
    hi, lo = cp.zeros(n, cp.uint16), cp.zeros(n, cp.uint16)
    K["kiln_split_bf16"](blocks(n), (THREADS,), (cp.asarray(big), hi, lo, i64(n)))
    check("split_bf16 hi is round-to-nearest-even", bf16_value(cp.asnumpy(hi)), bf16_value(bf16_bits(big)), 0)
    recon = bf16_value(cp.asnumpy(hi)).astype(np.float64) + bf16_value(cp.asnumpy(lo))
    rel = np.max(np.abs(recon - big) / np.maximum(np.abs(big), 1e-30))
    print(f"{'PASS' if rel < 2 ** -16 else 'FAIL'} split_bf16 hi + lo within 2^-16 relative: {rel:.2e}")
    if rel >= 2 ** -16:
        failures.append("split_bf16 reconstruction")


def rows_kernels():
    rows, n = 9, 1000
    x = rng.uniform(-1, 1, (rows, n)).astype(np.float32)
    s = rng.uniform(-1, 1, n).astype(np.float32)
    out = poison((rows, n))
    K["kiln_rms_norm"]((rows,), (THREADS,), (cp.asarray(x), cp.asarray(s), f32(1e-6), out, i32(n), np.uint64(0), np.uint64(0)))
    x64 = x.astype(np.float64)
    check("rms_norm", out, x64 / np.sqrt((x64 ** 2).mean(axis=1, keepdims=True) + 1e-6) * s, 2e-6)
    # The fused residual add + norm, with out aliasing delta as the models call it.
    delta = rng.uniform(-1, 1, (rows, n)).astype(np.float32)
    acc, d = cp.asarray(x), cp.asarray(delta)
    K["kiln_add_rms_norm"]((rows,), (THREADS,), (acc, d, cp.asarray(s), f32(1e-6), d, i32(n), np.uint64(0), np.uint64(0)))
    y64 = x64 + delta.astype(np.float64)
    check("add_rms_norm residual", acc, y64, 1e-6)
    check("add_rms_norm out", d, y64 / np.sqrt((y64 ** 2).mean(axis=1, keepdims=True) + 1e-6) * s, 2e-6)
    table = bf16_value(bf16_bits(rng.uniform(-1, 1, (50, 24))))
    ids = np.array([49, 0, 7, 7], np.int32)
    out = poison((4, 24))
    K["kiln_embed_bf16"]((4,), (THREADS,), (cp.asarray(bf16_bits(table)), cp.asarray(ids), out, i32(24)))
    check("embed_bf16", out, table[ids], 0)
    out = poison((4, 24))
    K["kiln_embed_f32"]((4,), (THREADS,), (cp.asarray(table), cp.asarray(ids), out, i32(24)))
    check("embed_f32", out, table[ids], 0)
    src = rng.uniform(-1, 1, (6, 50)).astype(np.float32)
    dst = rng.uniform(-1, 1, (8, 70)).astype(np.float32)
    ddst = cp.asarray(dst)
    K["kiln_copy_columns"](blocks(6 * 25), (THREADS,), (cp.asarray(src), i32(50), i32(10), i32(0), ddst, i32(70), i32(33), i32(0), i32(25), i32(1), i64(6 * 25)))
    expected = dst.copy()
    expected[:6, 33:58] = src[:, 10:35]
    check("copy_columns", ddst, expected, 0)
    ddst = cp.asarray(dst)  # three ranges per row: a part of every head
    K["kiln_copy_columns"](blocks(6 * 24), (THREADS,), (cp.asarray(src), i32(50), i32(2), i32(12), ddst, i32(70), i32(5), i32(20), i32(8), i32(3), i64(6 * 24)))
    expected = dst.copy()
    for k in range(3):
        expected[:6, 5 + 20 * k:13 + 20 * k] = src[:, 2 + 12 * k:10 + 12 * k]
    check("copy_columns_strided", ddst, expected, 0)
    idx = np.array([5, 0, 5, 2], np.int32)
    out = poison((4, 50))
    K["kiln_gather_rows"]((4,), (THREADS,), (cp.asarray(src), cp.asarray(idx), out, i32(50)))
    check("gather_rows", out, src[idx], 0)
    target = rng.uniform(-1, 1, (6, 50)).astype(np.float32)
    scales = np.array([0.5, -2, 1.25, 3], np.float32)
    to = np.array([1, 3, 1, 0], np.int32)
    dt = cp.asarray(target)
    K["kiln_scatter_add_rows"](((50 + THREADS - 1) // THREADS,), (THREADS,),
                               (cp.asarray(src[idx]), cp.asarray(to), cp.asarray(scales), dt, i32(50), i32(4)))
    expected = target.astype(np.float64)
    for i in range(4):
        expected[to[i]] += scales[i] * src[idx][i]
    check("scatter_add_rows (repeated row)", dt, expected, 1e-6)


def rotary():
    heads, stride, offset, half, rows = 3, 40, 8, 12, 5
    freqs = np.array([10000 ** (-2.0 * i / (2 * half)) for i in range(half)], np.float32)
    pos = np.array([0, 1, 700, 33, 4095], np.int32)
    P = 8192
    ang = np.arange(P)[:, None].astype(np.float64) * freqs.astype(np.float64)[None, :]
    cos, sin = (np.cos(ang) * 1.3).astype(np.float32), (np.sin(ang) * 1.3).astype(np.float32)
    for interleaved in (0, 1):
        x = rng.uniform(-1, 1, (rows, heads * stride + 4)).astype(np.float32)
        dx = cp.asarray(x)
        K["kiln_rotary"]((rows,), (64,), (dx, cp.asarray(pos), cp.asarray(cos), cp.asarray(sin), i32(x.shape[1]),
                                          i32(heads), i32(stride), i32(offset), i32(half), i32(interleaved)))
        e = x.astype(np.float64)
        for r in range(rows):
            for h in range(heads):
                base = h * stride + offset
                ia = base + (2 * np.arange(half) if interleaved else np.arange(half))
                ib = base + (2 * np.arange(half) + 1 if interleaved else np.arange(half) + half)
                c, s = cos[pos[r]].astype(np.float64), sin[pos[r]].astype(np.float64)
                a, b = e[r, ia].copy(), e[r, ib].copy()
                e[r, ia], e[r, ib] = a * c - b * s, b * c + a * s
        check(f"rotary {'interleaved' if interleaved else 'halves'} with offset", dx, e, 2e-6)
        # The same rotation applied to two tensors in one launch (queries and keys): the first is x again, the
        # second its first heads only, in rows of their own length.
        y = np.ascontiguousarray(x[:, :stride + 4])
        dx, dy = cp.asarray(x), cp.asarray(y)
        K["kiln_rotary2"]((rows, 2), (64,), (dx, i32(x.shape[1]), i32(heads), dy, i32(y.shape[1]), i32(1), cp.asarray(pos),
                                            cp.asarray(cos), cp.asarray(sin), i32(stride), i32(offset), i32(half), i32(interleaved)))
        check(f"rotary2 first tensor ({'interleaved' if interleaved else 'halves'})", dx, e, 2e-6)
        check(f"rotary2 second tensor ({'interleaved' if interleaved else 'halves'})", dy, e[:, :stride + 4], 2e-6)


def gemv_and_gemm():
    for cols in (1536, 100):
        rows = 301  # odd: the split kernels' two-row blocks end with a single row
        w = bf16_value(bf16_bits(rng.uniform(-1, 1, (rows, cols))))
        dw = cp.asarray(bf16_bits(w))
        for tokens in (1, 3, 8):
            x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
            out = poison((tokens + 1, rows))
            vec = 1 if cols % 8 == 0 else 0
            K["kiln_gemv_bf16"](((rows + 7) // 8,), (THREADS,), (dw, cp.asarray(x), out, i32(rows), i32(cols), i32(tokens), i32(vec), np.uint64(0)))
            got = cp.asnumpy(out)
            ref = x.astype(np.float64) @ w.T.astype(np.float64)
            check(f"gemv_bf16 {tokens}x{cols}", got[:tokens], ref, 2e-6 * cols)
            if not np.all(np.isnan(got[tokens])):
                failures.append("gemv wrote past its rows")
            if vec:
                out = poison((tokens + 1, rows))
                bias = rng.uniform(-1, 1, rows).astype(np.float32)
                K[f"kiln_gemv_bf16_t{tokens}"](((rows + 3) // 4,), (128,), (dw, cp.asarray(x), out, i32(rows), i32(cols), i32(tokens), i32(1), cp.asarray(bias), np.uint64(0), np.uint64(0), f32(0), np.uint64(0)))
                got = cp.asnumpy(out)
                check(f"gemv_bf16_t{tokens} {tokens}x{cols} with bias", got[:tokens], ref + bias, 2e-6 * cols)
                if not np.all(np.isnan(got[tokens])):
                    failures.append("gemv_t wrote past its rows")
                # Few-row matrices: one block of 4 warps per row (the Java side's choice below 4096 rows).
                out = poison((tokens + 1, rows))
                K[f"kiln_gemv_split_bf16_t{tokens}"]((split_grid(rows, tokens),), (128,), (dw, cp.asarray(x), out, i32(rows), i32(cols), i32(tokens), i32(1), cp.asarray(bias), np.uint64(0), np.uint64(0), f32(0), np.uint64(0)))
                got = cp.asnumpy(out)
                check(f"gemv_split_bf16_t{tokens} {tokens}x{cols} with bias", got[:tokens], ref + bias, 2e-6 * cols)
                if not np.all(np.isnan(got[tokens])):
                    failures.append("gemv_split wrote past its rows")
                # The fusions the Java side makes: the RMSNorm before (x is then the norm's input, the kernel also
                # stores the normed rows) and the residual add after, for both row layouts.
                scale = rng.uniform(0.5, 1.5, cols).astype(np.float32)
                inv = 1 / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True) + 1e-6)
                normed_ref = x * inv * scale
                nref = normed_ref @ w.T.astype(np.float64) + bias
                residual_in = rng.uniform(-1, 1, (tokens, rows)).astype(np.float32)
                for kernel, grid in ((f"kiln_gemv_bf16_t{tokens}", ((rows + 3) // 4,)), (f"kiln_gemv_split_bf16_t{tokens}", (split_grid(rows, tokens),))):
                    out, normed, residual = poison((tokens, rows)), poison((tokens, cols)), cp.asarray(residual_in)
                    K[kernel](grid, (128,), (dw, cp.asarray(x), out, i32(rows), i32(cols), i32(tokens), i32(1), cp.asarray(bias),
                                             residual, cp.asarray(scale), f32(1e-6), normed))
                    check(f"{kernel[5:]} {tokens}x{cols}, norm fused before", out, nref, 2e-6 * cols)
                    check(f"{kernel[5:]} {tokens}x{cols}, normed rows stored", normed, normed_ref, 1e-6)
                    check(f"{kernel[5:]} {tokens}x{cols}, residual added after", residual, residual_in + nref, 2e-6 * cols)
        wf = rng.uniform(-1, 1, (rows, cols)).astype(np.float32)
        x = rng.uniform(-1, 1, (5, cols)).astype(np.float32)
        out = poison((5, rows))
        K["kiln_gemv_f32"](((rows + 7) // 8,), (THREADS,), (cp.asarray(wf), cp.asarray(x), out, i32(rows), i32(cols), i32(5), i32(1 if cols % 4 == 0 else 0), np.uint64(0)))
        check(f"gemv_f32 5x{cols}", out, x.astype(np.float64) @ wf.T.astype(np.float64), 2e-6 * cols)
    # Three products of the same activations in one launch (q, k, v with biases), and gate/up with the SiLU gating.
    cols = 1536
    x = rng.uniform(-1, 1, (3, cols)).astype(np.float32)
    dx = cp.asarray(x)
    mats = [bf16_value(bf16_bits(rng.uniform(-1, 1, (r, cols)))) for r in (300, 40, 41)]
    biases = [rng.uniform(-1, 1, r).astype(np.float32) for r in (300, 40, 41)]
    outs = [poison((3, m.shape[0])) for m in mats]
    args = [dx, i32(cols), i32(3)]
    for m, o, bb in zip(mats, outs, biases):
        args += [cp.asarray(bf16_bits(m)), o, i32(m.shape[0]), cp.asarray(bb)]
    K["kiln_gemv3_bf16_t3"](((381 + 3) // 4,), (128,), tuple(args + [np.uint64(0), f32(0), np.uint64(0)]))
    for i, (m, o, bb) in enumerate(zip(mats, outs, biases)):
        check(f"gemv3_bf16_t3 segment {i} ({m.shape[0]} rows) with bias", o, x.astype(np.float64) @ m.T.astype(np.float64) + bb, 2e-6 * cols)
    outs = [poison((3, m.shape[0])) for m in mats]
    args = [dx, i32(cols), i32(3)]
    for m, o, bb in zip(mats, outs, biases):
        args += [cp.asarray(bf16_bits(m)), o, i32(m.shape[0]), cp.asarray(bb)]
    K["kiln_gemv3_split_bf16_t3"]((split_grid(381, 3),), (128,), tuple(args + [np.uint64(0), f32(0), np.uint64(0)]))
    for i, (m, o, bb) in enumerate(zip(mats, outs, biases)):
        check(f"gemv3_split_bf16_t3 segment {i} ({m.shape[0]} rows) with bias", o, x.astype(np.float64) @ m.T.astype(np.float64) + bb, 2e-6 * cols)
    # Both joint layouts with the norm fused before.
    scale = rng.uniform(0.5, 1.5, cols).astype(np.float32)
    normed_ref = x * (1 / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True) + 1e-6)) * scale
    for kernel, grid in (("kiln_gemv3_bf16_t3", ((381 + 3) // 4,)), ("kiln_gemv3_split_bf16_t3", (split_grid(381, 3),))):
        outs, normed = [poison((3, m.shape[0])) for m in mats], poison((3, cols))
        args = [dx, i32(cols), i32(3)]
        for m, o, bb in zip(mats, outs, biases):
            args += [cp.asarray(bf16_bits(m)), o, i32(m.shape[0]), cp.asarray(bb)]
        K[kernel](grid, (128,), tuple(args + [cp.asarray(scale), f32(1e-6), normed]))
        for i, (m, o, bb) in enumerate(zip(mats, outs, biases)):
            check(f"{kernel[5:]} segment {i}, norm fused before", o, normed_ref @ m.T.astype(np.float64) + bb, 2e-6 * cols)
        check(f"{kernel[5:]}, normed rows stored", normed, normed_ref, 1e-6)
    wg, wu = (bf16_value(bf16_bits(rng.uniform(-1, 1, (200, cols)))) for _ in range(2))
    gate, up = poison((3, 200)), poison((3, 200))
    K["kiln_gemv_silu_bf16_t3"](((200 + 3) // 4,), (128,), (dx, i32(cols), i32(3), cp.asarray(bf16_bits(wg)), cp.asarray(bf16_bits(wu)),
                                                         gate, up, gate, i32(200), np.uint64(0), f32(0), np.uint64(0)))
    g64, u64 = x.astype(np.float64) @ wg.T.astype(np.float64), x.astype(np.float64) @ wu.T.astype(np.float64)
    check("gemv_silu_bf16_t3 up", up, u64, 2e-6 * cols)
    check("gemv_silu_bf16_t3 silu(gate) * up into gate", gate, g64 / (1 + np.exp(-g64)) * u64, 2e-6 * cols * 4)
    gate, up, normed = poison((3, 200)), poison((3, 200)), poison((3, cols))
    K["kiln_gemv_silu_bf16_t3"](((200 + 3) // 4,), (128,), (dx, i32(cols), i32(3), cp.asarray(bf16_bits(wg)), cp.asarray(bf16_bits(wu)),
                                                         gate, up, gate, i32(200), cp.asarray(scale), f32(1e-6), normed))
    g64, u64 = normed_ref @ wg.T.astype(np.float64), normed_ref @ wu.T.astype(np.float64)
    check("gemv_silu_bf16_t3 up, norm fused before", up, u64, 2e-6 * cols)
    check("gemv_silu_bf16_t3 silu(gate) * up, norm fused before", gate, g64 / (1 + np.exp(-g64)) * u64, 2e-6 * cols * 4)
    check("gemv_silu_bf16_t3 normed rows stored", normed, normed_ref, 1e-6)
    # x staged in shared memory (the launch gives 4 bytes a column and token, as the Java side does up to
    # Kernels.STAGED_MAX_BYTES): 2056 columns stage past the preloaded scale quads; 301 rows leave a block with warps
    # past the last row, which stage too and store nothing. Both paths against float64, and against each
    # other (the same products summed in the same order, up to how the compiler contracts them into FMAs).
    for cols, tokens in ((1536, 1), (2056, 1), (1536, 2), (1536, 3), (2056, 4)):
        rows = 301
        w, wg, wu = (bf16_value(bf16_bits(rng.uniform(-1, 1, (rows, cols)))) for _ in range(3))
        dw, dwg, dwu = (cp.asarray(bf16_bits(m)) for m in (w, wg, wu))
        x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
        dx = cp.asarray(x)
        bias = cp.asarray(rng.uniform(-1, 1, rows).astype(np.float32))
        residual_in = rng.uniform(-1, 1, (tokens, rows)).astype(np.float32)
        scale = rng.uniform(0.5, 1.5, cols).astype(np.float32)
        normed_ref = x * (1 / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True) + 1e-6)) * scale
        warp_rows = 4 if tokens >= 4 else 2 if tokens >= 2 else 1  # WARP_ROWS(T)
        pairs = 2 if tokens >= 2 else 1  # SILU_PAIRS(T)
        t = f"t{tokens}"
        for norm in (False, True):
            results = {}
            for staged in (False, True):
                shared = 4 * cols * tokens if staged else 0
                out, residual, normed = poison((tokens + 1, rows)), cp.asarray(residual_in), poison((tokens, cols))
                norm_args = (cp.asarray(scale), f32(1e-6), normed) if norm else (np.uint64(0), f32(0), np.uint64(0))
                K[f"kiln_gemv_bf16_{t}"]((-(-rows // (4 * warp_rows)),), (128,), (dw, dx, out, i32(rows), i32(cols), i32(tokens),
                                         i32(1), bias, residual) + norm_args, shared_mem=shared)
                gate, up, normed2 = poison((tokens + 1, rows)), poison((tokens, rows)), poison((tokens, cols))
                silu_norm = (cp.asarray(scale), f32(1e-6), normed2) if norm else (np.uint64(0), f32(0), np.uint64(0))
                K[f"kiln_gemv_silu_bf16_{t}"]((-(-rows // (4 * pairs)),), (128,), (dx, i32(cols), i32(tokens), dwg, dwu, gate,
                                              up, gate, i32(rows)) + silu_norm, shared_mem=shared)
                results[staged] = [cp.asnumpy(a) for a in (out, residual, gate, up)]
                label = f"{'staged' if staged else 'unstaged'} {tokens}x{cols}{', norm fused before' if norm else ''}"
                xin = normed_ref if norm else x.astype(np.float64)
                ref = xin @ w.T.astype(np.float64) + cp.asnumpy(bias)
                g64, u64 = xin @ wg.T.astype(np.float64), xin @ wu.T.astype(np.float64)
                got = results[staged]
                check(f"gemv_bf16_{t} {label}", got[0][:tokens], ref, 2e-6 * cols)
                check(f"gemv_bf16_{t} {label}, residual added after", got[1], residual_in + ref, 2e-6 * cols)
                check(f"gemv_silu_bf16_{t} {label} up", got[3], u64, 2e-6 * cols)
                check(f"gemv_silu_bf16_{t} {label} silu(gate) * up", got[2][:tokens], g64 / (1 + np.exp(-g64)) * u64,
                      2e-6 * cols * 4)
                if not (np.all(np.isnan(got[0][tokens])) and np.all(np.isnan(got[2][tokens]))):
                    failures.append(f"{label}: a product wrote past its rows")
                if norm:
                    check(f"gemv_bf16_{t} {label}, normed rows stored", normed, normed_ref, 1e-6)
                    check(f"gemv_silu_bf16_{t} {label}, normed rows stored", normed2, normed_ref, 1e-6)
            for name, a, b in zip(("gemv", "residual", "silu(gate) * up", "up"), results[False], results[True]):
                check(f"staged against unstaged {tokens}x{cols}{', norm fused before' if norm else ''}: {name}",
                      b[:tokens], a[:tokens].astype(np.float64), 1e-6)
    # The Java side's prefill product: out (col-major rows x T) = W^T(op T of col-major cols x rows) . x(cols x T),
    # x split into bf16 hi + lo, f32 accumulation, beta 0 then 1.
    rows, cols, tokens = 300, 256, 37
    w = bf16_value(bf16_bits(rng.uniform(-1, 1, (rows, cols))))
    x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
    dw, dx = cp.asarray(bf16_bits(w)), cp.asarray(x)
    hi, lo = cp.zeros(tokens * cols, cp.uint16), cp.zeros(tokens * cols, cp.uint16)
    K["kiln_split_bf16"](blocks(tokens * cols), (THREADS,), (dx, hi, lo, i64(tokens * cols)))
    out = poison((tokens, rows))
    handle = dev.cublas_handle
    one, zero = np.array([1.0], np.float32), np.array([0.0], np.float32)
    for part, beta in ((hi, zero), (lo, one)):
        cublas.gemmEx(handle, 1, 0, rows, tokens, cols, one.ctypes.data, dw.data.ptr, 14, cols, part.data.ptr, 14, cols,
                      beta.ctypes.data, out.data.ptr, 0, rows, 68, -1)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    check("cuBLAS split bf16 GEMM 37x256 -> 300", out, ref, 2e-6 * cols)
    single = poison((tokens, rows))
    cublas.gemmEx(handle, 1, 0, rows, tokens, cols, one.ctypes.data, dw.data.ptr, 14, cols, hi.data.ptr, 14, cols,
                  zero.ctypes.data, single.data.ptr, 0, rows, 68, -1)
    d1 = np.max(np.abs(cp.asnumpy(single) - ref))
    d2 = np.max(np.abs(cp.asnumpy(out) - ref))
    print(f"     (one bf16 GEMM would be off by {d1:.2e}; the split pair by {d2:.2e})")
    # Up to 128 tokens the Java side makes one GEMM over the 2T columns [hi | lo] (the weight read once) and sums
    # the two halves of its product with kiln_add_halves.
    parts = cp.concatenate([hi, lo])
    products = poison((2 * tokens, rows))
    cublas.gemmEx(handle, 1, 0, rows, 2 * tokens, cols, one.ctypes.data, dw.data.ptr, 14, cols, parts.data.ptr, 14, cols,
                  zero.ctypes.data, products.data.ptr, 0, rows, 68, -1)
    paired = poison((tokens, rows))
    K["kiln_add_halves"](blocks(tokens * rows), (THREADS,), (products, paired, i64(tokens * rows), np.uint64(0), i32(1), np.uint64(0)))
    check("cuBLAS paired bf16 GEMM 37x256 -> 300 + add_halves", paired, ref, 2e-6 * cols)
    bias = rng.uniform(-1, 1, rows).astype(np.float32)  # the layer's bias added as the halves are summed
    K["kiln_add_halves"](blocks(tokens * rows), (THREADS,), (products, paired, i64(tokens * rows), cp.asarray(bias), i32(rows), np.uint64(0)))
    check("cuBLAS paired bf16 GEMM 37x256 -> 300 + add_halves with bias", paired, ref + bias, 2e-6 * cols)
    # What the Java side fuses after a paired GEMM: the halves' sum (+ bias) added into the residual, the RMSNorm of the
    # new residual rows, and the normed rows split into bf16 parts for the next paired GEMM, one block per row.
    acc_in = rng.uniform(-1, 1, (tokens, rows)).astype(np.float32)
    norm_scale = rng.uniform(0.5, 1.5, rows).astype(np.float32)
    acc, normed, summed = cp.asarray(acc_in), poison((tokens, rows)), poison((tokens, rows))
    hi, lo = cp.zeros(tokens * rows, cp.uint16), cp.zeros(tokens * rows, cp.uint16)
    K["kiln_add_halves_rms_norm"]((tokens,), (THREADS,), (products, i64(tokens * rows), cp.asarray(bias), summed, acc,
                                                        cp.asarray(norm_scale), f32(1e-6), normed, i32(rows), hi, lo))
    ref_acc = acc_in.astype(np.float64) + ref + bias
    ref_normed = ref_acc / np.sqrt(np.mean(ref_acc ** 2, axis=1, keepdims=True) + 1e-6) * norm_scale
    check("add_halves_rms_norm: the product", summed, ref + bias, 2e-6 * cols)
    check("add_halves_rms_norm: the residual", acc, ref_acc, 2e-6 * cols)
    check("add_halves_rms_norm: the normed rows", normed, ref_normed, 1e-4)
    parts = bf16_value(cp.asnumpy(hi)).astype(np.float64) + bf16_value(cp.asnumpy(lo)).astype(np.float64)
    check("add_halves_rms_norm: bf16 parts of the normed rows", parts.reshape(tokens, rows), cp.asnumpy(normed), 3e-5)


# ---- paged attention ---------------------------------------------------------------------------------------------
# Mirrors of the Java side: AttentionBatch.pack (metadata layout) and SplitAttentionPlan (launch shape).
SPLIT_THREADS, SPLIT_MAX_OUTPUTS, COMBINE_THREADS, DECODE_THREADS = 256, 8, 256, 256
MIN_CONTEXT_BUCKET, MAX_TILE, MIN_TILE, MIN_CHUNK, MAX_SPLITS, BLOCKS_PER_SM, SHARED_BUDGET = 256, 64, 4, 32, 4096, 2, 48 * 1024
SMS = props["multiProcessorCount"]
CLUSTERS = major >= 9  # thread block clusters (and their distributed shared memory) from Hopper on


class Batch:
    def __init__(self, packed, T, S, bucket, stride):
        self.packed, self.T, self.S, self.bucket, self.stride = packed, T, S, bucket, stride

    def seq(self, t):
        return int(self.packed[t])

    def pos(self, t):
        return int(self.packed[self.T + t])


def context_bucket(longest):
    b = MIN_CONTEXT_BUCKET
    while b < longest:
        b *= 2
    return b


def pack(query_start, context, tables, slots, block_size):
    """AttentionBatch.pack: [seq x T][pos x T][slot x T][S block tables, each `stride` long, -1 past the context]."""
    S, T = len(context), query_start[-1]
    bucket = context_bucket(max(context, default=0))
    stride = -(-bucket // block_size)
    seq, pos = [], []
    flat = np.full(S * stride, -1, np.int64)
    for s in range(S):
        ql = query_start[s + 1] - query_start[s]
        for j in range(ql):
            seq.append(s)
            pos.append(context[s] - ql + j)
        need = (context[s] + block_size - 1) // block_size
        flat[s * stride:s * stride + need] = tables[s][:need]
    packed = np.concatenate([np.array(seq + pos + list(slots[:T]), np.int64), flat]).astype(np.int32)
    return Batch(packed, T, S, bucket, stride)


def split_shared(hpb, tile, key_dim, value_dim, vik):
    return 4 * (hpb * key_dim + 2 * key_dim + (0 if vik else value_dim) + tile * (key_dim + 4)
                + (0 if vik else tile * (value_dim + 4)) + hpb * tile + 3 * hpb)


MAX_CLUSTER = 16  # SplitAttentionPlan.MAX_CLUSTER


def clusterable(plan, key_dim, value_dim):
    """Whether the split kernel can merge this plan's splits in a cluster (SplitAttentionPlan.clustered's rule)."""
    return CLUSTERS and 1 < plan["splits"] <= MAX_CLUSTER and value_dim <= key_dim


def split_plan(T, heads, kv_heads, key_dim, value_dim, vik, bucket, chunk=None, min_chunk=None):
    """SplitAttentionPlan.of; chunk forces a split size (tests of the one-split and many-split paths); min_chunk: the
    fewest keys a split (SplitAttentionPlan.WIDE_MIN_CHUNK for MLA's latent caches, MIN_CHUNK by default)."""
    group = heads // kv_heads
    most = min(group, SPLIT_THREADS * SPLIT_MAX_OUTPUTS * 4 // value_dim, SHARED_BUDGET // 2 // (key_dim * 4))
    head_blocks = -(-group // most)
    hpb = -(-group // head_blocks)
    tile = MAX_TILE
    while tile >= MIN_TILE and split_shared(hpb, tile, key_dim, value_dim, vik) > SHARED_BUDGET:
        tile //= 2
    assert tile >= MIN_TILE
    rows = T * kv_heads * head_blocks
    wanted = BLOCKS_PER_SM * SMS // rows  # splits that keep the grid within BLOCKS_PER_SM blocks per SM
    splits = 1
    while splits * 2 <= wanted:
        splits *= 2
    splits = min(splits, MAX_SPLITS, max(1, bucket // (min_chunk or MIN_CHUNK)))
    if chunk is not None:
        splits = bucket // chunk
    tile = min(tile, bucket // splits)
    return dict(hpb=hpb, head_blocks=head_blocks, tile=tile, rows=rows, splits=splits, chunk=bucket // splits,
                shared=split_shared(hpb, tile, key_dim, value_dim, vik))


def cache_kernel(name, bf16):
    """The entry point of a cache kernel for the cache's element type: name_bf16 for a bf16 cache."""
    return K[name + "_bf16" if bf16 else name]


def to_bf16_device(x):
    """Round-to-nearest-even bf16 bits (uint16) of a CuPy float32 array, on the device."""
    u = x.view(cp.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(cp.uint16)


def write_kv(dk, dv, kp, vp, meta, T, kv_heads, key_dim, value_dim, BS, bf16):
    """kiln_write_kv(_bf16) of T tokens; slots at meta + 4 * 2 * T (AttentionBatch's layout)."""
    cache_kernel("kiln_write_kv", bf16)((T,), (THREADS,), (
        dk, dv if dv is not None else np.uint64(0), np.uint64(kp), np.uint64(vp), np.uint64(meta + 4 * 2 * T),
        i32(kv_heads), i32(key_dim), i32(value_dim), i32(BS)))


def stored(x, bf16):
    """What a cache of that element type holds for float32 values x, as float64: x itself, or x rounded to bf16."""
    return (bf16_value(bf16_bits(x)) if bf16 else np.asarray(x, np.float32)).astype(np.float64)


def attend_per_head(q, out, kp, vp, meta, b, heads, kv_heads, key_dim, value_dim, vik, BS, scale, bf16=False):
    T = b.T
    cache_kernel("kiln_paged_attention", bf16)((T, heads), (THREADS,), (
        q, out, np.uint64(kp), np.uint64(vp), np.uint64(meta), np.uint64(meta + 4 * T), np.uint64(meta + 4 * 3 * T),
        i32(b.stride), i32(heads), i32(kv_heads), i32(key_dim), i32(value_dim), i32(key_dim if vik else value_dim),
        i32(BS), f32(scale)), shared_mem=THREADS * 8 + THREADS * 4 + 32 * 4 + key_dim * 4)


def attend_split(plan, partials, q, out, kp, vp, meta, b, heads, kv_heads, key_dim, value_dim, vik, BS, scale,
                 bf16=False, new_kv=None, cluster=False):
    """new_kv: (key rows, value rows or None) of a decode batch whose cache write the split kernel does itself;
    cluster: the splits merged inside a thread block cluster (no partials, no combine kernel)."""
    T = b.T
    fused = (new_kv[0], np.uint64(0) if new_kv[1] is None else new_kv[1], np.uint64(meta + 4 * 2 * T)) \
        if new_kv is not None else (np.uint64(0), np.uint64(0), np.uint64(0))
    fused += (np.uint64(0), np.uint64(0), np.uint64(0), i32(0), i32(0), i32(0))  # no rotary folded in
    args = (q, out, np.uint64(0) if partials is None or cluster else partials, np.uint64(kp), np.uint64(vp),
            np.uint64(meta), np.uint64(meta + 4 * T), np.uint64(meta + 4 * 3 * T), i32(b.stride), i32(heads),
            i32(kv_heads), i32(plan["hpb"]), i32(key_dim), i32(value_dim), i32(key_dim if vik else value_dim), i32(BS),
            i32(plan["chunk"]), i32(plan["tile"]), f32(scale)) + fused
    kernel = cache_kernel("kiln_paged_attention_split", bf16)
    if cluster:
        kiln_nvrtc.launch_ex(kernel, (plan["rows"], plan["splits"]), SPLIT_THREADS, args, plan["shared"],
                             cp.cuda.get_current_stream().ptr, plan["splits"])
        return
    kernel((plan["rows"], plan["splits"]), (SPLIT_THREADS,), args, shared_mem=plan["shared"])
    if plan["splits"] > 1:
        combine(partials, out, np.uint64(meta + 4 * T), T, heads, value_dim, plan["chunk"], plan["splits"])


def combine(partials, out, positions, tokens, heads, value_dim, chunk, splits):
    """kiln_paged_attention_combine: merges `splits` partial records of `chunk` keys for each token and head."""
    K["kiln_paged_attention_combine"]((tokens, heads), (COMBINE_THREADS,), (
        partials, out, positions, i32(heads), i32(value_dim), i32(chunk), i32(splits)), shared_mem=4 * splits)


def decode_kernel_takes(kv_heads, key_dim, value_dim, vik, heads, bf16):
    """Whether kiln_decode_attention_bf16 serves the geometry (Kernels.decodeAttentionFits)."""
    return bf16 and not vik and key_dim == value_dim == 128 and heads // kv_heads <= 8


def attend_decode(splits, q, out, kp, vp, meta, b, heads, kv_heads, BS, scale, new_kv, rotary=None):
    """kiln_decode_attention_bf16 over `splits` chunks of the bucket (one cluster of them when more than one);
    rotary: dict(cos, sin, half, interleaved) folded in, the positions those of the batch."""
    T = b.T
    rot = (np.uint64(meta + 4 * T), rotary["cos"], rotary["sin"], i32(rotary["half"]), i32(rotary["interleaved"])) \
        if rotary else (np.uint64(0), np.uint64(0), np.uint64(0), i32(0), i32(0))
    args = (q, out, np.uint64(kp), np.uint64(vp), np.uint64(meta + 4 * T), np.uint64(meta + 4 * 3 * T), i32(b.stride),
            i32(heads), i32(kv_heads), i32(BS), i32(b.bucket // splits), f32(scale), new_kv[0], new_kv[1],
            np.uint64(meta + 4 * 2 * T)) + rot
    kiln_nvrtc.launch_ex(K["kiln_decode_attention_bf16"], (T * kv_heads, splits), DECODE_THREADS, args, 0,
                         cp.cuda.get_current_stream().ptr, splits)


def rotary_tables(bucket, half, dim):
    """cos and sin tables [position][half] of the default frequencies over `dim` (as DeviceRotaryEmbedding's)."""
    inv = np.array([10000 ** (-2.0 * i / dim) for i in range(half)])
    angles = np.arange(bucket)[:, None] * inv[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rotate_rows(x, positions, cos, sin, half, interleaved):
    """x [T, heads, dim] rotated per token's position as kiln_rotary2 does (float64 math on the float32 tables)."""
    y = x.astype(np.float64).copy()
    for t, p in enumerate(positions):
        c, s_ = cos[p].astype(np.float64), sin[p].astype(np.float64)
        if interleaved:
            a, b_ = x[t, :, 0:2 * half:2].astype(np.float64), x[t, :, 1:2 * half:2].astype(np.float64)
            y[t, :, 0:2 * half:2], y[t, :, 1:2 * half:2] = a * c - b_ * s_, b_ * c + a * s_
        else:
            a, b_ = x[t, :, :half].astype(np.float64), x[t, :, half:2 * half].astype(np.float64)
            y[t, :, :half], y[t, :, half:2 * half] = a * c - b_ * s_, b_ * c + a * s_
    return y


def partials_for(plan, T, heads, value_dim):
    return None if plan["splits"] == 1 else cp.full(T * heads * plan["splits"] * (value_dim + 4), cp.nan, cp.float32)


def attention_reference(q, hk, hv, b, tables, heads, kv_heads, value_dim, BS, scale):
    """float64 causal attention of every (token, head) over the host copy of one layer's cache."""
    ref = np.zeros((b.T, heads, value_dim))
    group = heads // kv_heads
    for t in range(b.T):
        s, p = b.seq(t), b.pos(t)
        js = np.arange(p + 1)
        blocks_ = np.array(tables[s])[js // BS]
        offs = js % BS
        for h in range(heads):
            g = h // group
            kk = hk[blocks_, g, offs, :]
            vv = kk[:, :value_dim] if hv is None else hv[blocks_, g, offs, :]
            sc = kk @ q[t, h].astype(np.float64) * scale
            e = np.exp(sc - sc.max())
            ref[t, h] = e @ vv / e.sum()
    return ref


def run_both_kernels(q, kp, vp, meta, b, heads, kv_heads, key_dim, value_dim, vik, BS, scale, ref, chunks=(None,),
                     bf16=False):
    """Max |diff| against ref of the per-head kernel and of the split path at its own plan and at forced chunk sizes
    (no chunks: the per-head kernel only)."""
    results = {}
    dq = cp.asarray(q)
    out = poison((b.T, heads, value_dim))
    attend_per_head(dq, out, kp, vp, meta, b, heads, kv_heads, key_dim, value_dim, vik, BS, scale, bf16)
    results["per-head"] = cp.asnumpy(out).astype(np.float64)
    for chunk in chunks:
        plan = split_plan(b.T, heads, kv_heads, key_dim, value_dim, vik, b.bucket, chunk)
        out = poison((b.T, heads, value_dim))
        attend_split(plan, partials_for(plan, b.T, heads, value_dim), dq, out, kp, vp, meta, b, heads, kv_heads,
                     key_dim, value_dim, vik, BS, scale, bf16)
        results[f"split x{plan['splits']} (chunk {plan['chunk']}, tile {plan['tile']}, {plan['hpb']} heads/block)"] = \
            cp.asnumpy(out).astype(np.float64)
        if clusterable(plan, key_dim, value_dim):
            out = poison((b.T, heads, value_dim))
            attend_split(plan, None, dq, out, kp, vp, meta, b, heads, kv_heads, key_dim, value_dim, vik, BS, scale,
                         bf16, cluster=True)
            results[f"split x{plan['splits']} merged in a cluster"] = cp.asnumpy(out).astype(np.float64)
    return {k: (float(np.max(np.abs(v - ref))) if np.all(np.isfinite(v)) else float("nan")) for k, v in results.items()}


def report(name, diffs, tolerance=1e-5):
    for kernel, worst in diffs.items():
        ok = np.isfinite(worst) and worst < tolerance
        print(f"{'PASS' if ok else 'FAIL'} paged attention {name}, {kernel}: max |diff| = {worst:.3e}")
        if not ok:
            failures.append(f"attention {name}, {kernel}")


def step_layout(tables, cached, lengths, block_size):
    """A step's query starts, contexts and cache slots: lengths[s] new tokens of sequence s after cached[s]."""
    qs, ctx, slots = [0], [], []
    for s in range(len(lengths)):
        ctx.append(cached[s] + lengths[s])
        for j in range(lengths[s]):
            p = cached[s] + j
            slots.append(tables[s][p // block_size] * block_size + p % block_size)
        qs.append(qs[-1] + lengths[s])
    return qs, ctx, slots


def attention_case(layers, kv_heads, key_dim, value_dim, values_in_keys, heads, name, bf16=False, split=True):
    """Two steps written through kiln_write_kv: prefill chunks, then a chunk over cached context, a decode token, a
    verification of 4 and a padding token (slot -1); every layer of the second step through both kernels (the
    per-head one only without `split`). A bf16 cache (kiln_write_kv_bf16 and the _bf16 attention kernels) is checked
    against the reference over the keys and values rounded to bf16, nearest even, as the cache write rounds them."""
    BS, NB = 16, 64
    perm = rng.permutation(NB).tolist()
    tables = [perm[:20], perm[20:22], perm[22:25]]
    key_layer = NB * BS * kv_heads * key_dim
    value_layer = 0 if values_in_keys else NB * BS * kv_heads * value_dim
    element = 2 if bf16 else 4
    keys = cp.zeros(layers * key_layer, cp.uint16 if bf16 else cp.float32)
    values = cp.zeros(max(1, layers * value_layer), cp.uint16 if bf16 else cp.float32)
    hk = np.zeros((layers, NB, kv_heads, BS, key_dim))
    hv = None if values_in_keys else np.zeros((layers, NB, kv_heads, BS, value_dim))
    worst = {}
    for cached, lengths in (((0, 0, 0), (290, 20, 30)), ((290, 20, 30), (7, 1, 4))):
        qs, ctx, slots = step_layout(tables, cached, lengths, BS)
        padding = cached[0] > 0
        if padding:  # a padding token at the end of the last sequence: stores nothing, attends like the others
            slots.append(-1)
            qs[-1] += 1
            ctx[-1] += 1
            # Its context counts one slot never written: zeros in both caches.
        b = pack(qs, ctx, tables, slots, BS)
        meta = cp.asarray(b.packed)
        T = b.T
        for layer in range(layers):
            q = rng.uniform(-1, 1, (T, heads, key_dim)).astype(np.float32)
            k = rng.uniform(-1, 1, (T, kv_heads, key_dim)).astype(np.float32)
            v = None if values_in_keys else rng.uniform(-1, 1, (T, kv_heads, value_dim)).astype(np.float32)
            kp = keys.data.ptr + element * layer * key_layer
            vp = kp if values_in_keys else values.data.ptr + element * layer * value_layer
            dk = cp.asarray(k)
            dv = cp.asarray(v) if v is not None else None
            write_kv(dk, dv, kp, vp, meta.data.ptr, T, kv_heads, key_dim, value_dim, BS, bf16)
            for t in range(T):
                if slots[t] < 0:
                    continue
                b_, o_ = divmod(slots[t], BS)
                hk[layer, b_, :, o_, :] = stored(k[t], bf16)
                if hv is not None:
                    hv[layer, b_, :, o_, :] = stored(v[t], bf16)
            scale = 1 / math.sqrt(key_dim)
            ref = attention_reference(q, hk[layer], None if hv is None else hv[layer], b, tables, heads, kv_heads,
                                      value_dim, BS, scale)
            diffs = run_both_kernels(q, kp, vp, meta.data.ptr, b, heads, kv_heads, key_dim, value_dim, values_in_keys,
                                     BS, scale, ref, chunks=(None, b.bucket, 64) if split else (), bf16=bf16)
            for kname, d in diffs.items():
                kname = kname.split(" (")[0]
                worst[kname] = max(worst.get(kname, 0.0), d) if np.isfinite(d) else float("nan")
    report(name + f" ({layers} layers x 2 steps)", worst)


def decode_case(kv_heads, key_dim, value_dim, values_in_keys, heads, contexts, name, verify=0, padding=False,
                bf16=False):
    """One step over a cache filled with random rows: one decode token per context (the last writing its key and
    value through kiln_write_kv), optionally `verify` more query tokens of the last sequence (multi-token
    verification) and a padding token (slot -1) at the end, through both kernels and the split path at its own
    plan, a single split (normalising in place) and 64-key chunks (many partials). A bf16 cache holds the random
    rows rounded to bf16 and is checked against the reference over those rounded values."""
    BS = 16
    ctx = list(contexts)
    ctx[-1] += verify + (1 if padding else 0)
    need = [-(-c // BS) for c in ctx]
    NB = sum(need) + 4
    perm = rng.permutation(NB).tolist()
    tables, at = [], 0
    for n in need:
        tables.append(perm[at:at + n])
        at += n
    hk = rng.uniform(-1, 1, (NB, kv_heads, BS, key_dim))
    hv = None if values_in_keys else rng.uniform(-1, 1, (NB, kv_heads, BS, value_dim))
    if bf16:
        keys = cp.asarray(bf16_bits(hk.astype(np.float32)).reshape(-1))
        values = cp.asarray(bf16_bits(hv.astype(np.float32)).reshape(-1)) if hv is not None else None
    else:
        keys = cp.asarray(hk.astype(np.float32).reshape(-1))
        values = cp.asarray(hv.astype(np.float32).reshape(-1)) if hv is not None else None
    hk, hv = stored(hk.astype(np.float32), bf16), None if hv is None else stored(hv.astype(np.float32), bf16)
    qs, slots = [0], []
    lengths = [1] * len(contexts)
    lengths[-1] += verify
    for s, c in enumerate(contexts):
        c += verify if s == len(contexts) - 1 else 0
        for j in range(lengths[s]):
            p = c - lengths[s] + j
            slots.append(tables[s][p // BS] * BS + p % BS)
        qs.append(qs[-1] + lengths[s])
    if padding:  # the padding token's context counts one slot never written: it keeps its random contents
        slots.append(-1)
        qs[-1] += 1
    b = pack(qs, ctx, tables, slots, BS)
    meta = cp.asarray(b.packed)
    T = b.T
    kp = keys.data.ptr
    vp = kp if values_in_keys else values.data.ptr
    q = rng.uniform(-1, 1, (T, heads, key_dim)).astype(np.float32)
    k = rng.uniform(-1, 1, (T, kv_heads, key_dim)).astype(np.float32)
    v = None if values_in_keys else rng.uniform(-1, 1, (T, kv_heads, value_dim)).astype(np.float32)
    write_kv(cp.asarray(k), cp.asarray(v) if v is not None else None, kp, vp, meta.data.ptr, T, kv_heads, key_dim,
             value_dim, BS, bf16)
    for t in range(T):
        if slots[t] >= 0:
            b_, o_ = divmod(slots[t], BS)
            hk[b_, :, o_, :] = stored(k[t], bf16)
            if hv is not None:
                hv[b_, :, o_, :] = stored(v[t], bf16)
    scale = 1 / math.sqrt(key_dim)
    ref = attention_reference(q, hk, hv, b, tables, heads, kv_heads, value_dim, BS, scale)
    diffs = run_both_kernels(q, kp, vp, meta.data.ptr, b, heads, kv_heads, key_dim, value_dim, values_in_keys, BS,
                             scale, ref, chunks=(None, b.bucket, 64), bf16=bf16)
    if verify == 0 and not padding:
        # The cache write fused into the split kernel (one query token per sequence): the new slots hold NaN until
        # the kernel stores the new rows there itself.
        dk, dv = cp.asarray(k), cp.asarray(v) if v is not None else None
        key_cache = keys.reshape(NB, kv_heads, BS, key_dim)
        value_cache = None if values is None else values.reshape(NB, kv_heads, BS, value_dim)
        nan = 0x7FC0 if bf16 else np.nan
        for chunk, cluster in [(c, m) for c in (None, b.bucket, 64) for m in (False, True)]:
            plan = split_plan(T, heads, kv_heads, key_dim, value_dim, values_in_keys, b.bucket, chunk)
            if cluster and not clusterable(plan, key_dim, value_dim):
                continue
            for t in range(T):
                b_, o_ = divmod(slots[t], BS)
                key_cache[b_, :, o_, :] = nan
                if value_cache is not None:
                    value_cache[b_, :, o_, :] = nan
            out = poison((T, heads, value_dim))
            attend_split(plan, partials_for(plan, T, heads, value_dim), cp.asarray(q), out, kp, vp, meta.data.ptr, b,
                         heads, kv_heads, key_dim, value_dim, values_in_keys, BS, scale, bf16, new_kv=(dk, dv),
                         cluster=cluster)
            got = cp.asnumpy(out).astype(np.float64)
            how = f"split x{plan['splits']}" + (" merged in a cluster" if cluster else "")
            diffs[f"{how} with the cache write fused"] = \
                float(np.max(np.abs(got - ref))) if np.all(np.isfinite(got)) else float("nan")
            held = [cp.asnumpy(key_cache[divmod(slots[t], BS)[0], :, divmod(slots[t], BS)[1], :]) for t in range(T)]
            if value_cache is not None:
                held += [cp.asnumpy(value_cache[divmod(slots[t], BS)[0], :, divmod(slots[t], BS)[1], :]) for t in range(T)]
            want = [k[t] for t in range(T)] + ([v[t] for t in range(T)] if v is not None else [])
            stored_ok = all(np.array_equal(bf16_value(h) if bf16 else h, stored(w, bf16).astype(np.float32))
                            for h, w in zip(held, want))
            print(f"{'PASS' if stored_ok else 'FAIL'} paged attention {name}, {how} stores the new "
                  f"entries as kiln_write_kv does")
            if not stored_ok:
                failures.append(f"attention {name}, fused cache write {how}")
        if decode_kernel_takes(kv_heads, key_dim, value_dim, values_in_keys, heads, bf16):
            # kiln_decode_attention_bf16: one split, several (one pass or many a block), a full cluster; then with the
            # rotary folded in (halves, interleaved, interleaved over part of the head), the reference over the rotated
            # queries and new keys.
            positions = [b.pos(t) for t in range(T)]
            cases = [(splits, None) for splits in (1, 2, 8, 16) if b.bucket // splits >= 1]
            for half, inter in ((key_dim // 2, 0), (key_dim // 2, 1), (key_dim // 4, 1)):
                cos, sin = rotary_tables(b.bucket, half, 2 * half)
                cases.append((16, dict(cos=cp.asarray(cos), sin=cp.asarray(sin), half=half, interleaved=inter,
                                       host=(cos, sin))))
            for splits, rotary in cases:
                if rotary:
                    cos, sin = rotary["host"]
                    rq = rotate_rows(q, positions, cos, sin, rotary["half"], rotary["interleaved"])
                    rk = rotate_rows(k, positions, cos, sin, rotary["half"], rotary["interleaved"])
                else:
                    rq = q.astype(np.float64)
                for t in range(T):
                    b_, o_ = divmod(slots[t], BS)
                    key_cache[b_, :, o_, :] = nan
                    value_cache[b_, :, o_, :] = nan
                out = poison((T, heads, value_dim))
                attend_decode(splits, cp.asarray(q), out, kp, vp, meta.data.ptr, b, heads, kv_heads, BS, scale, (dk, dv),
                              rotary)
                got = cp.asnumpy(out).astype(np.float64)
                how = f"decode kernel x{splits}" + (f" rotary {rotary['half']}{' interleaved' if rotary['interleaved'] else ''}"
                                                     if rotary else "")
                # The entries the kernel stored: the rotated keys within bf16 rounding of the float64 rotation (the
                # kernel rotates in float32), exactly as kiln_write_kv stores them without rotation; the values exactly.
                held_k = [bf16_value(cp.asnumpy(key_cache[divmod(slots[t], BS)[0], :, divmod(slots[t], BS)[1], :]))
                          for t in range(T)]
                held_v = [bf16_value(cp.asnumpy(value_cache[divmod(slots[t], BS)[0], :, divmod(slots[t], BS)[1], :]))
                          for t in range(T)]
                if rotary:
                    keys_ok = all(np.allclose(h, rk[t], rtol=2 ** -8, atol=1e-6) for t, h in enumerate(held_k))
                else:
                    keys_ok = all(np.array_equal(h, stored(k[t], bf16).astype(np.float32)) for t, h in enumerate(held_k))
                stored_ok = keys_ok and all(np.array_equal(h, stored(v[t], bf16).astype(np.float32))
                                            for t, h in enumerate(held_v))
                # The output against the float64 reference over the rotated queries and the entries as stored.
                hk2 = hk.copy()
                for t in range(T):
                    b_, o_ = divmod(slots[t], BS)
                    hk2[b_, :, o_, :] = held_k[t]
                ref2 = attention_reference(rq, hk2, hv, b, tables, heads, kv_heads, value_dim, BS, scale)
                diffs[how] = float(np.max(np.abs(got - ref2))) if np.all(np.isfinite(got)) else float("nan")
                print(f"{'PASS' if stored_ok else 'FAIL'} paged attention {name}, {how} stores the new entries")
                if not stored_ok:
                    failures.append(f"attention {name}, {how} stores")
    report(name, diffs)


def attention():
    for bf16 in (False, True):
        c = "bf16 cache: " if bf16 else ""
        attention_case(2, 2, 64, 64, False, 6, c + "GQA 6/2 heads of 64, contexts to 297 tokens, mixed step + padding",
                       bf16=bf16)
        attention_case(2, 1, 96, 64, True, 4, c + "values inside keys (MLA-like) 96/64, mixed step + padding", bf16=bf16)
        decode_case(2, 128, 128, False, 12, [1, 255, 256, 257, 1000, 3000],
                    c + "decode GQA 12/2 of 128, contexts 1/255/256/257/1000/3000", bf16=bf16)
        decode_case(1, 576, 512, True, 16, [1, 300, 2000], c + "decode MLA-like 576/512 16 heads, contexts 1/300/2000",
                    bf16=bf16)
        decode_case(2, 128, 128, False, 12, [40, 700, 90], c + "GQA 12/2: 3 decode tokens + a padding token",
                    padding=True, bf16=bf16)
        decode_case(2, 128, 128, False, 12, [515], c + "GQA 12/2: verification of 3 tokens of one sequence", verify=2,
                    bf16=bf16)
        decode_case(1, 576, 512, True, 16, [77, 900], c + "MLA-like: verification of 3 tokens + a padding token",
                    verify=2, padding=True, bf16=bf16)
    # Heads the split kernel does not take from a bf16 cache (not whole 8-element rows): the per-head kernel's
    # 4-element loads (20) and element-by-element path (18), values apart and inside the keys.
    attention_case(1, 2, 20, 12, False, 4, "bf16 cache: GQA 4/2 heads of 20/12 (per-head kernel)", bf16=True,
                   split=False)
    attention_case(1, 2, 18, 14, False, 4, "bf16 cache: GQA 4/2 heads of 18/14 (per-head kernel)", bf16=True,
                   split=False)
    attention_case(1, 1, 36, 20, True, 2, "bf16 cache: values inside keys 36/20 (per-head kernel)", bf16=True,
                   split=False)


PREFILL_TOKENS = 16  # kernels.cu: the query tokens of one block of kiln_prefill_attention_bf16


def prefill_tiles(b):
    """PrefillAttention's tiles: each sequence's run of tokens cut into runs of at most PREFILL_TOKENS, as
    (first token, count) pairs."""
    tiles, t = [], 0
    while t < b.T:
        end = t
        while end < b.T and b.seq(end) == b.seq(t) and end - t < PREFILL_TOKENS:
            end += 1
        tiles += [t, end - t]
        t = end
    return cp.asarray(np.array(tiles, np.int32))


def prefill_shared(group):
    """PrefillTiles.sharedBytes: two stages of 32 keys and 32 values, each warp's 16 query rows as hi and lo parts;
    rows of 128 + 8 bf16."""
    return 2 * (4 * 32 * 136 + group * 2 * PREFILL_TOKENS * 136)


def prefill_split(tiles, kv_heads, longest, chunk=None):
    """PrefillTiles.splits: (splits, chunk) that keep the grid within two blocks an SM, chunks of at least 256 keys;
    chunk forces a chunk size."""
    if chunk is None:
        wanted = max(1, 2 * SMS // (len(tiles) // 2 * kv_heads))
        splits = min(wanted, max(1, longest // 256))
        if splits <= 1:
            return 1, -(-longest // 32) * 32
        chunk = -(-(-(-longest // splits)) // 32) * 32
    return -(-longest // chunk), chunk


def attend_prefill(tiles, q, out, kp, vp, meta, b, heads, kv_heads, BS, scale, split=(1, 0), first=0, partials=None):
    """kiln_prefill_attention_bf16 over the tiles (tokens from `first` on), cutting contexts as `split` says (then
    kiln_paged_attention_combine merges the chunks' records in `partials`)."""
    group = heads // kv_heads
    splits, chunk = split
    entry = "kiln_prefill_attention_wide_bf16" if group > 6 else "kiln_prefill_attention_bf16"  # MAX_NARROW_GROUP
    kiln_nvrtc.launch_ex(K[entry], (len(tiles) // 2, kv_heads * splits), 32 * group, (
        q, out, np.uint64(kp), np.uint64(vp), tiles, np.uint64(meta), np.uint64(meta + 4 * b.T),
        np.uint64(meta + 4 * 3 * b.T), i32(b.stride), i32(heads), i32(kv_heads), i32(BS), f32(scale),
        partials if splits > 1 else np.uint64(0), i32(first), i32(chunk), i32(splits)),
        prefill_shared(group), cp.cuda.get_current_stream().ptr)
    if splits > 1:
        combine(partials, np.uint64(out.data.ptr + 4 * first * heads * 128), np.uint64(meta + 4 * b.T + 4 * first),
                b.T - first, heads, 128, chunk, splits)


def prefill_attention():
    """kiln_prefill_attention_bf16 (tensor cores, 128-wide heads over a bf16 cache) against float64 and against the
    split kernel on the same cache: chunks of several sequences over cached context, tiles cut at sequence ends and
    at 16 tokens, a padding token, groups of 5, 6 and 8 query heads a KV head."""
    BS, NB, D = 16, 96, 128
    for heads, kv_heads in ((12, 2), (10, 2), (8, 1)):
        perm = rng.permutation(NB).tolist()
        tables = [perm[:30], perm[30:34], perm[34:60]]
        layer = NB * BS * kv_heads * D
        keys = cp.asarray(bf16_bits(rng.uniform(-1, 1, layer).astype(np.float32)))
        vals = cp.asarray(bf16_bits(rng.uniform(-1, 1, layer).astype(np.float32)))
        hk = bf16_value(cp.asnumpy(keys)).astype(np.float64).reshape(NB, kv_heads, BS, D)
        hv = bf16_value(cp.asnumpy(vals)).astype(np.float64).reshape(NB, kv_heads, BS, D)
        # cached, new tokens per sequence: a chunk after 433 cached tokens, a first chunk of 37, one of 16 after 40;
        # then a padding token (slot -1) at the end of the last sequence, which attends like the others.
        qs, ctx, slots = step_layout(tables, (433, 0, 40), (38, 37, 17), BS)
        slots[-1] = -1
        b = pack(qs, ctx, tables, slots, BS)
        meta = cp.asarray(b.packed)
        q = rng.uniform(-1, 1, (b.T, heads, D)).astype(np.float32)
        scale = 1 / math.sqrt(D)
        ref = attention_reference(q, hk, hv, b, tables, heads, kv_heads, D, BS, scale)
        dq = cp.asarray(q)
        tiles = prefill_tiles(b)
        longest = max(ctx)
        for chunk in (None, longest, 64, 96):  # the rule's cut (two chunks here), none, 8 and 5 chunks
            split = prefill_split(tiles, kv_heads, longest, chunk)
            partials = cp.full(b.T * heads * split[0] * (D + 4), cp.nan, cp.float32)
            out = poison((b.T, heads, D))
            attend_prefill(tiles, dq, out, keys.data.ptr, vals.data.ptr, meta.data.ptr, b, heads, kv_heads, BS, scale,
                           split, 0, partials)
            name = (f"prefill attention (tensor cores) GQA {heads}/{kv_heads} of {D}, {b.T} tokens of 3 sequences, "
                    f"contexts in {split[0]} chunk(s) of {split[1]}")
            check(name, out.reshape(b.T, heads, D), ref, 2e-5)
        # Only the last sequence's tokens (from its first on): a suffix of the batch, as Java launches it after the
        # split kernel took the tokens before.
        first = qs[2]
        pairs = cp.asnumpy(tiles).reshape(-1, 2)
        suffix = cp.asarray(pairs[pairs[:, 0] >= first].reshape(-1).astype(np.int32))
        split = prefill_split(suffix, kv_heads, ctx[2], 64)
        partials = cp.full((b.T - first) * heads * split[0] * (D + 4), cp.nan, cp.float32)
        out = poison((b.T, heads, D))
        attend_prefill(suffix, dq, out, keys.data.ptr, vals.data.ptr, meta.data.ptr, b, heads, kv_heads, BS, scale,
                       split, first, partials)
        check(f"prefill attention (tensor cores) GQA {heads}/{kv_heads}, the last sequence only, {split[0]} chunks",
              out.reshape(b.T, heads, D)[first:], ref[first:], 2e-5)
        plan = split_plan(b.T, heads, kv_heads, D, D, False, b.bucket)
        split_out = poison((b.T, heads, D))
        attend_split(plan, partials_for(plan, b.T, heads, D), dq, split_out, keys.data.ptr, vals.data.ptr,
                     meta.data.ptr, b, heads, kv_heads, D, D, False, BS, scale, bf16=True)
        check(name + ", split kernel for comparison", split_out.reshape(b.T, heads, D), ref, 2e-5)


def prefill_attention_timing():
    """Prefill attention per layer of the 1.5B shape (12/2 heads of 128, bf16 cache, 28 layers in one graph, each
    with its own cache): the split kernel against kiln_prefill_attention_bf16, for one chunk at a context."""
    L, NH, KVH, D, BS = 28, 12, 2, 128, 16
    scale = 1 / math.sqrt(D)
    stream = cp.cuda.Stream(non_blocking=True)
    print(f"prefill attention per layer ({L} layers in one graph, {NH}/{KVH} heads of {D}, bf16 cache):")
    for tokens, ctx in ((512, 512), (2048, 2048), (2048, 8192), (512, 8192), (128, 128), (128, 8192), (16, 8192)):
        per_seq = -(-ctx // BS)
        layer = per_seq * KVH * BS * D
        keys = to_bf16_device(cp.random.uniform(-1, 1, L * layer, dtype=cp.float32))
        vals = to_bf16_device(cp.random.uniform(-1, 1, L * layer, dtype=cp.float32))
        tables = [list(range(per_seq))]
        b = pack([0, tokens], [ctx], tables, [ctx - tokens + j for j in range(tokens)], BS)
        meta = cp.asarray(b.packed)
        q = cp.random.uniform(-1, 1, (tokens, NH * D), dtype=cp.float32)
        out = cp.empty((tokens, NH * D), cp.float32)
        plan = split_plan(tokens, NH, KVH, D, D, False, b.bucket)
        partials = partials_for(plan, tokens, NH, D)
        tiles = prefill_tiles(b)
        cut = prefill_split(tiles, KVH, ctx)
        prefill_partials = cp.empty(tokens * NH * cut[0] * (D + 4), cp.float32)
        dev.synchronize()
        with stream:
            split = time_graph(stream, lambda: [attend_split(
                plan, partials, q, out, keys.data.ptr + 2 * l * layer, vals.data.ptr + 2 * l * layer, meta.data.ptr, b,
                NH, KVH, D, D, False, BS, scale, bf16=True) for l in range(L)], repeats=5) / L
            whole = time_graph(stream, lambda: [attend_prefill(
                tiles, q, out, keys.data.ptr + 2 * l * layer, vals.data.ptr + 2 * l * layer, meta.data.ptr, b, NH, KVH,
                BS, scale) for l in range(L)], repeats=5) / L
            mma = time_graph(stream, lambda: [attend_prefill(
                tiles, q, out, keys.data.ptr + 2 * l * layer, vals.data.ptr + 2 * l * layer, meta.data.ptr, b, NH, KVH,
                BS, scale, cut, 0, prefill_partials) for l in range(L)], repeats=5) / L if cut[0] > 1 else whole
        # Causal: token at position p scores p + 1 keys; QK^T and PV 2 * 128 flops each a (query head, key) pair.
        pairs = sum(ctx - tokens + j + 1 for j in range(tokens)) * NH
        flops = 4 * D * pairs
        print(f"  chunk of {tokens:>5} at context {ctx:>5}: split {split * 1e3:8.3f} ms, tensor cores {mma * 1e3:7.3f} ms "
              f"({split / mma:5.1f}x; {flops / mma / 1e12:.0f} TFLOP/s of the attention's own products, each done "
              f"as two bf16 products; contexts in {cut[0]} chunk(s): uncut {whole * 1e3:.3f} ms)")
        del keys, vals


def time_graph(stream, launch, repeats=20):
    """Median time of one replay of a CUDA graph of launch()."""
    stream.begin_capture()
    launch()
    graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(repeats):
        start.record(stream)
        graph.launch(stream)
        end.record(stream)
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return float(np.median(times))


def attention_timing():
    """Attention time per layer of the DeepSeek-R1-Distill-Qwen-1.5B shape (12/2 heads of 128, 28 layers, each
    with its own cache so that L2 holds none of it), per-head kernel vs split path, as one graph of 28 layers; an
    f32 cache, then a bf16 cache of the same contents (rounded) and shapes."""
    L, NH, KVH, D, BS = 28, 12, 2, 128, 16
    scale = 1 / math.sqrt(D)
    stream = cp.cuda.Stream(non_blocking=True)
    shapes = [(1, c, "decode, batch 1") for c in (256, 2048, 8192)] + [(32, 2048, "decode, batch 32"),
                                                                         (512, 2048, "prefill chunk of 512")]
    print(f"attention per layer ({L} layers in one graph, {NH}/{KVH} heads of {D}):")
    for tokens, ctx, what in shapes:
        prefill = what.startswith("prefill")
        seqs = 1 if prefill else tokens
        per_seq = -(-ctx // BS)
        NB = seqs * per_seq
        layer_floats = NB * KVH * BS * D
        if 2 * L * layer_floats * (4 + 2) > 20e9:  # f32 and bf16 copies of keys and values
            print(f"  skipped {what} at {ctx}: cache too large")
            continue
        keys = cp.random.uniform(-1, 1, L * layer_floats, dtype=cp.float32)
        vals = cp.random.uniform(-1, 1, L * layer_floats, dtype=cp.float32)
        keys16, vals16 = to_bf16_device(keys), to_bf16_device(vals)
        tables = [list(range(s * per_seq, (s + 1) * per_seq)) for s in range(seqs)]
        if prefill:
            qs, contexts = [0, tokens], [ctx]
            slots = [(ctx - tokens + j) for j in range(tokens)]
        else:
            qs, contexts = list(range(tokens + 1)), [ctx] * tokens
            slots = [s * per_seq * BS + ctx - 1 for s in range(tokens)]
        b = pack(qs, contexts, tables, slots, BS)
        meta = cp.asarray(b.packed)
        q = cp.random.uniform(-1, 1, (tokens, NH * D), dtype=cp.float32)
        out = cp.empty((tokens, NH * D), cp.float32)
        plan = split_plan(tokens, NH, KVH, D, D, False, b.bucket)
        partials = partials_for(plan, tokens, NH, D)
        dev.synchronize()  # the arrays above were filled on the default stream, which the timing stream does not wait for
        with stream:
            old = time_graph(stream, lambda: [attend_per_head(
                q, out, keys.data.ptr + 4 * l * layer_floats, vals.data.ptr + 4 * l * layer_floats, meta.data.ptr, b,
                NH, KVH, D, D, False, BS, scale) for l in range(L)]) / L
            new = time_graph(stream, lambda: [attend_split(
                plan, partials, q, out, keys.data.ptr + 4 * l * layer_floats, vals.data.ptr + 4 * l * layer_floats,
                meta.data.ptr, b, NH, KVH, D, D, False, BS, scale) for l in range(L)]) / L
            old16 = time_graph(stream, lambda: [attend_per_head(
                q, out, keys16.data.ptr + 2 * l * layer_floats, vals16.data.ptr + 2 * l * layer_floats, meta.data.ptr,
                b, NH, KVH, D, D, False, BS, scale, bf16=True) for l in range(L)]) / L
            new16 = time_graph(stream, lambda: [attend_split(
                plan, partials, q, out, keys16.data.ptr + 2 * l * layer_floats, vals16.data.ptr + 2 * l * layer_floats,
                meta.data.ptr, b, NH, KVH, D, D, False, BS, scale, bf16=True) for l in range(L)]) / L
            clustered = time_graph(stream, lambda: [attend_split(
                plan, None, q, out, keys16.data.ptr + 2 * l * layer_floats, vals16.data.ptr + 2 * l * layer_floats,
                meta.data.ptr, b, NH, KVH, D, D, False, BS, scale, bf16=True, cluster=True)
                for l in range(L)]) / L if clusterable(plan, D, D) else None
        kv_bytes = (1 if prefill else tokens) * ctx * KVH * D * 4 * 2  # every key and value row read once
        print(f"  {what:>22} at context {ctx:>5}: per-head kernel {old * 1e6:7.1f} us, split {new * 1e6:7.1f} us "
              f"({old / new:4.1f}x; {plan['splits']} splits of {plan['chunk']}, {plan['rows'] * plan['splits']} blocks; "
              f"K+V {kv_bytes / 1e6:.1f} MB -> {kv_bytes / new / 1e9:.0f} GB/s)")
        print(f"  {'bf16 cache':>22} at context {ctx:>5}: per-head kernel {old16 * 1e6:7.1f} us, split {new16 * 1e6:7.1f} us "
              f"(split f32/bf16 {new / new16:4.2f}x; K+V {kv_bytes / 2e6:.1f} MB -> {kv_bytes / 2 / new16 / 1e9:.0f} GB/s)")
        if clustered is not None:
            print(f"  {'bf16, in a cluster':>22} at context {ctx:>5}: split {clustered * 1e6:7.1f} us, merged by the "
                  f"cluster instead of the combine kernel ({new16 / clustered:4.2f}x)")
        del keys, vals, keys16, vals16


def latent_attention_timing():
    """Attention time per layer of the DeepSeek-V2-Lite shape (MLA absorbed: 16 query heads over one latent KV head
    of 576, the values its first 512; 27 layers, each with its own bf16 cache), the split path with 8-key chunks
    (SplitAttentionPlan.WIDE_MIN_CHUNK) as one graph of 27 layers."""
    L, NH, D, DV, BS = 27, 16, 576, 512, 16
    scale = 1 / math.sqrt(D)
    stream = cp.cuda.Stream(non_blocking=True)
    print(f"latent attention per layer ({L} layers in one graph, {NH} heads over a latent of {D}, bf16 cache):")
    for tokens, ctx in ((1, 256), (1, 2048), (32, 2048)):
        per_seq = -(-ctx // BS)
        NB = tokens * per_seq
        layer_elements = NB * BS * D
        keys16 = to_bf16_device(cp.random.uniform(-1, 1, L * layer_elements, dtype=cp.float32))
        tables = [list(range(s * per_seq, (s + 1) * per_seq)) for s in range(tokens)]
        b = pack(list(range(tokens + 1)), [ctx] * tokens, tables, [s * per_seq * BS + ctx - 1 for s in range(tokens)], BS)
        meta = cp.asarray(b.packed)
        q = cp.random.uniform(-1, 1, (tokens, NH * D), dtype=cp.float32)
        out = cp.empty((tokens, NH * DV), cp.float32)
        plan = split_plan(tokens, NH, 1, D, DV, True, b.bucket, min_chunk=8)
        partials = partials_for(plan, tokens, NH, DV)
        dev.synchronize()
        with stream:
            t = time_graph(stream, lambda: [attend_split(
                plan, partials, q, out, keys16.data.ptr + 2 * l * layer_elements, keys16.data.ptr + 2 * l * layer_elements,
                meta.data.ptr, b, NH, 1, D, DV, True, BS, scale, bf16=True) for l in range(L)]) / L
        kv_bytes = tokens * ctx * D * 2
        print(f"  decode, batch {tokens:>2} at context {ctx:>5}: split {t * 1e6:7.1f} us ({plan['splits']} splits of "
              f"{plan['chunk']}, {plan['rows'] * plan['splits']} blocks; latents {kv_bytes / 1e6:.1f} MB -> "
              f"{kv_bytes / t / 1e9:.0f} GB/s)")
        # The same merged in clusters (not the Java side's plan for latent caches, which keeps the combine kernel):
        # the most splits a cluster takes that keep the grid in one wave.
        for chunk in (16, 32):
            splits = b.bucket // chunk
            if not CLUSTERS or splits > MAX_CLUSTER or plan["rows"] * splits > SMS:
                continue
            clustered = split_plan(tokens, NH, 1, D, DV, True, b.bucket, chunk=chunk)
            with stream:
                tc = time_graph(stream, lambda: [attend_split(
                    clustered, None, q, out, keys16.data.ptr + 2 * l * layer_elements,
                    keys16.data.ptr + 2 * l * layer_elements, meta.data.ptr, b, NH, 1, D, DV, True, BS, scale, bf16=True,
                    cluster=True) for l in range(L)]) / L
            print(f"  {'in a cluster':>22} at context {ctx:>5}: split {tc * 1e6:7.1f} us ({splits} splits of {chunk}, "
                  f"tile {clustered['tile']})")
        del keys16


def timing():
    # Device-to-device copy bandwidth, bytes read + written.
    n = 1 << 30
    a, b = cp.empty(n, cp.uint8), cp.empty(n, cp.uint8)
    a.fill(1)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    rates = []
    for i in range(12):
        start.record()
        b.data.copy_from_device(a.data, n)
        end.record()
        end.synchronize()
        if i >= 2:
            rates.append(2 * n / (cp.cuda.get_elapsed_time(start, end) / 1e3))
    bw = float(np.median(rates))
    del a, b
    print(f"device-to-device copy: {bw / 1e9:.0f} GB/s (read + write)")

    H, I, L, NH, KVH, V, D = 1536, 8960, 28, 12, 2, 151936, 128
    mats = []
    for _ in range(L):
        mats.append([(NH * D, H), (KVH * D, H), (KVH * D, H), (H, NH * D), (I, H), (I, H), (H, I)])
    def random_bf16(r, c):  # magnitudes in [2^-7, 2^-6), random mantissas: never zeros, never one repeated value
        return (cp.random.randint(0, 256, size=(r, c), dtype=cp.int32) + 0x3c00).astype(cp.uint16)

    weights = [[random_bf16(r, c) for (r, c) in layer] for layer in mats]
    lm_head = random_bf16(V, H)
    table = lm_head
    per_token = sum(w.nbytes for layer in weights for w in layer) + lm_head.nbytes
    bound = bw / per_token
    print(f"weight bytes per decode token {per_token / 1e9:.3f} GB -> HBM bound {bound:.0f} tok/s")

    ctx = 256
    BS, NB = 16, 32
    keys = cp.zeros((L, NB, KVH, BS, D), cp.float32)
    vals = cp.zeros((L, NB, KVH, BS, D), cp.float32)
    batch = pack([0, 1], [ctx], [list(range(NB))], [ctx - 1], BS)
    meta = cp.asarray(batch.packed)
    plan = split_plan(1, NH, KVH, D, D, False, batch.bucket)
    partials = partials_for(plan, 1, NH, D)
    dev.synchronize()  # meta and partials were filled on the default stream, which the timing stream does not wait for
    x = cp.asarray(rng.uniform(-1, 1, (1, H)).astype(np.float32))
    h = cp.empty((1, H), cp.float32)
    q = cp.empty((1, NH * D), cp.float32)
    k = cp.empty((1, KVH * D), cp.float32)
    v = cp.empty((1, KVH * D), cp.float32)
    att = cp.empty((1, NH * D), cp.float32)
    gate = cp.empty((1, I), cp.float32)
    up = cp.empty((1, I), cp.float32)
    logits = cp.empty((1, V), cp.float32)
    norm = cp.ones(max(H, I), cp.float32)
    bias = cp.zeros(NH * D, cp.float32)
    ids = cp.asarray(np.array([17], np.int32))
    posd = cp.asarray(np.array([ctx - 1], np.int32))
    ang = np.arange(4096)[:, None] * np.array([10000 ** (-2.0 * i / D) for i in range(D // 2)])[None, :]
    cosd, sind = cp.asarray(np.cos(ang).astype(np.float32)), cp.asarray(np.sin(ang).astype(np.float32))

    variant = ["generic", 256]
    fused = [False]  # bias inside the GEMV, residual add inside the norm (what the Java side's recorder does)

    def gemv(w, xin, out, rows, cols, b=None):
        if fused[0] and rows < 4096:  # the Java side's choice for few rows: one block of 4 warps per row
            K["kiln_gemv_split_bf16_t1"]((rows,), (128,), (w, xin, out, i32(rows), i32(cols), i32(1), i32(1),
                                                           np.uint64(0) if b is None else b, np.uint64(0), np.uint64(0), f32(0), np.uint64(0)))
            return
        name = "kiln_gemv_bf16" if variant[0] == "generic" else "kiln_gemv_bf16_t1"
        warps = variant[1] // 32
        K[name](((rows + warps - 1) // warps,), (variant[1],), (w, xin, out, i32(rows), i32(cols), i32(1), i32(1),
                                                                 np.uint64(0) if b is None or not fused[0] else b)
                + ((np.uint64(0), np.uint64(0), f32(0), np.uint64(0)) if name.endswith("_t1") else ()))

    def step(gemv_only=False):
        if not gemv_only:
            K["kiln_embed_bf16"]((1,), (THREADS,), (table, ids, x, i32(H)))
        for l in range(L):
            wq, wk, wv, wo, wg, wu, wd = weights[l]
            if not gemv_only and (l == 0 or not fused[0]):
                K["kiln_rms_norm"]((1,), (THREADS,), (x, norm, f32(1e-6), h, i32(H), np.uint64(0), np.uint64(0)))
            if fused[0]:  # q, k and v in one launch (one block per row below 4096 rows), as the Java side joins them
                K["kiln_gemv3_split_bf16_t1"]((NH * D + 2 * KVH * D,), (128,),
                                        (h, i32(H), i32(1), wq, q, i32(NH * D), bias, wk, k, i32(KVH * D), bias,
                                         wv, v, i32(KVH * D), bias, np.uint64(0), f32(0), np.uint64(0)))
            else:
                gemv(wq, h, q, NH * D, H, bias)
                gemv(wk, h, k, KVH * D, H, bias)
                gemv(wv, h, v, KVH * D, H, bias)
            if not gemv_only and not fused[0]:
                for t_, n_ in ((q, NH * D), (k, KVH * D), (v, KVH * D)):
                    K["kiln_add_bias"](blocks(n_), (THREADS,), (t_, bias, i64(n_), i32(n_)))
                K["kiln_rotary"]((1,), (THREADS,), (q, posd, cosd, sind, i32(NH * D), i32(NH), i32(D), i32(0), i32(D // 2), i32(0)))
                K["kiln_rotary"]((1,), (THREADS,), (k, posd, cosd, sind, i32(KVH * D), i32(KVH), i32(D), i32(0), i32(D // 2), i32(0)))
                K["kiln_write_kv"]((1,), (THREADS,), (k, v, keys[l], vals[l], np.uint64(meta.data.ptr + 8), i32(KVH), i32(D), i32(D), i32(BS)))
                attend_split(plan, partials, q, att, keys[l].data.ptr, vals[l].data.ptr, meta.data.ptr, batch, NH, KVH, D, D,
                             False, BS, 1 / math.sqrt(D))
            gemv(wo, att, h, H, NH * D)
            if not gemv_only:
                add_norm()
            if fused[0]:  # gate, up and the SiLU gating in one launch
                K["kiln_gemv_silu_bf16_t1"](((I + 3) // 4,), (128,), (h, i32(H), i32(1), wg, wu, gate, up, gate, i32(I),
                                                                      np.uint64(0), f32(0), np.uint64(0)))
            else:
                gemv(wg, h, gate, I, H)
                gemv(wu, h, up, I, H)
            if not gemv_only and not fused[0]:
                K["kiln_silu_mul"](blocks(I), (THREADS,), (gate, up, gate, i64(I)))
            gemv(wd, gate, h, H, I)
            if not gemv_only:
                if fused[0]:  # the residual add with the next layer's input norm, or the final norm
                    K["kiln_add_rms_norm"]((1,), (THREADS,), (x, h, norm, f32(1e-6), h, i32(H), np.uint64(0), np.uint64(0)))
                else:
                    K["kiln_add"](blocks(H), (THREADS,), (x, h, i64(H)))
        if not gemv_only and not fused[0]:
            K["kiln_rms_norm"]((1,), (THREADS,), (x, norm, f32(1e-6), h, i32(H), np.uint64(0), np.uint64(0)))
        gemv(lm_head, h, logits, V, H)

    def add_norm():
        if fused[0]:
            K["kiln_add_rms_norm"]((1,), (THREADS,), (x, h, norm, f32(1e-6), h, i32(H), np.uint64(0), np.uint64(0)))
        else:
            K["kiln_add"](blocks(H), (THREADS,), (x, h, i64(H)))
            K["kiln_rms_norm"]((1,), (THREADS,), (x, norm, f32(1e-6), h, i32(H), np.uint64(0), np.uint64(0)))

    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
      for variant[:], fused[0] in ((["generic", 256], False), (["t1", 256], False), (["t1", 128], False), (["t1", 64], False),
                                   (["t1", 128], True)):
        for gemv_only in (True, False):
            what = f"[gemv {variant[0]}/{variant[1]}{', fused' if fused[0] else ''}] " + ("GEMVs only" if gemv_only else "whole decode step")
            for _ in range(3):
                step(gemv_only)
            stream.synchronize()
            times = []
            for _ in range(20):
                start.record(stream)
                step(gemv_only)
                end.record(stream)
                end.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
            t = float(np.median(times))
            print(f"{what}, launched one by one: {t * 1e3:.3f} ms/token = {1 / t:.0f} tok/s = {100 / t / bound:.0f}% of the bound")
            stream.begin_capture()
            step(gemv_only)
            graph = stream.end_capture()
            for _ in range(3):
                graph.launch(stream)
            stream.synchronize()
            times = []
            for _ in range(20):
                start.record(stream)
                graph.launch(stream)
                end.record(stream)
                end.synchronize()
                times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
            t = float(np.median(times))
            print(f"{what}, one CUDA graph: {t * 1e3:.3f} ms/token = {1 / t:.0f} tok/s = {100 / t / bound:.0f}% of the bound "
                  f"({per_token / t / 1e9:.0f} GB/s of weights)")


# ---- few-token products on the tensor cores -----------------------------------------------------------------------
SKINNY_WARPS, SKINNY_CHUNK = 8, 64
SKINNY_MAX_SHARED = 99 * 1024  # two blocks an SM


def skinny_tiles(tokens):
    """Token tiles of 8 of the kiln_skinny entry a token count takes (SkinnyPlan.tokenTiles); at most 32 tokens."""
    return next(nt for nt in (1, 2, 4) if tokens <= 8 * nt)


def skinny_shared(nt, rows, cluster):
    """Dynamic shared memory of a kiln_skinny launch (SkinnyPlan.sharedBytes): the warps' tree, the cluster's pushes."""
    fragment = 2 * nt * 32 * 16
    return (SKINNY_WARPS // rows // 2) * rows * fragment + (cluster - 1) * rows * fragment


def skinny_cluster(nt, rows, columns, largest=8):
    """The most blocks a tile's columns may be split over (SkinnyPlan.largestCluster): a chunk a warp at least, shared
    memory for two blocks an SM."""
    cluster = max(1, min(largest, (columns // SKINNY_CHUNK) // (SKINNY_WARPS // rows)))
    while cluster > 1 and skinny_shared(nt, rows, cluster) > SKINNY_MAX_SHARED:
        cluster -= 1
    return cluster


def skinny_plan(segment_rows, columns, tokens, sms, largest=8):
    """(row groups, tiles, cluster) of a plain product with one token group (SkinnyPlan.of for bf16 and INT8): two row
    groups for long rows (the down product), else one; clusters only where the tiles are fewer than two an SM."""
    nt = skinny_tiles(tokens)
    rows = min(nt, 2) if columns // SKINNY_CHUNK > 32 else 1
    if any(r % (32 * rows) for r in segment_rows[:-1]):
        rows = 1
    tiles = sum(-(-r // (32 * rows)) for r in segment_rows)
    return rows, tiles, 1 if tiles >= 2 * sms else skinny_cluster(nt, rows, columns, largest)


def skinny_silu_plan(rows, columns, tokens, sms, largest=8):
    """(row groups, tiles, cluster) of a gated MLP (SkinnyPlan.gated): clusters only where the tiles are fewer
    than the SMs."""
    nt = skinny_tiles(tokens)
    groups = skinny_silu_rows(nt)
    tiles = -(-rows // (16 * groups))
    return groups, tiles, 1 if tiles >= sms else skinny_cluster(nt, groups, columns, largest)


def skinny_silu_rows(nt):
    """Row groups of the gated entry for nt token tiles (SkinnyPlan.gated)."""
    return int(os.environ.get("KILN_SKINNY_SILU_ROWS", "0")) or nt


def parts_of(x):
    hi = bf16_bits(x)
    lo = bf16_bits(x.astype(np.float32) - bf16_value(hi))
    return cp.asarray(hi), cp.asarray(lo)


def skinny_launch(segments, hi, lo, cols, tokens, cluster=None, stream=None, plan=None, fmt="bf16", scale_geometry=None,
                  split_tokens=False):
    """segments: up to three (w codes or bits, out, rows, bias or None[, row scales for int8]); the Java side's plan
    unless cluster is given."""
    nt = skinny_tiles(tokens)
    segs = [tuple(x) + (None,) * (5 - len(x)) for x in segments] + [(None, None, 0, None, None)] * (3 - len(segments))
    rows, tiles, planned = plan or skinny_plan([x[2] for x in segments], cols, tokens, props["multiProcessorCount"],
                                               8 if major >= 9 else 1)
    cluster = planned if cluster is None else cluster
    args = [hi, lo, i32(cols), i32(tokens)]
    for w, o, r, b, sc in segs:
        args += [w if w is not None else np.uint64(0), o if o is not None else np.uint64(0), i32(r),
                 b if b is not None else np.uint64(0), sc if sc is not None else np.uint64(0)]
    args += [i32(g) for g in (scale_geometry or (1, cols))]  # rows and columns a scale covers: INT4 and FP8
    if split_tokens:  # the 4-tile entry with two token groups: no tree, 8 warps' sums a pushed block
        kiln_nvrtc.launch_ex(K[f"kiln_skinny_{fmt}_n4_r4_t2"], (tiles, cluster), SKINNY_WARPS * 32, args,
                             (cluster - 1) * 8 * 2048, stream.ptr if stream else 0, cluster)
        return
    kiln_nvrtc.launch_ex(K[f"kiln_skinny_{fmt}_n{nt}_r{rows}"], (tiles, cluster), SKINNY_WARPS * 32, args,
                         skinny_shared(nt, rows, cluster), stream.ptr if stream else 0, cluster)


def skinny_silu_launch(wg, wu, rows, out, out_hi, out_lo, hi, lo, cols, tokens, cluster=None, stream=None, plan=None,
                       fmt="bf16", sg=None, su=None, scale_geometry=None, split_tokens=False):
    nt = skinny_tiles(tokens)
    groups, tiles, planned = plan or skinny_silu_plan(rows, cols, tokens, props["multiProcessorCount"], 8 if major >= 9 else 1)
    cluster = planned if cluster is None else cluster
    null = np.uint64(0)
    args = [hi, lo, i32(cols), i32(tokens), wg, wu, i32(rows), out, out_hi if out_hi is not None else null,
            out_lo if out_lo is not None else null, sg if sg is not None else null, su if su is not None else null]
    args += [i32(g) for g in (scale_geometry or (1, cols))]
    if split_tokens:
        kiln_nvrtc.launch_ex(K[f"kiln_skinny_silu_{fmt}_n4_r4_t2"], (-(-rows // 64), cluster or 1), SKINNY_WARPS * 32, args,
                             ((cluster or 1) - 1) * 8 * 2048, stream.ptr if stream else 0, cluster or 1)
        return
    kiln_nvrtc.launch_ex(K[f"kiln_skinny_silu_{fmt}_n{nt}_r{groups}"], (tiles, cluster), SKINNY_WARPS * 32, args,
                         skinny_shared(nt, groups, cluster), stream.ptr if stream else 0, cluster)


def int4_rows(rows, cols, group):
    """INT4 codes u = q + 8 two a byte (column 2j in the low nibble), a scale per row and group, and the weights."""
    q = rng.integers(-8, 8, (rows, cols))
    scale = rng.uniform(0.001, 0.02, (rows, -(-cols // group))).astype(np.float32)
    u = (q + 8).astype(np.uint8)
    packed = (u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8)
    return packed, scale, q.astype(np.float64) * np.repeat(scale.astype(np.float64), group, axis=1)[:, :cols]


def e4m3_values(codes):
    """e4m3 (OCP E4M3FN) codes as float64, NaN codes as NaN."""
    c = codes.astype(np.int64)
    sign = np.where(c & 0x80, -1.0, 1.0)
    e, m = (c >> 3) & 15, c & 7
    v = np.where(e == 0, m / 8 * 2.0 ** -6, (1 + m / 8) * 2.0 ** (e - 7))
    return np.where((c & 0x7F) == 0x7F, np.nan, sign * v)


def fp8_rows(rows, cols, block_rows, block_cols, nan_row=None):
    """e4m3 codes (no NaN unless nan_row), a scale per block, and the weights they stand for."""
    codes = rng.integers(0, 256, (rows, cols)).astype(np.uint8)
    codes[(codes & 0x7F) == 0x7F] = 0x3C
    if nan_row is not None:
        codes[nan_row, 3] = 0x7F
    scale = rng.uniform(0.001, 0.02, (-(-rows // block_rows), -(-cols // block_cols))).astype(np.float32)
    full = np.repeat(np.repeat(scale.astype(np.float64), block_rows, axis=0), block_cols, axis=1)[:rows, :cols]
    return codes, scale, e4m3_values(codes) * full


def subnormal_e4m3_rows(rows, cols):
    """e4m3 codes that are all subnormal (0.mmm x 2^-6, m > 0), of both signs."""
    return rng.choice(np.array([m | sign for m in range(1, 8) for sign in (0, 0x80)], np.uint8), (rows, cols))


def int8_rows(rows, cols):
    """Per-row symmetric INT8 codes and scales (the CPU rule) and the weights they stand for."""
    w = rng.uniform(-1, 1, (rows, cols))
    scale = (np.max(np.abs(w), axis=1) / 127).astype(np.float32)
    q = np.rint(w / scale[:, None].astype(np.float64)).astype(np.int8)
    return q, scale, q.astype(np.float64) * scale[:, None].astype(np.float64)


def int8_weight(q, scale):
    """The device layout of an INT8 weight for the token GEMVs: the rows' codes, then one f32 scale per row."""
    return cp.asarray(np.concatenate([q.view(np.uint8).ravel(), scale.astype(np.float32).view(np.uint8)]))


def fp8_weight(codes, scale):
    """An FP8 weight as the device holds it (Fp8Weight): e4m3 codes, then the f32 block scales."""
    return cp.asarray(np.concatenate([codes.ravel(), scale.astype(np.float32).view(np.uint8).ravel()]))


def int4_weight(packed, scale):
    """An INT4 weight as the device holds it (QuantizedWeight): the rows' packed codes, then the f32 group scales."""
    return cp.asarray(np.concatenate([packed.ravel(), scale.astype(np.float32).view(np.uint8).ravel()]))


def int8_gemv():
    """The token-specialised GEMVs over INT8 codes (kiln_gemv*_int8_t1..4) with every fusion the Java side makes."""
    quantized_token_gemvs("int8")


def fp8_gemv():
    """The same over FP8 codes in blocks of 128 x 128 (kiln_gemv*_fp8_t1..4); a NaN code makes exactly its row NaN, and
    subnormal codes keep their values."""
    quantized_token_gemvs("fp8")
    cols = 1536
    for tokens in range(1, 5):
        x = cp.asarray(rng.uniform(-1, 1, (tokens, cols)).astype(np.float32))

        def products(codes, sc):
            """The plain and the split kernel's products of 40 rows of codes, by kernel name."""
            outs = {}
            for kind, grid in (("", (-(-40 // 16),)), ("_split", (-(-40 // 4),))):
                out = poison((tokens, 40))
                K[f"kiln_gemv{kind}_fp8_t{tokens}"](grid, (128,), (fp8_weight(codes, sc), x, out, i32(40), i32(cols),
                                                    i32(tokens), i32(1), np.uint64(0), np.uint64(0), np.uint64(0), f32(0),
                                                    np.uint64(0)))
                outs[f"gemv{kind}_fp8_t{tokens}"] = cp.asnumpy(out)
            return outs

        codes, sc, _ = fp8_rows(40, cols, 128, 128, nan_row=9)
        for name, got in products(codes, sc).items():
            if not (np.all(np.isnan(got[:, 9])) and not np.any(np.isnan(np.delete(got, 9, axis=1)))):
                failures.append(f"{name}: a NaN code did not make exactly its row NaN")
            else:
                print(f"PASS {name}: a NaN code makes exactly its row NaN")
        # Subnormal codes only (0.mmm x 2^-6) under a scale of 1: a decode that flushed them would give zeros.
        codes = subnormal_e4m3_rows(40, cols)
        for name, got in products(codes, np.ones((1, cols // 128), np.float32)).items():
            check(f"{name}, subnormal codes", got, cp.asnumpy(x).astype(np.float64) @ e4m3_values(codes).T, 2e-6 * cols)


def int4_gemv():
    """The same over INT4 codes in groups of 128 columns (kiln_gemv*_int4_t1), with whole groups and with a last
    group of 32 columns (1568)."""
    quantized_token_gemvs("int4", most_tokens=1)
    quantized_token_gemvs("int4", 1568, most_tokens=1)


def quantized_token_gemvs(fmt, cols=1536, most_tokens=4):
    """fmt "int8" (row scales), "fp8" (blocks of 128 x 128) or "int4" (groups of 128 columns): every entry at 1 to
    most_tokens tokens against float64."""
    def rows_of(r):
        if fmt == "int8":
            q_, sc_, w_ = int8_rows(r, cols)
            return int8_weight(q_, sc_), w_
        if fmt == "int4":
            packed_, sc_, w_ = int4_rows(r, cols, 128)
            return int4_weight(packed_, sc_), w_
        codes_, sc_, w_ = fp8_rows(r, cols, 128, 128)
        return fp8_weight(codes_, sc_), w_

    eps = 1e-6
    for tokens in range(1, most_tokens + 1):
        x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
        dx = cp.asarray(x)
        norm_scale = rng.uniform(0.5, 1.5, cols).astype(np.float32)
        normed_ref = x * (1 / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=1, keepdims=True) + eps)) * norm_scale
        rows = 301  # odd: the last row group and the split kernels' last block are partial
        dw, w = rows_of(rows)
        bias = rng.uniform(-1, 1, rows).astype(np.float32)
        residual_in = rng.uniform(-1, 1, (tokens, rows)).astype(np.float32)
        group = 4  # rows a warp (split: a block) computes, INT8_ROWS
        # The warp-row kernel also with x staged in shared memory (4 bytes a column and token, as the Java side gives).
        staged = 4 * cols * tokens
        for kind, grid, shared in (("", (-(-rows // (4 * group)),), 0), ("", (-(-rows // (4 * group)),), staged),
                                   ("_split", (-(-rows // group),), 0)):
            kernel = f"kiln_gemv{kind}_{fmt}_t{tokens}"
            label = kernel[5:] + (" staged" if shared else "")
            out = poison((tokens + 1, rows))
            K[kernel](grid, (128,), (dw, dx, out, i32(rows), i32(cols), i32(tokens), i32(1), cp.asarray(bias),
                                     np.uint64(0), np.uint64(0), f32(0), np.uint64(0)), shared_mem=shared)
            got = cp.asnumpy(out)
            check(f"{label} {rows}x{cols} with bias", got[:tokens], x.astype(np.float64) @ w.T + bias, 2e-6 * cols)
            if not np.all(np.isnan(got[tokens])):
                failures.append(f"{label} wrote past its rows")
            out, normed, residual = poison((tokens, rows)), poison((tokens, cols)), cp.asarray(residual_in)
            K[kernel](grid, (128,), (dw, dx, out, i32(rows), i32(cols), i32(tokens), i32(1), cp.asarray(bias), residual,
                                     cp.asarray(norm_scale), f32(eps), normed), shared_mem=shared)
            nref = normed_ref @ w.T + bias
            check(f"{label}, norm fused before", out, nref, 2e-6 * cols)
            check(f"{label}, normed rows stored", normed, normed_ref, 1e-6)
            check(f"{label}, residual added after", residual, residual_in + nref, 2e-6 * cols)
        # q, k and v in one launch (both layouts), with biases and the norm fused before.
        segs = [rows_of(r) for r in (300, 40, 41)]
        biases = [rng.uniform(-1, 1, r).astype(np.float32) for r in (300, 40, 41)]
        total = 381
        for kind, grid in (("3", (-(-total // (4 * group)),)), ("3_split", (-(-total // group),))):
            kernel = f"kiln_gemv{kind}_{fmt}_t{tokens}"
            for with_norm in (False, True):
                outs, normed = [poison((tokens, w_.shape[0])) for _, w_ in segs], poison((tokens, cols))
                args = [dx, i32(cols), i32(tokens)]
                for (dw_, w_), o, bb in zip(segs, outs, biases):
                    args += [dw_, o, i32(w_.shape[0]), cp.asarray(bb)]
                args += [cp.asarray(norm_scale), f32(eps), normed] if with_norm else [np.uint64(0), f32(0), np.uint64(0)]
                K[kernel](grid, (128,), tuple(args))
                xin = normed_ref if with_norm else x.astype(np.float64)
                for i, ((_, w_), o, bb) in enumerate(zip(segs, outs, biases)):
                    check(f"{kernel[5:]} segment {i} ({w_.shape[0]} rows){', norm fused before' if with_norm else ''}", o,
                          xin @ w_.T + bb, 2e-6 * cols)
                if with_norm:
                    check(f"{kernel[5:]}, normed rows stored", normed, normed_ref, 1e-6)
        # gate and up with the SiLU gating, the norm fused before.
        (dg, wg), (du, wu) = rows_of(203), rows_of(203)  # the last warp's second pair past the rows
        for shared in (0, staged):
            gate, up, out, normed = poison((tokens, 203)), poison((tokens, 203)), poison((tokens, 203)), poison((tokens, cols))
            K[f"kiln_gemv_silu_{fmt}_t{tokens}"]((-(-203 // (4 * group // 2)),), (128,), (dx, i32(cols), i32(tokens), dg, du,
                                                 gate, up, out, i32(203), cp.asarray(norm_scale), f32(eps), normed),
                                                 shared_mem=shared)
            g64, u64 = normed_ref @ wg.T, normed_ref @ wu.T
            label = f"gemv_silu_{fmt}_t{tokens}" + (" staged" if shared else "")
            check(f"{label} gate, norm fused before", gate, g64, 2e-6 * cols)
            check(f"{label} up, norm fused before", up, u64, 2e-6 * cols)
            check(f"{label} silu(gate) * up", out, g64 / (1 + np.exp(-g64)) * u64, 2e-6 * cols * 4)
            check(f"{label} normed rows stored", normed, normed_ref, 1e-6)


def skinny():
    """kiln_skinny against float64: token counts across every tile count (a last tile part-filled), every row-group
    entry, clusters of 1 to 8 blocks, columns fewer than the warps' splits, a last row tile part-filled, three
    segments with biases, and the gated MLP with its bf16 parts."""
    clusters = major >= 9
    for cols in (512, 1536, 128):
        rows = 300
        w = bf16_value(bf16_bits(rng.uniform(-1, 1, (rows, cols))))
        dw = cp.asarray(bf16_bits(w))
        bias = rng.uniform(-1, 1, rows).astype(np.float32)
        for tokens in (2, 5, 9, 16, 17, 32):
            nt = skinny_tiles(tokens)
            x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
            hi, lo = parts_of(x)
            ref = x.astype(np.float64) @ w.T.astype(np.float64)
            for groups in (1, 2, 4):
                for cluster in ((1, 3, 8) if clusters else (1,)):
                    if groups > nt or skinny_shared(nt, groups, cluster) > SKINNY_MAX_SHARED:
                        continue
                    out = poison((tokens + 1, rows))
                    skinny_launch([(dw, out, rows, cp.asarray(bias))], hi, lo, cols, tokens, cluster,
                                  plan=(groups, -(-rows // (32 * groups)), cluster))
                    got = cp.asnumpy(out)
                    check(f"skinny_bf16_n{nt}_r{groups} {tokens}x{cols} -> {rows}, cluster {cluster}, bias", got[:tokens],
                          ref + bias, 2e-6 * cols)
                    if not np.all(np.isnan(got[tokens])):
                        failures.append(f"skinny_bf16 {tokens}x{cols} wrote past its tokens")
    # q, k and v in one launch (the plan's row groups): segments of two blocks' rows and one block's, the last 45.
    cols, tokens = 1536, 24
    x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
    hi, lo = parts_of(x)
    block_rows = 32 * skinny_tiles(tokens)
    segs, refs = [], []
    for r, with_bias in ((2 * block_rows, True), (block_rows, False), (45, True)):
        w = bf16_value(bf16_bits(rng.uniform(-1, 1, (r, cols))))
        b = rng.uniform(-1, 1, r).astype(np.float32) if with_bias else None
        segs.append((cp.asarray(bf16_bits(w)), poison((tokens, r)), r, cp.asarray(b) if b is not None else None))
        refs.append(x.astype(np.float64) @ w.T.astype(np.float64) + (b if b is not None else 0))
    plan = skinny_plan([2 * block_rows, block_rows, 45], cols, tokens, props["multiProcessorCount"], 8 if clusters else 1)
    skinny_launch(segs, hi, lo, cols, tokens, plan=plan)
    for i, (seg, ref) in enumerate(zip(segs, refs)):
        check(f"skinny_bf16 three segments (plan {plan}), segment {i}", seg[1], ref, 2e-6 * cols)
    # The gated MLP: silu(gate) * up and its bf16 parts.
    rows = 200
    wg, wu = (bf16_value(bf16_bits(rng.uniform(-1, 1, (rows, cols)))) for _ in range(2))
    g64, u64 = x.astype(np.float64) @ wg.T.astype(np.float64), x.astype(np.float64) @ wu.T.astype(np.float64)
    ref = g64 / (1 + np.exp(-g64)) * u64
    for groups, cluster in [(g, c) for g in (1, 2, 4) for c in ((1, 4) if clusters else (1,))]:
        out = poison((tokens + 1, rows))
        out_hi, out_lo = cp.zeros(tokens * rows, cp.uint16), cp.zeros(tokens * rows, cp.uint16)
        skinny_silu_launch(cp.asarray(bf16_bits(wg)), cp.asarray(bf16_bits(wu)), rows, out, out_hi, out_lo, hi, lo,
                           cols, tokens, cluster, plan=(groups, -(-rows // (16 * groups)), cluster))
        got = cp.asnumpy(out)
        check(f"skinny_silu_bf16_r{groups} {tokens}x{cols} -> {rows}, cluster {cluster}", got[:tokens], ref, 2e-6 * cols * 4)
        if not np.all(np.isnan(got[tokens])):
            failures.append("skinny_silu wrote past its tokens")
        parts = bf16_value(cp.asnumpy(out_hi)).astype(np.float64) + bf16_value(cp.asnumpy(out_lo)).astype(np.float64)
        check(f"skinny_silu_bf16_r{groups} bf16 parts, cluster {cluster}", parts.reshape(tokens, rows), got[:tokens], 3e-5)
    # INT4 (groups of 64 and 128) and FP8 (blocks of 128 x 128 and 32 x 64) codes, plain and gated, up to 32 tokens
    # (from 17 the entries with two token groups); a NaN e4m3 code makes its row NaN and only its row.
    for tokens in (3, 5, 16, 24, 32):  # from 3 (INT4) and 4 (FP8) tokens by default
        nt = skinny_tiles(tokens)
        split = nt == 4  # two token groups: the 4-tile INT4 and FP8 entries
        x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
        hi, lo = parts_of(x)
        cases = [("int4", *int4_rows(300, cols, g), (1, g), f"int4 g{g}") for g in (64, 128)]
        cases += [("fp8", *fp8_rows(300, cols, br, bc), (br, bc), f"fp8 {br}x{bc}") for br, bc in ((128, 128), (32, 64))]
        for fmt, codes, sc, w, geometry, label in cases:
            for cluster in ((1, 3) if clusters else (1,)):
                out = poison((tokens + 1, 300))
                skinny_launch([(cp.asarray(codes), out, 300, None, cp.asarray(sc))], hi, lo, cols, tokens, cluster,
                              plan=(4, -(-300 // 128), cluster) if split else (1, -(-300 // 32), cluster), fmt=fmt,
                              scale_geometry=geometry, split_tokens=split)
                got = cp.asnumpy(out)
                check(f"skinny {label} {tokens}x{cols} -> 300, cluster {cluster}", got[:tokens], x.astype(np.float64) @ w.T,
                      2e-6 * cols)
                if not np.all(np.isnan(got[tokens])):
                    failures.append(f"skinny {label} wrote past its tokens")
            (cg, sg, wg), (cu, su, wu) = [(int4_rows(200, cols, geometry[1]) if fmt == "int4" else fp8_rows(200, cols, *geometry))
                                          for _ in range(2)]
            g64, u64 = x.astype(np.float64) @ wg.T, x.astype(np.float64) @ wu.T
            out = poison((tokens + 1, 200))
            skinny_silu_launch(cp.asarray(cg), cp.asarray(cu), 200, out, None, None, hi, lo, cols, tokens, fmt=fmt,
                               sg=cp.asarray(sg), su=cp.asarray(su), scale_geometry=geometry, split_tokens=split)
            check(f"skinny_silu {label} {tokens}x{cols} -> 200", cp.asnumpy(out)[:tokens], g64 / (1 + np.exp(-g64)) * u64,
                  2e-6 * cols * 4)
        codes, sc, w = fp8_rows(40, cols, 128, 128, nan_row=9)
        out = poison((tokens, 40))
        skinny_launch([(cp.asarray(codes), out, 40, None, cp.asarray(sc))], hi, lo, cols, tokens, 1,
                      plan=(4, 1, 1) if split else (1, 2, 1), fmt="fp8", scale_geometry=(128, 128), split_tokens=split)
        got = cp.asnumpy(out)
        if not (np.all(np.isnan(got[:, 9])) and not np.any(np.isnan(np.delete(got, 9, axis=1)))):
            failures.append("skinny fp8: a NaN code did not make exactly its row NaN")
        else:
            print(f"PASS skinny fp8 {tokens} tokens: a NaN code makes exactly its row NaN")
        # Subnormal codes only (0.mmm x 2^-6) under a scale of 1: a widening that flushed them would give zeros.
        codes = subnormal_e4m3_rows(40, cols)
        sc = np.ones((1, -(-cols // 128)), np.float32)
        out = poison((tokens, 40))
        skinny_launch([(cp.asarray(codes), out, 40, None, cp.asarray(sc))], hi, lo, cols, tokens, 1,
                      plan=(4, 1, 1) if split else (1, 2, 1), fmt="fp8", scale_geometry=(128, 128), split_tokens=split)
        check(f"skinny fp8 {tokens} tokens, subnormal codes", cp.asnumpy(out), x.astype(np.float64) @ e4m3_values(codes).T,
              2e-6 * cols)
    # INT8 codes with row scales: plain (every row-group entry, a cluster, a bias), three segments, and gated.
    for tokens in (4, 16, 32):  # from 4 tokens by default
        nt = skinny_tiles(tokens)
        x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
        hi, lo = parts_of(x)
        rows = 300
        q, sc, w = int8_rows(rows, cols)
        bias = rng.uniform(-1, 1, rows).astype(np.float32)
        ref = x.astype(np.float64) @ w.T + bias
        for groups in (1, 2, 4):
            for cluster in ((1, 3) if clusters else (1,)):
                if groups > nt:
                    continue
                out = poison((tokens + 1, rows))
                skinny_launch([(cp.asarray(q), out, rows, cp.asarray(bias), cp.asarray(sc))], hi, lo, cols, tokens, cluster,
                              plan=(groups, -(-rows // (32 * groups)), cluster), fmt="int8")
                got = cp.asnumpy(out)
                check(f"skinny_int8_n{nt}_r{groups} {tokens}x{cols} -> {rows}, cluster {cluster}, bias", got[:tokens], ref, 2e-6 * cols)
                if not np.all(np.isnan(got[tokens])):
                    failures.append("skinny_int8 wrote past its tokens")
        block_rows = 32 * skinny_plan([64, 64, 45], cols, tokens, props["multiProcessorCount"])[0]
        segs, refs = [], []
        for r in (2 * block_rows, block_rows, 45):
            q, sc, w = int8_rows(r, cols)
            segs.append((cp.asarray(q), poison((tokens, r)), r, None, cp.asarray(sc)))
            refs.append(x.astype(np.float64) @ w.T)
        skinny_launch(segs, hi, lo, cols, tokens, fmt="int8")
        for i, (seg, ref) in enumerate(zip(segs, refs)):
            check(f"skinny_int8 {tokens} tokens, three segments, segment {i}", seg[1], ref, 2e-6 * cols)
        (qg, sg, wg), (qu, su, wu) = int8_rows(200, cols), int8_rows(200, cols)
        g64, u64 = x.astype(np.float64) @ wg.T, x.astype(np.float64) @ wu.T
        out = poison((tokens + 1, 200))
        skinny_silu_launch(cp.asarray(qg), cp.asarray(qu), 200, out, None, None, hi, lo, cols, tokens, fmt="int8",
                           sg=cp.asarray(sg), su=cp.asarray(su))
        check(f"skinny_silu_int8 {tokens}x{cols} -> 200", cp.asnumpy(out)[:tokens], g64 / (1 + np.exp(-g64)) * u64, 2e-6 * cols * 4)


def skinny_timing():
    """The products of a decode batch of 8 to 64 tokens, 1.5B shape, 28 distinct weights a product in one graph (as
    a step reads them): the paired cuBLAS GEMM (one GEMM over [hi | lo] plus kiln_add_halves, as the Java side runs
    it; launched in a row, as CuPy's cuBLAS cannot be captured) against kiln_skinny (in a graph), in us a product and
    as a share of the copy bandwidth measured here."""
    L, sms = 28, props["multiProcessorCount"]
    stream = cp.cuda.Stream(non_blocking=True)
    src, dst = cp.empty(1 << 30, cp.uint8), cp.empty(1 << 30, cp.uint8)
    with stream:
        copy = time_graph(stream, lambda: dst.__setitem__(Ellipsis, src), repeats=10)
    bandwidth = 2 * (1 << 30) / copy
    del src, dst
    print(f"skinny products ({L} weights each, one graph; copy bandwidth {bandwidth / 1e9:.0f} GB/s):")
    handle = dev.cublas_handle
    one, zero = np.array([1.0], np.float32), np.array([0.0], np.float32)
    shapes = (("q/k/v", [1536, 256, 256], 1536), ("o", [1536], 1536), ("gate/up", [8960, 8960], 1536),
              ("down", [1536], 8960))
    # int8: the weights as INT8 codes (half the bytes); int4: INT4 codes in groups of 128 (a quarter); fp8: e4m3 codes
    # in blocks of 128 x 128
    fmt = os.environ.get("KILN_SKINNY_FORMAT", "bf16")
    geometry = {"int4": (1, 128), "fp8": (128, 128)}.get(fmt)
    for tokens in [int(t) for t in os.environ.get("KILN_SKINNY_TOKENS", "4,8,16,32").split(",")]:
        x = cp.random.uniform(-1, 1, (tokens, 8960), dtype=cp.float32)
        hi8, lo8 = cp.empty(tokens * 8960, cp.uint16), cp.empty(tokens * 8960, cp.uint16)
        K["kiln_split_bf16"](blocks(tokens * 8960), (THREADS,), (x, hi8, lo8, i64(tokens * 8960)))
        parts = cp.concatenate([hi8, lo8])
        for name, rows, cols in shapes:
            if fmt == "int8":
                weights = [[cp.random.randint(-127, 128, (r, cols), dtype=cp.int32).astype(cp.int8) for r in rows]
                           for _ in range(L)]
                scales = [cp.full(r, 0.01, cp.float32) for r in rows]
            elif fmt == "int4":
                weights = [[cp.random.randint(0, 256, (r, cols // 2), dtype=cp.int32).astype(cp.uint8) for r in rows]
                           for _ in range(L)]
                scales = [cp.full((r, cols // 128), 0.01, cp.float32) for r in rows]
            elif fmt == "fp8":
                weights = [[cp.random.randint(0, 0x7F, (r, cols), dtype=cp.int32).astype(cp.uint8) for r in rows]
                           for _ in range(L)]
                scales = [cp.full((-(-r // 128), cols // 128), 0.01, cp.float32) for r in rows]
            else:
                weights = [[cp.random.randint(0x3c00, 0x3d00, (r, cols), dtype=cp.int32).astype(cp.uint16) for r in rows]
                           for _ in range(L)]
                scales = [None for r in rows]
            nbytes = sum(int(w.nbytes) for w in weights[0]) + sum(int(sc.nbytes) for sc in scales if sc is not None)
            outs = [cp.empty((tokens, r), cp.float32) for r in rows]
            products = cp.empty((2 * tokens, max(rows)), cp.float32)
            hi, lo = parts[:tokens * cols], parts[tokens * 8960:tokens * 8960 + tokens * cols]
            pair = cp.concatenate([hi, lo])

            def cublas_step():
                for l in range(L):
                    for w, o, r in zip(weights[l], outs, rows):
                        cublas.gemmEx(handle, 1, 0, r, 2 * tokens, cols, one.ctypes.data, w.data.ptr, 14, cols,
                                      pair.data.ptr, 14, cols, zero.ctypes.data, products.data.ptr, 0, r, 68, -1)
                        K["kiln_add_halves"](blocks(tokens * r), (THREADS,), (products, o, i64(tokens * r), np.uint64(0), i32(1), np.uint64(0)))
            if fmt != "bf16":
                cublas_step = lambda: None  # noqa: E731  (no cuBLAS counterpart of the INT8 codes)
            with stream:  # CuPy's cuBLAS cannot be captured in a graph: launched in a row, best of 5
                cublas.setStream(handle, stream.ptr)
                cublas_step()
                start, end, times = cp.cuda.Event(), cp.cuda.Event(), []
                for _ in range(5):
                    start.record(stream)
                    cublas_step()
                    end.record(stream)
                    end.synchronize()
                    times.append(cp.cuda.get_elapsed_time(start, end) / 1e3 / L)
                base = min(times)
                cublas.setStream(handle, 0)
            line = f"  {tokens:>2} tokens, {name:<8} ({nbytes / 1e6:5.1f} MB): cuBLAS {base * 1e6:6.1f} us ({nbytes / base / bandwidth * 100:3.0f}%)"
            nt = skinny_tiles(tokens)
            split = nt == 4 and fmt in ("int4", "fp8")  # their 4-tile entries: two token groups, four row groups
            if name == "gate/up" and split:
                with stream:
                    t = time_graph(stream, lambda: [skinny_silu_launch(weights[l][0], weights[l][1], rows[0], outs[0],
                                   None, None, hi, lo, cols, tokens, None, stream, None, fmt, scales[0], scales[1],
                                   geometry, True) for l in range(L)], repeats=10) / L
                line += f", skinny {t * 1e6:6.1f} us ({nbytes / t / bandwidth * 100:3.0f}%)"
            elif split:
                # Without the thread block clusters the Java side's plan gives products of few tiles (SkinnyPlan): those
                # figures understate what a step runs.
                plan = (4, sum(-(-r // 128) for r in rows), 1)
                with stream:
                    t = time_graph(stream, lambda: [skinny_launch([(w, o, r, None, sc) for w, o, r, sc in zip(weights[l], outs, rows, scales)],
                                   hi, lo, cols, tokens, 1, stream, plan, fmt, geometry, True) for l in range(L)], repeats=10) / L
                line += f", skinny without clusters {t * 1e6:6.1f} us ({nbytes / t / bandwidth * 100:3.0f}%)"
            elif name == "gate/up":
                planned = skinny_silu_plan(rows[0], cols, tokens, sms)
                out_hi, out_lo = cp.empty(tokens * rows[0], cp.uint16), cp.empty(tokens * rows[0], cp.uint16)
                plans = {planned} | {(g, -(-rows[0] // (16 * g)), 1) for g in (1, 2, 4) if g <= nt}
                for plan in sorted(plans):
                    with stream:
                        t = time_graph(stream, lambda: [skinny_silu_launch(weights[l][0], weights[l][1], rows[0], outs[0],
                                       out_hi, out_lo, hi, lo, cols, tokens, None, stream, plan, fmt, scales[0], scales[1],
                                       geometry)
                                       for l in range(L)], repeats=10) / L
                    line += f", skinny r{plan[0]}/{plan[2]}{'*' if plan == planned else ''} {t * 1e6:6.1f} us ({nbytes / t / bandwidth * 100:3.0f}%)"
            else:
                planned = skinny_plan(rows, cols, tokens, sms)
                plans = {planned}
                for groups in (1, 2, 4):
                    if groups <= nt:
                        t_ = sum(-(-r // (32 * groups)) for r in rows)
                        plans.add((groups, t_, skinny_cluster(nt, groups, cols)))
                for plan in sorted(plans):
                    with stream:
                        t = time_graph(stream, lambda: [skinny_launch([(w, o, r, None, sc) for w, o, r, sc in zip(weights[l], outs, rows, scales)],
                                       hi, lo, cols, tokens, None, stream, plan, fmt, geometry) for l in range(L)], repeats=10) / L
                    line += f", skinny r{plan[0]}/{plan[2]}{'*' if plan == planned else ''} {t * 1e6:6.1f} us ({nbytes / t / bandwidth * 100:3.0f}%)"
            print(line)
            del weights


# KILN_CHECK_SECTIONS=attention_timing,latent_attention_timing runs only those (timings of another source, say).
chosen = os.environ.get("KILN_CHECK_SECTIONS")
for s in (elementwise, rows_kernels, rotary, gemv_and_gemm, int8_gemv, fp8_gemv, int4_gemv, attention, prefill_attention, attention_timing,
          prefill_attention_timing, latent_attention_timing, skinny, skinny_timing, timing):
    if not chosen or s.__name__ in chosen.split(","):
        section(s)
print("FAILURES: " + ", ".join(failures) if failures else "ALL KERNEL CHECKS PASSED")
