"""Checks the kernels of the weight-only INT8 and INT4 formats on a CUDA machine without Java, and times their GEMVs.

Compiles src/main/resources/dev/kiln/backend/cuda/internal/quant_kernels.cu with NVRTC and the options the Java side
uses, packs weights in the layout the Java side uploads (see the source's header), and runs every kernel on random
inputs against float64 NumPy products with the dequantized weights (inputs freshly drawn, outputs poisoned with NaN
first, rows past the output checked untouched): the token-specialised GEMVs for 1..8 tokens, the any-shape GEMVs,
the prefill path exactly as the Java side calls it (weights dequantized into bf16 tiles of a few rows, activations
split into bf16 high and low parts, cuBLAS GEMMs accumulating in f32), and the row gathers. Then times the INT8 and
INT4 GEMVs on the DeepSeek-R1-Distill-Qwen-1.5B shapes (achieved GB/s of weight bytes) and the GEMVs of one whole
batch-1 decode step replayed as a CUDA graph.

Needs CuPy and NumPy. Usage: python3 check_quant_kernels.py [path/to/quant_kernels.cu] [--variants]
(--variants also times other QUANT_BYTES_IN_FLIGHT values, compiled with -D overrides).
"""
import ctypes
import os
import sys
import traceback

import cupy as cp
import numpy as np
from cupy_backends.cuda.libs import cublas
import kiln_nvrtc

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
SOURCE = ARGS[0] if ARGS else os.path.join(
    HERE, "..", "src", "main", "resources", "dev", "kiln", "backend", "cuda", "internal", "quant_kernels.cu")
VARIANTS = "--variants" in sys.argv
VARIANT_BYTES_IN_FLIGHT = (32, 128)
GEMV_THREADS = 128  # QuantKernels.GEMV_THREADS
WARPS = GEMV_THREADS // 32
GENERIC_THREADS = 256
failures = []
i32, i64, f32 = np.int32, np.int64, np.float32


def compile_cubin(source, arch, extra=()):
    return kiln_nvrtc.compile_cubin(source, arch, "quant_kernels.cu", extra)


def load(arch, extra=(), name="kiln-quant-kernels"):
    path = f"/tmp/{name}.cubin"
    with open(path, "wb") as f:
        f.write(compile_cubin(open(SOURCE).read(), arch, extra))
    return cp.RawModule(path=path)


def check(name, actual, expected, tolerance):
    """Max |diff| against float64, relative to the larger of 1 and the product's magnitude."""
    actual = cp.asnumpy(actual).astype(np.float64)
    diff = np.max(np.abs(actual - expected)) if actual.size else 0.0
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    ok = bool(np.isfinite(diff)) and diff <= tolerance * scale
    print(f"{'PASS' if ok else 'FAIL'} {name}: max |diff| = {diff:.3e} (scale {scale:.3g})")
    if not ok:
        failures.append(name)


def untouched(name, rows):
    if not np.all(np.isnan(cp.asnumpy(rows))):
        print(f"FAIL {name}: wrote past its output")
        failures.append(name + " wrote past its output")


def section(fn):
    try:
        fn()
    except Exception:
        failures.append(fn.__name__)
        print(f"FAIL {fn.__name__}: exception")
        traceback.print_exc()


def bf16_bits(x):
    """Round-to-nearest-even bf16 bits of float32 values."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def round_up(n, m):
    return (n + m - 1) // m * m


# ---- the formats, as the Java side quantizes and packs them ---------------------------------------------------------

def quantize_int8(w):
    """Per row: s = amax / 127 in f32, q = rint(w / s) in double, clamped to +-127."""
    amax = np.max(np.abs(w), axis=1).astype(np.float32)
    scales = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(scales == 0, 1, scales).astype(np.float64)
    q = np.clip(np.rint(w.astype(np.float64) / safe[:, None]), -127, 127)
    q[scales == 0] = 0
    return q.astype(np.int8), scales


def pack_int8(q):
    rows, cols = q.shape
    codes = np.zeros((rows, round_up(cols, 16)), np.int8)
    codes[:, :cols] = q
    return codes


def quantize_int4(w, group):
    """Per group: the element of largest magnitude m becomes -8 (d = m / -8 in f32), q = clamp(rint(w / d), -8, 7)."""
    rows, cols = w.shape
    groups = (cols + group - 1) // group
    u = np.zeros((rows, cols), np.uint8)
    scales = np.zeros((rows, groups), np.float32)
    for g in range(groups):
        block = w[:, g * group:(g + 1) * group]
        extreme = block[np.arange(rows), np.argmax(np.abs(block), axis=1)].astype(np.float32)
        d = (extreme / np.float32(-8)).astype(np.float32)
        scales[:, g] = d
        safe = np.where(d == 0, 1, d).astype(np.float64)
        q = np.clip(np.rint(block.astype(np.float64) / safe[:, None]), -8, 7)
        q[d == 0] = 0
        u[:, g * group:(g + 1) * group] = (q + 8).astype(np.uint8)
    return u, scales


def pack_int4(u):
    rows, cols = u.shape
    padded = np.full((rows, round_up(cols, 32)), 8, np.uint8)
    padded[:, :cols] = u
    return (padded[:, 0::2] | (padded[:, 1::2] << 4)).astype(np.uint8)


def dequantized_int8(q, scales):
    return q.astype(np.float64) * scales.astype(np.float64)[:, None]


def dequantized_int4(u, scales, group):
    cols = u.shape[1]
    s = np.repeat(scales.astype(np.float64), group, axis=1)[:, :cols]
    return (u.astype(np.float64) - 8) * s


# ---- launches as the Java side makes them ---------------------------------------------------------------------------

def group_shift(group):
    return int(np.log2(group // 16))


def rows_per_warp(tokens, split):
    """GemvShape::ROWS (QuantKernels.rowsPerWarp)."""
    return 4 if split or tokens < 4 else 8


def splits(rows, tokens, split=None):
    """QuantKernels.splits: the block's warps share one row group when row groups alone leave SMs without a block."""
    if split is not None:
        return split
    per_block = WARPS * rows_per_warp(tokens, False)
    return (rows + per_block - 1) // per_block < SMS


def gemv_blocks(rows, tokens, split):
    per_block = rows_per_warp(tokens, True) if split else WARPS * rows_per_warp(tokens, False)
    return ((rows + per_block - 1) // per_block,)


def int8_gemv(K, codes, scales, x, out, rows, cols, tokens, split=None):
    stride = codes.shape[1]
    if cols % 16 == 0:
        split = splits(rows, tokens, split)
        K[f"kiln_int8_gemv_{'split_' if split else ''}t{tokens}"](gemv_blocks(rows, tokens, split), (GEMV_THREADS,),
                                       (codes, scales, x, out, i32(rows), i32(cols), i32(stride)))
    else:
        warps = GENERIC_THREADS // 32
        K["kiln_int8_gemv"](((rows + warps - 1) // warps,), (GENERIC_THREADS,),
                            (codes, scales, x, out, i32(rows), i32(cols), i32(stride), i32(tokens)))


def int4_gemv(K, codes, scales, x, out, rows, cols, group, tokens, split=None):
    stride_bytes = round_up(cols, 32) // 2
    groups = (cols + group - 1) // group
    if cols % 16 == 0:
        split = splits(rows, tokens, split)
        K[f"kiln_int4_gemv_{'split_' if split else ''}t{tokens}"](gemv_blocks(rows, tokens, split), (GEMV_THREADS,),
                                       (codes, scales, x, out, i32(rows), i32(cols), i32(stride_bytes), i32(groups),
                                        i32(group_shift(group))))
    else:
        warps = GENERIC_THREADS // 32
        K["kiln_int4_gemv"](((rows + warps - 1) // warps,), (GENERIC_THREADS,),
                            (codes, scales, x, out, i32(rows), i32(cols), i32(stride_bytes), i32(groups), i32(group),
                             i32(tokens)))


def gemm(handle, rows, tokens, cols, w_ptr, x_ptr, accumulate, out_ptr, ldc):
    """The Java side's Cublas.gemm: out (col-major rows x T, ld ldc) = W^T . x, bf16 operands, f32 accumulation."""
    one, zero = np.array([1.0], np.float32), np.array([0.0], np.float32)
    cublas.gemmEx(handle, 1, 0, rows, tokens, cols, one.ctypes.data, w_ptr, 14, cols, x_ptr, 14, cols,
                  (one if accumulate else zero).ctypes.data, out_ptr, 0, ldc, 68, -1)


def prefill(K, fmt, codes, scales, x, out, rows, cols, group, tokens, tile_rows):
    """QuantizedWeight.multiply for more than 8 tokens: x split into bf16 hi + lo, the weight dequantized tile by tile."""
    handle = cp.cuda.Device().cublas_handle
    x_hi = cp.asarray(bf16_bits(x))
    x_lo = cp.asarray(bf16_bits(x - bf16_value(bf16_bits(x))))
    tile_hi = cp.zeros(tile_rows * cols, cp.uint16)
    tile_lo = cp.zeros(tile_rows * cols, cp.uint16)
    stride = codes.shape[1]
    groups = (cols + group - 1) // group if group else 0
    for first in range(0, rows, tile_rows):
        n = min(tile_rows, rows - first)
        grid = (min(1024, (cols + 255) // 256), n)
        out_ptr = out.data.ptr + 4 * first
        if fmt == "int8":
            K["kiln_int8_codes_bf16"](grid, (256,), (np.uint64(codes.data.ptr + first * stride), i32(stride), i32(cols),
                                                    tile_hi))
            gemm(handle, n, tokens, cols, tile_hi.data.ptr, x_hi.data.ptr, False, out_ptr, rows)
            gemm(handle, n, tokens, cols, tile_hi.data.ptr, x_lo.data.ptr, True, out_ptr, rows)
        else:
            K["kiln_int4_dequantize_split"](grid, (256,), (np.uint64(codes.data.ptr + first * stride),
                                                          np.uint64(scales.data.ptr + 4 * first * groups), i32(stride),
                                                          i32(cols), i32(groups), i32(group), tile_hi, tile_lo))
            gemm(handle, n, tokens, cols, tile_hi.data.ptr, x_hi.data.ptr, False, out_ptr, rows)
            gemm(handle, n, tokens, cols, tile_hi.data.ptr, x_lo.data.ptr, True, out_ptr, rows)
            gemm(handle, n, tokens, cols, tile_lo.data.ptr, x_hi.data.ptr, True, out_ptr, rows)
    if fmt == "int8":
        total = tokens * rows
        K["kiln_int8_scale_product"]((min(1 << 20, (total + 255) // 256),), (256,), (out, scales, i64(total), i32(rows)))


# ---- checks ---------------------------------------------------------------------------------------------------------

rng = np.random.default_rng(17)
props = cp.cuda.runtime.getDeviceProperties(0)
major, minor = props["major"], props["minor"]
arch = f"sm_{major}{minor}" + ("a" if (major, minor) == (9, 0) else "")
SMS = props["multiProcessorCount"]
print(f"device {props['name'].decode()} cc {major}.{minor}, {SMS} SMs -> {arch}")
mod = load(arch)
NAMES = ["kiln_int8_gemv", "kiln_int4_gemv", "kiln_int8_codes_bf16", "kiln_int8_scale_product",
         "kiln_int4_dequantize_split", "kiln_int8_gather_rows", "kiln_int4_gather_rows"] + \
        [f"kiln_int{b}_gemv_{k}t{t}" for b in (8, 4) for k in ("", "split_") for t in range(1, 9)]
K = {n: mod.get_function(n) for n in NAMES}


def weights(rows, cols):
    # Rows of different magnitudes, one row of zeros: scales of every size and a scale of 0.
    w = rng.standard_normal((rows, cols)).astype(np.float32) * rng.uniform(0.01, 2, (rows, 1)).astype(np.float32)
    w[rows // 2] = 0
    return w


def int8_checks():
    # (rows, cols): rows not a multiple of the 16 rows of a GEMV block nor of 4; widths with and without the fast path.
    for rows, cols in ((301, 1552), (37, 208), (45, 16), (301, 100), (29, 77)):
        w = weights(rows, cols)
        q, scales = quantize_int8(w)
        ref_w = dequantized_int8(q, scales)
        codes, dscales = cp.asarray(pack_int8(q)), cp.asarray(scales)
        worst = 0.0
        for tokens, split in [(t, k) for t in range(1, 9) for k in ((False, True) if cols % 16 == 0 else (None,))]:
            x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
            out = cp.full((tokens + 1, rows), cp.nan, cp.float32)
            int8_gemv(K, codes, dscales, cp.asarray(x), out, rows, cols, tokens, split=split)
            ref = x.astype(np.float64) @ ref_w.T
            kind = f"{'split ' if split else ''}t{tokens}" if cols % 16 == 0 else f"any-shape {tokens}"
            check(f"int8 gemv {kind} {rows}x{cols}", out[:tokens], ref, 1e-6 * np.sqrt(cols))
            untouched(f"int8 gemv {kind} {rows}x{cols}", out[tokens])
        for tokens, tile_rows in ((9, 128), (40, 16), (33, rows)):
            x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32) * 3
            out = cp.full((tokens + 1, rows), cp.nan, cp.float32)
            prefill(K, "int8", codes, dscales, x, out, rows, cols, 0, tokens, tile_rows)
            ref = x.astype(np.float64) @ ref_w.T
            check(f"int8 prefill {tokens} tokens {rows}x{cols}, tiles of {tile_rows} rows", out[:tokens], ref, 2e-5)
            untouched(f"int8 prefill {rows}x{cols}", out[tokens])
        ids = np.array([rows - 1, 0, rows // 2, 3 % rows, rows - 1], np.int32)
        out = cp.full((len(ids) + 1, cols), cp.nan, cp.float32)
        K["kiln_int8_gather_rows"]((len(ids),), (256,), (codes, dscales, cp.asarray(ids), out, i32(cols), i32(codes.shape[1])))
        check(f"int8 gather rows {rows}x{cols}", out[:len(ids)], ref_w[ids], 1e-7)
        untouched("int8 gather rows", out[len(ids)])


def int4_checks():
    # 336 = 2 x 128 + 80 and 5 x 64 + 16: a last partial group with the fast path; 100 and 77 take the any-shape one.
    for group in (64, 128):
        for rows, cols in ((301, 336), (37, 1552), (45, 16), (301, 100), (29, 77)):
            w = weights(rows, cols)
            u, scales = quantize_int4(w, group)
            ref_w = dequantized_int4(u, scales, group)
            codes, dscales = cp.asarray(pack_int4(u)), cp.asarray(scales)
            for tokens, split in [(t, k) for t in range(1, 9) for k in ((False, True) if cols % 16 == 0 else (None,))]:
                x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
                out = cp.full((tokens + 1, rows), cp.nan, cp.float32)
                int4_gemv(K, codes, dscales, cp.asarray(x), out, rows, cols, group, tokens, split=split)
                ref = x.astype(np.float64) @ ref_w.T
                kind = f"{'split ' if split else ''}t{tokens}" if cols % 16 == 0 else f"any-shape {tokens}"
                check(f"int4 g{group} gemv {kind} {rows}x{cols}", out[:tokens], ref, 1e-6 * np.sqrt(cols))
                untouched(f"int4 gemv {kind} {rows}x{cols}", out[tokens])
            for tokens, tile_rows in ((9, 128), (40, 16), (33, rows)):
                x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32) * 3
                out = cp.full((tokens + 1, rows), cp.nan, cp.float32)
                prefill(K, "int4", codes, dscales, x, out, rows, cols, group, tokens, tile_rows)
                ref = x.astype(np.float64) @ ref_w.T
                check(f"int4 g{group} prefill {tokens} tokens {rows}x{cols}, tiles of {tile_rows} rows", out[:tokens],
                      ref, 2e-5)
                untouched(f"int4 prefill {rows}x{cols}", out[tokens])
            ids = np.array([rows - 1, 0, rows // 2, 3 % rows], np.int32)
            out = cp.full((len(ids) + 1, cols), cp.nan, cp.float32)
            K["kiln_int4_gather_rows"]((len(ids),), (256,), (codes, dscales, cp.asarray(ids), out, i32(cols),
                                                             i32(codes.shape[1]), i32(scales.shape[1]), i32(group)))
            check(f"int4 g{group} gather rows {rows}x{cols}", out[:len(ids)], ref_w[ids], 1e-7)
            untouched("int4 gather rows", out[len(ids)])


# ---- timing ---------------------------------------------------------------------------------------------------------

SHAPES = [(1536, 1536), (256, 1536), (8960, 1536), (1536, 8960), (151936, 1536)]


def graph_ms(launch, count):
    """Milliseconds per launch of `count` launches back to back (launch(i) issues the i-th), replayed as one graph."""
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        for i in range(count):
            launch(i)
        stream.synchronize()
        stream.begin_capture()
        for i in range(count):
            launch(i)
        graph = stream.end_capture()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        times = []
        for i in range(13):
            start.record(stream)
            graph.launch(stream)
            end.record(stream)
            end.synchronize()
            if i >= 3:
                times.append(cp.cuda.get_elapsed_time(start, end))
    return float(np.median(times)) / count


def median_ms(fn, repeats=30):
    start, end = cp.cuda.Event(), cp.cuda.Event()
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end))
    return float(np.median(times))


def random_int8(rows, cols):
    codes = cp.random.randint(-127, 128, size=(rows, round_up(cols, 16)), dtype=cp.int32).astype(cp.int8)
    return codes, cp.random.uniform(1e-3, 2e-3, rows, dtype=cp.float32)


def random_int4(rows, cols, group):
    codes = cp.random.randint(0, 256, size=(rows, round_up(cols, 32) // 2), dtype=cp.int32).astype(cp.uint8)
    return codes, cp.random.uniform(1e-3, 2e-3, (rows, (cols + group - 1) // group), dtype=cp.float32)


def copy_bandwidth():
    n = 1 << 30
    a, b = cp.empty(n, cp.uint8), cp.empty(n, cp.uint8)
    a.fill(1)
    ms = median_ms(lambda: b.data.copy_from_device(a.data, n), 10)
    return 2 * n / (ms / 1e3)


def timing(modules=None, token_counts=(1, 2, 4, 8)):
    modules = modules or {"": K}
    bw = copy_bandwidth()
    print(f"device-to-device copy: {bw / 1e9:.0f} GB/s (read + write)")
    group = 128
    print("GEMV launched back to back in a CUDA graph, over weight copies totalling >= 256 MB (no L2 reuse); "
          "time per launch and GB/s of weight bytes; * = the kernel the Java side chooses (split or row groups)")
    for label, KK in modules.items():
        for rows, cols in SHAPES:
            for fmt in ("int8", "int4"):
                one = random_int8(rows, cols) if fmt == "int8" else random_int4(rows, cols, group)
                nbytes = one[0].nbytes + one[1].nbytes
                count = min(512, max(8, -(-(256 << 20) // nbytes)))
                copies = [one] + [random_int8(rows, cols) if fmt == "int8" else random_int4(rows, cols, group)
                                  for _ in range(count - 1)]
                cp.cuda.Device().synchronize()  # the random fills run on another stream than the timed graphs
                line = []
                for tokens, split in [(t, k) for t in token_counts for k in ((None,) if label else (False, True))]:
                    x = cp.asarray(rng.uniform(-1, 1, (tokens, cols)).astype(np.float32))
                    out = cp.empty((tokens, rows), cp.float32)

                    def launch(i):
                        c, s = copies[i]
                        if fmt == "int8":
                            int8_gemv(KK, c, s, x, out, rows, cols, tokens, split)
                        else:
                            int4_gemv(KK, c, s, x, out, rows, cols, group, tokens, split)

                    ms = graph_ms(launch, count)
                    chosen = "*" if split is not None and split == splits(rows, tokens) else " "
                    kind = "" if split is None else ("split" if split else "rows ") + chosen
                    line.append(f"{kind}t{tokens} {ms * 1e3:6.1f} us {nbytes / (ms / 1e3) / 1e9:5.0f} GB/s")
                print(f"  {label}{fmt:5s} {rows:6d} x {cols:5d} ({nbytes / 1e6:6.1f} MB): " + " | ".join(line))
                del copies


def decode_step(modules=None):
    """The GEMVs of one batch-1 decode step of the 1.5B shape (28 layers + lm_head), replayed as one CUDA graph."""
    for label, KK in (modules or {"": K}).items():
        decode_step_with(label, KK)


def decode_step_with(label, KK):
    H, I, L, V = 1536, 8960, 28, 151936
    per_layer = [(1536, H), (256, H), (256, H), (H, 1536), (I, H), (I, H), (H, I)]
    for fmt in ("int8", "int4"):
        mats = [[(random_int8(r, c) if fmt == "int8" else random_int4(r, c, 128)) + (r, c) for (r, c) in per_layer]
                for _ in range(L)]
        head = (random_int8(V, H) if fmt == "int8" else random_int4(V, H, 128)) + (V, H)
        total = sum(m[0].nbytes + m[1].nbytes for layer in mats for m in layer) + head[0].nbytes + head[1].nbytes
        xs = cp.asarray(rng.uniform(-1, 1, max(H, I)).astype(np.float32))
        out = cp.empty(V, cp.float32)
        cp.cuda.Device().synchronize()

        def step():
            for layer in mats:
                for c, s, r, k in layer:
                    if fmt == "int8":
                        int8_gemv(KK, c, s, xs, out, r, k, 1)
                    else:
                        int4_gemv(KK, c, s, xs, out, r, k, 128, 1)
            c, s, r, k = head
            if fmt == "int8":
                int8_gemv(KK, c, s, xs, out, r, k, 1)
            else:
                int4_gemv(KK, c, s, xs, out, r, k, 128, 1)

        stream = cp.cuda.Stream(non_blocking=True)
        with stream:
            step()
            stream.synchronize()
            stream.begin_capture()
            step()
            graph = stream.end_capture()
            start, end = cp.cuda.Event(), cp.cuda.Event()
            times = []
            for i in range(23):
                start.record(stream)
                graph.launch(stream)
                end.record(stream)
                end.synchronize()
                if i >= 3:
                    times.append(cp.cuda.get_elapsed_time(start, end))
        ms = float(np.median(times))
        print(f"{label}{fmt} decode-step GEMVs (1.5B shape, {total / 1e9:.3f} GB of weights), one CUDA graph: {ms:.3f} ms "
              f"= {total / (ms / 1e3) / 1e9:.0f} GB/s; weights alone bound {1e3 / ms:.0f} tok/s")
        del mats, head


def variants():
    modules = {}
    for in_flight in VARIANT_BYTES_IN_FLIGHT:
        m = load(arch, (f"-DQUANT_BYTES_IN_FLIGHT={in_flight}",), f"variant-{in_flight}")
        modules[f"{in_flight} B in flight "] = {n: m.get_function(n) for n in NAMES}
    timing(modules, (1, 8))
    decode_step(modules)


for s in (int8_checks, int4_checks, timing, decode_step) + ((variants,) if VARIANTS else ()):
    section(s)
print("FAILURES: " + ", ".join(failures) if failures else "ALL QUANT KERNEL CHECKS PASSED")
