package dev.sluice.server;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.AcquireTimeoutException;
import dev.sluice.client.Lane;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;

/**
 * One worker process of the precision test and of the bench's {@code precision} run:
 * {@code threads} threads acquire one request at a time until {@code startAt + durationNanos},
 * and each grant is timestamped with {@link System#nanoTime()} the moment the SDK hands it over
 * (on Linux CLOCK_MONOTONIC, shared by every process on the machine; the bench merges them to
 * show what the workers saw, {@link PrecisionIT} asserts on the coordinator's own counts).
 *
 * <p>The measured resource is paused until every thread waits on it: the harshest case for the
 * bound.
 *
 * <p>Before {@code startAt} minus half a second every thread exercises the same path on
 * {@code warmupResource} (a limit below demand, so acquires queue as they will in the run), so
 * the JIT has compiled client and server before the measured run.
 *
 * <p>Arguments: target resource warmupResource threads startAtNanos durationNanos outFile
 */
public final class PrecisionWorker {

  /** The measured resource. */
  public static final String RESOURCE = "precise";
  /** The resource the threads warm up on, with a limit below their demand. */
  public static final String WARMUP = "warmup";

  /**
   * Starts one worker JVM on this JVM's class path against the coordinator on {@code port}:
   * {@code threads} threads warm up on {@link #WARMUP}, then acquire {@link #RESOURCE} until
   * {@code startAt + run}; their receipt stamps go to {@code out}, the output to {@code log}.
   */
  public static Process start(int port, int threads, long startAt, Duration run, Path out, Path log)
      throws IOException {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    return new ProcessBuilder(
            java, "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
            PrecisionWorker.class.getName(), "127.0.0.1:" + port, RESOURCE, WARMUP, String.valueOf(threads),
            String.valueOf(startAt), String.valueOf(run.toNanos()), out.toString())
        .redirectErrorStream(true)
        .redirectOutput(log.toFile())
        .start();
  }

  public static void main(String[] args) throws Exception {
    String target = args[0];
    String resource = args[1];
    String warmup = args[2];
    int threads = Integer.parseInt(args[3]);
    long startAt = Long.parseLong(args[4]);
    long end = startAt + Long.parseLong(args[5]);
    Path out = Path.of(args[6]);
    List<Long> stamps = new ArrayList<>();
    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      // Opens the connection without spending quota: a report that changes nothing.
      client.reportHeaders(resource, Map.of());
      List<Thread> workers = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        Thread w =
            new Thread(
                () -> {
                  List<Long> mine = new ArrayList<>();
                  long warmEnd = startAt - 500_000_000L;
                  while (System.nanoTime() < warmEnd) {
                    try {
                      client.acquire(warmup, Load.requests(1)).close();
                    } catch (InterruptedException e) {
                      return;
                    }
                  }
                  // Straight on to the measured resource: it is paused until every thread is
                  // parked at the coordinator.
                  long left;
                  while ((left = end - System.nanoTime()) > 0) {
                    long[] stamp = new long[1];
                    try {
                      Permit p =
                          client
                              .acquireAsync(
                                  resource,
                                  Load.requests(1),
                                  AcquireOptions.builder()
                                      .timeout(Duration.ofNanos(left))
                                      .lane(Lane.DEFAULT)
                                      .build())
                              .thenApply(
                                  permit -> {
                                    stamp[0] = System.nanoTime(); // on receipt, before any hand-off
                                    return permit;
                                  })
                              .get();
                      mine.add(stamp[0]);
                      p.close();
                    } catch (ExecutionException e) {
                      if (!(e.getCause() instanceof AcquireTimeoutException)) {
                        throw new IllegalStateException(e.getCause());
                      }
                    } catch (InterruptedException e) {
                      return;
                    }
                  }
                  synchronized (stamps) {
                    stamps.addAll(mine);
                  }
                });
        w.start();
        workers.add(w);
      }
      for (Thread w : workers) {
        w.join();
      }
    }
    write(out, stamps);
  }

  private static void write(Path out, List<Long> stamps) throws IOException {
    StringBuilder b = new StringBuilder();
    for (long s : stamps) {
      b.append(s).append('\n');
    }
    Files.writeString(out, b.toString());
  }
}
