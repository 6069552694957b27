package dev.kiln.itests;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Dictionary;
import java.util.Hashtable;
import javax.inject.Inject;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.BundleContext;
import org.osgi.service.cm.ConfigurationAdmin;

/**
 * A configuration file of the watched folder, File Install and the kiln-config-files bundle together: the file is
 * read into Config Admin and left byte for byte as the operator wrote it; a change made through Config Admin (as the
 * console makes it) is written back keeping the file's comments; deleting the configuration deletes the file.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class ConfigFileIT {
    private static final String PID = "dev.kiln.itest.sample";
    private static final String WRITTEN = "# The operator's comment stays.\nsize = 3\nname: first\n";

    @Inject
    private BundleContext context;

    @Inject
    private ConfigurationAdmin configurationAdmin;

    @Configuration
    public Option[] configuration() {
        return new Option[] {KilnContainer.feature("core")};
    }

    @Test
    public void aFileIsReadLeftAsWrittenAndRuntimeChangesAreWrittenBack() throws Exception {
        Path file = Path.of(context.getProperty("felix.fileinstall.dir")).resolve(PID + ".cfg");
        Files.writeString(file, WRITTEN, StandardCharsets.ISO_8859_1);
        await(() -> "3".equals(property("size")), "the file's configuration in Config Admin");
        Thread.sleep(2500); // two polls of the folder: a write-back of an unchanged configuration would show by now
        assertEquals("the file as the operator wrote it", WRITTEN, Files.readString(file, StandardCharsets.ISO_8859_1));

        org.osgi.service.cm.Configuration config = configurationAdmin.getConfiguration(PID, "?");
        Dictionary<String, Object> changed = new Hashtable<>();
        for (var keys = config.getProperties().keys(); keys.hasMoreElements(); ) {
            String key = keys.nextElement();
            changed.put(key, config.getProperties().get(key));
        }
        changed.put("size", 5);
        changed.put("added", "yes");
        changed.remove("name");
        config.update(changed);
        String expected = "# The operator's comment stays.\nsize = 5\nadded=yes\n";
        await(() -> expected.equals(read(file)), "the change written back to " + file);
        Thread.sleep(2500); // File Install reads the written file back: the same values, so nothing changes again
        assertEquals(expected, read(file));
        assertEquals("5", String.valueOf(property("size")));

        config.delete();
        await(() -> !Files.exists(file), "the file deleted with its configuration");
        assertFalse(Files.exists(file));
    }

    private Object property(String key) throws Exception {
        org.osgi.service.cm.Configuration[] found = configurationAdmin.listConfigurations("(service.pid=" + PID + ")");
        return found == null || found[0].getProperties() == null ? null : found[0].getProperties().get(key);
    }

    private static String read(Path file) {
        try {
            return Files.readString(file, StandardCharsets.ISO_8859_1);
        } catch (java.io.IOException e) {
            return null;
        }
    }

    private static void await(Check condition, String what) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (System.nanoTime() < deadline) {
            if (condition.holds()) return;
            Thread.sleep(50);
        }
        assertTrue("within 30 s: " + what, condition.holds());
    }

    @FunctionalInterface
    private interface Check {
        boolean holds() throws Exception;
    }
}
