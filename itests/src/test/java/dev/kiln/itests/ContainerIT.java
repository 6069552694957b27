package dev.kiln.itests;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import javax.inject.Inject;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;

/**
 * Boots the whole product (feature {@code all}) from the distribution's bundles and checks it from the outside:
 * every bundle active, the health endpoint over real HTTP, the web console closed to anonymous and default users.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class ContainerIT {
    @Inject
    private BundleContext context;

    @Configuration
    public Option[] configuration() {
        return new Option[] {KilnContainer.feature("all")};
    }

    @Test
    public void everyBundleOfTheAllFeatureIsActive() {
        List<String> notActive = new ArrayList<>();
        for (Bundle b : context.getBundles()) {
            boolean fragment = b.getHeaders().get(Constants.FRAGMENT_HOST) != null;
            if (!fragment && b.getState() != Bundle.ACTIVE) notActive.add(b.getSymbolicName() + " state " + b.getState());
        }
        assertTrue("bundles not active: " + notActive, notActive.isEmpty());
        int kilnBundles = 0;
        for (Bundle b : context.getBundles()) if (b.getSymbolicName().startsWith("dev.kiln.")) kilnBundles++;
        assertEquals("Kiln bundles installed", (int) Integer.getInteger(KilnContainer.KILN_BUNDLES_PROPERTY), kilnBundles);
    }

    @Test
    public void kilnServicesAreRegisteredUnderTheirNames() throws Exception {
        assertService(dev.kiln.api.checkpoint.CheckpointLoader.class, "(kiln.name=safetensors)");
        assertService(dev.kiln.api.backend.ComputeBackend.class, "(&(kiln.name=cpu)(kiln.backend=cpu))");
        assertService(dev.kiln.api.attention.AttentionKernel.class, "(&(kiln.name=paged)(kiln.backend=cpu))");
        assertService(dev.kiln.api.model.ModelArchitecture.class, "(kiln.name=qwen2)");
        assertService(dev.kiln.api.model.ModelArchitecture.class, "(kiln.name=llama)");
        for (String job : new String[] {"generate", "bench", "synth"}) {
            assertService(java.util.function.Function.class, "(kiln.command=" + job + ")");
        }
    }

    private <S> void assertService(Class<S> type, String filter) throws Exception {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (context.getServiceReferences(type, filter).isEmpty() && System.nanoTime() < deadline) Thread.sleep(50);
        org.osgi.framework.ServiceReference<?>[] refs = context.getServiceReferences(type.getName(), filter);
        assertTrue(type.getSimpleName() + " " + filter + " is registered", refs != null && refs.length > 0);
        assertTrue(type.getSimpleName() + " " + filter + " can be obtained", context.getService(refs[0]) != null);
    }

    @Test
    public void healthAnswersOverHttp() throws Exception {
        HttpResponse<String> r = get("/health", null);
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
        JsonObject body = JsonParser.parseString(r.body()).getAsJsonObject();
        assertEquals("ok", body.get("status").getAsString());
        assertTrue(body.has("model"));
    }

    @Test
    public void consoleRefusesAnonymousAndDefaultCredentials() throws Exception {
        assertEquals(401, get("/system/console/bundles", null).statusCode());
        assertEquals(401, get("/system/console/bundles", basic("admin", "admin")).statusCode());
        assertEquals(401, get("/system/console/bundles", basic(KilnContainer.CONSOLE_USER, "wrong")).statusCode());
    }

    @Test
    public void consoleAdmitsTheConfiguredOperator() throws Exception {
        HttpResponse<String> r = get("/system/console/bundles", basic(KilnContainer.CONSOLE_USER, KilnContainer.CONSOLE_PASSWORD));
        assertEquals(200, r.statusCode());
        assertTrue("console page lists the Kiln API bundle", r.body().contains("dev.kiln.api") || r.body().contains("Kiln API"));
        assertNotEquals(0, r.body().length());
    }

    private static String basic(String user, String password) {
        return "Basic " + Base64.getEncoder().encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
    }

    static HttpResponse<String> get(String path, String authorization) throws Exception {
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        URI uri = URI.create("http://127.0.0.1:" + KilnContainer.port() + path);
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (true) {
            HttpRequest.Builder b = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10));
            if (authorization != null) b.header("Authorization", authorization);
            HttpResponse<String> r;
            try {
                r = client.send(b.build(), HttpResponse.BodyHandlers.ofString());
            } catch (java.io.IOException notListeningYet) {
                if (System.nanoTime() > deadline) throw notListeningYet;
                Thread.sleep(100);
                continue;
            }
            // Jetty and the whiteboard come up asynchronously after the bundles start: wait for them, briefly.
            if (r.statusCode() != 404 || System.nanoTime() > deadline) return r;
            Thread.sleep(100);
        }
    }
}
