package dev.sluice.cli;

import static java.nio.charset.StandardCharsets.UTF_8;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;

/** One in-process run of the CLI with captured output. */
record CliRun(int exit, String out, String err) {

  /** Runs {@code sluice ARGS --target=TARGET}: a command against a coordinator. */
  static CliRun at(String target, String... args) {
    String[] argv = java.util.Arrays.copyOf(args, args.length + 1);
    argv[args.length] = "--target=" + target;
    return of(argv);
  }

  static CliRun of(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int exit;
    try (PrintStream o = new PrintStream(out, true, UTF_8);
        PrintStream e = new PrintStream(err, true, UTF_8)) {
      exit = SluiceCli.run(o, e, args);
    }
    return new CliRun(exit, out.toString(UTF_8), err.toString(UTF_8));
  }
}
