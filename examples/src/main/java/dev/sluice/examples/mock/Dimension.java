package dev.sluice.examples.mock;

import dev.sluice.examples.mock.MockOpenAi.Stats;
import java.util.concurrent.TimeUnit;

/** A rate-limited dimension, named as OpenAI names it in its 429 messages. */
enum Dimension {
  REQUESTS("requests per min (RPM)", "requests", "requests", TimeUnit.MINUTES.toNanos(1)),
  TOKENS("tokens per min (TPM)", "tokens", "tokens", TimeUnit.MINUTES.toNanos(1)),
  REQUESTS_PER_DAY(
      "requests per day (RPD)", "requests", "requests_per_day", TimeUnit.DAYS.toNanos(1)),
  TOKENS_PER_DAY("tokens per day (TPD)", "tokens", "tokens_per_day", TimeUnit.DAYS.toNanos(1));

  /** As in "Rate limit reached for gpt-4o-mini in organization org-x on tokens per min (TPM)". */
  final String label;

  /** The {@code error.type} of a 429 for this dimension. */
  final String errorType;

  /** The key in {@link Stats#rejected()}. */
  final String statsKey;

  /** The window the limit is stated over. */
  final long windowNanos;

  Dimension(String label, String errorType, String statsKey, long windowNanos) {
    this.label = label;
    this.errorType = errorType;
    this.statsKey = statsKey;
    this.windowNanos = windowNanos;
  }

  boolean perMinute() {
    return this == REQUESTS || this == TOKENS;
  }

  boolean countsRequests() {
    return this == REQUESTS || this == REQUESTS_PER_DAY;
  }

  long limit(Stats.Limits limits) {
    return switch (this) {
      case REQUESTS -> limits.rpm();
      case TOKENS -> limits.tpm();
      case REQUESTS_PER_DAY -> limits.rpd();
      case TOKENS_PER_DAY -> limits.tpd();
    };
  }
}
