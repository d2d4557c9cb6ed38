package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** What only the memory engine does: dropping idle state (the contract is in EngineContractTest). */
class MemoryEngineTest {

  private static final long SEC = 1_000_000_000L;

  private FakeClock clock;
  private MemoryEngine engine;

  @BeforeEach
  void setUp() {
    clock = new FakeClock();
  }

  private Ticket acquire(String name, Map<String, Long> load) {
    return engine.acquire(name, load, Lane.DEFAULT, 60 * SEC);
  }

  private static Grant granted(Ticket t) {
    assertThat(t.future()).isCompleted();
    return t.future().join();
  }

  private void limit(String name, long concurrency, RateSpec... rates) {
    engine.setLimit(new LimitSpec(name, List.of(rates), concurrency, 0, null));
  }

  private double available(String name, String dim) {
    return engine.stats(name).available().get(dim);
  }

  private static RateSpec rate(String dim, long amount, Duration period, long burst) {
    return new RateSpec(dim, amount, period, burst);
  }

  @Test
  void stateHoldingALiveLeaseIsNotDropped() throws Exception {
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).idleGrace(Duration.ofMinutes(1)).build();
    engine.setLimit(new LimitSpec("c", List.of(), 1, 0, Duration.ofMinutes(10)));
    granted(acquire("c", Map.of()));
    clock.advance(Duration.ofMinutes(5)); // past the idle grace, within the lease
    assertThat(engine.stats("c").inFlight()).as("the slot is still held").isEqualTo(1);
    Ticket next = engine.acquire("c", Map.of(), Lane.DEFAULT, 3600 * SEC);
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
    engine.release("r", g.permitId(), Map.of(), false, false);
    // Far past refill + grace: the state is dropped and rebuilt full, exactly what it would hold.
    clock.advance(Duration.ofMinutes(10));
    assertThat(available("r", "requests")).isEqualTo(10.0);
  }
}
