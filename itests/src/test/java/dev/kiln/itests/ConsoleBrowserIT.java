package dev.kiln.itests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.openqa.selenium.By;
import org.openqa.selenium.JavascriptExecutor;
import org.openqa.selenium.OutputType;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;

/**
 * The Kiln page of the web console in a real headless Chromium (Debian's {@code chromium} and
 * {@code chromium-driver}; the test is skipped where they are not installed): log in on the admin port, see the
 * model, watch the live plot redraw while requests run, switch the quantizer and the speculative proposer
 * and see the engine reload with them. A screenshot is saved to
 * {@code target/console-screenshot.png}.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ConsoleBrowserIT {
    private static final Path FIXTURES = Path.of(System.getProperty("kiln.fixtures"));
    private static final Duration PATIENCE = Duration.ofSeconds(30);

    private KilnProcess kiln;
    private WebDriver browser;
    private int adminPort;

    /** The first of the candidates that is an executable file. */
    private static Optional<Path> executable(String override, String... candidates) {
        String configured = System.getProperty(override);
        List<String> paths = configured != null ? List.of(configured) : List.of(candidates);
        return paths.stream().map(Path::of).filter(Files::isExecutable).findFirst();
    }

    @BeforeAll
    void start() throws Exception {
        Optional<Path> chromium = executable("kiln.chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser");
        Optional<Path> driver = executable("kiln.chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver");
        assumeTrue(chromium.isPresent() && driver.isPresent(),
                "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");

        adminPort = KilnProcess.freePort();
        kiln = KilnProcess.serve(List.of("--model", FIXTURES.resolve("models/qwen2-tiny").toString(),
                "--tokenizer", FIXTURES.resolve("tokenizers/tiny-bpe").toString(), "--served-model-name", "tiny",
                "--max-model-len", "256", "--admin-port", Integer.toString(adminPort)));
        OpenAiApiIT.awaitModel(kiln);

        Path profile = Files.createTempDirectory("kiln-chromium-profile");
        ChromeOptions options = new ChromeOptions();
        options.setBinary(chromium.get().toFile());
        options.addArguments("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1900", "--user-data-dir=" + profile);
        ChromeDriverService service = new ChromeDriverService.Builder().usingDriverExecutable(driver.get().toFile())
                .usingAnyFreePort().build();
        browser = new ChromeDriver(service, options);
        browser.manage().timeouts().pageLoadTimeout(PATIENCE);
    }

    @AfterAll
    void stop() throws Exception {
        if (browser != null) browser.quit();
        if (kiln != null) kiln.close();
    }

    @Test
    void logInSeeTheModelWatchThePlotAndSwitchTheQuantizer() throws Exception {
        // Without a login the console shows nothing of Kiln.
        browser.get("http://127.0.0.1:" + adminPort + "/system/console/kiln");
        assertTrue(browser.findElements(By.id("kiln-model-id")).isEmpty(), "the page needs a login");

        // Basic authentication, as a user answering the browser's prompt: the browser keeps the login for the
        // page's own requests (the live data) and its form posts.
        browser.get("http://" + KilnProcess.CONSOLE_USER + ":" + KilnProcess.CONSOLE_PASSWORD + "@127.0.0.1:"
                + adminPort + "/system/console/kiln");
        assertEquals("tiny", text("kiln-model-id"));
        assertEquals("qwen2", text("kiln-model-architecture"));
        assertTrue(text("kiln-model-parameters").matches("\\d+(\\.\\d+)? [KMBT]"), "parameters: " + text("kiln-model-parameters"));
        String memoryBefore = text("kiln-model-memory");
        assertTrue(memoryBefore.endsWith("iB"), memoryBefore);
        assertEquals("paged", text("kiln-active-attention"));

        // Requests while we watch: the throughput plot must rise above zero and the canvas redraw.
        AtomicBoolean traffic = new AtomicBoolean(true);
        Thread load = Thread.ofVirtual().start(() -> generate(traffic));
        try {
            String before = canvas("kiln-plot-throughput");
            await("the throughput plot shows tokens", () -> peak("kiln-plot-throughput") > 0);
            await("the throughput canvas is redrawn", () -> !canvas("kiln-plot-throughput").equals(before));
            // A few seconds of history, so that the screenshot shows lines rather than dots.
            await("the TTFT plot has points", () -> Integer.parseInt(attribute("kiln-plot-ttft", "data-points")) >= 5);
            assertTrue(Integer.parseInt(attribute("kiln-plot-kv", "data-points")) > 0);
            Path shot = Path.of("target", "console-screenshot.png");
            Files.createDirectories(shot.getParent());
            Files.write(shot, ((org.openqa.selenium.TakesScreenshot) browser).getScreenshotAs(OutputType.BYTES));
            assertTrue(Files.size(shot) > 10_000, "the screenshot has content");
        } finally {
            traffic.set(false);
            load.join();
        }

        // Switch the quantizer through the form: the engine reloads the model in FP8 and holds less weight memory.
        select("kiln-select-quantization", "fp8");
        browser.findElement(By.id("kiln-apply-quantization")).click();
        await("the page reloads after the switch", () -> !browser.findElements(By.id("kiln-notice")).isEmpty());
        assertTrue(browser.getCurrentUrl().endsWith(":" + adminPort + "/system/console/kiln?switched=quantization"),
                "the form answers with a redirect to the page: " + browser.getCurrentUrl());
        assertEquals("fp8", text("kiln-active-quantization"));
        await("the engine reloads with fp8 weights", () -> !text("kiln-model-memory").equals(memoryBefore)
                && text("kiln-model-id").equals("tiny"));

        // The speculative proposer: the product registers reference, draft-model and mtp.
        List<String> proposers = browser.findElements(By.cssSelector("#kiln-select-speculative option")).stream()
                .map(o -> o.getDomAttribute("value")).filter(v -> !v.isEmpty()).toList();
        assertTrue(proposers.contains("reference"), "the registered proposers are offered: " + proposers);
        select("kiln-select-speculative", "reference");
        browser.findElement(By.id("kiln-apply-speculative")).click();
        await("the proposer switch is shown", () -> text("kiln-active-speculative").equals("reference"));
    }

    private void generate(AtomicBoolean running) {
        HttpClient client = HttpClient.newHttpClient();
        String body = "{\"model\":\"tiny\",\"prompt\":\"The quick brown fox\",\"max_tokens\":48,\"ignore_eos\":true}";
        while (running.get()) {
            try {
                client.send(HttpRequest.newBuilder(URI.create(kiln.baseUrl() + "/v1/completions"))
                        .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                        HttpResponse.BodyHandlers.discarding());
            } catch (Exception e) {
                return;
            }
        }
    }

    private String text(String id) {
        return browser.findElement(By.id(id)).getText().strip();
    }

    private String attribute(String id, String name) {
        String v = browser.findElement(By.id(id)).getDomAttribute(name);
        return v == null ? "0" : v;
    }

    private double peak(String canvasId) {
        return Double.parseDouble(attribute(canvasId, "data-peak"));
    }

    private String canvas(String id) {
        return (String) ((JavascriptExecutor) browser).executeScript(
                "return document.getElementById(arguments[0]).toDataURL('image/png');", id);
    }

    private void select(String id, String value) {
        WebElement option = browser.findElement(By.cssSelector("#" + id + " option[value='" + value + "']"));
        option.click();
        assertTrue(option.isSelected());
    }

    private void await(String what, Supplier<Boolean> condition) throws InterruptedException {
        long deadline = System.nanoTime() + PATIENCE.toNanos();
        while (System.nanoTime() < deadline) {
            try {
                if (condition.get()) return;
            } catch (RuntimeException notYet) {
                // an element between two renderings, a value not written yet
            }
            Thread.sleep(250);
        }
        throw new AssertionError("timed out waiting until " + what + "; page:\n" + browser.getPageSource());
    }
}
