// Kiln's grouped products, a module of its own next to kernels.cu: many small bf16 matrices, each over its own rows or
// slices of the activations, in one launch: DeepSeekMoE's routed experts and MLA's per-head absorption products.
// Compiled by NVRTC with the same options when the first such layer is built, so a dense model never compiles them.
// No headers, as in kernels.cu (hence the few helpers copied below).
//
// One layer's routed experts are five launches, none of which reads anything back to the host, so that a step of a
// mixture-of-experts model is recorded and replayed like a dense one:
//  1. kiln_route_experts: per token, the routing rule of dev.kiln.api.backend.ExpertRouting on the router's logits:
//     the chosen experts and their weights, "choices" [tokens][perToken];
//  2. kiln_plan_experts: the choices sorted by expert (tokens ascending within one), "pairs"; the experts with at
//     least one pair ("active"), each with its first pair and count; and per choice the pair it became;
//  3. kiln_experts_gate_up_bf16: per active expert and gate/up row, both products of every token of the expert and
//     silu(gate) * up, into hidden [pairs][width];
//  4. kiln_experts_down_bf16: per active expert and down row, the down product of each of its pairs times the
//     pair's routing weight, into out [pairs][hidden];
//  5. kiln_experts_combine: residual[t] += the outputs of token t's choices, in choice order (deterministic).
// Products 3 and 4 read each active expert's weights once for all of its tokens (up to 8 at a time from registers;
// more tokens re-read the rows from L2), so a decode step reads only the experts it uses. The grids are sized for
// the most active experts a call can have (min(experts, pairs)); blocks beyond the actual count exit at once.
//
// Expert weights are bf16 [rows][columns], rows 16-byte aligned (columns % 8 == 0); or FP8 (the _fp8 entries: e4m3
// codes [rows][columns], columns % 16 == 0, then one f32 scale per block of 128 x 128, row-major over the blocks, as
// Fp8Weight holds them); or INT8 (_int8: codes [rows][columns], columns % 16 == 0, then one f32 scale per row) or
// INT4 (_int4_g64, _int4_g128: codes two a byte [rows][columns / 2], columns % 32 == 0, then one f32 scale per row and
// group of 64 or 128 columns), as QuantizedWeight holds them. They are addressed through tables of device pointers
// indexed by expert. Activations f32, rows contiguous.

typedef unsigned short bf16_t;

#define KILN_INFINITY __int_as_float(0x7f800000)

// Most threads of the routing kernel (one block per token; experts are dealt out over them; Java launches a power of
// two covering the experts).
#define ROUTE_THREADS 256
// The most experts, experts per token and groups the routing kernel takes (Java: GroupedKernels).
#define MAX_EXPERTS 1024
#define MAX_PER_TOKEN 16
#define MAX_GROUPS 64
// Most threads of the plan kernel: one per expert (Java launches the power of two covering the experts).
#define PLAN_THREADS 1024
// Threads of the product kernels: one weight row per warp.
#define EXPERT_THREADS 128
#define EXPERT_WARPS (EXPERT_THREADS / 32)
// Tokens of one expert multiplied from registers per pass over its rows.
#define EXPERT_TOKENS 8
// 16-byte weight loads each lane has in flight per row.
#define EXPERT_UNROLL 4

// Programmatic dependent launch, as in kernels.cu: every kernel lets the next one start, then waits here before it
// touches anything (none of these reads anything before it). No pointer is __restrict__ (the compiler may hoist such
// loads above it).
__device__ __forceinline__ void wait_for_previous_kernel() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Weights are read once per step and never by another block: keep them out of L1, which the activations use.
__device__ __forceinline__ uint4 load_weights(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

// ---- routing -----------------------------------------------------------------------------------------------

// (v, i) is better than (best, index): larger, or equal with a lower index (the reference's top-k order).
__device__ __forceinline__ bool beats(float v, int i, float best, int index) {
    return v > best || (v == best && i < index);
}

// The block's best (value, index) among the values each thread offers; every thread gets it. scratch: 2 x 32 words.
__device__ void block_best(float& best, int& index, float* values, int* indices) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, best, o);
        int i = __shfl_xor_sync(0xffffffffu, index, o);
        if (beats(v, i, best, index)) { best = v; index = i; }
    }
    __syncthreads();
    if (lane == 0) { values[warp] = best; indices[warp] = index; }
    __syncthreads();
    best = lane < warps ? values[lane] : -KILN_INFINITY;
    index = lane < warps ? indices[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, best, o);
        int i = __shfl_xor_sync(0xffffffffu, index, o);
        if (beats(v, i, best, index)) { best = v; index = i; }
    }
}

// Per token (one block each, ROUTE_THREADS threads), exactly the rule ExpertRouting.route computes (in f32 here):
//  scores s = softmax(logits) (scoring 0) or sigmoid(logits) (1); selection scores c = s + bias under noaux_tc
//  (selection 2), else s; with groups (selection 1: a group's best s, 2: the sum of its two best c), every expert
//  outside the best groupsPerToken groups gets c = 0 (a value, as the reference masks); the perToken best c, the
//  lower index first on ties; weights s, divided by their sum + 1e-20 when normalizing, times scaling.
extern "C" __global__ void __launch_bounds__(ROUTE_THREADS)
kiln_route_experts(const float* logits, int experts, int perToken, int scoring, int selection,
                   int groups, int groupsPerToken, int normalize, float scaling, const float* bias,
                   int* choiceExpert, float* choiceWeight) {
    __shared__ float score[MAX_EXPERTS], select[MAX_EXPERTS], groupScore[MAX_GROUPS];
    __shared__ float values[32];
    __shared__ int indices[32];
    __shared__ int chosen[MAX_PER_TOKEN];
    __shared__ bool kept[MAX_GROUPS], taken[MAX_EXPERTS];
    __shared__ float scalar;
    int token = blockIdx.x;
    wait_for_previous_kernel();
    const float* row = logits + (long long) token * experts;
    if (scoring == 0) {
        float best = -KILN_INFINITY;
        int at = 0x7fffffff;
        for (int e = threadIdx.x; e < experts; e += blockDim.x) best = fmaxf(best, row[e]);
        block_best(best, at, values, indices);
        float sum = 0.0f;
        for (int e = threadIdx.x; e < experts; e += blockDim.x) {
            float v = expf(row[e] - best);
            score[e] = v;
            sum += v;
        }
        sum = warp_sum(sum);
        __syncthreads();
        if ((threadIdx.x & 31) == 0) values[threadIdx.x >> 5] = sum;
        __syncthreads();
        if (threadIdx.x == 0) {
            float total = 0.0f;
            for (int w = 0; w < (int) (blockDim.x >> 5); w++) total += values[w];
            scalar = total;
        }
        __syncthreads();
        for (int e = threadIdx.x; e < experts; e += blockDim.x) score[e] /= scalar;
    } else {
        for (int e = threadIdx.x; e < experts; e += blockDim.x) score[e] = 1.0f / (1.0f + expf(-row[e]));
    }
    for (int e = threadIdx.x; e < experts; e += blockDim.x) {
        float v = selection == 2 ? score[e] + bias[e] : score[e];
        select[e] = v != v ? -KILN_INFINITY : v; // a NaN (from a NaN or infinite logit) never wins, as on the host
        taken[e] = false;
    }
    __syncthreads();
    if (selection != 0 && groupsPerToken < groups) {
        int size = experts / groups;
        for (int g = threadIdx.x; g < groups; g += blockDim.x) {
            float first = -KILN_INFINITY, second = -KILN_INFINITY;
            for (int i = 0; i < size; i++) {
                float v = selection == 2 ? select[g * size + i] : score[g * size + i];
                if (v > first) { second = first; first = v; }
                else if (v > second) second = v;
            }
            groupScore[g] = selection == 2 ? (size >= 2 ? first + second : first) : first;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            // The best groupsPerToken groups, the lower index first on ties.
            for (int g = 0; g < groups; g++) kept[g] = false;
            for (int k = 0; k < groupsPerToken; k++) {
                int best = -1;
                for (int g = 0; g < groups; g++) {
                    if (!kept[g] && (best < 0 || groupScore[g] > groupScore[best])) best = g;
                }
                kept[best] = true;
            }
        }
        __syncthreads();
        for (int e = threadIdx.x; e < experts; e += blockDim.x) {
            if (!kept[e / size]) select[e] = 0.0f;
        }
        __syncthreads();
    }
    for (int k = 0; k < perToken; k++) {
        float best = -KILN_INFINITY;
        int at = 0x7fffffff;
        for (int e = threadIdx.x; e < experts; e += blockDim.x) {
            if (!taken[e] && beats(select[e], e, best, at)) { best = select[e]; at = e; }
        }
        block_best(best, at, values, indices); // an untaken expert always wins over (-inf, none): select has no NaN
        if (threadIdx.x == 0) {
            chosen[k] = at;
            taken[at] = true;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int k = 0; k < perToken; k++) sum += score[chosen[k]];
        for (int k = 0; k < perToken; k++) {
            float w = score[chosen[k]];
            if (normalize) w /= sum + 1e-20f;
            choiceExpert[token * perToken + k] = chosen[k];
            choiceWeight[token * perToken + k] = w * scaling;
        }
    }
}

// Exclusive prefix sum over the block (PLAN_THREADS threads, one value each); total gets the sum.
__device__ int block_exclusive_scan(int v, int* scratch, int& total) {
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (int o = 1; o < blockDim.x; o <<= 1) {
        int add = threadIdx.x >= o ? scratch[threadIdx.x - o] : 0;
        __syncthreads();
        scratch[threadIdx.x] += add;
        __syncthreads();
    }
    int inclusive = scratch[threadIdx.x];
    total = scratch[blockDim.x - 1];
    __syncthreads();
    return inclusive - v;
}

// One block of PLAN_THREADS threads, thread e for expert e: counts its choices, takes its place among the pairs and
// among the active experts (prefix sums), then writes its pairs in choice order (tokens ascending). A choice of no
// expert (-1) would become no pair. The choices are staged in shared memory (choices ints, dynamic).
extern "C" __global__ void __launch_bounds__(PLAN_THREADS)
kiln_plan_experts(const int* choiceExpert, const float* choiceWeight, int choices, int perToken, int experts,
                  int* activeCount, int* activeExpert, int* activeStart, int* activeSize, int* pairToken,
                  float* pairWeight, int* choicePair) {
    extern __shared__ int staged[];
    __shared__ int scratch[PLAN_THREADS];
    wait_for_previous_kernel();
    for (int i = threadIdx.x; i < choices; i += blockDim.x) {
        staged[i] = choiceExpert[i];
        choicePair[i] = -1;
    }
    __syncthreads();
    int e = threadIdx.x;
    int count = 0;
    if (e < experts) {
        for (int i = 0; i < choices; i++) count += staged[i] == e;
    }
    int pairs, active;
    int start = block_exclusive_scan(count, scratch, pairs);
    int slot = block_exclusive_scan(count > 0 ? 1 : 0, scratch, active);
    if (count > 0) {
        activeExpert[slot] = e;
        activeStart[slot] = start;
        activeSize[slot] = count;
        int q = start;
        for (int i = 0; i < choices; i++) {
            if (staged[i] != e) continue;
            pairToken[q] = i / perToken;
            pairWeight[q] = choiceWeight[i];
            choicePair[i] = q;
            q++;
        }
    }
    if (threadIdx.x == 0) *activeCount = active;
}

// ---- grouped products --------------------------------------------------------------------------------------

// The weight formats. A 16-byte chunk of a row is 8 bf16 weights; 16 e4m3 codes whose 128 x 128 block's scale
// multiplies the chunk's sums (a chunk lies in one block); 16 INT8 codes whose row's scale does; or 32 INT4 codes
// u = q + 8 (column 2j in the low nibble of byte j) whose row's scale for their group of 64 or 128 columns does
// (QuantizedWeight's layouts). An e4m3 code decodes as in kernels.cu (e4m3_word): an arithmetic shift puts its
// exponent and mantissa under f32's and one multiplication by 2^120 rebiases, subnormals included; a word of four
// codes holding a NaN code makes its first weight NaN, so the row's sums are NaN. INT8 and INT4 codes widen as there
// too: one byte permutation puts the byte (the code + 128, or the nibble) under the exponent of 2^23, one subtraction
// leaves the code.
#define FMT_BF16 0
#define FMT_FP8 1
#define FMT_INT8 2
#define FMT_INT4_G64 3
#define FMT_INT4_G128 4
#define FMT_F32 5 // f32 weights (MLA's absorption matrices derived from FP8 blocks, kept unrounded)
#define FP8_BLOCK 128

template <int FMT>
struct Format {
    static constexpr bool INT4 = FMT == FMT_INT4_G64 || FMT == FMT_INT4_G128;
    static constexpr int COLUMNS = FMT == FMT_BF16 ? 8 : FMT == FMT_F32 ? 4 : INT4 ? 32 : 16; // columns of a 16-byte chunk
    static constexpr bool SCALED = FMT != FMT_BF16 && FMT != FMT_F32;
    static constexpr int SCALE_ROWS = FMT == FMT_FP8 ? FP8_BLOCK : 1;
    // Columns a scale covers (0: the whole row).
    static constexpr int SCALE_COLUMNS = FMT == FMT_FP8 ? FP8_BLOCK : FMT == FMT_INT4_G64 ? 64
                                       : FMT == FMT_INT4_G128 ? 128 : 0;
};

__device__ __forceinline__ void bf16_word(unsigned int word, float* w) {
    w[0] = __uint_as_float(word << 16);
    w[1] = __uint_as_float(word & 0xffff0000u);
}

__device__ __forceinline__ void e4m3_word(unsigned int word, float* w) {
#pragma unroll
    for (int k = 0; k < 4; k++) {
        w[k] = __uint_as_float((unsigned int) ((int) (word << (24 - 8 * k)) >> 4) & 0x87F00000u) * 0x1p120f;
    }
    if ((((word & 0x7F7F7F7Fu) + 0x01010101u) & 0x80808080u) != 0u) w[0] = __uint_as_float(0x7FC00000u);
}

// Byte K of a word as the float 2^23 + byte.
template <int K>
__device__ __forceinline__ float byte_float(unsigned int word) {
    return __uint_as_float(__byte_perm(word, 0x4B000000u, 0x7440u + K));
}

__device__ __forceinline__ void int8_word(unsigned int word, float* w) {
    unsigned int u = word ^ 0x80808080u;
    w[0] = byte_float<0>(u) - 8388736.0f;
    w[1] = byte_float<1>(u) - 8388736.0f;
    w[2] = byte_float<2>(u) - 8388736.0f;
    w[3] = byte_float<3>(u) - 8388736.0f;
}

// Eight INT4 codes: the low nibbles are the even columns, the high nibbles the odd ones.
__device__ __forceinline__ void int4_word(unsigned int word, float* w) {
    unsigned int even = word & 0x0F0F0F0Fu, odd = (word >> 4) & 0x0F0F0F0Fu;
    w[0] = byte_float<0>(even) - 8388616.0f;
    w[1] = byte_float<0>(odd) - 8388616.0f;
    w[2] = byte_float<1>(even) - 8388616.0f;
    w[3] = byte_float<1>(odd) - 8388616.0f;
    w[4] = byte_float<2>(even) - 8388616.0f;
    w[5] = byte_float<2>(odd) - 8388616.0f;
    w[6] = byte_float<3>(even) - 8388616.0f;
    w[7] = byte_float<3>(odd) - 8388616.0f;
}

// Row `row` of a weight of `columns` columns in format FMT: 2 bytes a weight (bf16), 1 (FP8, INT8) or half (INT4).
template <int FMT>
__device__ __forceinline__ const uint4* weight_row(const void* w, int row, int columns) {
    long long offset = FMT == FMT_BF16 ? (long long) row * columns * 2 : FMT == FMT_F32 ? (long long) row * columns * 4
                     : Format<FMT>::INT4 ? (long long) row * columns / 2 : (long long) row * columns;
    return reinterpret_cast<const uint4*>(static_cast<const unsigned char*>(w) + offset);
}

// The first of a row's scales (formats with scales; they follow all rows' codes), or null.
template <int FMT>
__device__ __forceinline__ const float* block_scales(const void* w, int rows, int row, int columns) {
    if (!Format<FMT>::SCALED) return nullptr;
    constexpr int SC = Format<FMT>::SCALE_COLUMNS;
    const float* scales = reinterpret_cast<const float*>(weight_row<FMT>(w, rows, columns));
    return scales + (long long) (row / Format<FMT>::SCALE_ROWS) * (SC == 0 ? 1 : (columns + SC - 1) / SC);
}

// Columns 8 H .. 8 H + 7 of a chunk as floats.
template <int FMT, int H>
__device__ __forceinline__ void widen(const uint4& p, float (&w)[8]) {
    if (FMT == FMT_BF16) {
        bf16_word(p.x, w);
        bf16_word(p.y, w + 2);
        bf16_word(p.z, w + 4);
        bf16_word(p.w, w + 6);
    } else if (Format<FMT>::INT4) {
        int4_word(H == 0 ? p.x : H == 1 ? p.y : H == 2 ? p.z : p.w, w);
    } else if (FMT == FMT_INT8) {
        int8_word(H == 0 ? p.x : p.z, w);
        int8_word(H == 0 ? p.y : p.w, w + 4);
    } else {
        e4m3_word(H == 0 ? p.x : p.z, w);
        e4m3_word(H == 0 ? p.y : p.w, w + 4);
    }
}

// Columns 8 H .. 8 H + 7 of chunk c of every token's x, dotted with each row's weights there into acc.
template <int FMT, int H, int TOKENS, int ROWS>
__device__ __forceinline__ void dot_eight(const uint4 (&packed)[ROWS], const float* const (&x)[TOKENS], int c,
                                          float (&acc)[ROWS][TOKENS]) {
    float wv[ROWS][8];
#pragma unroll
    for (int r = 0; r < ROWS; r++) widen<FMT, H>(packed[r], wv[r]);
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        const float4* xp = reinterpret_cast<const float4*>(x[t]) + (Format<FMT>::COLUMNS / 4) * c + 2 * H;
        float4 a = xp[0], b = xp[1];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            acc[r][t] += wv[r][0] * a.x + wv[r][1] * a.y + wv[r][2] * a.z + wv[r][3] * a.w
                       + wv[r][4] * b.x + wv[r][5] * b.y + wv[r][6] * b.z + wv[r][7] * b.w;
        }
    }
}

// One warp's share of ROWS weight rows . x[t] for TOKENS tokens over all chunks of a row (lane, lane + 32, ...):
// lane-partial sums into acc. The UNROLL loads of every row are issued before any multiply. Scaled formats: each
// chunk's sums times its scale (scales[r]: the row's first scale), loaded with the chunk.
template <int FMT, int TOKENS, int ROWS>
__device__ __forceinline__ void dot_rows(const uint4* const (&w)[ROWS], const float* const (&scales)[ROWS],
                                         const float* const (&x)[TOKENS], int chunks, float (&acc)[ROWS][TOKENS]) {
    int lane = threadIdx.x & 31;
    for (int base = lane; base < chunks; base += 32 * EXPERT_UNROLL) {
        uint4 packed[EXPERT_UNROLL][ROWS];
        float scale[EXPERT_UNROLL][ROWS];
#pragma unroll
        for (int u = 0; u < EXPERT_UNROLL; u++) {
            int c = base + 32 * u;
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                packed[u][r] = c < chunks ? load_weights(w[r] + c) : make_uint4(0u, 0u, 0u, 0u);
                if (Format<FMT>::SCALED) {
                    constexpr int SC = Format<FMT>::SCALE_COLUMNS;
                    scale[u][r] = c < chunks ? __ldg(scales[r] + (SC == 0 ? 0 : c / (SC / Format<FMT>::COLUMNS))) : 0.0f;
                }
            }
        }
#pragma unroll
        for (int u = 0; u < EXPERT_UNROLL; u++) {
            int c = base + 32 * u;
            if (c >= chunks) break;
            if (Format<FMT>::SCALED) {
                float part[ROWS][TOKENS];
#pragma unroll
                for (int r = 0; r < ROWS; r++) {
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) part[r][t] = 0.0f;
                }
                dot_eight<FMT, 0, TOKENS, ROWS>(packed[u], x, c, part);
                dot_eight<FMT, 1, TOKENS, ROWS>(packed[u], x, c, part);
                if (Format<FMT>::INT4) {
                    dot_eight<FMT, 2, TOKENS, ROWS>(packed[u], x, c, part);
                    dot_eight<FMT, 3, TOKENS, ROWS>(packed[u], x, c, part);
                }
#pragma unroll
                for (int r = 0; r < ROWS; r++) {
#pragma unroll
                    for (int t = 0; t < TOKENS; t++) acc[r][t] = fmaf(part[r][t], scale[u][r], acc[r][t]);
                }
            } else if (FMT == FMT_F32) {
#pragma unroll
                for (int t = 0; t < TOKENS; t++) {
                    float4 a = reinterpret_cast<const float4*>(x[t])[c];
#pragma unroll
                    for (int r = 0; r < ROWS; r++) {
                        acc[r][t] += __uint_as_float(packed[u][r].x) * a.x + __uint_as_float(packed[u][r].y) * a.y
                                   + __uint_as_float(packed[u][r].z) * a.z + __uint_as_float(packed[u][r].w) * a.w;
                    }
                }
            } else {
                dot_eight<FMT, 0, TOKENS, ROWS>(packed[u], x, c, acc);
            }
        }
    }
}

// gate and up row `row` of one expert for TOKENS of its pairs (tokens: their token indices), silu(gate) * up into
// hidden (rows `rows` apart, the first pair's row first).
template <int FMT, int TOKENS>
__device__ __forceinline__ void gate_up_tokens(const void* wg, const void* wu, const float* x, int columns,
                                               const int* tokens, float* hidden, int rows, int row) {
    const float* xs[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) xs[t] = x + (long long) tokens[t] * columns;
    const uint4* w[2] = {weight_row<FMT>(wg, row, columns), weight_row<FMT>(wu, row, columns)};
    const float* scales[2] = {block_scales<FMT>(wg, rows, row, columns), block_scales<FMT>(wu, rows, row, columns)};
    float acc[2][TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) acc[0][t] = acc[1][t] = 0.0f;
    dot_rows<FMT, TOKENS, 2>(w, scales, xs, columns / Format<FMT>::COLUMNS, acc);
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        float g = warp_sum(acc[0][t]), u = warp_sum(acc[1][t]);
        if ((threadIdx.x & 31) == 0) hidden[(long long) t * rows + row] = g / (1.0f + expf(-g)) * u;
    }
}

// Row `row` of one weight for TOKENS activation rows xRow apart, into out rows outRow apart; WEIGHTED: each product
// times its own factor (a pair's routing weight). The down products of an expert's pairs (x: their hidden rows) and
// the per-head products (x and out: the head's slices of the rows) alike.
template <int FMT, int TOKENS, bool WEIGHTED>
__device__ __forceinline__ void row_tokens(const void* w, const float* x, int xRow, float* out, int outRow, int rows,
                                           int columns, int row, const float* factors) {
    const float* xs[TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) xs[t] = x + (long long) t * xRow;
    const uint4* wr[1] = {weight_row<FMT>(w, row, columns)};
    const float* scales[1] = {block_scales<FMT>(w, rows, row, columns)};
    float acc[1][TOKENS];
#pragma unroll
    for (int t = 0; t < TOKENS; t++) acc[0][t] = 0.0f;
    dot_rows<FMT, TOKENS, 1>(wr, scales, xs, columns / Format<FMT>::COLUMNS, acc);
#pragma unroll
    for (int t = 0; t < TOKENS; t++) {
        float v = warp_sum(acc[0][t]);
        if ((threadIdx.x & 31) == 0) out[(long long) t * outRow + row] = WEIGHTED ? v * factors[t] : v;
    }
}

// The token count of a pass (1 to 8) as a compile-time constant: each count gets its own unrolled product.
#define DISPATCH_TOKENS(n, CALL)         \
    switch (n) {                         \
        case 1: CALL(1); break;          \
        case 2: CALL(2); break;          \
        case 3: CALL(3); break;          \
        case 4: CALL(4); break;          \
        case 5: CALL(5); break;          \
        case 6: CALL(6); break;          \
        case 7: CALL(7); break;          \
        default: CALL(8); break;         \
    }

// Grid (rows / EXPERT_WARPS, most active experts), EXPERT_THREADS threads: block (x, y) computes EXPERT_WARPS rows
// of active expert y (if there is one) for all of its pairs. x: the layer's normed input [tokens][columns].
template <int FMT>
__device__ __forceinline__ void experts_gate_up(const float* x, int columns, const unsigned long long* gateWeights,
                                                const unsigned long long* upWeights, int rows, const int* activeCount,
                                                const int* activeExpert, const int* activeStart, const int* activeSize,
                                                const int* pairToken, float* hidden) {
    wait_for_previous_kernel();
    int slot = blockIdx.y;
    int row = blockIdx.x * EXPERT_WARPS + (threadIdx.x >> 5);
    if (slot >= *activeCount || row >= rows) return;
    int expert = activeExpert[slot], start = activeStart[slot], size = activeSize[slot];
    const void* wg = reinterpret_cast<const void*>(gateWeights[expert]);
    const void* wu = reinterpret_cast<const void*>(upWeights[expert]);
    for (int first = 0; first < size; first += EXPERT_TOKENS) {
        int n = min(EXPERT_TOKENS, size - first);
        const int* tokens = pairToken + start + first;
        float* h = hidden + (long long) (start + first) * rows;
#define GATE_UP(T) gate_up_tokens<FMT, T>(wg, wu, x, columns, tokens, h, rows, row)
        DISPATCH_TOKENS(n, GATE_UP)
#undef GATE_UP
    }
}

#define EXPERTS_GATE_UP(NAME, FMT)                                                                                  \
    extern "C" __global__ void __launch_bounds__(EXPERT_THREADS)                                                    \
    NAME(const float* x, int columns, const unsigned long long* gateWeights, const unsigned long long* upWeights,    \
         int rows, const int* activeCount, const int* activeExpert, const int* activeStart, const int* activeSize,  \
         const int* pairToken, float* hidden) {                                                                     \
        experts_gate_up<FMT>(x, columns, gateWeights, upWeights, rows, activeCount, activeExpert, activeStart,       \
                             activeSize, pairToken, hidden);                                                        \
    }
EXPERTS_GATE_UP(kiln_experts_gate_up_bf16, FMT_BF16)
EXPERTS_GATE_UP(kiln_experts_gate_up_fp8, FMT_FP8)
EXPERTS_GATE_UP(kiln_experts_gate_up_int8, FMT_INT8)
EXPERTS_GATE_UP(kiln_experts_gate_up_int4_g64, FMT_INT4_G64)
EXPERTS_GATE_UP(kiln_experts_gate_up_int4_g128, FMT_INT4_G128)

// Grid (rows / EXPERT_WARPS, most active experts), EXPERT_THREADS threads, as the gate/up kernel; rows here are the
// model's hidden size and columns the experts' width.
template <int FMT>
__device__ __forceinline__ void experts_down(const float* hidden, int columns, const unsigned long long* downWeights,
                                             int rows, const int* activeCount, const int* activeExpert,
                                             const int* activeStart, const int* activeSize, const float* pairWeight,
                                             float* out) {
    wait_for_previous_kernel();
    int slot = blockIdx.y;
    int row = blockIdx.x * EXPERT_WARPS + (threadIdx.x >> 5);
    if (slot >= *activeCount || row >= rows) return;
    int expert = activeExpert[slot], start = activeStart[slot], size = activeSize[slot];
    const void* wd = reinterpret_cast<const void*>(downWeights[expert]);
    for (int first = 0; first < size; first += EXPERT_TOKENS) {
        int n = min(EXPERT_TOKENS, size - first);
        int q = start + first;
#define DOWN(T) row_tokens<FMT, T, true>(wd, hidden + (long long) q * columns, columns, out + (long long) q * rows, \
                                         rows, rows, columns, row, pairWeight + q)
        DISPATCH_TOKENS(n, DOWN)
#undef DOWN
    }
}

#define EXPERTS_DOWN(NAME, FMT)                                                                                     \
    extern "C" __global__ void __launch_bounds__(EXPERT_THREADS)                                                    \
    NAME(const float* hidden, int columns, const unsigned long long* downWeights, int rows, const int* activeCount, \
         const int* activeExpert, const int* activeStart, const int* activeSize, const float* pairWeight,           \
         float* out) {                                                                                              \
        experts_down<FMT>(hidden, columns, downWeights, rows, activeCount, activeExpert, activeStart, activeSize,    \
                          pairWeight, out);                                                                         \
    }
EXPERTS_DOWN(kiln_experts_down_bf16, FMT_BF16)
EXPERTS_DOWN(kiln_experts_down_fp8, FMT_FP8)
EXPERTS_DOWN(kiln_experts_down_int8, FMT_INT8)
EXPERTS_DOWN(kiln_experts_down_int4_g64, FMT_INT4_G64)
EXPERTS_DOWN(kiln_experts_down_int4_g128, FMT_INT4_G128)

// residual[t][c] += the sum of out[pair of choice (t, j)][c] over j in order; a choice without a pair adds nothing.
extern "C" __global__ void kiln_experts_combine(const float* out, const int* choicePair, int perToken, int columns,
                                                float* residual, long long n) {
    wait_for_previous_kernel();
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x) {
        long long token = i / columns;
        int c = (int) (i - token * columns);
        float sum = 0.0f;
        for (int j = 0; j < perToken; j++) {
            int q = choicePair[token * perToken + j];
            if (q >= 0) sum += out[(long long) q * columns + c];
        }
        residual[i] += sum;
    }
}

// ---- per-head products ---------------------------------------------------------------------------------------

// Grid (rows / EXPERT_WARPS, heads), EXPERT_THREADS threads: for head h (weights[h], bf16 or, _f32, f32
// [rows][columns]) and every token t, out[t][outOffset + h * outStride + r] = W_h[r] . x[t][inOffset + h * inStride ..].
// Slices start 16-byte aligned (the Java side checks).
template <int FMT>
__device__ __forceinline__ void gemv_heads(const unsigned long long* weights, const float* x, int xRow, int inOffset,
                                           int inStride, float* out, int outRow, int outOffset, int outStride, int rows,
                                           int columns, int tokens) {
    wait_for_previous_kernel();
    int head = blockIdx.y;
    int row = blockIdx.x * EXPERT_WARPS + (threadIdx.x >> 5);
    if (row >= rows) return;
    const void* w = reinterpret_cast<const void*>(weights[head]);
    for (int first = 0; first < tokens; first += EXPERT_TOKENS) {
        int n = min(EXPERT_TOKENS, tokens - first);
        const float* xs = x + (long long) first * xRow + inOffset + (long long) head * inStride;
        float* o = out + (long long) first * outRow + outOffset + (long long) head * outStride;
#define HEAD(T) row_tokens<FMT, T, false>(w, xs, xRow, o, outRow, rows, columns, row, nullptr)
        DISPATCH_TOKENS(n, HEAD)
#undef HEAD
    }
}

#define GEMV_HEADS(NAME, FMT)                                                                                       \
    extern "C" __global__ void __launch_bounds__(EXPERT_THREADS)                                                    \
    NAME(const unsigned long long* weights, const float* x, int xRow, int inOffset, int inStride, float* out,       \
         int outRow, int outOffset, int outStride, int rows, int columns, int tokens) {                             \
        gemv_heads<FMT>(weights, x, xRow, inOffset, inStride, out, outRow, outOffset, outStride, rows, columns,     \
                        tokens);                                                                                    \
    }
GEMV_HEADS(kiln_gemv_heads_bf16, FMT_BF16)
GEMV_HEADS(kiln_gemv_heads_f32, FMT_F32)
