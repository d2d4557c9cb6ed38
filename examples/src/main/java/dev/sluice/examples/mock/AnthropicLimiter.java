package dev.sluice.examples.mock;

import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Anthropic's admission rule for the Messages API, per API key. Not thread-safe; {@link Engine}
 * serializes calls.
 *
 * <p>Each key has three continuous {@link TokenBucket}s, created full: requests (RPM), input tokens
 * (ITPM) and output tokens (OTPM), each holding {@code limit × burstSeconds / 60}, as the OpenAI
 * side does. A call costs 1 request, its input tokens, and its {@code max_tokens} of output: Anthropic
 * counts output against OTPM from {@code max_tokens} when the call starts and corrects it to what
 * was written when it ends ({@link #finished}, which gives the unused budget back). It is admitted
 * only if all three buckets have room, and then all are debited. A refusal costs nothing.
 *
 * <p>A call whose input tokens exceed the ITPM limit, or whose {@code max_tokens} exceeds the OTPM
 * limit, can never be admitted ({@link Decision.Kind#TOO_LARGE}: no {@code retry-after}).
 */
final class AnthropicLimiter {

  /** Limits per API key. */
  record Limits(long rpm, long itpm, long otpm) {
    Limits {
      if (rpm <= 0 || itpm <= 0 || otpm <= 0) {
        throw new IllegalArgumentException(
            "Anthropic limits must be positive: rpm=" + rpm + ", itpm=" + itpm + ", otpm=" + otpm);
      }
    }
  }

  /** A limited dimension, as the {@code anthropic-ratelimit-*} headers and the 429s name it. */
  enum Kind {
    REQUESTS("requests", "requests"),
    INPUT("input-tokens", "input tokens"),
    OUTPUT("output-tokens", "output tokens");

    /** As in {@code anthropic-ratelimit-input-tokens-remaining}. */
    final String header;

    /** As in "... of 8,000 output tokens per minute". */
    final String words;

    Kind(String header, String words) {
      this.header = header;
      this.words = words;
    }

    /** The key in {@link MockOpenAi.Stats#rejected()}. */
    String statsKey() {
      return switch (this) {
        case REQUESTS -> "requests";
        case INPUT -> "input_tokens";
        case OUTPUT -> "output_tokens";
      };
    }
  }

  /** One bucket's state for the headers: its limit, what is left of it, when it is full again. */
  record Level(long limit, long remaining, long resetNanos) {}

  /**
   * What was decided.
   *
   * @param kind admitted, rate limited or too large
   * @param refusedOn for a refusal, the dimension named in the 429
   * @param waitNanos for a rate-limited call, how long until all three buckets could admit it
   * @param levels the buckets after the decision, in {@link Kind} order
   */
  record Verdict(Decision.Kind kind, Kind refusedOn, long waitNanos, Level[] levels) {}

  /** Claude Sonnet's limits at Anthropic's first tier: 50 RPM, 30,000 ITPM, 8,000 OTPM. */
  static final Limits DEFAULTS = new Limits(50, 30_000, 8_000);

  private static final long MINUTE = TimeUnit.MINUTES.toNanos(1);

  private final Limits limits;
  private final double burstSeconds;
  private final Map<String, TokenBucket[]> keys = new HashMap<>();

  AnthropicLimiter(Limits limits, double burstSeconds) {
    this.limits = limits;
    this.burstSeconds = burstSeconds;
  }

  Limits limits() {
    return limits;
  }

  Verdict acquire(String key, long inputTokens, long maxTokens, long now) {
    TokenBucket[] buckets = keys.computeIfAbsent(key, k -> newBuckets(now));
    long[] cost = {1, inputTokens, maxTokens};
    for (Kind k : new Kind[] {Kind.INPUT, Kind.OUTPUT}) {
      if (cost[k.ordinal()] > buckets[k.ordinal()].limit()) {
        return new Verdict(Decision.Kind.TOO_LARGE, k, 0, levels(buckets, now));
      }
    }
    Kind refusedOn = null;
    long wait = 0;
    for (Kind k : Kind.values()) {
      long w = buckets[k.ordinal()].waitNanos(cost[k.ordinal()], now);
      if (w > wait) {
        wait = w;
        refusedOn = k;
      }
    }
    if (refusedOn != null) {
      return new Verdict(Decision.Kind.RATE_LIMITED, refusedOn, wait, levels(buckets, now));
    }
    for (Kind k : Kind.values()) {
      buckets[k.ordinal()].take(cost[k.ordinal()], now);
    }
    return new Verdict(Decision.Kind.ADMITTED, null, 0, levels(buckets, now));
  }

  /** An admitted call ended having written {@code outputTokens}: the rest of its budget is given back. */
  void finished(String key, long maxTokens, long outputTokens, long now) {
    TokenBucket[] buckets = keys.get(key);
    if (buckets != null && outputTokens < maxTokens) {
      buckets[Kind.OUTPUT.ordinal()].give(maxTokens - outputTokens, now);
    }
  }

  /** Forgets every key, so each starts again with full buckets. */
  void reset() {
    keys.clear();
  }

  private TokenBucket[] newBuckets(long now) {
    long[] perMinute = {limits.rpm(), limits.itpm(), limits.otpm()};
    TokenBucket[] buckets = new TokenBucket[perMinute.length];
    for (int i = 0; i < perMinute.length; i++) {
      double capacity = Math.max(1.0, perMinute[i] * burstSeconds / 60.0);
      buckets[i] = new TokenBucket(perMinute[i], MINUTE, capacity, 1.0, now);
    }
    return buckets;
  }

  private static Level[] levels(TokenBucket[] buckets, long now) {
    Level[] out = new Level[buckets.length];
    for (int i = 0; i < buckets.length; i++) {
      TokenBucket b = buckets[i];
      out[i] = new Level(b.limit(), b.remaining(now), b.resetNanos(now));
    }
    return out;
  }
}
