package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import org.junit.jupiter.api.Test;

/** Retry delays, with the jitter's random source fixed. */
class BackoffTest {

  private static final Duration BASE = Duration.ofMillis(100);
  private static final Duration MAX = Duration.ofSeconds(1);

  @Test
  void exponentialDoublesUpToTheCapWithinHalfAndAllOfIt() {
    for (int n = 1; n <= 6; n++) {
      long ceiling = Math.min(1000, 100L << (n - 1));
      assertThat(Backoff.delay(Backoff.Kind.EXPONENTIAL, BASE, MAX, n, () -> 0.0).toMillis()).isEqualTo(ceiling / 2);
      assertThat(Backoff.delay(Backoff.Kind.EXPONENTIAL, BASE, MAX, n, () -> 0.999999).toMillis())
          .isBetween(ceiling - 1, ceiling);
    }
    assertThat(Backoff.delay(Backoff.Kind.EXPONENTIAL, BASE, MAX, 40, () -> 1.0 - 1e-9))
        .as("no overflow far past the cap").isLessThanOrEqualTo(MAX);
  }

  @Test
  void fixedIsAlwaysTheBase() {
    for (int n = 1; n <= 5; n++) {
      assertThat(Backoff.delay(Backoff.Kind.FIXED, BASE, MAX, n, () -> 0.7)).isEqualTo(BASE);
    }
  }

  @Test
  void retryAfterReadsSecondsAndHttpDates() {
    long now = java.time.ZonedDateTime.parse("Tue, 24 Nov 2026 02:00:00 GMT",
        java.time.format.DateTimeFormatter.RFC_1123_DATE_TIME).toInstant().toEpochMilli();
    assertThat(Outcome.retryAfterMillis("2", now)).isEqualTo(2000);
    assertThat(Outcome.retryAfterMillis("0.5", now)).isEqualTo(500);
    assertThat(Outcome.retryAfterMillis("Tue, 24 Nov 2026 02:00:07 GMT", now)).isEqualTo(7000);
    assertThat(Outcome.retryAfterMillis(null, now)).as("absent: a second").isEqualTo(1000);
    assertThat(Outcome.retryAfterMillis("soon", now)).as("unreadable: a second").isEqualTo(1000);
  }
}
