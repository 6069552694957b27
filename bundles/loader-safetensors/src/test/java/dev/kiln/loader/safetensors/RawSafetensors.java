package dev.kiln.loader.safetensors;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A safetensors file read the simplest possible way (whole file into an array, header through Gson's tree
 * parser), as an independent account to compare the loader against. Trusts its input: only for valid files.
 */
record RawSafetensors(byte[] bytes, JsonObject header, int dataStart) {
    /** One tensor as the raw header states it. */
    record Tensor(String dtype, long[] shape, byte[] data) {}

    static RawSafetensors read(Path file) throws IOException {
        byte[] bytes = Files.readAllBytes(file);
        int headerLength = (int) ByteBuffer.wrap(bytes, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        String json = new String(bytes, 8, headerLength, StandardCharsets.UTF_8);
        return new RawSafetensors(bytes, JsonParser.parseString(json).getAsJsonObject(), 8 + headerLength);
    }

    /** Tensors in header order, without the metadata entry. */
    Map<String, Tensor> tensors() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : header.entrySet()) {
            if (e.getKey().equals("__metadata__")) continue;
            JsonObject t = e.getValue().getAsJsonObject();
            long[] shape = new long[t.getAsJsonArray("shape").size()];
            for (int i = 0; i < shape.length; i++) shape[i] = t.getAsJsonArray("shape").get(i).getAsLong();
            int begin = t.getAsJsonArray("data_offsets").get(0).getAsInt();
            int end = t.getAsJsonArray("data_offsets").get(1).getAsInt();
            byte[] data = Arrays.copyOfRange(bytes, dataStart + begin, dataStart + end);
            out.put(e.getKey(), new Tensor(t.get("dtype").getAsString(), shape, data));
        }
        return out;
    }

    /** Builds a file's bytes from a header text (padded with spaces to 8 bytes) and a data section. */
    static byte[] assemble(String headerJson, byte[] data) {
        byte[] header = headerJson.getBytes(StandardCharsets.UTF_8);
        int padded = (header.length + 7) & ~7;
        ByteBuffer out = ByteBuffer.allocate(8 + padded + data.length).order(ByteOrder.LITTLE_ENDIAN);
        out.putLong(padded).put(header);
        for (int i = header.length; i < padded; i++) out.put((byte) ' ');
        out.put(data);
        return out.array();
    }
}
