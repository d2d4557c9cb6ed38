package dev.sluice.cli;

import java.math.BigDecimal;
import java.time.Duration;
import java.time.format.DateTimeParseException;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * The one duration syntax of the command line: a number and a unit, as in {@code 500ms},
 * {@code 30s}, {@code 5m} or {@code 5min}, {@code 1h}, {@code 1d}; fractions such as
 * {@code 1.5s} too. ISO-8601 ({@code PT30S}) is accepted for scripts that already speak it.
 */
final class Durations {

  static final String EXAMPLES = "e.g. 500ms, 30s, 5m, 1h, 1d";

  /** Longest duration the CLI accepts: far beyond any sane timeout, far from overflow. */
  private static final Duration MAX = Duration.ofDays(3650);

  private static final Pattern AMOUNT_AND_UNIT =
      Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([a-z]*)");

  /** Unit names (lowercase) to their length. Shared with the rate syntax's PERIOD. */
  static final Map<String, Duration> UNITS = Map.ofEntries(
      Map.entry("ms", Duration.ofMillis(1)),
      Map.entry("msec", Duration.ofMillis(1)),
      Map.entry("millis", Duration.ofMillis(1)),
      Map.entry("millisecond", Duration.ofMillis(1)),
      Map.entry("milliseconds", Duration.ofMillis(1)),
      Map.entry("s", Duration.ofSeconds(1)),
      Map.entry("sec", Duration.ofSeconds(1)),
      Map.entry("secs", Duration.ofSeconds(1)),
      Map.entry("second", Duration.ofSeconds(1)),
      Map.entry("seconds", Duration.ofSeconds(1)),
      Map.entry("m", Duration.ofMinutes(1)),
      Map.entry("min", Duration.ofMinutes(1)),
      Map.entry("mins", Duration.ofMinutes(1)),
      Map.entry("minute", Duration.ofMinutes(1)),
      Map.entry("minutes", Duration.ofMinutes(1)),
      Map.entry("h", Duration.ofHours(1)),
      Map.entry("hr", Duration.ofHours(1)),
      Map.entry("hrs", Duration.ofHours(1)),
      Map.entry("hour", Duration.ofHours(1)),
      Map.entry("hours", Duration.ofHours(1)),
      Map.entry("d", Duration.ofDays(1)),
      Map.entry("day", Duration.ofDays(1)),
      Map.entry("days", Duration.ofDays(1)));

  private Durations() {}

  /**
   * Parses a duration.
   *
   * @throws IllegalArgumentException saying what is wrong and showing the right form
   */
  static Duration parse(String text) {
    String t = text == null ? "" : text.trim().toLowerCase(Locale.ROOT);
    if (t.isEmpty()) {
      throw new IllegalArgumentException("empty duration; write a number and a unit, " + EXAMPLES);
    }
    if (t.startsWith("-")) {
      throw new IllegalArgumentException("'" + text + "' is negative; durations are >= 0, " + EXAMPLES);
    }
    if (t.startsWith("p")) {
      return parseIso(text.trim());
    }
    Matcher m = AMOUNT_AND_UNIT.matcher(t);
    if (!m.matches()) {
      throw new IllegalArgumentException(
          "'" + text + "' is not a duration; write a number and a unit, " + EXAMPLES);
    }
    BigDecimal amount = new BigDecimal(m.group(1));
    String unitName = m.group(2);
    if (unitName.isEmpty()) {
      if (amount.signum() == 0) {
        return Duration.ZERO;
      }
      throw new IllegalArgumentException(
          "'" + text + "' has no unit; write e.g. " + m.group(1) + "s or " + m.group(1) + "ms");
    }
    Duration unit = UNITS.get(unitName);
    if (unit == null) {
      throw new IllegalArgumentException("unknown unit '" + unitName + "' in '" + text
          + "'; use ms, s, m (or min), h or d, " + EXAMPLES);
    }
    return times(amount, unit, text);
  }

  /** {@code amount} × {@code unit}, exact to the nanosecond, refusing what does not fit. */
  static Duration times(BigDecimal amount, Duration unit, String text) {
    BigDecimal nanos = amount.multiply(BigDecimal.valueOf(unit.toNanos()));
    if (nanos.compareTo(BigDecimal.valueOf(MAX.toNanos())) > 0) {
      throw new IllegalArgumentException("'" + text + "' is too long; the most is 3650d");
    }
    if (nanos.stripTrailingZeros().scale() > 0) {
      throw new IllegalArgumentException("'" + text + "' is finer than a nanosecond");
    }
    return Duration.ofNanos(nanos.longValueExact());
  }

  private static Duration parseIso(String text) {
    Duration d;
    try {
      d = Duration.parse(text.toUpperCase(Locale.ROOT));
    } catch (DateTimeParseException e) {
      throw new IllegalArgumentException(
          "'" + text + "' is not a duration; write a number and a unit, " + EXAMPLES);
    }
    if (d.isNegative()) {
      throw new IllegalArgumentException("'" + text + "' is negative; durations are >= 0");
    }
    if (d.compareTo(MAX) > 0) {
      throw new IllegalArgumentException("'" + text + "' is too long; the most is 3650d");
    }
    return d;
  }

  /**
   * Formats a duration in the syntax {@link #parse} reads, in the largest unit that is exact:
   * {@code 1d}, {@code 90m}, {@code 30s}, {@code 250ms}, {@code 1.5ms}.
   */
  static String format(Duration d) {
    if (d.isZero()) {
      return "0s";
    }
    String sign = d.isNegative() ? "-" : "";
    Duration a = d.abs();
    long nanos = a.getNano();
    long seconds = a.getSeconds();
    if (nanos == 0) {
      if (seconds % 86_400 == 0) {
        return sign + seconds / 86_400 + "d";
      }
      if (seconds % 3_600 == 0) {
        return sign + seconds / 3_600 + "h";
      }
      if (seconds % 60 == 0) {
        return sign + seconds / 60 + "m";
      }
      return sign + seconds + "s";
    }
    if (seconds == 0) {
      BigDecimal ms = BigDecimal.valueOf(nanos).movePointLeft(6).stripTrailingZeros();
      return sign + ms.toPlainString() + "ms";
    }
    BigDecimal s = BigDecimal.valueOf(seconds).add(BigDecimal.valueOf(nanos).movePointLeft(9));
    return sign + s.stripTrailingZeros().toPlainString() + "s";
  }

  /**
   * A time left, for people: whole seconds (rounded up) from 1s on, whole milliseconds below.
   */
  static String formatLeft(com.google.protobuf.Duration d) {
    Duration left = Duration.ofSeconds(d.getSeconds(), d.getNanos());
    if (left.compareTo(Duration.ofSeconds(1)) >= 0) {
      long s = left.getSeconds() + (left.getNano() > 0 ? 1 : 0);
      return format(Duration.ofSeconds(s));
    }
    long ms = (left.toNanos() + 999_999) / 1_000_000;
    return format(Duration.ofMillis(ms));
  }

  /** Formats a protobuf duration; see {@link #format(Duration)}. */
  static String format(com.google.protobuf.Duration d) {
    return format(Duration.ofSeconds(d.getSeconds(), d.getNanos()));
  }

  static com.google.protobuf.Duration toProto(Duration d) {
    return com.google.protobuf.Duration.newBuilder()
        .setSeconds(d.getSeconds())
        .setNanos(d.getNano())
        .build();
  }

  /** The picocli face of {@link #parse}. */
  static final class Converter implements ITypeConverter<Duration> {
    @Override
    public Duration convert(String value) {
      try {
        return parse(value);
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException(e.getMessage());
      }
    }
  }
}
