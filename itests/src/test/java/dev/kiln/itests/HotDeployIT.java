package dev.kiln.itests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.kiln.itests.hotswap.FallbackSampler;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.ops4j.pax.tinybundles.TinyBundles;

/**
 * A third-party bundle built only against the API, dropped into a running Kiln's deploy folder, is installed and
 * started with its service; deleting the jar uninstalls it. Observed from outside, through the web console's JSON.
 */
class HotDeployIT {
    private static final String SYMBOLIC_NAME = "com.example.kiln.sampler";

    @Test
    void aJarDroppedIntoDeployIsInstalledAndRemovingItUninstalls(@TempDir Path deploy) throws Exception {
        try (KilnProcess kiln = KilnProcess.serve(List.of("--deploy", deploy.toString()))) {
            awaitState(kiln, "absent");
            Path jar = deploy.resolve("example-sampler.jar");
            try (InputStream bundle = TinyBundles.bundle().symbolicName(SYMBOLIC_NAME).addClass(FallbackSampler.class)
                    .build(TinyBundles.bndBuilder())) {
                Path partial = deploy.resolve("example-sampler.tmp");
                Files.copy(bundle, partial);
                Files.move(partial, jar, StandardCopyOption.ATOMIC_MOVE);
            }
            awaitState(kiln, "Active");
            Files.delete(jar);
            awaitState(kiln, "absent");
        }
    }

    private static void awaitState(KilnProcess kiln, String expected) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        String state = null;
        while (System.nanoTime() < deadline) {
            state = state(kiln);
            if (state.equals(expected)) return;
            Thread.sleep(200);
        }
        throw new AssertionError("bundle state " + state + ", expected " + expected);
    }

    /**
     * The bundle's state as the web console reports it, "absent", or "no console" while the console has not yet
     * registered with the HTTP whiteboard (it comes up on its own after the API answers).
     */
    private static String state(KilnProcess kiln) throws Exception {
        HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                        URI.create(kiln.baseUrl() + "/system/console/bundles.json"))
                .header("Authorization", "Basic " + Base64.getEncoder().encodeToString("admin:itest".getBytes(StandardCharsets.UTF_8)))
                .build(), HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() == 404) return "no console";
        assertEquals(200, r.statusCode(), r.body());
        JsonObject json = JsonParser.parseString(r.body()).getAsJsonObject();
        assertTrue(json.has("data"), r.body());
        for (JsonElement b : json.getAsJsonArray("data")) {
            JsonObject bundle = b.getAsJsonObject();
            if (SYMBOLIC_NAME.equals(bundle.get("symbolicName").getAsString())) return bundle.get("state").getAsString();
        }
        return "absent";
    }
}
