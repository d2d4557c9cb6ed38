package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;

import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * What only the memory engine does: dropping idle state, its metrics cap and its wait
 * histograms (the contract is in EngineContractTest).
 */
class MemoryEngineTest {

  private static final long SEC = 1_000_000_000L;

  private FakeClock clock;
  private MemoryEngine engine;

  @BeforeEach
  void setUp() {
    clock = new FakeClock();
  }

  private Ticket acquire(String name, Map<String, Long> load) {
    return sync(engine).acquire(name, load, Lane.DEFAULT, 60 * SEC);
  }

  private static Grant granted(Ticket t) {
    assertThat(t.future()).isCompleted();
    return t.future().join();
  }

  private void limit(String name, long concurrency, RateSpec... rates) {
    sync(engine).setLimit(new LimitSpec(name, List.of(rates), concurrency, 0, null));
  }

  private double available(String name, String dim) {
    return sync(engine).stats(name).available().get(dim);
  }

  private static RateSpec rate(String dim, long amount, Duration period, long burst) {
    return new RateSpec(dim, amount, period, burst);
  }

  /**
   * A limit change writes the store on the engine's writer thread, never the caller's (an event
   * loop), and its future completes only once the write has returned: durable.
   */
  @Test
  void limitChangesWriteTheStoreOffTheCallersThreadAndCompleteOnceWritten() throws Exception {
    java.util.concurrent.CountDownLatch writing = new java.util.concurrent.CountDownLatch(1);
    java.util.concurrent.CountDownLatch letGo = new java.util.concurrent.CountDownLatch(1);
    List<String> writers = new java.util.concurrent.CopyOnWriteArrayList<>();
    LimitStore slowDisk = new LimitStore() {
      @Override
      public List<LimitSpec> load() {
        return List.of();
      }

      @Override
      public void save(java.util.Collection<LimitSpec> limits) {
        writers.add(Thread.currentThread().getName());
        writing.countDown();
        try {
          // Bounded: a write made on the caller's thread would otherwise hang this test, not fail it.
          letGo.await(10, java.util.concurrent.TimeUnit.SECONDS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
    };
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).store(slowDisk).build();
    try {
      var created = engine.setLimit(new LimitSpec("r", List.of(), 1, 0, null));
      writing.await();
      assertThat(created).as("not durable yet: the write has not returned").isNotDone();
      letGo.countDown();
      assertThat(created.get(10, java.util.concurrent.TimeUnit.SECONDS)).isTrue();
      sync(engine).deleteLimit("r");
      assertThat(writers).hasSize(2).allSatisfy(t -> assertThat(t).isEqualTo("sluice-limits-writer"));
    } finally {
      letGo.countDown();
      engine.close();
    }
  }

  /** Every refusal of an acquire fails its ticket; acquire itself never throws (Engine's contract). */
  @Test
  void anAcquireRefusedHereFailsItsTicketInsteadOfThrowing() throws Exception {
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
    Ticket t = engine.acquire("nowhere", Map.of(), Lane.DEFAULT, SEC);
    assertThat(t.future()).isCompletedExceptionally();
    assertThatThrownBy(() -> t.future().join())
        .hasCauseInstanceOf(EngineException.class)
        .cause()
        .satisfies(e -> assertThat(((EngineException) e).reason()).isEqualTo(EngineException.Reason.NOT_FOUND));
  }

  @Test
  void stateHoldingALiveLeaseIsNotDropped() throws Exception {
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).idleGrace(Duration.ofMinutes(1)).build();
    sync(engine).setLimit(new LimitSpec("c", List.of(), 1, 0, Duration.ofMinutes(10)));
    granted(acquire("c", Map.of()));
    clock.advance(Duration.ofMinutes(5)); // past the idle grace, within the lease
    assertThat(sync(engine).stats("c").inFlight()).as("the slot is still held").isEqualTo(1);
    Ticket next = sync(engine).acquire("c", Map.of(), Lane.DEFAULT, 3600 * SEC);
    assertThat(next.future()).as("the cap still counts the held lease").isNotDone();
    clock.advance(Duration.ofMinutes(5));
    granted(next);
  }

  @Test
  void idleStateIsDroppedOnlyWhenFullAndComesBackFull() throws Exception {
    engine =
        MemoryEngine.builder().ticker(clock).scheduler(clock).idleGrace(Duration.ofMinutes(1)).build();
    limit("r", 0, rate("requests", 10, Duration.ofSeconds(1), 10));
    clock.advance(Duration.ofMillis(500));
    Grant g = granted(acquire("r", Map.of("requests", 5L)));
    sync(engine).release("r", g.permitId(), Map.of(), false, false);
    // Far past refill + grace: the state is dropped and rebuilt full, exactly what it would hold.
    clock.advance(Duration.ofMinutes(10));
    assertThat(available("r", "requests")).isEqualTo(10.0);
  }

  /** Granted-counter values by resource tag. */
  private static Map<String, Double> grantedByTag(SimpleMeterRegistry meters) {
    Map<String, Double> out = new TreeMap<>();
    for (Counter c : meters.find("sluice.acquire.granted").counters()) {
      out.put(c.getId().getTag("resource"), c.count());
    }
    return out;
  }

  @Test
  void resourcesBeyondTheMetricsCapShareOneTagAndTheCountsStillAddUp() throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).meterRegistry(meters)
        .metricsMaxResources(2).build();
    for (int i = 0; i < 4; i++) {
      limit("r" + i, 0, rate("requests", 100, Duration.ofSeconds(1), 100));
    }
    clock.advance(Duration.ofSeconds(1));
    for (int i = 0; i < 4; i++) {
      for (int k = 0; k <= i; k++) { // r0 once, r1 twice, ...
        granted(acquire("r" + i, Map.of("requests", 1L)));
      }
    }
    assertThat(grantedByTag(meters))
        .as("the first two resources used are tagged, the others share _other")
        .containsExactlyEntriesOf(new TreeMap<>(Map.of("r0", 1.0, "r1", 2.0, "_other", 7.0)));
    assertThat(meters.find("sluice.acquire.wait").tag("resource", "r3").timer()).isNull();
    assertThat(meters.find("sluice.acquire.wait").tag("resource", "_other").timer().count())
        .isEqualTo(7);
    for (int i = 0; i < 4; i++) {
      assertThat(sync(engine).stats("r" + i).granted()).as("stats stay exact past the cap").isEqualTo(i + 1);
    }

    // A rejection beyond the cap is counted under _other with its reason, and exactly in stats.
    assertThatThrownBy(() -> acquire("r3", Map.of("tokens", 1L))).isInstanceOf(EngineException.class);
    assertThat(meters.find("sluice.acquire.rejected").tags("resource", "_other", "reason", "invalid")
        .counter().count()).isEqualTo(1);
    assertThat(sync(engine).stats("r3").rejected()).containsEntry("invalid", 1L);
  }

  @Test
  void aDeletedResourceLeavesTheRegistryAndFreesItsSlot() throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).meterRegistry(meters)
        .metricsMaxResources(1).build();
    limit("a", 0, rate("requests", 100, Duration.ofSeconds(1), 100));
    limit("b", 0, rate("requests", 100, Duration.ofSeconds(1), 100));
    clock.advance(Duration.ofSeconds(1));
    granted(acquire("a", Map.of("requests", 1L)));
    sync(engine).deleteLimit("a");
    assertThat(meters.find("sluice.acquire.granted").tag("resource", "a").counters()).isEmpty();
    assertThat(meters.find("sluice.acquire.wait").tag("resource", "a").timers()).isEmpty();
    granted(acquire("b", Map.of("requests", 1L)));
    assertThat(grantedByTag(meters)).as("b took a's slot").containsOnlyKeys("b");
  }

  @Test
  void zeroMetricsMaxResourcesPutsEveryResourceUnderOther() throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).meterRegistry(meters)
        .metricsMaxResources(0).build();
    limit("a", 0, rate("requests", 100, Duration.ofSeconds(1), 100));
    clock.advance(Duration.ofSeconds(1));
    granted(acquire("a", Map.of("requests", 1L)));
    assertThat(grantedByTag(meters)).containsExactlyEntriesOf(Map.of("_other", 1.0));
  }

  @Test
  void aBadMetricsCapIsRefusedWithTheRange() {
    assertThatThrownBy(() -> MemoryEngine.builder().metricsMaxResources(-1))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("metrics max resources -1 is out of range: use 0")
        .hasMessageContaining("to 1000000");
  }

  @Test
  void onlyAGrantThatWaitedCreatesAWaitHistogramAndIdlenessDropsIt() throws Exception {
    engine =
        MemoryEngine.builder().ticker(clock).scheduler(clock).idleGrace(Duration.ofMinutes(1)).build();
    limit("r", 0, rate("requests", 1, Duration.ofSeconds(1), 1));
    limit("other", 0, rate("requests", 1, Duration.ofSeconds(1), 1));
    clock.advance(Duration.ofSeconds(1));
    granted(acquire("r", Map.of("requests", 1L)));
    assertThat(engine.holdsWaitHistogram("r")).as("an uncontended grant waited 0").isFalse();
    assertThat(sync(engine).stats("r").waitP99Seconds()).isZero();

    Ticket waiting = acquire("r", Map.of("requests", 1L));
    clock.advance(Duration.ofSeconds(1));
    granted(waiting);
    assertThat(engine.holdsWaitHistogram("r")).isTrue();
    ResourceSnapshot s = sync(engine).stats("r");
    assertThat(s.waitP50Seconds()).as("half the grants did not wait").isZero();
    assertThat(s.waitP99Seconds()).isCloseTo(1.0, within(0.01));

    // Long idle: the state is dropped (on the next cache operation) and the histogram with it.
    clock.advance(Duration.ofMinutes(10));
    granted(acquire("other", Map.of("requests", 1L)));
    assertThat(engine.holdsWaitHistogram("r")).isFalse();
    assertThat(sync(engine).stats("r").waitP99Seconds()).as("nothing waited recently").isZero();
    assertThat(sync(engine).stats("r").granted()).isEqualTo(2);
  }

  @Test
  void recentWaitsStillCountAfterTheStateWasDroppedSoon() throws Exception {
    engine =
        MemoryEngine.builder().ticker(clock).scheduler(clock).idleGrace(Duration.ofMinutes(1)).build();
    limit("r", 0, rate("requests", 1, Duration.ofSeconds(1), 1));
    limit("other", 0, rate("requests", 1, Duration.ofSeconds(1), 1));
    clock.advance(Duration.ofSeconds(1));
    granted(acquire("r", Map.of("requests", 1L)));
    Ticket waiting = acquire("r", Map.of("requests", 1L));
    clock.advance(Duration.ofSeconds(1));
    granted(waiting);
    // Dropped after refill + the 1-minute grace, less than two windows after the wait.
    clock.advance(Duration.ofSeconds(90));
    granted(acquire("other", Map.of("requests", 1L)));
    assertThat(engine.holdsWaitHistogram("r")).as("a wait 90 s ago is still recent").isTrue();
    assertThat(sync(engine).stats("r").waitP99Seconds()).isCloseTo(1.0, within(0.01));
  }
}
