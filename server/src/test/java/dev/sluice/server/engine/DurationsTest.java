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
}
