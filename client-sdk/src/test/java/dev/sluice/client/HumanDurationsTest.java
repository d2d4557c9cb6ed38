package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class HumanDurationsTest {

  @ParameterizedTest
  @CsvSource({
      "0, 0 s",
      "400, 1 µs",
      "250000, 250 µs",
      "218620534, 219 ms",
      "999400000, 999 ms",
      "999600000, 1 s",
      "1000000000, 1 s",
      "1500000000, 1.5 s",
      "2000000000, 2 s",
      "9960000000, 10 s",
      "42400000000, 42 s",
      "59600000000, 1m",
      "200000000000, 3m 20s",
      "3600000000000, 1h",
      "7500000000000, 2h 5m",
      "97200000000000, 1d 3h",
      "-1500000000, -1.5 s",
  })
  void readsAsAPersonWritesIt(long nanos, String expected) {
    assertThat(HumanDurations.format(Duration.ofNanos(nanos))).isEqualTo(expected);
    assertThat(HumanDurations.formatNanos(nanos)).isEqualTo(expected);
  }

  /** A hostile wire duration reaches the formatter in error messages: it must not throw. */
  @org.junit.jupiter.api.Test
  void theExtremesFormatWithoutOverflow() {
    assertThat(HumanDurations.format(Duration.ofSeconds(Long.MIN_VALUE))).startsWith("-").endsWith("h");
    assertThat(HumanDurations.format(Duration.ofSeconds(Long.MAX_VALUE, 999_999_999))).endsWith("h")
        .doesNotStartWith("-");
    assertThat(HumanDurations.format(Duration.ofSeconds(Long.MIN_VALUE, 1))).startsWith("-");
  }
}
