package dev.kiln.quant.cpu;

import dev.kiln.backend.cpu.WorkerPool;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * A group-wise INT4 weight: {@code W[r, c] = (u[r, c] - z[r, g]) · s[r, g]} with 4-bit codes {@code u} in 0..15,
 * one f32 scale {@code s} per row and group of {@code groupSize} consecutive columns ({@code g = c / groupSize}; the
 * last group of a row may be partial), and a zero point {@code z} per row and group (AWQ) or the constant 8
 * (symmetric INT4, codes standing for -8..7). Two codes per byte, in memory this weight owns.
 *
 * <h2>Layout</h2>
 * Rows are stored in blocks of {@link #BLOCK} = 8·L columns (L floats per vector), one int vector each: nibble k of
 * lane j holds column {@code k·L + j} of the block, so the eight nibble positions of one load are eight ordinary
 * float vectors of consecutive columns. Nibble 7 is stored with its top bit flipped ({@code u ^ 8}).
 *
 * <h2>Decode kernel</h2>
 * Isolating nibble k is one AND with {@code 0xF << 4k} and one int-to-float conversion, giving {@code u · 2^4k}
 * exactly; for k = 7 the AND leaves the flipped nibble in the sign bits, giving {@code (u - 8) · 2^28}, still exact
 * and still one operation (a shift would compete with the conversion for the same execution port). The activations
 * are scaled by {@code 2^-4k} once per call to match (exact: powers of two), so a group's dot product
 * {@code Σ u·x} accumulates in registers with one FMA per vector and is scaled once when the group ends. The zero
 * points enter per row as {@code Σ_g s_g·(8·Y_g - z_g·X_g)}, with {@code X_g} the group's activation sum and
 * {@code Y_g} that of its nibble-7 columns, both computed once per call for all rows, added after the vector loop.
 * Three vector operations per L weights is what lets two cores nearly keep up with the memory bus. The usual group
 * sizes (a whole block or half a block: 128 and 64 with AVX-512) have kernels whose groups end only at block ends,
 * written out with constant masks; C2 compiles them only because every vector operation is a Vector API call it
 * must inline (a helper method of ours would be refused by its node budget, and the vectors boxed).
 *
 * <h2>Decode kernel with 8-bit activations</h2>
 * That kernel is bound by arithmetic on two cores (three vector operations per L weights, one of them a conversion
 * only one execution port does). Built with {@code int8Activations}, a weight whose groups are whole or half blocks
 * instead quantizes the activations once per call to integers -127..127 with one f32 scale per block (the largest
 * magnitude maps to 127) and multiplies in 16-bit lanes: a block's load holds, in each of its 2L shorts, four codes
 * (short {@code s} of lane {@code s/2}, nibble q: column {@code L·(4·(s%2) + q) + s/2}), so four ANDs with shifts and
 * four 16-bit multiplications by the matching permutation of the activations give {@code Σ u·x} of the block's 128
 * weights in 2L lanes (at most {@code 4·15·127 = 7620} in magnitude, exact), widened once per block into L int lanes
 * and one FMA: about a fifth fewer vector operations per weight, and no conversion per L weights. Measured (2 threads,
 * weights from memory, alternating with the exact kernel): 14% more bytes per second on rows of 1536 columns, 4% fewer
 * on rows of 8960 (where the exact kernel already runs faster), about 5% more decoded tokens per second on the 1.5B
 * shape. The activations' rounding (at most half a step of {@code max|x| / 127} per element) is the only difference to
 * the exact kernel; on the default model it left the held-out perplexity where the exact kernel has it.
 */
public final class Int4GroupWeight extends PackedWeight {
    static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    /** 2L shorts: the same bits as one int vector. */
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, I.vectorShape());
    /** The largest magnitude of a quantized activation. */
    private static final int ACTIVATION_MAX = 127;
    /**
     * Added to every 16-bit block sum before it is split into its two halves, so that both halves are non-negative
     * and the split is one AND and one shift; taken back out with the zero points.
     */
    private static final int HALF_BIAS = 1 << 15;
    /** L bytes: one zero point per float lane. */
    private static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(8 * L));
    /** Columns per int-vector load: eight nibbles in each of L lanes. */
    public static final int BLOCK = 8 * L;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE);
    /** The zero point of symmetric INT4. */
    private static final int SYMMETRIC_ZERO = 8;
    /** What nibble k's isolated value is multiplied by in the decode kernel ({@code 2^-4k}). */
    private static final float[] STREAM_SCALE = new float[8];
    /** Same for {@link #decode}, where nibble 7 is shifted down rather than left in place. */
    private static final float[] DECODE_SCALE = new float[8];

    static {
        if (I.length() != L) throw new IllegalStateException("int and float vectors differ in lanes: " + I + ", " + F);
        for (int k = 0; k < 8; k++) {
            STREAM_SCALE[k] = Math.scalb(1f, -4 * k);
            DECODE_SCALE[k] = k == 7 ? 1f : STREAM_SCALE[k];
        }
    }

    private final String format;
    private final int groupSize;
    private final int storedGroups;
    private final int vectorsPerGroup;
    private final long rowBytes;
    private final MemorySegment codes;
    private final float[] scales;
    private final byte[] zeros;
    private final Arena owner;
    private final boolean int8Activations;

    private Int4GroupWeight(Builder b, String format, WorkerPool pool, KernelScratch scratch, boolean int8Activations) {
        super(b.rows, b.columns, b.depth, pool, scratch);
        this.format = format;
        this.groupSize = b.groupSize;
        this.storedGroups = b.storedGroups;
        this.vectorsPerGroup = b.groupSize / L;
        this.rowBytes = b.depth / 2;
        this.codes = b.codes;
        this.scales = b.scales;
        this.zeros = b.zeros;
        this.owner = b.arena;
        this.int8Activations = int8Activations && supportsInt8Activations(b.groupSize);
    }

    /**
     * Whether the decode kernel with 8-bit activations handles groups of {@code groupSize} columns: whole blocks
     * ({@link #BLOCK} = 128 with AVX-512) or half blocks.
     */
    public static boolean supportsInt8Activations(int groupSize) {
        return groupSize % BLOCK == 0 || 2 * groupSize == BLOCK;
    }

    /**
     * Collects the codes of a weight row by row (rows may be set from several threads) and packs them into the
     * kernels' layout. {@link #build} hands the memory to the weight; {@link #discard} releases it instead.
     */
    public static final class Builder {
        private final int rows;
        private final int columns;
        private final int groupSize;
        private final int groups;
        private final int depth;
        private final int storedGroups;
        private final Arena arena = Arena.ofShared();
        private final MemorySegment codes;
        private final float[] scales;
        private final byte[] zeros;
        private boolean finished;

        /**
         * @param groupSize  columns per scale: a positive multiple of the vector length (16 with AVX-512, 8 with
         *                   AVX2); 32, 64 and 128 always qualify
         * @param zeroPoints whether each group has its own zero point (otherwise 8: symmetric)
         * @throws IllegalArgumentException when the geometry is invalid or too large
         */
        public Builder(int rows, int columns, int groupSize, boolean zeroPoints) {
            if (rows < 1 || columns < 1) throw new IllegalArgumentException("invalid INT4 weight shape " + rows + "x" + columns);
            if (groupSize < L || groupSize % L != 0) {
                throw new IllegalArgumentException("group size " + groupSize + " is not a positive multiple of " + L
                        + " (this machine's floats per vector)");
            }
            this.rows = rows;
            this.columns = columns;
            this.groupSize = groupSize;
            this.groups = (columns + groupSize - 1) / groupSize;
            // Whole blocks and whole groups: the kernels then never meet a partial block or a group cut by the row's end.
            long unit = lcm(BLOCK, groupSize);
            long paddedDepth = (columns + unit - 1) / unit * unit;
            long stored = (long) rows * (paddedDepth / groupSize);
            if (paddedDepth > Integer.MAX_VALUE / 2 || stored > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("INT4 weight " + rows + "x" + columns + " is too large");
            }
            this.depth = (int) paddedDepth;
            this.storedGroups = depth / groupSize;
            this.codes = arena.allocate((long) rows * (depth / 2), 64);
            this.scales = new float[(int) stored];
            this.zeros = zeroPoints ? new byte[(int) stored] : null;
        }

        /** Groups per row (the last may be partial). */
        public int groups() {
            return groups;
        }

        /**
         * Sets one row.
         *
         * @param values    the row's codes 0..15 in column order, at least {@code columns} of them
         * @param rowScales the scale of each of the row's {@link #groups()} groups
         * @param rowZeros  the zero point 0..15 of each group, or {@code null} for a symmetric weight
         * @throws IllegalArgumentException when a code or zero point is out of range or the arrays are short
         */
        public void setRow(int row, byte[] values, float[] rowScales, byte[] rowZeros) {
            if (finished) throw new IllegalStateException("the weight was already built or discarded");
            if (row < 0 || row >= rows) throw new IndexOutOfBoundsException("row " + row + " of " + rows);
            if (values.length < columns || rowScales.length < groups) {
                throw new IllegalArgumentException("row " + row + ": " + values.length + " codes and " + rowScales.length
                        + " scales for " + columns + " columns in " + groups + " groups");
            }
            if ((rowZeros != null) != (zeros != null) || (rowZeros != null && rowZeros.length < groups)) {
                throw new IllegalArgumentException("row " + row + ": zero points " + (zeros == null ? "not expected" : "missing"));
            }
            for (int g = 0; g < groups; g++) {
                if (!Float.isFinite(rowScales[g])) throw new IllegalArgumentException("row " + row + ": scale " + rowScales[g]);
                scales[row * storedGroups + g] = rowScales[g];
                if (zeros != null) zeros[row * storedGroups + g] = checkedNibble(rowZeros[g], row);
            }
            long base = (long) row * (depth / 2);
            for (int block = 0; block < depth; block += BLOCK) {
                for (int j = 0; j < L; j++) {
                    int lane = 0;
                    for (int k = 0; k < 8; k++) {
                        int c = block + k * L + j;
                        int u = c < columns ? checkedNibble(values[c], row) : SYMMETRIC_ZERO;
                        if (k == 7) u ^= 8;
                        lane |= u << (4 * k);
                    }
                    codes.set(INT, base + block / 2 + 4L * j, lane);
                }
            }
        }

        /**
         * The weight, owning the packed codes, with the exact decode kernel (f32 activations); the builder cannot be
         * used afterwards.
         */
        public Int4GroupWeight build(String format, WorkerPool pool, KernelScratch scratch) {
            return build(format, pool, scratch, false);
        }

        /**
         * The weight, owning the packed codes; the builder cannot be used afterwards.
         *
         * @param int8Activations whether one activation row (decode) is quantized to 8 bits per block for the faster
         *                        kernel, where the group size allows it ({@link #supportsInt8Activations}); the other
         *                        paths always use f32 activations
         */
        public Int4GroupWeight build(String format, WorkerPool pool, KernelScratch scratch, boolean int8Activations) {
            if (finished) throw new IllegalStateException("the weight was already built or discarded");
            finished = true;
            return new Int4GroupWeight(this, format, pool, scratch, int8Activations);
        }

        /** Releases the codes of a weight that will not be built. */
        public void discard() {
            if (!finished) {
                finished = true;
                arena.close();
            }
        }

        private static byte checkedNibble(byte value, int row) {
            if (value < 0 || value > 15) throw new IllegalArgumentException("row " + row + ": 4-bit value " + value);
            return value;
        }

        private static long lcm(long a, long b) {
            long x = a, y = b;
            while (y != 0) {
                long t = x % y;
                x = y;
                y = t;
            }
            return a / x * b;
        }
    }

    @Override
    public String format() {
        return format;
    }

    /** Columns per scale. */
    public int groupSize() {
        return groupSize;
    }

    /** Whether each group has its own zero point. */
    public boolean hasZeroPoints() {
        return zeros != null;
    }

    /** Whether the decode kernel quantizes the activations to 8 bits (see the class description). */
    public boolean int8Activations() {
        return int8Activations;
    }

    @Override
    public long bytes() {
        return codes.byteSize() + 4L * scales.length + (zeros == null ? 0 : zeros.length);
    }

    /** The code of row r, column c (0..15), for tests and tools. */
    public int code(int row, int column) {
        checkIndex(row, column);
        int block = column / BLOCK * BLOCK;
        int k = (column - block) / L;
        int j = (column - block) % L;
        int lane = codes.get(INT, row * rowBytes + block / 2 + 4L * j);
        int u = (lane >>> (4 * k)) & 0xF;
        return k == 7 ? u ^ 8 : u;
    }

    /** The scale of row r's group g. */
    public float scale(int row, int group) {
        checkIndex(row, group * groupSize);
        return scales[row * storedGroups + group];
    }

    /** The zero point of row r's group g (8 for a symmetric weight). */
    public int zero(int row, int group) {
        checkIndex(row, group * groupSize);
        return zeros == null ? SYMMETRIC_ZERO : zeros[row * storedGroups + group];
    }

    private void checkIndex(int row, int column) {
        if (row < 0 || row >= rows || column < 0 || column >= columns) {
            throw new IndexOutOfBoundsException("[" + row + ", " + column + "] of " + rows + "x" + columns);
        }
    }

    /** Releases the codes. */
    @Override
    public void close() {
        owner.close();
    }

    @Override
    protected void streamOneToken(float[] x, int xOffset, float[] out, int outOffset) {
        if (int8Activations) {
            streamInt8Activations(x, xOffset, out, outOffset);
            return;
        }
        float[] xs = activationBuffer(depth);
        float[] sums = sumsBuffer(2L * storedGroups);
        prepare(x, xOffset, xs, sums);
        pool.parallelFor(rows, rowGrain(), (worker, from, to) -> {
            // Four interleaved runs (rows from+i, from+q+i, ...): long sequential streams keep the prefetchers ahead.
            // Eight would keep more misses in flight, but a kernel over eight rows is too large for C1 to compile
            // (it bails out, "out of virtual registers", and the method stays interpreted).
            int q = (to - from) / 4;
            for (int i = 0; i < q; i++) {
                int r = from + i;
                rows4(xs, sums, r, r + q, r + 2 * q, r + 3 * q, out, outOffset);
            }
            for (int r = from + 4 * q; r < to; r++) rows4(xs, sums, r, r, r, r, out, outOffset);
        });
    }

    private void streamInt8Activations(float[] x, int xOffset, float[] out, int outOffset) {
        short[] xq = scratch.callerShortBuffer(depth);
        float[] sums = sumsBuffer(2L * storedGroups + depth / BLOCK);
        prepareInt8(x, xOffset, xq, sums);
        boolean whole = groupSize % BLOCK == 0;
        pool.parallelFor(rows, rowGrain(), (worker, from, to) -> {
            int q = (to - from) / 4;
            for (int i = 0; i < q; i++) {
                int r = from + i;
                if (whole) rows4Int8WholeBlocks(xq, sums, r, r + q, r + 2 * q, r + 3 * q, out, outOffset);
                else rows4Int8HalfBlocks(xq, sums, r, r + q, r + 2 * q, r + 3 * q, out, outOffset);
            }
            for (int r = from + 4 * q; r < to; r++) {
                if (whole) rows4Int8WholeBlocks(xq, sums, r, r, r, r, out, outOffset);
                else rows4Int8HalfBlocks(xq, sums, r, r, r, r, out, outOffset);
            }
        });
    }

    /**
     * Quantizes the activations block by block: {@code xq} gets, for each block and nibble position q, the 2L
     * integer activations of the columns that position holds in a block's shorts (zero in the padding), and
     * {@code sums} the scale of each block at {@code 2G + block} and, per stored group g, what {@link #zeroPointShare}
     * adds: {@code sums[g] = A_g - 8·Z_g} and {@code sums[G + g] = Z_g}, with {@code Z_g} the group's activations
     * {@code Σ scale·xq} and {@code A_g} what takes the kernel's {@link #HALF_BIAS} back out.
     */
    private void prepareInt8(float[] x, int xOffset, short[] xq, float[] sums) {
        int n = storedGroups;
        int blockScales = 2 * n;
        java.util.Arrays.fill(sums, 0, 2 * n, 0f);
        // Each int lane holds two biased 16-bit halves: the whole block's sum carries 2·L biases, a half block's L.
        boolean whole = groupSize % BLOCK == 0;
        float biasPerGroup = whole ? 2f * L * HALF_BIAS : (float) L * HALF_BIAS;
        int vectorColumns = columns - columns % L;
        for (int block = 0, start = 0; start < depth; block++, start += BLOCK) {
            float amax = 0;
            for (int k = 0; k < 8; k++) amax = Math.max(amax, activations(x, xOffset, start + k * L, vectorColumns)
                    .lanewise(VectorOperators.ABS).reduceLanes(VectorOperators.MAX));
            float scale = amax / ACTIVATION_MAX;
            float inverse = amax == 0 ? 0 : ACTIVATION_MAX / amax;
            sums[blockScales + block] = scale;
            for (int q = 0; q < 4; q++) {
                // Short 2j of the block's position q holds column L·q + j, short 2j+1 column L·(4+q) + j.
                IntVector even = rounded(activations(x, xOffset, start + q * L, vectorColumns), inverse);
                IntVector odd = rounded(activations(x, xOffset, start + (4 + q) * L, vectorColumns), inverse);
                even.and(0xFFFF).or(odd.lanewise(VectorOperators.LSHL, 16)).reinterpretAsShorts().intoArray(xq, start + q * 2 * L);
                int first = whole ? start / groupSize : 2 * block;
                int second = whole ? first : first + 1;
                sums[n + first] += scale * even.reduceLanes(VectorOperators.ADD);
                sums[n + second] += scale * odd.reduceLanes(VectorOperators.ADD);
            }
            if (whole) {
                sums[start / groupSize] -= scale * biasPerGroup;
            } else {
                sums[2 * block] -= scale * biasPerGroup;
                sums[2 * block + 1] -= scale * biasPerGroup;
            }
        }
        for (int g = 0; g < n; g++) sums[g] -= SYMMETRIC_ZERO * sums[n + g];
    }

    /** The L activations from column {@code c} (a multiple of L), zero past the row's end. */
    private FloatVector activations(float[] x, int xOffset, int c, int vectorColumns) {
        if (c < vectorColumns) return FloatVector.fromArray(F, x, xOffset + c);
        if (c >= columns) return FloatVector.zero(F);
        return FloatVector.fromArray(F, x, xOffset + c, F.indexInRange(c, columns));
    }

    /** {@code v · inverse} rounded half away from zero to an int (within -127..127 as the block's scale is its maximum). */
    private static IntVector rounded(FloatVector v, float inverse) {
        FloatVector scaled = v.mul(inverse);
        FloatVector half = FloatVector.broadcast(F, 0.5f).blend(FloatVector.broadcast(F, -0.5f), scaled.lt(0));
        return ((IntVector) scaled.add(half).convert(VectorOperators.F2I, 0))
                .max(-ACTIVATION_MAX).min(ACTIVATION_MAX);
    }

    /**
     * One token against four rows (which may repeat), 8-bit activations, groups of whole blocks: per block, the four
     * nibbles of every short times the activations in 16 bits, the block's sum widened once and scaled by the
     * group's scale times the block's activation scale.
     */
    private void rows4Int8WholeBlocks(short[] xq, float[] sums, int r0, int r1, int r2, int r3, float[] out, int outOffset) {
        MemorySegment w = codes;
        long b0 = r0 * rowBytes, b1 = r1 * rowBytes, b2 = r2 * rowBytes, b3 = r3 * rowBytes;
        int g0 = r0 * storedGroups, g1 = r1 * storedGroups, g2 = r2 * storedGroups, g3 = r3 * storedGroups;
        int blockScales = 2 * storedGroups;
        int blocksPerGroup = groupSize / BLOCK;
        FloatVector t0 = FloatVector.zero(F), t1 = FloatVector.zero(F), t2 = FloatVector.zero(F), t3 = FloatVector.zero(F);
        for (int c = 0, block = 0, group = 0, inGroup = 0; c < depth; c += BLOCK, block++) {
            long off = c >>> 1;
            if (inGroup == blocksPerGroup) {
                inGroup = 0;
                group++;
            }
            inGroup++;
            float blockScale = sums[blockScales + block];
            ShortVector x0 = ShortVector.fromArray(S, xq, c), x1 = ShortVector.fromArray(S, xq, c + 2 * L);
            ShortVector x2 = ShortVector.fromArray(S, xq, c + 4 * L), x3 = ShortVector.fromArray(S, xq, c + 6 * L);
            IntVector v = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector p = ((ShortVector) v.and(0x000F000F).reinterpretAsShorts()).mul(x0)
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 4).and(0x000F000F).reinterpretAsShorts()).mul(x1))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 8).and(0x000F000F).reinterpretAsShorts()).mul(x2))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 12).and(0x000F000F).lanewise(VectorOperators.XOR, 0x00080000).reinterpretAsShorts()).mul(x3))
                    .add((short) HALF_BIAS).reinterpretAsInts();
            t0 = ((FloatVector) p.and(0xFFFF).add(p.lanewise(VectorOperators.LSHR, 16)).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, scales[g0 + group] * blockScale), t0);
            v = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            p = ((ShortVector) v.and(0x000F000F).reinterpretAsShorts()).mul(x0)
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 4).and(0x000F000F).reinterpretAsShorts()).mul(x1))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 8).and(0x000F000F).reinterpretAsShorts()).mul(x2))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 12).and(0x000F000F).lanewise(VectorOperators.XOR, 0x00080000).reinterpretAsShorts()).mul(x3))
                    .add((short) HALF_BIAS).reinterpretAsInts();
            t1 = ((FloatVector) p.and(0xFFFF).add(p.lanewise(VectorOperators.LSHR, 16)).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, scales[g1 + group] * blockScale), t1);
            v = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            p = ((ShortVector) v.and(0x000F000F).reinterpretAsShorts()).mul(x0)
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 4).and(0x000F000F).reinterpretAsShorts()).mul(x1))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 8).and(0x000F000F).reinterpretAsShorts()).mul(x2))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 12).and(0x000F000F).lanewise(VectorOperators.XOR, 0x00080000).reinterpretAsShorts()).mul(x3))
                    .add((short) HALF_BIAS).reinterpretAsInts();
            t2 = ((FloatVector) p.and(0xFFFF).add(p.lanewise(VectorOperators.LSHR, 16)).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, scales[g2 + group] * blockScale), t2);
            v = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            p = ((ShortVector) v.and(0x000F000F).reinterpretAsShorts()).mul(x0)
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 4).and(0x000F000F).reinterpretAsShorts()).mul(x1))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 8).and(0x000F000F).reinterpretAsShorts()).mul(x2))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 12).and(0x000F000F).lanewise(VectorOperators.XOR, 0x00080000).reinterpretAsShorts()).mul(x3))
                    .add((short) HALF_BIAS).reinterpretAsInts();
            t3 = ((FloatVector) p.and(0xFFFF).add(p.lanewise(VectorOperators.LSHR, 16)).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, scales[g3 + group] * blockScale), t3);
        }
        out[outOffset + r0] = t0.reduceLanes(VectorOperators.ADD) + zeroPointShare(g0, sums);
        out[outOffset + r1] = t1.reduceLanes(VectorOperators.ADD) + zeroPointShare(g1, sums);
        out[outOffset + r2] = t2.reduceLanes(VectorOperators.ADD) + zeroPointShare(g2, sums);
        out[outOffset + r3] = t3.reduceLanes(VectorOperators.ADD) + zeroPointShare(g3, sums);
    }

    /**
     * As {@link #rows4Int8WholeBlocks} for groups of half a block: the even shorts of a block hold its first half
     * (nibbles 0-3 of every int lane), the odd shorts its second, so the low and high halves of the widened sums are
     * the two groups, each scaled apart.
     */
    private void rows4Int8HalfBlocks(short[] xq, float[] sums, int r0, int r1, int r2, int r3, float[] out, int outOffset) {
        MemorySegment w = codes;
        long b0 = r0 * rowBytes, b1 = r1 * rowBytes, b2 = r2 * rowBytes, b3 = r3 * rowBytes;
        int g0 = r0 * storedGroups, g1 = r1 * storedGroups, g2 = r2 * storedGroups, g3 = r3 * storedGroups;
        int blockScales = 2 * storedGroups;
        FloatVector t0 = FloatVector.zero(F), t1 = FloatVector.zero(F), t2 = FloatVector.zero(F), t3 = FloatVector.zero(F);
        for (int c = 0, block = 0; c < depth; c += BLOCK, block++) {
            long off = c >>> 1;
            int lo = 2 * block, hi = lo + 1;
            float blockScale = sums[blockScales + block];
            ShortVector x0 = ShortVector.fromArray(S, xq, c), x1 = ShortVector.fromArray(S, xq, c + 2 * L);
            ShortVector x2 = ShortVector.fromArray(S, xq, c + 4 * L), x3 = ShortVector.fromArray(S, xq, c + 6 * L);
            IntVector v = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector p = ((ShortVector) v.and(0x000F000F).reinterpretAsShorts()).mul(x0)
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 4).and(0x000F000F).reinterpretAsShorts()).mul(x1))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 8).and(0x000F000F).reinterpretAsShorts()).mul(x2))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 12).and(0x000F000F).lanewise(VectorOperators.XOR, 0x00080000).reinterpretAsShorts()).mul(x3))
                    .add((short) HALF_BIAS).reinterpretAsInts();
            t0 = ((FloatVector) p.lanewise(VectorOperators.LSHR, 16).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, scales[g0 + hi] * blockScale),
                            ((FloatVector) p.and(0xFFFF).convert(VectorOperators.I2F, 0)).fma(FloatVector.broadcast(F, scales[g0 + lo] * blockScale), t0));
            v = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            p = ((ShortVector) v.and(0x000F000F).reinterpretAsShorts()).mul(x0)
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 4).and(0x000F000F).reinterpretAsShorts()).mul(x1))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 8).and(0x000F000F).reinterpretAsShorts()).mul(x2))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 12).and(0x000F000F).lanewise(VectorOperators.XOR, 0x00080000).reinterpretAsShorts()).mul(x3))
                    .add((short) HALF_BIAS).reinterpretAsInts();
            t1 = ((FloatVector) p.lanewise(VectorOperators.LSHR, 16).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, scales[g1 + hi] * blockScale),
                            ((FloatVector) p.and(0xFFFF).convert(VectorOperators.I2F, 0)).fma(FloatVector.broadcast(F, scales[g1 + lo] * blockScale), t1));
            v = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            p = ((ShortVector) v.and(0x000F000F).reinterpretAsShorts()).mul(x0)
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 4).and(0x000F000F).reinterpretAsShorts()).mul(x1))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 8).and(0x000F000F).reinterpretAsShorts()).mul(x2))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 12).and(0x000F000F).lanewise(VectorOperators.XOR, 0x00080000).reinterpretAsShorts()).mul(x3))
                    .add((short) HALF_BIAS).reinterpretAsInts();
            t2 = ((FloatVector) p.lanewise(VectorOperators.LSHR, 16).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, scales[g2 + hi] * blockScale),
                            ((FloatVector) p.and(0xFFFF).convert(VectorOperators.I2F, 0)).fma(FloatVector.broadcast(F, scales[g2 + lo] * blockScale), t2));
            v = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            p = ((ShortVector) v.and(0x000F000F).reinterpretAsShorts()).mul(x0)
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 4).and(0x000F000F).reinterpretAsShorts()).mul(x1))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 8).and(0x000F000F).reinterpretAsShorts()).mul(x2))
                    .add(((ShortVector) v.lanewise(VectorOperators.LSHR, 12).and(0x000F000F).lanewise(VectorOperators.XOR, 0x00080000).reinterpretAsShorts()).mul(x3))
                    .add((short) HALF_BIAS).reinterpretAsInts();
            t3 = ((FloatVector) p.lanewise(VectorOperators.LSHR, 16).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, scales[g3 + hi] * blockScale),
                            ((FloatVector) p.and(0xFFFF).convert(VectorOperators.I2F, 0)).fma(FloatVector.broadcast(F, scales[g3 + lo] * blockScale), t3));
        }
        out[outOffset + r0] = t0.reduceLanes(VectorOperators.ADD) + zeroPointShare(g0, sums);
        out[outOffset + r1] = t1.reduceLanes(VectorOperators.ADD) + zeroPointShare(g1, sums);
        out[outOffset + r2] = t2.reduceLanes(VectorOperators.ADD) + zeroPointShare(g2, sums);
        out[outOffset + r3] = t3.reduceLanes(VectorOperators.ADD) + zeroPointShare(g3, sums);
    }

    /**
     * {@code xs[c] = x[c] · 2^-4k} for the nibble position k of column c, zero in the padding;
     * {@code sums[g] = 8·(Y_g - X_g)} and {@code sums[G + g] = X_g} for the G stored groups.
     */
    private void prepare(float[] x, int xOffset, float[] xs, float[] sums) {
        for (int g = 0; g < storedGroups; g++) {
            int from = g * groupSize;
            int to = Math.min(columns, from + groupSize);
            FloatVector all = FloatVector.zero(F), seventh = FloatVector.zero(F);
            int c = from;
            // Groups start at multiples of L, so a vector never straddles two groups or two nibble positions.
            for (; c + L <= to; c += L) {
                FloatVector v = FloatVector.fromArray(F, x, xOffset + c);
                int k = (c % BLOCK) / L;
                v.mul(STREAM_SCALE[k]).intoArray(xs, c);
                all = all.add(v);
                if (k == 7) seventh = seventh.add(v);
            }
            float allSum = all.reduceLanes(VectorOperators.ADD), seventhSum = seventh.reduceLanes(VectorOperators.ADD);
            for (; c < to; c++) {
                float v = x[xOffset + c];
                int k = (c % BLOCK) / L;
                xs[c] = v * STREAM_SCALE[k];
                allSum += v;
                if (k == 7) seventhSum += v;
            }
            for (c = Math.max(from, to); c < from + groupSize; c++) xs[c] = 0f;
            sums[g] = 8 * (seventhSum - allSum);
            sums[storedGroups + g] = allSum;
        }
    }

    /**
     * One token against four rows (which may repeat: a repeated row's result is written again). The common group
     * sizes get kernels whose groups end only at block ends, with every nibble position's mask a constant.
     */
    private void rows4(float[] xs, float[] sums, int r0, int r1, int r2, int r3, float[] out, int outOffset) {
        if (groupSize % BLOCK == 0) {
            rows4WholeBlocks(xs, sums, r0, r1, r2, r3, out, outOffset);
        } else if (2 * groupSize == BLOCK) {
            rows4HalfBlocks(xs, sums, r0, r1, r2, r3, out, outOffset);
        } else {
            rows4AnyGroup(xs, sums, r0, r1, r2, r3, out, outOffset);
        }
    }

    /**
     * Groups of whole blocks ({@code groupSize} a multiple of {@link #BLOCK}: 128 with AVX-512, 64 and 128 with
     * AVX2): one accumulator per row, the masks constants, the group's scale applied after its last block.
     */
    private void rows4WholeBlocks(float[] xs, float[] sums, int r0, int r1, int r2, int r3, float[] out, int outOffset) {
        MemorySegment w = codes;
        long b0 = r0 * rowBytes, b1 = r1 * rowBytes, b2 = r2 * rowBytes, b3 = r3 * rowBytes;
        int g0 = r0 * storedGroups, g1 = r1 * storedGroups, g2 = r2 * storedGroups, g3 = r3 * storedGroups;
        int blocksPerGroup = groupSize / BLOCK;
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F), a2 = FloatVector.zero(F), a3 = FloatVector.zero(F);
        FloatVector t0 = FloatVector.zero(F), t1 = FloatVector.zero(F), t2 = FloatVector.zero(F), t3 = FloatVector.zero(F);
        int group = 0;
        int inGroup = 0;
        for (int c = 0; c < depth; c += BLOCK) {
            long off = c >>> 1;
            IntVector v0 = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            FloatVector xv = FloatVector.fromArray(F, xs, c);
            a0 = ((FloatVector) v0.and(0xF).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + L);
            a0 = ((FloatVector) v0.and(0xF0).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF0).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF0).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF0).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 2 * L);
            a0 = ((FloatVector) v0.and(0xF00).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF00).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF00).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF00).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 3 * L);
            a0 = ((FloatVector) v0.and(0xF000).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF000).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF000).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF000).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 4 * L);
            a0 = ((FloatVector) v0.and(0xF0000).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF0000).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF0000).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF0000).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 5 * L);
            a0 = ((FloatVector) v0.and(0xF00000).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF00000).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF00000).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF00000).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 6 * L);
            a0 = ((FloatVector) v0.and(0xF000000).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF000000).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF000000).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF000000).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 7 * L);
            a0 = ((FloatVector) v0.and(0xF0000000).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF0000000).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF0000000).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF0000000).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            if (++inGroup == blocksPerGroup) {
                inGroup = 0;
                float s0 = scales[g0 + group], s1 = scales[g1 + group];
                float s2 = scales[g2 + group], s3 = scales[g3 + group];
                t0 = a0.fma(FloatVector.broadcast(F, s0), t0);
                t1 = a1.fma(FloatVector.broadcast(F, s1), t1);
                t2 = a2.fma(FloatVector.broadcast(F, s2), t2);
                t3 = a3.fma(FloatVector.broadcast(F, s3), t3);
                a0 = FloatVector.zero(F);
                a1 = FloatVector.zero(F);
                a2 = FloatVector.zero(F);
                a3 = FloatVector.zero(F);
                group++;
            }
        }
        out[outOffset + r0] = t0.reduceLanes(VectorOperators.ADD) + zeroPointShare(g0, sums);
        out[outOffset + r1] = t1.reduceLanes(VectorOperators.ADD) + zeroPointShare(g1, sums);
        out[outOffset + r2] = t2.reduceLanes(VectorOperators.ADD) + zeroPointShare(g2, sums);
        out[outOffset + r3] = t3.reduceLanes(VectorOperators.ADD) + zeroPointShare(g3, sums);
    }

    /**
     * Groups of half a block (64 with AVX-512, 32 with AVX2): nibbles 0-3 and 4-7 of a load belong to two groups,
     * accumulated apart and both scaled at the end of the block.
     */
    private void rows4HalfBlocks(float[] xs, float[] sums, int r0, int r1, int r2, int r3, float[] out, int outOffset) {
        MemorySegment w = codes;
        long b0 = r0 * rowBytes, b1 = r1 * rowBytes, b2 = r2 * rowBytes, b3 = r3 * rowBytes;
        int g0 = r0 * storedGroups, g1 = r1 * storedGroups, g2 = r2 * storedGroups, g3 = r3 * storedGroups;
        FloatVector t0 = FloatVector.zero(F), t1 = FloatVector.zero(F), t2 = FloatVector.zero(F), t3 = FloatVector.zero(F);
        for (int c = 0, group = 0; c < depth; c += BLOCK, group += 2) {
            long off = c >>> 1;
            IntVector v0 = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            FloatVector xv = FloatVector.fromArray(F, xs, c);
            FloatVector a0 = ((FloatVector) v0.and(0xF).convert(VectorOperators.I2F, 0)).mul(xv), a1 = ((FloatVector) v1.and(0xF).convert(VectorOperators.I2F, 0)).mul(xv);
            FloatVector a2 = ((FloatVector) v2.and(0xF).convert(VectorOperators.I2F, 0)).mul(xv), a3 = ((FloatVector) v3.and(0xF).convert(VectorOperators.I2F, 0)).mul(xv);
            xv = FloatVector.fromArray(F, xs, c + 4 * L);
            FloatVector h0 = ((FloatVector) v0.and(0xF0000).convert(VectorOperators.I2F, 0)).mul(xv), h1 = ((FloatVector) v1.and(0xF0000).convert(VectorOperators.I2F, 0)).mul(xv);
            FloatVector h2 = ((FloatVector) v2.and(0xF0000).convert(VectorOperators.I2F, 0)).mul(xv), h3 = ((FloatVector) v3.and(0xF0000).convert(VectorOperators.I2F, 0)).mul(xv);
            xv = FloatVector.fromArray(F, xs, c + L);
            a0 = ((FloatVector) v0.and(0xF0).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF0).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF0).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF0).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 5 * L);
            h0 = ((FloatVector) v0.and(0xF00000).convert(VectorOperators.I2F, 0)).fma(xv, h0);
            h1 = ((FloatVector) v1.and(0xF00000).convert(VectorOperators.I2F, 0)).fma(xv, h1);
            h2 = ((FloatVector) v2.and(0xF00000).convert(VectorOperators.I2F, 0)).fma(xv, h2);
            h3 = ((FloatVector) v3.and(0xF00000).convert(VectorOperators.I2F, 0)).fma(xv, h3);
            xv = FloatVector.fromArray(F, xs, c + 2 * L);
            a0 = ((FloatVector) v0.and(0xF00).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF00).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF00).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF00).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 6 * L);
            h0 = ((FloatVector) v0.and(0xF000000).convert(VectorOperators.I2F, 0)).fma(xv, h0);
            h1 = ((FloatVector) v1.and(0xF000000).convert(VectorOperators.I2F, 0)).fma(xv, h1);
            h2 = ((FloatVector) v2.and(0xF000000).convert(VectorOperators.I2F, 0)).fma(xv, h2);
            h3 = ((FloatVector) v3.and(0xF000000).convert(VectorOperators.I2F, 0)).fma(xv, h3);
            xv = FloatVector.fromArray(F, xs, c + 3 * L);
            a0 = ((FloatVector) v0.and(0xF000).convert(VectorOperators.I2F, 0)).fma(xv, a0);
            a1 = ((FloatVector) v1.and(0xF000).convert(VectorOperators.I2F, 0)).fma(xv, a1);
            a2 = ((FloatVector) v2.and(0xF000).convert(VectorOperators.I2F, 0)).fma(xv, a2);
            a3 = ((FloatVector) v3.and(0xF000).convert(VectorOperators.I2F, 0)).fma(xv, a3);
            xv = FloatVector.fromArray(F, xs, c + 7 * L);
            h0 = ((FloatVector) v0.and(0xF0000000).convert(VectorOperators.I2F, 0)).fma(xv, h0);
            h1 = ((FloatVector) v1.and(0xF0000000).convert(VectorOperators.I2F, 0)).fma(xv, h1);
            h2 = ((FloatVector) v2.and(0xF0000000).convert(VectorOperators.I2F, 0)).fma(xv, h2);
            h3 = ((FloatVector) v3.and(0xF0000000).convert(VectorOperators.I2F, 0)).fma(xv, h3);
            int lo = group, hi = group + 1;
            float s0 = scales[g0 + lo], s1 = scales[g1 + lo], s2 = scales[g2 + lo], s3 = scales[g3 + lo];
            float u0 = scales[g0 + hi], u1 = scales[g1 + hi], u2 = scales[g2 + hi], u3 = scales[g3 + hi];
            t0 = h0.fma(FloatVector.broadcast(F, u0), a0.fma(FloatVector.broadcast(F, s0), t0));
            t1 = h1.fma(FloatVector.broadcast(F, u1), a1.fma(FloatVector.broadcast(F, s1), t1));
            t2 = h2.fma(FloatVector.broadcast(F, u2), a2.fma(FloatVector.broadcast(F, s2), t2));
            t3 = h3.fma(FloatVector.broadcast(F, u3), a3.fma(FloatVector.broadcast(F, s3), t3));
        }
        out[outOffset + r0] = t0.reduceLanes(VectorOperators.ADD) + zeroPointShare(g0, sums);
        out[outOffset + r1] = t1.reduceLanes(VectorOperators.ADD) + zeroPointShare(g1, sums);
        out[outOffset + r2] = t2.reduceLanes(VectorOperators.ADD) + zeroPointShare(g2, sums);
        out[outOffset + r3] = t3.reduceLanes(VectorOperators.ADD) + zeroPointShare(g3, sums);
    }

    /**
     * Any group size (a multiple of L): each group's {@code Σ u·x} accumulates in a register and is scaled when the
     * group ends, wherever in a block that is.
     */
    private void rows4AnyGroup(float[] xs, float[] sums, int r0, int r1, int r2, int r3, float[] out, int outOffset) {
        MemorySegment w = codes;
        long b0 = r0 * rowBytes, b1 = r1 * rowBytes, b2 = r2 * rowBytes, b3 = r3 * rowBytes;
        int g0 = r0 * storedGroups, g1 = r1 * storedGroups, g2 = r2 * storedGroups, g3 = r3 * storedGroups;
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F), a2 = FloatVector.zero(F), a3 = FloatVector.zero(F);
        FloatVector t0 = FloatVector.zero(F), t1 = FloatVector.zero(F), t2 = FloatVector.zero(F), t3 = FloatVector.zero(F);
        int group = 0;
        int inGroup = 0;
        for (int c = 0; c < depth; c += BLOCK) {
            long off = c >>> 1;
            IntVector v0 = IntVector.fromMemorySegment(I, w, b0 + off, LE);
            IntVector v1 = IntVector.fromMemorySegment(I, w, b1 + off, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, b2 + off, LE);
            IntVector v3 = IntVector.fromMemorySegment(I, w, b3 + off, LE);
            for (int k = 0; k < 8; k++) {
                int mask = 0xF << (4 * k);
                FloatVector xv = FloatVector.fromArray(F, xs, c + k * L);
                a0 = ((FloatVector) v0.and(mask).convert(VectorOperators.I2F, 0)).fma(xv, a0);
                a1 = ((FloatVector) v1.and(mask).convert(VectorOperators.I2F, 0)).fma(xv, a1);
                a2 = ((FloatVector) v2.and(mask).convert(VectorOperators.I2F, 0)).fma(xv, a2);
                a3 = ((FloatVector) v3.and(mask).convert(VectorOperators.I2F, 0)).fma(xv, a3);
                if (++inGroup == vectorsPerGroup) {
                    inGroup = 0;
                    float s0 = scales[g0 + group], s1 = scales[g1 + group];
                    float s2 = scales[g2 + group], s3 = scales[g3 + group];
                    t0 = a0.fma(FloatVector.broadcast(F, s0), t0);
                    t1 = a1.fma(FloatVector.broadcast(F, s1), t1);
                    t2 = a2.fma(FloatVector.broadcast(F, s2), t2);
                    t3 = a3.fma(FloatVector.broadcast(F, s3), t3);
                    a0 = FloatVector.zero(F);
                    a1 = FloatVector.zero(F);
                    a2 = FloatVector.zero(F);
                    a3 = FloatVector.zero(F);
                    group++;
                }
            }
        }
        out[outOffset + r0] = t0.reduceLanes(VectorOperators.ADD) + zeroPointShare(g0, sums);
        out[outOffset + r1] = t1.reduceLanes(VectorOperators.ADD) + zeroPointShare(g1, sums);
        out[outOffset + r2] = t2.reduceLanes(VectorOperators.ADD) + zeroPointShare(g2, sums);
        out[outOffset + r3] = t3.reduceLanes(VectorOperators.ADD) + zeroPointShare(g3, sums);
    }

    /**
     * What the zero points and the flipped top bit of nibble 7 add to a row's product, from the row's first group
     * index and the call's per-group sums: {@code Σ_g s_g·(8·Y_g - z_g·X_g) = Σ_g s_g·8·(Y_g - X_g) - Σ_g s_g·(z_g - 8)·X_g}
     * (the second sum vanishes for a symmetric weight). Kept out of the vector loop, and vectorised over the groups:
     * done per row with scalars it would cost a quarter of the kernel on rows of a dozen groups.
     */
    private float zeroPointShare(int groupBase, float[] sums) {
        int n = storedGroups;
        FloatVector share = FloatVector.zero(F);
        for (int g = 0; g < n; g += L) {
            VectorMask<Float> lanes = F.indexInRange(g, n);
            FloatVector scale = FloatVector.fromArray(F, scales, groupBase + g, lanes);
            share = scale.fma(FloatVector.fromArray(F, sums, g, lanes), share);
            if (zeros != null) {
                FloatVector zero = (FloatVector) ByteVector.fromArray(B, zeros, groupBase + g, lanes.cast(B))
                        .convertShape(VectorOperators.B2F, F, 0);
                share = scale.mul(zero.sub(SYMMETRIC_ZERO)).neg().fma(FloatVector.fromArray(F, sums, n + g, lanes), share);
            }
        }
        return share.reduceLanes(VectorOperators.ADD);
    }

    private float zeroAt(int index) {
        return zeros == null ? SYMMETRIC_ZERO : zeros[index];
    }

    @Override
    protected void decode(int row, int column, int count, float[] dst, int dstOffset) {
        long base = row * rowBytes;
        int groupBase = row * storedGroups;
        for (int c = column; c < column + count; c += BLOCK) {
            IntVector v = IntVector.fromMemorySegment(I, codes, base + (c >>> 1), LE);
            for (int k = 0; k < 8; k++) {
                int first = c + k * L;
                int g = groupBase + first / groupSize;
                int z = zeros == null ? SYMMETRIC_ZERO : zeros[g];
                // (u - z) · 2^4k in ints is exact; nibble 7 is shifted down first, as (u - z) · 2^28 could overflow.
                IntVector centred = k == 7
                        ? v.lanewise(VectorOperators.ASHR, 28).sub(z - 8)
                        : v.and(0xF << (4 * k)).sub(z << (4 * k));
                ((FloatVector) centred.convert(VectorOperators.I2F, 0)).mul(scales[g] * DECODE_SCALE[k])
                        .intoArray(dst, dstOffset + first - column);
            }
        }
    }
}
