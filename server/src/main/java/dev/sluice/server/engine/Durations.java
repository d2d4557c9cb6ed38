package dev.sluice.server.engine;

import java.math.BigDecimal;
import java.time.Duration;
import java.time.format.DateTimeParseException;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The one duration syntax of Sluice, on every path (CLI flags, HTTP bodies and query strings,
 * buffer definitions, gRPC durations): a number and a unit ({@code 500ms}, {@code 30s},
 * {@code 5m} or {@code 5min}, {@code 1h}, {@code 1d}, fractions such as {@code 1.5s}), or
 * ISO-8601 ({@code PT30S}); on the HTTP port also a plain number of seconds.
 *
 * <p>Every duration is checked against {@link Bounds}: never negative, never beyond
 * {@link #LONGEST} (so nothing overflows), and each field's own range. A refusal names the
 * field, the value, the range and an example.
 */
public final class Durations {

  /** Longest duration anything accepts: far beyond any sane setting, far from overflow. */
  public static final Duration LONGEST = Duration.ofDays(3650);

  /** Distinct durations {@link #shared} remembers at most; when full it starts over. */
  static final int MAX_SHARED = 256;

  private static final java.util.concurrent.ConcurrentHashMap<Duration, Duration> SHARED =
      new java.util.concurrent.ConcurrentHashMap<>();

  /**
   * One instance per distinct value, for what a million limits each hold (their lease, their
   * jitter: mostly the same few values); null stays null. {@link Duration} is immutable, so
   * sharing is invisible but for the 24 bytes each copy would cost. At most {@link #MAX_SHARED}
   * are remembered.
   */
  static Duration shared(Duration d) {
    if (d == null) {
      return null;
    }
    Duration s = SHARED.get(d);
    if (s != null) {
      return s;
    }
    if (SHARED.size() >= MAX_SHARED) {
      SHARED.clear(); // odd values (a fuzzer's) never crowd out the common ones for good
    }
    s = SHARED.putIfAbsent(d, d);
    return s == null ? d : s;
  }

  /** How many distinct durations {@link #shared} remembers now (tests). */
  static int sharedCount() {
    return SHARED.size();
  }

  /** The range a field accepts, an example of it, and what to say about a zero it refuses. */
  public record Bounds(Duration min, Duration max, String example, String zeroHint) {

    /** Any duration from {@code min} to {@code max}. */
    public static Bounds of(Duration min, Duration max, String example) {
      return new Bounds(min, max, example, null);
    }

    /** The same bounds, telling a zero that is refused why. */
    public Bounds zero(String hint) {
      return new Bounds(min, max, example, hint);
    }

    String describe() {
      return "a duration from " + format(min) + " to " + format(max) + ", e.g. " + example;
    }
  }

  /** 0 to {@link #LONGEST}: the syntax alone. */
  public static final Bounds ANY = Bounds.of(Duration.ZERO, LONGEST, "30s");

  /** An admin pause: more than 0 (leave it out to pause until resumed), at most a day. */
  public static final Bounds PAUSE = Bounds.of(Duration.ofMillis(1), Duration.ofDays(1), "30s")
      .zero("a pause of 0 does nothing: leave the duration out to pause until resumed");

  private static final Pattern AMOUNT_AND_UNIT = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([a-z]*)");
  private static final Pattern PLAIN_NUMBER = Pattern.compile("[+-]?\\d+(?:\\.\\d+)?(?:[eE][+-]?\\d+)?");

  /** Unit names (lowercase) to their length. */
  public static final Map<String, Duration> UNITS = Map.ofEntries(
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
   * Parses {@code text} for {@code field} and checks it against {@code bounds}.
   *
   * @param bareSeconds whether a plain number means seconds (the HTTP port's JSON and query
   *     strings); elsewhere only {@code 0} may go without a unit
   * @throws IllegalArgumentException naming the field, the value, the range and an example
   */
  public static Duration parse(String field, String text, Bounds bounds, boolean bareSeconds) {
    String t = text == null ? "" : text.trim().toLowerCase(Locale.ROOT);
    if (t.isEmpty()) {
      throw refuse(field, text, "is empty", bounds);
    }
    if (t.startsWith("-")) {
      throw refuse(field, text, "is negative", bounds);
    }
    if (t.startsWith("p")) {
      Duration d;
      try {
        d = Duration.parse(t.toUpperCase(Locale.ROOT));
      } catch (DateTimeParseException e) {
        throw refuse(field, text, "is not a duration (or too long to be one)", bounds);
      }
      return check(field, text, d, bounds);
    }
    try {
      if (bareSeconds && PLAIN_NUMBER.matcher(t).matches()) {
        return seconds(field, text, new BigDecimal(t), bounds);
      }
    } catch (NumberFormatException e) {
      throw refuse(field, text, "is not a number of seconds", bounds); // an exponent beyond any scale
    }
    Matcher m = AMOUNT_AND_UNIT.matcher(t);
    if (!m.matches()) {
      throw refuse(field, text, "is not a duration", bounds);
    }
    BigDecimal amount = new BigDecimal(m.group(1));
    String unitName = m.group(2);
    if (unitName.isEmpty()) {
      if (amount.signum() == 0) {
        return check(field, text, Duration.ZERO, bounds);
      }
      throw refuse(field, text, "has no unit (write " + m.group(1) + "s or " + m.group(1) + "ms)", bounds);
    }
    Duration unit = UNITS.get(unitName);
    if (unit == null) {
      throw refuse(field, text, "has an unknown unit '" + unitName + "' (use ms, s, m or min, h, d)", bounds);
    }
    return check(field, text, times(amount, unit, field, text, bounds), bounds);
  }

  private static Duration seconds(String field, String shown, BigDecimal seconds, Bounds bounds) {
    if (seconds.signum() < 0) {
      throw refuse(field, shown, "is negative", bounds);
    }
    return check(field, shown, times(seconds, Duration.ofSeconds(1), field, shown, bounds), bounds);
  }

  /** A duration already in hand (a gRPC field), checked against {@code bounds}. */
  public static Duration check(String field, String shown, Duration d, Bounds bounds) {
    if (d.isNegative()) {
      throw refuse(field, shown, "is negative", bounds);
    }
    if (d.isZero() && bounds.min().compareTo(Duration.ZERO) > 0) {
      throw refuse(field, shown, bounds.zeroHint() != null ? "is 0: " + bounds.zeroHint() : "is 0", bounds);
    }
    if (d.compareTo(bounds.min()) < 0) {
      throw refuse(field, shown, "is too short", bounds);
    }
    if (d.compareTo(bounds.max()) > 0) {
      throw refuse(field, shown, "is too long", bounds);
    }
    return d;
  }

  /** {@code amount} × {@code unit}, exact to the nanosecond; refuses what is longer than {@link #LONGEST}. */
  public static Duration times(BigDecimal amount, Duration unit, String field, String shown, Bounds bounds) {
    BigDecimal nanos = amount.multiply(BigDecimal.valueOf(unit.toNanos()));
    if (nanos.compareTo(BigDecimal.valueOf(LONGEST.toNanos())) > 0) {
      throw refuse(field, shown, "is too long", bounds);
    }
    if (nanos.stripTrailingZeros().scale() > 0) {
      throw refuse(field, shown, "is finer than a nanosecond", bounds);
    }
    return Duration.ofNanos(nanos.longValueExact());
  }

  private static IllegalArgumentException refuse(String field, String shown, String problem, Bounds bounds) {
    return new IllegalArgumentException((field.isEmpty() ? "" : field + " ") + "'" + shown + "' " + problem + ": give "
        + bounds.describe());
  }

  /**
   * Formats a duration in the syntax {@link #parse} reads, in the largest unit that is exact:
   * {@code 1d}, {@code 90m}, {@code 30s}, {@code 250ms}, {@code 1.5ms}.
   */
  public static String format(Duration d) {
    if (d.isZero()) {
      return "0s";
    }
    if (d.getSeconds() == Long.MIN_VALUE && d.getNano() == 0) {
      // The one duration abs() cannot take: 2^63 seconds has no positive Duration.
      return "-" + Long.toUnsignedString(Long.MIN_VALUE) + "s";
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
}
