package dev.sluice.client;

import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads an upstream's rate-limit response headers. HTTP header names are case-insensitive, so
 * names are compared in lower case. Values that do not parse are skipped with a DEBUG log: a
 * malformed header from the upstream must not turn a report into an error.
 */
final class ReportHeaders {

  private static final Logger log = LoggerFactory.getLogger(ReportHeaders.class);
  private static final String REMAINING_PREFIX = "x-ratelimit-remaining-";

  private ReportHeaders() {}

  /** {@code x-ratelimit-remaining-<dimension>} values, by lower-case dimension. */
  static Map<String, Long> remaining(Map<String, String> headers) {
    Map<String, Long> remaining = new TreeMap<>();
    headers.forEach((name, value) -> {
      if (name == null || value == null) {
        return;
      }
      String lower = name.toLowerCase(Locale.ROOT);
      if (!lower.startsWith(REMAINING_PREFIX) || lower.length() == REMAINING_PREFIX.length()) {
        return;
      }
      String dimension = lower.substring(REMAINING_PREFIX.length());
      try {
        long amount = Long.parseLong(value.trim());
        if (amount < 0) {
          log.debug("ignoring header {}: {} is negative", name, value);
        } else {
          remaining.put(dimension, amount);
        }
      } catch (NumberFormatException e) {
        log.debug("ignoring header {}: {} is not an integer", name, value);
      }
    });
    return remaining;
  }

  /**
   * The pause the upstream asked for: {@code retry-after-ms} (milliseconds) if present and valid,
   * else {@code retry-after} in seconds, either possibly fractional; null when neither is usable.
   * The HTTP-date form of Retry-After is not read (it would need this host's wall clock).
   */
  static Duration retryAfter(Map<String, String> headers) {
    String millis = get(headers, "retry-after-ms");
    if (millis != null) {
      Duration d = parse(millis, 1_000_000L, "retry-after-ms");
      if (d != null) {
        return d;
      }
    }
    String seconds = get(headers, "retry-after");
    return seconds == null ? null : parse(seconds, 1_000_000_000L, "retry-after");
  }

  private static String get(Map<String, String> headers, String lowerName) {
    for (Map.Entry<String, String> e : headers.entrySet()) {
      if (e.getKey() != null && e.getKey().toLowerCase(Locale.ROOT).equals(lowerName)) {
        return e.getValue();
      }
    }
    return null;
  }

  private static Duration parse(String value, long nanosPerUnit, String header) {
    try {
      double units = Double.parseDouble(value.trim());
      // Double.parseDouble accepts "NaN" and "Infinity"; an upstream never means those.
      if (!Double.isFinite(units) || units < 0) {
        log.debug("ignoring header {}: {} is not a usable delay", header, value);
        return null;
      }
      double nanos = units * nanosPerUnit;
      return nanos >= Long.MAX_VALUE ? Duration.ofNanos(Long.MAX_VALUE) : Duration.ofNanos(Math.round(nanos));
    } catch (NumberFormatException e) {
      log.debug("ignoring header {}: {} is not a number", header, value);
      return null;
    }
  }
}
