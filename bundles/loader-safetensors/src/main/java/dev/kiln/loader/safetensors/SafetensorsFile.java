package dev.kiln.loader.safetensors;

import dev.kiln.api.checkpoint.CheckpointTensor;
import dev.kiln.api.checkpoint.InvalidCheckpointException;
import dev.kiln.loader.safetensors.internal.SafetensorsHeader;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One {@code .safetensors} file, memory-mapped read-only and validated, with no configuration attached: what a
 * checkpoint shard is, and what a file of reference tensors is.
 *
 * <p>Each tensor's {@link CheckpointTensor#data() data} is a zero-copy slice of the mapping. Slices carry no
 * alignment guarantee beyond the file's own layout, so read them with unaligned layouts. They stay valid until
 * {@link #close()}, which unmaps the file; reading a slice afterwards throws {@link IllegalStateException}.
 *
 * <p>Safe to share between threads once opened.
 */
public final class SafetensorsFile implements AutoCloseable {
    private static final ValueLayout.OfLong HEADER_LENGTH =
            ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int PREFIX_BYTES = 8;

    private final Path path;
    private final Arena arena;
    private final Map<String, CheckpointTensor> tensors;
    private final Map<String, String> metadata;
    private final long dataBytes;
    private final AtomicBoolean closed = new AtomicBoolean();

    private SafetensorsFile(Path path, Arena arena, Map<String, CheckpointTensor> tensors, Map<String, String> metadata) {
        this.path = path;
        this.arena = arena;
        this.tensors = tensors;
        this.metadata = metadata;
        long bytes = 0;
        for (CheckpointTensor t : tensors.values()) bytes += t.data().byteSize();
        this.dataBytes = bytes;
    }

    /**
     * Maps and validates a file.
     *
     * @throws InvalidCheckpointException naming the file and the field when its header is malformed or disagrees
     *                                    with its length
     * @throws IOException                when it cannot be read
     */
    public static SafetensorsFile open(Path file) throws IOException {
        // A shared arena lets any thread read the tensors and any thread close them.
        Arena arena = Arena.ofShared();
        try {
            return map(file, arena);
        } catch (Throwable failure) {
            arena.close();
            throw failure;
        }
    }

    private static SafetensorsFile map(Path file, Arena arena) throws IOException {
        MemorySegment mapping;
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = channel.size();
            if (size < PREFIX_BYTES) {
                throw new InvalidCheckpointException(file, null,
                        "has " + size + " bytes, fewer than the 8 of a safetensors header length");
            }
            mapping = channel.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
        }
        long size = mapping.byteSize();
        long headerLength = mapping.get(HEADER_LENGTH, 0);
        // Compared unsigned: the format stores a u64, and a value above 2^63 must read as huge, not negative.
        if (Long.compareUnsigned(headerLength, size - PREFIX_BYTES) > 0) {
            throw new InvalidCheckpointException(file, "header length", Long.toUnsignedString(headerLength)
                    + " bytes exceed the " + (size - PREFIX_BYTES) + " that follow it");
        }
        if (headerLength > SafetensorsHeader.MAX_HEADER_BYTES) {
            throw new InvalidCheckpointException(file, "header length", headerLength
                    + " bytes exceed the limit of " + SafetensorsHeader.MAX_HEADER_BYTES);
        }
        String json;
        try {
            json = StandardCharsets.UTF_8.newDecoder()
                    .decode(mapping.asSlice(PREFIX_BYTES, headerLength).asByteBuffer())
                    .toString();
        } catch (CharacterCodingException notUtf8) {
            throw new InvalidCheckpointException(file, null, "header is not valid UTF-8", notUtf8);
        }
        long dataStart = PREFIX_BYTES + headerLength;
        SafetensorsHeader header = SafetensorsHeader.parse(file, json, size - dataStart);
        Map<String, CheckpointTensor> tensors = new LinkedHashMap<>();
        for (SafetensorsHeader.Entry e : header.entries()) {
            MemorySegment data = mapping.asSlice(dataStart + e.begin(), e.byteLength());
            tensors.put(e.name(), new CheckpointTensor(e.name(), e.dtype(), e.shape().clone(), data, file));
        }
        return new SafetensorsFile(file, arena, Collections.unmodifiableMap(tensors), header.metadata());
    }

    /** The file. */
    public Path path() {
        return path;
    }

    /** Every tensor by name, in the order the header lists them. */
    public Map<String, CheckpointTensor> tensors() {
        return tensors;
    }

    /** The tensor of that name, if present. */
    public Optional<CheckpointTensor> find(String name) {
        return Optional.ofNullable(tensors.get(name));
    }

    /**
     * The tensor of that name.
     *
     * @throws InvalidCheckpointException naming the file and the tensor when it is absent
     */
    public CheckpointTensor tensor(String name) {
        CheckpointTensor t = tensors.get(name);
        if (t == null) throw new InvalidCheckpointException(path, name, "tensor is missing");
        return t;
    }

    /** The header's {@code __metadata__} strings, empty when it has none. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** Bytes of tensor data in the file. */
    public long dataBytes() {
        return dataBytes;
    }

    /** Unmaps the file; later calls do nothing. */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) arena.close();
    }

    @Override
    public String toString() {
        return "SafetensorsFile[" + path + ", " + tensors.size() + " tensors]";
    }
}
