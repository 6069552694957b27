package dev.kiln.backend.cpu.bench;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.SplittableRandom;

/**
 * Copies of one weight shape written to a temporary file and memory-mapped, the way a checkpoint is: enough
 * copies that cycling through them reads from main memory, not from the last-level cache.
 */
final class MappedWeights implements AutoCloseable {
    private final Arena arena = Arena.ofShared();
    private final Path file;
    final CheckpointTensor[] tensors;

    MappedWeights(DType dtype, int rows, int columns, long totalBytes) throws IOException {
        long bytes = (long) rows * columns * dtype.byteSize();
        int copies = (int) Math.max(1, totalBytes / bytes);
        file = Files.createTempFile("kiln-bench", ".bin");
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            MemorySegment all = channel.map(FileChannel.MapMode.READ_WRITE, 0, bytes * copies, arena);
            fill(all, dtype);
            tensors = new CheckpointTensor[copies];
            for (int i = 0; i < copies; i++) {
                tensors[i] = new CheckpointTensor("w" + i, dtype, new long[] {rows, columns},
                        all.asSlice(i * bytes, bytes), file);
            }
        }
    }

    /** Small random values, in the range of real weights. */
    private static void fill(MemorySegment all, DType dtype) {
        SplittableRandom random = new SplittableRandom(42);
        ValueLayout.OfShort s = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        ValueLayout.OfFloat f = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        long n = all.byteSize() / dtype.byteSize();
        for (long i = 0; i < n; i++) {
            float v = (float) (random.nextDouble() - 0.5) * 0.1f;
            switch (dtype) {
                case BF16 -> all.set(s, 2 * i, (short) (Float.floatToRawIntBits(v) >>> 16));
                case F16 -> all.set(s, 2 * i, Float.floatToFloat16(v));
                case F32 -> all.set(f, 4 * i, v);
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
    }

    @Override
    public void close() throws IOException {
        arena.close();
        Files.deleteIfExists(file);
    }
}
