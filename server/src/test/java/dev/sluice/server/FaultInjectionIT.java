package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.LimitSpec;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Fault injection with real processes and real time: a worker JVM holding every concurrency
 * permit of a resource is killed with SIGKILL while others wait for them. Its leases, which its
 * SDK kept renewing, must come back within one lease TTL, and never more than the cap may be in
 * flight. Adds its row to the reliability report ({@link ReliabilityReport}).
 */
class FaultInjectionIT {

  private static final int CAP = 4;
  private static final Duration LEASE = Duration.ofSeconds(2);
  private static final int ROUNDS = 3;
  /** Slack on one lease TTL for the expiry timer and the grant's delivery on a loaded 2-core machine. */
  private static final Duration SLACK = Duration.ofSeconds(1);

  @Test
  void aWorkerKilledWhileHoldingPermitsLosesThemWithinOneLeaseTtl(@TempDir Path dir) throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    String cp = System.getProperty("java.class.path");
    try (SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir)
            .shutdownGrace(Duration.ZERO).build().start();
        SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + s.port()).build()) {
      s.engine().setLimit(new LimitSpec("conc", List.of(), CAP, 0, LEASE));
      List<Long> recoveries = new ArrayList<>();
      long peak = 0;
      for (int round = 0; round < ROUNDS; round++) {
        Process worker = new ProcessBuilder(java, "-Xmx64m", "-XX:TieredStopAtLevel=1", "-cp", cp,
            FaultWorker.class.getName(), "127.0.0.1:" + s.port(), "conc", String.valueOf(CAP))
            .redirectErrorStream(true).start();
        try {
          BufferedReader out = new BufferedReader(new InputStreamReader(worker.getInputStream(), StandardCharsets.UTF_8));
          CompletableFuture<String> held = CompletableFuture.supplyAsync(() -> {
            try {
              for (String line; (line = out.readLine()) != null; ) {
                if (line.startsWith("HELD")) {
                  return line;
                }
              }
              return "exited";
            } catch (java.io.IOException e) {
              return e.toString();
            }
          });
          assertThat(held.get(60, TimeUnit.SECONDS)).isEqualTo("HELD " + CAP);
          // Drain the worker's output so it never blocks on a full pipe.
          CompletableFuture.runAsync(() -> {
            try {
              while (out.readLine() != null) { }
            } catch (java.io.IOException e) {
              // killed
            }
          });
          List<CompletableFuture<Permit>> waiters = new ArrayList<>();
          for (int i = 0; i < CAP; i++) {
            waiters.add(client.acquireAsync("conc", Load.requests(1),
                AcquireOptions.builder().timeout(Duration.ofSeconds(60)).build()));
          }
          // The worker's SDK renews its leases: held past one TTL, the others keep waiting.
          await().during(LEASE.plusMillis(500)).atMost(LEASE.plusSeconds(5)).until(() ->
              s.engine().stats("conc").inFlight() == CAP && waiting(s) == CAP);

          worker.destroyForcibly();
          long killed = System.nanoTime();
          assertThat(worker.waitFor(10, TimeUnit.SECONDS)).isTrue();
          AtomicLong roundPeak = new AtomicLong();
          await().pollInterval(Duration.ofMillis(10)).atMost(LEASE.plusSeconds(10)).until(() -> {
            roundPeak.accumulateAndGet(s.engine().stats("conc").inFlight(), Math::max);
            return waiters.stream().allMatch(CompletableFuture::isDone);
          });
          long recovered = System.nanoTime();
          peak = Math.max(peak, roundPeak.get());
          recoveries.add(Duration.ofNanos(recovered - killed).toMillis());
          for (var w : waiters) {
            w.join().close();
          }
          await().atMost(Duration.ofSeconds(5)).until(() -> s.engine().stats("conc").inFlight() == 0);
        } finally {
          worker.destroyForcibly();
        }
      }
      long worst = recoveries.stream().mapToLong(Long::longValue).max().orElseThrow();
      System.out.printf("worker kill -9 holding %d of %d permits, lease %d ms, %d rounds: all %d granted to the"
          + " waiters %s ms after the kill; peak in flight %d%n", CAP, CAP, LEASE.toMillis(), ROUNDS, CAP,
          recoveries, peak);
      assertThat(peak).as("in flight at the coordinator").isLessThanOrEqualTo(CAP);
      assertThat(Duration.ofMillis(worst)).as("permits back after the kill").isLessThanOrEqualTo(LEASE.plus(SLACK));
      ReliabilityReport.record("3-worker-kill", "kill -9 of a worker JVM holding all 4 concurrency permits"
              + " (lease 2 s, renewed by its SDK) while 4 acquires wait",
          ROUNDS + " kills",
          "leases held past one TTL while the worker lives; after the kill all 4 waiters granted within one lease"
              + " TTL (+ " + SLACK.toMillis() + " ms for the timer on a loaded machine); in flight ≤ cap; in flight 0"
              + " after they release",
          String.format("0 over the cap (peak in flight %d of %d); capacity restored %s ms after each kill",
              peak, CAP, recoveries));
    }
  }

  private static int waiting(SluiceServer s) {
    return s.engine().stats("conc").waiting().values().stream().mapToInt(Integer::intValue).sum();
  }
}
