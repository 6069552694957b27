// Kiln's kernels of the quantized weight formats (weight_only_int8, weight_only_int4, fp8), a second module next to
// kernels.cu: compiled by NVRTC with the same options when the first quantized weight is loaded, so a model without
// one never compiles them. No headers, as in kernels.cu, and no flush-to-zero (the FP8 decoding relies on f32
// subnormals, see e4m3_top_byte).
//
// Layouts, written by dev.kiln.backend.cuda.quant (every row starts 16-byte aligned):
//  - INT8: codes int8 [rows][stride], stride = columns rounded up to 16 (zero padding), one f32 scale per row:
//          W[r][c] = codes[r][c] * scales[r].
//  - INT4: codes [rows][strideBytes], strideBytes = columns rounded up to 32, halved; byte j of a row holds column 2j
//          in its low nibble and column 2j + 1 in its high nibble, each as u = q + 8 (0..15); one f32 scale per row
//          and group of groupSize consecutive columns (the last group of a row may be partial), scales [rows][groups]:
//          W[r][c] = (u[r][c] - 8) * scales[r][c / groupSize].
//  - FP8:  e4m3 codes (OCP E4M3FN: 1 sign, 4 exponent bits of bias 7, 3 mantissa bits, NaN at S.1111.111, no
//          infinities) [rows][stride], stride = columns rounded up to 16 (zero padding: code 0 is +0); one f32 scale
//          per block of blockRows x blockColumns elements (edge blocks partial), scales [rowBlocks][columnBlocks]:
//          W[r][c] = e4m3(codes[r][c]) * scales[r / blockRows][c / blockColumns] (DeepSeek-V3's weight and
//          weight_scale_inv, read as stored, or quantized on load by the same rule).
// Activations are f32 [tokens][columns], products f32 [tokens][rows], as in kernels.cu.

// Compiled as several programs in parallel, each emitting one unit's entry points (see kernels.cu): 0 the any-shape
// GEMVs, prefill dequantization and row gathers; 1 and 2 the integer formats' token-specialised GEMVs; 3 FP8's.
#ifdef KILN_UNIT
#define KILN_IN_UNIT(u) (KILN_UNIT == (u))
#else
#define KILN_IN_UNIT(u) 1
#endif

typedef unsigned short bf16_t;

// Programmatic dependent launch, as in kernels.cu (this module is compiled on its own, hence the copy): every kernel
// here may start before the one ahead of it on the stream has finished, so each waits here before it touches any
// activation; no pointer is __restrict__ (the compiler may hoist such loads above it). Each lets the kernel behind it
// start before its own wait, except the row gathers that start a forward (see kernels.cu's
// wait_then_release_next_kernel for why those wait first).
// The token-specialised GEMVs wait after issuing their first round of weight loads (weights depend on nothing
// computed) and read activations with plain loads, never __ldg, which the compiler may treat as invariant and hoist.
__device__ __forceinline__ void wait_for_previous_kernel() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_then_release_next_kernel() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Tokens up to which a product streams the weight once (Java: QuantKernels.GEMV_MAX_TOKENS).
#define QUANT_MAX_TOKENS 8
// Columns per lane step: 16 bytes of INT8 codes or 8 of INT4. 16 divides every model width, and rows of 1536 columns
// (the 1.5B model's hidden size) are then 96 steps, three per lane, with no lane idle.
#define QUANT_STEP 16
// Threads per block of the token-specialised GEMV (Java: QuantKernels.GEMV_THREADS).
#define QUANT_GEMV_THREADS 128
#define QUANT_GEMV_WARPS (QUANT_GEMV_THREADS / 32)
// Weight bytes each lane has in flight: a round of loads (ROWS rows x UNROLL steps, at least one step) is issued
// before the first is used. On an H100 the GEMVs of a 1.5B decode step took 1.05 ms (INT8) and 0.93 ms (INT4) with
// 64 bytes, 1.12 / 0.96 ms with 128 and 1.18 / 1.32 ms with 256: more loads per lane cost more registers, hence fewer
// warps, for no more bytes in flight per SM (tools/check_quant_kernels.py --variants overrides it).
#ifndef QUANT_BYTES_IN_FLIGHT
#define QUANT_BYTES_IN_FLIGHT 64
#endif

// Weight rows per warp in the token-specialised GEMV (Java: QuantKernels.rowsPerWarp): each activation value loaded
// is used for this many rows, so the activations read from L1 stay below the weight bytes read from HBM (an INT4 byte
// holds two weights; a one-row warp would read 16 bytes of activations per token for each byte of weights). From 4
// tokens on, the multiply-adds per weight dominate and 8 rows halve the activation loads per multiply-add; a split
// row group keeps 4 rows (it exists for matrices of few rows).
template <int TOKENS, int SPLIT>
struct GemvShape {
    static constexpr int ROWS = SPLIT == 1 && TOKENS >= 4 ? 8 : 4;
};

// 2^23 + 8 and 2^23 + 128: subtracted from 2^23 + byte, see byte_as_float.
#define INT4_BIAS 8388616.0f
#define INT8_BIAS 8388736.0f

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Round to nearest even, NaN stays NaN (as in kernels.cu).
__device__ __forceinline__ bf16_t float_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t) ((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t) (u >> 16);
}

__device__ __forceinline__ float bf16_to_float(bf16_t v) {
    return __uint_as_float(((unsigned int) v) << 16);
}

// Byte k of a word as the float 2^23 + byte: one byte permutation places it under the exponent of 2^23, where the
// mantissa's last bits count units. Subtracting 2^23 + bias then gives byte - bias exactly, two instructions per
// weight instead of a conversion on the slow multi-function unit.
template <int K>
__device__ __forceinline__ float byte_as_float(unsigned int word) {
    return __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u + K));
}

// Four INT8 codes (little-endian bytes of one word, first column lowest) as floats. Flipping the sign bits turns
// each signed byte q into the unsigned q + 128.
__device__ __forceinline__ void int8_codes(unsigned int word, float* w) {
    unsigned int u = word ^ 0x80808080u;
    w[0] = byte_as_float<0>(u) - INT8_BIAS;
    w[1] = byte_as_float<1>(u) - INT8_BIAS;
    w[2] = byte_as_float<2>(u) - INT8_BIAS;
    w[3] = byte_as_float<3>(u) - INT8_BIAS;
}

// Eight INT4 codes (one word: byte j holds columns 2j and 2j + 1) as the floats u - 8.
__device__ __forceinline__ void int4_codes(unsigned int word, float* w) {
    unsigned int even = word & 0x0F0F0F0Fu, odd = (word >> 4) & 0x0F0F0F0Fu;
    w[0] = byte_as_float<0>(even) - INT4_BIAS;
    w[1] = byte_as_float<0>(odd) - INT4_BIAS;
    w[2] = byte_as_float<1>(even) - INT4_BIAS;
    w[3] = byte_as_float<1>(odd) - INT4_BIAS;
    w[4] = byte_as_float<2>(even) - INT4_BIAS;
    w[5] = byte_as_float<2>(odd) - INT4_BIAS;
    w[6] = byte_as_float<3>(even) - INT4_BIAS;
    w[7] = byte_as_float<3>(odd) - INT4_BIAS;
}

template <int Q>
__device__ __forceinline__ unsigned int word_of(const uint4& v) {
    return Q == 0 ? v.x : Q == 1 ? v.y : Q == 2 ? v.z : v.w;
}

template <int Q>
__device__ __forceinline__ unsigned int word_of(const uint2& v) {
    return Q == 0 ? v.x : v.y;
}

// ---- token-specialised GEMV (1..8 tokens, columns % 16 == 0, x 16-byte aligned) -----------------------------------

// Which ROWS rows a warp computes, and which of their 16-column steps: without splitting, every warp of a block
// has rows of its own and its lanes take steps lane, lane + 32, ...; split, all the block's warps take the same rows
// and interleave their steps (warp w's lanes start at 32 w), so that a few long rows still spread over every SM.
template <int ROWS, int SPLIT>
struct RowShare {
    int row0, first, stride;
    __device__ __forceinline__ RowShare() {
        int warp = threadIdx.x >> 5;
        row0 = (blockIdx.x * (QUANT_GEMV_WARPS / SPLIT) + warp / SPLIT) * ROWS;
        first = (warp % SPLIT) * 32 + (threadIdx.x & 31);
        stride = 32 * SPLIT;
    }
};

// Sums each accumulator over the warp (and, split, over the block's warps) and stores out[t][row0 + r], times the
// row's scale when there is one.
template <int ROWS, int TOKENS, int SPLIT>
__device__ __forceinline__ void store_rows(float (&acc)[ROWS][TOKENS], int row0, int rows, float* out,
                                           const float* rowScales) {
    static_assert(SPLIT == 1 || SPLIT == QUANT_GEMV_WARPS, "a split covers the whole block");
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[r][t] = warp_sum(acc[r][t]);
    }
    if constexpr (SPLIT > 1) {
        __shared__ float partial[SPLIT][ROWS][TOKENS];
        int warp = threadIdx.x >> 5;
        if ((threadIdx.x & 31) == 0) {
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
#pragma unroll
                for (int t = 0; t < TOKENS; t++) partial[warp][r][t] = acc[r][t];
            }
        }
        __syncthreads();
        if (warp != 0) return;
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
#pragma unroll
            for (int t = 0; t < TOKENS; t++) {
                float v = partial[0][r][t];
#pragma unroll
                for (int w = 1; w < SPLIT; w++) v += partial[w][r][t];
                acc[r][t] = v;
            }
        }
    }
    if ((threadIdx.x & 31) == 0) {
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            if (row0 + r < rows) {
                float scale = rowScales == nullptr ? 1.0f : rowScales[row0 + r];
#pragma unroll
                for (int t = 0; t < TOKENS; t++) out[(long long) t * rows + row0 + r] = acc[r][t] * scale;
            }
        }
    }
}

// out[t][r] = sum_c x[t][c] * W[r][c]: each warp computes ROWS consecutive rows for all TOKENS tokens, so the
// weight is read from memory exactly once. Codes become floats in registers; sums are f32; the row scale is applied
// to the sum. Rows past the end repeat the last row (valid loads, results dropped). A split group of rows is the
// whole block's, so its early return is uniform over the block.
template <int TOKENS, int SPLIT>
__device__ __forceinline__ void int8_gemv_tokens(const signed char* codes, const float* scales,
                                                 const float* x, float* out, int rows,
                                                 int columns, int stride) {
    constexpr int ROWS = GemvShape<TOKENS, SPLIT>::ROWS;
    constexpr int UNROLL = QUANT_BYTES_IN_FLIGHT / (16 * ROWS) > 0 ? QUANT_BYTES_IN_FLIGHT / (16 * ROWS) : 1;
    RowShare<ROWS, SPLIT> share;
    int row0 = share.row0;
    if (row0 >= rows) return;
    int steps = columns / QUANT_STEP;
    const uint4* w[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        w[r] = reinterpret_cast<const uint4*>(codes + (long long) min(row0 + r, rows - 1) * stride);
    }
    float acc[ROWS][TOKENS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[r][t] = 0.0f;
    }
    for (int base = share.first; base < steps; base += share.stride * UNROLL) {
        uint4 packed[UNROLL][ROWS];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int s = base + share.stride * u;
#pragma unroll
            for (int r = 0; r < ROWS; r++) packed[u][r] = s < steps ? __ldg(w[r] + s) : make_uint4(0u, 0u, 0u, 0u);
        }
        // Weights depend on nothing computed: the first round is in flight before waiting for the kernel ahead.
        if (base == share.first) wait_for_previous_kernel();
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int s = base + share.stride * u;
            if (s < steps) {
                const float* xs = x + s * QUANT_STEP;
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    float wf[ROWS][4];
#pragma unroll
                    for (int r = 0; r < ROWS; r++) {
                        unsigned int word = q == 0 ? word_of<0>(packed[u][r]) : q == 1 ? word_of<1>(packed[u][r])
                                          : q == 2 ? word_of<2>(packed[u][r]) : word_of<3>(packed[u][r]);
                        int8_codes(word, wf[r]);
                    }
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) {
                        float4 a = reinterpret_cast<const float4*>(xs + (long long) t * columns)[q];
#pragma unroll
                        for (int r = 0; r < ROWS; r++) {
                            float v = acc[r][t];
                            v = fmaf(wf[r][0], a.x, v);
                            v = fmaf(wf[r][1], a.y, v);
                            v = fmaf(wf[r][2], a.z, v);
                            v = fmaf(wf[r][3], a.w, v);
                            acc[r][t] = v;
                        }
                    }
                }
            }
        }
    }
    if (share.first >= steps) wait_for_previous_kernel(); // a lane without a step still stores after it
    store_rows<ROWS, TOKENS, SPLIT>(acc, row0, rows, out, scales);
}

// The INT4 counterpart: a step's 16 columns lie in one group (groups are multiples of 16 columns), so each step's
// sums are scaled once by their group's scale. groupShift = log2(groupSize / 16).
template <int TOKENS, int SPLIT>
__device__ __forceinline__ void int4_gemv_tokens(const unsigned char* codes, const float* scales,
                                                 const float* x, float* out, int rows,
                                                 int columns, int strideBytes, int groups, int groupShift) {
    constexpr int ROWS = GemvShape<TOKENS, SPLIT>::ROWS;
    constexpr int UNROLL = QUANT_BYTES_IN_FLIGHT / (8 * ROWS) > 0 ? QUANT_BYTES_IN_FLIGHT / (8 * ROWS) : 1;
    RowShare<ROWS, SPLIT> share;
    int row0 = share.row0;
    if (row0 >= rows) return;
    int steps = columns / QUANT_STEP;
    const uint2* w[ROWS];
    const float* sc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        int row = min(row0 + r, rows - 1);
        w[r] = reinterpret_cast<const uint2*>(codes + (long long) row * strideBytes);
        sc[r] = scales + (long long) row * groups;
    }
    float acc[ROWS][TOKENS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[r][t] = 0.0f;
    }
    for (int base = share.first; base < steps; base += share.stride * UNROLL) {
        uint2 packed[UNROLL][ROWS];
        float scale[UNROLL][ROWS];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int s = base + share.stride * u;
            int g = s >> groupShift;
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                packed[u][r] = s < steps ? __ldg(w[r] + s) : make_uint2(0u, 0u);
                scale[u][r] = s < steps ? __ldg(sc[r] + g) : 0.0f;
            }
        }
        if (base == share.first) wait_for_previous_kernel();
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int s = base + share.stride * u;
            if (s < steps) {
                const float* xs = x + s * QUANT_STEP;
                float part[ROWS][TOKENS];
#pragma unroll
                for (int r = 0; r < ROWS; r++) {
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) part[r][t] = 0.0f;
                }
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    float wf[ROWS][8];
#pragma unroll
                    for (int r = 0; r < ROWS; r++) {
                        int4_codes(q == 0 ? word_of<0>(packed[u][r]) : word_of<1>(packed[u][r]), wf[r]);
                    }
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) {
                        const float4* xp = reinterpret_cast<const float4*>(xs + (long long) t * columns) + 2 * q;
                        float4 a = xp[0], b = xp[1];
#pragma unroll
                        for (int r = 0; r < ROWS; r++) {
                            float v = part[r][t];
                            v = fmaf(wf[r][0], a.x, v);
                            v = fmaf(wf[r][1], a.y, v);
                            v = fmaf(wf[r][2], a.z, v);
                            v = fmaf(wf[r][3], a.w, v);
                            v = fmaf(wf[r][4], b.x, v);
                            v = fmaf(wf[r][5], b.y, v);
                            v = fmaf(wf[r][6], b.z, v);
                            v = fmaf(wf[r][7], b.w, v);
                            part[r][t] = v;
                        }
                    }
                }
#pragma unroll
                for (int r = 0; r < ROWS; r++) {
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) acc[r][t] = fmaf(part[r][t], scale[u][r], acc[r][t]);
                }
            }
        }
    }
    if (share.first >= steps) wait_for_previous_kernel(); // a lane without a step still stores after it
    store_rows<ROWS, TOKENS, SPLIT>(acc, row0, rows, out, nullptr);
}

// kiln_int8_gemv_t1.._t8 and kiln_int4_gemv_t1.._t8: QUANT_GEMV_WARPS row groups per block. The _split_ kernels:
// one row group per block, its steps shared by the block's warps, for matrices whose row groups alone would leave
// SMs without a block (Java: QuantKernels.splits).
#define QUANT_GEMV_TOKENS(T)                                                                                         \
    extern "C" __global__ void __launch_bounds__(QUANT_GEMV_THREADS)                                                 \
    kiln_int8_gemv_t##T(const signed char* codes, const float* scales, const float* x, float* out, int rows,        \
                        int columns, int stride) {                                                                   \
        int8_gemv_tokens<T, 1>(codes, scales, x, out, rows, columns, stride);                                        \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(QUANT_GEMV_THREADS)                                                 \
    kiln_int8_gemv_split_t##T(const signed char* codes, const float* scales, const float* x, float* out, int rows,  \
                              int columns, int stride) {                                                             \
        int8_gemv_tokens<T, QUANT_GEMV_WARPS>(codes, scales, x, out, rows, columns, stride);                         \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(QUANT_GEMV_THREADS)                                                 \
    kiln_int4_gemv_t##T(const unsigned char* codes, const float* scales, const float* x, float* out, int rows,      \
                        int columns, int strideBytes, int groups, int groupShift) {                                  \
        int4_gemv_tokens<T, 1>(codes, scales, x, out, rows, columns, strideBytes, groups, groupShift);               \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(QUANT_GEMV_THREADS)                                                 \
    kiln_int4_gemv_split_t##T(const unsigned char* codes, const float* scales, const float* x, float* out,          \
                              int rows, int columns, int strideBytes, int groups, int groupShift) {                  \
        int4_gemv_tokens<T, QUANT_GEMV_WARPS>(codes, scales, x, out, rows, columns, strideBytes, groups, groupShift); \
    }
#if KILN_IN_UNIT(1)
QUANT_GEMV_TOKENS(1)
QUANT_GEMV_TOKENS(2)
QUANT_GEMV_TOKENS(3)
QUANT_GEMV_TOKENS(4)
QUANT_GEMV_TOKENS(5)
#endif
#if KILN_IN_UNIT(2)
QUANT_GEMV_TOKENS(6)
QUANT_GEMV_TOKENS(7)
QUANT_GEMV_TOKENS(8)
#endif

// ---- GEMV for any shape (columns not a multiple of 16, or x not 16-byte aligned) ------------------------------------
#if KILN_IN_UNIT(0)

// One warp per row, one column per lane at a time: plain loads, any alignment. tokens <= QUANT_MAX_TOKENS.
extern "C" __global__ void kiln_int8_gemv(const signed char* codes, const float* scales, const float* x, float* out,
                                          int rows, int columns, int stride, int tokens) {
    wait_for_previous_kernel();
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const signed char* wr = codes + (long long) row * stride;
    float acc[QUANT_MAX_TOKENS];
#pragma unroll
    for (int t = 0; t < QUANT_MAX_TOKENS; t++) acc[t] = 0.0f;
    for (int c = lane; c < columns; c += 32) {
        float wv = (float) wr[c];
#pragma unroll
        for (int t = 0; t < QUANT_MAX_TOKENS; t++) {
            if (t < tokens) acc[t] = fmaf(wv, x[(long long) t * columns + c], acc[t]);
        }
    }
    float scale = scales[row];
#pragma unroll
    for (int t = 0; t < QUANT_MAX_TOKENS; t++) {
        if (t < tokens) {
            float v = warp_sum(acc[t]);
            if (lane == 0) out[(long long) t * rows + row] = v * scale;
        }
    }
}

extern "C" __global__ void kiln_int4_gemv(const unsigned char* codes, const float* scales, const float* x, float* out,
                                          int rows, int columns, int strideBytes, int groups, int groupSize, int tokens) {
    wait_for_previous_kernel();
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const unsigned char* wr = codes + (long long) row * strideBytes;
    const float* sr = scales + (long long) row * groups;
    float acc[QUANT_MAX_TOKENS];
#pragma unroll
    for (int t = 0; t < QUANT_MAX_TOKENS; t++) acc[t] = 0.0f;
    for (int c = lane; c < columns; c += 32) {
        unsigned int pair = wr[c >> 1];
        int u = (c & 1) ? (int) (pair >> 4) : (int) (pair & 15u);
        float wv = (float) (u - 8) * sr[c / groupSize];
#pragma unroll
        for (int t = 0; t < QUANT_MAX_TOKENS; t++) {
            if (t < tokens) acc[t] = fmaf(wv, x[(long long) t * columns + c], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < QUANT_MAX_TOKENS; t++) {
        if (t < tokens) {
            float v = warp_sum(acc[t]);
            if (lane == 0) out[(long long) t * rows + row] = v;
        }
    }
}

// ---- prefill: weights dequantised into bf16 tiles for cuBLAS --------------------------------------------------------

// Rows [0, gridDim.y) of an INT8 weight (codes already offset to the tile's first row) as bf16 codes [rows][columns],
// without their scales: a code of at most 7 significant bits is exact in bf16, so the GEMM sums q * x as exactly as
// the dense path sums w * x; kiln_int8_scale_product applies the row scales after.
extern "C" __global__ void kiln_int8_codes_bf16(const signed char* codes, int stride, int columns, bf16_t* out) {
    wait_for_previous_kernel();
    long long row = blockIdx.y;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < columns; c += gridDim.x * blockDim.x) {
        out[row * columns + c] = (bf16_t) (__float_as_uint((float) codes[row * stride + c]) >> 16);
    }
}

// product[t][r] *= scales[r] for n = tokens * rows elements: the INT8 row scales after the prefill GEMM.
extern "C" __global__ void kiln_int8_scale_product(float* product, const float* scales, long long n, int rows) {
    wait_for_previous_kernel();
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x) {
        product[i] *= scales[i % rows];
    }
}

// Rows [0, gridDim.y) of an INT4 weight (codes and scales already offset to the tile's first row) dequantised in f32,
// (u - 8) * scale, and split into bf16 high and low parts: hi + lo keeps about 16 significant bits of each weight,
// which the group scales make arbitrary, so three GEMMs (hi x hi, hi x lo, lo x hi) reproduce the f32 product.
extern "C" __global__ void kiln_int4_dequantize_split(const unsigned char* codes, const float* scales, int strideBytes,
                                                      int columns, int groups, int groupSize, bf16_t* hi, bf16_t* lo) {
    wait_for_previous_kernel();
    long long row = blockIdx.y;
    const unsigned char* wr = codes + row * strideBytes;
    const float* sr = scales + row * groups;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < columns; c += gridDim.x * blockDim.x) {
        unsigned int pair = wr[c >> 1];
        int u = (c & 1) ? (int) (pair >> 4) : (int) (pair & 15u);
        float w = (float) (u - 8) * sr[c / groupSize];
        bf16_t h = float_to_bf16(w);
        hi[row * columns + c] = h;
        lo[row * columns + c] = float_to_bf16(w - bf16_to_float(h));
    }
}

// ---- rows as f32 (a quantized embedding table) ----------------------------------------------------------------------

// out[i] = W[ids[i]] dequantised, one block per id.
extern "C" __global__ void kiln_int8_gather_rows(const signed char* codes, const float* scales, const int* ids,
                                                 float* out, int columns, int stride) {
    wait_then_release_next_kernel();
    long long id = ids[blockIdx.x];
    float scale = scales[id];
    const signed char* wr = codes + id * stride;
    float* o = out + (long long) blockIdx.x * columns;
    for (int c = threadIdx.x; c < columns; c += blockDim.x) o[c] = (float) wr[c] * scale;
}

extern "C" __global__ void kiln_int4_gather_rows(const unsigned char* codes, const float* scales, const int* ids,
                                                 float* out, int columns, int strideBytes, int groups, int groupSize) {
    wait_then_release_next_kernel();
    long long id = ids[blockIdx.x];
    const unsigned char* wr = codes + id * strideBytes;
    const float* sr = scales + id * groups;
    float* o = out + (long long) blockIdx.x * columns;
    for (int c = threadIdx.x; c < columns; c += blockDim.x) {
        unsigned int pair = wr[c >> 1];
        int u = (c & 1) ? (int) (pair >> 4) : (int) (pair & 15u);
        o[c] = (float) (u - 8) * sr[c / groupSize];
    }
}

#endif

// ---- FP8 e4m3 block weights (fp8) -----------------------------------------------------------------------------------

// 2^120: f32's exponent bias (127) less e4m3's (7).
#define E4M3_REBIAS 0x1p120f

// The e4m3 code in the top byte of t (bits 24..31; the bits below are ignored) as a float, exactly; the NaN codes
// decode as 480 here (see e4m3_nan_bytes and e4m3_to_float). An arithmetic shift by 4 moves the code's exponent and
// mantissa (bits 30..24) to f32's low exponent bits and top mantissa bits (26..20) and keeps its sign in bit 31; the
// mask clears the sign's copies and the bits below. That float is the code's value times 2^-120: a normal code
// E.mmm gives the normal 2^(E - 127) (1 + m/8), a subnormal code 0.mmm the f32 subnormal m/8 * 2^-126, so one
// multiplication by 2^120 is exact for both (f32 subnormals are kept: no flush-to-zero). Four instructions, no
// table, no conversion unit.
__device__ __forceinline__ float e4m3_top_byte(unsigned int t) {
    return __uint_as_float((unsigned int) ((int) t >> 4) & 0x87F00000u) * E4M3_REBIAS;
}

// Bit 7 of each byte of a word of four codes set where that code is NaN (S.1111.111): adding 1 to a byte's low 7 bits
// carries into its bit 7 only from 0x7F, and never into the next byte.
__device__ __forceinline__ unsigned int e4m3_nan_bytes(unsigned int word) {
    return ((word & 0x7F7F7F7Fu) + 0x01010101u) & 0x80808080u;
}

// One code (low byte) as a float, NaN codes as NaN: the rule of the CPU bundle's E4m3.toFloat, bit for bit.
__device__ __forceinline__ float e4m3_to_float(unsigned int code) {
    return (code & 0x7Fu) == 0x7Fu ? __uint_as_float(0x7FC00000u) : e4m3_top_byte(code << 24);
}

// Four codes (little-endian bytes of one word, first column lowest) as floats.
__device__ __forceinline__ void e4m3_codes(unsigned int word, float* w) {
    w[0] = e4m3_top_byte(word << 24);
    w[1] = e4m3_top_byte(word << 16);
    w[2] = e4m3_top_byte(word << 8);
    w[3] = e4m3_top_byte(word);
}

// out[t][r] = sum_c x[t][c] * W[r][c] for 1..8 tokens (columns % 16 == 0, x 16-byte aligned, blockColumns = 16 <<
// blockShift): the INT8 kernel's shape (ROWS rows per warp, 16 codes per 16-byte load, ROWS x UNROLL loads in flight
// per lane), with the INT4 kernel's scaling: a 16-column step lies in one column block, so its sums are multiplied
// once by the block's scale. A row holding a NaN code gives NaN, as the product with that weight would: a word of codes
// with a NaN among them makes its first weight NaN (a test and a select per four codes), whatever the activations.
template <int TOKENS, int SPLIT>
__device__ __forceinline__ void fp8_gemv_tokens(const unsigned char* codes, const float* scales,
                                                const float* x, float* out, int rows,
                                                int columns, int stride, int blockRows, int columnBlocks, int blockShift) {
    constexpr int ROWS = GemvShape<TOKENS, SPLIT>::ROWS;
    constexpr int UNROLL = QUANT_BYTES_IN_FLIGHT / (16 * ROWS) > 0 ? QUANT_BYTES_IN_FLIGHT / (16 * ROWS) : 1;
    RowShare<ROWS, SPLIT> share;
    int row0 = share.row0;
    if (row0 >= rows) return;
    int steps = columns / QUANT_STEP;
    const uint4* w[ROWS];
    const float* sc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        int row = min(row0 + r, rows - 1);
        w[r] = reinterpret_cast<const uint4*>(codes + (long long) row * stride);
        sc[r] = scales + (long long) (row / blockRows) * columnBlocks;
    }
    float acc[ROWS][TOKENS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[r][t] = 0.0f;
    }
    for (int base = share.first; base < steps; base += share.stride * UNROLL) {
        uint4 packed[UNROLL][ROWS];
        float scale[UNROLL][ROWS];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int s = base + share.stride * u;
            int b = s >> blockShift;
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                packed[u][r] = s < steps ? __ldg(w[r] + s) : make_uint4(0u, 0u, 0u, 0u);
                scale[u][r] = s < steps ? __ldg(sc[r] + b) : 0.0f;
            }
        }
        if (base == share.first) wait_for_previous_kernel();
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int s = base + share.stride * u;
            if (s < steps) {
                const float* xs = x + s * QUANT_STEP;
                float part[ROWS][TOKENS];
#pragma unroll
                for (int r = 0; r < ROWS; r++) {
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) part[r][t] = 0.0f;
                }
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    float wf[ROWS][4];
#pragma unroll
                    for (int r = 0; r < ROWS; r++) {
                        unsigned int word = q == 0 ? word_of<0>(packed[u][r]) : q == 1 ? word_of<1>(packed[u][r])
                                          : q == 2 ? word_of<2>(packed[u][r]) : word_of<3>(packed[u][r]);
                        e4m3_codes(word, wf[r]);
                        if (e4m3_nan_bytes(word) != 0u) wf[r][0] = __uint_as_float(0x7FC00000u);
                    }
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) {
                        float4 a = reinterpret_cast<const float4*>(xs + (long long) t * columns)[q];
#pragma unroll
                        for (int r = 0; r < ROWS; r++) {
                            float v = part[r][t];
                            v = fmaf(wf[r][0], a.x, v);
                            v = fmaf(wf[r][1], a.y, v);
                            v = fmaf(wf[r][2], a.z, v);
                            v = fmaf(wf[r][3], a.w, v);
                            part[r][t] = v;
                        }
                    }
                }
#pragma unroll
                for (int r = 0; r < ROWS; r++) {
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) acc[r][t] = fmaf(part[r][t], scale[u][r], acc[r][t]);
                }
            }
        }
    }
    if (share.first >= steps) wait_for_previous_kernel(); // a lane without a step still stores after it
    store_rows<ROWS, TOKENS, SPLIT>(acc, row0, rows, out, nullptr);
}

// kiln_fp8_gemv_t1.._t8 and the _split_ variants, chosen as for INT8 and INT4 (Java: QuantKernels.splits).
#define FP8_GEMV_TOKENS(T)                                                                                           \
    extern "C" __global__ void __launch_bounds__(QUANT_GEMV_THREADS)                                                 \
    kiln_fp8_gemv_t##T(const unsigned char* codes, const float* scales, const float* x, float* out, int rows,       \
                       int columns, int stride, int blockRows, int columnBlocks, int blockShift) {                   \
        fp8_gemv_tokens<T, 1>(codes, scales, x, out, rows, columns, stride, blockRows, columnBlocks, blockShift);    \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(QUANT_GEMV_THREADS)                                                 \
    kiln_fp8_gemv_split_t##T(const unsigned char* codes, const float* scales, const float* x, float* out, int rows, \
                             int columns, int stride, int blockRows, int columnBlocks, int blockShift) {             \
        fp8_gemv_tokens<T, QUANT_GEMV_WARPS>(codes, scales, x, out, rows, columns, stride, blockRows, columnBlocks,  \
                                             blockShift);                                                            \
    }
#if KILN_IN_UNIT(3)
FP8_GEMV_TOKENS(1)
FP8_GEMV_TOKENS(2)
FP8_GEMV_TOKENS(3)
FP8_GEMV_TOKENS(4)
FP8_GEMV_TOKENS(5)
FP8_GEMV_TOKENS(6)
FP8_GEMV_TOKENS(7)
FP8_GEMV_TOKENS(8)
#endif

#if KILN_IN_UNIT(0)
// Any shape and block size (columns not a multiple of 16, x not 16-byte aligned, blocks not 16 << k columns wide):
// one warp per row, one column per lane at a time. tokens <= QUANT_MAX_TOKENS.
extern "C" __global__ void kiln_fp8_gemv(const unsigned char* codes, const float* scales, const float* x, float* out,
                                         int rows, int columns, int stride, int blockRows, int blockColumns,
                                         int columnBlocks, int tokens) {
    wait_for_previous_kernel();
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const unsigned char* wr = codes + (long long) row * stride;
    const float* sr = scales + (long long) (row / blockRows) * columnBlocks;
    float acc[QUANT_MAX_TOKENS];
#pragma unroll
    for (int t = 0; t < QUANT_MAX_TOKENS; t++) acc[t] = 0.0f;
    for (int c = lane; c < columns; c += 32) {
        float wv = e4m3_to_float(wr[c]) * sr[c / blockColumns];
#pragma unroll
        for (int t = 0; t < QUANT_MAX_TOKENS; t++) {
            if (t < tokens) acc[t] = fmaf(wv, x[(long long) t * columns + c], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < QUANT_MAX_TOKENS; t++) {
        if (t < tokens) {
            float v = warp_sum(acc[t]);
            if (lane == 0) out[(long long) t * rows + row] = v;
        }
    }
}

// Rows [0, gridDim.y) of a tile starting at weight row firstRow (codes already offset to it; scales are the whole
// weight's) dequantised in f32, code * scale as the CPU bundle computes it, and split into bf16 high and low parts:
// e4m3 values are exact in bf16, but the block scales make the products arbitrary, and unlike INT8's row scales they
// cannot be applied after one GEMM over the row, so the weight is split as INT4's is (three GEMMs).
extern "C" __global__ void kiln_fp8_dequantize_split(const unsigned char* codes, const float* scales, int firstRow,
                                                     int stride, int columns, int blockRows, int blockColumns,
                                                     int columnBlocks, bf16_t* hi, bf16_t* lo) {
    wait_for_previous_kernel();
    long long row = blockIdx.y;
    const unsigned char* wr = codes + row * stride;
    const float* sr = scales + (long long) ((firstRow + (int) row) / blockRows) * columnBlocks;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < columns; c += gridDim.x * blockDim.x) {
        float w = e4m3_to_float(wr[c]) * sr[c / blockColumns];
        bf16_t h = float_to_bf16(w);
        hi[row * columns + c] = h;
        lo[row * columns + c] = float_to_bf16(w - bf16_to_float(h));
    }
}

// out[i] = W[ids[i]] dequantised (code * scale in f32, the CPU bundle's gatherRows bit for bit), one block per id.
extern "C" __global__ void kiln_fp8_gather_rows(const unsigned char* codes, const float* scales, const int* ids,
                                                float* out, int columns, int stride, int blockRows, int blockColumns,
                                                int columnBlocks) {
    wait_for_previous_kernel();
    long long id = ids[blockIdx.x];
    const unsigned char* wr = codes + id * stride;
    const float* sr = scales + (id / blockRows) * columnBlocks;
    float* o = out + (long long) blockIdx.x * columns;
    for (int c = threadIdx.x; c < columns; c += blockDim.x) o[c] = e4m3_to_float(wr[c]) * sr[c / blockColumns];
}
#endif
