// Kiln's CUDA kernels. Compiled at run time by NVRTC for the device's own architecture (sm_90a on Hopper), so
// the source includes no headers: bf16 values travel as their 16 raw bits and are widened by hand.
//
// Conventions shared with the Java side (dev.kiln.backend.cuda.internal.Kernels):
//  - activations are f32, row-major, rows contiguous;
//  - element counts that can exceed 2^31 are long long, loop indices over them too;
//  - every kernel that reduces over a block is launched with a multiple of 32 threads, at most 1024.

// The source compiles as several programs in parallel (KernelCompiler.units), each given -DKILN_UNIT=<unit>: a
// program emits only its unit's entry points (the helpers they share are templates and inline functions, emitted
// only where used). NVRTC compiles a program on one thread; the units take 1.3 to 4.3 s each, the whole file 25 s.
// Units: 0 element-wise, rows, sampling and the generic GEMVs; 1 attention; 2 to 4 the token-specialised GEMVs;
// 5 to 7 the few-token tensor-core products (bf16; INT8; INT4 and FP8); 8 to 10 the token-specialised INT8, FP8 and
// INT4 GEMVs. Without KILN_UNIT (tools/check_kernels.py) every entry point is emitted.
#ifdef KILN_UNIT
#define KILN_IN_UNIT(u) (KILN_UNIT == (u))
#else
#define KILN_IN_UNIT(u) 1
#endif

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

// Programmatic dependent launch (Hopper): the Java side may launch a kernel of this file before the kernel ahead of
// it on the stream has finished, so that its start-up (and a GEMV's first weight loads, which depend on nothing
// computed) overlaps that kernel's last wave. Every kernel therefore waits here before it reads or writes any
// activation. Most kernels let the kernel behind them start first, before their own wait, so that its blocks take
// their place and load their weights while this one still waits (H100, 1.5B shape, one batch-1 step: 1.423 -> 1.407
// ms). A kernel's wait still returns only once every kernel ahead has finished (each one's end follows its own wait).
// No pointer in this file is declared __restrict__: loads through a const __restrict__ kernel argument count as
// invariant for the kernel's lifetime, and the compiler moved them above this wait (stale activations, observed).
__device__ __forceinline__ void wait_for_previous_kernel() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// What a kernel reads before its wait must not be written by a kernel that may still run. Weights, and arrays copied
// in from the host (a copy starts after all the stream's earlier work), never are; the key/value cache entries that
// the attention kernels load early are written by the attention kernels of earlier forwards. Those kernels, and the
// ones that start a forward (embedding, token resolution, row gathers), therefore let the kernel behind them start
// only after their own wait: once a kernel behind one of them has started, every kernel before it has finished, the
// previous forward's attention included.
__device__ __forceinline__ void wait_then_release_next_kernel() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Weights are read once per step and never by another block: keep them out of L1, which the activations use.
__device__ __forceinline__ uint4 load_weights(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

#define GRID_STRIDE(i, n) \
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < (n); i += (long long) gridDim.x * blockDim.x)

#if KILN_IN_UNIT(0)
// ---- element-wise ------------------------------------------------------------------------------------------

extern "C" __global__ void kiln_add(float* acc, const float* x, long long n) {
    wait_for_previous_kernel();
    GRID_STRIDE(i, n) acc[i] += x[i];
}

// The two partial products of a paired GEMM summed, plus the layer's bias (rows of width) when there is one, and
// added into the residual stream when there is one.
extern "C" __global__ void kiln_add_halves(const float* halves, float* out, long long n, const float* bias, int width,
                                           float* residual) {
    wait_for_previous_kernel();
    GRID_STRIDE(i, n) {
        float v = halves[i] + halves[n + i];
        if (bias) v += bias[i % width];
        out[i] = v;
        if (residual) residual[i] += v;
    }
}

extern "C" __global__ void kiln_add_bias(float* x, const float* bias, long long n, int width) {
    wait_for_previous_kernel();
    GRID_STRIDE(i, n) x[i] += bias[i % width];
}

extern "C" __global__ void kiln_scale(float* x, float factor, long long n) {
    wait_for_previous_kernel();
    GRID_STRIDE(i, n) x[i] *= factor;
}

extern "C" __global__ void kiln_silu_mul(const float* gate, const float* up, float* out, long long n) {
    wait_for_previous_kernel();
    GRID_STRIDE(i, n) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// x = hi + lo with hi, lo in bf16: the pair carries about 16 significant bits, so two bf16 GEMMs with f32
// accumulation reproduce an f32 product against bf16 weights to ~1e-5 relative.
extern "C" __global__ void kiln_split_bf16(const float* x, bf16_t* hi, bf16_t* lo, long long n) {
    wait_for_previous_kernel();
    GRID_STRIDE(i, n) {
        float v = x[i];
        bf16_t h = float_to_bf16(v);
        hi[i] = h;
        lo[i] = float_to_bf16(v - bf16_to_float(h));
    }
}

// ---- rows ----------------------------------------------------------------------------------------------------

// The normed value, and (hi not 0) its bf16 high and low parts for the next paired or tensor-core product.
__device__ __forceinline__ void store_normed_parts(float* out, bf16_t* hi, bf16_t* lo, long long k, float o) {
    out[k] = o;
    if (hi) {
        bf16_t h = float_to_bf16(o);
        hi[k] = h;
        lo[k] = float_to_bf16(o - bf16_to_float(h));
    }
}

// One block per row; out may be x. With hi, the normed rows' bf16 parts too (kiln_split_bf16 fused).
extern "C" __global__ void kiln_rms_norm(const float* x, const float* scale, float eps, float* out, int n, bf16_t* hi,
                                         bf16_t* lo) {
    wait_for_previous_kernel();
    __shared__ float scratch[32];
    long long base = (long long) blockIdx.x * n;
    const float* row = x + base;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = row[i];
        sum += v * v;
    }
    sum = block_sum(sum, scratch);
    float inv = 1.0f / sqrtf(sum / (float) n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) store_normed_parts(out, hi, lo, base + i, row[i] * inv * scale[i]);
}

// acc += delta, then out = rms_norm(acc) * scale, one block per row: the residual add and the next layer's norm in
// one pass. out may be delta (each thread reads delta[i] before it writes out[i] for the same i, and a barrier
// separates the passes). With hi, the normed rows' bf16 parts too.
extern "C" __global__ void kiln_add_rms_norm(float* acc, const float* delta, const float* scale, float eps, float* out,
                                             int n, bf16_t* hi, bf16_t* lo) {
    wait_for_previous_kernel();
    __shared__ float scratch[32];
    long long base = (long long) blockIdx.x * n;
    float* row = acc + base;
    const float* d = delta + base;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = row[i] + d[i];
        row[i] = v;
        sum += v * v;
    }
    sum = block_sum(sum, scratch);
    float inv = 1.0f / sqrtf(sum / (float) n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) store_normed_parts(out, hi, lo, base + i, row[i] * inv * scale[i]);
}

// kiln_add_halves into the residual acc, then kiln_add_rms_norm's norm of each new acc row into out, then (hi not 0)
// kiln_split_bf16 of the normed rows for the next paired GEMM, in one pass: one block per row of `columns`, the same
// arithmetic as the three kernels apart. The product is stored in `sum` unless that is out, which the norm overwrites.
extern "C" __global__ void kiln_add_halves_rms_norm(const float* halves, long long n, const float* bias, float* sum,
                                                    float* acc, const float* scale, float eps, float* out, int columns,
                                                    bf16_t* hi, bf16_t* lo) {
    wait_for_previous_kernel();
    __shared__ float scratch[32];
    long long base = (long long) blockIdx.x * columns;
    float total = 0.0f;
    for (int i = threadIdx.x; i < columns; i += blockDim.x) {
        long long k = base + i;
        float d = halves[k] + halves[n + k];
        if (bias) d += bias[i];
        if (sum != out) sum[k] = d;
        float v = acc[k] + d;
        acc[k] = v;
        total += v * v;
    }
    total = block_sum(total, scratch);
    float inv = 1.0f / sqrtf(total / (float) columns + eps);
    for (int i = threadIdx.x; i < columns; i += blockDim.x) store_normed_parts(out, hi, lo, base + i, acc[base + i] * inv * scale[i]);
}

// One block per token.
extern "C" __global__ void kiln_embed_bf16(const bf16_t* table, const int* ids, float* out, int columns) {
    wait_then_release_next_kernel();
    const bf16_t* row = table + (long long) ids[blockIdx.x] * columns;
    float* o = out + (long long) blockIdx.x * columns;
    for (int c = threadIdx.x; c < columns; c += blockDim.x) o[c] = bf16_to_float(row[c]);
}

extern "C" __global__ void kiln_embed_f32(const float* table, const int* ids, float* out, int columns) {
    wait_then_release_next_kernel();
    const float* row = table + (long long) ids[blockIdx.x] * columns;
    float* o = out + (long long) blockIdx.x * columns;
    for (int c = threadIdx.x; c < columns; c += blockDim.x) o[c] = row[c];
}

// A step's token ids, where a negative id -1 - r stands for row r of the tokens the step ahead chose on the device
// and has not sent back yet: the next step is queued before the host knows them.
extern "C" __global__ void kiln_resolve_tokens(const int* ids, const int* pending, int* out, int count) {
    wait_then_release_next_kernel();
    GRID_STRIDE(i, count) {
        int id = ids[i];
        out[i] = id >= 0 ? id : pending[-1 - id];
    }
}

// count column ranges of width per row: range k from srcOffset + k * srcStride to dstOffset + k * dstStride (a part of
// every head at once); n = rows * count * width.
extern "C" __global__ void kiln_copy_columns(const float* src, int srcRow, int srcOffset, int srcStride, float* dst,
                                             int dstRow, int dstOffset, int dstStride, int width, int count, long long n) {
    wait_for_previous_kernel();
    long long perRow = (long long) count * width;
    GRID_STRIDE(i, n) {
        long long r = i / perRow;
        int rest = (int) (i - r * perRow);
        int k = rest / width, j = rest - k * width;
        dst[r * dstRow + dstOffset + (long long) k * dstStride + j] = src[r * srcRow + srcOffset + (long long) k * srcStride + j];
    }
}

// One block per gathered row.
extern "C" __global__ void kiln_gather_rows(const float* src, const int* rows, float* dst, int n) {
    wait_then_release_next_kernel();
    const float* s = src + (long long) rows[blockIdx.x] * n;
    float* d = dst + (long long) blockIdx.x * n;
    for (int j = threadIdx.x; j < n; j += blockDim.x) d[j] = s[j];
}

// One thread per column walks the rows in the order given: repeated destination rows accumulate without atomics,
// in the same order every time.
extern "C" __global__ void kiln_scatter_add_rows(const float* src, const int* rows, const float* scales, float* dst,
                                                 int n, int count) {
    wait_for_previous_kernel();
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    for (int i = 0; i < count; i++) dst[(long long) rows[i] * n + j] += scales[i] * src[(long long) i * n + j];
}

#endif

// Rotates pair i of a head's rotary part in place by (c, s): (a, b) becomes (a c - b s, b c + a s). The pairs are
// (i, i + half), or (2i, 2i + 1) when interleaved. (The attention kernels rotate with it too.)
__device__ __forceinline__ void rotate_pair(float* head, int i, int half, bool interleaved, float c, float s) {
    int ia = interleaved ? 2 * i : i;
    int ib = interleaved ? 2 * i + 1 : i + half;
    float a = head[ia], b = head[ib];
    head[ia] = a * c - b * s;
    head[ib] = b * c + a * s;
}

#if KILN_IN_UNIT(0)
// One block per row of x; cos and sin are tables [position][half], already scaled by the magnitude.

extern "C" __global__ void kiln_rotary(float* x, const int* positions, const float* cosTable, const float* sinTable,
                                       int rowLength, int heads, int headStride, int offset, int half,
                                       int interleaved) {
    wait_for_previous_kernel();
    float* row = x + (long long) blockIdx.x * rowLength;
    long long table = (long long) positions[blockIdx.x] * half;
    for (int e = threadIdx.x; e < heads * half; e += blockDim.x) {
        int h = e / half, i = e - h * half;
        rotate_pair(row + h * headStride + offset, i, half, interleaved, cosTable[table + i], sinTable[table + i]);
    }
}

// The (value, column) reductions of the argmax and sampling kernels: the larger value wins, the lower column on
// ties (NaN never wins). block_best leaves the block's best in warp 0 (threads 0-31); values and indices are 32
// floats and ints of shared memory.
__device__ __forceinline__ void better(float& best, int& index, float v, int i) {
    if (v > best || (v == best && i < index)) { best = v; index = i; }
}

__device__ void block_best(float& best, int& index, float* values, int* indices) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) better(best, index, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, index, o));
    if (lane == 0) { values[warp] = best; indices[warp] = index; }
    __syncthreads();
    if (warp == 0) {
        best = lane < warps ? values[lane] : -KILN_INFINITY;
        index = lane < warps ? indices[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) better(best, index, __shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, index, o));
    }
}

// The column of each row's largest value, the first on ties (one block per row): greedy decoding on the device, so
// that a step sends back one int per sequence instead of its logits. NaN never compares larger; a row of -inf or
// NaN only gives column 0, as the host's argmax does for -inf.
extern "C" __global__ void kiln_argmax_rows(const float* x, int n, int* out) {
    wait_for_previous_kernel();
    __shared__ float bestValue[32];
    __shared__ int bestIndex[32];
    const float* row = x + (long long) blockIdx.x * n;
    float best = -KILN_INFINITY;
    int index = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) better(best, index, row[i], i);
    block_best(best, index, bestValue, bestIndex);
    if (threadIdx.x == 0) out[blockIdx.x] = index == 0x7fffffff ? 0 : index;
}

// ---- sampling on the device ------------------------------------------------------------------------------------

// Floats as unsigned keys in the same order (negative values flipped): radix selection and descent over logits.
__device__ __forceinline__ unsigned int order_key(float f) {
    unsigned int u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_value(unsigned int k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ double block_sum_double(double v, double* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double t = lane < warps ? scratch[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    return t;
}

// The draw ComputeBackend.sampleRows defines (see its Javadoc), each row cut into `slices` slices of columns so
// that a few rows still spread over the whole GPU (one SM alone reads a vocabulary row at ~10-20 GB/s), in a
// sequence of launches over a grid of (slices, rows) blocks:
//   kiln_sample_prepare      each slice's largest logit and its first column; clears the row's histograms
//   kiln_sample_top_k (x3)   top-k: the k-th largest candidate logit by a radix descent over counts (only when a
//                            row has k on)
//   kiln_sample_weights      each slice's total weight of the candidates (exp in double, rounded to float, and
//                            recomputed wherever a later launch needs it); the first level of the top-p descent
//   kiln_sample_top_p (x2)   top-p: the smallest kept logit by a radix descent over the weights (only when a row
//                            has top-p below 1)
//   kiln_sample_kept         each slice's kept weight
//   kiln_sample_pick         the slice holding u times the kept total finds the column in column order
// Each radix descent takes a 32-bit order key in three levels of 11, 11 and 10 bits from the top: every block adds
// its candidates under the prefix chosen so far into the level's bins (in shared memory, then into the row's), and the next
// launch's blocks each walk those bins from the top until the count or weight above plus the bin reaches the
// target, which fixes the level's bits (block 0 records them for the launches after). Rows of temperature 0 (and
// rows whose largest logit is -inf or NaN) take the argmax and skip the rest.
#define SAMPLE_THREADS 256
#define SAMPLE_MAX_SLICES 64
#define SAMPLE_BINS 2048
#define SAMPLE_ROW_BYTES 65536

struct SampleLevel {
    unsigned int prefix, mask; // the key bits fixed so far
    double above;              // count or weight of the candidates whose key lies above the prefix
    int active;                // top-k: whether k is below the candidate count (else top-k keeps everything)
    int pad;
};

// One row's scratch (SAMPLE_ROW_BYTES each, the row's index times that into the scratch).
struct SampleRow {
    double sliceWeight[SAMPLE_MAX_SLICES];
    double sliceKept[SAMPLE_MAX_SLICES];
    float sliceMax[SAMPLE_MAX_SLICES];
    int sliceArgmax[SAMPLE_MAX_SLICES];
    SampleLevel topK[3], topP[3];
    float low;
    float pad;
    float histogramK[3][SAMPLE_BINS];
    float histogramP[3][SAMPLE_BINS];
};
static_assert(sizeof(SampleRow) <= SAMPLE_ROW_BYTES, "SampleRow outgrew SAMPLE_ROW_BYTES");

__device__ __forceinline__ int sample_shift(int level) { return level == 0 ? 21 : level == 1 ? 10 : 0; }
__device__ __forceinline__ int sample_bins(int level) { return level == 2 ? 1024 : 2048; }

// What every block of a row knows: its slice, the row's largest logit and first column (from the slices, in column
// order), and whether the row is drawn at all.
struct SampleBlock {
    const float* row;
    SampleRow* scratch;
    int from, to;       // the block's columns
    float max;
    int argmax;
    double temperature;
    int k;
    float topP, low;    // low: the min-p bound, -inf without
    bool drawn;

    // A candidate's weight exp((l - max) / T), computed in double and rounded to float: the same number each time a
    // launch needs it, so no launch stores the weights for the next (a row's weights would be another pass of its
    // size to write and read). 0 below `bound` (and for NaN).
    __device__ __forceinline__ float weight(float l, float bound) const {
        return l >= bound ? (float) exp((double) (l - max) / temperature) : 0.0f;
    }

    __device__ SampleBlock(const float* logits, int n, const float* params, unsigned char* scratchRows, bool reduce) {
        int slices = gridDim.x, per = (n + slices - 1) / slices;
        row = logits + (long long) blockIdx.y * n;
        scratch = reinterpret_cast<SampleRow*>(scratchRows + (long long) blockIdx.y * SAMPLE_ROW_BYTES);
        from = min(n, blockIdx.x * per);
        to = min(n, from + per);
        const float* p = params + 4 * blockIdx.y;
        temperature = p[0];
        k = (int) p[1];
        topP = p[2];
        float minP = p[3];
        max = -KILN_INFINITY;
        argmax = 0x7fffffff;
        drawn = false;
        low = -KILN_INFINITY;
        if (!reduce) return;
        for (int s = 0; s < slices; s++) better(max, argmax, scratch->sliceMax[s], scratch->sliceArgmax[s]);
        if (argmax == 0x7fffffff) argmax = 0;
        drawn = temperature > 0.0 && max != -KILN_INFINITY && max == max;
        // Rounded up: a float logit is at least the bound exactly when it is at least the float just above it.
        if (minP > 0.0f) low = __double2float_ru((double) max + temperature * log((double) minP));
    }
};

// The level's bits from its bins (see above): walks from the top until above + the bins reach target, as the
// sequential walk `for (b = bins - 1; b > 0; b--) { if (cum + h[b] >= target) break; cum += h[b]; }` would, with
// the block's threads each owning a run of bins, for targets above `before.above` (which the descents keep: k >= 1,
// and top-p above 0; top-p of 0 keeps the largest logit without a descent). Returns the level after, for every
// thread, and the sum of all bins in *all when given.
__device__ SampleLevel sample_select(const float* histogram, int level, SampleLevel before, double target,
                                     double* all = nullptr) {
    __shared__ double suffix[SAMPLE_THREADS + 1];
    __shared__ double warpTotals[SAMPLE_THREADS / 32];
    __shared__ SampleLevel chosen;
    int bins = sample_bins(level), per = bins / SAMPLE_THREADS, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float* mine = histogram + tid * per;
    double sum = 0.0;
    for (int i = 0; i < per; i++) sum += mine[i];
    // Suffix sums over the threads' runs (this thread's and every later one's), in a fixed order.
    double v = sum;
    for (int o = 1; o < 32; o <<= 1) {
        double d = __shfl_down_sync(0xffffffffu, v, o);
        if (lane + o < 32) v += d;
    }
    if (lane == 0) warpTotals[warp] = v;
    __syncthreads();
    for (int w = warp + 1; w < SAMPLE_THREADS / 32; w++) v += warpTotals[w];
    suffix[tid] = v;
    if (tid == 0) suffix[SAMPLE_THREADS] = 0.0;
    __syncthreads();
    if (all) *all = suffix[0];
    int shift = sample_shift(level);
    unsigned int mask = before.mask | ((unsigned int) (bins - 1) << shift);
    if (tid == 0) { // the default: no bin above bin 0 reaches the target
        double cum = before.above + suffix[1];
        for (int i = per - 1; i >= 1; i--) cum += mine[i];
        chosen = SampleLevel{before.prefix, mask, cum, before.active, 0};
    }
    __syncthreads();
    double cum = before.above + suffix[tid + 1];
    if (cum < target && target <= before.above + suffix[tid]) {
        for (int i = per - 1; i >= 0; i--) {
            int b = tid * per + i;
            if (b == 0) break;
            if (cum + mine[i] >= target) {
                chosen = SampleLevel{before.prefix | ((unsigned int) b << shift), mask, cum, before.active, 0};
                break;
            }
            cum += mine[i];
        }
    }
    __syncthreads();
    SampleLevel result = chosen;
    __syncthreads(); // before a later call overwrites `chosen`
    return result;
}

// Adds the block's candidates i (logit at least low) under the level's prefix into the level's bins, each as 1 or,
// with `weighted`, as its weight: first into the block's own bins in shared memory (a row's candidates crowd into a
// few bins, which atomics in global memory would serialise on), then the block's nonzero bins into the row's.
__device__ __forceinline__ void sample_count(const SampleBlock& b, bool weighted, float* histogram, int level,
                                             SampleLevel at, float low) {
    __shared__ float bins[SAMPLE_BINS];
    int shift = sample_shift(level), count = sample_bins(level);
    unsigned int binMask = (unsigned int) count - 1;
    for (int i = threadIdx.x; i < count; i += SAMPLE_THREADS) bins[i] = 0.0f;
    __syncthreads();
    for (int i = b.from + threadIdx.x; i < b.to; i += SAMPLE_THREADS) {
        float l = b.row[i];
        if (!(l >= low)) continue;
        unsigned int key = order_key(l);
        if ((key & at.mask) != at.prefix) continue;
        float v = weighted ? b.weight(l, low) : 1.0f;
        if (v > 0.0f) atomicAdd(&bins[(key >> shift) & binMask], v);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < count; i += SAMPLE_THREADS) {
        if (bins[i] != 0.0f) atomicAdd(&histogram[i], bins[i]);
    }
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
kiln_sample_prepare(const float* logits, int n, const float* params, unsigned char* scratchRows) {
    wait_for_previous_kernel();
    __shared__ float values[32];
    __shared__ int indices[32];
    SampleBlock b(logits, n, params, scratchRows, false);
    float best = -KILN_INFINITY;
    int index = 0x7fffffff;
    for (int i = b.from + threadIdx.x; i < b.to; i += SAMPLE_THREADS) better(best, index, b.row[i], i);
    block_best(best, index, values, indices);
    if (threadIdx.x == 0) {
        b.scratch->sliceMax[blockIdx.x] = best;
        b.scratch->sliceArgmax[blockIdx.x] = index;
    }
    float* histograms = &b.scratch->histogramK[0][0];
    for (int i = blockIdx.x * SAMPLE_THREADS + threadIdx.x; i < 6 * SAMPLE_BINS; i += gridDim.x * SAMPLE_THREADS) {
        histograms[i] = 0.0f;
    }
}

// Level `level` of the top-k descent: picks the bits of the level before (from its bins), then counts this level.
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
kiln_sample_top_k(const float* logits, int n, const float* params, unsigned char* scratchRows, int level) {
    wait_for_previous_kernel();
    SampleBlock b(logits, n, params, scratchRows, true);
    if (!b.drawn || b.k <= 0) return;
    SampleLevel at = SampleLevel{0u, 0u, 0.0, 1, 0};
    if (level > 0) {
        double count; // of the level's candidates: at the first level, every candidate
        at = sample_select(b.scratch->histogramK[level - 1], level - 1, b.scratch->topK[level - 1], (double) b.k, &count);
        if (level == 1) at.active = b.k < count;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) b.scratch->topK[level] = at;
    if (at.active) sample_count(b, false, b.scratch->histogramK[level], level, at, b.low);
}

// Each slice's total weight of the candidates, and the first top-p level.
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
kiln_sample_weights(const float* logits, int n, const float* params, unsigned char* scratchRows) {
    wait_for_previous_kernel();
    __shared__ double scratch[32];
    SampleBlock b(logits, n, params, scratchRows, true);
    if (!b.drawn) return;
    float low = b.low;
    if (b.k > 0) {
        SampleLevel last = sample_select(b.scratch->histogramK[2], 2, b.scratch->topK[2], (double) b.k);
        if (last.active) low = fmaxf(low, key_value(last.prefix));
    }
    double total = 0.0;
    for (int i = b.from + threadIdx.x; i < b.to; i += SAMPLE_THREADS) total += b.weight(b.row[i], low);
    total = block_sum_double(total, scratch);
    if (threadIdx.x == 0) {
        b.scratch->sliceWeight[blockIdx.x] = total;
        if (blockIdx.x == 0) {
            b.scratch->low = low;
            b.scratch->topP[0] = SampleLevel{0u, 0u, 0.0, 1, 0};
        }
    }
    if (b.topP < 1.0f) sample_count(b, true, b.scratch->histogramP[0], 0, SampleLevel{0u, 0u, 0.0, 1, 0}, low);
}

// The weight top-p keeps of a row: topP times the total of every slice (summed in slice order).
__device__ __forceinline__ double top_p_target(const SampleBlock& b) {
    double total = 0.0;
    for (int s = 0; s < gridDim.x; s++) total += b.scratch->sliceWeight[s];
    return (double) b.topP * total;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
kiln_sample_top_p(const float* logits, int n, const float* params, unsigned char* scratchRows, int level) {
    wait_for_previous_kernel();
    SampleBlock b(logits, n, params, scratchRows, true);
    if (!b.drawn || !(b.topP < 1.0f) || !(b.topP > 0.0f)) return;
    SampleLevel at = sample_select(b.scratch->histogramP[level - 1], level - 1, b.scratch->topP[level - 1],
                                   top_p_target(b));
    if (blockIdx.x == 0 && threadIdx.x == 0) b.scratch->topP[level] = at;
    sample_count(b, true, b.scratch->histogramP[level], level, at, b.scratch->low);
}

// The kept columns (logit at least the final threshold, weight above 0) of the block's slice: their weight.
__device__ __forceinline__ float sample_threshold(const SampleBlock& b) {
    float threshold = b.scratch->low;
    if (!(b.topP > 0.0f)) return fmaxf(threshold, b.max); // the host's walk stops at the largest logit (and its ties)
    if (b.topP < 1.0f) {
        SampleLevel last = sample_select(b.scratch->histogramP[2], 2, b.scratch->topP[2], top_p_target(b));
        threshold = fmaxf(threshold, key_value(last.prefix));
    }
    return threshold;
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
kiln_sample_kept(const float* logits, int n, const float* params, unsigned char* scratchRows) {
    wait_for_previous_kernel();
    __shared__ double scratch[32];
    SampleBlock b(logits, n, params, scratchRows, true);
    if (!b.drawn) return;
    float threshold = sample_threshold(b);
    double kept = 0.0;
    for (int i = b.from + threadIdx.x; i < b.to; i += SAMPLE_THREADS) kept += b.weight(b.row[i], threshold);
    kept = block_sum_double(kept, scratch);
    if (threadIdx.x == 0) b.scratch->sliceKept[blockIdx.x] = kept;
}

// The draw: the slice whose kept weight holds u times the kept total walks its columns in order (each thread a
// contiguous run, the runs' weights scanned); past the total by rounding, the last kept column.
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
kiln_sample_pick(const float* logits, int n, const float* params, unsigned char* scratchRows, const float* uniforms,
                 int* out) {
    wait_for_previous_kernel();
    __shared__ double dscratch[32];
    __shared__ int sharedPick;
    SampleBlock b(logits, n, params, scratchRows, true);
    if (!b.drawn) {
        if (blockIdx.x == 0 && threadIdx.x == 0) out[blockIdx.y] = b.argmax;
        return;
    }
    double before = 0.0, total = 0.0;
    int lastSlice = -1;
    for (int s = 0; s < gridDim.x; s++) {
        double kept = b.scratch->sliceKept[s];
        if (s < blockIdx.x) before += kept;
        total += kept;
        if (kept > 0.0) lastSlice = s;
    }
    if (lastSlice < 0) { // no candidate kept any weight (min-p above 1, say): the host's walk keeps the argmax
        if (blockIdx.x == 0 && threadIdx.x == 0) out[blockIdx.y] = b.argmax;
        return;
    }
    double target = (double) uniforms[blockIdx.y] * total;
    double mineKept = b.scratch->sliceKept[blockIdx.x];
    bool holds = mineKept > 0.0 && before <= target && target < before + mineKept;
    bool fallback = !(target < total) && (int) blockIdx.x == lastSlice; // past the total by rounding
    if (!holds && !fallback) return;
    float threshold = sample_threshold(b);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int chunk = (b.to - b.from + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    int from = b.from + threadIdx.x * chunk, to = min(b.to, from + chunk);
    double local = 0.0;
    int lastKept = -1;
    for (int i = from; i < to; i++) {
        float w = b.weight(b.row[i], threshold);
        if (w > 0.0f) { local += w; lastKept = i; }
    }
    double inclusive = local;
    for (int o = 1; o < 32; o <<= 1) {
        double up = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (lane >= o) inclusive += up;
    }
    if (lane == 31) dscratch[warp] = inclusive;
    if (threadIdx.x == 0) sharedPick = -1;
    __syncthreads();
    double exclusive = before + inclusive - local;
    for (int w = 0; w < warp; w++) exclusive += dscratch[w];
    if (holds && local > 0.0 && exclusive <= target && target < exclusive + local) {
        double cumulative = exclusive;
        int pick = lastKept;
        for (int i = from; i < to; i++) {
            float w = b.weight(b.row[i], threshold);
            if (w == 0.0f) continue;
            cumulative += w;
            if (cumulative > target) { pick = i; break; }
        }
        atomicMax(&sharedPick, pick);
    }
    __syncthreads();
    bool none = sharedPick < 0; // every thread reads it before any thread may change it
    __syncthreads();
    // Not found by rounding (or past the total): the slice's last kept column, as the host's walk ends there.
    if (none) atomicMax(&sharedPick, lastKept);
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.y] = sharedPick < 0 ? b.argmax : sharedPick;
}

// Wide rows (a vocabulary of logits) in two launches: blocks (ARGMAX_SLICES per row) reduce slices to a (value,
// column) pair each, then one block per row reduces the pairs: one SM alone would read a 600 KB row at ~10 GB/s.
#define ARGMAX_SLICES 64


extern "C" __global__ void kiln_argmax_slices(const float* x, int n, float* bestValues, int* bestIndices) {
    wait_for_previous_kernel();
    __shared__ float values[32];
    __shared__ int indices[32];
    const float* row = x + (long long) blockIdx.y * n;
    int per = (n + gridDim.x - 1) / gridDim.x;
    int from = blockIdx.x * per, to = min(n, from + per);
    float best = -KILN_INFINITY;
    int index = 0x7fffffff;
    for (int i = from + threadIdx.x; i < to; i += blockDim.x) better(best, index, row[i], i);
    block_best(best, index, values, indices);
    if (threadIdx.x == 0) {
        bestValues[blockIdx.y * gridDim.x + blockIdx.x] = best;
        bestIndices[blockIdx.y * gridDim.x + blockIdx.x] = index;
    }
}

extern "C" __global__ void kiln_argmax_merge(const float* bestValues, const int* bestIndices, int slices, int* out) {
    wait_for_previous_kernel();
    __shared__ float values[32];
    __shared__ int indices[32];
    float best = -KILN_INFINITY;
    int index = 0x7fffffff;
    for (int s = threadIdx.x; s < slices; s += blockDim.x) {
        better(best, index, bestValues[blockIdx.x * slices + s], bestIndices[blockIdx.x * slices + s]);
    }
    block_best(best, index, values, indices);
    if (threadIdx.x == 0) out[blockIdx.x] = index == 0x7fffffff ? 0 : index;
}

// Two rotations by the same positions in one launch (a layer's queries and keys): blockIdx.y picks the tensor.
extern "C" __global__ void kiln_rotary2(float* x, int rowLength, int heads, float* x2, int rowLength2, int heads2,
                                        const int* positions, const float* cosTable, const float* sinTable,
                                        int headStride, int offset, int half, int interleaved) {
    wait_for_previous_kernel();
    if (blockIdx.y == 1) {
        x = x2;
        rowLength = rowLength2;
        heads = heads2;
    }
    float* row = x + (long long) blockIdx.x * rowLength;
    long long table = (long long) positions[blockIdx.x] * half;
    for (int e = threadIdx.x; e < heads * half; e += blockDim.x) {
        int h = e / half, i = e - h * half;
        rotate_pair(row + h * headStride + offset, i, half, interleaved, cosTable[table + i], sinTable[table + i]);
    }
}
#endif

// ---- matrix-vector products for few rows (decode) --------------------------------------------------------------

#define GEMV_MAX_TOKENS 8

// out[t, r] = sum_c x[t, c] * W[r, c] for t < tokens <= GEMV_MAX_TOKENS: one warp per weight row, so the weight
// is streamed from memory exactly once whatever the number of tokens. vectorized: columns % 8 == 0 and W, x
// 16-byte aligned, each lane then loads 8 weights (16 bytes) at a time.
#if KILN_IN_UNIT(0)
extern "C" __global__ void kiln_gemv_bf16(const bf16_t* w, const float* x, float* out, int rows, int columns,
                                          int tokens, int vectorized, const float* bias) {
    wait_for_previous_kernel();
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
            if (lane == 0) out[(long long) t * rows + row] = bias ? v + bias[row] : v;
        }
    }
}
#endif

// The vectorized product specialised for a token count known at compile time (kiln_gemv_bf16_t1 .. _t8): no
// branch between a weight load and its use, so each lane issues GEMV_UNROLL independent 16-byte weight loads
// before the first multiply (the generic kernel above keeps about one in flight, which leaves HBM idle).
// Requires columns % 8 == 0 and W, x 16-byte aligned. The weight is read once for all tokens; activations come
// from L1/L2.
#define GEMV_UNROLL 4

// Fusions with the neighbours of a product, made by the Java side's recorder (see Kernels):
//  - an RMSNorm just before, whose output the product reads: x is then the norm's input row (the residual),
//    the product is computed with x * scale and multiplied at the end by inv = 1 / sqrt(mean(x^2) + eps), the
//    norm's own factor (every warp reads all of x anyway, so the squares cost no extra memory traffic); the normed
//    rows x * inv * scale are also stored in `normed`, as the norm would have, for later readers: spread over all
//    the grid's warps (or blocks), a few elements each, as one warp storing them all would hold up the kernel's end;
//  - a residual add just after (residual += the product): the block that owns an output row adds it there too.
// scale == 0 means no norm, residual == 0 no add; normed == 0 with a norm stores no normed rows (no reader wants
// them; the Java side always passes the norm's output, time_decode_step.py measures without).

// The weight formats of these products. A lane loads 16 bytes of a row at a time (a chunk): 8 bf16 weights, or 16
// INT8 codes q whose row's f32 scale s multiplies the row's sums once at the end (W[r, c] = q[r, c] * s[r]), or 16 FP8
// codes whose 128x128 block's scale multiplies the chunk's sums (Fp8Weights below), or 32 INT4 codes whose group's
// scale does the same (Int4Weights). A quantized weight's scales follow all its rows' codes in memory, so every format
// takes the same arguments (the weight's address) and the Java side's fusions treat them alike. Rows are `columns`
// weights long and 16-byte aligned.
struct Bf16Weights {
    static constexpr int COLUMNS = 8; // columns of a chunk
    static constexpr int SHIFT = 3;   // log2(COLUMNS)
    typedef bf16_t Weight;
    static constexpr int PACKING = 1; // columns a Weight holds
    static constexpr bool ROW_GROUPS = false;   // computed by gemv_row_group (see there)
    static constexpr bool ROW_SCALES = false;   // one f32 scale per row after the codes
    static constexpr bool BLOCK_SCALES = false; // one f32 scale per block of 128 x 128 after the codes
    // Columns 8 H .. 8 H + 7 of a chunk as floats.
    template <int H>
    static __device__ __forceinline__ void widen(const uint4& p, float (&w)[8]) {
        w[0] = __uint_as_float(p.x << 16);
        w[1] = __uint_as_float(p.x & 0xffff0000u);
        w[2] = __uint_as_float(p.y << 16);
        w[3] = __uint_as_float(p.y & 0xffff0000u);
        w[4] = __uint_as_float(p.z << 16);
        w[5] = __uint_as_float(p.z & 0xffff0000u);
        w[6] = __uint_as_float(p.w << 16);
        w[7] = __uint_as_float(p.w & 0xffff0000u);
    }
};

// Byte K of a word as the float 2^23 + byte: one byte permutation places it under the exponent of 2^23, where the
// mantissa's last bits count units. Subtracting 2^23 plus the code's bias then leaves the code exactly: two
// instructions a code instead of a conversion on the slower multi-function unit.
template <int K>
__device__ __forceinline__ float byte_as_float(unsigned int word) {
    return __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u + K));
}

// Flipping the sign bits first turns a signed code q into q + 128, so subtracting 2^23 + 128 leaves q.
template <int K>
__device__ __forceinline__ float int8_code(unsigned int flipped) {
    return byte_as_float<K>(flipped) - 8388736.0f;
}

__device__ __forceinline__ void int8_word(unsigned int word, float* w) {
    unsigned int u = word ^ 0x80808080u;
    w[0] = int8_code<0>(u);
    w[1] = int8_code<1>(u);
    w[2] = int8_code<2>(u);
    w[3] = int8_code<3>(u);
}

// Columns 8 H .. 8 H + 7 of a chunk of 16 one-byte codes (INT8, FP8): its words 2 H and 2 H + 1, four codes each
// widened by `word`.
template <int H>
__device__ __forceinline__ void widen_byte_codes(const uint4& p, float (&w)[8], void (*word)(unsigned int, float*)) {
    word(H == 0 ? p.x : p.z, w);
    word(H == 0 ? p.y : p.w, w + 4);
}

struct Int8Weights {
    static constexpr int COLUMNS = 16;
    static constexpr int SHIFT = 4;
    typedef signed char Weight;
    static constexpr int PACKING = 1;
    static constexpr bool ROW_GROUPS = true;
    static constexpr bool ROW_SCALES = true;
    static constexpr bool BLOCK_SCALES = false;
    template <int H>
    static __device__ __forceinline__ void widen(const uint4& p, float (&w)[8]) {
        widen_byte_codes<H>(p, w, int8_word);
    }
};

// e4m3 codes (OCP E4M3FN, fp8 weights; Fp8Weight) with one f32 scale per block of FP8_BLOCK x FP8_BLOCK weights
// (DeepSeek-V3's blocks), the scales [ceil(rows / 128)][ceil(columns / 128)] after the codes. A code's decode is
// quant_kernels.cu's (e4m3_top_byte): an arithmetic shift by 4 puts its exponent and mantissa under f32's, one
// multiplication by 2^120 rebiases, subnormals included (this file is compiled without flush-to-zero). A word of four
// codes holding a NaN code (S.1111.111) makes its first weight NaN, so that the row's sums are NaN as the product with
// that weight would be (a test and a select per four codes; adding 1 to a byte's low seven bits carries into its
// bit 7 only from 0x7F).
#define FP8_BLOCK 128

__device__ __forceinline__ bool e4m3_word_has_nan(unsigned int word) {
    return (((word & 0x7F7F7F7Fu) + 0x01010101u) & 0x80808080u) != 0u;
}

__device__ __forceinline__ void e4m3_word(unsigned int word, float* w) {
#pragma unroll
    for (int k = 0; k < 4; k++) {
        w[k] = __uint_as_float((unsigned int) ((int) (word << (24 - 8 * k)) >> 4) & 0x87F00000u) * 0x1p120f;
    }
    if (e4m3_word_has_nan(word)) w[0] = __uint_as_float(0x7FC00000u);
}

struct Fp8Weights {
    static constexpr int COLUMNS = 16;
    static constexpr int SHIFT = 4;
    typedef unsigned char Weight;
    static constexpr int PACKING = 1;
    static constexpr bool ROW_GROUPS = true;
    static constexpr bool ROW_SCALES = false;
    static constexpr bool BLOCK_SCALES = true;
    static constexpr int SCALE_ROWS = FP8_BLOCK;    // rows and columns a scale covers
    static constexpr int SCALE_COLUMNS = FP8_BLOCK;
    template <int H>
    static __device__ __forceinline__ void widen(const uint4& p, float (&w)[8]) {
        widen_byte_codes<H>(p, w, e4m3_word);
    }
};

// INT4 codes u = q + 8 two a byte (QuantizedWeight's layout: column 2j in the low nibble of byte j) with one f32 scale
// per row and group of INT4_GEMV_GROUP columns, [rows][ceil(columns / INT4_GEMV_GROUP)] after the codes: a chunk's 32
// columns lie in one group, whose scale multiplies the chunk's sums as FP8's block scales do. A code widens as INT8's
// do: one byte permutation puts it under the exponent of 2^23, one subtraction of 2^23 + 8 leaves q. (Groups of 64
// columns, and more than one token, take the format's own GEMVs in quant_kernels.cu.)
#define INT4_GEMV_GROUP 128

template <int K>
__device__ __forceinline__ float int4_code(unsigned int nibbles) {
    return byte_as_float<K>(nibbles) - 8388616.0f;
}

// Columns 8 H .. 8 H + 7 of a chunk: word H, its low nibbles the even columns and its high nibbles the odd ones.
__device__ __forceinline__ void int4_word(unsigned int word, float* w) {
    unsigned int even = word & 0x0F0F0F0Fu, odd = (word >> 4) & 0x0F0F0F0Fu;
    w[0] = int4_code<0>(even);
    w[1] = int4_code<0>(odd);
    w[2] = int4_code<1>(even);
    w[3] = int4_code<1>(odd);
    w[4] = int4_code<2>(even);
    w[5] = int4_code<2>(odd);
    w[6] = int4_code<3>(even);
    w[7] = int4_code<3>(odd);
}

struct Int4Weights {
    static constexpr int COLUMNS = 32;
    static constexpr int SHIFT = 5;
    typedef unsigned char Weight;
    static constexpr int PACKING = 2;
    static constexpr bool ROW_GROUPS = true;
    static constexpr bool ROW_SCALES = false;
    static constexpr bool BLOCK_SCALES = true;
    static constexpr int SCALE_ROWS = 1;
    static constexpr int SCALE_COLUMNS = INT4_GEMV_GROUP;
    template <int H>
    static __device__ __forceinline__ void widen(const uint4& p, float (&w)[8]) {
        int4_word(H == 0 ? p.x : H == 1 ? p.y : H == 2 ? p.z : p.w, w);
    }
};

// Rows a warp (or split block) of the INT8 products computes, and loads of each in flight (see gemv_row_group).
#define INT8_ROWS 4
#define INT8_UNROLL 1

// Row `row` of a weight in format F as 16-byte chunks.
template <typename F>
__device__ __forceinline__ const uint4* weight_row(const void* w, long long row, int columns) {
    return reinterpret_cast<const uint4*>(static_cast<const typename F::Weight*>(w) + row * columns / F::PACKING);
}

// The scale of a row (1 for formats without row scales): a weight, so it may be read before waiting for the kernel
// ahead.
template <typename F>
__device__ __forceinline__ float row_scale(const void* w, int rows, int columns, int row) {
    if constexpr (F::ROW_SCALES) {
        return __ldg(reinterpret_cast<const float*>(static_cast<const typename F::Weight*>(w) + (long long) rows * columns / F::PACKING) + row);
    } else {
        return 1.0f;
    }
}

// Each row's thread-partial sums times its scale (nothing for unscaled formats).
template <typename F, int ROWS, int TOKENS>
__device__ __forceinline__ void apply_row_scales(float (&acc)[ROWS][TOKENS], const float (&scales)[ROWS]) {
    if constexpr (F::ROW_SCALES) {
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
#pragma unroll
            for (int t = 0; t < TOKENS; t++) acc[r][t] *= scales[r];
        }
    }
}

// The scales of a row's blocks (formats with block scales; null otherwise): chunk c of the row (within one block)
// takes element c / (SCALE_COLUMNS / COLUMNS).
template <typename F>
__device__ __forceinline__ const float* block_scale_row(const void* w, int rows, int columns, int row) {
    if constexpr (F::BLOCK_SCALES) {
        const float* scales = reinterpret_cast<const float*>(static_cast<const typename F::Weight*>(w) + (long long) rows * columns / F::PACKING);
        return scales + (long long) (row / F::SCALE_ROWS) * ((columns + F::SCALE_COLUMNS - 1) / F::SCALE_COLUMNS);
    } else {
        return nullptr;
    }
}

// Columns 8 H .. 8 H + 7 of a chunk of every token's x (times scale when normalizing, the squares of x added to
// sumsq), dotted with each row's weights there into acc.
template <typename F, int H, int TOKENS, int ROWS, bool NORM>
__device__ __forceinline__ void dot_eight(const uint4 (&packed)[ROWS], const float* x, const float* scale, int columns,
                                          int chunk, float (&acc)[ROWS][TOKENS], float (&sumsq)[TOKENS]) {
    float wv[ROWS][8];
#pragma unroll
    for (int r = 0; r < ROWS; r++) F::template widen<H>(packed[r], wv[r]);
    {
        int quad = (F::COLUMNS / 4) * chunk + 2 * H; // the first float4 of these 8 columns
        float4 sa, sb;
        if (NORM) {
            const float4* sp = reinterpret_cast<const float4*>(scale) + quad;
            sa = sp[0];
            sb = sp[1];
        }
#pragma unroll
        for (int t = 0; t < TOKENS; t++) {
            const float4* xp = reinterpret_cast<const float4*>(x + (long long) t * columns) + quad;
            float4 a = xp[0], b = xp[1];
            if (NORM) {
                sumsq[t] += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z + b.w * b.w;
                a.x *= sa.x; a.y *= sa.y; a.z *= sa.z; a.w *= sa.w;
                b.x *= sb.x; b.y *= sb.y; b.z *= sb.z; b.w *= sb.w;
            }
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                acc[r][t] += wv[r][0] * a.x + wv[r][1] * a.y + wv[r][2] * a.z + wv[r][3] * a.w
                           + wv[r][4] * b.x + wv[r][5] * b.y + wv[r][6] * b.z + wv[r][7] * b.w;
            }
        }
    }
}

// One chunk of every token's x dotted with each row's chunk of weights into acc, 8 columns at a time (widening only
// those 8 keeps the registers of a 16-column INT8 or 32-column INT4 chunk within those of a bf16 one).
template <typename F, int TOKENS, int ROWS, bool NORM>
__device__ __forceinline__ void dot_chunk(const uint4 (&packed)[ROWS], const float* x, const float* scale, int columns,
                                          int chunk, float (&acc)[ROWS][TOKENS], float (&sumsq)[TOKENS]) {
    dot_eight<F, 0, TOKENS, ROWS, NORM>(packed, x, scale, columns, chunk, acc, sumsq);
    if constexpr (F::COLUMNS >= 16) dot_eight<F, 1, TOKENS, ROWS, NORM>(packed, x, scale, columns, chunk, acc, sumsq);
    if constexpr (F::COLUMNS == 32) {
        dot_eight<F, 2, TOKENS, ROWS, NORM>(packed, x, scale, columns, chunk, acc, sumsq);
        dot_eight<F, 3, TOKENS, ROWS, NORM>(packed, x, scale, columns, chunk, acc, sumsq);
    }
}

// The UNROLL chunks base, base + stride, ... of every row (zeros from `last` on), and with block scales each chunk's
// scale: weights only, so they may be loaded before the wait.
template <typename F, int ROWS, int UNROLL>
__device__ __forceinline__ void load_chunks(const uint4* const (&wrow)[ROWS], int base, int last, int stride,
                                            uint4 (&packed)[UNROLL][ROWS], float (&chunkScale)[UNROLL][ROWS],
                                            const float* const* blockScales) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
        int c = base + u * stride;
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            packed[u][r] = c < last ? load_weights(wrow[r] + c) : make_uint4(0u, 0u, 0u, 0u);
            if constexpr (F::BLOCK_SCALES) {
                chunkScale[u][r] = c < last ? __ldg(blockScales[r] + c / (F::SCALE_COLUMNS / F::COLUMNS)) : 0.0f;
            }
        }
    }
}

// Those chunks dotted with every token's x into acc (the squares of x into sumsq when normalizing).
template <typename F, int TOKENS, int ROWS, int UNROLL, bool NORM>
__device__ __forceinline__ void dot_loaded(const uint4 (&packed)[UNROLL][ROWS], const float (&chunkScale)[UNROLL][ROWS],
                                           const float* x, const float* scale, int columns, int base, int last,
                                           int stride, float (&acc)[ROWS][TOKENS], float (&sumsq)[TOKENS]) {
#pragma unroll
    for (int u = 0; u < UNROLL; u++) {
        int c = base + u * stride;
        if (c >= last) continue;
        if constexpr (F::BLOCK_SCALES) {
            float part[ROWS][TOKENS];
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
#pragma unroll
                for (int t = 0; t < TOKENS; t++) part[r][t] = 0.0f;
            }
            dot_chunk<F, TOKENS, ROWS, NORM>(packed[u], x, scale, columns, c, part, sumsq);
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
#pragma unroll
                for (int t = 0; t < TOKENS; t++) acc[r][t] = fmaf(part[r][t], chunkScale[u][r], acc[r][t]);
            }
        } else {
            dot_chunk<F, TOKENS, ROWS, NORM>(packed[u], x, scale, columns, c, acc, sumsq);
        }
    }
}

// One thread's share of ROWS weight rows . x[t], for every token, over the chunks first, first + stride, ... below
// last: thread-partial sums accumulated into acc[r] (and the squares of x into sumsq when
// normalizing). The UNROLL loads of every row are issued together before any multiply (HBM latency is hidden
// only by many loads in flight), and the first ones before waiting for the kernel ahead, whose output x is: only
// the weights may be read before that wait. x rows are `columns` apart. Formats with block scales: each row's
// block scales at blockScales[r] (block_scale_row), each chunk's sums times its block's scale, loaded with the chunk.
template <typename F, int TOKENS, int ROWS, int UNROLL, bool NORM>
__device__ __forceinline__ void dot_rows(const uint4* const (&wrow)[ROWS], const float* x, const float* scale,
                                         int columns, int first, int last, int stride,
                                         float (&acc)[ROWS][TOKENS], float (&sumsq)[TOKENS],
                                         const float* const* blockScales = nullptr) {
    bool waited = false;
    for (int base = first; base < last; base += stride * UNROLL) {
        uint4 packed[UNROLL][ROWS];
        float chunkScale[UNROLL][ROWS];
        load_chunks<F, ROWS, UNROLL>(wrow, base, last, stride, packed, chunkScale, blockScales);
        if (!waited) {
            wait_for_previous_kernel();
            waited = true;
        }
        dot_loaded<F, TOKENS, ROWS, UNROLL, NORM>(packed, chunkScale, x, scale, columns, base, last, stride, acc, sumsq);
    }
    if (!waited) wait_for_previous_kernel();
}

// Products whose warps each own rows (or gate/up row pairs) read all of x in every warp: four times a block, each
// element multiplied by the norm's scale and squared each time. When the launch gives them 4 * columns * tokens bytes
// of dynamic shared memory (the Java side does up to Kernels.STAGED_MAX_BYTES), the block's threads instead write x
// (times the norm's scale) there once after the wait and sum its squares once, and the warps dot their rows with that
// copy: one multiply fewer a weight, a quarter of the activation loads, and the
// activations read from shared memory rather than through L1. H100, 1.5B shape, one batch-1 step in one graph:
// 1.420-1.430 -> 1.338-1.342 ms with gate/up and lm_head staged (lm_head's share 0.007 ms).
#define STAGE_PRELOAD 4

// Bytes of dynamic shared memory this launch gave each block.
__device__ __forceinline__ unsigned dynamic_shared_bytes() {
    unsigned bytes;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
    return bytes;
}

// Most tokens a staged product takes (Kernels.STAGED_MAX_TOKENS): the kernels of more tokens are compiled without the
// staged path, which would otherwise cost them registers.
#define STAGED_MAX_TOKENS 4

// Whether a warp-per-row product of `TOKENS` tokens takes the staged path: its launch gave it the shared memory for x.
template <int TOKENS>
__device__ __forceinline__ bool stages_activations(int columns) {
    if constexpr (TOKENS <= STAGED_MAX_TOKENS) {
        return (columns & 3) == 0 && dynamic_shared_bytes() >= 4u * (unsigned) columns * TOKENS;
    } else {
        return false;
    }
}

template <bool NORM>
__device__ __forceinline__ void stage_quad(const float* x, float4 s, int q, float* xs, float& squares) {
    float4 a = reinterpret_cast<const float4*>(x)[q];
    if (NORM) {
        squares += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
        a.x *= s.x; a.y *= s.y; a.z *= s.z; a.w *= s.w;
    }
    reinterpret_cast<float4*>(xs)[q] = a;
}

// After the wait: every token's x (times the scale, whose first quads `early` holds) into xs by the block's threads,
// and with a norm each token's sum of squares over the whole row into sumsq, for every thread once xs is complete.
template <int TOKENS, bool NORM>
__device__ __forceinline__ void stage_tokens(const float* x, const float* scale, const float4 (&early)[STAGE_PRELOAD],
                                             int columns, float* xs, float (&sumsq)[TOKENS]) {
    __shared__ float blockSquares[32];
    float squares[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) squares[t] = 0.0f;
    int quads = columns >> 2;
#pragma unroll
    for (int j = 0; j < STAGE_PRELOAD; j++) {
        int q = threadIdx.x + j * blockDim.x;
        if (q < quads) {
#pragma unroll
            for (int t = 0; t < TOKENS; t++) {
                stage_quad<NORM>(x + (long long) t * columns, early[j], q, xs + t * columns, squares[t]);
            }
        }
    }
    for (int q = threadIdx.x + STAGE_PRELOAD * blockDim.x; q < quads; q += blockDim.x) {
        float4 s = NORM ? reinterpret_cast<const float4*>(scale)[q] : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int t = 0; t < TOKENS; t++) stage_quad<NORM>(x + (long long) t * columns, s, q, xs + t * columns, squares[t]);
    }
    if (NORM) {
#pragma unroll
        for (int t = 0; t < TOKENS; t++) sumsq[t] = block_sum(squares[t], blockSquares); // its barriers publish xs
    } else {
        __syncthreads();
    }
}

// dot_rows with x staged in shared memory: the first UNROLL loads of every row and the norm's first scale quads
// (weights, both) before the wait, then x staged, then the products over the shared copy; sumsq gets each token's
// squares over the whole row (not a thread's share). Every thread of the block must call it.
template <typename F, int TOKENS, int ROWS, int UNROLL, bool NORM>
__device__ __forceinline__ void dot_rows_staged(const uint4* const (&wrow)[ROWS], const float* x, const float* scale,
                                                int columns, int first, int last, int stride,
                                                float (&acc)[ROWS][TOKENS], float (&sumsq)[TOKENS],
                                                const float* const* blockScales = nullptr) {
    extern __shared__ float4 staged_x[];
    float* xs = reinterpret_cast<float*>(staged_x);
    uint4 packed[UNROLL][ROWS];
    float chunkScale[UNROLL][ROWS];
    load_chunks<F, ROWS, UNROLL>(wrow, first, last, stride, packed, chunkScale, blockScales);
    float4 early[STAGE_PRELOAD];
#pragma unroll
    for (int j = 0; j < STAGE_PRELOAD; j++) {
        int q = threadIdx.x + j * blockDim.x;
        early[j] = NORM && q < (columns >> 2) ? __ldg(reinterpret_cast<const float4*>(scale) + q) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    wait_for_previous_kernel();
    stage_tokens<TOKENS, NORM>(x, scale, early, columns, xs, sumsq);
    for (int base = first; base < last; base += stride * UNROLL) {
        if (base != first) load_chunks<F, ROWS, UNROLL>(wrow, base, last, stride, packed, chunkScale, blockScales);
        dot_loaded<F, TOKENS, ROWS, UNROLL, false>(packed, chunkScale, xs, nullptr, columns, base, last, stride, acc, sumsq);
    }
}

// The norm's factor per token from the summed squares (kiln_rms_norm's formula), 1 without a norm.
template <int TOKENS, bool NORM>
__device__ __forceinline__ void norm_factors(const float (&sumsq)[TOKENS], int columns, float eps, float (&inv)[TOKENS]) {
#pragma unroll
    for (int t = 0; t < TOKENS; t++) inv[t] = NORM ? 1.0f / sqrtf(sumsq[t] / (float) columns + eps) : 1.0f;
}

// The normed rows as kiln_rms_norm stores them, written by the threads first, first + stride, ...
template <int TOKENS>
__device__ __forceinline__ void store_normed(const float* x, const float* scale, int columns, const float (&inv)[TOKENS],
                                             float* normed, int first, int stride) {
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        for (int c = first; c < columns; c += stride) {
            normed[(long long) t * columns + c] = x[(long long) t * columns + c] * inv[t] * scale[c];
        }
    }
}

// out[t, row] = the product (times the norm's factor, plus bias); residual[t, row] += the same. REDUCE: the add is a
// reduction (red.global.add.f32), which the storing thread issues and leaves to L2, where a read-modify-write held its
// block until the residual's old value came back; one thread adds to each element, so the sum is the plain one (f32
// reductions flush subnormal values to zero). Measured on an H100 (1.5B shape, Java decode, alternated twice): bf16
// batch 1 1.50 -> 1.44 ms a step, batch 2 1.64 -> 1.54; reading the residual into shared memory before the wait
// instead (sound only where the kernel just ahead does not write it) gave 1.45 / 1.59. The INT8 and FP8 row groups keep
// the read-modify-write: INT8 batch 1 took 1.083 ms with the reduction against 1.064.
template <int TOKENS, bool REDUCE>
__device__ __forceinline__ void store_row(const float (&dot)[TOKENS], const float (&inv)[TOKENS], float* out, int rows,
                                          int row, const float* bias, float* residual) {
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        float v = dot[t] * inv[t];
        if (bias) v += bias[row];
        long long i = (long long) t * rows + row;
        out[i] = v;
        if (!residual) continue;
        if constexpr (REDUCE) {
            asm volatile("red.global.add.f32 [%0], %1;" :: "l"(residual + i), "f"(v) : "memory");
        } else {
            residual[i] += v;
        }
    }
}

// A warp's row: sums its lanes' partial products and squares, stores the row (lane 0) and its share of the normed
// x: the warp is number `unit` of `units` warps that have a row.
template <int TOKENS, bool NORM>
__device__ __forceinline__ void finish_warp_row(float (&acc)[TOKENS], float (&sumsq)[TOKENS], const float* x,
                                                const float* scale, float eps, float* normed, int columns, float* out,
                                                int rows, int row, const float* bias, float* residual, int unit,
                                                int units) {
    int lane = threadIdx.x & 31;
    float inv[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        acc[t] = warp_sum(acc[t]);
        if (NORM) sumsq[t] = warp_sum(sumsq[t]);
    }
    norm_factors<TOKENS, NORM>(sumsq, columns, eps, inv);
    if (NORM && normed) store_normed<TOKENS>(x, scale, columns, inv, normed, unit * 32 + lane, units * 32);
    if (lane == 0) store_row<TOKENS, true>(acc, inv, out, rows, row, bias, residual);
}

// Few-row matrices (the attention output and down projections: 1536 rows) leave most SMs without enough warps in
// flight when a warp owns a row; there the block's warps share one row, chunks dealt out across all the block's
// lanes (two loads in flight each measured best on an H100: 1536x8960 at 2.56 TB/s, 1536x1536 at 1.46), and add
// their sums. Launch with ceil(rows / SPLIT_ROWS(tokens)) blocks of GEMV_SPLIT_WARPS * 32 threads.
#define GEMV_SPLIT_WARPS 4
#define GEMV_SPLIT_UNROLL 2

// The segment (of up to three) that row r of a joint product belongs to; r becomes the row within it.
struct Segment {
    const void* w;
    float* out;
    int rows;
    const float* bias;
};

__device__ __forceinline__ bool find_segment(int& row, Segment& s, const void* w0, float* o0, int r0, const float* b0,
                                             const void* w1, float* o1, int r1, const float* b1, const void* w2,
                                             float* o2, int r2, const float* b2) {
    if (row < r0) {
        s = Segment{w0, o0, r0, b0};
    } else if ((row -= r0) < r1) {
        s = Segment{w1, o1, r1, b1};
    } else if ((row -= r1) < r2) {
        s = Segment{w2, o2, r2, b2};
    } else {
        return false;
    }
    return true;
}

// Rows one block of the split products computes: with several tokens each x chunk a thread loads serves two rows.
// Every token's chunk costs two 16-byte loads through L1 per 16-byte weight load, so from two tokens on the
// activations, not the weights, bound a block that owns one row; a second row halves that traffic. The Java side
// sizes the grid with the same rule (Kernels.splitRows).
#define SPLIT_ROWS(T) ((T) >= 4 ? 4 : (T) >= 2 ? 2 : 1)

// A block's rows (the grid exact; `valid` of the ROWS are real, the rest repeat the last row and are not stored):
// sums the threads' partial products and squares through shared memory, stores each row and the block's share of the
// normed x.
template <int TOKENS, int ROWS, bool NORM, bool REDUCE>
__device__ __forceinline__ void finish_block_rows(const float (&acc)[ROWS][TOKENS], const float (&sumsq)[TOKENS],
                                                  const float* x, const float* scale, float eps, float* normed,
                                                  int columns, const Segment (&segment)[ROWS], const int (&row)[ROWS],
                                                  int valid, float* residual) {
    __shared__ float partial[GEMV_SPLIT_WARPS][ROWS][TOKENS], partialSquares[GEMV_SPLIT_WARPS][TOKENS];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            float v = warp_sum(acc[r][t]);
            if (lane == 0) partial[warp][r][t] = v;
        }
        float q = NORM ? warp_sum(sumsq[t]) : 0.0f;
        if (lane == 0) partialSquares[warp][t] = q;
    }
    __syncthreads();
    float squares[TOKENS], inv[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        squares[t] = 0.0f;
#pragma unroll
        for (int k = 0; k < GEMV_SPLIT_WARPS; k++) squares[t] += partialSquares[k][t];
    }
    norm_factors<TOKENS, NORM>(squares, columns, eps, inv);
    if (NORM && normed) store_normed<TOKENS>(x, scale, columns, inv, normed, blockIdx.x * blockDim.x + threadIdx.x,
                                   gridDim.x * blockDim.x);
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        if (threadIdx.x == r && r < valid) {
            float dot[TOKENS];
#pragma unroll
            for (int t = 0; t < TOKENS; t++) {
                dot[t] = 0.0f;
#pragma unroll
                for (int k = 0; k < GEMV_SPLIT_WARPS; k++) dot[t] += partial[k][r][t];
            }
            store_row<TOKENS, REDUCE>(dot, inv, segment[r].out, segment[r].rows, row[r], segment[r].bias, residual);
        }
    }
}

// Rows one warp of kiln_gemv and kiln_gemv_silu computes (row pairs for the latter): two from two tokens on, for the
// reason SPLIT_ROWS gives. The Java side sizes the grid with the same rule (Kernels.warpRows).
#define WARP_ROWS(T) ((T) >= 4 ? 4 : (T) >= 2 ? 2 : 1)
#define SILU_PAIRS(T) ((T) >= 2 ? 2 : 1)

// INT8 (and FP8) rows take the same fusions with another geometry. A 16-byte load holds 16 codes, twice a bf16 load's columns,
// so one row's dot product loads twice the activation bytes per weight byte and a row is done after a few loads; a
// warp (or, split, a block) therefore computes INT8_ROWS rows of up to three segments (q, k and v; one segment for
// a single product), each activation chunk serving all of them, with INT8_UNROLL loads of each row in flight (the
// shape the format's own GEMVs measured best on an H100). The Java side sizes the grids with the same rules
// (Kernels.TokenGemvs).

template <typename F, int TOKENS, bool NORM, bool SPLIT, bool STAGEABLE = false>
__device__ __forceinline__ void gemv_row_group(const float* x, int columns,
        const void* w0, float* o0, int r0, const float* b0, const void* w1, float* o1, int r1, const float* b1,
        const void* w2, float* o2, int r2, const float* b2, float* residual, const float* scale, float eps,
        float* normed) {
    constexpr int ROWS = INT8_ROWS;
    int total = r0 + r1 + r2;
    int unit = SPLIT ? blockIdx.x : blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int first = unit * ROWS;
    // Staged (warp rows only), every warp takes part in staging x: one past the last row computes it again and stores
    // nothing.
    bool staged = STAGEABLE && !SPLIT && stages_activations<TOKENS>(columns);
    if (!staged && first >= total) return; // uniform over a split block
    const uint4* wrow[ROWS];
    float rowScale[ROWS];
    const float* blockScales[ROWS];
    Segment segment[ROWS];
    int row[ROWS];
    float acc[ROWS][TOKENS], sumsq[TOKENS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        row[r] = min(first + r, total - 1); // each row finds its own segment: a group may straddle two
        find_segment(row[r], segment[r], w0, o0, r0, b0, w1, o1, r1, b1, w2, o2, r2, b2);
        wrow[r] = weight_row<F>(segment[r].w, row[r], columns);
        rowScale[r] = row_scale<F>(segment[r].w, segment[r].rows, columns, row[r]);
        blockScales[r] = block_scale_row<F>(segment[r].w, segment[r].rows, columns, row[r]);
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[r][t] = 0.0f;
    }
#pragma unroll
    for (int t = 0; t < TOKENS; t++) sumsq[t] = 0.0f;
    int lane = threadIdx.x & 31;
    if (staged) {
        dot_rows_staged<F, TOKENS, ROWS, INT8_UNROLL, NORM>(wrow, x, scale, columns, lane, columns >> F::SHIFT, 32, acc,
                                                            sumsq, blockScales);
    } else {
        dot_rows<F, TOKENS, ROWS, INT8_UNROLL, NORM>(wrow, x, scale, columns, SPLIT ? threadIdx.x : lane,
                                                     columns >> F::SHIFT, SPLIT ? GEMV_SPLIT_WARPS * 32 : 32, acc, sumsq,
                                                     blockScales);
    }
    apply_row_scales<F>(acc, rowScale);
    if constexpr (SPLIT) {
        finish_block_rows<TOKENS, ROWS, NORM, false>(acc, sumsq, x, scale, eps, normed, columns, segment, row,
                                              min(ROWS, total - first), residual);
    } else {
        float inv[TOKENS];
#pragma unroll
        for (int t = 0; t < TOKENS; t++) {
#pragma unroll
            for (int r = 0; r < ROWS; r++) acc[r][t] = warp_sum(acc[r][t]);
            if (NORM && !staged) sumsq[t] = warp_sum(sumsq[t]);
        }
        norm_factors<TOKENS, NORM>(sumsq, columns, eps, inv);
        if (first >= total) return;
        int units = (total + ROWS - 1) / ROWS;
        if (NORM && normed) store_normed<TOKENS>(x, scale, columns, inv, normed, unit * 32 + lane, units * 32);
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            if (lane == r && first + r < total) {
                store_row<TOKENS, false>(acc[r], inv, segment[r].out, segment[r].rows, row[r], segment[r].bias, residual);
            }
        }
    }
}

template <typename F, int TOKENS, bool NORM>
__device__ __forceinline__ void gemv_one_row(const void* w, const float* x, float* out, int rows, int columns,
                                             const float* bias, float* residual, const float* scale, float eps,
                                             float* normed) {
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (TOKENS == 1 && stages_activations<TOKENS>(columns)) {
        // Every warp takes part in staging x: a warp past the last row computes that row again and stores nothing.
        int real = row;
        row = min(row, rows - 1);
        const uint4* wrow[1] = {weight_row<F>(w, row, columns)};
        const float rowScale[1] = {row_scale<F>(w, rows, columns, row)};
        float acc[1][1] = {{0.0f}}, sumsq[1] = {0.0f}, inv[1];
        dot_rows_staged<F, 1, 1, GEMV_UNROLL, NORM>(wrow, x, scale, columns, threadIdx.x & 31, columns >> F::SHIFT, 32, acc,
                                                    sumsq);
        norm_factors<1, NORM>(sumsq, columns, eps, inv);
        apply_row_scales<F>(acc, rowScale);
        acc[0][0] = warp_sum(acc[0][0]);
        if (real >= rows) return;
        if (NORM && normed) store_normed<1>(x, scale, columns, inv, normed, row * 32 + (threadIdx.x & 31), rows * 32);
        if ((threadIdx.x & 31) == 0) store_row<1, true>(acc[0], inv, out, rows, row, bias, residual);
        return;
    }
    if (row >= rows) return;
    const uint4* wrow[1] = {weight_row<F>(w, row, columns)};
    const float rowScale[1] = {row_scale<F>(w, rows, columns, row)};
    float acc[1][TOKENS], sumsq[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) acc[0][t] = sumsq[t] = 0.0f;
    dot_rows<F, TOKENS, 1, GEMV_UNROLL, NORM>(wrow, x, scale, columns, threadIdx.x & 31, columns >> F::SHIFT, 32, acc, sumsq);
    apply_row_scales<F>(acc, rowScale);
    finish_warp_row<TOKENS, NORM>(acc[0], sumsq, x, scale, eps, normed, columns, out, rows, row, bias, residual, row, rows);
}

template <typename F, int TOKENS, bool NORM>
__device__ __forceinline__ void gemv_tokens(const void* w, const float* x, float* out, int rows, int columns,
                                            const float* bias, float* residual, const float* scale, float eps,
                                            float* normed) {
    if constexpr (F::ROW_GROUPS) {
        gemv_row_group<F, TOKENS, NORM, false, true>(x, columns, w, out, rows, bias, nullptr, nullptr, 0, nullptr, nullptr,
                                               nullptr, 0, nullptr, residual, scale, eps, normed);
        return;
    }
    constexpr int ROWS = WARP_ROWS(TOKENS);
    if constexpr (ROWS == 1) {
        // One token: the one-row kernel as it was measured (the general code below takes 4% longer a batch-1 step).
        gemv_one_row<F, TOKENS, NORM>(w, x, out, rows, columns, bias, residual, scale, eps, normed);
        return;
    }
    int unit = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), units = (rows + ROWS - 1) / ROWS;
    int first = unit * ROWS;
    // Staged, every warp takes part in staging x: one past the last row computes it again and stores nothing.
    bool staged = stages_activations<TOKENS>(columns);
    if (!staged && first >= rows) return;
    const uint4* wrow[ROWS];
    float rowScale[ROWS];
    float acc[ROWS][TOKENS], sumsq[TOKENS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        int row = min(first + r, rows - 1);
        wrow[r] = weight_row<F>(w, row, columns);
        rowScale[r] = row_scale<F>(w, rows, columns, row);
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[r][t] = 0.0f;
    }
#pragma unroll
    for (int t = 0; t < TOKENS; t++) sumsq[t] = 0.0f;
    // Loads in flight per row: fewer with more rows, for the registers (16 loads of 16 bytes at most).
    constexpr int UNROLL = ROWS >= 4 ? GEMV_UNROLL / 2 : GEMV_UNROLL;
    if (staged) {
        dot_rows_staged<F, TOKENS, ROWS, UNROLL, NORM>(wrow, x, scale, columns, threadIdx.x & 31, columns >> F::SHIFT, 32,
                                                       acc, sumsq);
    } else {
        dot_rows<F, TOKENS, ROWS, UNROLL, NORM>(wrow, x, scale, columns, threadIdx.x & 31, columns >> F::SHIFT, 32, acc,
                                                sumsq);
    }
    apply_row_scales<F>(acc, rowScale);
    int lane = threadIdx.x & 31;
    float inv[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
#pragma unroll
        for (int r = 0; r < ROWS; r++) acc[r][t] = warp_sum(acc[r][t]);
        if (NORM && !staged) sumsq[t] = warp_sum(sumsq[t]);
    }
    norm_factors<TOKENS, NORM>(sumsq, columns, eps, inv);
    if (first >= rows) return;
    if (NORM && normed) store_normed<TOKENS>(x, scale, columns, inv, normed, unit * 32 + lane, units * 32);
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        if (lane == r && first + r < rows) store_row<TOKENS, true>(acc[r], inv, out, rows, first + r, bias, residual);
    }
}

template <typename F, int TOKENS, bool NORM>
__device__ __forceinline__ void gemv_split_tokens(const void* w, const float* x, float* out, int rows, int columns,
                                                  const float* bias, float* residual, const float* scale, float eps,
                                                  float* normed) {
    if constexpr (F::ROW_GROUPS) {
        gemv_row_group<F, TOKENS, NORM, true>(x, columns, w, out, rows, bias, nullptr, nullptr, 0, nullptr, nullptr,
                                              nullptr, 0, nullptr, residual, scale, eps, normed);
        return;
    }
    constexpr int ROWS = SPLIT_ROWS(TOKENS);
    int first = blockIdx.x * ROWS;
    const uint4* wrow[ROWS];
    float rowScale[ROWS];
    Segment segment[ROWS];
    int row[ROWS];
    float acc[ROWS][TOKENS], sumsq[TOKENS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        row[r] = min(first + r, rows - 1);
        wrow[r] = weight_row<F>(w, row[r], columns);
        rowScale[r] = row_scale<F>(w, rows, columns, row[r]);
        segment[r] = Segment{w, out, rows, bias};
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[r][t] = 0.0f;
    }
#pragma unroll
    for (int t = 0; t < TOKENS; t++) sumsq[t] = 0.0f;
    dot_rows<F, TOKENS, ROWS, GEMV_SPLIT_UNROLL, NORM>(wrow, x, scale, columns, threadIdx.x, columns >> F::SHIFT,
                                                       GEMV_SPLIT_WARPS * 32, acc, sumsq);
    apply_row_scales<F>(acc, rowScale);
    finish_block_rows<TOKENS, ROWS, NORM, true>(acc, sumsq, x, scale, eps, normed, columns, segment, row,
                                          min(ROWS, rows - first), residual);
}

// Up to three products of the same activations in one launch (q, k and v; or gate and up): the warps of one grid
// cover the rows of all of them, so the small k and v matrices no longer get a launch each that leaves most SMs
// idle. A segment with 0 rows is absent. The outputs must not overlap x (the Java side checks).
template <typename F, int TOKENS, bool NORM>
__device__ __forceinline__ void gemv3_tokens(const float* x, int columns,
        const void* w0, float* o0, int r0, const float* b0, const void* w1, float* o1, int r1, const float* b1,
        const void* w2, float* o2, int r2, const float* b2, const float* scale, float eps, float* normed) {
    if constexpr (F::ROW_GROUPS) {
        gemv_row_group<F, TOKENS, NORM, false>(x, columns, w0, o0, r0, b0, w1, o1, r1, b1, w2, o2, r2, b2, nullptr, scale,
                                               eps, normed);
        return;
    }
    int unit = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), row = unit;
    Segment s;
    if (!find_segment(row, s, w0, o0, r0, b0, w1, o1, r1, b1, w2, o2, r2, b2)) return;
    const uint4* wrow[1] = {weight_row<F>(s.w, row, columns)};
    const float rowScale[1] = {row_scale<F>(s.w, s.rows, columns, row)};
    float acc[1][TOKENS], sumsq[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) acc[0][t] = sumsq[t] = 0.0f;
    dot_rows<F, TOKENS, 1, GEMV_UNROLL, NORM>(wrow, x, scale, columns, threadIdx.x & 31, columns >> F::SHIFT, 32, acc, sumsq);
    apply_row_scales<F>(acc, rowScale);
    finish_warp_row<TOKENS, NORM>(acc[0], sumsq, x, scale, eps, normed, columns, s.out, s.rows, row, s.bias, nullptr,
                                  unit, r0 + r1 + r2);
}

// kiln_gemv3 for few rows in all (q, k and v of a small model: 2048 rows of the 1.5B shape): one block per row (two
// from two tokens on, SPLIT_ROWS), as kiln_gemv_split (3.7 instead of 4.2 us for 2048 x 1536 on an H100). Launch
// with ceil((r0 + r1 + r2) / SPLIT_ROWS) blocks of GEMV_SPLIT_WARPS * 32 threads.
template <typename F, int TOKENS, bool NORM>
__device__ __forceinline__ void gemv3_split_tokens(const float* x, int columns,
        const void* w0, float* o0, int r0, const float* b0, const void* w1, float* o1, int r1, const float* b1,
        const void* w2, float* o2, int r2, const float* b2, const float* scale, float eps, float* normed) {
    if constexpr (F::ROW_GROUPS) {
        gemv_row_group<F, TOKENS, NORM, true>(x, columns, w0, o0, r0, b0, w1, o1, r1, b1, w2, o2, r2, b2, nullptr, scale,
                                              eps, normed);
        return;
    }
    constexpr int ROWS = SPLIT_ROWS(TOKENS);
    int total = r0 + r1 + r2, first = blockIdx.x * ROWS;
    const uint4* wrow[ROWS];
    float rowScale[ROWS];
    Segment segment[ROWS];
    int row[ROWS];
    float acc[ROWS][TOKENS], sumsq[TOKENS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        row[r] = min(first + r, total - 1); // each row finds its own segment: a pair may straddle two
        find_segment(row[r], segment[r], w0, o0, r0, b0, w1, o1, r1, b1, w2, o2, r2, b2);
        wrow[r] = weight_row<F>(segment[r].w, row[r], columns);
        rowScale[r] = row_scale<F>(segment[r].w, segment[r].rows, columns, row[r]);
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[r][t] = 0.0f;
    }
#pragma unroll
    for (int t = 0; t < TOKENS; t++) sumsq[t] = 0.0f;
    dot_rows<F, TOKENS, ROWS, GEMV_SPLIT_UNROLL, NORM>(wrow, x, scale, columns, threadIdx.x, columns >> F::SHIFT,
                                                       GEMV_SPLIT_WARPS * 32, acc, sumsq);
    apply_row_scales<F>(acc, rowScale);
    finish_block_rows<TOKENS, ROWS, NORM, true>(acc, sumsq, x, scale, eps, normed, columns, segment, row,
                                          min(ROWS, total - first), nullptr);
}

// The one-token form of kiln_gemv_silu below: a warp computes row r of gate and up.
template <typename F, int TOKENS, bool NORM>
__device__ __forceinline__ void gemv_silu_one_pair(const float* x, int columns, const void* wg, const void* wu,
                                                   float* gate, float* up, float* out, int rows, const float* scale,
                                                   float eps, float* normed) {
    int lane = threadIdx.x & 31;
    int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (TOKENS == 1 && stages_activations<TOKENS>(columns)) {
        int real = row;
        row = min(row, rows - 1); // as in gemv_one_row
        const uint4* wrows[2] = {weight_row<F>(wg, row, columns), weight_row<F>(wu, row, columns)};
        const float rowScale[2] = {row_scale<F>(wg, rows, columns, row), row_scale<F>(wu, rows, columns, row)};
        float acc[2][1] = {{0.0f}, {0.0f}}, sumsq[1] = {0.0f}, inv[1];
        dot_rows_staged<F, 1, 2, GEMV_UNROLL, NORM>(wrows, x, scale, columns, lane, columns >> F::SHIFT, 32, acc, sumsq);
        norm_factors<1, NORM>(sumsq, columns, eps, inv);
        apply_row_scales<F>(acc, rowScale);
        acc[0][0] = warp_sum(acc[0][0]);
        acc[1][0] = warp_sum(acc[1][0]);
        if (real >= rows) return;
        if (NORM && normed) store_normed<1>(x, scale, columns, inv, normed, row * 32 + lane, rows * 32);
        if (lane == 0) {
            float g = acc[0][0] * inv[0], u = acc[1][0] * inv[0];
            gate[row] = g;
            up[row] = u;
            out[row] = g / (1.0f + expf(-g)) * u;
        }
        return;
    }
    if (row >= rows) return;
    const uint4* wrows[2] = {weight_row<F>(wg, row, columns), weight_row<F>(wu, row, columns)};
    const float rowScale[2] = {row_scale<F>(wg, rows, columns, row), row_scale<F>(wu, rows, columns, row)};
    float acc[2][TOKENS], sumsq[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) acc[0][t] = acc[1][t] = sumsq[t] = 0.0f;
    dot_rows<F, TOKENS, 2, GEMV_UNROLL, NORM>(wrows, x, scale, columns, lane, columns >> F::SHIFT, 32, acc, sumsq);
    apply_row_scales<F>(acc, rowScale);
    float inv[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        acc[0][t] = warp_sum(acc[0][t]);
        acc[1][t] = warp_sum(acc[1][t]);
        if (NORM) sumsq[t] = warp_sum(sumsq[t]);
    }
    norm_factors<TOKENS, NORM>(sumsq, columns, eps, inv);
    if (NORM && normed) store_normed<TOKENS>(x, scale, columns, inv, normed, row * 32 + lane, rows * 32);
    if (lane == 0) {
#pragma unroll
        for (int t = 0; t < TOKENS; t++) {
            float g = acc[0][t] * inv[t], u = acc[1][t] * inv[t];
            long long i = (long long) t * rows + row;
            gate[i] = g;
            up[i] = u;
            out[i] = g / (1.0f + expf(-g)) * u;
        }
    }
}

// The gate and up products of an MLP and silu(gate) * up in one launch: a warp computes row r of both (the loads
// of both rows in flight together), writes both products (as the separate launches would) and the activation into
// out, which may be gate.
template <typename F, int TOKENS, bool NORM>
__device__ __forceinline__ void gemv_silu_tokens(const float* x, int columns, const void* wg, const void* wu,
                                                 float* gate, float* up, float* out, int rows, const float* scale,
                                                 float eps, float* normed) {
    // PAIRS (gate, up) row pairs a warp: rows first .. first + PAIRS - 1 of both (loads in flight together). INT8 rows
    // are half as long as bf16 ones: two pairs from one token on, so that each activation chunk serves four rows.
    constexpr int PAIRS = F::ROW_GROUPS ? INT8_ROWS / 2 : SILU_PAIRS(TOKENS);
    constexpr int UNROLL = F::ROW_GROUPS ? INT8_UNROLL : GEMV_UNROLL / 2;
    if constexpr (PAIRS == 1) {
        // One token: the one-pair kernel as it was measured (the general code below takes longer a batch-1 step).
        gemv_silu_one_pair<F, TOKENS, NORM>(x, columns, wg, wu, gate, up, out, rows, scale, eps, normed);
        return;
    }
    int lane = threadIdx.x & 31;
    int unit = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), units = (rows + PAIRS - 1) / PAIRS;
    int first = unit * PAIRS;
    bool staged = stages_activations<TOKENS>(columns); // as in gemv_tokens
    if (!staged && first >= rows) return;
    const uint4* wrows[2 * PAIRS];
    float rowScale[2 * PAIRS];
    const float* blockScales[2 * PAIRS];
    float acc[2 * PAIRS][TOKENS], sumsq[TOKENS];
#pragma unroll
    for (int p = 0; p < PAIRS; p++) {
        int row = min(first + p, rows - 1);
        wrows[2 * p] = weight_row<F>(wg, row, columns);
        wrows[2 * p + 1] = weight_row<F>(wu, row, columns);
        rowScale[2 * p] = row_scale<F>(wg, rows, columns, row);
        rowScale[2 * p + 1] = row_scale<F>(wu, rows, columns, row);
        blockScales[2 * p] = block_scale_row<F>(wg, rows, columns, row);
        blockScales[2 * p + 1] = block_scale_row<F>(wu, rows, columns, row);
#pragma unroll
        for (int t = 0; t < TOKENS; t++) acc[2 * p][t] = acc[2 * p + 1][t] = 0.0f;
    }
#pragma unroll
    for (int t = 0; t < TOKENS; t++) sumsq[t] = 0.0f;
    if (staged) {
        dot_rows_staged<F, TOKENS, 2 * PAIRS, UNROLL, NORM>(wrows, x, scale, columns, lane, columns >> F::SHIFT, 32, acc,
                                                            sumsq, blockScales);
    } else {
        dot_rows<F, TOKENS, 2 * PAIRS, UNROLL, NORM>(wrows, x, scale, columns, lane, columns >> F::SHIFT, 32, acc, sumsq,
                                                     blockScales);
    }
    apply_row_scales<F>(acc, rowScale);
    float inv[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
#pragma unroll
        for (int r = 0; r < 2 * PAIRS; r++) acc[r][t] = warp_sum(acc[r][t]);
        if (NORM && !staged) sumsq[t] = warp_sum(sumsq[t]);
    }
    norm_factors<TOKENS, NORM>(sumsq, columns, eps, inv);
    if (first >= rows) return;
    if (NORM && normed) store_normed<TOKENS>(x, scale, columns, inv, normed, unit * 32 + lane, units * 32);
#pragma unroll
    for (int p = 0; p < PAIRS; p++) {
        if (lane == p && first + p < rows) {
#pragma unroll
            for (int t = 0; t < TOKENS; t++) {
                float g = acc[2 * p][t] * inv[t], u = acc[2 * p + 1][t] * inv[t];
                long long i = (long long) t * rows + first + p;
                gate[i] = g;
                up[i] = u;
                out[i] = g / (1.0f + expf(-g)) * u;
            }
        }
    }
}

// Entry points per weight format and token count; each takes the norm path when scale is given. INT8 weights take
// gemv_row_group through the same templates.
#define BY_NORM(KERNEL, F, T, ...)                                                                                 \
    if (scale) KERNEL<F, T, true>(__VA_ARGS__);                                                                   \
    else KERNEL<F, T, false>(__VA_ARGS__)
#define GEMV_TOKENS(T, NAME, F, W)                                                                                \
    extern "C" __global__ void kiln_gemv_##NAME##_t##T(const W* w, const float* x, float* out, int rows,          \
            int columns, int tokens, int vectorized, const float* bias, float* residual, const float* scale,      \
            float eps, float* normed) {                                                                           \
        BY_NORM(gemv_tokens, F, T, w, x, out, rows, columns, bias, residual, scale, eps, normed);                \
    }                                                                                                             \
    extern "C" __global__ void kiln_gemv_split_##NAME##_t##T(const W* w, const float* x, float* out, int rows,    \
            int columns, int tokens, int vectorized, const float* bias, float* residual, const float* scale,      \
            float eps, float* normed) {                                                                           \
        BY_NORM(gemv_split_tokens, F, T, w, x, out, rows, columns, bias, residual, scale, eps, normed);          \
    }                                                                                                             \
    extern "C" __global__ void kiln_gemv3_##NAME##_t##T(const float* x, int columns, int tokens,                  \
            const W* w0, float* o0, int r0, const float* b0, const W* w1, float* o1, int r1,                      \
            const float* b1, const W* w2, float* o2, int r2, const float* b2, const float* scale, float eps,      \
            float* normed) {                                                                                      \
        BY_NORM(gemv3_tokens, F, T, x, columns, w0, o0, r0, b0, w1, o1, r1, b1, w2, o2, r2, b2, scale, eps,       \
                normed);                                                                                          \
    }                                                                                                             \
    extern "C" __global__ void kiln_gemv3_split_##NAME##_t##T(const float* x, int columns, int tokens,           \
            const W* w0, float* o0, int r0, const float* b0, const W* w1, float* o1, int r1,                      \
            const float* b1, const W* w2, float* o2, int r2, const float* b2, const float* scale, float eps,      \
            float* normed) {                                                                                      \
        BY_NORM(gemv3_split_tokens, F, T, x, columns, w0, o0, r0, b0, w1, o1, r1, b1, w2, o2, r2, b2, scale,      \
                eps, normed);                                                                                     \
    }                                                                                                             \
    extern "C" __global__ void kiln_gemv_silu_##NAME##_t##T(const float* x, int columns, int tokens, const W* wg, \
            const W* wu, float* gate, float* up, float* out, int rows, const float* scale, float eps,             \
            float* normed) {                                                                                      \
        BY_NORM(gemv_silu_tokens, F, T, x, columns, wg, wu, gate, up, out, rows, scale, eps, normed);            \
    }
#define GEMV_BF16_TOKENS(T) GEMV_TOKENS(T, bf16, Bf16Weights, bf16_t)
// Three units of about equal compile time.
#if KILN_IN_UNIT(2)
GEMV_BF16_TOKENS(1)
GEMV_BF16_TOKENS(2)
GEMV_BF16_TOKENS(3)
GEMV_BF16_TOKENS(4)
#endif
#if KILN_IN_UNIT(3)
GEMV_BF16_TOKENS(5)
GEMV_BF16_TOKENS(8)
#endif
#if KILN_IN_UNIT(4)
GEMV_BF16_TOKENS(6)
GEMV_BF16_TOKENS(7)
#endif
// INT8 weights (weight_only_int8, whole 16-column rows) up to 4 tokens; the tensor-core products take them from 4 tokens
// (Kernels.skinnyMinTokens) where their rows are whole 64-column chunks.
#if KILN_IN_UNIT(8)
GEMV_TOKENS(1, int8, Int8Weights, signed char)
GEMV_TOKENS(2, int8, Int8Weights, signed char)
GEMV_TOKENS(3, int8, Int8Weights, signed char)
GEMV_TOKENS(4, int8, Int8Weights, signed char)
#endif
// FP8 weights in blocks of 128 x 128 (fp8, DeepSeek-V3's), the same way.
#if KILN_IN_UNIT(9)
GEMV_TOKENS(1, fp8, Fp8Weights, unsigned char)
GEMV_TOKENS(2, fp8, Fp8Weights, unsigned char)
GEMV_TOKENS(3, fp8, Fp8Weights, unsigned char)
GEMV_TOKENS(4, fp8, Fp8Weights, unsigned char)
#endif
// INT4 codes in groups of INT4_GEMV_GROUP columns, one token (Kernels.INT4_GEMV_MAX_TOKENS says why).
#if KILN_IN_UNIT(10)
GEMV_TOKENS(1, int4, Int4Weights, unsigned char)
#endif

// The same for f32 weights (checkpoints stored in f32 or f16); vectorized: columns % 4 == 0, 16-byte aligned.
#if KILN_IN_UNIT(0)
extern "C" __global__ void kiln_gemv_f32(const float* w, const float* x, float* out, int rows, int columns,
                                         int tokens, int vectorized, const float* bias) {
    wait_for_previous_kernel();
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
            if (lane == 0) out[(long long) t * rows + row] = bias ? v + bias[row] : v;
        }
    }
}
#endif

// ---- paged attention --------------------------------------------------------------------------------------------

// Cache layout per layer: [block][kvHead][slot in block][dim], keys and values in separate arrays (values absent
// when they are the leading elements of the keys). The cache stores f32 or bf16 elements: the kernels below are
// templates over the element type T (float or bf16_t) with one entry point per type, the bf16 ones named ..._bf16.
// A bf16 cache rounds keys and values to nearest even when they are written; everything after the loads (scores,
// softmax, weighted sums) is the same f32 arithmetic for both.

template <typename T> __device__ __forceinline__ T to_cache(float v);
template <> __device__ __forceinline__ float to_cache<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16_t to_cache<bf16_t>(float v) { return float_to_bf16(v); }

__device__ __forceinline__ float from_cache(float v) { return v; }
__device__ __forceinline__ float from_cache(bf16_t v) { return bf16_to_float(v); }

// Two bf16 packed in 32 bits (the lower address in the low half) widened to f32.
__device__ __forceinline__ float bf16_low(unsigned int pair) { return __uint_as_float(pair << 16); }
__device__ __forceinline__ float bf16_high(unsigned int pair) { return __uint_as_float(pair & 0xffff0000u); }

// Four consecutive cache elements as f32: one 16-byte load of f32, one 8-byte load of bf16 (aligned accordingly).
__device__ __forceinline__ float4 load_cache4(const float* p) {
    return *reinterpret_cast<const float4*>(p);
}

__device__ __forceinline__ float4 load_cache4(const bf16_t* p) {
    uint2 u = *reinterpret_cast<const uint2*>(p);
    return make_float4(bf16_low(u.x), bf16_high(u.x), bf16_low(u.y), bf16_high(u.y));
}

// Stores 16 bytes loaded from the cache (4 f32 or 8 bf16 elements) as f32 to shared memory at dst. `lane` is the
// copying thread's index in its loop: bf16 widens to 32 bytes per thread, and threads 4-7 of each group of 8 store
// their halves in the other order, so that the 8 threads of a quarter warp hit distinct banks with each of their two
// 16-byte stores.
template <typename T> __device__ __forceinline__ void store_cache16(float* dst, uint4 u, int lane);

template <> __device__ __forceinline__ void store_cache16<float>(float* dst, uint4 u, int lane) {
    *reinterpret_cast<uint4*>(dst) = u;
}

template <> __device__ __forceinline__ void store_cache16<bf16_t>(float* dst, uint4 u, int lane) {
    float4 low = make_float4(bf16_low(u.x), bf16_high(u.x), bf16_low(u.y), bf16_high(u.y));
    float4 high = make_float4(bf16_low(u.z), bf16_high(u.z), bf16_low(u.w), bf16_high(u.w));
    float4* d = reinterpret_cast<float4*>(dst);
    int swap = (lane >> 2) & 1;
    d[swap] = swap ? high : low;
    d[swap ^ 1] = swap ? low : high;
}

// One block per token; tokens with a negative slot are padding.
template <typename T>
__device__ __forceinline__ void write_kv(const float* key, const float* value, T* keys, T* values, const int* slots,
                                         int kvHeads, int keyDim, int valueDim, int blockSize) {
    int slot = slots[blockIdx.x];
    if (slot < 0) return;
    long long block = slot / blockSize;
    int offset = slot - (int) block * blockSize;
    const float* k = key + (long long) blockIdx.x * kvHeads * keyDim;
    for (int e = threadIdx.x; e < kvHeads * keyDim; e += blockDim.x) {
        int h = e / keyDim, d = e - h * keyDim;
        keys[((block * kvHeads + h) * blockSize + offset) * keyDim + d] = to_cache<T>(k[e]);
    }
    if (value != 0) {
        const float* v = value + (long long) blockIdx.x * kvHeads * valueDim;
        for (int e = threadIdx.x; e < kvHeads * valueDim; e += blockDim.x) {
            int h = e / valueDim, d = e - h * valueDim;
            values[((block * kvHeads + h) * blockSize + offset) * valueDim + d] = to_cache<T>(v[e]);
        }
    }
}

#if KILN_IN_UNIT(1)
extern "C" __global__ void kiln_write_kv(const float* key, const float* value, float* keys, float* values,
                                         const int* slots, int kvHeads, int keyDim, int valueDim, int blockSize) {
    wait_for_previous_kernel();
    write_kv(key, value, keys, values, slots, kvHeads, keyDim, valueDim, blockSize);
}

extern "C" __global__ void kiln_write_kv_bf16(const float* key, const float* value, bf16_t* keys, bf16_t* values,
                                              const int* slots, int kvHeads, int keyDim, int valueDim, int blockSize) {
    wait_for_previous_kernel();
    write_kv(key, value, keys, values, slots, kvHeads, keyDim, valueDim, blockSize);
}
#endif

#define ATTENTION_THREADS 256
#define ATTENTION_VALUES_PER_THREAD 8

// Causal attention of one query token and head (grid: tokens x heads) over its sequence's paged context, in tiles
// of ATTENTION_THREADS keys with an online softmax: each thread scores one key of the tile, then each thread
// accumulates its value dimensions over the tile. valueStride is the distance between two cache entries in the
// value array (keyDim when values live in the keys). Sequence s's block table starts at tables[s * tableStride].
// The fallback for head sizes that are not whole float4 rows (8-element rows for bf16); see
// kiln_paged_attention_split for the rest.
// Dynamic shared memory: see Kernels.attentionSharedBytes.
template <typename T>
__device__ __forceinline__ void paged_attention(const float* query, float* out, const T* keys, const T* values,
                                                const int* tokenSequence, const int* tokenPosition, const int* tables,
                                                int tableStride, int heads, int kvHeads, int keyDim, int valueDim,
                                                int valueStride, int blockSize, float scale) {
    extern __shared__ __align__(16) unsigned char shared[];
    long long* valueAt = reinterpret_cast<long long*>(shared);
    float* weights = reinterpret_cast<float*>(valueAt + ATTENTION_THREADS);
    float* scratch = weights + ATTENTION_THREADS;
    float* q = scratch + 32;

    int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    int sequence = tokenSequence[t];
    int position = tokenPosition[t];
    int kvHead = h / (heads / kvHeads);
    const int* table = tables + (long long) sequence * tableStride;
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
            const T* k = keys + entry * keyDim;
            float dot = 0.0f;
            if (vectorized) {
                const float4* q4 = reinterpret_cast<const float4*>(q);
                for (int d = 0; d < (keyDim >> 2); d++) {
                    float4 a = load_cache4(k + 4 * d), b = q4[d];
                    dot += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
                }
            } else {
                for (int d = 0; d < keyDim; d++) dot += from_cache(k[d]) * q[d];
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
                for (int k = 0; k < n; k++) a += weights[k] * from_cache(values[valueAt[k] + d]);
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

#if KILN_IN_UNIT(1)
extern "C" __global__ void __launch_bounds__(ATTENTION_THREADS)
kiln_paged_attention(const float* query, float* out, const float* keys, const float* values,
                     const int* tokenSequence, const int* tokenPosition, const int* tables, int tableStride,
                     int heads, int kvHeads, int keyDim, int valueDim, int valueStride, int blockSize, float scale) {
    wait_for_previous_kernel();
    paged_attention(query, out, keys, values, tokenSequence, tokenPosition, tables, tableStride, heads, kvHeads,
                    keyDim, valueDim, valueStride, blockSize, scale);
}

extern "C" __global__ void __launch_bounds__(ATTENTION_THREADS)
kiln_paged_attention_bf16(const float* query, float* out, const bf16_t* keys, const bf16_t* values,
                          const int* tokenSequence, const int* tokenPosition, const int* tables, int tableStride,
                          int heads, int kvHeads, int keyDim, int valueDim, int valueStride, int blockSize, float scale) {
    wait_for_previous_kernel();
    paged_attention(query, out, keys, values, tokenSequence, tokenPosition, tables, tableStride, heads, kvHeads,
                    keyDim, valueDim, valueStride, blockSize, scale);
}
#endif

// ---- split-context ("flash-decoding") attention ----------------------------------------------------------------
//
// kiln_paged_attention_split: grid (tokens * kvHeads * headBlocks, splits). Block (row, split) serves query token
// t, KV head g and up to headsPerBlock of g's query heads (all of them unless the group is too large for shared
// memory), over keys [split * chunk, min((split + 1) * chunk, position + 1)). Each key and value row is read from
// memory once per block, i.e. once per group, and reused by every head of the block from shared memory. The split
// count depends only on the token count, the head geometry and a power-of-two bucket of the longest context (see
// SplitAttentionPlan), so one step's launch is identical to the next one's; blocks that start past their token's
// context return at once.
//
// The block walks its chunk in tiles of `tile` keys: (1) the tile's key rows (and value rows) are copied into
// shared memory as f32 with 16-byte loads (4 f32 or 8 bf16 elements), consecutive threads reading consecutive 16
// bytes of a row; (2) one thread per
// (head, key) scores it against the head's query in shared memory; (3) one warp per head updates the running max
// and sum (online softmax) and turns scores into weights; (4) one thread per (head, float4 of value dimensions)
// accumulates the weighted values in registers.
//
// With one split the block writes the normalised output; with several it writes a partial record per (token,
// head, split) into `partials`: valueDim unnormalised output sums, then the running max and the sum of
// exponentials (record stride valueDim + 4 keeps float4 alignment); kiln_paged_attention_combine merges them.
// Without `partials` (several splits, launched as clusters of all the splits of a row along y, at most
// SPLIT_MAX_CLUSTER) the blocks keep their records in shared memory and merge them through the cluster instead.
//
// Keys and values: valueStride as for kiln_paged_attention; values == keys means the values are the leading
// valueDim elements of each key row (MLA), which is then copied to shared memory once for both uses.
//
// The cache write fused in (newKeys != 0; Java side: a batch whose every sequence has one query token, i.e. a
// decode step): token t's own entry is not in the cache yet but in row t of newKeys (and newValues, absent when the
// values live in the keys), laid out as kiln_write_kv reads them. The block whose chunk holds the token's position
// takes that entry from those rows, rounded to the cache's element type as the cache would hold it, and the first
// head block of that chunk stores it at slots[t] (none for a negative slot), as kiln_write_kv would. Every other
// entry a block reads was written by an earlier step, so the block stages its first tile before it waits for the
// kernel ahead (which produced the new rows and the queries): the cache's latency overlaps that kernel's end.
// Without the fusion the block waits first, as the entries may come from the kiln_write_kv just before.
//
// The layer's rotary folded in as well (rotaryHalf > 0; only with the cache write fused, in place of the
// kiln_rotary2 of the queries and new keys that would come just before): each block rotates its heads' queries in
// shared memory and the new entry's key as it takes it, exactly as kiln_rotary2 computes (rotaryPositions, the cos
// and sin tables, the rotary part at rotaryOffset of each head, halves or interleaved pairs). The query and key rows
// in memory then stay unrotated: nothing reads them after the attention.
// Requirements (checked by the Java side): keyDim and valueDim multiples of 4 (of 8 for a bf16 cache), 16-byte
// aligned arrays,
// headsPerBlock * valueDim <= 4 * SPLIT_THREADS * SPLIT_MAX_OUTPUTS.
// Dynamic shared memory (floats): headsPerBlock * keyDim (queries) + keyDim + valueDim (the new entry's rows; keyDim
// alone when values are in the keys) + keyDim (the rotation's cos and sin) + tile * (keyDim + 4) (keys; rows padded
// by 16 bytes so that threads reading different rows hit different banks) + tile * (valueDim + 4) unless values are
// in the keys + headsPerBlock * tile (weights) + 2 * headsPerBlock (running max and sum) + headsPerBlock
// (corrections), whatever the cache's element type (SplitAttentionPlan.sharedBytes).

#define SPLIT_THREADS 256
#define SPLIT_MAX_OUTPUTS 8
// 16-byte cache loads each thread has in flight before it stores them to shared memory.
#define SPLIT_LOAD_BATCH 4
// Most splits merged inside a cluster (the hardware's largest cluster, allowed as a non-portable size on Hopper).
#define SPLIT_MAX_CLUSTER 16

// Distributed shared memory (Hopper thread block clusters): a block's shared variable at the same place in another
// block of its cluster, read through the cluster's shared window; barriers across the whole cluster.
__device__ __forceinline__ unsigned shared_address(const void* p) {
    unsigned long long a;
    asm("cvta.to.shared.u64 %0, %1;" : "=l"(a) : "l"(p));
    return (unsigned) a;
}

// The loads are not volatile, so that a thread's loads go out together (volatile ones were issued one after the
// other: 2 us for 24 of them); their addresses carry the token of the barrier before them (see cluster_barrier),
// which keeps them after it.
__device__ __forceinline__ float cluster_load(unsigned address, int rank) {
    float v;
#if __CUDA_ARCH__ >= 900
    unsigned remote;
    asm("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(rank));
    asm("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote));
#else
    v = 0.0f;
#endif
    return v;
}

__device__ __forceinline__ float4 cluster_load4(unsigned address, int rank) {
    float4 v;
#if __CUDA_ARCH__ >= 900
    unsigned remote;
    asm("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(rank));
    asm("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
        : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(remote));
#else
    v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#endif
    return v;
}

// Stores into the shared memory of block `rank` of the cluster, at the place of the local address: visible to that
// block after the next cluster barrier.
__device__ __forceinline__ void cluster_store(unsigned address, int rank, float v) {
#if __CUDA_ARCH__ >= 900
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(rank));
    asm volatile("st.shared::cluster.f32 [%0], %1;" :: "r"(remote), "f"(v) : "memory");
#endif
}

__device__ __forceinline__ void cluster_store4(unsigned address, int rank, float4 v) {
#if __CUDA_ARCH__ >= 900
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(rank));
    asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};" :: "r"(remote), "f"(v.x), "f"(v.y), "f"(v.z),
                 "f"(v.w) : "memory");
#endif
}

// The two halves of a cluster barrier, for a block that must know the others have started (arrive at the start,
// wait before the first write into another block's shared memory).
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}

__device__ __forceinline__ void cluster_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
}

// Every thread of every block of the cluster arrives before any goes on; writes to shared memory before it are
// visible to the cluster's reads after it. Returns 0 as an opaque token: added to the addresses of cluster_load,
// it orders those loads after the barrier.
__device__ __forceinline__ unsigned cluster_barrier() {
    unsigned token;
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;\n\tmov.u32 %0, 0;"
                 : "=r"(token) :: "memory");
#else
    __syncthreads();
    token = 0;
#endif
    return token;
}

// One tile's cache rows in shared memory: n entries from position start, keyLoads 16-byte loads per key row, then
// valueLoads per value row (none when the values live in the keys). Each thread issues SPLIT_LOAD_BATCH loads before
// it stores any, so that enough loads are in flight to cover the memory's latency. Position `skip` is left out (the
// entry a fused cache write supplies itself; -1 for none). The block-table entries are read for the whole tile
// whatever n is (the table row covers the context bucket, so they exist): their loads then wait for nothing, while
// n comes from the token's position, itself a load.
template <typename T>
struct TileStage {
    const T* keys;
    const T* values;
    const int* table;
    int kvHeads, kvHead, blockSize, keyDim, valueStride, keyLoads, valueLoads, keyRow, valueRow, tile;
    float* tileKeys;
    float* tileValues;

    __device__ __forceinline__ void run(int start, int n, int skip) const {
        constexpr int LOAD_SHIFT = sizeof(T) == 4 ? 2 : 3; // log2 of the cache elements in 16 bytes
        int keyTotal = tile * keyLoads, total = keyTotal + tile * valueLoads;
        for (int base = threadIdx.x; base < total; base += SPLIT_LOAD_BATCH * SPLIT_THREADS) {
            uint4 staged[SPLIT_LOAD_BATCH];
            float* dst[SPLIT_LOAD_BATCH];
#pragma unroll
            for (int b = 0; b < SPLIT_LOAD_BATCH; b++) {
                int i = base + b * SPLIT_THREADS;
                dst[b] = nullptr;
                if (i >= total) continue;
                bool value = i >= keyTotal;
                int loads = value ? valueLoads : keyLoads;
                int k = value ? i - keyTotal : i;
                int j = k / loads, d = k - j * loads;
                int slotBlock = (start + j) / blockSize;
                long long block = table[slotBlock];
                if (j >= n || start + j == skip) continue;
                long long entry = (block * kvHeads + kvHead) * blockSize + (start + j - slotBlock * blockSize);
                const T* src = value ? values + entry * valueStride : keys + entry * keyDim;
                staged[b] = *reinterpret_cast<const uint4*>(src + (d << LOAD_SHIFT));
                dst[b] = (value ? tileValues + j * valueRow : tileKeys + j * keyRow) + (d << LOAD_SHIFT);
            }
#pragma unroll
            for (int b = 0; b < SPLIT_LOAD_BATCH; b++) {
                if (dst[b]) store_cache16<T>(dst[b], staged[b], base + b * SPLIT_THREADS);
            }
        }
    }
};

template <typename T>
__device__ __forceinline__ void paged_attention_split(const float* query, float* out, float* partials,
                                                      const T* keys, const T* values,
                                                      const int* tokenSequence, const int* tokenPosition,
                                                      const int* tables, int tableStride, int heads, int kvHeads,
                                                      int headsPerBlock, int keyDim, int valueDim, int valueStride,
                                                      int blockSize, int chunk, int tile, float scale,
                                                      const float* newKeys, const float* newValues, const int* slots,
                                                      const int* rotaryPositions, const float* cosTable,
                                                      const float* sinTable, int rotaryOffset, int rotaryHalf,
                                                      int rotaryInterleaved) {
    constexpr int LOAD_SHIFT = sizeof(T) == 4 ? 2 : 3; // log2 of the cache elements in 16 bytes
    extern __shared__ __align__(16) float smem[];
    bool fused = newKeys != nullptr;
    int group = heads / kvHeads;
    int headBlocks = (group + headsPerBlock - 1) / headsPerBlock;
    int row = blockIdx.x;
    int headBlock = row % headBlocks;
    row /= headBlocks;
    int kvHead = row % kvHeads;
    int t = row / kvHeads;
    int split = blockIdx.y, splits = gridDim.y;
    // Without a partials array several splits merge through the cluster's shared memory (see the end).
    bool clustered = partials == nullptr && splits > 1;
    // The metadata was uploaded before the kernel ahead started: readable before the wait. With the cache write
    // fused every token is its sequence's one query token, so token t is sequence t (AttentionBatch's order): the
    // block table's address then needs no load, and the first tile's loads wait on the table alone.
    const int* table = tables + (long long) (fused ? t : tokenSequence[t]) * tableStride;
    int position = tokenPosition[t];
    int begin = split * chunk;
    // Past this token's context: the combine never reads this split; in a cluster the block still takes its part.
    bool idle = begin > position;
    int end = min(begin + chunk, position + 1);
    int firstHead = kvHead * group + headBlock * headsPerBlock;
    int blockHeads = min(headsPerBlock, group - headBlock * headsPerBlock);
    bool valuesInKeys = values == keys;

    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int keyVectors = keyDim >> 2, valueVectors = valueDim >> 2;
    int keyRow = keyDim + 4, valueRow = valuesInKeys ? keyRow : valueDim + 4;
    float* q = smem;
    float* newEntry = q + headsPerBlock * keyDim;  // the new key row, then its value row, as the kernel ahead left them
    float* rotation = newEntry + keyDim + (valuesInKeys ? 0 : valueDim); // cos, then sin, of the token's position
    float* tileKeys = rotation + keyDim;
    float* tileValues = valuesInKeys ? tileKeys : tileKeys + tile * keyRow;
    float* weights = valuesInKeys ? tileKeys + tile * keyRow : tileValues + tile * valueRow;
    float* runningMax = weights + headsPerBlock * tile;
    float* runningSum = runningMax + headsPerBlock;
    float* correction = runningSum + headsPerBlock;
    bool holdsNew = fused && !idle && position < begin + chunk;
    TileStage<T> stage{keys, values, table, kvHeads, kvHead, blockSize, keyDim, valueStride, keyDim >> LOAD_SHIFT,
                       valuesInKeys ? 0 : valueDim >> LOAD_SHIFT, keyRow, valueRow, tile, tileKeys, tileValues};
    int skip = fused ? position : -1;

    // Everything that does not come from the kernel ahead is read before the wait: the first tile of cached entries
    // and the rotation of the token's position (the tables are fixed, the positions uploaded metadata).
    // (No branch on the position before it: the table loads go out at once, an idle block stages nothing.)
    if (fused) stage.run(begin, idle ? 0 : min(tile, end - begin), skip);
    if (idle && !clustered) return;
    if (rotaryHalf > 0 && !idle) {
        long long rotaryRow = (long long) rotaryPositions[t] * rotaryHalf;
        for (int i = tid; i < rotaryHalf; i += SPLIT_THREADS) {
            rotation[i] = cosTable[rotaryRow + i];
            rotation[rotaryHalf + i] = sinTable[rotaryRow + i];
        }
    }
    wait_then_release_next_kernel();

    // What the kernel ahead produced, in one round of loads (SPLIT_LOAD_BATCH in flight per thread): the queries
    // (MLA's 8 heads of 576 are 4.5 loads a thread) and, for the block whose chunk holds the token's position, the new
    // key and value rows. After the wait the block's path to its scores holds one memory latency, not one per kind.
    int queryVectors = idle ? 0 : blockHeads * keyVectors;
    int newKeyVectors = holdsNew ? keyVectors : 0;
    int loadVectors = queryVectors + newKeyVectors + (holdsNew && !valuesInKeys ? valueVectors : 0);
    const float4* q4 = reinterpret_cast<const float4*>(query + ((long long) t * heads + firstHead) * keyDim);
    const float4* key4 = holdsNew ? reinterpret_cast<const float4*>(newKeys + ((long long) t * kvHeads + kvHead) * keyDim)
                                  : nullptr;
    const float4* value4 = holdsNew && !valuesInKeys
            ? reinterpret_cast<const float4*>(newValues + ((long long) t * kvHeads + kvHead) * valueDim) : nullptr;
    for (int base = tid; base < loadVectors; base += SPLIT_LOAD_BATCH * SPLIT_THREADS) {
        float4 staged[SPLIT_LOAD_BATCH];
#pragma unroll
        for (int b = 0; b < SPLIT_LOAD_BATCH; b++) {
            int i = base + b * SPLIT_THREADS;
            if (i < queryVectors) staged[b] = q4[i];
            else if (i < queryVectors + newKeyVectors) staged[b] = key4[i - queryVectors];
            else if (i < loadVectors) staged[b] = value4[i - queryVectors - newKeyVectors];
        }
#pragma unroll
        for (int b = 0; b < SPLIT_LOAD_BATCH; b++) {
            int i = base + b * SPLIT_THREADS;
            // newEntry follows the queries' keyDim-wide rows at a float4 boundary, so one index serves both.
            if (i < queryVectors) reinterpret_cast<float4*>(q)[i] = staged[b];
            else if (i < loadVectors) reinterpret_cast<float4*>(newEntry)[i - queryVectors] = staged[b];
        }
    }
    if (tid < blockHeads) {
        runningMax[tid] = -KILN_INFINITY;
        runningSum[tid] = 0.0f;
    }
    if (fused) __syncthreads(); // queries, new rows and rotation in shared memory (else the first tile's barrier)
    if (rotaryHalf > 0 && !idle) {
        for (int e = tid; e < blockHeads * rotaryHalf; e += SPLIT_THREADS) {
            int h = e / rotaryHalf, i = e - h * rotaryHalf;
            rotate_pair(q + h * keyDim + rotaryOffset, i, rotaryHalf, rotaryInterleaved, rotation[i],
                        rotation[rotaryHalf + i]);
        }
    }

    float4 acc[SPLIT_MAX_OUTPUTS];
#pragma unroll
    for (int i = 0; i < SPLIT_MAX_OUTPUTS; i++) acc[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    int outputs = blockHeads * valueVectors;

    for (int start = begin; start < (idle ? begin : end); start += tile) {
        int n = min(tile, end - start);
        if (!fused || start != begin) {
            __syncthreads(); // the previous tile's readers are done (and, the first time, q and the stats are written)
            stage.run(start, n, skip);
        }
        if (fused && position < start + n) {
            // The new entry (the chunk's last): from the step's rows, as the cache holds it; the first head block
            // also stores it in the cache.
            int j = position - start;
            const float* key = newEntry;
            const float* value = newEntry + keyDim;
            int slot = slots[t];
            bool store = headBlock == 0 && slot >= 0;
            long long entry = 0;
            if (store) {
                long long block = slot / blockSize;
                entry = (block * kvHeads + kvHead) * blockSize + (slot - block * blockSize);
            }
            for (int d = tid; d < keyDim; d += SPLIT_THREADS) {
                float x = key[d];
                int r = d - rotaryOffset;
                if (rotaryHalf > 0 && r >= 0 && r < 2 * rotaryHalf) {
                    // This element's pair, as kiln_rotary2 rotates it: the first of a pair becomes a c - b s, the
                    // second b c + a s.
                    bool first = rotaryInterleaved ? (r & 1) == 0 : r < rotaryHalf;
                    int i = rotaryInterleaved ? r >> 1 : (first ? r : r - rotaryHalf);
                    int partner = rotaryInterleaved ? (first ? d + 1 : d - 1) : (first ? d + rotaryHalf : d - rotaryHalf);
                    float c = rotation[i], s = rotation[rotaryHalf + i];
                    float other = key[partner];
                    x = first ? x * c - other * s : x * c + other * s;
                }
                T k = to_cache<T>(x);
                tileKeys[j * keyRow + d] = from_cache(k);
                if (store) const_cast<T*>(keys)[entry * keyDim + d] = k;
            }
            if (!valuesInKeys) {
                for (int d = tid; d < valueDim; d += SPLIT_THREADS) {
                    T v = to_cache<T>(value[d]);
                    tileValues[j * valueRow + d] = from_cache(v);
                    if (store) const_cast<T*>(values)[entry * valueStride + d] = v;
                }
            }
        }
        __syncthreads();
        for (int i = tid; i < blockHeads * tile; i += SPLIT_THREADS) {
            int h = i / tile, j = i - h * tile;
            float score = -KILN_INFINITY;
            if (j < n) {
                const float4* k = reinterpret_cast<const float4*>(tileKeys + j * keyRow);
                const float4* qh = reinterpret_cast<const float4*>(q + h * keyDim);
                float x = 0.0f, y = 0.0f, z = 0.0f, w = 0.0f;
                // Unrolled so that several shared-memory loads are in flight (one at a time took ~1 us a tile).
#pragma unroll 8
                for (int d = 0; d < keyVectors; d++) {
                    float4 a = k[d], b = qh[d];
                    x += a.x * b.x;
                    y += a.y * b.y;
                    z += a.z * b.z;
                    w += a.w * b.w;
                }
                score = ((x + y) + (z + w)) * scale;
            }
            weights[i] = score;
        }
        __syncthreads();
        for (int h = warp; h < blockHeads; h += SPLIT_THREADS / 32) {
            float* w = weights + h * tile;
            float tileMax = -KILN_INFINITY;
            for (int j = lane; j < n; j += 32) tileMax = fmaxf(tileMax, w[j]);
            tileMax = warp_max(tileMax);
            float oldMax = runningMax[h];
            float newMax = fmaxf(oldMax, tileMax);
            float sum = 0.0f;
            for (int j = lane; j < tile; j += 32) {
                float e = j < n ? expf(w[j] - newMax) : 0.0f;
                w[j] = e;
                sum += e;
            }
            sum = warp_sum(sum);
            if (lane == 0) {
                float c = expf(oldMax - newMax); // 0 for the first tile (oldMax is -inf)
                correction[h] = c;
                runningSum[h] = runningSum[h] * c + sum;
                runningMax[h] = newMax;
            }
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < SPLIT_MAX_OUTPUTS; i++) {
            int o = tid + i * SPLIT_THREADS;
            if (o < outputs) {
                int h = o / valueVectors, d = o - h * valueVectors;
                const float* w = weights + h * tile;
                const float4* v = reinterpret_cast<const float4*>(tileValues) + d;
                float c = correction[h];
                float4 a = acc[i];
                a.x *= c;
                a.y *= c;
                a.z *= c;
                a.w *= c;
#pragma unroll 8
                for (int j = 0; j < n; j++) {
                    float e = w[j];
                    float4 x = v[j * (valueRow >> 2)];
                    a.x += e * x.x;
                    a.y += e * x.y;
                    a.z += e * x.z;
                    a.w += e * x.w;
                }
                acc[i] = a;
            }
        }
    }
    // The last tile's barrier before the value pass published runningMax and runningSum.
    if (clustered) {
        // The block's record at the queries' place (no reader of them is left: the scores came before the last
        // barrier), then the cluster's blocks merge them as kiln_paged_attention_combine does, each output by one
        // block. Every block of the cluster takes part in both cluster barriers, idle ones with an empty record (the
        // second keeps each block's shared memory until the others have read it).
        float4* record = reinterpret_cast<float4*>(q);
#pragma unroll
        for (int i = 0; i < SPLIT_MAX_OUTPUTS; i++) {
            int o = tid + i * SPLIT_THREADS;
            if (o < outputs) record[o] = acc[i];
        }
        unsigned after = cluster_barrier();
        unsigned recordAddress = shared_address(record) + after, maxAddress = shared_address(runningMax) + after,
                 sumAddress = shared_address(runningSum) + after;
        for (int o = split + tid * splits; o < outputs; o += SPLIT_THREADS * splits) {
            int h = o / valueVectors, d = o - h * valueVectors;
            float m[SPLIT_MAX_CLUSTER], l[SPLIT_MAX_CLUSTER], best = -KILN_INFINITY;
#pragma unroll
            for (int r = 0; r < SPLIT_MAX_CLUSTER; r++) {
                if (r < splits) {
                    m[r] = cluster_load(maxAddress + 4 * h, r);
                    l[r] = cluster_load(sumAddress + 4 * h, r);
                }
            }
#pragma unroll
            for (int r = 0; r < SPLIT_MAX_CLUSTER; r++) {
                if (r < splits) best = fmaxf(best, m[r]);
            }
            float total = 0.0f;
            float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int r = 0; r < SPLIT_MAX_CLUSTER; r++) {
                if (r < splits) {
                    float w = expf(m[r] - best); // 0 for an idle block (m -inf)
                    float4 x = cluster_load4(recordAddress + 16 * o, r);
                    total += w * l[r];
                    a.x += w * x.x;
                    a.y += w * x.y;
                    a.z += w * x.z;
                    a.w += w * x.w;
                }
            }
            float inv = 1.0f / total;
            long long head = (long long) t * heads + firstHead + h;
            reinterpret_cast<float4*>(out + head * valueDim)[d] = make_float4(a.x * inv, a.y * inv, a.z * inv, a.w * inv);
        }
        cluster_barrier();
        return;
    }
#pragma unroll
    for (int i = 0; i < SPLIT_MAX_OUTPUTS; i++) {
        int o = tid + i * SPLIT_THREADS;
        if (o < outputs) {
            int h = o / valueVectors, d = o - h * valueVectors;
            long long head = (long long) t * heads + firstHead + h;
            float4 a = acc[i];
            if (splits == 1) {
                float inv = 1.0f / runningSum[h];
                reinterpret_cast<float4*>(out + head * valueDim)[d] = make_float4(a.x * inv, a.y * inv, a.z * inv, a.w * inv);
            } else {
                float* record = partials + (head * splits + split) * (valueDim + 4);
                reinterpret_cast<float4*>(record)[d] = a;
                if (d == 0) {
                    record[valueDim] = runningMax[h];
                    record[valueDim + 1] = runningSum[h];
                }
            }
        }
    }
}

#define PAGED_ATTENTION_SPLIT(NAME, T)                                                                            \
    extern "C" __global__ void __launch_bounds__(SPLIT_THREADS)                                                  \
    NAME(const float* query, float* out, float* partials, const T* keys, const T* values,                        \
         const int* tokenSequence, const int* tokenPosition, const int* tables, int tableStride, int heads,      \
         int kvHeads, int headsPerBlock, int keyDim, int valueDim, int valueStride, int blockSize, int chunk,    \
         int tile, float scale, const float* newKeys, const float* newValues, const int* slots,                  \
         const int* rotaryPositions, const float* cosTable, const float* sinTable, int rotaryOffset,              \
         int rotaryHalf, int rotaryInterleaved) {                                                                 \
        paged_attention_split(query, out, partials, keys, values, tokenSequence, tokenPosition, tables,           \
                              tableStride, heads, kvHeads, headsPerBlock, keyDim, valueDim, valueStride,          \
                              blockSize, chunk, tile, scale, newKeys, newValues, slots, rotaryPositions,          \
                              cosTable, sinTable, rotaryOffset, rotaryHalf, rotaryInterleaved);                   \
    }
#if KILN_IN_UNIT(1)
PAGED_ATTENTION_SPLIT(kiln_paged_attention_split, float)
PAGED_ATTENTION_SPLIT(kiln_paged_attention_split_bf16, bf16_t)
#endif

#define COMBINE_THREADS 256
#define COMBINE_BATCH 8

// Merges the partial records of kiln_paged_attention_split (grid: tokens x heads): out = sum_s e^(m_s - M) o_s /
// sum_s e^(m_s - M) l_s over the splits that held keys (those starting at or before the token's position), M the
// largest m_s. Dynamic shared memory: splits floats for the weights e^(m_s - M). With many splits and a head's
// value vectors fewer than the threads (32 of a 128-wide head), `groups` threads share each vector, each over every
// groups-th split, and their sums are added in group order: the records' loads are spread over the block instead
// of queued behind one another in one thread.
#if KILN_IN_UNIT(1)
extern "C" __global__ void __launch_bounds__(COMBINE_THREADS)
kiln_paged_attention_combine(const float* partials, float* out,
                             const int* tokenPosition, int heads, int valueDim, int chunk, int splits) {
    wait_for_previous_kernel();
    extern __shared__ float splitWeight[];
    __shared__ float scratch[32];
    int t = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    int used = min(splits, tokenPosition[t] / chunk + 1);
    long long head = (long long) t * heads + h;
    int stride = valueDim + 4;
    const float* records = partials + head * splits * stride;
    float m = -KILN_INFINITY;
    for (int s = tid; s < used; s += COMBINE_THREADS) m = fmaxf(m, records[(long long) s * stride + valueDim]);
    m = block_max(m, scratch);
    float sum = 0.0f;
    for (int s = tid; s < used; s += COMBINE_THREADS) {
        const float* r = records + (long long) s * stride;
        float w = expf(r[valueDim] - m);
        splitWeight[s] = w;
        sum += w * r[valueDim + 1];
    }
    float inv = 1.0f / block_sum(sum, scratch); // its barriers also publish splitWeight[]
    int valueVectors = valueDim >> 2;
    const float4* records4 = reinterpret_cast<const float4*>(records);
    // Up to COMBINE_BATCH splits one thread per vector measured faster (1.5B shape at context 256: 9.2 vs 9.5 us a
    // layer); from 64 splits on the groups were 18-22% faster (contexts 2048 and 8192).
    int groups = splits > COMBINE_BATCH ? COMBINE_THREADS / valueVectors : 1;
    if (groups > 1) {
        __shared__ float4 groupSums[COMBINE_THREADS];
        int d = tid % valueVectors, g = tid / valueVectors;
        if (g < groups) {
            float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
            for (int s = g; s < used; s += groups) {
                float w = splitWeight[s];
                float4 x = records4[(long long) s * (stride >> 2) + d];
                a.x += w * x.x;
                a.y += w * x.y;
                a.z += w * x.z;
                a.w += w * x.w;
            }
            groupSums[tid] = a; // tid == g * valueVectors + d
        }
        __syncthreads();
        if (tid < valueVectors) {
            float4 a = groupSums[tid];
            for (int k = 1; k < groups; k++) {
                float4 x = groupSums[k * valueVectors + tid];
                a.x += x.x;
                a.y += x.y;
                a.z += x.z;
                a.w += x.w;
            }
            reinterpret_cast<float4*>(out + head * valueDim)[tid] = make_float4(a.x * inv, a.y * inv, a.z * inv, a.w * inv);
        }
        return;
    }
    for (int d = tid; d < valueVectors; d += COMBINE_THREADS) {
        float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        // COMBINE_BATCH records' loads in flight at a time (MLA's 8-key chunks give 32 splits at context 256), added
        // in split order.
        for (int first = 0; first < used; first += COMBINE_BATCH) {
            float4 x[COMBINE_BATCH];
#pragma unroll
            for (int b = 0; b < COMBINE_BATCH; b++) {
                if (first + b < used) x[b] = records4[(long long) (first + b) * (stride >> 2) + d];
            }
#pragma unroll
            for (int b = 0; b < COMBINE_BATCH; b++) {
                if (first + b < used) {
                    float w = splitWeight[first + b];
                    a.x += w * x[b].x;
                    a.y += w * x[b].y;
                    a.z += w * x[b].z;
                    a.w += w * x[b].w;
                }
            }
        }
        reinterpret_cast<float4*>(out + head * valueDim)[d] = make_float4(a.x * inv, a.y * inv, a.z * inv, a.w * inv);
    }
}
#endif

// ---- decode attention in registers (bf16 cache, heads of 128) ---------------------------------------------------
//
// kiln_decode_attention_bf16: the split kernel's decode case (every token its sequence's one query token, the cache
// write and the rotary fused) for the common geometry, written for latency rather than generality: a batch-1 step
// waits on attention in every layer, and the split kernel spends its time there on barriers, shared-memory passes and
// memory round trips, not on bytes. Here nothing goes through shared memory before the scores: each lane of a warp
// holds 4 of the 128 dimensions of the group's queries (up to DECODE_GROUP heads of one KV head), of DECODE_KEYS keys
// and of their values, straight from the cache into registers. A warp's scores are summed across lanes by a
// transposing reduction (31 shuffles leave lane g * 4 + j with head g's score of key j), the online softmax runs
// within groups of 4 lanes, and the weighted values accumulate in each lane's registers. The block's 8 warps take
// 32 consecutive keys a pass; their results merge once through shared memory at the end, and a token's splits (grid
// y, one cluster of them) merge through distributed shared memory, as the split kernel's clustered plan does.
//
// Grid (tokens * kvHeads, splits), DECODE_THREADS threads, clusters of `splits` along y when splits > 1 (at most
// SPLIT_MAX_CLUSTER). Block (row, split) serves token t = row / kvHeads, KV head row % kvHeads, keys [split * chunk,
// min((split + 1) * chunk, position + 1)). Token t is sequence t (one query token per sequence: AttentionBatch's
// order), so its block table starts at tables + t * tableStride. Scores are in the log2 domain (queries scaled by
// scale * log2(e)), which changes nothing but the exponential's base. The new entry (the token's own key and value,
// rows t of newKeys and newValues, as kiln_write_kv reads them) is rotated (rotaryHalf > 0: halves when rotaryHalf is
// 64, interleaved pairs otherwise, from the start of the head), rounded to bf16 as the cache holds it, used, and stored
// at slots[t] (none for a negative slot) by the one warp that holds its position. The queries in memory stay
// unrotated. Requirements (checked by the Java side): heads / kvHeads <= DECODE_GROUP, 16-byte aligned rows.
#define DECODE_THREADS 256
#define DECODE_WARPS 8
#define DECODE_GROUP 8
#define DECODE_KEYS 4
#define DECODE_DIM 128
#define DECODE_LOG2E 1.4426950408889634f

// A pass's keys and values of one lane: 4 dimensions (8 bytes of bf16) of each of the warp's DECODE_KEYS keys.
struct DecodeRows {
    uint2 k[DECODE_KEYS], v[DECODE_KEYS];
};

__device__ __forceinline__ float4 widen_bf16x4(uint2 r) {
    return make_float4(bf16_low(r.x), bf16_high(r.x), bf16_low(r.y), bf16_high(r.y));
}

__device__ __forceinline__ uint2 round_bf16x4(float4 x) {
    return make_uint2((unsigned) float_to_bf16(x.x) | ((unsigned) float_to_bf16(x.y) << 16),
                      (unsigned) float_to_bf16(x.z) | ((unsigned) float_to_bf16(x.w) << 16));
}

// The lane's 4 dimensions of the pass's cached keys and values; keys at or past `end`, and the token's own position
// (not cached yet), stay zero. The block-table entries are read whatever `end` is, so that before the wait their loads
// need not wait for the position.
__device__ __forceinline__ void decode_load(DecodeRows& rows, const bf16_t* keys, const bf16_t* values, const int* table,
                                            int first, int end, int position, int kvHeads, int kvHead, int blockSize,
                                            int lane) {
#pragma unroll
    for (int j = 0; j < DECODE_KEYS; j++) {
        int key = first + j;
        int slotBlock = key / blockSize;
        long long block = table[slotBlock];
        rows.k[j] = make_uint2(0u, 0u);
        rows.v[j] = make_uint2(0u, 0u);
        if (key < end && key != position) {
            long long entry = ((block * kvHeads + kvHead) * blockSize + (key - slotBlock * blockSize)) * DECODE_DIM + 4 * lane;
            rows.k[j] = *reinterpret_cast<const uint2*>(keys + entry);
            rows.v[j] = *reinterpret_cast<const uint2*>(values + entry);
        }
    }
}

// Rotates the lane's 4 dimensions of a head (see the kernel's comment); c and s are the lane's factors.
__device__ __forceinline__ float4 decode_rotate(float4 x, const float (&c)[4], const float (&s)[4], int rotaryHalf,
                                                bool interleaved, int lane) {
    if (rotaryHalf == 0) return x;
    if (!interleaved) {
        // Dimension i < 64 pairs with i + 64: lane l with lane l ^ 16. The first of a pair becomes a c - b s, the
        // second b c + a s.
        float sign = lane < 16 ? -1.0f : 1.0f;
        float4 p;
        p.x = __shfl_xor_sync(0xffffffffu, x.x, 16);
        p.y = __shfl_xor_sync(0xffffffffu, x.y, 16);
        p.z = __shfl_xor_sync(0xffffffffu, x.z, 16);
        p.w = __shfl_xor_sync(0xffffffffu, x.w, 16);
        return make_float4(x.x * c[0] + sign * p.x * s[0], x.y * c[1] + sign * p.y * s[1],
                           x.z * c[2] + sign * p.z * s[2], x.w * c[3] + sign * p.w * s[3]);
    }
    // Interleaved pairs (2i, 2i + 1) = the lane's (x, y) and (z, w), for i below rotaryHalf.
    float4 r = x;
    if (2 * lane < rotaryHalf) {
        r.x = x.x * c[0] - x.y * s[0];
        r.y = x.y * c[0] + x.x * s[0];
    }
    if (2 * lane + 1 < rotaryHalf) {
        r.z = x.z * c[2] - x.w * s[2];
        r.w = x.w * c[2] + x.z * s[2];
    }
    return r;
}

// One step of transpose_sum: a lane keeps the WIDTH values whose index has its lane bit WIDTH and adds its partner's.
template <int WIDTH>
__device__ __forceinline__ void transpose_step(float (&v)[32], int lane) {
    bool upper = (lane & WIDTH) != 0;
#pragma unroll
    for (int i = 0; i < WIDTH; i++) {
        float send = upper ? v[i] : v[i + WIDTH];
        float keep = upper ? v[i + WIDTH] : v[i];
        v[i] = keep + __shfl_xor_sync(0xffffffffu, send, WIDTH);
    }
}

// Leaves in every lane L the sum over the warp's lanes of v[L] (the lanes' 32 values each): at each of 5 steps a
// lane keeps the half of its remaining values whose index has its lane bit, and adds its partner's copy of them
// (31 shuffles where 32 warp sums would take 160).
__device__ __forceinline__ float transpose_sum(float (&v)[32], int lane) {
    transpose_step<16>(v, lane);
    transpose_step<8>(v, lane);
    transpose_step<4>(v, lane);
    transpose_step<2>(v, lane);
    transpose_step<1>(v, lane);
    return v[0];
}

#if KILN_IN_UNIT(1)
extern "C" __global__ void __launch_bounds__(DECODE_THREADS, 1)
kiln_decode_attention_bf16(const float* query, float* out, bf16_t* keys, bf16_t* values, const int* tokenPosition,
                           const int* tables, int tableStride, int heads, int kvHeads, int blockSize, int chunk,
                           float scale, const float* newKeys, const float* newValues, const int* slots,
                           const int* rotaryPositions, const float* cosTable, const float* sinTable, int rotaryHalf,
                           int rotaryInterleaved) {
    __shared__ float4 warpOut[DECODE_WARPS][DECODE_GROUP][32];
    __shared__ float warpMax[DECODE_WARPS][DECODE_GROUP], warpSum[DECODE_WARPS][DECODE_GROUP];
    // What the cluster's blocks push here for this block to merge (see the end): at most 32 * DECODE_GROUP outputs
    // spread over the splits, plus one slot per split for the rounding up.
    __shared__ float4 gathered[DECODE_GROUP * 32 + SPLIT_MAX_CLUSTER];
    __shared__ float gatheredMax[SPLIT_MAX_CLUSTER][DECODE_GROUP], gatheredSum[SPLIT_MAX_CLUSTER][DECODE_GROUP];
    int kvHead = blockIdx.x % kvHeads, t = blockIdx.x / kvHeads;
    int split = blockIdx.y, splits = gridDim.y;
    int group = heads / kvHeads;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    bool interleaved = rotaryInterleaved != 0;
    // A block may write into another's shared memory only once that one has started: each block announces its start
    // here and waits for the others' just before its first such write, by when they have long arrived.
    if (splits > 1) cluster_arrive_relaxed();
    const int* table = tables + (long long) t * tableStride;

    // Before the wait: everything that is not the kernel ahead's output (metadata, cache, rotation tables).
    int position = tokenPosition[t];
    int begin = split * chunk;
    int end = min(begin + chunk, position + 1);
    int passes = (chunk + DECODE_WARPS * DECODE_KEYS - 1) / (DECODE_WARPS * DECODE_KEYS);
    DecodeRows rows;
    decode_load(rows, keys, values, table, begin + warp * DECODE_KEYS, end, position, kvHeads, kvHead, blockSize, lane);
    float c[4] = {1.0f, 1.0f, 1.0f, 1.0f}, s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (rotaryHalf > 0) {
        long long rotaryRow = (long long) rotaryPositions[t] * rotaryHalf;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int i = interleaved ? (4 * lane + e) >> 1 : (4 * lane + e) % rotaryHalf;
            if (i < rotaryHalf) {
                c[e] = cosTable[rotaryRow + i];
                s[e] = sinTable[rotaryRow + i];
            }
        }
    }
    // The warp (and pass and key) that holds the token's own position, if this block's chunk does.
    int own = position - begin;
    bool holdsNew = own >= 0 && own < chunk;
    int ownPass = own / (DECODE_WARPS * DECODE_KEYS), ownWarp = own / DECODE_KEYS % DECODE_WARPS;
    int ownKey = own % DECODE_KEYS;
    bool mine = holdsNew && ownWarp == warp;
    wait_then_release_next_kernel();

    // The queries (scaled into the log2 domain) and, for the warp holding the position, the new entry: one round of
    // loads. Then both are rotated, and the entry rounded as the cache holds it and stored there.
    float4 q[DECODE_GROUP];
    const float4* qRow = reinterpret_cast<const float4*>(query + ((long long) t * heads + kvHead * group) * DECODE_DIM);
#pragma unroll
    for (int g = 0; g < DECODE_GROUP; g++) q[g] = g < group ? qRow[g * 32 + lane] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 newKey = make_float4(0.0f, 0.0f, 0.0f, 0.0f), newValue = newKey;
    if (mine) {
        long long at = ((long long) t * kvHeads + kvHead) * DECODE_DIM;
        newKey = reinterpret_cast<const float4*>(newKeys + at)[lane];
        newValue = reinterpret_cast<const float4*>(newValues + at)[lane];
    }
    float factor = scale * DECODE_LOG2E;
#pragma unroll
    for (int g = 0; g < DECODE_GROUP; g++) {
        float4 r = decode_rotate(q[g], c, s, rotaryHalf, interleaved, lane);
        q[g] = make_float4(r.x * factor, r.y * factor, r.z * factor, r.w * factor);
    }
    uint2 newKeyBits = make_uint2(0u, 0u), newValueBits = newKeyBits;
    if (mine) { // warp-uniform: the rotation's shuffles need the whole warp
        newKeyBits = round_bf16x4(decode_rotate(newKey, c, s, rotaryHalf, interleaved, lane));
        newValueBits = round_bf16x4(newValue);
        int slot = slots[t];
        if (slot >= 0) {
            long long block = slot / blockSize;
            long long entry = ((block * kvHeads + kvHead) * blockSize + (slot - block * blockSize)) * DECODE_DIM + 4 * lane;
            *reinterpret_cast<uint2*>(keys + entry) = newKeyBits;
            *reinterpret_cast<uint2*>(values + entry) = newValueBits;
        }
    }

    // Passes of DECODE_WARPS * DECODE_KEYS keys; lane L's running max and sum are head L / 4's.
    float4 acc[DECODE_GROUP];
#pragma unroll
    for (int g = 0; g < DECODE_GROUP; g++) acc[g] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float runningMax = -KILN_INFINITY, runningSum = 0.0f;
    for (int pass = 0; pass < passes; pass++) {
        int first = begin + pass * DECODE_WARPS * DECODE_KEYS + warp * DECODE_KEYS;
        DecodeRows next;
        if (pass + 1 < passes) {
            decode_load(next, keys, values, table, first + DECODE_WARPS * DECODE_KEYS, end, position, kvHeads, kvHead,
                        blockSize, lane);
        }
        if (mine && pass == ownPass) {
#pragma unroll
            for (int j = 0; j < DECODE_KEYS; j++) {
                if (j == ownKey) {
                    rows.k[j] = newKeyBits;
                    rows.v[j] = newValueBits;
                }
            }
        }
        float4 k[DECODE_KEYS];
#pragma unroll
        for (int j = 0; j < DECODE_KEYS; j++) k[j] = widen_bf16x4(rows.k[j]);
        float partial[32];
#pragma unroll
        for (int g = 0; g < DECODE_GROUP; g++) {
#pragma unroll
            for (int j = 0; j < DECODE_KEYS; j++) {
                partial[g * DECODE_KEYS + j] = q[g].x * k[j].x + q[g].y * k[j].y + q[g].z * k[j].z + q[g].w * k[j].w;
            }
        }
        float score = transpose_sum(partial, lane);
        int head = lane / DECODE_KEYS, key = first + lane % DECODE_KEYS;
        if (head >= group || key >= end) score = -KILN_INFINITY;
        float passMax = fmaxf(score, __shfl_xor_sync(0xffffffffu, score, 1));
        passMax = fmaxf(passMax, __shfl_xor_sync(0xffffffffu, passMax, 2));
        float newMax = fmaxf(runningMax, passMax);
        float weight = score == -KILN_INFINITY ? 0.0f : exp2f(score - newMax);
        float correction = newMax == -KILN_INFINITY ? 1.0f : exp2f(runningMax - newMax);
        float passSum = weight + __shfl_xor_sync(0xffffffffu, weight, 1);
        passSum += __shfl_xor_sync(0xffffffffu, passSum, 2);
        runningSum = runningSum * correction + passSum;
        runningMax = newMax;
        float4 v[DECODE_KEYS];
#pragma unroll
        for (int j = 0; j < DECODE_KEYS; j++) v[j] = widen_bf16x4(rows.v[j]);
#pragma unroll
        for (int g = 0; g < DECODE_GROUP; g++) {
            float cg = __shfl_sync(0xffffffffu, correction, g * DECODE_KEYS);
            float4 a = make_float4(acc[g].x * cg, acc[g].y * cg, acc[g].z * cg, acc[g].w * cg);
#pragma unroll
            for (int j = 0; j < DECODE_KEYS; j++) {
                float p = __shfl_sync(0xffffffffu, weight, g * DECODE_KEYS + j);
                a.x += p * v[j].x;
                a.y += p * v[j].y;
                a.z += p * v[j].z;
                a.w += p * v[j].w;
            }
            acc[g] = a;
        }
        if (pass + 1 < passes) rows = next;
    }

    // The block's warps merged (thread = head g, float4 d of its output), then the cluster's blocks.
#pragma unroll
    for (int g = 0; g < DECODE_GROUP; g++) warpOut[warp][g][lane] = acc[g];
    if (lane % DECODE_KEYS == 0) {
        warpMax[warp][lane / DECODE_KEYS] = runningMax;
        warpSum[warp][lane / DECODE_KEYS] = runningSum;
    }
    __syncthreads();
    int g = warp, d = lane; // DECODE_THREADS == DECODE_GROUP * 32
    float m = -KILN_INFINITY;
#pragma unroll
    for (int w = 0; w < DECODE_WARPS; w++) m = fmaxf(m, warpMax[w][g]);
    float total = 0.0f;
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int w = 0; w < DECODE_WARPS; w++) {
        float e = warpMax[w][g] == -KILN_INFINITY ? 0.0f : exp2f(warpMax[w][g] - m);
        float4 x = warpOut[w][g][d];
        total += e * warpSum[w][g];
        o.x += e * x.x;
        o.y += e * x.y;
        o.z += e * x.z;
        o.w += e * x.w;
    }
    float4* outRow = reinterpret_cast<float4*>(out + ((long long) t * heads + kvHead * group) * DECODE_DIM);
    if (splits == 1) {
        if (g < group) {
            float inv = 1.0f / total;
            outRow[g * 32 + d] = make_float4(o.x * inv, o.y * inv, o.z * inv, o.w * inv);
        }
        return;
    }
    // Across the cluster by pushing: block r merges the outputs i with i % splits == r, so every block stores each
    // output's partial into its merging block's shared memory (slot: source rank, then i / splits), and each head's
    // max and sum into every block; one cluster barrier, and each block merges from its own shared memory. (Reading
    // the other blocks' results instead took two barriers and remote loads: 2.4 us of a 6 us kernel at context 256.)
    int perBlock = (group * 32 + splits - 1) / splits;
    cluster_wait();
    if (g < group) {
        int i = g * 32 + d;
        cluster_store4(shared_address(&gathered[split * perBlock + i / splits]), i % splits, o);
        if (d < splits) {
            cluster_store(shared_address(&gatheredMax[split][g]), d, m);
            cluster_store(shared_address(&gatheredSum[split][g]), d, total);
        }
    }
    cluster_barrier();
    for (int k = threadIdx.x; k < perBlock; k += DECODE_THREADS) {
        int i = split + k * splits;
        if (i >= group * 32) break;
        int h = i / 32;
        float best = -KILN_INFINITY;
#pragma unroll
        for (int r = 0; r < SPLIT_MAX_CLUSTER; r++) {
            if (r < splits) best = fmaxf(best, gatheredMax[r][h]);
        }
        float sum = 0.0f;
        float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int r = 0; r < SPLIT_MAX_CLUSTER; r++) {
            if (r < splits) {
                float rm = gatheredMax[r][h];
                float e = rm == -KILN_INFINITY ? 0.0f : exp2f(rm - best);
                float4 x = gathered[r * perBlock + k];
                sum += e * gatheredSum[r][h];
                a.x += e * x.x;
                a.y += e * x.y;
                a.z += e * x.z;
                a.w += e * x.w;
            }
        }
        float inv = 1.0f / sum;
        outRow[i] = make_float4(a.x * inv, a.y * inv, a.z * inv, a.w * inv);
    }
}
#endif

// ---- multi-token attention on the tensor cores -------------------------------------------------------------

// A prompt chunk's (or any multi-token batch's) causal attention over a bf16 cache with 128-wide heads and values
// apart from keys, flash-style. A block takes a tile of up to PREFILL_TOKENS consecutive tokens of one sequence and
// one KV head, one warp per query head of the group (at most 8), and walks the sequence's cached entries in tiles of
// PREFILL_KEYS keys and values that all its warps share through shared memory (cp.async, the next tile loading while
// this one is used). Scores and weighted values are products on the tensor cores (mma m16n8k16: bf16 operands, f32
// sums), a warp's 16 query rows against 8 keys (or 8 value dimensions) at a time. The split kernel reads every cached
// entry once per query token; here once per tile of 16, and the products run at tensor-core rates.
// Accuracy: the cached keys and values are bf16 already, so they enter exactly; the queries and the softmax weights,
// f32, enter as two bf16 parts each (hi + lo, 16 bits of mantissa together), so each product is two: results agree
// with the f32 kernels to a few 1e-6 on unit-sized values (2-3e-6 against float64) where one bf16 rounding would
// cost ~4e-3.
// tiles: (first token, token count) pairs, one per block along x; the tokens of a tile are one sequence's, in order.
// With splits > 1 a tile's keys are also cut into chunks of `chunk` keys (a multiple of PREFILL_KEYS), one block each,
// so that a short chunk of a long prompt still fills the device: each block then writes, per token and head, the
// record kiln_paged_attention_combine merges (the output sums, the running maximum in natural-log units, the sum of
// exponentials; stride 132) into partials, indexed from token `tokenBase` (the first of the tiles) on.
// Launch: grid (tiles, kvHeads * splits), heads / kvHeads warps a block, PrefillTiles.sharedBytes of dynamic shared
// memory. Two entries of one body, for two blocks an SM: kiln_prefill_attention_bf16 up to 6 query heads a KV head (at
// most 168 registers a thread; 10% faster than at 128 on an H100), kiln_prefill_attention_wide_bf16 for 7 and 8 (at
// most 128, 104,448 bytes of shared memory).
// Masked keys are multiplied as zero weights, not skipped: every entry up to a tile's last position must be finite
// (the chunk's own tokens wrote them; entries past it are zero-filled).
#define PREFILL_HEAD 128
#define PREFILL_TOKENS 16
#define PREFILL_KEYS 32
// bf16 elements a shared row: 272 bytes, so that the 8 rows a fragment reads at once fall into 32 distinct banks.
#define PREFILL_ROW (PREFILL_HEAD + 8)
#define PREFILL_MAX_GROUP 8

// cp.async, ldmatrix and bf16 mma need sm_80; below it the kernel is an empty entry that the Java side never launches
// (Kernels.prefillAttentionAvailable).
#if __CUDA_ARCH__ >= 800
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int bytes) {
    // bytes < 16 fills the rest of the 16 with zeros (0: a row past the sequence's end, kept finite).
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}

__device__ __forceinline__ void cp_async_wait_one() {
    asm volatile("cp.async.wait_group 1;" ::: "memory");
}

// x0 in the low half, x1 in the high half, each rounded to nearest even.
__device__ __forceinline__ unsigned pack_bf16x2(float x0, float x1) {
    unsigned d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(x1), "f"(x0));
    return d;
}

// The pair as two bf16 pairs whose sum is the pair to 16 bits of mantissa.
__device__ __forceinline__ void split_bf16x2(float x0, float x1, unsigned& hi, unsigned& lo) {
    hi = pack_bf16x2(x0, x1);
    lo = pack_bf16x2(x0 - bf16_low(hi), x1 - bf16_high(hi));
}

// d += a (16 x 16, rows) * b (16 x 8, columns); fragments as the PTX ISA lays them out for m16n8k16.
__device__ __forceinline__ void mma_bf16_16x8x16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 bf16 matrices from shared memory, transposed: lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned address, unsigned& r0, unsigned& r1, unsigned& r2,
                                                  unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(address));
}

// Four 8x8 bf16 matrices from shared memory as they are stored (an A fragment of m16k16 for rows 0-7 / 8-15 of
// columns 0-7, then 8-15).
__device__ __forceinline__ void ldmatrix_x4(unsigned address, unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(address));
}

// Entries first .. first + PREFILL_KEYS - 1 of the sequence (keys and values) into one stage of shared memory; those
// past `last` become zeros.
__device__ __forceinline__ void prefill_load_tile(bf16_t* keyStage, bf16_t* valueStage, const bf16_t* keys,
                                                  const bf16_t* values, const int* table, int first, int last,
                                                  int kvHeads, int kvHead, int blockSize) {
    for (int i = threadIdx.x; i < 2 * PREFILL_KEYS * (PREFILL_HEAD / 8); i += blockDim.x) {
        bool value = i >= PREFILL_KEYS * (PREFILL_HEAD / 8);
        int r = (i / (PREFILL_HEAD / 8)) % PREFILL_KEYS, chunk = i % (PREFILL_HEAD / 8);
        int j = first + r;
        bool valid = j <= last;
        const bf16_t* src = value ? values : keys;
        if (valid) {
            int block = table[j / blockSize];
            long long entry = ((long long) block * kvHeads + kvHead) * blockSize + j % blockSize;
            src += entry * PREFILL_HEAD + chunk * 8;
        }
        bf16_t* dst = (value ? valueStage : keyStage) + r * PREFILL_ROW + chunk * 8;
        cp_async16(shared_address(dst), src, valid ? 16 : 0);
    }
}

__device__ __forceinline__ void prefill_attention(const float* query, float* out, const bf16_t* keys,
        const bf16_t* values, const int* tiles, const int* tokenSequence, const int* tokenPosition, const int* tables,
        int tableStride, int heads, int kvHeads, int blockSize, float scale, float* partials, int tokenBase, int chunk,
        int splits) {
    // Dynamic shared memory (PrefillTiles.sharedBytes): two stages of keys, two of values, then each warp's queries
    // as hi and lo parts (rows of PREFILL_ROW).
    extern __shared__ __align__(16) unsigned char prefillShared[];
    bf16_t* keyStages = reinterpret_cast<bf16_t*>(prefillShared);    // stage i at i * PREFILL_KEYS * PREFILL_ROW
    bf16_t* valueStages = keyStages + 2 * PREFILL_KEYS * PREFILL_ROW;
    wait_for_previous_kernel();
    int group = heads / kvHeads, kvHead = blockIdx.y % kvHeads, split = blockIdx.y / kvHeads;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int first = tiles[2 * blockIdx.x], count = tiles[2 * blockIdx.x + 1];
    const int* table = tables + (long long) tokenSequence[first] * tableStride;
    int last = 0;
    for (int i = 0; i < count; i++) last = max(last, tokenPosition[first + i]);
    // This block's keys: [keyStart, keyEnd]; none when the split starts past every token of the tile (no token's
    // merge reads its records then).
    int keyStart = splits > 1 ? split * chunk : 0;
    if (keyStart > last) return;
    int keyEnd = splits > 1 ? min(last, keyStart + chunk - 1) : last;
    // This lane's two query rows (g and g + 8 of the warp's 16); rows past the tile repeat its last token and are
    // not stored.
    int rowA = min(g, count - 1), rowB = min(g + 8, count - 1);
    int positionA = tokenPosition[first + rowA], positionB = tokenPosition[first + rowB];
    int head = kvHead * group + warp;

    // The warp's queries, times the softmax scale and log2(e) (the softmax runs in base 2), as hi and lo parts in
    // shared memory, read back as A fragments (k-step s: dimensions 16s .. 16s + 15) by ldmatrix: in registers they
    // would hold a block to one an SM.
    bf16_t* qHi = valueStages + 2 * PREFILL_KEYS * PREFILL_ROW + warp * 2 * PREFILL_TOKENS * PREFILL_ROW;
    bf16_t* qLo = qHi + PREFILL_TOKENS * PREFILL_ROW;
    {
        float f = scale * 1.4426950408889634f;
        for (int i = lane; i < PREFILL_TOKENS * PREFILL_HEAD / 2; i += 32) {
            int row = i / (PREFILL_HEAD / 2), d = 2 * (i % (PREFILL_HEAD / 2));
            float2 x = *reinterpret_cast<const float2*>(
                    query + ((long long) (first + min(row, count - 1)) * heads + head) * PREFILL_HEAD + d);
            unsigned hi, lo;
            split_bf16x2(x.x * f, x.y * f, hi, lo);
            *reinterpret_cast<unsigned*>(qHi + row * PREFILL_ROW + d) = hi;
            *reinterpret_cast<unsigned*>(qLo + row * PREFILL_ROW + d) = lo;
        }
        __syncwarp();
    }
    // This lane's ldmatrix row: matrices 0-3 of an A fragment are rows 0-7 / 8-15 of columns 0-7, then of 8-15.
    unsigned qHiAddress = shared_address(qHi + ((lane & 7) + ((lane >> 3) & 1) * 8) * PREFILL_ROW + (lane >> 4) * 8);
    unsigned qLoAddress = qHiAddress + PREFILL_TOKENS * PREFILL_ROW * 2;

    float o[PREFILL_HEAD / 8][4];
#pragma unroll
    for (int j = 0; j < PREFILL_HEAD / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    // Running maxima of rows A and B, and this lane's share of their sums (the 4 lanes of a row add theirs at the end).
    float maxA = -KILN_INFINITY, maxB = -KILN_INFINITY, sumA = 0.0f, sumB = 0.0f;

    // Rows whose position comes before keyStart have no key here: their records are never read, and their values
    // (NaN) go only into records the merge skips.
    int tileCount = (keyEnd - keyStart) / PREFILL_KEYS + 1;
    prefill_load_tile(keyStages, valueStages, keys, values, table, keyStart, keyEnd, kvHeads, kvHead, blockSize);
    cp_async_commit();
    for (int t = 0; t < tileCount; t++) {
        if (t + 1 < tileCount) {
            int next = ((t + 1) & 1) * PREFILL_KEYS * PREFILL_ROW;
            prefill_load_tile(keyStages + next, valueStages + next, keys, values, table,
                              keyStart + (t + 1) * PREFILL_KEYS, keyEnd, kvHeads, kvHead, blockSize);
        }
        cp_async_commit();
        cp_async_wait_one();
        __syncthreads();
        const bf16_t* k = keyStages + (t & 1) * PREFILL_KEYS * PREFILL_ROW;
        const bf16_t* v = valueStages + (t & 1) * PREFILL_KEYS * PREFILL_ROW;

        // Scores: n-tile n holds keys 8n .. 8n + 7 of the tile; this lane has keys 8n + 2c, 8n + 2c + 1 of rows A
        // (s[n][0], s[n][1]) and B (s[n][2], s[n][3]).
        float s[PREFILL_KEYS / 8][4];
#pragma unroll
        for (int n = 0; n < PREFILL_KEYS / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int step = 0; step < PREFILL_HEAD / 16; step++) {
            unsigned aHi[4], aLo[4];
            ldmatrix_x4(qHiAddress + 32 * step, aHi[0], aHi[1], aHi[2], aHi[3]);
            ldmatrix_x4(qLoAddress + 32 * step, aLo[0], aLo[1], aLo[2], aLo[3]);
#pragma unroll
            for (int n = 0; n < PREFILL_KEYS / 8; n++) {
                const bf16_t* row = k + (8 * n + g) * PREFILL_ROW + 16 * step + 2 * c;
                unsigned b0 = *reinterpret_cast<const unsigned*>(row);
                unsigned b1 = *reinterpret_cast<const unsigned*>(row + 8);
                mma_bf16_16x8x16(s[n], aHi, b0, b1);
                mma_bf16_16x8x16(s[n], aLo, b0, b1);
            }
        }
        int base = keyStart + t * PREFILL_KEYS;
        if (base + PREFILL_KEYS - 1 > min(positionA, positionB)) { // causal mask (and the entries past keyEnd)
#pragma unroll
            for (int n = 0; n < PREFILL_KEYS / 8; n++) {
                int j = base + 8 * n + 2 * c;
                if (j > positionA) s[n][0] = -KILN_INFINITY;
                if (j + 1 > positionA) s[n][1] = -KILN_INFINITY;
                if (j > positionB) s[n][2] = -KILN_INFINITY;
                if (j + 1 > positionB) s[n][3] = -KILN_INFINITY;
            }
        }
        float tileMaxA = -KILN_INFINITY, tileMaxB = -KILN_INFINITY;
#pragma unroll
        for (int n = 0; n < PREFILL_KEYS / 8; n++) {
            tileMaxA = fmaxf(tileMaxA, fmaxf(s[n][0], s[n][1]));
            tileMaxB = fmaxf(tileMaxB, fmaxf(s[n][2], s[n][3]));
        }
        tileMaxA = fmaxf(tileMaxA, __shfl_xor_sync(0xffffffffu, tileMaxA, 1));
        tileMaxA = fmaxf(tileMaxA, __shfl_xor_sync(0xffffffffu, tileMaxA, 2));
        tileMaxB = fmaxf(tileMaxB, __shfl_xor_sync(0xffffffffu, tileMaxB, 1));
        tileMaxB = fmaxf(tileMaxB, __shfl_xor_sync(0xffffffffu, tileMaxB, 2));
        // A split's first key is never masked for a row whose merge reads it, so after the first tile those rows'
        // running maxima are finite.
        float newMaxA = fmaxf(maxA, tileMaxA), newMaxB = fmaxf(maxB, tileMaxB);
        float correctionA = exp2f(maxA - newMaxA), correctionB = exp2f(maxB - newMaxB);
        maxA = newMaxA;
        maxB = newMaxB;
        sumA *= correctionA;
        sumB *= correctionB;
#pragma unroll
        for (int n = 0; n < PREFILL_KEYS / 8; n++) {
            s[n][0] = exp2f(s[n][0] - maxA);
            s[n][1] = exp2f(s[n][1] - maxA);
            s[n][2] = exp2f(s[n][2] - maxB);
            s[n][3] = exp2f(s[n][3] - maxB);
            sumA += s[n][0] + s[n][1];
            sumB += s[n][2] + s[n][3];
        }
#pragma unroll
        for (int j = 0; j < PREFILL_HEAD / 8; j++) {
            o[j][0] *= correctionA;
            o[j][1] *= correctionA;
            o[j][2] *= correctionB;
            o[j][3] *= correctionB;
        }
        // Weighted values: k-step kk covers keys 16kk .. 16kk + 15, whose weights are exactly the score fragments of
        // n-tiles 2kk and 2kk + 1 (the C layout of m16n8 is the A layout of m16k16); value rows come transposed by
        // ldmatrix, two n-tiles of 8 dimensions at a time.
#pragma unroll
        for (int kk = 0; kk < PREFILL_KEYS / 16; kk++) {
            unsigned pHi[4], pLo[4];
            split_bf16x2(s[2 * kk][0], s[2 * kk][1], pHi[0], pLo[0]);
            split_bf16x2(s[2 * kk][2], s[2 * kk][3], pHi[1], pLo[1]);
            split_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1], pHi[2], pLo[2]);
            split_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3], pHi[3], pLo[3]);
            int matrix = lane >> 3;
            const bf16_t* rowStart = v + (16 * kk + (lane & 7) + (matrix & 1) * 8) * PREFILL_ROW + (matrix >> 1) * 8;
#pragma unroll
            for (int jj = 0; jj < PREFILL_HEAD / 16; jj++) {
                unsigned b0, b1, b2, b3;
                ldmatrix_x4_trans(shared_address(rowStart + 16 * jj), b0, b1, b2, b3);
                mma_bf16_16x8x16(o[2 * jj], pHi, b0, b1);
                mma_bf16_16x8x16(o[2 * jj], pLo, b0, b1);
                mma_bf16_16x8x16(o[2 * jj + 1], pHi, b2, b3);
                mma_bf16_16x8x16(o[2 * jj + 1], pLo, b2, b3);
            }
        }
        __syncthreads(); // the stage is loaded again two tiles on
    }
    sumA += __shfl_xor_sync(0xffffffffu, sumA, 1);
    sumA += __shfl_xor_sync(0xffffffffu, sumA, 2);
    sumB += __shfl_xor_sync(0xffffffffu, sumB, 1);
    sumB += __shfl_xor_sync(0xffffffffu, sumB, 2);
    if (splits > 1) {
        // Records of (token, head, split): the sums unnormalised, then the maximum in natural-log units.
        const int stride = PREFILL_HEAD + 4;
        float* recordA = partials + (((long long) (first + g - tokenBase) * heads + head) * splits + split) * stride;
        float* recordB = partials + (((long long) (first + g + 8 - tokenBase) * heads + head) * splits + split) * stride;
#pragma unroll
        for (int j = 0; j < PREFILL_HEAD / 8; j++) {
            if (g < count) *reinterpret_cast<float2*>(recordA + 8 * j + 2 * c) = make_float2(o[j][0], o[j][1]);
            if (g + 8 < count) *reinterpret_cast<float2*>(recordB + 8 * j + 2 * c) = make_float2(o[j][2], o[j][3]);
        }
        if (c == 0) {
            const float ln2 = 0.6931471805599453f;
            if (g < count) *reinterpret_cast<float2*>(recordA + PREFILL_HEAD) = make_float2(maxA * ln2, sumA);
            if (g + 8 < count) *reinterpret_cast<float2*>(recordB + PREFILL_HEAD) = make_float2(maxB * ln2, sumB);
        }
        return;
    }
    float invA = 1.0f / sumA, invB = 1.0f / sumB;
    float* outA = out + ((long long) (first + g) * heads + head) * PREFILL_HEAD + 2 * c;
    float* outB = out + ((long long) (first + g + 8) * heads + head) * PREFILL_HEAD + 2 * c;
#pragma unroll
    for (int j = 0; j < PREFILL_HEAD / 8; j++) {
        if (g < count) *reinterpret_cast<float2*>(outA + 8 * j) = make_float2(o[j][0] * invA, o[j][1] * invA);
        if (g + 8 < count) *reinterpret_cast<float2*>(outB + 8 * j) = make_float2(o[j][2] * invB, o[j][3] * invB);
    }
}
#endif

#if __CUDA_ARCH__ >= 800
#define PREFILL_BODY prefill_attention(query, out, keys, values, tiles, tokenSequence, tokenPosition, tables, \
                                       tableStride, heads, kvHeads, blockSize, scale, partials, tokenBase, chunk, splits)
#else
#define PREFILL_BODY
#endif
#define PREFILL_ENTRY(QUALIFIER, NAME)                                                                               \
    extern "C" __global__ void QUALIFIER NAME(const float* query, float* out, const bf16_t* keys,                    \
            const bf16_t* values, const int* tiles, const int* tokenSequence, const int* tokenPosition,             \
            const int* tables, int tableStride, int heads, int kvHeads, int blockSize, float scale, float* partials, \
            int tokenBase, int chunk, int splits) {                                                                  \
        PREFILL_BODY;                                                                                                \
    }
// __maxnreg__ came with CUDA 12.4; an older NVRTC compiles the narrow entry like the wide one.
#if __CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 4)
#define PREFILL_NARROW_REGISTERS __maxnreg__(168)
#else
#define PREFILL_NARROW_REGISTERS __launch_bounds__(32 * PREFILL_MAX_GROUP)
#endif
#if KILN_IN_UNIT(1)
PREFILL_ENTRY(PREFILL_NARROW_REGISTERS, kiln_prefill_attention_bf16)
PREFILL_ENTRY(__launch_bounds__(32 * PREFILL_MAX_GROUP), kiln_prefill_attention_wide_bf16)
#endif

// ---- few-token products on the tensor cores -----------------------------------------------------------------

// out[t] = W . x[t] for 2 to 32 tokens (decode batches), W [rows, columns], the activations given as their bf16
// high and low parts (kiln_split_bf16; hi + lo keeps 16 bits of each f32), f32 sums: the paired cuBLAS GEMM's
// arithmetic, with each weight read once from HBM and no partial products written out. From a few tokens on the GEMV
// kernels become bound by their multiplies on the CUDA cores, and cuBLAS takes two to three times the weight-read
// time (Kernels.skinnyTakes: bf16 from 5 to 16 tokens by default, to 32 for matrices of few rows and for quantized
// weights; at 32 the bf16 gated MLP's entry runs at half the weight-read rate and cuBLAS is as fast; from 64 on cuBLAS
// is faster, as the activation reads outweigh the weights'). The weight formats are below (SKINNY_BF16 ...).
// A warp owns 32 weight rows (two m16 tiles; for the gated MLP row r of gate and of up) and streams a range of
// 64-column chunks of them from global memory straight into registers, as the GEMV does (two loads in flight per
// row, the next chunk's while this one multiplies). A dot product does not care in which order it visits the
// columns, so each lane takes the 8 + 8 columns it loaded (16 contiguous bytes at 8q and 32 + 8q of the chunk, q =
// lane % 4) as the k positions of its A fragment, and loads the same columns of each token's parts as its B
// fragment: mma m16n8k16 then sums exactly the products a plain GEMM would. Tokens are n8 tiles, NT of them.
// A block's SKINNY_WARPS warps are ROWS row groups (the activations each loads serve ROWS warps through L1: from 32
// tokens on their reads from L2 would otherwise outweigh the weights') times SKINNY_WARPS / ROWS column ranges,
// summed in a tree through shared memory; when the grid has several blocks along y, the columns are also split over
// the blocks of a thread block cluster of gridDim.y, pushed into block 0's shared memory. Fixed orders, so results
// do not depend on timing. Block 0's first column range stores.
// Requires columns % 64 == 0, 16-byte aligned W and parts, at most 3 segments whose rows (but the last's) are
// multiples of a block's rows. Dynamic shared memory: SkinnyPlan.sharedBytes (the warps' tree and the cluster's pushes).
#define SKINNY_WARPS 8
#define SKINNY_CHUNK 64

#if __CUDA_ARCH__ >= 800
// Weight formats of the entries: bf16 as stored; per-row INT8 codes (QuantizedWeight: W[r, c] = q[r, c] * s[r], exact
// in bf16, the row scale applied to the sums); INT4 codes u = q + 8 two a byte with a scale per row and group of
// columns; FP8 e4m3 codes with a scale per block (Fp8Weight). INT4 and FP8 codes are exact in bf16 too; their scales
// change along a row, so each chunk's sums are scaled (a chunk lies in one group or block: scaleColumns % 64 == 0)
// and added up in f32.
#define SKINNY_BF16 0
#define SKINNY_INT8 1
#define SKINNY_INT4 2
#define SKINNY_FP8 3
#define SKINNY_CODES_IN_BYTES(FMT) ((FMT) == SKINNY_INT8 || (FMT) == SKINNY_FP8)
#define SKINNY_SCALED_CHUNKS(FMT) ((FMT) == SKINNY_INT4 || (FMT) == SKINNY_FP8)

// A lane's weight bytes of one chunk for each of its four rows: bf16, the 16 bytes at columns 8q and 32 + 8q of the
// chunk (two loads); INT8 and FP8, the 16 bytes at columns 16q (one load); INT4, the 8 bytes of columns 16q onwards.
template <int MT, int FMT>
__device__ __forceinline__ void skinny_load_chunk(uint4 (&raw)[MT][2][2], const unsigned char* const (&wrow)[MT][2],
                                                  int chunk, int q) {
#pragma unroll
    for (int m = 0; m < MT; m++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            if (SKINNY_CODES_IN_BYTES(FMT)) {
                raw[m][h][0] = load_weights(reinterpret_cast<const uint4*>(wrow[m][h] + chunk * SKINNY_CHUNK + 16 * q));
            } else if (FMT == SKINNY_INT4) {
                // 8 bytes, 16 columns: loaded as the low half of a 16-byte word.
                uint2 v = *reinterpret_cast<const uint2*>(wrow[m][h] + chunk * (SKINNY_CHUNK / 2) + 8 * q);
                raw[m][h][0] = make_uint4(v.x, v.y, 0u, 0u);
            } else {
#pragma unroll
                for (int p = 0; p < 2; p++) {
                    raw[m][h][p] = load_weights(reinterpret_cast<const uint4*>(wrow[m][h] + 2 * (chunk * SKINNY_CHUNK + 8 * q + 32 * p)));
                }
            }
        }
    }
}

// Code widening runs once per weight, so it must cost a few full-rate instructions: integer-to-float conversions run
// at a quarter of the rate and left INT4 and FP8 decode batches bound by them. The pairs need not hold neighbouring
// columns: an A-fragment word and the B-fragment word it meets only have to hold the same two (see
// skinny_activation_pairs).

// Columns i and i + 1 of four INT8 codes (sign bits flipped, see int8_code) as a bf16 pair (exact), the first in the
// low half.
template <int I>
__device__ __forceinline__ unsigned int8_pair_bf16(unsigned flipped) {
    return pack_bf16x2(int8_code<I>(flipped), int8_code<I + 1>(flipped));
}

// The eight INT4 codes of a word (nibble k: column k, u = q + 8) as four bf16 pairs, pair j holding columns j and
// j + 4: (word >> 4j) & 0x000F000F puts both nibbles in the low mantissa bits of the bf16 128 (0x4300, whose mantissa
// counts units), and one bf16 fma subtracts 136, exactly.
__device__ __forceinline__ uint4 int4_word_bf16(unsigned codes) {
    unsigned pair[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        unsigned biased = ((codes >> (4 * j)) & 0x000F000Fu) | 0x43004300u;
        asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(pair[j]) : "r"(biased), "r"(0x3F803F80u), "r"(0xC308C308u)); // x 1 - 136
    }
    return make_uint4(pair[0], pair[1], pair[2], pair[3]);
}

// Bytes I and I + 2 of four e4m3 codes (columns I and I + 2, I = 0 or 1) as a bf16 pair, exactly, but for the NaN
// codes (fp8_word_bf16 sees to them). quant_kernels.cu's decode (e4m3_top_byte) in bf16: the code's sign, and its
// exponent and mantissa as a bf16's low exponent and top mantissa bits, make the code's value times 2^-120 (a
// subnormal code a bf16 subnormal), and one bf16 multiplication by 2^120 rebiases.
template <int I>
__device__ __forceinline__ unsigned e4m3_pair_bf16(unsigned codes) {
    unsigned signs = I == 0 ? codes << 8 : codes;     // byte I's sign at bit 15, byte I + 2's at bit 31
    unsigned rest = I == 0 ? codes << 4 : codes >> 4; // their low seven bits at bits 4..10 and 20..26
    unsigned bits = (rest & 0x07F007F0u) | (signs & 0x80008000u), pair;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(pair) : "r"(bits), "r"(0x7B807B80u), "r"(0x80008000u)); // x 2^120 - 0
    return pair;
}

// The four e4m3 codes of a word as the pairs of e4m3_pair_bf16, columns (0, 2) and (1, 3). A word holding a NaN code
// (S.1111.111) gets a NaN first pair instead, so that its row's sums are NaN as the product with that weight would be,
// whatever the activations (a test and a select per four codes, as e4m3_word does).
__device__ __forceinline__ uint2 fp8_word_bf16(unsigned codes) {
    return make_uint2(e4m3_word_has_nan(codes) ? 0x7FC07FC0u : e4m3_pair_bf16<0>(codes), e4m3_pair_bf16<1>(codes));
}

// The loaded bytes as bf16 A-fragment words: part p of row (m, h) holds the lane's 8 columns of k16 steps 2p and
// 2p + 1, in pairs. Codes are widened (part 0: the first 8 codes, part 1: the last 8); bf16 and INT8 pairs hold
// columns (0, 1), (2, 3), (4, 5), (6, 7) of the 8, FP8 pairs (0, 2), (1, 3), (4, 6), (5, 7), INT4 pairs (0, 4), (1, 5),
// (2, 6), (3, 7).
template <int MT, int FMT>
__device__ __forceinline__ void skinny_fragments(const uint4 (&raw)[MT][2][2], uint4 (&a)[MT][2][2]) {
#pragma unroll
    for (int m = 0; m < MT; m++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const uint4& c = raw[m][h][0];
            if (FMT == SKINNY_INT8) {
                unsigned x = c.x ^ 0x80808080u, y = c.y ^ 0x80808080u, z = c.z ^ 0x80808080u, w = c.w ^ 0x80808080u;
                a[m][h][0] = make_uint4(int8_pair_bf16<0>(x), int8_pair_bf16<2>(x), int8_pair_bf16<0>(y), int8_pair_bf16<2>(y));
                a[m][h][1] = make_uint4(int8_pair_bf16<0>(z), int8_pair_bf16<2>(z), int8_pair_bf16<0>(w), int8_pair_bf16<2>(w));
            } else if (FMT == SKINNY_FP8) {
                uint2 x = fp8_word_bf16(c.x), y = fp8_word_bf16(c.y), z = fp8_word_bf16(c.z), w = fp8_word_bf16(c.w);
                a[m][h][0] = make_uint4(x.x, x.y, y.x, y.y);
                a[m][h][1] = make_uint4(z.x, z.y, w.x, w.y);
            } else if (FMT == SKINNY_INT4) {
                a[m][h][0] = int4_word_bf16(c.x);
                a[m][h][1] = int4_word_bf16(c.y);
            } else {
                a[m][h][0] = raw[m][h][0];
                a[m][h][1] = raw[m][h][1];
            }
        }
    }
}

__device__ __forceinline__ unsigned word(const uint4& v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// 8 columns of activations (bf16 pairs (0, 1), (2, 3), (4, 5), (6, 7)) in the pair order of the format's weight
// words (skinny_fragments).
template <int FMT>
__device__ __forceinline__ uint4 skinny_activation_pairs(const uint4& v) {
    if (FMT == SKINNY_INT4) {
        return make_uint4(__byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632), __byte_perm(v.y, v.w, 0x5410),
                          __byte_perm(v.y, v.w, 0x7632));
    } else if (FMT == SKINNY_FP8) {
        return make_uint4(__byte_perm(v.x, v.y, 0x5410), __byte_perm(v.x, v.y, 0x7632), __byte_perm(v.z, v.w, 0x5410),
                          __byte_perm(v.z, v.w, 0x7632));
    }
    return v;
}

// One chunk: 4 k16 steps, each against every token tile's high and low parts. The lane's columns of part p start at
// column k + p * partStride (the same columns its weight words hold, paired alike).
template <int MT, int NT, int FMT>
__device__ __forceinline__ void skinny_multiply_chunk(float (&acc)[MT][NT][4], const uint4 (&a)[MT][2][2],
                                                      const bf16_t* xhi, const bf16_t* xlo, int columns, int tokens,
                                                      int tokenBase, int k, int partStride, int g) {
#pragma unroll
    for (int n = 0; n < NT; n++) {
        long long row = (long long) min(tokenBase + n * 8 + g, tokens - 1) * columns + k;
        uint4 bh[2], bl[2];
#pragma unroll
        for (int p = 0; p < 2; p++) {
            bh[p] = skinny_activation_pairs<FMT>(*reinterpret_cast<const uint4*>(xhi + row + partStride * p));
            bl[p] = skinny_activation_pairs<FMT>(*reinterpret_cast<const uint4*>(xlo + row + partStride * p));
        }
#pragma unroll
        for (int s = 0; s < 4; s++) {
            int p = s >> 1, w0 = 2 * (s & 1), w1 = w0 + 1;
#pragma unroll
            for (int m = 0; m < MT; m++) {
                const unsigned frag[4] = {word(a[m][0][p], w0), word(a[m][1][p], w0), word(a[m][0][p], w1),
                                          word(a[m][1][p], w1)};
                mma_bf16_16x8x16(acc[m][n], frag, word(bh[p], w0), word(bh[p], w1));
                mma_bf16_16x8x16(acc[m][n], frag, word(bl[p], w0), word(bl[p], w1));
            }
        }
    }
}

template <int MT, int NT>
__device__ __forceinline__ void skinny_store(float4* slot, const float (&acc)[MT][NT][4]) {
#pragma unroll
    for (int m = 0; m < MT; m++) {
#pragma unroll
        for (int n = 0; n < NT; n++) slot[(m * NT + n) * 32] = make_float4(acc[m][n][0], acc[m][n][1], acc[m][n][2], acc[m][n][3]);
    }
}

template <int MT, int NT>
__device__ __forceinline__ void skinny_add(float (&acc)[MT][NT][4], const float4* slot) {
#pragma unroll
    for (int m = 0; m < MT; m++) {
#pragma unroll
        for (int n = 0; n < NT; n++) {
            float4 v = slot[(m * NT + n) * 32];
            acc[m][n][0] += v.x;
            acc[m][n][1] += v.y;
            acc[m][n][2] += v.z;
            acc[m][n][3] += v.w;
        }
    }
}

// The sums over all the tile's columns: this block's column ranges in a tree, then block 0 adds the other blocks' of
// the cluster in rank order. True in block 0's warps of the first column range, which then hold them.
// GROUPS: the warps of one column range (row groups times token groups), each with its own sums.
template <int MT, int NT, int GROUPS>
__device__ __forceinline__ bool skinny_reduce(float (&acc)[MT][NT][4]) {
    extern __shared__ float4 skinny_shared[];
    constexpr int FRAGMENT = MT * NT * 32, RANGES = SKINNY_WARPS / GROUPS;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, group = warp % GROUPS, range = warp / GROUPS;
#pragma unroll
    for (int half = RANGES / 2; half >= 1; half >>= 1) {
        if (range >= half && range < 2 * half) skinny_store<MT, NT>(skinny_shared + ((range - half) * GROUPS + group) * FRAGMENT + lane, acc);
        __syncthreads();
        if (range < half) skinny_add<MT, NT>(acc, skinny_shared + (range * GROUPS + group) * FRAGMENT + lane);
        __syncthreads();
    }
    int blocks = gridDim.y, rank = blockIdx.y;
    if (blocks == 1) return range == 0;
    float4* incoming = skinny_shared + (RANGES / 2) * GROUPS * FRAGMENT;
    cluster_wait(); // every block has started: block 0's shared memory takes stores
    if (rank != 0 && range == 0) {
#pragma unroll
        for (int m = 0; m < MT; m++) {
#pragma unroll
            for (int n = 0; n < NT; n++) {
                cluster_store4(shared_address(incoming + ((rank - 1) * GROUPS + group) * FRAGMENT + (m * NT + n) * 32 + lane), 0,
                               make_float4(acc[m][n][0], acc[m][n][1], acc[m][n][2], acc[m][n][3]));
            }
        }
    }
    unsigned token = cluster_barrier();
    if (rank != 0 || range != 0) return false;
    for (int r = 1; r < blocks; r++) skinny_add<MT, NT>(acc, incoming + ((r - 1) * GROUPS + group) * FRAGMENT + lane + token);
    return true;
}

// A lane's sums of its weight rows over its warp's column range: the block's y-th of gridDim.y, cut in
// SKINNY_WARPS / ROWS.
// srow: for INT4 and FP8, each row's scales (its row of groups or of blocks), one per scaleColumns columns.
template <int MT, int NT, int GROUPS, int FMT>
__device__ __forceinline__ void skinny_sums(float (&acc)[MT][NT][4], const unsigned char* const (&wrow)[MT][2],
                                            const float* const (&srow)[MT][2], int scaleColumns,
                                            const bf16_t* xhi, const bf16_t* xlo, int columns, int tokens,
                                            int tokenBase) {
    constexpr int RANGES = SKINNY_WARPS / GROUPS;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    if (gridDim.y > 1) cluster_arrive_relaxed();
    int chunks = columns / SKINNY_CHUNK, splits = gridDim.y * RANGES, split = blockIdx.y * RANGES + warp / GROUPS;
    int first = (int) ((long long) chunks * split / splits), last = (int) ((long long) chunks * (split + 1) / splits);
    // The lane's columns of a chunk: bf16 8q and 32 + 8q onwards, codes 16q and 16q + 8 (see skinny_load_chunk).
    int laneColumn = FMT == SKINNY_BF16 ? 8 * q : 16 * q, partStride = FMT == SKINNY_BF16 ? 32 : 8;
#pragma unroll
    for (int m = 0; m < MT; m++) {
#pragma unroll
        for (int n = 0; n < NT; n++) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;
    }
    uint4 raw[MT][2][2];
    // The first chunk's weights go out before the wait for the kernel ahead (they depend on nothing it computes).
    if (first < last) skinny_load_chunk<MT, FMT>(raw, wrow, first, q);
    wait_for_previous_kernel();
    for (int c = first; c < last; c++) {
        uint4 next[MT][2][2], a[MT][2][2];
        bool more = c + 1 < last;
        if (more) skinny_load_chunk<MT, FMT>(next, wrow, c + 1, q);
        skinny_fragments<MT, FMT>(raw, a);
        if (SKINNY_SCALED_CHUNKS(FMT)) {
            float part[MT][NT][4];
#pragma unroll
            for (int m = 0; m < MT; m++) {
#pragma unroll
                for (int n = 0; n < NT; n++) part[m][n][0] = part[m][n][1] = part[m][n][2] = part[m][n][3] = 0.0f;
            }
            skinny_multiply_chunk<MT, NT, FMT>(part, a, xhi, xlo, columns, tokens, tokenBase, c * SKINNY_CHUNK + laneColumn, partStride, g);
            int scaleColumn = c * SKINNY_CHUNK / scaleColumns;
#pragma unroll
            for (int m = 0; m < MT; m++) {
                float s0 = srow[m][0][scaleColumn], s1 = srow[m][1][scaleColumn];
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    acc[m][n][0] += part[m][n][0] * s0;
                    acc[m][n][1] += part[m][n][1] * s0;
                    acc[m][n][2] += part[m][n][2] * s1;
                    acc[m][n][3] += part[m][n][3] * s1;
                }
            }
        } else {
            skinny_multiply_chunk<MT, NT, FMT>(acc, a, xhi, xlo, columns, tokens, tokenBase, c * SKINNY_CHUNK + laneColumn, partStride, g);
        }
        if (more) {
#pragma unroll
            for (int m = 0; m < MT; m++) {
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    raw[m][h][0] = next[m][h][0];
                    if (FMT != SKINNY_INT8) raw[m][h][1] = next[m][h][1];
                }
            }
        }
    }
}

// A segment of a plain product: weights (bf16 or INT8 codes), output, rows, bias (or none), row scales (INT8).
struct SkinnySegment {
    const unsigned char* w;
    float* out;
    int rows;
    const float* bias;
    const float* scales;
};

__device__ __forceinline__ bool find_skinny_segment(int& row, SkinnySegment& s, const SkinnySegment& s0,
                                                    const SkinnySegment& s1, const SkinnySegment& s2) {
    if (row < s0.rows) {
        s = s0;
    } else if ((row -= s0.rows) < s1.rows) {
        s = s1;
    } else if ((row -= s1.rows) < s2.rows) {
        s = s2;
    } else {
        return false;
    }
    return true;
}

// Up to three products of the same activations (q, k and v) in one launch: block x owns rows 32 ROWS x .. of the
// segments' rows one after another, its warp group i the 32 from 32 ROWS x + 32 i. Plus each segment's bias when
// it has one, times its row scales when it has them.
template <int FMT>
__device__ __forceinline__ long long skinny_row_bytes(int columns) {
    return FMT == SKINNY_BF16 ? 2LL * columns : FMT == SKINNY_INT4 ? columns / 2 : columns;
}

// Row r's scales of a segment: INT4 a row of groups, FP8 the row of blocks of r's block (scaleRows rows a block).
__device__ __forceinline__ const float* skinny_scale_row(const float* scales, int r, int scaleRows, int columns,
                                                         int scaleColumns) {
    return scales ? scales + (long long) (r / scaleRows) * ((columns + scaleColumns - 1) / scaleColumns) : nullptr;
}

// TOKEN_GROUPS > 1: the NT token tiles are dealt to as many warps (NT / TOKEN_GROUPS each) that read the same weight
// rows, the second time from L2: fewer sums a warp, which the 4-tile INT4 and FP8 entries need for their chunk sums.
template <int NT, int ROWS, int FMT, int TOKEN_GROUPS>
__device__ __forceinline__ void skinny_product(const bf16_t* xhi, const bf16_t* xlo, int columns, int tokens,
                                               const SkinnySegment& s0, const SkinnySegment& s1, const SkinnySegment& s2,
                                               int scaleRows, int scaleColumns) {
    constexpr int WARP_TILES = NT / TOKEN_GROUPS;
    int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3, warp = threadIdx.x >> 5;
    int row = blockIdx.x * 32 * ROWS;
    SkinnySegment s;
    if (!find_skinny_segment(row, s, s0, s1, s2)) return;
    row += 32 * (warp % ROWS);
    int tokenBase = 8 * WARP_TILES * ((warp / ROWS) % TOKEN_GROUPS);
    long long rowBytes = skinny_row_bytes<FMT>(columns);
    const unsigned char* wrow[2][2];
    const float* srow[2][2];
#pragma unroll
    for (int m = 0; m < 2; m++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = min(row + 16 * m + 8 * h + g, s.rows - 1);
            wrow[m][h] = s.w + r * rowBytes;
            srow[m][h] = skinny_scale_row(s.scales, r, scaleRows, columns, scaleColumns);
        }
    }
    float acc[2][WARP_TILES][4];
    skinny_sums<2, WARP_TILES, ROWS * TOKEN_GROUPS, FMT>(acc, wrow, srow, scaleColumns, xhi, xlo, columns, tokens, tokenBase);
    if (!skinny_reduce<2, WARP_TILES, ROWS * TOKEN_GROUPS>(acc)) return;
#pragma unroll
    for (int m = 0; m < 2; m++) {
#pragma unroll
        for (int n = 0; n < WARP_TILES; n++) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int r = row + 16 * m + 8 * (i >> 1) + g, t = tokenBase + n * 8 + 2 * q + (i & 1);
                if (r < s.rows && t < tokens) {
                    float v = acc[m][n][i] * (FMT == SKINNY_INT8 ? s.scales[r] : 1.0f);
                    s.out[(long long) t * s.rows + r] = v + (s.bias ? s.bias[r] : 0.0f);
                }
            }
        }
    }
}

// The gate and up products of an MLP and silu(gate) * up into out, whose high and low parts also go to outHi and
// outLo when given (the down product's operand): block x owns rows 16 ROWS x .. of both, its warp group i the 16
// from 16 ROWS x + 16 i. Gate and up themselves are not stored. sg and su: the two weights' scales (none for bf16).
template <int NT, int ROWS, int FMT, int TOKEN_GROUPS>
__device__ __forceinline__ void skinny_silu_product(const bf16_t* xhi, const bf16_t* xlo, int columns, int tokens,
        const unsigned char* wg, const unsigned char* wu, int rows, float* out, bf16_t* outHi, bf16_t* outLo,
        const float* sg, const float* su, int scaleRows, int scaleColumns) {
    constexpr int WARP_TILES = NT / TOKEN_GROUPS;
    int lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3, warp = threadIdx.x >> 5;
    int row = blockIdx.x * 16 * ROWS + 16 * (warp % ROWS);
    int tokenBase = 8 * WARP_TILES * ((warp / ROWS) % TOKEN_GROUPS);
    long long rowBytes = skinny_row_bytes<FMT>(columns);
    const unsigned char* wrow[2][2];
    const float* srow[2][2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        int r = min(row + 8 * h + g, rows - 1);
        wrow[0][h] = wg + r * rowBytes;
        wrow[1][h] = wu + r * rowBytes;
        srow[0][h] = skinny_scale_row(sg, r, scaleRows, columns, scaleColumns);
        srow[1][h] = skinny_scale_row(su, r, scaleRows, columns, scaleColumns);
    }
    float acc[2][WARP_TILES][4];
    skinny_sums<2, WARP_TILES, ROWS * TOKEN_GROUPS, FMT>(acc, wrow, srow, scaleColumns, xhi, xlo, columns, tokens, tokenBase);
    if (!skinny_reduce<2, WARP_TILES, ROWS * TOKEN_GROUPS>(acc)) return;
#pragma unroll
    for (int n = 0; n < WARP_TILES; n++) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int r = row + 8 * (i >> 1) + g, t = tokenBase + n * 8 + 2 * q + (i & 1);
            if (r < rows && t < tokens) {
                bool rowScaled = FMT == SKINNY_INT8;
                float gate = acc[0][n][i] * (rowScaled ? sg[r] : 1.0f);
                float v = gate / (1.0f + expf(-gate)) * acc[1][n][i] * (rowScaled ? su[r] : 1.0f);
                long long o = (long long) t * rows + r;
                out[o] = v;
                if (outHi) {
                    bf16_t h = float_to_bf16(v);
                    outHi[o] = h;
                    outLo[o] = float_to_bf16(v - bf16_to_float(h));
                }
            }
        }
    }
}
#define SKINNY_BODY(...) __VA_ARGS__
#else
#define SKINNY_BODY(...)
#endif

// Entry points per token tiles NT (up to 8 NT tokens) and ROWS row groups a block (Kernels.skinnyRowGroups picks
// them per shape): kiln_skinny_bf16_n<NT>_r<ROWS>, kiln_skinny_silu_bf16_n<NT> (ROWS = NT). Two blocks an SM: at
// 138 registers the 4-tile entries fit only one, and 140 blocks of gate/up then ran in two waves (32 tokens: 61 us
// against 42 held to 128 registers, which spills 28 bytes).
#define SKINNY_ENTRY_NAMED(NAME, FMT, NT, ROWS, TG)                                                                \
    extern "C" __global__ void __launch_bounds__(SKINNY_WARPS * 32, 2) NAME(                                       \
            const bf16_t* xhi, const bf16_t* xlo, int columns, int tokens, const unsigned char* w0, float* o0,     \
            int r0, const float* b0, const float* s0, const unsigned char* w1, float* o1, int r1, const float* b1, \
            const float* s1, const unsigned char* w2, float* o2, int r2, const float* b2, const float* s2,         \
            int scaleRows, int scaleColumns) {                                                                    \
        SKINNY_BODY(skinny_product<NT, ROWS, FMT, TG>(xhi, xlo, columns, tokens, SkinnySegment{w0, o0, r0, b0, s0}, \
                    SkinnySegment{w1, o1, r1, b1, s1}, SkinnySegment{w2, o2, r2, b2, s2}, scaleRows, scaleColumns)); \
    }
#define SKINNY_SILU_ENTRY_NAMED(NAME, FMT, NT, ROWS, TG)                                                           \
    extern "C" __global__ void __launch_bounds__(SKINNY_WARPS * 32, 2) NAME(                                       \
            const bf16_t* xhi, const bf16_t* xlo, int columns, int tokens, const unsigned char* wg,                \
            const unsigned char* wu, int rows, float* out, bf16_t* outHi, bf16_t* outLo, const float* sg,          \
            const float* su, int scaleRows, int scaleColumns) {                                                   \
        SKINNY_BODY(skinny_silu_product<NT, ROWS, FMT, TG>(xhi, xlo, columns, tokens, wg, wu, rows, out, outHi,   \
                                                           outLo, sg, su, scaleRows, scaleColumns));              \
    }
#define SKINNY_ENTRY(FORMAT, FMT, NT, ROWS) SKINNY_ENTRY_NAMED(kiln_skinny_##FORMAT##_n##NT##_r##ROWS, FMT, NT, ROWS, 1)
#define SKINNY_SILU_ENTRY(FORMAT, FMT, NT, ROWS)                                                                   \
    SKINNY_SILU_ENTRY_NAMED(kiln_skinny_silu_##FORMAT##_n##NT##_r##ROWS, FMT, NT, ROWS, 1)
// INT4 and FP8 from 17 to 32 tokens: four row groups, the tokens in two groups of 16 (two warps a row group, reading
// the same weight rows): each warp keeps two tiles' sums and two tiles' chunk sums, as the 2-tile entries do.
#define SKINNY_TOKEN_GROUP_ENTRIES(FORMAT, FMT)                                                                    \
    SKINNY_ENTRY_NAMED(kiln_skinny_##FORMAT##_n4_r4_t2, FMT, 4, 4, 2)                                             \
    SKINNY_SILU_ENTRY_NAMED(kiln_skinny_silu_##FORMAT##_n4_r4_t2, FMT, 4, 4, 2)
#define SKINNY_FEW_TOKEN_ENTRIES(FORMAT, FMT)                                                                      \
    SKINNY_ENTRY(FORMAT, FMT, 1, 1)                                                                               \
    SKINNY_ENTRY(FORMAT, FMT, 2, 1)                                                                               \
    SKINNY_ENTRY(FORMAT, FMT, 2, 2)                                                                               \
    SKINNY_SILU_ENTRY(FORMAT, FMT, 1, 1)                                                                          \
    SKINNY_SILU_ENTRY(FORMAT, FMT, 2, 1)                                                                          \
    SKINNY_SILU_ENTRY(FORMAT, FMT, 2, 2)
#define SKINNY_FORMAT_ENTRIES(FORMAT, FMT)                                                                         \
    SKINNY_FEW_TOKEN_ENTRIES(FORMAT, FMT)                                                                         \
    SKINNY_ENTRY(FORMAT, FMT, 4, 1)                                                                               \
    SKINNY_ENTRY(FORMAT, FMT, 4, 2)                                                                               \
    SKINNY_ENTRY(FORMAT, FMT, 4, 4)                                                                               \
    SKINNY_SILU_ENTRY(FORMAT, FMT, 4, 1)                                                                          \
    SKINNY_SILU_ENTRY(FORMAT, FMT, 4, 2)                                                                          \
    SKINNY_SILU_ENTRY(FORMAT, FMT, 4, 4)
#if KILN_IN_UNIT(5)
SKINNY_FORMAT_ENTRIES(bf16, SKINNY_BF16)
#endif
#if KILN_IN_UNIT(6)
SKINNY_FORMAT_ENTRIES(int8, SKINNY_INT8)
#endif
// INT4 and FP8: their per-chunk scaling holds a second set of sums, so their 4-tile entries deal the tokens to two
// warps.
#if KILN_IN_UNIT(7)
SKINNY_FEW_TOKEN_ENTRIES(int4, SKINNY_INT4)
SKINNY_FEW_TOKEN_ENTRIES(fp8, SKINNY_FP8)
SKINNY_TOKEN_GROUP_ENTRIES(int4, SKINNY_INT4)
SKINNY_TOKEN_GROUP_ENTRIES(fp8, SKINNY_FP8)
#endif
