package dev.kiln.features;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.features.Features.BundleRef;
import java.util.HashSet;
import java.util.List;
import org.junit.jupiter.api.Test;

class FeaturesTest {
    @Test
    void allIsTheUnionOfTheOthersWithoutDuplicates() {
        List<BundleRef> all = Features.resolve("all");
        assertEquals(all.size(), new HashSet<>(all).size());
        for (String f : List.of("core", "cpu", "cuda", "server", "console", "tools")) {
            assertTrue(all.containsAll(Features.resolve(f)), f + " not in all");
        }
    }

    @Test
    void includedFeaturesComeFirstSoDependenciesStartFirst() {
        List<BundleRef> server = Features.resolve("server");
        List<BundleRef> core = Features.resolve("core");
        assertEquals(core, server.subList(0, core.size()));
        assertTrue(server.indexOf(new BundleRef("org.slf4j", "slf4j-api"))
                < server.indexOf(new BundleRef("org.apache.felix", "org.apache.felix.http.jetty12")));
    }

    @Test
    void unknownOrMalformedFeaturesAreRefusedByName() {
        var e = assertThrows(IllegalArgumentException.class, () -> Features.resolve("nonexistent"));
        assertTrue(e.getMessage().contains("nonexistent"));
        assertThrows(IllegalArgumentException.class, () -> Features.resolve("../core"));
    }
}
