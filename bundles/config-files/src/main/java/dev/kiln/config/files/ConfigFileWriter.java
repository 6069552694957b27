package dev.kiln.config.files;

import java.io.IOException;
import java.lang.reflect.Array;
import java.net.URI;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFileAttributeView;
import java.util.Collection;
import java.util.Dictionary;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;
import org.osgi.service.cm.Configuration;
import org.osgi.service.cm.ConfigurationAdmin;
import org.osgi.service.cm.ConfigurationEvent;
import org.osgi.service.cm.ConfigurationListener;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps each {@code .cfg} file of the configuration folder in step with the configuration File Install created
 * from it: a change made at runtime (the Kiln console's switches, the console's configuration page, any Config
 * Admin client) is written to the file, and deleting the configuration deletes the file.
 *
 * <p>This replaces File Install's own write-back ({@code felix.fileinstall.enableConfigSave}), which the launcher
 * turns off: File Install rewrites the file in place on every update, including the one it made itself from
 * reading the file at start, and its folder watcher, reading at the same moment, could take the truncated file
 * for an emptied configuration and then write that back, so the operator's file ended empty and the engine ran on
 * defaults. Here a file is written only when the values it defines differ from the configuration's, and replaced
 * atomically (a sibling written, then renamed over it), so the watcher sees either the old file or the new one.
 *
 * <p>Values are written as text; a multi-valued (array or collection) property is not written, the file is left
 * as it is and the configuration keeps the value until the next start.
 */
@Component(immediate = true, service = ConfigurationListener.class)
public final class ConfigFileWriter implements ConfigurationListener {
    private static final Logger LOG = LoggerFactory.getLogger(ConfigFileWriter.class);
    /** The property File Install sets on a configuration it created from a file: the file's URI. */
    static final String FILE_PROPERTY = "felix.fileinstall.filename";
    static final String ENCODING_PROPERTY = "felix.fileinstall.configEncoding";
    private static final Set<String> NOT_WRITTEN = Set.of(Constants.SERVICE_PID, ConfigurationAdmin.SERVICE_FACTORYPID,
            FILE_PROPERTY);

    private final ConfigurationAdmin configurationAdmin;
    private final Charset encoding;
    /** The file of each configuration read from one, remembered for its deletion (its properties are gone then). */
    private final Map<String, Path> files = new ConcurrentHashMap<>();

    @Activate
    public ConfigFileWriter(@Reference ConfigurationAdmin configurationAdmin, BundleContext context) {
        this(configurationAdmin, encoding(context.getProperty(ENCODING_PROPERTY)));
        try {
            Configuration[] existing = configurationAdmin.listConfigurations("(" + FILE_PROPERTY + "=*)");
            if (existing != null) {
                for (Configuration c : existing) {
                    Path file = fileOf(c.getProperties());
                    if (file != null) files.put(c.getPid(), file);
                }
            }
        } catch (IOException | org.osgi.framework.InvalidSyntaxException e) {
            LOG.warn("could not list the configurations read from files: {}", e.getMessage());
        }
    }

    /** Writes files in {@code encoding}, the one File Install reads them in. */
    ConfigFileWriter(ConfigurationAdmin configurationAdmin, Charset encoding) {
        this.configurationAdmin = configurationAdmin;
        this.encoding = encoding;
    }

    private static Charset encoding(String configured) {
        return configured == null || configured.isBlank() ? StandardCharsets.ISO_8859_1 : Charset.forName(configured.trim());
    }

    @Override
    public void configurationEvent(ConfigurationEvent event) {
        try {
            switch (event.getType()) {
                case ConfigurationEvent.CM_UPDATED -> updated(event.getPid());
                case ConfigurationEvent.CM_DELETED -> deleted(event.getPid());
                default -> { }
            }
        } catch (IOException | RuntimeException e) {
            LOG.error("could not write configuration {} back to its file: {}", event.getPid(), e.toString());
        }
    }

    private void updated(String pid) throws IOException {
        Configuration[] found;
        try {
            found = configurationAdmin.listConfigurations("(" + Constants.SERVICE_PID + "=" + escapeFilter(pid) + ")");
        } catch (org.osgi.framework.InvalidSyntaxException e) {
            throw new IllegalStateException(e); // the value is escaped: cannot happen
        }
        if (found == null || found.length == 0) return;
        Dictionary<String, Object> properties = found[0].getProperties();
        Path file = fileOf(properties);
        if (file == null) return;
        files.put(pid, file);
        Map<String, String> wanted = textValues(pid, properties);
        if (wanted != null) write(file, wanted);
    }

    private void deleted(String pid) throws IOException {
        Path file = files.remove(pid);
        if (file != null && Files.deleteIfExists(file)) LOG.info("configuration {} deleted: removed {}", pid, file);
    }

    /**
     * Brings the file to the wanted values; does nothing when it already holds them, which is the case for every
     * configuration File Install has just read.
     */
    void write(Path file, Map<String, String> wanted) throws IOException {
        if (!Files.isRegularFile(file)) return; // File Install deletes the configuration of a removed file itself
        Path target = file.toRealPath(); // a linked file is written where it lives, keeping the link
        if (!Files.isWritable(target)) {
            LOG.warn("configuration file {} is not writable: its runtime changes last until the next start", file);
            return;
        }
        String text = new String(Files.readAllBytes(target), encoding);
        String changed = CfgText.withValues(text, wanted);
        if (changed == null) return;
        Path sibling = Files.createTempFile(target.getParent(), "." + target.getFileName(), ".tmp");
        try {
            Files.write(sibling, changed.getBytes(encoding));
            PosixFileAttributeView posix = Files.getFileAttributeView(target, PosixFileAttributeView.class);
            if (posix != null) Files.setPosixFilePermissions(sibling, posix.readAttributes().permissions());
            try {
                Files.move(sibling, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(sibling, target, StandardCopyOption.REPLACE_EXISTING);
            }
        } finally {
            Files.deleteIfExists(sibling);
        }
        LOG.info("configuration written back to {}", file);
    }

    /** The values to write, as text; null when one of them has no single-line text form (a multi-valued property). */
    static Map<String, String> textValues(String pid, Dictionary<String, Object> properties) {
        Map<String, String> values = new HashMap<>();
        for (Enumeration<String> keys = properties.keys(); keys.hasMoreElements(); ) {
            String key = keys.nextElement();
            if (NOT_WRITTEN.contains(key)) continue;
            Object value = properties.get(key);
            if (value.getClass().isArray() || value instanceof Collection<?>) {
                LOG.warn("configuration {} has a multi-valued property '{}' ({} values): not written to its file; "
                        + "the change lasts until the next start", pid, key,
                        value instanceof Collection<?> c ? c.size() : Array.getLength(value));
                return null;
            }
            values.put(key, String.valueOf(value));
        }
        return values;
    }

    private static Path fileOf(Dictionary<String, Object> properties) {
        if (properties == null || !(properties.get(FILE_PROPERTY) instanceof String uri)) return null;
        try {
            Path file = Path.of(URI.create(uri));
            return file.getFileName() != null && file.getFileName().toString().endsWith(".cfg") ? file : null;
        } catch (IllegalArgumentException | java.nio.file.FileSystemNotFoundException e) {
            return null; // not a file URI
        }
    }

    private static String escapeFilter(String value) {
        StringBuilder out = new StringBuilder(value.length());
        for (char c : value.toCharArray()) {
            if (c == '\\' || c == '(' || c == ')' || c == '*') out.append('\\');
            out.append(c);
        }
        return out.toString();
    }
}
