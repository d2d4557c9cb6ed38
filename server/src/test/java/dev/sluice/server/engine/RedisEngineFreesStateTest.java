package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

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
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A node's per-resource tables (parked waiters, batchers, wait stats, remembered deliveries,
 * cached limits) hold only live resources: fifty thousand resources created, used with a
 * waiter each, and deleted leave the node's heap where it was.
 */
class RedisEngineFreesStateTest {

  private static final long SEC = 1_000_000_000L;
  private static final int RESOURCES = 50_000;
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

  private FakeClock clock;
  private ScheduledThreadPoolExecutor timers;
  private RedisEngine engine;

  /**
   * The fake clock is the engine's time (the scripts', and the deliveries memory's); timers run
   * for real, on an executor that forgets cancelled ones, so they hold no memory.
   */
  @BeforeEach
  void setUp() throws Exception {
    redis.flushAll();
    clock = new FakeClock();
    timers = new ScheduledThreadPoolExecutor(1);
    timers.setRemoveOnCancelPolicy(true);
    engine =
        RedisEngine.builder()
            .uri(redis.uri())
            .nodeId("mem")
            .ticker(clock)
            .scheduler(Scheduler.of(timers))
            .housekeeping(Duration.ZERO)
            .build();
  }

  @AfterEach
  void tearDown() {
    engine.closeStore();
    timers.shutdownNow();
  }

  @Test
  void aResourceLeftIdleHoldsNoWaiterTableNorBatcherAndItsStatsGoAfterTwoMinutes() throws Exception {
    sync(engine).setLimit(new LimitSpec("idle", List.of(), 1, 0, Duration.ofSeconds(30)));
    Ticket first = sync(engine).acquire("idle", Map.of(), Lane.DEFAULT, 60 * SEC, null);
    Grant held = first.future().join();
    Ticket second = engine.acquire("idle", Map.of(), Lane.DEFAULT, 60 * SEC, null);
    await().atMost(Duration.ofSeconds(10))
        .until(() -> sync(engine).stats("idle").waiting().get(Lane.DEFAULT) == 1);
    assertThat(engine.tableSizes()).containsEntry("locals", 1);
    clock.advance(Duration.ofMillis(5));
    sync(engine).release("idle", held.permitId(), Map.of(), false, false);
    Grant waited = second.future().get(10, TimeUnit.SECONDS);
    assertThat(waited.waitedNanos()).isEqualTo(Duration.ofMillis(5).toNanos());
    sync(engine).release("idle", waited.permitId(), Map.of(), false, false);
    engine.awaitQuiet();

    assertThat(engine.tableSizes())
        .as("nothing parked, nothing on its way")
        .containsEntry("locals", 0)
        .containsEntry("batchers", 0)
        .containsEntry("waits", 1)
        .containsEntry("delivered", 2);
    assertThat(sync(engine).stats("idle").waitP99Seconds()).isPositive();

    clock.advance(Duration.ofMinutes(2).plusSeconds(1));
    engine.housekeep();
    assertThat(engine.tableSizes())
        .as("two minutes later: the stats could only read 0, the deliveries are old")
        .containsEntry("waits", 0)
        .containsEntry("delivered", 0)
        .containsEntry("limits", 1)
        .containsEntry("lastKnown", 1);
    assertThat(sync(engine).stats("idle").waitP99Seconds()).isZero();
    assertThat(sync(engine).acquire("idle", Map.of(), Lane.DEFAULT, 60 * SEC, null).future().join())
        .as("the next acquire makes its tables again")
        .isNotNull();
  }

  /**
   * Tables dropped and made again all the time while threads race on a few resources: no
   * waiter and no release may be lost (each would leave its future pending).
   */
  @Test
  void racingAcquiresAndReleasesLoseNothingWhileTablesComeAndGo() throws Exception {
    for (int r = 0; r < 3; r++) {
      sync(engine).setLimit(new LimitSpec("hot" + r, List.of(), 1, 0, Duration.ofSeconds(30)));
    }
    ExecutorService workers = Executors.newFixedThreadPool(8);
    try {
      List<Future<?>> done = new ArrayList<>();
      for (int t = 0; t < 8; t++) {
        int me = t;
        done.add(workers.submit(() -> {
          for (int i = 0; i < 500; i++) {
            String name = "hot" + ((me + i) % 3);
            Ticket ticket = engine.acquire(name, Map.of(), Lane.DEFAULT, 60 * SEC, null);
            Grant g = ticket.future().get(10, TimeUnit.SECONDS);
            ticket.claim();
            assertThat(engine.release(name, g.permitId(), Map.of(), false, false).get(10, TimeUnit.SECONDS))
                .as("released").isTrue();
          }
          return null;
        }));
      }
      for (Future<?> f : done) {
        f.get(60, TimeUnit.SECONDS);
      }
    } finally {
      workers.shutdownNow();
    }
    engine.awaitQuiet();
    assertThat(engine.tableSizes()).containsEntry("locals", 0).containsEntry("batchers", 0);
    for (int r = 0; r < 3; r++) {
      assertThat(sync(engine).stats("hot" + r).inFlight()).as("permits in flight on hot" + r).isZero();
    }
  }

  @Test
  void createUseAndDeleteManyResourcesLeavesTheHeapWhereItWas() throws Exception {
    ExecutorService workers = Executors.newFixedThreadPool(WORKERS);
    try {
      for (int m = 0; m < 3; m++) { // warm-up: the same rate, so tables reach their working size
        run(workers, "warm" + m + "-", PER_MINUTE);
        clock.advance(Duration.ofMinutes(1));
      }
      settle();
      long before = usedHeapAfterGc();

      long started = System.nanoTime();
      for (int m = 0; m < RESOURCES / PER_MINUTE; m++) {
        run(workers, "r" + m + "-", PER_MINUTE);
        clock.advance(Duration.ofMinutes(1));
        engine.housekeep();
      }
      long tookMillis = (System.nanoTime() - started) / 1_000_000;
      settle();
      long after = usedHeapAfterGc();

      System.out.printf(
          "%d resources created, used and deleted in %d ms; heap after GC %d KB"
              + " before, %d KB after%n",
          RESOURCES, tookMillis, before / 1024, after / 1024);
      assertThat(engine.tableSizes())
          .as("per-resource tables")
          .containsExactlyInAnyOrderEntriesOf(
              Map.of("locals", 0, "batchers", 0, "waits", 0, "delivered", 0, "limits", 0, "lastKnown", 0));
      assertThat((double) after).as("heap after GC, in bytes").isLessThanOrEqualTo(before * 1.10);
    } finally {
      workers.shutdownNow();
    }
  }

  /**
   * Per resource: a limit of one at a time; one acquire granted; on every fourth resource a
   * second one waits and the first release grants it; released; the limit deleted. Workers run
   * resources side by side.
   */
  private void run( ExecutorService workers, String prefix, int n) throws Exception {
    AtomicInteger next = new AtomicInteger();
    List<Future<?>> done = new ArrayList<>();
    for (int t = 0; t < WORKERS; t++) {
      done.add(
          workers.submit(
              () -> {
                for (int i = next.getAndIncrement(); i < n; i = next.getAndIncrement()) {
                  String name = prefix + i;
                  sync(engine).setLimit(new LimitSpec(name, List.of(), 1, 0, Duration.ofSeconds(30)));
                  Ticket first = sync(engine).acquire(name, Map.of(), Lane.DEFAULT, 60 * SEC, null);
                  Grant held = first.future().join();
                  first.claim();
                  if (i % 4 == 0) {
                    Ticket second = engine.acquire(name, Map.of(), Lane.DEFAULT, 60 * SEC, null);
                    engine.release(name, held.permitId(), Map.of(), false, false).join();
                    held = second.future().join();
                    second.claim();
                  }
                  engine.release(name, held.permitId(), Map.of(), false, false).join();
                  sync(engine).deleteLimit(name);
                }
                return null;
              }));
    }
    for (Future<?> f : done) {
      f.get();
    }
  }

  /** Lets every call finish and the remembered deliveries (2 minutes) expire. */
  private void settle() {
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
