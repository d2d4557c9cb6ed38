package dev.sluice.server.engine;

import java.time.Duration;

/**
 * One rate dimension: {@code amount} per {@code period}, with bucket capacity {@code burst}.
 *
 * <h2>Jitter: the effective rate</h2>
 *
 * A call granted at {@code g} reaches the upstream somewhere in {@code [g, g + D]}, D being the
 * limit's {@linkplain LimitSpec#jitter jitter}. The upstream is modelled as a bucket of
 * capacity {@code C} (its sub-window) refilled at the rate {@code r}; the rule the README gives
 * for the burst is half the sub-window, so {@code C >= 2b - 1} (at the lowest tiers the
 * sub-window holds one call and {@code b = C = 1}). Calls arriving in any stretch of length
 * {@code L} were granted in a stretch of length {@code L + D}: at most {@code b + r'(L + D)} of
 * them, where {@code r'} is the rate the coordinator schedules at. The upstream admits them
 * while that is at most {@code C + rL}. Counted in whole calls, the tightest case is one call
 * right after the upstream's bucket was drained by calls that all came {@code D} late, and the
 * condition comes down to {@code r' <= (C - b + 1) / (1/r + D)}. With the least spare room the
 * rule allows ({@code C - b = b - 1}):
 *
 * <pre>  r' = min(r, b / (1/r + D))</pre>
 *
 * <ul>
 *   <li>burst 1: {@code r' = 1 / (1/r + D)}, each grant {@code D} later than the last: 60/min
 *       with 20 ms is 58.8/min, 3/min is 2.997/min;
 *   <li>burst 2 or more: no margin while {@code D <= (b - 1)/r}, the spare half of the
 *       sub-window takes the lateness (500/min:4 keeps 500/min up to 360 ms); beyond that the
 *       rate drops;
 *   <li>{@link Validation#limit} refuses {@code D >= b/r} (the time the burst takes to refill),
 *       so {@code r'} never falls under {@code r·b/(b + 1)}, half the rate at worst.
 * </ul>
 *
 * A burst set to the whole sub-window above 1 leaves no room for lateness: the formula assumes
 * the rule. Zero jitter gives exactly {@code r}, computed as before, so a limit without jitter
 * is scheduled exactly as it always was.
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

  /**
   * The effective refill rate in units per microsecond for a jitter (see above), computed with
   * the same double operations as the Redis store's script; exactly {@link #perMicro()} for 0.
   */
  double perMicro(long jitterNanos) {
    double rate = perMicro();
    if (jitterNanos > 0) {
      double effective = burst / (period.toNanos() / 1000.0 / amount + jitterNanos / 1000.0);
      if (effective < rate) {
        rate = effective;
      }
    }
    return rate;
  }

  /** The effective amount per period for a jitter: what the coordinator really grants at. */
  public double effectiveAmount(Duration jitter) {
    double effective = perMicro(jitter == null ? 0 : jitter.toNanos());
    // Exactly the amount when the jitter costs nothing (a round trip through the rate may not be).
    return effective == perMicro() ? amount : effective * (period.toNanos() / 1000.0);
  }

  /** The time the burst takes to refill at the configured rate ({@code burst / rate}). */
  public Duration burstRefill() {
    return Duration.ofNanos((long) Math.floor((double) burst * period.toNanos() / amount));
  }

  /** In the syntax {@code limit set --rate} reads: {@code requests=60/min:1}, {@code tokens=500/10s:50}. */
  public String describe() {
    String per = period.equals(Duration.ofSeconds(1)) ? "s"
        : period.equals(Duration.ofMinutes(1)) ? "min"
        : period.equals(Duration.ofHours(1)) ? "h"
        : period.equals(Duration.ofDays(1)) ? "d"
        : Durations.format(period);
    return name + "=" + amount + "/" + per + ":" + burst;
  }

  /** The default burst: one second's worth of the rate, at least 1. */
  public static long defaultBurst(long amount, Duration period) {
    double perSecond = (double) amount * 1_000_000_000L / period.toNanos();
    return Math.max(1, (long) Math.floor(perSecond));
  }
}
