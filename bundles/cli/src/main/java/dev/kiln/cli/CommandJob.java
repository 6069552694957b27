package dev.kiln.cli;

import java.util.function.Function;
import java.util.function.Supplier;
import picocli.CommandLine;

/**
 * Runs a picocli command object, made fresh for every call, with the arguments the launcher passes; returns its
 * exit code. Problems a user can fix (a bad option, a missing folder, an invalid checkpoint) are reported in one
 * line on standard error.
 */
abstract class CommandJob implements Function<String[], Integer> {
    /** The property that names the job for the launcher. */
    static final String COMMAND = "kiln.command";

    protected abstract Object newCommand();

    @Override
    public Integer apply(String[] args) {
        return run(this::newCommand, args);
    }

    static int run(Supplier<Object> command, String[] args) {
        CommandLine cl = new CommandLine(command.get());
        cl.setExecutionExceptionHandler((e, cmd, parsed) -> {
            if (e instanceof IllegalArgumentException || e instanceof IllegalStateException
                    || e instanceof java.io.IOException) {
                cmd.getErr().println("kiln " + cmd.getCommandName() + ": " + e.getMessage());
                return 2;
            }
            throw e;
        });
        return cl.execute(args);
    }
}
