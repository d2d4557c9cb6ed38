package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import org.junit.jupiter.api.Test;

class GoDurationTest {

  @Test
  void formatsLikeGo() {
    assertThat(GoDuration.format(Duration.ZERO)).isEqualTo("0s");
    assertThat(GoDuration.format(Duration.ofMillis(12))).isEqualTo("12ms");
    assertThat(GoDuration.format(Duration.ofSeconds(1))).isEqualTo("1s");
    assertThat(GoDuration.format(Duration.ofMinutes(6))).isEqualTo("6m0s");
    assertThat(GoDuration.format(Duration.ofMillis(977_764))).isEqualTo("16m17.764s");
    assertThat(GoDuration.format(Duration.ofSeconds(3723))).isEqualTo("1h2m3s");
  }

  @Test
  void subSecondUnitsAndFractions() {
    assertThat(GoDuration.format(Duration.ofNanos(7))).isEqualTo("7ns");
    assertThat(GoDuration.format(Duration.ofNanos(1_500))).isEqualTo("1.5µs");
    assertThat(GoDuration.format(Duration.ofNanos(1_234_000))).isEqualTo("1.234ms");
    assertThat(GoDuration.format(Duration.ofMillis(1_146))).isEqualTo("1.146s");
    assertThat(GoDuration.format(Duration.ofMillis(1_500))).isEqualTo("1.5s");
    assertThat(GoDuration.format(Duration.ofHours(1))).isEqualTo("1h0m0s");
    assertThat(GoDuration.format(Duration.ofSeconds(-90))).isEqualTo("-1m30s");
  }
}
