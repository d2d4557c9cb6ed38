package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;

import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * A coordinator process of {@link FaultInjectionIT} on the embedded store, killed with SIGKILL
 * and started again on the same data directory. Prints {@code READY <port>} once it serves, then
 * {@code G <nanoTime> <grants so far>} every 2 ms.
 *
 * <p>Arguments: dataDir [rate burst]: with a rate, sets the limit {@code api} (stored in the data
 * directory); without, serves what the directory holds.
 */
public final class FaultNode {

  public static void main(String[] args) throws Exception {
    SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(Path.of(args[0]))
        .shutdownGrace(Duration.ZERO).build().start();
    if (args.length > 2) {
      sync(server.engine()).setLimit(new LimitSpec("api",
          List.of(new RateSpec("requests", Long.parseLong(args[1]), Duration.ofSeconds(1), Long.parseLong(args[2]))),
          0, 0, null));
      // A new limit starts with a full bucket; a restart starts it empty (guarantee 8). Start
      // empty here too (a throttle report with no wait empties the buckets), so that the windows
      // measured around the kills are not dominated by the first burst.
      sync(server.engine()).report("api", true, 0, java.util.Map.of());
    }
    System.out.println("READY " + server.port());
    System.out.flush();
    // The coordinator's own record of its grants: every 2 ms the grant counter, stamped with
    // System.nanoTime() (CLOCK_MONOTONIC, shared by every process on the machine), flushed at
    // once so that a SIGKILL loses at most the last 2 ms.
    Thread sampler = new Thread(() -> {
      while (true) {
        System.out.println("G " + System.nanoTime() + " " + sync(server.engine()).stats("api").granted());
        System.out.flush();
        java.util.concurrent.locks.LockSupport.parkNanos(2_000_000L);
      }
    }, "grant-sampler");
    sampler.setDaemon(true);
    sampler.start();
    server.awaitTermination();
  }
}
