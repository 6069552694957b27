package dev.kiln.launcher;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Sends everything written to standard output and error to a log file as well, so the container's log (slf4j
 * writes to standard error) is on the console and in {@code data/log/kiln.log}.
 */
final class LogFile {
    private LogFile() {}

    static void teeTo(Path file) throws IOException {
        Files.createDirectories(file.getParent());
        OutputStream log = Files.newOutputStream(file, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        System.setOut(new PrintStream(new Tee(System.out, log), true));
        System.setErr(new PrintStream(new Tee(System.err, log), true));
    }

    private static final class Tee extends OutputStream {
        private final OutputStream console;
        private final OutputStream file;

        Tee(OutputStream console, OutputStream file) {
            this.console = console;
            this.file = file;
        }

        @Override
        public synchronized void write(int b) throws IOException {
            console.write(b);
            file.write(b);
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) throws IOException {
            console.write(b, off, len);
            file.write(b, off, len);
        }

        @Override
        public synchronized void flush() throws IOException {
            console.flush();
            file.flush();
        }
    }
}
