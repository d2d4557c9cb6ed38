package dev.sluice.client;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.time.Duration;

/**
 * Durations as a person writes them: {@code 218 ms}, {@code 1.5 s}, {@code 42 s},
 * {@code 3m 20s}, {@code 2h 5m}, {@code 3d 4h}. Every message and {@code toString} of Sluice
 * that a person reads (the SDK's, the CLI's, the coordinator's errors) goes through this one
 * formatter; {@link Duration#toString()} ({@code PT0.218620534S}) is for machines.
 *
 * <p>Rounded for reading, not for parsing back: below a millisecond in microseconds, below a
 * second in whole milliseconds, below 10 s to a tenth, then whole seconds, and from a minute on
 * the two largest units.
 */
public final class HumanDurations {

  private HumanDurations() {}

  /** For example {@code 218 ms}, {@code 1.5 s}, {@code 3m 20s}; negative durations get a minus sign. */
  public static String format(Duration d) {
    if (d.isNegative()) {
      // Long.MIN_VALUE seconds has no positive Duration; a nanosecond less reads the same.
      return "-" + format((d.getSeconds() == Long.MIN_VALUE ? d.plusNanos(1) : d).negated());
    }
    long seconds = d.getSeconds();
    int nanos = d.getNano();
    if (seconds == 0 && nanos == 0) {
      return "0 s";
    }
    if (seconds == 0 && nanos < 1_000_000) {
      return Math.max(1, Math.round(nanos / 1000.0)) + " µs";
    }
    if (seconds == 0) {
      long ms = Math.round(nanos / 1e6);
      return ms < 1000 ? ms + " ms" : "1 s";
    }
    if (seconds < 10) {
      BigDecimal s = BigDecimal.valueOf(seconds).add(BigDecimal.valueOf(nanos, 9)).setScale(1, RoundingMode.HALF_UP);
      return s.stripTrailingZeros().toPlainString() + " s";
    }
    long whole = nanos >= 500_000_000 && seconds < Long.MAX_VALUE ? seconds + 1 : seconds;
    if (whole < 60) {
      return whole + " s";
    }
    if (whole < 3600) {
      return pair(whole / 60, "m", whole % 60, "s");
    }
    long minutes = Math.round(whole / 60.0);
    if (minutes < 24 * 60) {
      return pair(minutes / 60, "h", minutes % 60, "m");
    }
    long hours = Math.round(whole / 3600.0);
    return pair(hours / 24, "d", hours % 24, "h");
  }

  /** {@link #format(Duration)} of a count of nanoseconds. */
  public static String formatNanos(long nanos) {
    return format(Duration.ofNanos(nanos));
  }

  private static String pair(long big, String bigUnit, long small, String smallUnit) {
    return small == 0 ? big + bigUnit : big + bigUnit + " " + small + smallUnit;
  }
}
