package dev.sluice.examples.mock;

import dev.sluice.examples.mock.MockOpenAi.Stats;

/**
 * What {@link RateLimiter} decided about one chat completion.
 *
 * @param kind admitted, or why not
 * @param dimension for {@link Kind#RATE_LIMITED} and {@link Kind#TOO_LARGE}, the dimension named in
 *     the 429; otherwise null
 * @param limit that dimension's limit
 * @param used that dimension's use as OpenAI states it: {@code limit − remaining}
 * @param requested what the request asked of that dimension
 * @param waitNanos for {@link Kind#RATE_LIMITED}, how long until the request could be admitted (the
 *     longest wait over all dimensions, after the rejection's own RPM debit)
 * @param headers the per-minute state after the decision, for the {@code x-ratelimit-*} headers;
 *     null for {@link Kind#INSUFFICIENT_QUOTA}
 */
record Decision(
    Kind kind,
    Dimension dimension,
    long limit,
    long used,
    long requested,
    long waitNanos,
    RateHeaders headers) {

  enum Kind {
    ADMITTED,
    RATE_LIMITED,
    TOO_LARGE,
    INSUFFICIENT_QUOTA
  }

  /** The six {@code x-ratelimit-*} values, against the per-minute limits. */
  record RateHeaders(
      long limitRequests,
      long limitTokens,
      long remainingRequests,
      long remainingTokens,
      long resetRequestsNanos,
      long resetTokensNanos) {}

  /** The {@link Stats#rejected()} key for a refusal. */
  String reason() {
    return switch (kind) {
      case ADMITTED -> throw new IllegalStateException("admitted");
      case RATE_LIMITED -> dimension.statsKey;
      case TOO_LARGE -> "too_large";
      case INSUFFICIENT_QUOTA -> "insufficient_quota";
    };
  }
}
