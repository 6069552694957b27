// Kiln's CUDA kernels. Compiled at run time by NVRTC for the device's own architecture (sm_90a on Hopper), so
// the source includes no headers: bf16 values travel as their 16 raw bits and are widened by hand.
//
// Conventions shared with the Java side (dev.kiln.backend.cuda.internal.Kernels):
//  - activations are f32, row-major, rows contiguous;
//  - element counts that can exceed 2^31 are long long, loop indices over them too;
//  - every kernel that reduces over a block is launched with a multiple of 32 threads, at most 1024.

typedef unsigned short bf16_t;

#define KILN_INFINITY __int_as_float(0x7f800000)

__device__ __forceinline__ float bf16_to_float(bf16_t v) {
    return __uint_as_float(((unsigned int) v) << 16);
}

// Round to nearest even, NaN stays NaN (a plain truncation would bias every product of the split GEMM).
__device__ __forceinline__ bf16_t float_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t) ((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t) (u >> 16);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block, returned to every thread. scratch holds 32 floats of shared memory; the leading barrier
// keeps a previous reduction's readers from seeing this one's partial sums.
__device__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? scratch[lane] : 0.0f);
}

__device__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_max(lane < warps ? scratch[lane] : -KILN_INFINITY);
}

#define GRID_STRIDE(i, n) \
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < (n); i += (long long) gridDim.x * blockDim.x)

// ---- element-wise ------------------------------------------------------------------------------------------

extern "C" __global__ void kiln_add(float* acc, const float* x, long long n) {
    GRID_STRIDE(i, n) acc[i] += x[i];
}

extern "C" __global__ void kiln_add_bias(float* x, const float* bias, long long n, int width) {
    GRID_STRIDE(i, n) x[i] += bias[i % width];
}

extern "C" __global__ void kiln_scale(float* x, float factor, long long n) {
    GRID_STRIDE(i, n) x[i] *= factor;
}

extern "C" __global__ void kiln_silu_mul(const float* gate, const float* up, float* out, long long n) {
    GRID_STRIDE(i, n) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// x = hi + lo with hi, lo in bf16: the pair carries about 16 significant bits, so two bf16 GEMMs with f32
// accumulation reproduce an f32 product against bf16 weights to ~1e-5 relative.
extern "C" __global__ void kiln_split_bf16(const float* x, bf16_t* hi, bf16_t* lo, long long n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        bf16_t h = float_to_bf16(v);
        hi[i] = h;
        lo[i] = float_to_bf16(v - bf16_to_float(h));
    }
}

// ---- rows ----------------------------------------------------------------------------------------------------

// One block per row; out may be x.
extern "C" __global__ void kiln_rms_norm(const float* x, const float* scale, float eps, float* out, int n) {
    __shared__ float scratch[32];
    const float* row = x + (long long) blockIdx.x * n;
    float* o = out + (long long) blockIdx.x * n;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = row[i];
        sum += v * v;
    }
    sum = block_sum(sum, scratch);
    float inv = 1.0f / sqrtf(sum / (float) n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = row[i] * inv * scale[i];
}

// One block per token.
extern "C" __global__ void kiln_embed_bf16(const bf16_t* table, const int* ids, float* out, int columns) {
    const bf16_t* row = table + (long long) ids[blockIdx.x] * columns;
    float* o = out + (long long) blockIdx.x * columns;
    for (int c = threadIdx.x; c < columns; c += blockDim.x) o[c] = bf16_to_float(row[c]);
}

extern "C" __global__ void kiln_embed_f32(const float* table, const int* ids, float* out, int columns) {
    const float* row = table + (long long) ids[blockIdx.x] * columns;
    float* o = out + (long long) blockIdx.x * columns;
    for (int c = threadIdx.x; c < columns; c += blockDim.x) o[c] = row[c];
}

extern "C" __global__ void kiln_copy_columns(const float* src, int srcRow, int srcOffset, float* dst, int dstRow,
                                             int dstOffset, int width, long long n) {
    GRID_STRIDE(i, n) {
        long long r = i / width;
        int j = (int) (i - r * width);
        dst[r * dstRow + dstOffset + j] = src[r * srcRow + srcOffset + j];
    }
}

// One block per gathered row.
extern "C" __global__ void kiln_gather_rows(const float* src, const int* rows, float* dst, int n) {
    const float* s = src + (long long) rows[blockIdx.x] * n;
    float* d = dst + (long long) blockIdx.x * n;
    for (int j = threadIdx.x; j < n; j += blockDim.x) d[j] = s[j];
}

// One thread per column walks the rows in the order given: repeated destination rows accumulate without atomics,
// in the same order every time.
extern "C" __global__ void kiln_scatter_add_rows(const float* src, const int* rows, const float* scales, float* dst,
                                                 int n, int count) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    for (int i = 0; i < count; i++) dst[(long long) rows[i] * n + j] += scales[i] * src[(long long) i * n + j];
}

// One block per row of x; cos and sin are tables [position][half], already scaled by the magnitude.
extern "C" __global__ void kiln_rotary(float* x, const int* positions, const float* cosTable, const float* sinTable,
                                       int rowLength, int heads, int headStride, int offset, int half,
                                       int interleaved) {
    float* row = x + (long long) blockIdx.x * rowLength;
    long long table = (long long) positions[blockIdx.x] * half;
    for (int e = threadIdx.x; e < heads * half; e += blockDim.x) {
        int h = e / half, i = e - h * half;
        float* head = row + h * headStride + offset;
        float c = cosTable[table + i], s = sinTable[table + i];
        int ia = interleaved ? 2 * i : i;
        int ib = interleaved ? 2 * i + 1 : i + half;
        float a = head[ia], b = head[ib];
        head[ia] = a * c - b * s;
        head[ib] = b * c + a * s;
    }
}

// ---- matrix-vector products for few rows (decode) --------------------------------------------------------------

#define GEMV_MAX_TOKENS 8

// out[t, r] = sum_c x[t, c] * W[r, c] for t < tokens <= GEMV_MAX_TOKENS: one warp per weight row, so the weight
// is streamed from memory exactly once whatever the number of tokens. vectorized: columns % 8 == 0 and W, x
// 16-byte aligned, each lane then loads 8 weights (16 bytes) at a time.
extern "C" __global__ void kiln_gemv_bf16(const bf16_t* w, const float* x, float* out, int rows, int columns,
                                          int tokens, int vectorized) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const bf16_t* wr = w + (long long) row * columns;
    float acc[GEMV_MAX_TOKENS];
#pragma unroll
    for (int t = 0; t < GEMV_MAX_TOKENS; t++) acc[t] = 0.0f;
    if (vectorized) {
#pragma unroll 4
        for (int c = lane * 8; c < columns; c += 256) {
            uint4 packed = *reinterpret_cast<const uint4*>(wr + c);
            float wv[8];
            wv[0] = __uint_as_float(packed.x << 16);
            wv[1] = __uint_as_float(packed.x & 0xffff0000u);
            wv[2] = __uint_as_float(packed.y << 16);
            wv[3] = __uint_as_float(packed.y & 0xffff0000u);
            wv[4] = __uint_as_float(packed.z << 16);
            wv[5] = __uint_as_float(packed.z & 0xffff0000u);
            wv[6] = __uint_as_float(packed.w << 16);
            wv[7] = __uint_as_float(packed.w & 0xffff0000u);
#pragma unroll
            for (int t = 0; t < GEMV_MAX_TOKENS; t++) {
                if (t < tokens) {
                    const float4* xp = reinterpret_cast<const float4*>(x + (long long) t * columns + c);
                    float4 a = xp[0], b = xp[1];
                    acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w
                            + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
                }
            }
        }
    } else {
        for (int c = lane; c < columns; c += 32) {
            float wv = bf16_to_float(wr[c]);
#pragma unroll
            for (int t = 0; t < GEMV_MAX_TOKENS; t++) {
                if (t < tokens) acc[t] += wv * x[(long long) t * columns + c];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < GEMV_MAX_TOKENS; t++) {
        if (t < tokens) {
            float v = warp_sum(acc[t]);
            if (lane == 0) out[(long long) t * rows + row] = v;
        }
    }
}

// The vectorized product specialised for a token count known at compile time (kiln_gemv_bf16_t1 .. _t8): no
// branch between a weight load and its use, so each lane issues GEMV_UNROLL independent 16-byte weight loads
// before the first multiply (the generic kernel above keeps about one in flight, which leaves HBM idle).
// Requires columns % 8 == 0 and W, x 16-byte aligned. The weight is read once for all tokens; activations come
// from L1/L2.
#define GEMV_UNROLL 4

template <int TOKENS>
__device__ __forceinline__ void gemv_bf16_tokens(const bf16_t* __restrict__ w, const float* __restrict__ x,
                                                 float* __restrict__ out, int rows, int columns) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const uint4* wr = reinterpret_cast<const uint4*>(w + (long long) row * columns);
    int chunks = columns >> 3;
    float acc[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) acc[t] = 0.0f;
    for (int base = lane; base < chunks; base += 32 * GEMV_UNROLL) {
        uint4 packed[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int c = base + u * 32;
            packed[u] = c < chunks ? __ldg(wr + c) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int c = base + u * 32;
            if (c < chunks) {
                float wv[8];
                wv[0] = __uint_as_float(packed[u].x << 16);
                wv[1] = __uint_as_float(packed[u].x & 0xffff0000u);
                wv[2] = __uint_as_float(packed[u].y << 16);
                wv[3] = __uint_as_float(packed[u].y & 0xffff0000u);
                wv[4] = __uint_as_float(packed[u].z << 16);
                wv[5] = __uint_as_float(packed[u].z & 0xffff0000u);
                wv[6] = __uint_as_float(packed[u].w << 16);
                wv[7] = __uint_as_float(packed[u].w & 0xffff0000u);
#pragma unroll
                for (int t = 0; t < TOKENS; t++) {
                    const float4* xp = reinterpret_cast<const float4*>(x + (long long) t * columns) + 2 * c;
                    float4 a = xp[0], b = xp[1];
                    acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w
                            + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        float v = warp_sum(acc[t]);
        if (lane == 0) out[(long long) t * rows + row] = v;
    }
}

#define GEMV_BF16_TOKENS(T)                                                                                      \
    extern "C" __global__ void kiln_gemv_bf16_t##T(const bf16_t* w, const float* x, float* out, int rows,        \
                                                    int columns, int tokens, int vectorized) {                   \
        gemv_bf16_tokens<T>(w, x, out, rows, columns);                                                          \
    }
GEMV_BF16_TOKENS(1)
GEMV_BF16_TOKENS(2)
GEMV_BF16_TOKENS(3)
GEMV_BF16_TOKENS(4)
GEMV_BF16_TOKENS(5)
GEMV_BF16_TOKENS(6)
GEMV_BF16_TOKENS(7)
GEMV_BF16_TOKENS(8)

// The same for f32 weights (checkpoints stored in f32 or f16); vectorized: columns % 4 == 0, 16-byte aligned.
extern "C" __global__ void kiln_gemv_f32(const float* w, const float* x, float* out, int rows, int columns,
                                         int tokens, int vectorized) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const float* wr = w + (long long) row * columns;
    float acc[GEMV_MAX_TOKENS];
#pragma unroll
    for (int t = 0; t < GEMV_MAX_TOKENS; t++) acc[t] = 0.0f;
    if (vectorized) {
#pragma unroll 4
        for (int c = lane * 4; c < columns; c += 128) {
            float4 wv = *reinterpret_cast<const float4*>(wr + c);
#pragma unroll
            for (int t = 0; t < GEMV_MAX_TOKENS; t++) {
                if (t < tokens) {
                    float4 a = *reinterpret_cast<const float4*>(x + (long long) t * columns + c);
                    acc[t] += wv.x * a.x + wv.y * a.y + wv.z * a.z + wv.w * a.w;
                }
            }
        }
    } else {
        for (int c = lane; c < columns; c += 32) {
            float wv = wr[c];
#pragma unroll
            for (int t = 0; t < GEMV_MAX_TOKENS; t++) {
                if (t < tokens) acc[t] += wv * x[(long long) t * columns + c];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < GEMV_MAX_TOKENS; t++) {
        if (t < tokens) {
            float v = warp_sum(acc[t]);
            if (lane == 0) out[(long long) t * rows + row] = v;
        }
    }
}

// ---- paged attention --------------------------------------------------------------------------------------------

// Cache layout per layer: [block][kvHead][slot in block][dim], keys and values in separate arrays (values absent
// when they are the leading elements of the keys). One block per token; tokens with a negative slot are padding.
extern "C" __global__ void kiln_write_kv(const float* key, const float* value, float* keys, float* values,
                                         const int* slots, int kvHeads, int keyDim, int valueDim, int blockSize) {
    int slot = slots[blockIdx.x];
    if (slot < 0) return;
    long long block = slot / blockSize;
    int offset = slot - (int) block * blockSize;
    const float* k = key + (long long) blockIdx.x * kvHeads * keyDim;
    for (int e = threadIdx.x; e < kvHeads * keyDim; e += blockDim.x) {
        int h = e / keyDim, d = e - h * keyDim;
        keys[((block * kvHeads + h) * blockSize + offset) * keyDim + d] = k[e];
    }
    if (value != 0) {
        const float* v = value + (long long) blockIdx.x * kvHeads * valueDim;
        for (int e = threadIdx.x; e < kvHeads * valueDim; e += blockDim.x) {
            int h = e / valueDim, d = e - h * valueDim;
            values[((block * kvHeads + h) * blockSize + offset) * valueDim + d] = v[e];
        }
    }
}

#define ATTENTION_THREADS 256
#define ATTENTION_VALUES_PER_THREAD 8

// Causal attention of one query token and head (grid: tokens x heads) over its sequence's paged context, in tiles
// of ATTENTION_THREADS keys with an online softmax: each thread scores one key of the tile, then each thread
// accumulates its value dimensions over the tile. valueStride is the distance between two cache entries in the
// value array (keyDim when values live in the keys). Dynamic shared memory: see Kernels.attentionSharedBytes.
extern "C" __global__ void __launch_bounds__(ATTENTION_THREADS)
kiln_paged_attention(const float* query, float* out, const float* keys, const float* values,
                     const int* tokenSequence, const int* tokenPosition, const int* tableStart, const int* tables,
                     int heads, int kvHeads, int keyDim, int valueDim, int valueStride, int blockSize, float scale) {
    extern __shared__ __align__(16) unsigned char shared[];
    long long* valueAt = reinterpret_cast<long long*>(shared);
    float* weights = reinterpret_cast<float*>(valueAt + ATTENTION_THREADS);
    float* scratch = weights + ATTENTION_THREADS;
    float* q = scratch + 32;

    int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    int sequence = tokenSequence[t];
    int position = tokenPosition[t];
    int kvHead = h / (heads / kvHeads);
    const int* table = tables + tableStart[sequence];
    const float* qh = query + ((long long) t * heads + h) * keyDim;
    for (int d = tid; d < keyDim; d += ATTENTION_THREADS) q[d] = qh[d];
    __syncthreads();

    bool vectorized = (keyDim & 3) == 0;
    float runningMax = -KILN_INFINITY, norm = 0.0f;
    float acc[ATTENTION_VALUES_PER_THREAD];
#pragma unroll
    for (int i = 0; i < ATTENTION_VALUES_PER_THREAD; i++) acc[i] = 0.0f;

    for (int tile = 0; tile <= position; tile += ATTENTION_THREADS) {
        int j = tile + tid;
        float score = -KILN_INFINITY;
        if (j <= position) {
            int block = table[j / blockSize];
            long long entry = ((long long) block * kvHeads + kvHead) * blockSize + (j - (j / blockSize) * blockSize);
            const float* k = keys + entry * keyDim;
            float dot = 0.0f;
            if (vectorized) {
                const float4* k4 = reinterpret_cast<const float4*>(k);
                const float4* q4 = reinterpret_cast<const float4*>(q);
                for (int d = 0; d < (keyDim >> 2); d++) {
                    float4 a = k4[d], b = q4[d];
                    dot += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
                }
            } else {
                for (int d = 0; d < keyDim; d++) dot += k[d] * q[d];
            }
            score = dot * scale;
            valueAt[tid] = entry * valueStride;
        }
        float tileMax = block_max(score, scratch);
        float newMax = fmaxf(runningMax, tileMax);
        float correction = expf(runningMax - newMax);
        float weight = j <= position ? expf(score - newMax) : 0.0f;
        weights[tid] = weight;
        float tileSum = block_sum(weight, scratch); // its barriers also publish weights[] and valueAt[]
        norm = norm * correction + tileSum;
        runningMax = newMax;
        int n = min(ATTENTION_THREADS, position + 1 - tile);
#pragma unroll
        for (int i = 0; i < ATTENTION_VALUES_PER_THREAD; i++) {
            int d = tid + i * ATTENTION_THREADS;
            if (d < valueDim) {
                float a = acc[i] * correction;
                for (int k = 0; k < n; k++) a += weights[k] * values[valueAt[k] + d];
                acc[i] = a;
            }
        }
        __syncthreads(); // the next tile overwrites weights[] and valueAt[]
    }
    float inv = 1.0f / norm;
    float* o = out + ((long long) t * heads + h) * valueDim;
#pragma unroll
    for (int i = 0; i < ATTENTION_VALUES_PER_THREAD; i++) {
        int d = tid + i * ATTENTION_THREADS;
        if (d < valueDim) o[d] = acc[i] * inv;
    }
}
