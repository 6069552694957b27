package dev.kiln.backend.cpu.bench;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
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
        // Written through the channel and flushed, then mapped read-only: clean page-cache pages, as a checkpoint's.
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ByteBuffer buffer = ByteBuffer.allocateDirect(1 << 22).order(ByteOrder.LITTLE_ENDIAN);
            SplittableRandom random = new SplittableRandom(42);
            long total = bytes * copies;
            for (long written = 0; written < total; ) {
                buffer.clear();
                int chunk = (int) Math.min(buffer.capacity(), total - written);
                fill(MemorySegment.ofBuffer(buffer).asSlice(0, chunk), dtype, random);
                buffer.limit(chunk);
                while (buffer.hasRemaining()) channel.write(buffer);
                written += chunk;
            }
            channel.force(true);
        }
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            MemorySegment all = channel.map(FileChannel.MapMode.READ_ONLY, 0, bytes * copies, arena);
            tensors = new CheckpointTensor[copies];
            for (int i = 0; i < copies; i++) {
                tensors[i] = new CheckpointTensor("w" + i, dtype, new long[] {rows, columns},
                        all.asSlice(i * bytes, bytes), file);
            }
        }
    }

    /** Small random values, in the range of real weights. */
    private static void fill(MemorySegment chunk, DType dtype, SplittableRandom random) {
        ValueLayout.OfShort s = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        ValueLayout.OfFloat f = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        long n = chunk.byteSize() / dtype.byteSize();
        for (long i = 0; i < n; i++) {
            float v = (float) (random.nextDouble() - 0.5) * 0.1f;
            switch (dtype) {
                case BF16 -> chunk.set(s, 2 * i, (short) (Float.floatToRawIntBits(v) >>> 16));
                case F16 -> chunk.set(s, 2 * i, Float.floatToFloat16(v));
                case F32 -> chunk.set(f, 4 * i, v);
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
