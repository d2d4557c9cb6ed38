package dev.sluice.server.engine;

import java.time.Duration;

/**
 * One rate dimension: {@code amount} per {@code period}, with bucket capacity {@code burst}.
 *
 * @param name dimension name, e.g. {@code requests} or {@code tokens}
 * @param amount units allowed per period, &gt;= 1
 * @param period the period, 1 ms to 7 days
 * @param burst bucket capacity, &gt;= 1: the most that may be granted at once
 */
public record RateSpec(String name, long amount, Duration period, long burst) {

  /**
   * Refill rate in units per microsecond, computed as the Redis store's script computes it
   * (the same double operations), so both stores round alike at the microsecond.
   */
  double perMicro() {
    return amount / (period.toNanos() / 1000.0);
  }

  /** The default burst: one second's worth of the rate, at least 1. */
  public static long defaultBurst(long amount, Duration period) {
    double perSecond = (double) amount * 1_000_000_000L / period.toNanos();
    return Math.max(1, (long) Math.floor(perSecond));
  }
}
