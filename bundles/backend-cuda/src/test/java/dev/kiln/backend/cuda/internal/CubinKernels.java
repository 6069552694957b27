package dev.kiln.backend.cuda.internal;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Set;
import java.util.TreeSet;

/** The kernels a CUBIN defines: the global function symbols of its ELF symbol table (64-bit, little-endian). */
final class CubinKernels {
    private static final int SHT_SYMTAB = 2, STT_FUNC = 2, STB_GLOBAL = 1;

    private CubinKernels() {}

    static Set<String> of(byte[] cubin) {
        ByteBuffer elf = ByteBuffer.wrap(cubin).order(ByteOrder.LITTLE_ENDIAN);
        long sectionTable = elf.getLong(0x28);
        int entrySize = Short.toUnsignedInt(elf.getShort(0x3A)), count = Short.toUnsignedInt(elf.getShort(0x3C));
        Set<String> kernels = new TreeSet<>();
        for (int i = 0; i < count; i++) {
            int header = (int) (sectionTable + (long) i * entrySize);
            if (elf.getInt(header + 4) != SHT_SYMTAB) continue;
            int symbols = (int) elf.getLong(header + 0x18), size = (int) elf.getLong(header + 0x20);
            int link = elf.getInt(header + 0x28), symbolSize = (int) elf.getLong(header + 0x38);
            int strings = (int) elf.getLong((int) (sectionTable + (long) link * entrySize) + 0x18);
            for (int s = symbols; s < symbols + size; s += symbolSize) {
                int info = Byte.toUnsignedInt(elf.get(s + 4));
                if ((info & 0xf) == STT_FUNC && (info >> 4) == STB_GLOBAL) kernels.add(string(cubin, strings + elf.getInt(s)));
            }
        }
        return kernels;
    }

    private static String string(byte[] bytes, int start) {
        int end = start;
        while (bytes[end] != 0) end++;
        return new String(bytes, start, end - start, StandardCharsets.ISO_8859_1);
    }
}
