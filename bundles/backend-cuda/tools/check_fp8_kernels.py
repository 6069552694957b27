"""Checks the kernels of the FP8 block format (fp8) on a CUDA machine without Java, and times their GEMVs.

Compiles src/main/resources/dev/kiln/backend/cuda/internal/quant_kernels.cu (where the FP8 kernels live, next to the
integer formats') with NVRTC and the options the Java side uses, packs e4m3 codes and block scales in the layout the
Java side uploads (rows padded to 16 bytes with code 0; one f32 scale per block, row-major over the blocks), and runs
every FP8 kernel on random inputs against float64 NumPy products with the dequantized weights (inputs freshly drawn,
outputs poisoned with NaN first, rows past the output checked untouched): the token-specialised GEMVs for 1..8 tokens
(split and not), the any-shape GEMV (widths not a multiple of 16, blocks not 16 << k columns wide), the prefill path
exactly as the Java side calls it (weights dequantized into bf16 high and low tiles of a few rows, activations split
into bf16 high and low parts, three cuBLAS GEMMs accumulating in f32), the row gathers (bit for bit against code * scale
in f32, every code value present), and NaN codes (their rows NaN, the others untouched). Weights are both quantized by
the Java side's rule (block amax / 448, nearest e4m3, ties to even) and random codes of every value. Then times the FP8
GEMVs on the DeepSeek-R1-Distill-Qwen-1.5B shapes (to set beside INT8's) and on DeepSeek-V3's, with GB/s of weight
bytes, and the GEMVs of one whole batch-1 decode step of the 1.5B shape replayed as a CUDA graph.

Needs CuPy and NumPy. Usage: python3 check_fp8_kernels.py [path/to/quant_kernels.cu]
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
GEMV_THREADS = 128  # QuantKernels.GEMV_THREADS
WARPS = GEMV_THREADS // 32
GENERIC_THREADS = 256
STEP = 16  # QuantKernels.STEP
failures = []
i32, i64, f32 = np.int32, np.int64, np.float32


def compile_cubin(source, arch):
    return kiln_nvrtc.compile_cubin(source, arch, "quant_kernels.cu")


def load(arch):
    path = "/tmp/kiln-fp8-kernels.cubin"
    with open(path, "wb") as f:
        f.write(compile_cubin(open(SOURCE).read(), arch))
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


def check_bits(name, actual, expected):
    """Bit-identical float32 values (NaN where NaN)."""
    a = cp.asnumpy(actual).astype(np.float32)
    e = np.asarray(expected, np.float32)
    same = (a.view(np.uint32) == e.view(np.uint32)) | (np.isnan(a) & np.isnan(e))
    ok = bool(np.all(same))
    print(f"{'PASS' if ok else 'FAIL'} {name}: {int(np.sum(~same))} of {a.size} values differ from code * scale in f32")
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


def blocks(n, b):
    return (n + b - 1) // b


# ---- the format, as the Java side reads, quantizes and packs it -----------------------------------------------------

def e4m3_table():
    """The value of every code (E4M3FN: bias 7, subnormals below 2^-6, NaN at S.1111.111, no infinities)."""
    values = np.zeros(256, np.float64)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        e, m = (code >> 3) & 0xF, code & 0x7
        if e == 0xF and m == 0x7:
            values[code] = np.nan
        elif e == 0:
            values[code] = sign * m * 2.0 ** -9
        else:
            values[code] = sign * (1 + m / 8) * 2.0 ** (e - 7)
    return values.astype(np.float32)


E4M3 = e4m3_table()
POSITIVE = E4M3[:0x7F]  # codes 0..0x7E, increasing


def to_e4m3(v):
    """Nearest code of float32 values, ties to the even code, saturating at +-448, NaN to 0x7F (Java: E4m3.fromFloat)."""
    v = np.asarray(v, np.float32)
    mag = np.abs(v)
    low = np.clip(np.searchsorted(POSITIVE, mag, side="right") - 1, 0, 0x7D)
    below = (mag - POSITIVE[low]).astype(np.float32)
    above = (POSITIVE[low + 1] - mag).astype(np.float32)
    code = np.where(below < above, low, np.where(above < below, low + 1, np.where(low % 2 == 0, low, low + 1)))
    code = np.where(mag >= np.float32(448), 0x7E, code)
    code = code | np.where(np.signbit(v), 0x80, 0)
    return np.where(np.isnan(v), 0x7F, code).astype(np.uint8)


def quantize_fp8(w, block_rows=128, block_cols=128):
    """Per block: scale = amax / 448 in f32 (1 for zeros), code = nearest e4m3 of w / scale in f32 (Java: Fp8Blocks)."""
    rows, cols = w.shape
    codes = np.zeros((rows, cols), np.uint8)
    scales = np.zeros((blocks(rows, block_rows), blocks(cols, block_cols)), np.float32)
    for rb in range(scales.shape[0]):
        for cb in range(scales.shape[1]):
            r, c = slice(rb * block_rows, (rb + 1) * block_rows), slice(cb * block_cols, (cb + 1) * block_cols)
            amax = np.float32(np.max(np.abs(w[r, c])))
            scale = np.float32(amax / np.float32(448)) if amax > 0 else np.float32(1)
            scales[rb, cb] = scale
            codes[r, c] = to_e4m3((w[r, c] / scale).astype(np.float32))
    return codes, scales


def random_codes(rows, cols, nan_rows=()):
    """Every finite code once in order, then random finite codes; a NaN code in each of nan_rows."""
    flat = np.concatenate([np.arange(256), rng.integers(0, 256, max(0, rows * cols - 256))])[:rows * cols]
    flat = np.where((flat & 0x7F) == 0x7F, flat & 0xFE, flat).astype(np.uint8)
    codes = flat.reshape(rows, cols)
    for i, r in enumerate(nan_rows):
        codes[r, (17 + 50 * i) % cols] = 0x7F if i % 2 == 0 else 0xFF
    return codes


def random_scales(rows, cols, block_rows, block_cols):
    """Realistic block scales: 2^-12 .. 2^-6 times 0.5 .. 1.5."""
    shape = (blocks(rows, block_rows), blocks(cols, block_cols))
    return (2.0 ** rng.integers(-12, -5, shape) * rng.uniform(0.5, 1.5, shape)).astype(np.float32)


def pack(codes):
    rows, cols = codes.shape
    packed = np.zeros((rows, round_up(cols, 16)), np.uint8)
    packed[:, :cols] = codes
    return packed


def dequantized32(codes, scales, block_rows, block_cols):
    """code * scale in f32, as the CPU bundle's gatherRows and the device's gather compute it."""
    rows, cols = codes.shape
    s = np.repeat(np.repeat(scales, block_rows, axis=0), block_cols, axis=1)[:rows, :cols]
    return (E4M3[codes] * s).astype(np.float32)


# ---- launches as the Java side makes them ---------------------------------------------------------------------------

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


def step_aligned(block_cols):
    """QuantKernels.stepAlignedBlocks: whole 16-column steps, a power of two of them."""
    return block_cols % STEP == 0 and ((block_cols // STEP) & (block_cols // STEP - 1)) == 0


def vectorized(cols, block_cols):
    return cols % STEP == 0 and step_aligned(block_cols)


def fp8_gemv(K, codes, scales, x, out, rows, cols, block_rows, block_cols, tokens, split=None):
    """QuantKernels.fp8Gemv."""
    stride = codes.shape[1]
    column_blocks = blocks(cols, block_cols)
    if vectorized(cols, block_cols):
        split = splits(rows, tokens, split)
        shift = int(np.log2(block_cols // STEP))
        K[f"kiln_fp8_gemv_{'split_' if split else ''}t{tokens}"](
            gemv_blocks(rows, tokens, split), (GEMV_THREADS,),
            (codes, scales, x, out, i32(rows), i32(cols), i32(stride), i32(block_rows), i32(column_blocks), i32(shift)))
    else:
        warps = GENERIC_THREADS // 32
        K["kiln_fp8_gemv"](((rows + warps - 1) // warps,), (GENERIC_THREADS,),
                           (codes, scales, x, out, i32(rows), i32(cols), i32(stride), i32(block_rows), i32(block_cols),
                            i32(column_blocks), i32(tokens)))


def gemm(handle, rows, tokens, cols, w_ptr, x_ptr, accumulate, out_ptr, ldc):
    """The Java side's GEMM: out (col-major rows x T, ld ldc) = W^T . x, bf16 operands, f32 accumulation."""
    one, zero = np.array([1.0], np.float32), np.array([0.0], np.float32)
    cublas.gemmEx(handle, 1, 0, rows, tokens, cols, one.ctypes.data, w_ptr, 14, cols, x_ptr, 14, cols,
                  (one if accumulate else zero).ctypes.data, out_ptr, 0, ldc, 68, -1)


def prefill(K, codes, scales, x, out, rows, cols, block_rows, block_cols, tokens, tile_rows):
    """Fp8Weight.multiply above 8 tokens: x split into bf16 hi + lo, the weight dequantized and split tile by tile."""
    handle = cp.cuda.Device().cublas_handle
    x_hi = cp.asarray(bf16_bits(x))
    x_lo = cp.asarray(bf16_bits(x - bf16_value(bf16_bits(x))))
    tile_hi = cp.zeros(tile_rows * cols, cp.uint16)
    tile_lo = cp.zeros(tile_rows * cols, cp.uint16)
    stride = codes.shape[1]
    column_blocks = blocks(cols, block_cols)
    for first in range(0, rows, tile_rows):
        n = min(tile_rows, rows - first)
        grid = (min(1 << 20, (cols + 255) // 256), n)
        out_ptr = out.data.ptr + 4 * first
        K["kiln_fp8_dequantize_split"](grid, (256,), (np.uint64(codes.data.ptr + first * stride), scales, i32(first),
                                                     i32(stride), i32(cols), i32(block_rows), i32(block_cols),
                                                     i32(column_blocks), tile_hi, tile_lo))
        gemm(handle, n, tokens, cols, tile_hi.data.ptr, x_hi.data.ptr, False, out_ptr, rows)
        gemm(handle, n, tokens, cols, tile_hi.data.ptr, x_lo.data.ptr, True, out_ptr, rows)
        gemm(handle, n, tokens, cols, tile_lo.data.ptr, x_hi.data.ptr, True, out_ptr, rows)


def gather(K, codes, scales, ids, out, cols, block_rows, block_cols):
    K["kiln_fp8_gather_rows"]((len(ids),), (256,), (codes, scales, cp.asarray(ids), out, i32(cols), i32(codes.shape[1]),
                                                    i32(block_rows), i32(block_cols), i32(blocks(cols, block_cols))))


# ---- checks ---------------------------------------------------------------------------------------------------------

rng = np.random.default_rng(19)
props = cp.cuda.runtime.getDeviceProperties(0)
major, minor = props["major"], props["minor"]
arch = f"sm_{major}{minor}" + ("a" if (major, minor) == (9, 0) else "")
SMS = props["multiProcessorCount"]
print(f"device {props['name'].decode()} cc {major}.{minor}, {SMS} SMs -> {arch}")
mod = load(arch)
NAMES = ["kiln_fp8_gemv", "kiln_fp8_dequantize_split", "kiln_fp8_gather_rows"] + \
        [f"kiln_fp8_gemv_{k}t{t}" for k in ("", "split_") for t in range(1, 9)]
K = {n: mod.get_function(n) for n in NAMES}


def weights(rows, cols):
    # Rows of different magnitudes, one row of zeros (a block of it gets scale 1 when the block is that row alone).
    w = rng.standard_normal((rows, cols)).astype(np.float32) * rng.uniform(0.01, 2, (rows, 1)).astype(np.float32)
    w[rows // 2] = 0
    return w


def products(label, codes, scales, rows, cols, block_rows, block_cols, nan_rows=()):
    """GEMVs for 1..8 tokens (both kernels where the fast path applies), prefills, gathers of every row."""
    ref_w = dequantized32(codes, scales, block_rows, block_cols).astype(np.float64)
    finite = np.setdiff1d(np.arange(rows), nan_rows)
    dcodes, dscales = cp.asarray(pack(codes)), cp.asarray(scales)

    def compare(name, out, x, tokens):
        got = cp.asnumpy(out[:tokens])
        ref = x.astype(np.float64) @ ref_w[finite].T
        check(name, got[:, finite], ref, 1e-6 * np.sqrt(cols) if tokens <= 8 else 2e-5)
        if len(nan_rows) and not np.all(np.isnan(got[:, list(nan_rows)])):
            print(f"FAIL {name}: a row with a NaN code is not NaN")
            failures.append(name + " NaN rows")
        untouched(name, out[tokens])

    fast = vectorized(cols, block_cols)
    for tokens, split in [(t, k) for t in range(1, 9) for k in ((False, True) if fast else (None,))]:
        x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32)
        out = cp.full((tokens + 1, rows), cp.nan, cp.float32)
        fp8_gemv(K, dcodes, dscales, cp.asarray(x), out, rows, cols, block_rows, block_cols, tokens, split=split)
        kind = f"{'split ' if split else ''}t{tokens}" if fast else f"any-shape {tokens}"
        compare(f"fp8 {label} gemv {kind} {rows}x{cols} blocks {block_rows}x{block_cols}", out, x, tokens)
    for tokens, tile_rows in ((9, 128), (40, 16), (33, rows)):
        x = rng.uniform(-1, 1, (tokens, cols)).astype(np.float32) * 3
        out = cp.full((tokens + 1, rows), cp.nan, cp.float32)
        prefill(K, dcodes, dscales, x, out, rows, cols, block_rows, block_cols, tokens, tile_rows)
        compare(f"fp8 {label} prefill {tokens} tokens {rows}x{cols} blocks {block_rows}x{block_cols}, tiles of "
                f"{tile_rows} rows", out, x, tokens)
    ids = np.concatenate([np.arange(rows), [rows - 1, 0]]).astype(np.int32)
    out = cp.full((len(ids) + 1, cols), cp.nan, cp.float32)
    gather(K, dcodes, dscales, ids, out, cols, block_rows, block_cols)
    check_bits(f"fp8 {label} gather rows {rows}x{cols} blocks {block_rows}x{block_cols}", out[:len(ids)],
               dequantized32(codes, scales, block_rows, block_cols)[ids])
    untouched("fp8 gather rows", out[len(ids)])


def quantized_checks():
    # 1552 = 12 x 128 + 16 and 272 = 2 x 128 + 16: last column blocks of one step; 301 and 130 rows: last row blocks
    # partial; 100 and 77: the any-shape GEMV; 1536 rows: split kernels on an H100, 4500: row groups.
    for rows, cols in ((301, 1552), (130, 272), (37, 208), (1536, 336), (4500, 48), (45, 16), (301, 100), (29, 77)):
        codes, scales = quantize_fp8(weights(rows, cols))
        products("quantized", codes, scales, rows, cols, 128, 128)


def stored_checks():
    # Random codes of every value; DeepSeek's blocks and others: 64 x 32 (step-aligned), 100 x 48 (three steps: the
    # any-shape GEMV), 7 x 40 (row blocks smaller than a warp's rows).
    for block_rows, block_cols in ((128, 128), (64, 32), (100, 48), (7, 40)):
        for rows, cols in ((301, 1552), (130, 272), (29, 77)):
            codes = random_codes(rows, cols)
            products("stored", codes, random_scales(rows, cols, block_rows, block_cols), rows, cols, block_rows,
                     block_cols)


def nan_checks():
    for rows, cols in ((40, 160), (40, 77)):
        codes = random_codes(rows, cols, nan_rows=(5, 9))
        products("NaN codes", codes, random_scales(rows, cols, 128, 128), rows, cols, 128, 128, nan_rows=(5, 9))


# ---- timing ---------------------------------------------------------------------------------------------------------

QWEN_SHAPES = [(1536, 1536), (256, 1536), (8960, 1536), (1536, 8960), (151936, 1536)]
# DeepSeek-V3: q_a, kv_a, q_b, o, an expert's gate/up and down, a dense layer's gate/up.
DEEPSEEK_SHAPES = [(1536, 7168), (576, 7168), (24576, 1536), (7168, 16384), (2048, 7168), (7168, 2048), (18432, 7168)]


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


def random_fp8(rows, cols):
    """Finite codes (NaN codes replaced) and 128 x 128 block scales, on the device."""
    codes = cp.random.randint(0, 256, size=(rows, round_up(cols, 16)), dtype=cp.int32).astype(cp.uint8)
    codes = cp.where((codes & 0x7F) == 0x7F, codes & 0xFE, codes).astype(cp.uint8)
    return codes, cp.random.uniform(1e-4, 2e-3, (blocks(rows, 128), blocks(cols, 128)), dtype=cp.float32)


def copy_bandwidth():
    n = 1 << 30
    a, b = cp.empty(n, cp.uint8), cp.empty(n, cp.uint8)
    a.fill(1)
    ms = median_ms(lambda: b.data.copy_from_device(a.data, n), 10)
    return 2 * n / (ms / 1e3)


def timing(token_counts=(1, 2, 4, 8)):
    bw = copy_bandwidth()
    print(f"device-to-device copy: {bw / 1e9:.0f} GB/s (read + write)")
    print("FP8 GEMV launched back to back in a CUDA graph, over weight copies totalling >= 256 MB (no L2 reuse); "
          "time per launch and GB/s of weight bytes (codes + scales); * = the kernel the Java side chooses")
    for label, shapes in (("1.5B", QWEN_SHAPES), ("V3", DEEPSEEK_SHAPES)):
        for rows, cols in shapes:
            one = random_fp8(rows, cols)
            nbytes = one[0].nbytes + one[1].nbytes
            count = min(512, max(8, -(-(256 << 20) // nbytes)))
            copies = [one] + [random_fp8(rows, cols) for _ in range(count - 1)]
            cp.cuda.Device().synchronize()  # the random fills run on another stream than the timed graphs
            line = []
            for tokens, split in [(t, k) for t in token_counts for k in (False, True)]:
                x = cp.asarray(rng.uniform(-1, 1, (tokens, cols)).astype(np.float32))
                out = cp.empty((tokens, rows), cp.float32)

                def launch(i):
                    c, s = copies[i]
                    fp8_gemv(K, c, s, x, out, rows, cols, 128, 128, tokens, split)

                ms = graph_ms(launch, count)
                chosen = "*" if split == splits(rows, tokens) else " "
                line.append(f"{'split' if split else 'rows '}{chosen}t{tokens} {ms * 1e3:6.1f} us "
                            f"{nbytes / (ms / 1e3) / 1e9:5.0f} GB/s")
            print(f"  {label:4s} {rows:6d} x {cols:5d} ({nbytes / 1e6:6.1f} MB): " + " | ".join(line))
            del copies


def decode_step():
    """The GEMVs of one batch-1 decode step of the 1.5B shape (28 layers + lm_head) in FP8, replayed as one graph."""
    H, I, L, V = 1536, 8960, 28, 151936
    per_layer = [(1536, H), (256, H), (256, H), (H, 1536), (I, H), (I, H), (H, I)]
    mats = [[random_fp8(r, c) + (r, c) for (r, c) in per_layer] for _ in range(L)]
    head = random_fp8(V, H) + (V, H)
    total = sum(m[0].nbytes + m[1].nbytes for layer in mats for m in layer) + head[0].nbytes + head[1].nbytes
    xs = cp.asarray(rng.uniform(-1, 1, max(H, I)).astype(np.float32))
    out = cp.empty(V, cp.float32)
    cp.cuda.Device().synchronize()

    def step():
        for layer in mats + [[head]]:
            for c, s, r, k in layer:
                fp8_gemv(K, c, s, xs, out, r, k, 128, 128, 1)

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
    print(f"fp8 decode-step GEMVs (1.5B shape, {total / 1e9:.3f} GB of weights), one CUDA graph: {ms:.3f} ms "
          f"= {total / (ms / 1e3) / 1e9:.0f} GB/s; weights alone bound {1e3 / ms:.0f} tok/s")


for s in (quantized_checks, stored_checks, nan_checks, timing, decode_step):
    section(s)
print("FAILURES: " + ", ".join(failures) if failures else "ALL FP8 KERNEL CHECKS PASSED")
