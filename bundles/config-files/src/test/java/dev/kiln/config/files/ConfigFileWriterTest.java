package dev.kiln.config.files;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConfigFileWriterTest {
    @TempDir
    Path etc;

    @Test
    void aChangeReplacesTheFileWholeAndKeepsItsPermissions() throws Exception {
        Path file = etc.resolve("dev.kiln.engine.cfg");
        Files.writeString(file, "# chosen by the operator\nmax-num-seqs = 8\n", StandardCharsets.ISO_8859_1);
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-r-----"));
        Object before = Files.getAttribute(file, "unix:ino");
        writer().write(file, Map.of("max-num-seqs", "2", "backend", "cpu"));
        assertEquals("# chosen by the operator\nmax-num-seqs = 2\nbackend=cpu\n", Files.readString(file, StandardCharsets.ISO_8859_1));
        assertEquals("rw-r-----", PosixFilePermissions.toString(Files.getPosixFilePermissions(file)));
        // Renamed over the old file, not rewritten in place: a reader never sees it truncated.
        assertTrue(!before.equals(Files.getAttribute(file, "unix:ino")), "the file was replaced, not truncated and rewritten");
        assertEquals(List.of(file), listing(), "no temporary file is left");
    }

    @Test
    void aFileThatHoldsTheValuesIsLeftUntouched() throws Exception {
        Path file = etc.resolve("dev.kiln.engine.cfg");
        Files.writeString(file, "max-num-seqs=8\n");
        Object before = Files.getAttribute(file, "unix:ino");
        long modified = Files.getLastModifiedTime(file).toMillis();
        writer().write(file, Map.of("max-num-seqs", "8"));
        assertEquals(before, Files.getAttribute(file, "unix:ino"));
        assertEquals(modified, Files.getLastModifiedTime(file).toMillis());
    }

    @Test
    void aLinkedFileIsWrittenWhereItLivesAndTheLinkStays() throws Exception {
        Path elsewhere = Files.createDirectory(etc.resolve("mounted")).resolve("engine.cfg");
        Files.writeString(elsewhere, "backend=cpu\n");
        Path link = Files.createSymbolicLink(etc.resolve("dev.kiln.engine.cfg"), elsewhere);
        writer().write(link, Map.of("backend", "cuda"));
        assertTrue(Files.isSymbolicLink(link));
        assertEquals("backend=cuda\n", Files.readString(elsewhere));
    }

    @Test
    void aReadOnlyFileIsNotWritten() throws Exception {
        Path file = etc.resolve("dev.kiln.engine.cfg");
        Files.writeString(file, "backend=cpu\n");
        Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("r--r--r--"));
        if (Files.isWritable(file)) return; // running as root: every file is writable, nothing to check here
        writer().write(file, Map.of("backend", "cuda"));
        assertEquals("backend=cpu\n", Files.readString(file));
    }

    @Test
    void valuesAreWrittenAsTextAndMultiValuedConfigurationsNotAtAll() {
        Hashtable<String, Object> properties = new Hashtable<>();
        properties.put("service.pid", "dev.kiln.engine");
        properties.put(ConfigFileWriter.FILE_PROPERTY, "file:/etc/kiln/dev.kiln.engine.cfg");
        properties.put("max-num-seqs", 4);
        properties.put("kv-cache-memory", 1L << 30);
        properties.put("backend", "cuda");
        assertEquals(Map.of("max-num-seqs", "4", "kv-cache-memory", "1073741824", "backend", "cuda"),
                ConfigFileWriter.textValues("dev.kiln.engine", properties));
        properties.put("origins", new String[] {"a", "b"});
        assertNull(ConfigFileWriter.textValues("dev.kiln.engine", properties));
    }

    private List<Path> listing() throws Exception {
        try (var files = Files.list(etc)) {
            return files.toList();
        }
    }

    private static ConfigFileWriter writer() {
        return new ConfigFileWriter(null, StandardCharsets.ISO_8859_1);
    }
}
