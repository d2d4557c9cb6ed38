package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class DurationsTest {

  @ParameterizedTest
  @CsvSource({
      "0, 0s",
      "86400000000000, 1d",
      "5400000000000, 90m",
      "30000000000, 30s",
      "250000000, 250ms",
      "1500000, 1.5ms",
      "-30000000000, -30s",
      "1500000000, 1.5s",
  })
  void formatsInTheLargestExactUnit(long nanos, String expected) {
    assertThat(Durations.format(Duration.ofNanos(nanos))).isEqualTo(expected);
  }

  /**
   * The gRPC fuzzer's finding: a pause of {@code Long.MIN_VALUE} seconds reached the formatter of
   * the error message, whose {@code abs()} overflowed into an INTERNAL status.
   */
  @Test
  void theExtremesFormatWithoutOverflow() {
    assertThat(Durations.format(Duration.ofSeconds(Long.MIN_VALUE))).isEqualTo("-9223372036854775808s");
    assertThat(Durations.format(Duration.ofSeconds(Long.MIN_VALUE, 1))).startsWith("-9223372036854775807.");
    assertThat(Durations.format(Duration.ofSeconds(Long.MAX_VALUE))).isEqualTo("9223372036854775807s");
  }

  @Test
  void anExtremeValueIsRefusedNamingTheBounds() {
    Duration min = Duration.ofSeconds(Long.MIN_VALUE);
    assertThatThrownBy(() -> Durations.check("pause", Durations.format(min), min, Durations.ANY))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("-9223372036854775808s");
  }

  /**
   * A million limits loaded from a file hold the same few leases and jitters: one instance of
   * each value, and an empty map for the held dimensions they do not have (the scale bench's 1 M
   * resources fit in 1 GiB only so). The table stays bounded whatever values come.
   */
  @Test
  void limitsShareEqualDurationsAndTheEmptyHoldsMap() {
    for (int i = 0; Durations.sharedCount() > Durations.MAX_SHARED - 4; i++) { // room for a's and b's
      Durations.shared(Duration.ofNanos(999_000_000_001L + i));
    }
    LimitSpec a = new LimitSpec("a", java.util.List.of(), 1, 10, Duration.ofSeconds(31), Duration.ofMillis(21),
        null, null);
    LimitSpec b = new LimitSpec("b", java.util.List.of(), 1, 10, Duration.ofSeconds(31), Duration.ofMillis(21),
        null, null);
    assertThat(b.leaseTtl()).isEqualTo(Duration.ofSeconds(31)).isSameAs(a.leaseTtl());
    assertThat(b.jitter()).isEqualTo(Duration.ofMillis(21)).isSameAs(a.jitter());
    assertThat(b.holds()).isEmpty();
    assertThat(b.holds()).isSameAs(a.holds());
    assertThat(Durations.shared(null)).isNull();
    for (int i = 0; i < 3 * Durations.MAX_SHARED; i++) {
      Durations.shared(Duration.ofNanos(1_000_003 + i)); // a fuzzer's odd values
      assertThat(Durations.sharedCount()).isLessThanOrEqualTo(Durations.MAX_SHARED);
    }
    Duration first = Durations.shared(Duration.ofSeconds(29));
    assertThat(Durations.shared(Duration.ofSeconds(29))).as("shared again after the odd ones").isSameAs(first);
  }
}
