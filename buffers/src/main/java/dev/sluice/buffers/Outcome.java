package dev.sluice.buffers;

import java.io.IOException;
import java.io.InputStream;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.function.DoubleSupplier;

/**
 * What one attempt came to, and the rules that decide what that means for its item.
 *
 * @param status the HTTP status, 0 when there was no answer
 * @param excerpt the start of the response body, kept with the item
 * @param error what went wrong when there was no answer, or null
 * @param retryAfterMillis for a 429: how long the endpoint asked to wait
 * @param permanent the request cannot be built: trying again cannot help
 * @param sent whether the request left (its permit was used), or was stopped before
 */
record Outcome(int status, String excerpt, String error, long retryAfterMillis, boolean permanent, boolean sent) {

  /** Bytes of a response body kept with the item. */
  static final int EXCERPT = 1024;

  /** The request left but no answer came back (connection refused or reset, timeout). */
  static Outcome error(Throwable t) {
    Throwable e = t instanceof java.util.concurrent.CompletionException && t.getCause() != null ? t.getCause() : t;
    return new Outcome(0, null, describe(e), 0, false, true);
  }

  /** Not sent: where the URL leads is refused now. It may change back, so the item is retried. */
  static Outcome refused(String why) {
    return new Outcome(0, null, "not sent: " + why, 0, false, false);
  }

  /** Not sent: the request cannot be built from the item (an item stored before a rule existed). */
  static Outcome unbuildable(Throwable e) {
    return new Outcome(0, null, "the request could not be built (" + describe(e) + ")", 0, true, false);
  }

  private static String describe(Throwable e) {
    return e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage());
  }

  /** An answer: its status, the start of its body, and for a 429 its Retry-After. */
  static Outcome of(HttpResponse<InputStream> r, long now) {
    String excerpt;
    try (InputStream in = r.body()) {
      excerpt = new String(in.readNBytes(EXCERPT), StandardCharsets.UTF_8);
    } catch (IOException e) {
      excerpt = "";
    }
    long retryAfter = 0;
    if (r.statusCode() == 429) {
      retryAfter = retryAfterMillis(r.headers().firstValue("Retry-After").orElse(null), now);
    }
    return new Outcome(r.statusCode(), excerpt, null, retryAfter, false, true);
  }

  /** Retry-After as seconds or an HTTP date; 1 s when absent or unreadable. */
  static long retryAfterMillis(String v, long now) {
    if (v == null || v.isBlank()) {
      return 1000;
    }
    try {
      return Math.max(0, Math.round(Double.parseDouble(v.trim()) * 1000));
    } catch (NumberFormatException e) {
      try {
        return Math.max(0, ZonedDateTime.parse(v.trim(), DateTimeFormatter.RFC_1123_DATE_TIME).toInstant()
            .toEpochMilli() - now);
      } catch (RuntimeException e2) {
        return 1000;
      }
    }
  }

  /**
   * What the outcome means for its item.
   *
   * @param state {@code completed}, {@code failed}, or {@code pending} (tried again at {@code nextAt})
   * @param verdict the attempt as counted: delivered, throttled, retried or failed
   * @param note the end of the attempt's history line
   * @param nextAt for a pending item, when to try again (clock millis), else 0
   * @param retries the retry budget spent, this attempt included
   */
  record Verdict(String state, String verdict, String note, long nextAt, int retries) {
    boolean pending() {
      return state.equals("pending");
    }
  }

  /**
   * The rules: a request that cannot be built fails at once; 2xx is delivered; a 429 is tried
   * again after its Retry-After and spends nothing of the retry budget; no answer, 408 and 5xx
   * are tried again after a backoff while the budget lasts; any other status fails.
   *
   * @param retriesUsed the budget spent before this attempt
   * @param random uniform in [0, 1): the backoff's jitter
   */
  Verdict judge(BufferSpec spec, int retriesUsed, long now, DoubleSupplier random) {
    int s = status;
    if (permanent) {
      return new Verdict("failed", "failed", "; not retried: the same request would fail again", 0, retriesUsed);
    }
    if (s >= 200 && s < 300) {
      return new Verdict("completed", "delivered", "", 0, retriesUsed);
    }
    if (s == 429) {
      long next = now + retryAfterMillis;
      return new Verdict("pending", "throttled", "; retry at " + Instant.ofEpochMilli(next)
          + " (Retry-After; the retry budget is untouched)", next, retriesUsed);
    }
    if (s == 0 || s == 408 || s >= 500) {
      if (retriesUsed >= spec.maxRetries()) {
        return new Verdict("failed", "failed", "; retry budget of " + spec.maxRetries() + " spent: failed", 0,
            retriesUsed);
      }
      int retries = retriesUsed + 1;
      long next = now + Backoff.delay(spec.backoff(), spec.backoffBase(), spec.backoffMax(), retries, random)
          .toMillis();
      return new Verdict("pending", "retried", "; retry " + retries + " of " + spec.maxRetries() + " at "
          + Instant.ofEpochMilli(next), next, retries);
    }
    return new Verdict("failed", "failed", "; " + s + " is not retried", 0, retriesUsed);
  }
}
