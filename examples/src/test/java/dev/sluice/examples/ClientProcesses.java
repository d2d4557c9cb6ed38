package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import dev.sluice.cli.SluiceCli;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** What the tests of the non-Java clients share: the real CLI in-process, and a client's own test run. */
final class ClientProcesses {

  private ClientProcesses() {}

  record Ran(int exit, String output) {}

  /** Runs the real CLI in-process against the coordinator; returns what it printed on stdout. */
  static String cli(String target, String apiKey, String... command) {
    List<String> args = new ArrayList<>(List.of(command));
    args.addAll(List.of("--target", target));
    if (apiKey != null) {
      args.addAll(List.of("--api-key", apiKey));
    }
    var out = new ByteArrayOutputStream();
    var err = new ByteArrayOutputStream();
    int code = SluiceCli.run(new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8), args.toArray(String[]::new));
    assertThat(code).as("sluice %s: %s", command[0], err.toString(StandardCharsets.UTF_8)).isZero();
    return out.toString(StandardCharsets.UTF_8).trim();
  }

  /**
   * Runs a command in {@code dir} with only the {@code SLUICE_*} variables of {@code env}, its
   * output echoed to the test log with {@code tag}; returns its exit code and output.
   */
  static Ran run(String tag, Path dir, Duration timeout, Map<String, String> env, String... command) throws Exception {
    ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true);
    pb.environment().keySet().removeIf(k -> k.startsWith("SLUICE_")); // only what the test sets
    pb.environment().putAll(env);
    System.out.println("[" + tag + "] $ " + String.join(" ", command));
    Process p = pb.start();
    StringBuffer output = new StringBuffer();
    Thread echo = new Thread(() -> {
      try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
        for (String line; (line = in.readLine()) != null; ) {
          System.out.println("[" + tag + "] " + line);
          output.append(line).append('\n');
        }
      } catch (IOException e) {
        // the process is gone; its exit code tells the rest
      }
    }, tag + "-output");
    echo.setDaemon(true);
    echo.start();
    if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
      fail(String.join(" ", command) + " did not finish within " + timeout);
    }
    echo.join(5_000);
    return new Ran(p.exitValue(), output.toString());
  }
}
