package dev.sluice.server;

import static org.assertj.core.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Runs Node.js tooling from a test: {@code npm ci} in a package directory and a script, with
 * their output echoed to the test log. Missing tools fail the test with the command that
 * installs them (`.ci/run` installs them on a fresh machine).
 */
final class NodeTool {

  /** What a process printed and how it ended. */
  record Run(int exit, List<String> stdout, String log) {
    /** The last line of standard output, where the scripts print their JSON summary. */
    String lastLine() {
      return stdout.isEmpty() ? "" : stdout.get(stdout.size() - 1);
    }
  }

  private NodeTool() {}

  /** Fails unless {@code tool --version} runs. */
  static void require(String tool, String installHint) {
    try {
      Process p = new ProcessBuilder(tool, "--version").redirectErrorStream(true).start();
      p.getInputStream().readAllBytes();
      if (p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0) {
        return;
      }
    } catch (IOException e) {
      // not on PATH: fall through
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    fail(tool + " is needed by this test and was not found: " + installHint + " (or run `bash .ci/run`, which"
        + " installs it)");
  }

  /** {@code npm ci} once per directory and JVM (node_modules from the lock file). */
  static synchronized void npmCi(Path dir) throws Exception {
    require("npm", "sudo apt-get install -y nodejs npm");
    Run r = run(dir, Duration.ofMinutes(5), Map.of(), "npm", "ci", "--no-audit", "--no-fund");
    if (r.exit() != 0) {
      fail("npm ci in " + dir + " failed (exit " + r.exit() + "): is the npm registry reachable?\n" + r.log());
    }
  }

  static Run run(Path dir, Duration timeout, Map<String, String> env, String... command) throws Exception {
    ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(false);
    pb.environment().putAll(env);
    Process p = pb.start();
    List<String> out = new ArrayList<>();
    StringBuilder log = new StringBuilder();
    Thread err = new Thread(() -> pump(new BufferedReader(new InputStreamReader(p.getErrorStream(),
        StandardCharsets.UTF_8)), null, log));
    err.start();
    Thread std = new Thread(() -> pump(new BufferedReader(new InputStreamReader(p.getInputStream(),
        StandardCharsets.UTF_8)), out, log));
    std.start();
    if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      p.destroyForcibly();
      fail(String.join(" ", command) + " did not finish within " + timeout + "\n" + log);
    }
    std.join();
    err.join();
    return new Run(p.exitValue(), out, log.toString());
  }

  private static void pump(BufferedReader in, List<String> lines, StringBuilder log) {
    try (in) {
      for (String line; (line = in.readLine()) != null; ) {
        System.out.println("  | " + line);
        synchronized (log) {
          log.append(line).append('\n');
        }
        if (lines != null) {
          synchronized (lines) {
            lines.add(line);
          }
        }
      }
    } catch (IOException e) {
      // the process went away
    }
  }

  /** The module's {@code src/test/<name>} directory (tests run with the module as working dir). */
  static Path testDir(String name) {
    Path dir = Path.of("src", "test", name).toAbsolutePath();
    if (!Files.isDirectory(dir)) {
      fail("no " + dir + ": run the test from the server module (Maven does)");
    }
    return dir;
  }
}
