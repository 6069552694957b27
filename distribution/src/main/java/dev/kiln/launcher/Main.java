package dev.kiln.launcher;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code kiln} command. Each subcommand boots the Felix container with the features it needs; {@code serve}
 * keeps it running, the others run one job inside it and exit.
 */
@Command(name = "kiln", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Serves DeepSeek-family language models from an OSGi container of swappable bundles.",
        subcommands = {ServeCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        System.exit(commandLine().execute(args));
    }

    static CommandLine commandLine() {
        CommandLine commandLine = new CommandLine(new Main());
        JobCommand.register(commandLine);
        return commandLine
                .setCaseInsensitiveEnumValuesAllowed(true)
                .setExecutionExceptionHandler((e, cmd, parsed) -> {
                    // Problems a user can fix are reported in one line; anything else keeps its stack trace.
                    if (e instanceof IllegalStateException || e instanceof IllegalArgumentException) {
                        cmd.getErr().println("kiln: " + e.getMessage());
                        return 2;
                    }
                    throw e;
                });
    }

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** The version written into the launcher jar's manifest by the build. */
    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"Kiln " + (v == null ? "(development build)" : v)
                    + " on Java " + Runtime.version() + " (" + System.getProperty("java.vendor") + ")"};
        }
    }
}
