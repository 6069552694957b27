package dev.kiln.loader.safetensors;

import com.google.gson.stream.JsonWriter;
import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.tensor.DType;
import dev.kiln.loader.safetensors.internal.SafetensorsHeader;
import java.io.IOException;
import java.io.StringWriter;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Map;
import java.util.Objects;

/**
 * Writes {@code .safetensors} files as the reference implementation lays them out: the header padded with spaces
 * so that the data starts 8-byte aligned, then every tensor's bytes back to back in the order given.
 *
 * <p>Data streams from each tensor's {@link ByteSource} through a fixed-size buffer, so a file of many gigabytes
 * (a random-weight checkpoint of a real model's shapes) is written without holding it in memory. The file appears
 * under its name only once complete: it is written beside it under a {@code .partial} name and then moved.
 */
public final class SafetensorsWriter {
    private static final int CHUNK_BYTES = 4 << 20;
    private static final Map<String, String> PYTORCH_METADATA = Map.of("format", "pt");

    private SafetensorsWriter() {}

    /**
     * Produces a tensor's bytes, one chunk at a time, in increasing order.
     */
    @FunctionalInterface
    public interface ByteSource {
        /**
         * Puts the tensor's bytes starting at {@code byteOffset} into {@code chunk}: exactly
         * {@code chunk.remaining()} of them, a whole number of elements, little-endian (the buffer's order), with
         * relative or absolute puts. What the buffer holds between its position and limit on entry is written,
         * whatever the position on return.
         */
        void fill(long byteOffset, ByteBuffer chunk) throws IOException;
    }

    /**
     * One tensor to write.
     *
     * @param dtype  its element type
     * @param shape  its dimensions, outermost first (copied)
     * @param source where its {@link #byteLength()} bytes come from
     */
    public record TensorSpec(DType dtype, long[] shape, ByteSource source) {
        /**
         * @throws IllegalArgumentException when a dimension is negative or the tensor has more bytes than a file
         *                                  can hold
         */
        public TensorSpec {
            Objects.requireNonNull(dtype, "dtype");
            Objects.requireNonNull(source, "source");
            shape = shape.clone();
            byteLength(dtype, shape);
        }

        /** The dimensions (a copy). */
        @Override
        public long[] shape() {
            return shape.clone();
        }

        /** Bytes of data. */
        public long byteLength() {
            return byteLength(dtype, shape);
        }

        /** Number of elements. */
        public long elementCount() {
            return byteLength() / dtype.byteSize();
        }

        private static long byteLength(DType dtype, long[] shape) {
            long bytes = dtype.byteSize();
            for (long d : shape) {
                if (d < 0) throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
                try {
                    bytes = Math.multiplyExact(bytes, d);
                } catch (ArithmeticException overflow) {
                    throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " is too large", overflow);
                }
            }
            return bytes;
        }

        /** A tensor whose bytes are produced on demand, as the file is written. */
        public static TensorSpec generated(DType dtype, long[] shape, ByteSource source) {
            return new TensorSpec(dtype, shape, source);
        }

        /**
         * A tensor from its encoded bytes (little-endian elements).
         *
         * @throws IllegalArgumentException when the byte count does not match the shape and dtype
         */
        public static TensorSpec ofBytes(DType dtype, long[] shape, byte[] bytes) {
            TensorSpec spec = new TensorSpec(dtype, shape, (offset, chunk) -> chunk.put(bytes, (int) offset, chunk.remaining()));
            requireLength(spec, bytes.length);
            return spec;
        }

        /**
         * A tensor from bytes in memory (a mapped checkpoint's tensor, say), copied as the file is written; the
         * segment must stay readable until then.
         *
         * @throws IllegalArgumentException when the byte count does not match the shape and dtype
         */
        public static TensorSpec ofSegment(DType dtype, long[] shape, MemorySegment data) {
            TensorSpec spec = new TensorSpec(dtype, shape, (offset, chunk) ->
                    MemorySegment.copy(data, offset, MemorySegment.ofBuffer(chunk), 0, chunk.remaining()));
            requireLength(spec, data.byteSize());
            return spec;
        }

        /** A tensor of a checkpoint as it is stored; the checkpoint must stay open until the file is written. */
        public static TensorSpec copyOf(CheckpointTensor tensor) {
            return ofSegment(tensor.dtype(), tensor.shape(), tensor.data());
        }

        /**
         * A real-valued tensor from floats, each rounded to the nearest value of the dtype ({@code F64},
         * {@code F32}, {@code F16}, {@code BF16}, {@code F8_E4M3}, {@code F8_E5M2}; FP8 saturates as
         * {@link TensorValues#floatToF8e4m3} describes).
         *
         * @throws IllegalArgumentException when the dtype holds integers or the count does not match the shape
         */
        public static TensorSpec ofFloats(DType dtype, long[] shape, float[] values) {
            int size = dtype.byteSize();
            ByteSource source = switch (dtype) {
                case F64 -> (offset, chunk) -> {
                    for (int i = (int) (offset / size); chunk.hasRemaining(); i++) chunk.putDouble(values[i]);
                };
                case F32 -> (offset, chunk) -> chunk.asFloatBuffer().put(values, (int) (offset / size), chunk.remaining() / size);
                case F16 -> (offset, chunk) -> {
                    for (int i = (int) (offset / size); chunk.hasRemaining(); i++) chunk.putShort(Float.floatToFloat16(values[i]));
                };
                case BF16 -> (offset, chunk) -> {
                    for (int i = (int) (offset / size); chunk.hasRemaining(); i++) chunk.putShort(TensorValues.floatToBf16(values[i]));
                };
                case F8_E4M3 -> (offset, chunk) -> {
                    for (int i = (int) offset; chunk.hasRemaining(); i++) chunk.put(TensorValues.floatToF8e4m3(values[i]));
                };
                case F8_E5M2 -> (offset, chunk) -> {
                    for (int i = (int) offset; chunk.hasRemaining(); i++) chunk.put(TensorValues.floatToF8e5m2(values[i]));
                };
                case I64, I32, I16, I8, U8, BOOL ->
                        throw new IllegalArgumentException(dtype + " holds integers; use ofLongs");
            };
            TensorSpec spec = new TensorSpec(dtype, shape, source);
            requireCount(spec, values.length);
            return spec;
        }

        /**
         * An integer or boolean tensor from longs ({@code I64}, {@code I32}, {@code I16}, {@code I8}, {@code U8}
         * 0..255, {@code BOOL} 0 or 1).
         *
         * @throws IllegalArgumentException when the dtype holds reals, a value is out of its range, or the count
         *                                  does not match the shape
         */
        public static TensorSpec ofLongs(DType dtype, long[] shape, long[] values) {
            long min;
            long max;
            switch (dtype) {
                case I64 -> { min = Long.MIN_VALUE; max = Long.MAX_VALUE; }
                case I32 -> { min = Integer.MIN_VALUE; max = Integer.MAX_VALUE; }
                case I16 -> { min = Short.MIN_VALUE; max = Short.MAX_VALUE; }
                case I8 -> { min = Byte.MIN_VALUE; max = Byte.MAX_VALUE; }
                case U8 -> { min = 0; max = 255; }
                case BOOL -> { min = 0; max = 1; }
                default -> throw new IllegalArgumentException(dtype + " holds real numbers; use ofFloats");
            }
            for (int i = 0; i < values.length; i++) {
                if (values[i] < min || values[i] > max) {
                    throw new IllegalArgumentException("value " + values[i] + " at " + i + " does not fit " + dtype);
                }
            }
            int size = dtype.byteSize();
            TensorSpec spec = new TensorSpec(dtype, shape, (offset, chunk) -> {
                for (int i = (int) (offset / size); chunk.hasRemaining(); i++) {
                    switch (size) {
                        case 8 -> chunk.putLong(values[i]);
                        case 4 -> chunk.putInt((int) values[i]);
                        case 2 -> chunk.putShort((short) values[i]);
                        default -> chunk.put((byte) values[i]);
                    }
                }
            });
            requireCount(spec, values.length);
            return spec;
        }

        private static void requireLength(TensorSpec spec, long bytes) {
            if (bytes != spec.byteLength()) {
                throw new IllegalArgumentException(spec.dtype + " " + Arrays.toString(spec.shape) + " needs "
                        + spec.byteLength() + " bytes, given " + bytes);
            }
        }

        private static void requireCount(TensorSpec spec, long count) {
            if (count != spec.elementCount()) {
                throw new IllegalArgumentException(spec.dtype + " " + Arrays.toString(spec.shape) + " has "
                        + spec.elementCount() + " elements, given " + count);
            }
        }
    }

    /** Writes a file with PyTorch's {@code {"format": "pt"}} metadata, which Hugging Face tools expect. */
    public static void write(Path file, Map<String, TensorSpec> tensors) throws IOException {
        write(file, tensors, PYTORCH_METADATA);
    }

    /**
     * Writes a file, its tensors in the map's iteration order.
     *
     * @param metadata the header's {@code __metadata__} strings; omitted when empty
     * @throws IllegalArgumentException when a tensor is named {@code __metadata__} or the header grows beyond
     *                                  the limit readers accept
     * @throws IOException              when writing fails, or a tensor's source does; no file is left behind
     */
    public static void write(Path file, Map<String, TensorSpec> tensors, Map<String, String> metadata) throws IOException {
        byte[] header = header(tensors, metadata);
        Path partial = file.resolveSibling(file.getFileName() + ".partial");
        boolean written = false;
        try {
            try (FileChannel channel = FileChannel.open(partial, StandardOpenOption.CREATE,
                    StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
                ByteBuffer prefix = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
                prefix.putLong(header.length).put(header).flip();
                writeFully(channel, prefix);
                ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK_BYTES);
                for (TensorSpec spec : tensors.values()) writeData(channel, spec, chunk);
            }
            try {
                Files.move(partial, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException notAtomic) {
                Files.move(partial, file, StandardCopyOption.REPLACE_EXISTING);
            }
            written = true;
        } finally {
            if (!written) Files.deleteIfExists(partial);
        }
    }

    private static void writeData(FileChannel channel, TensorSpec spec, ByteBuffer chunk) throws IOException {
        long length = spec.byteLength();
        for (long offset = 0; offset < length; ) {
            // CHUNK_BYTES is a multiple of every element size, so each chunk holds whole elements.
            int n = (int) Math.min(CHUNK_BYTES, length - offset);
            chunk.clear().limit(n);
            chunk.order(ByteOrder.LITTLE_ENDIAN);
            spec.source().fill(offset, chunk);
            chunk.clear().limit(n);
            writeFully(channel, chunk);
            offset += n;
        }
    }

    private static void writeFully(FileChannel channel, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) channel.write(buffer);
    }

    /** The header JSON, padded with spaces to a multiple of 8 bytes. */
    private static byte[] header(Map<String, TensorSpec> tensors, Map<String, String> metadata) throws IOException {
        StringWriter text = new StringWriter();
        try (JsonWriter json = new JsonWriter(text)) {
            json.beginObject();
            if (!metadata.isEmpty()) {
                json.name(SafetensorsHeader.METADATA_KEY).beginObject();
                for (Map.Entry<String, String> e : metadata.entrySet()) {
                    json.name(e.getKey()).value(Objects.requireNonNull(e.getValue(), e.getKey()));
                }
                json.endObject();
            }
            long offset = 0;
            for (Map.Entry<String, TensorSpec> e : tensors.entrySet()) {
                if (e.getKey().equals(SafetensorsHeader.METADATA_KEY)) {
                    throw new IllegalArgumentException("a tensor cannot be named " + SafetensorsHeader.METADATA_KEY);
                }
                TensorSpec spec = e.getValue();
                long end = Math.addExact(offset, spec.byteLength());
                json.name(e.getKey()).beginObject();
                json.name("dtype").value(spec.dtype().name());
                json.name("shape").beginArray();
                for (long d : spec.shape) json.value(d);
                json.endArray();
                json.name("data_offsets").beginArray().value(offset).value(end).endArray();
                json.endObject();
                offset = end;
            }
            json.endObject();
        }
        byte[] utf8 = text.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (utf8.length + 7) & ~7;
        if (padded > SafetensorsHeader.MAX_HEADER_BYTES) {
            throw new IllegalArgumentException("header of " + padded + " bytes exceeds the limit of "
                    + SafetensorsHeader.MAX_HEADER_BYTES);
        }
        byte[] header = Arrays.copyOf(utf8, padded);
        Arrays.fill(header, utf8.length, padded, (byte) ' ');
        return header;
    }
}
