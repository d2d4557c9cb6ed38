package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The window check on reads of the coordinator's counters: it holds what a bucket allows, and no more. */
class GrantSamplerTest {

  private static final RateSpec RATE = new RateSpec("requests", 100, Duration.ofSeconds(1), 10);
  private static final long MS = 1_000_000L;

  /** A read taken from {@code atMs} to {@code atMs + 1}, the counter at {@code granted}. */
  private static GrantSampler.Sample read(long atMs, long granted, double tokensAvailable) {
    ResourceSnapshot stats = new ResourceSnapshot(new LimitSpec("r", List.of(RATE), 0, 0, null),
        Map.of("tokens", tokensAvailable), 0, Map.of(), false, 0, dev.sluice.server.engine.PauseState.NONE, granted,
        0, 0, 0, 0, 0, Map.of(), 0, 0, 0, -1, Map.of("tokens", (double) granted));
    return new GrantSampler.Sample(atMs * MS, (atMs + 1) * MS, stats);
  }

  @Test
  void theBurstPlusTheRateOverTheTimeBetweenTwoReadsPasses() {
    // 10 at once, then 100 over the next second: exactly what the bucket allows.
    List<GrantSampler.Sample> reads = List.of(read(0, 0, 0), read(10, 10, 0), read(1009, 110, 0));
    GrantSampler.Densest densest = GrantSampler.assertGrantsWithinLimit(reads, RATE);
    assertThat(densest.count()).as("reads 1 and 2, a second apart").isEqualTo(100);
    assertThat(densest.spanNanos()).isEqualTo(1000 * MS);
  }

  @Test
  void oneGrantMoreThanTheBoundFails() {
    List<GrantSampler.Sample> reads = List.of(read(0, 0, 0), read(500, 50, 0), read(999, 111, 0));
    assertThatThrownBy(() -> GrantSampler.assertGrantsWithinLimit(reads, RATE))
        .isInstanceOf(AssertionError.class)
        .hasMessageContaining("111.0 taken between reads 1.000 s apart (reads 0 and 2)");
  }

  @Test
  void aBurstTwiceOverBetweenCloseReadsFails() {
    List<GrantSampler.Sample> reads = List.of(read(0, 0, 0), read(10, 21, 0), read(2000, 30, 0));
    assertThatThrownBy(() -> GrantSampler.assertGrantsWithinLimit(reads, RATE))
        .hasMessageContaining("21.0 taken between reads 0.011 s apart");
  }

  @Test
  void debtTheBucketOwesIsAllowedAsSlackAndNothingMore() {
    // 40 units over the bound, owed at the later read: settle charged them above the estimates.
    List<GrantSampler.Sample> reads = List.of(read(0, 0, 0), read(999, 150, -40));
    GrantSampler.assertWithinLimit(reads, RATE, s -> s.used("tokens"), s -> s.debt("tokens"));
    List<GrantSampler.Sample> more = List.of(read(0, 0, 0), read(999, 151, -40));
    assertThatThrownBy(() -> GrantSampler.assertWithinLimit(more, RATE, s -> s.used("tokens"), s -> s.debt("tokens")))
        .isInstanceOf(AssertionError.class);
  }

  @Test
  void aCounterThatWentDownIsNamedNotCompared() {
    List<GrantSampler.Sample> reads = List.of(read(0, 50, 0), read(100, 0, 0));
    assertThatThrownBy(() -> GrantSampler.assertGrantsWithinLimit(reads, RATE))
        .hasMessageContaining("the grant counter went down at read 1");
  }
}
