package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.redis.RedisProcess;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A node's per-resource tables (parked waiters, batchers, wait stats, remembered deliveries,
 * cached limits) hold only live resources: a hundred thousand resources created, used with a
 * waiter each, and deleted leave the node's heap where it was.
 */
class RedisEngineFreesStateTest {

  private static final long SEC = 1_000_000_000L;
  private static final int RESOURCES = 100_000;
  /** Resources per minute of the fake clock: what a node's deliveries memory (2 minutes) holds. */
  private static final int PER_MINUTE = 10_000;
  private static final int WORKERS = 16;
  private static RedisProcess redis;

  @BeforeAll
  static void startRedis() throws Exception {
    redis = RedisProcess.start();
  }

  @AfterAll
  static void stopRedis() {
    redis.close();
  }

  @Test
  void createUseAndDeleteManyResourcesLeavesTheHeapWhereItWas() throws Exception {
    // The fake clock is the engine's time (the scripts', and the deliveries memory's); timers
    // run for real, on an executor that forgets cancelled ones, so they hold no memory.
    FakeClock clock = new FakeClock();
    ScheduledThreadPoolExecutor timers = new ScheduledThreadPoolExecutor(1);
    timers.setRemoveOnCancelPolicy(true);
    RedisEngine engine =
        RedisEngine.builder()
            .uri(redis.uri())
            .nodeId("mem")
            .ticker(clock)
            .scheduler(Scheduler.of(timers))
            .housekeeping(Duration.ZERO)
            .build();
    ExecutorService workers = Executors.newFixedThreadPool(WORKERS);
    try {
      for (int m = 0; m < 3; m++) { // warm-up: the same rate, so tables reach their working size
        run(engine, workers, "warm" + m + "-", PER_MINUTE);
        clock.advance(Duration.ofMinutes(1));
      }
      settle(engine, clock);
      long before = usedHeapAfterGc();

      long started = System.nanoTime();
      for (int m = 0; m < RESOURCES / PER_MINUTE; m++) {
        run(engine, workers, "r" + m + "-", PER_MINUTE);
        clock.advance(Duration.ofMinutes(1));
        engine.housekeep();
      }
      long tookMillis = (System.nanoTime() - started) / 1_000_000;
      settle(engine, clock);
      long after = usedHeapAfterGc();

      System.out.printf(
          "%d resources created, used and deleted in %d ms; heap after GC %d KB"
              + " before, %d KB after%n",
          RESOURCES, tookMillis, before / 1024, after / 1024);
      assertThat(engine.tableSizes())
          .as("per-resource tables")
          .containsExactlyInAnyOrderEntriesOf(
              Map.of("locals", 0, "batchers", 0, "waits", 0, "delivered", 0, "limits", 0));
      assertThat((double) after).as("heap after GC, in bytes").isLessThanOrEqualTo(before * 1.10);
    } finally {
      workers.shutdownNow();
      engine.closeStore();
      timers.shutdownNow();
    }
  }

  /**
   * Per resource: a limit of one at a time; one acquire granted; on every fourth resource a
   * second one waits and the first release grants it; released; the limit deleted. Workers run
   * resources side by side.
   */
  private static void run(RedisEngine engine, ExecutorService workers, String prefix, int n) throws Exception {
    AtomicInteger next = new AtomicInteger();
    List<Future<?>> done = new ArrayList<>();
    for (int t = 0; t < WORKERS; t++) {
      done.add(
          workers.submit(
              () -> {
                for (int i = next.getAndIncrement(); i < n; i = next.getAndIncrement()) {
                  String name = prefix + i;
                  engine.setLimit(new LimitSpec(name, List.of(), 1, 0, Duration.ofSeconds(30)));
                  Ticket first = engine.acquire(name, Map.of(), Lane.DEFAULT, 60 * SEC, null);
                  Grant held = first.future().join();
                  first.claim();
                  if (i % 4 == 0) {
                    Ticket second = engine.acquireAsync(name, Map.of(), Lane.DEFAULT, 60 * SEC, null);
                    engine.releaseAsync(name, held.permitId(), Map.of(), false, false).join();
                    held = second.future().join();
                    second.claim();
                  }
                  engine.releaseAsync(name, held.permitId(), Map.of(), false, false).join();
                  engine.deleteLimit(name);
                }
                return null;
              }));
    }
    for (Future<?> f : done) {
      f.get();
    }
  }

  /** Lets every call finish and the remembered deliveries (2 minutes) expire. */
  private static void settle(RedisEngine engine, FakeClock clock) {
    engine.awaitQuiet();
    clock.advance(Duration.ofMinutes(3));
    engine.awaitQuiet();
    engine.housekeep();
  }

  private static long usedHeapAfterGc() throws InterruptedException {
    var memory = ManagementFactory.getMemoryMXBean();
    long used = Long.MAX_VALUE;
    for (int i = 0; i < 5; i++) {
      System.gc();
      Thread.sleep(50);
      used = Math.min(used, memory.getHeapMemoryUsage().getUsed());
    }
    return used;
  }
}
