package dev.sluice.bench;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A Sluice coordinator in its own process, started the way users start it ({@code bin/sluice
 * serve --port 0 ...}). Its ports come from the one ready line every coordinator logs; its
 * output is drained for as long as it runs (a full pipe would stall it) and the last lines are
 * kept for the error message of a failed start.
 *
 * <p>The child never outlives the load generator: {@link #close()} stops it (SIGTERM, the
 * graceful stop users get from Ctrl-C, then SIGKILL after the grace), a failed or timed-out start
 * stops it before the error is thrown, and a shutdown hook stops it if this JVM exits first
 * (System.exit, Ctrl-C). Only SIGKILL of this JVM itself can leave it behind.
 */
final class CoordinatorProcess implements AutoCloseable {

  /**
   * The coordinator's ready line, e.g. {@code Sluice coordinator ready on port 7420 (...), HTTP
   * (metrics, dashboard, JSON API) on http://127.0.0.1:7421/ (...), data dir ...} or {@code ...,
   * no HTTP port, ...}.
   */
  static final Pattern READY = Pattern.compile(
      "Sluice coordinator ready on port (\\d+) .*?(?:HTTP \\(metrics, dashboard, JSON API\\) on http://[^/]*:(\\d+)/"
          + "|no HTTP port)");
  private static final int KEPT_LINES = 40;
  static final Duration STOP_GRACE = Duration.ofSeconds(10);

  private final Process process;
  private final String what;
  private final Deque<String> lastLines = new ArrayDeque<>();
  private final CompletableFuture<int[]> ready = new CompletableFuture<>();
  private final Thread hook;
  private volatile int port = -1;
  private volatile int httpPort = -1;
  private boolean closed;

  private CoordinatorProcess(Process process, String what) {
    this.process = process;
    this.what = what;
    this.hook = new Thread(() -> stop(process, Duration.ofSeconds(3)), "sluice-bench-stop-coordinator-" + process.pid());
    Runtime.getRuntime().addShutdownHook(hook);
    Thread reader = new Thread(this::drain, "sluice-bench-coordinator-output-" + process.pid());
    reader.setDaemon(true);
    reader.start();
  }

  /**
   * Starts {@code command} and waits until it logs the ready line.
   *
   * @throws IllegalStateException if it exits first or is not ready within {@code readyWithin};
   *     the message has its exit code and last output lines, and the process is stopped
   * @throws IOException if the command cannot be started at all
   */
  static CoordinatorProcess start(List<String> command, Duration readyWithin) throws IOException,
      InterruptedException {
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    CoordinatorProcess c = new CoordinatorProcess(p, String.join(" ", command));
    try {
      c.awaitReady(readyWithin);
      return c;
    } catch (InterruptedException | RuntimeException | Error e) {
      c.close();
      throw e;
    }
  }

  private void awaitReady(Duration within) throws InterruptedException {
    try {
      CompletableFuture.anyOf(ready, process.onExit()).get(within.toNanos(), TimeUnit.NANOSECONDS);
    } catch (TimeoutException e) {
      throw new IllegalStateException("the coordinator process (" + what + ") did not log its ready line within "
          + within.toMillis() + " ms, so it was stopped; its last output:\n" + lastOutput());
    } catch (ExecutionException e) {
      throw new IllegalStateException("reading the coordinator's output failed: " + e.getCause(), e.getCause());
    }
    if (!ready.isDone()) {
      // The exit won the race: give the reader a moment for the last lines, then say why.
      try {
        ready.get(200, TimeUnit.MILLISECONDS);
      } catch (TimeoutException | ExecutionException ignored) {
        // as expected
      }
      throw new IllegalStateException("the coordinator process (" + what + ") exited with code "
          + process.exitValue() + " before it was ready; its last output:\n" + lastOutput()
          + "\n(for bin/sluice, build the CLI first: ./mvnw -q -DskipTests package)");
    }
  }

  private void drain() {
    try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(),
        StandardCharsets.UTF_8))) {
      String line;
      while ((line = r.readLine()) != null) {
        synchronized (lastLines) {
          lastLines.addLast(line);
          if (lastLines.size() > KEPT_LINES) {
            lastLines.removeFirst();
          }
        }
        if (!ready.isDone()) {
          Matcher m = READY.matcher(line);
          if (m.find()) {
            port = Integer.parseInt(m.group(1));
            httpPort = m.group(2) == null ? -1 : Integer.parseInt(m.group(2));
            ready.complete(new int[] {port, httpPort});
          }
        }
      }
    } catch (IOException e) {
      // The stream closes when the process goes: nothing more to read.
    }
  }

  String lastOutput() {
    synchronized (lastLines) {
      return lastLines.isEmpty() ? "  (nothing)" : "  " + String.join("\n  ", lastLines);
    }
  }

  /** The gRPC port from the ready line. */
  int port() {
    return port;
  }

  /** The HTTP port from the ready line, -1 when started without one. */
  int httpPort() {
    return httpPort;
  }

  long pid() {
    return process.pid();
  }

  boolean isAlive() {
    return process.isAlive();
  }

  /** Stops the coordinator (graceful, then forced after {@link #STOP_GRACE}); idempotent. */
  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    stop(process, STOP_GRACE);
    try {
      Runtime.getRuntime().removeShutdownHook(hook);
    } catch (IllegalStateException shuttingDown) {
      // the hook is running or about to: it stops the same process, harmlessly
    }
  }

  /** SIGTERM to the process and its descendants, SIGKILL to whatever is left after {@code grace}. */
  static void stop(Process p, Duration grace) {
    List<ProcessHandle> descendants = p.toHandle().descendants().toList();
    p.destroy();
    descendants.forEach(ProcessHandle::destroy);
    try {
      if (!p.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        p.waitFor(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
    }
    descendants.stream().filter(ProcessHandle::isAlive).forEach(ProcessHandle::destroyForcibly);
  }
}
