package dev.sluice.cli;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/** The real {@code bin/sluice} launcher, run as a process; its path comes from failsafe. */
final class Script {

  static final Path PATH = Path.of(System.getProperty("sluice.script", "../bin/sluice"))
      .toAbsolutePath().normalize();

  private Script() {}

  /** A finished run of the script. */
  record Result(int exit, String out, String err) {}

  static ProcessBuilder builder(Path script, Map<String, String> env, String... args) {
    assertThat(script).isExecutable();
    List<String> command = new ArrayList<>();
    command.add(script.toString());
    command.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(command);
    pb.environment().remove("SLUICE_TARGET");
    // Coordinators started by tests take any free HTTP port, not 7421: several run at once.
    pb.environment().put("SLUICE_HTTP_PORT", "0");
    pb.environment().putAll(env);
    return pb;
  }

  /** Runs the script to completion (at most a minute) and returns what it printed. */
  static Result run(Map<String, String> env, String... args) {
    return run(PATH, env, args);
  }

  static Result run(Path script, Map<String, String> env, String... args) {
    try {
      Process p = builder(script, env, args).start();
      p.getOutputStream().close();
      CompletableFuture<String> out = drain(p.getInputStream());
      CompletableFuture<String> err = drain(p.getErrorStream());
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new AssertionError("sluice " + String.join(" ", args) + " did not finish in 60s");
      }
      return new Result(p.exitValue(), out.join(), err.join());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AssertionError(e);
    }
  }

  private static CompletableFuture<String> drain(java.io.InputStream in) {
    return CompletableFuture.supplyAsync(() -> {
      try (in) {
        return new String(in.readAllBytes(), UTF_8);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    });
  }

  /**
   * A long-running {@code sluice serve}, stdout and stderr merged into a log file. A file, not a
   * pipe: the JDK closes a process's pipe under a reading thread when the process exits, losing
   * the last lines (the stop line is what the SIGTERM test is after).
   */
  static final class Serve implements AutoCloseable {
    final Process process;
    private final Path log;

    Serve(Map<String, String> env, String... args) throws IOException {
      String[] argv = new String[args.length + 1];
      argv[0] = "serve";
      System.arraycopy(args, 0, argv, 1, args.length);
      log = Files.createTempFile("sluice-serve", ".log");
      process = builder(PATH, env, argv)
          .redirectErrorStream(true)
          .redirectOutput(log.toFile())
          .start();
    }

    String output() {
      try {
        return Files.readString(log, UTF_8);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }

    @Override
    public void close() throws Exception {
      if (process.isAlive()) {
        process.destroyForcibly();
        process.waitFor(30, TimeUnit.SECONDS);
      }
      Files.deleteIfExists(log);
    }
  }

  static Path copyTo(Path dir) throws IOException {
    Path bin = Files.createDirectories(dir.resolve("bin"));
    Path copy = bin.resolve("sluice");
    Files.copy(PATH, copy);
    assertThat(copy.toFile().setExecutable(true)).isTrue();
    return copy;
  }
}
