package dev.sluice.server.dist;

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
 * One worker process of the distributed test: {@code threads} threads acquire one request at a
 * time through one client that knows every node, until {@code startAt + durationNanos}; the
 * grants from {@code startAt} on are recorded. Each grant is stamped with {@link System#nanoTime()} on receipt (Linux
 * CLOCK_MONOTONIC: one time line for every process on the machine), so the parent test can tell
 * which grants came after the kill. The bound itself is checked on the coordinators' counts.
 *
 * <p>Arguments: targets resource threads startAtNanos durationNanos outFile
 */
public final class DistWorker {

  public static void main(String[] args) throws Exception {
    String targets = args[0];
    String resource = args[1];
    int threads = Integer.parseInt(args[2]);
    long startAt = Long.parseLong(args[3]);
    long end = startAt + Long.parseLong(args[4]);
    Path out = Path.of(args[5]);
    List<Long> stamps = new ArrayList<>();
    try (SluiceClient client = SluiceClient.builder().target(targets).build()) {
      client.reportHeaders(resource, Map.of()); // connects without spending quota
      // The threads start right away and run until the end; only stamps from startAt on are
      // measured. So the run begins in steady state (the whole path warm, the bucket drained by
      // a standing queue), as a busy fleet would be: no cold JIT on two shared cores, and no
      // 24 threads woken at one instant by the opening burst, whose late receipts would be
      // the machine's scheduling jitter, not the coordinator's grants.
      List<Thread> workers = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        Thread w =
            new Thread(
                () -> {
                  List<Long> mine = new ArrayList<>();
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
                                    stamp[0] = System.nanoTime();
                                    return permit;
                                  })
                              .get();
                      if (stamp[0] >= startAt) {
                        mine.add(stamp[0]);
                      }
                      p.close();
                    } catch (ExecutionException e) {
                      if (!(e.getCause() instanceof AcquireTimeoutException)) {
                        System.err.println("acquire failed: " + e.getCause());
                        e.getCause().printStackTrace();
                        System.exit(3);
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
