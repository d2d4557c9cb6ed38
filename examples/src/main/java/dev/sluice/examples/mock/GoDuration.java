package dev.sluice.examples.mock;

import java.time.Duration;

/**
 * Formats a {@link Duration} the way Go's {@code time.Duration.String()} does, which is how OpenAI
 * writes {@code x-ratelimit-reset-*} headers and the wait in its 429 messages: {@code 0s}, {@code
 * 12ms}, {@code 1.5s}, {@code 6m0s}, {@code 16m17.764s}, {@code 1h2m3s}. Below one second the
 * largest fitting unit of ns, µs and ms is used; from one second on, hours and minutes are whole
 * and the seconds carry the fraction, with trailing zeros dropped.
 */
final class GoDuration {

  private static final long NANOS_PER_MICRO = 1_000L;
  private static final long NANOS_PER_MILLI = 1_000_000L;
  private static final long NANOS_PER_SECOND = 1_000_000_000L;

  private GoDuration() {}

  static String format(Duration duration) {
    long nanos = duration.toNanos();
    if (nanos == 0) {
      return "0s";
    }
    StringBuilder out = new StringBuilder();
    if (nanos < 0) {
      out.append('-');
      nanos = -nanos; // Long.MIN_VALUE nanos is ~292 years; toNanos() would have thrown first
    }
    if (nanos < NANOS_PER_MICRO) {
      return out.append(nanos).append("ns").toString();
    }
    if (nanos < NANOS_PER_MILLI) {
      return appendFraction(out, nanos, NANOS_PER_MICRO).append("µs").toString();
    }
    if (nanos < NANOS_PER_SECOND) {
      return appendFraction(out, nanos, NANOS_PER_MILLI).append("ms").toString();
    }
    long hours = nanos / (3600 * NANOS_PER_SECOND);
    long rest = nanos % (3600 * NANOS_PER_SECOND);
    long minutes = rest / (60 * NANOS_PER_SECOND);
    rest %= 60 * NANOS_PER_SECOND;
    if (hours > 0) {
      out.append(hours).append('h');
    }
    if (hours > 0 || minutes > 0) {
      out.append(minutes).append('m');
    }
    return appendFraction(out, rest, NANOS_PER_SECOND).append('s').toString();
  }

  /** Appends {@code value / unit} with its fractional part, trailing zeros removed. */
  private static StringBuilder appendFraction(StringBuilder out, long value, long unit) {
    out.append(value / unit);
    long fraction = value % unit;
    if (fraction != 0) {
      int digits = Long.toString(unit).length() - 1;
      String padded = String.format("%0" + digits + "d", fraction);
      int end = padded.length();
      while (padded.charAt(end - 1) == '0') {
        end--;
      }
      out.append('.').append(padded, 0, end);
    }
    return out;
  }
}
