package dev.kiln.launcher;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.Function;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;
import org.osgi.framework.ServiceReference;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Unmatched;

/**
 * A command whose work is done inside the container by a job service ({@code Function<String[], Integer>} with
 * {@code kiln.command=NAME}): the launcher boots the {@code tools} feature without HTTP, passes the arguments through
 * untouched (the job parses them and prints its own help), and exits with the job's result.
 */
@Command(description = "(runs inside the container)")
final class JobCommand implements Callable<Integer> {
    private static final Duration WAIT = Duration.ofSeconds(30);

    private final String name;

    @Unmatched
    List<String> arguments = new ArrayList<>();

    JobCommand(String name) {
        this.name = name;
    }

    /** Adds the job commands to the launcher's command line. */
    static void register(CommandLine commandLine) {
        add(commandLine, "generate", "Greedy generation from prompt token ids, with prefill and decode speed.");
        add(commandLine, "bench", "Benchmark prefill (pp) and decode (tg) like llama-bench, against the bandwidth bound.");
        add(commandLine, "synth", "Write a random-weight checkpoint with a real model's shapes, for benchmarks.");
        add(commandLine, "chat", "Chat with a model in the terminal, streaming its answers.");
        add(commandLine, "tokenize", "Tokenize JSON-lines strings or chat messages from standard input.");
        add(commandLine, "bench-serve", "Load-test an OpenAI-compatible server: throughput, TTFT, TPOT, ITL.");
    }

    private static void add(CommandLine parent, String name, String description) {
        CommandLine sub = new CommandLine(new JobCommand(name));
        sub.getCommandSpec().usageMessage().description(description + " (`kiln " + name + " --help` for options)");
        parent.addSubcommand(name, sub);
    }

    @Override
    public Integer call() throws Exception {
        KilnHome home = KilnHome.locate();
        Path storage = Files.createTempDirectory("kiln-" + name + "-");
        Map<String, String> properties = new HashMap<>();
        properties.put(Constants.FRAMEWORK_STORAGE, storage.toString());
        properties.put(Constants.FRAMEWORK_STORAGE_CLEAN, Constants.FRAMEWORK_STORAGE_CLEAN_ONFIRSTINIT);
        properties.put("kiln.home", home.root().toString());
        properties.put("felix.fileinstall.dir", home.etc().toString());
        properties.put("felix.fileinstall.noInitialDelay", "true");
        properties.put("felix.fileinstall.enableConfigSave", "false");
        properties.put("felix.fileinstall.log.level", "1");
        properties.put("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        Container container = Container.start(home, List.of("tools"), properties);
        try {
            Function<String[], Integer> job = awaitJob(container.context());
            return job.apply(arguments.toArray(String[]::new));
        } finally {
            container.close();
            deleteRecursively(storage);
        }
    }

    @SuppressWarnings({"unchecked", "rawtypes"})
    private Function<String[], Integer> awaitJob(BundleContext context) throws Exception {
        String filter = "(kiln.command=" + name + ")";
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (System.nanoTime() < deadline) {
            Collection<ServiceReference<Function>> refs = context.getServiceReferences(Function.class, filter);
            if (!refs.isEmpty()) {
                Function<String[], Integer> job = context.getService(refs.stream().max(Comparator.naturalOrder()).orElseThrow());
                if (job != null) return job;
            }
            Thread.sleep(20);
        }
        List<String> inactive = new ArrayList<>();
        for (Bundle b : context.getBundles()) if (b.getState() != Bundle.ACTIVE) inactive.add(b.getSymbolicName());
        throw new IllegalStateException("the '" + name + "' job did not start within " + WAIT.toSeconds()
                + " s; bundles not active: " + inactive);
    }

    private static void deleteRecursively(Path root) {
        try (var paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (java.io.IOException ignored) {
            // a temporary folder left behind is harmless
        }
    }
}
