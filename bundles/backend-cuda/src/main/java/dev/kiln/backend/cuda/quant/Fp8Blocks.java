package dev.kiln.backend.cuda.quant;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.backend.cuda.internal.CudaContext;
import dev.kiln.backend.cuda.internal.Fp8Weight;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.stream.IntStream;

/**
 * FP8 block weights placed on the device: e4m3 codes as a checkpoint stores them, or a floating-point matrix quantized
 * on load by the CPU bundle's rule ({@code dev.kiln.quant.fp8.internal.BlockQuantization}, operation for operation):
 * each block's scale maps its largest magnitude to 448 ({@code scale = amax / 448} in f32, 1 for a block of zeros) and
 * each element becomes the code nearest {@code w / scale} (f32 division, ties to even). Rows go to the device in
 * bands of host memory in the layout of {@link Fp8Weight} (rows padded to 16 bytes with code 0), so host memory stays
 * bounded whatever the matrix.
 */
public final class Fp8Blocks {
    /** The block size DeepSeek's checkpoints use, and the one used when quantizing on load. */
    public static final int DEFAULT_BLOCK = 128;
    /** Host bytes of codes per band. */
    static final long BAND_BYTES = 16L << 20;

    private Fp8Blocks() {}

    /**
     * The device weight of a checkpoint's {@code F8_E4M3} codes {@code [rows, columns]} (checked by
     * {@link Fp8Checkpoint#blockScales}, which gave {@code scales}).
     */
    public static Fp8Weight stored(CudaContext context, CheckpointTensor weight, float[] scales, int blockRows,
                                   int blockColumns) {
        int rows = weight.rows();
        int columns = weight.columns();
        var builder = new Fp8Weight.Builder(context, rows, columns, blockRows, blockColumns);
        try {
            builder.writeScales(scales);
            int rowBytes = builder.rowBytes();
            if (rowBytes == columns) {
                builder.writeCodes(0, rows, weight.data());
            } else {
                try (Arena arena = Arena.ofConfined()) {
                    int band = band(rows, rowBytes);
                    MemorySegment padded = arena.allocate((long) band * rowBytes, 16);
                    for (int first = 0; first < rows; first += band) {
                        int count = Math.min(band, rows - first);
                        padRows(weight.data(), columns, first, count, padded, rowBytes);
                        builder.writeCodes(first, count, padded);
                    }
                }
            }
            return builder.build();
        } catch (RuntimeException e) {
            builder.discard();
            throw e;
        }
    }

    /**
     * Rows {@code first .. first + count - 1} of row-major codes {@code [*, columns]} into {@code dst} in the device
     * layout: rows of {@code rowBytes}, the bytes past the columns zero (code 0 is +0).
     */
    static void padRows(MemorySegment codes, int columns, int first, int count, MemorySegment dst, int rowBytes) {
        for (int i = 0; i < count; i++) {
            MemorySegment.copy(codes, (long) (first + i) * columns, dst, (long) i * rowBytes, columns);
            dst.asSlice((long) i * rowBytes + columns, rowBytes - columns).fill((byte) 0);
        }
    }

    /**
     * A 2-D F32, F16 or BF16 matrix quantized on load to e4m3 in blocks of {@value #DEFAULT_BLOCK} ×
     * {@value #DEFAULT_BLOCK}.
     *
     * @throws IllegalArgumentException when the tensor is not such a matrix
     */
    public static Fp8Weight quantize(CudaContext context, CheckpointTensor tensor) {
        FloatRows.requireFloatingMatrix(tensor, Fp8Weight.FORMAT);
        int rows = tensor.rows();
        int columns = tensor.columns();
        float[] scales = new float[Fp8Weight.blocks(rows, DEFAULT_BLOCK) * Fp8Weight.blocks(columns, DEFAULT_BLOCK)];
        var builder = new Fp8Weight.Builder(context, rows, columns, DEFAULT_BLOCK, DEFAULT_BLOCK);
        try (Arena arena = Arena.ofShared()) {
            int rowBytes = builder.rowBytes();
            // Whole row blocks per band, so that each block's amax is taken over all its rows.
            int band = Math.max(1, band(rows, rowBytes) / DEFAULT_BLOCK) * DEFAULT_BLOCK;
            MemorySegment codes = arena.allocate((long) Math.min(band, rows) * rowBytes, 16);
            for (int first = 0; first < rows; first += band) {
                int count = Math.min(band, rows - first);
                quantizeBand(tensor, first, count, codes, rowBytes, scales);
                builder.writeCodes(first, count, codes);
            }
            builder.writeScales(scales);
            return builder.build();
        } catch (RuntimeException e) {
            builder.discard();
            throw e;
        }
    }

    /**
     * Quantizes rows {@code first .. first + count - 1} of a floating-point matrix (whole blocks of
     * {@value #DEFAULT_BLOCK} rows, the matrix's last one possibly partial) on all cores: their codes into {@code dst}
     * in the device layout (rows of {@code rowBytes}, zero padded), their blocks' scales into {@code scales}, the whole
     * matrix's, row-major over the blocks.
     */
    static void quantizeBand(CheckpointTensor tensor, int first, int count, MemorySegment dst, int rowBytes,
                             float[] scales) {
        int rows = tensor.rows();
        int columns = tensor.columns();
        int columnBlocks = Fp8Weight.blocks(columns, DEFAULT_BLOCK);
        ThreadLocal<RowBlock> buffers = ThreadLocal.withInitial(() -> new RowBlock(DEFAULT_BLOCK, columns));
        IntStream.range(0, Fp8Weight.blocks(count, DEFAULT_BLOCK)).parallel().forEach(b -> {
            RowBlock block = buffers.get();
            int r0 = first + b * DEFAULT_BLOCK;
            int n = Math.min(DEFAULT_BLOCK, rows - r0);
            for (int i = 0; i < n; i++) {
                FloatRows.read(tensor, r0 + i, block.row);
                System.arraycopy(block.row, 0, block.values, i * columns, columns);
            }
            quantizeRowBlock(block.values, n, columns, DEFAULT_BLOCK, block.codes, scales,
                    (r0 / DEFAULT_BLOCK) * columnBlocks);
            for (int i = 0; i < n; i++) {
                long offset = (long) (b * DEFAULT_BLOCK + i) * rowBytes;
                MemorySegment.copy(block.codes, i * columns, dst, ValueLayout.JAVA_BYTE, offset, columns);
                dst.asSlice(offset + columns, rowBytes - columns).fill((byte) 0);
            }
        });
    }

    /** Rows per band of {@link #BAND_BYTES}: at least one. */
    private static int band(int rows, int rowBytes) {
        return (int) Math.max(1, Math.min(rows, BAND_BYTES / rowBytes));
    }

    /** Per-thread buffers of one row block: its values widened to f32 and its codes, row-major, and one row read. */
    private static final class RowBlock {
        final float[] values;
        final byte[] codes;
        final float[] row;

        RowBlock(int blockRows, int columns) {
            this.values = new float[blockRows * columns];
            this.codes = new byte[blockRows * columns];
            this.row = new float[columns];
        }
    }

    /**
     * Quantizes one row block: {@code count} rows of {@code columns} values (row-major in {@code values}) into codes
     * (same positions in {@code codes}) and one scale per block of {@code blockColumns} columns, the last one partial,
     * into {@code scales} from {@code scaleOffset}. The CPU bundle's rule exactly, non-finite values included (a NaN
     * hides the block's amax and leaves its scale 1, as {@code Math.max} and the comparison there do).
     */
    public static void quantizeRowBlock(float[] values, int count, int columns, int blockColumns, byte[] codes,
                                        float[] scales, int scaleOffset) {
        int columnBlocks = Fp8Weight.blocks(columns, blockColumns);
        for (int cb = 0; cb < columnBlocks; cb++) {
            int c0 = cb * blockColumns;
            int c1 = Math.min(columns, c0 + blockColumns);
            float amax = 0;
            for (int i = 0; i < count; i++) {
                for (int c = c0; c < c1; c++) amax = Math.max(amax, Math.abs(values[i * columns + c]));
            }
            float scale = amax > 0 ? amax / E4m3.MAX : 1f;
            scales[scaleOffset + cb] = scale;
            for (int i = 0; i < count; i++) {
                for (int c = c0; c < c1; c++) codes[i * columns + c] = E4m3.fromFloat(values[i * columns + c] / scale);
            }
        }
    }
}
