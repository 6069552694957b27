package dev.kiln.backend.cuda.quant;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.backend.cuda.internal.CudaContext;
import dev.kiln.backend.cuda.internal.QuantizedWeight;
import dev.kiln.backend.cuda.internal.QuantizedWeight.Format;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.IntStream;

/**
 * Quantizes a floating-point checkpoint matrix on load into a device weight: rows are read as f32, quantized by the
 * format's rule on all cores, packed into the device layout in a band of host memory and copied to the
 * device, band after band, so host memory stays bounded whatever the matrix.
 */
public final class OnLoadQuantization {
    /** Host bytes of codes per band. */
    static final long BAND_BYTES = 16L << 20;
    /** Code of INT4 padding columns: u = 8 stands for 0. */
    static final int INT4_ZERO = 8;
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private OnLoadQuantization() {}

    /**
     * A {@code weight_only_int8} device weight of a 2-D F32, F16 or BF16 tensor.
     *
     * @throws IllegalArgumentException when the tensor is not such a matrix or holds a value that is not finite
     */
    public static QuantizedWeight int8(CudaContext context, CheckpointTensor tensor) {
        FloatRows.requireFloatingMatrix(tensor, Format.INT8.formatName());
        return quantize(context, tensor, Format.INT8, 0);
    }

    /**
     * A {@code weight_only_int4} device weight of a 2-D F32, F16 or BF16 tensor, one scale per {@code groupSize}
     * columns (a power of two of at least 16).
     *
     * @throws IllegalArgumentException when the tensor is not such a matrix or holds a value that is not finite
     */
    public static QuantizedWeight int4(CudaContext context, CheckpointTensor tensor, int groupSize) {
        FloatRows.requireFloatingMatrix(tensor, Format.INT4.formatName());
        return quantize(context, tensor, Format.INT4, groupSize);
    }

    private static QuantizedWeight quantize(CudaContext context, CheckpointTensor tensor, Format format, int groupSize) {
        int rows = tensor.rows();
        int columns = tensor.columns();
        var builder = new QuantizedWeight.Builder(context, format, rows, columns, groupSize);
        try (Arena arena = Arena.ofShared()) {
            int rowBytes = builder.rowBytes();
            int scalesPerRow = builder.scalesPerRow();
            int band = (int) Math.max(1, Math.min(rows, BAND_BYTES / rowBytes));
            MemorySegment codes = arena.allocate((long) band * rowBytes, 16);
            MemorySegment scales = arena.allocate(4L * band * scalesPerRow, 16);
            ThreadLocal<RowBuffers> buffers = ThreadLocal.withInitial(() -> new RowBuffers(columns, scalesPerRow));
            AtomicReference<IllegalArgumentException> failure = new AtomicReference<>();
            for (int first = 0; first < rows; first += band) {
                int bandFirst = first;
                int count = Math.min(band, rows - first);
                IntStream.range(0, count).parallel().forEach(i -> {
                    RowBuffers b = buffers.get();
                    FloatRows.read(tensor, bandFirst + i, b.values);
                    try {
                        if (format == Format.INT8) {
                            b.scales[0] = ChannelQuantization.quantizeRow(b.values, b.codes);
                            packInt8(b.codes, columns, codes, (long) i * rowBytes, rowBytes);
                        } else {
                            GroupQuantization.quantizeRow(b.values, groupSize, b.codes, b.scales);
                            packInt4(b.codes, columns, codes, (long) i * rowBytes, rowBytes);
                        }
                    } catch (IllegalArgumentException e) {
                        failure.compareAndSet(null, e);
                        return;
                    }
                    MemorySegment.copy(b.scales, 0, scales, FLOAT, 4L * i * scalesPerRow, scalesPerRow);
                });
                if (failure.get() != null) throw failure.get();
                builder.write(first, count, codes, scales);
            }
            return builder.build();
        } catch (RuntimeException e) {
            builder.discard();
            throw e;
        }
    }

    /** Per-thread buffers of one row. */
    private static final class RowBuffers {
        final float[] values;
        final byte[] codes;
        final float[] scales;

        RowBuffers(int columns, int scalesPerRow) {
            values = new float[columns];
            codes = new byte[columns];
            scales = new float[scalesPerRow];
        }
    }

    /** One row of INT8 codes into {@code rowBytes} bytes at {@code offset}, zero padded. */
    static void packInt8(byte[] codes, int columns, MemorySegment dst, long offset, int rowBytes) {
        MemorySegment.copy(codes, 0, dst, ValueLayout.JAVA_BYTE, offset, columns);
        dst.asSlice(offset + columns, rowBytes - columns).fill((byte) 0);
    }

    /**
     * One row of INT4 codes {@code u} (0..15) into {@code rowBytes} bytes at {@code offset}: column 2j in the low
     * nibble of byte j, 2j + 1 in its high nibble, padding columns {@value #INT4_ZERO} (zero).
     */
    static void packInt4(byte[] codes, int columns, MemorySegment dst, long offset, int rowBytes) {
        for (int j = 0; j < rowBytes; j++) {
            int c = 2 * j;
            int low = c < columns ? codes[c] : INT4_ZERO;
            int high = c + 1 < columns ? codes[c + 1] : INT4_ZERO;
            dst.set(ValueLayout.JAVA_BYTE, offset + j, (byte) (low | high << 4));
        }
    }
}
