package dev.sluice.cli;

import java.io.PrintStream;
import java.io.PrintWriter;
import java.util.List;
import java.util.concurrent.Callable;
import org.slf4j.bridge.SLF4JBridgeHandler;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.HelpCommand;
import picocli.CommandLine.IExecutionExceptionHandler;
import picocli.CommandLine.IParameterExceptionHandler;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.TypeConversionException;
import picocli.CommandLine.UnmatchedArgumentException;

/**
 * The {@code sluice} command: runs a coordinator ({@code serve}) and administers one
 * ({@code limit}, {@code pool}, {@code pause}, {@code resume}, {@code stats}).
 *
 * <p>Exit codes: 0 done; 1 the server (or the network) said no, one line
 * {@code error: <STATUS>: <message>} on stderr; 2 the command line is wrong, one line saying
 * what is wrong and how to get help.
 */
@Command(name = "sluice", mixinStandardHelpOptions = true,
    versionProvider = SluiceCli.Version.class,
    description = "Admin CLI of the Sluice rate-limit coordinator.",
    footer = {"", "Client commands talk to --target (env SLUICE_TARGET, default localhost:7420).",
        "Exit codes: 0 ok, 1 server error, 2 usage error."},
    subcommands = {
        ServeCommand.class, LimitCommand.class, PoolCommand.class, PauseCommand.class, PauseCommand.Resume.class,
        StatsCommand.class, KeyCommand.class, BufferCommand.class, PriceCommand.class, HelpCommand.class})
public final class SluiceCli implements Callable<Integer> {

  @Spec
  private CommandSpec spec;

  private SluiceCli() {}

  /** Runs the CLI and exits the JVM with its exit code. */
  public static void main(String... args) {
    // grpc-java logs through java.util.logging; one slf4j line per event instead of two.
    SLF4JBridgeHandler.removeHandlersForRootLogger();
    SLF4JBridgeHandler.install();
    System.exit(run(System.out, System.err, args));
  }

  /**
   * Runs one command line, printing to {@code out} and {@code err}.
   *
   * @return the exit code: 0 ok, 1 server error, 2 usage error
   */
  public static int run(PrintStream out, PrintStream err, String... args) {
    PrintWriter o = writer(out);
    PrintWriter e = writer(err);
    try {
      return commandLine(o, e).execute(args);
    } finally {
      o.flush();
      e.flush();
    }
  }

  static CommandLine commandLine(PrintWriter out, PrintWriter err) {
    return new CommandLine(new SluiceCli())
        .setOut(out)
        .setErr(err)
        .setParameterExceptionHandler(USAGE_ERROR)
        .setExecutionExceptionHandler(FAILURE);
  }

  @Override
  public Integer call() {
    throw new ParameterException(spec.commandLine(),
        "missing command: serve, limit, pool, pause, resume, stats, key, buffer or price");
  }

  private static PrintWriter writer(PrintStream stream) {
    return new PrintWriter(stream, true);
  }

  /** Exit 2 with one line: what is wrong, and where the help is. */
  private static final IParameterExceptionHandler USAGE_ERROR = (ex, args) -> {
    CommandLine cmd = ex.getCommandLine();
    StringBuilder line = new StringBuilder("error: ");
    if (ex.getCause() instanceof TypeConversionException conversion && ex.getArgSpec() != null) {
      // picocli's "Invalid value for option '--rate' (DIM=AMOUNT/PERIOD[:BURST]): ..." repeats
      // the form that the converter's own message already shows.
      ArgSpec arg = ex.getArgSpec();
      line.append("invalid value for ")
          .append(arg.isOption() ? ((OptionSpec) arg).longestName() : arg.paramLabel())
          .append(": ")
          .append(CliFailure.oneLine(conversion.getMessage()));
    } else {
      line.append(CliFailure.oneLine(ex.getMessage()));
    }
    if (ex instanceof UnmatchedArgumentException unmatched) {
      List<String> suggestions = unmatched.getSuggestions();
      if (!suggestions.isEmpty()) {
        line.append("; did you mean ").append(String.join(" or ", suggestions)).append('?');
      }
    }
    line.append(" (see '").append(cmd.getCommandSpec().qualifiedName()).append(" --help')");
    cmd.getErr().println(line);
    return cmd.getCommandSpec().exitCodeOnInvalidInput();
  };

  /** Exit 1 with one line, never a stack trace. */
  private static final IExecutionExceptionHandler FAILURE = (ex, cmd, parseResult) -> {
    String message = ex instanceof CliFailure
        ? ex.getMessage()
        : ex.getClass().getSimpleName()
            + (ex.getMessage() == null ? "" : ": " + CliFailure.oneLine(ex.getMessage()));
    cmd.getErr().println("error: " + message);
    return cmd.getCommandSpec().exitCodeOnExecutionException();
  };

  /** The version from the jar manifest, {@code dev} when run from classes. */
  static final class Version implements IVersionProvider {
    @Override
    public String[] getVersion() {
      String v = SluiceCli.class.getPackage().getImplementationVersion();
      return new String[] {"sluice " + (v == null ? "dev" : v)};
    }
  }
}
