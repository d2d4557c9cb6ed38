package dev.sluice.cli;

import dev.sluice.proto.v1.RateDimension;
import java.math.BigDecimal;
import java.time.Duration;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * The rate syntax {@code DIM=AMOUNT/PERIOD[:BURST]}, e.g. {@code requests=500/min} or
 * {@code tokens=200000/min:4000}. PERIOD is a unit ({@code s, sec, second, min, minute, h,
 * hour, d, day}, plurals and {@code ms} too), optionally with a number in front: {@code 10s},
 * {@code 5min}. A missing BURST is sent as 0, which the server fills with its default.
 */
final class Rates {

  static final String FORM = "DIM=AMOUNT/PERIOD[:BURST]";
  static final String EXAMPLE = "requests=500/min or tokens=200000/min:4000";

  private static final Pattern DIMENSION = Pattern.compile("[A-Za-z0-9._-]{1,64}");
  private static final Pattern WHOLE = Pattern.compile("\\d+");
  private static final Pattern PERIOD = Pattern.compile("(\\d+(?:\\.\\d+)?)?([a-z]+)");
  private static final Duration MIN_PERIOD = Duration.ofMillis(1);
  private static final Duration MAX_PERIOD = Duration.ofDays(1);

  private Rates() {}

  /**
   * Parses one rate.
   *
   * @throws IllegalArgumentException one line: what is wrong, the form, an example
   */
  static RateDimension parse(String text) {
    String t = text == null ? "" : text.trim();
    int eq = t.indexOf('=');
    if (eq < 0) {
      throw bad(text, "missing '=' between the dimension and the amount");
    }
    String name = t.substring(0, eq).trim();
    if (!DIMENSION.matcher(name).matches()) {
      throw bad(text, name.isEmpty()
          ? "missing dimension name before '='"
          : "dimension name '" + name + "' must be 1-64 characters of [A-Za-z0-9._-]");
    }
    String rest = t.substring(eq + 1);
    int slash = rest.indexOf('/');
    if (slash < 0) {
      throw bad(text, "missing '/PERIOD' after the amount");
    }
    boolean usd = name.equals(USD);
    long amount = usd ? dollars(text, "amount", rest.substring(0, slash).trim())
        : positive(text, "amount", rest.substring(0, slash).trim());
    String periodAndBurst = rest.substring(slash + 1);
    int colon = periodAndBurst.indexOf(':');
    String periodText = (colon < 0 ? periodAndBurst : periodAndBurst.substring(0, colon)).trim();
    Duration period = period(text, periodText);
    String burstText = colon < 0 ? null : periodAndBurst.substring(colon + 1).trim();
    long burst = burstText == null ? 0 : usd ? dollars(text, "burst", burstText) : positive(text, "burst", burstText);
    return RateDimension.newBuilder()
        .setName(name)
        .setAmount(amount)
        .setPeriod(Durations.toProto(period))
        .setBurst(burst)
        .build();
  }

  /** The cost dimension, counted in micro-dollars and typed in dollars. */
  static final String USD = "usd";
  private static final Pattern DOLLARS = Pattern.compile("\\$?(\\d+(\\.\\d*)?|\\.\\d+)");

  /** Dollars with up to six decimals, as micro-dollars, at least one. */
  private static long dollars(String text, String what, String typed) {
    String d = typed.replace("_", "");
    if (d.isEmpty()) {
      throw bad(text, "missing " + what);
    }
    if (!DOLLARS.matcher(d).matches()) {
      throw bad(text, what + " '" + typed + "' is not an amount of US dollars (usd is typed in dollars, such as"
          + " usd=50/day or usd=0.25/min)");
    }
    BigDecimal micros = new BigDecimal(d.replace("$", "")).movePointRight(6);
    if (micros.stripTrailingZeros().scale() > 0) {
      throw bad(text, what + " '" + typed + "' has more than six decimals: usd counts whole micro-dollars");
    }
    if (micros.signum() <= 0) {
      throw bad(text, what + " must be at least 0.000001 (one micro-dollar), got " + typed);
    }
    try {
      return micros.longValueExact();
    } catch (ArithmeticException e) {
      throw bad(text, what + " '" + typed + "' is too large");
    }
  }

  /**
   * Says on {@code err} when a usd rate was given without a burst: the default, one second's
   * worth, is a tiny amount of a daily budget, and a call costing more could never fit.
   */
  static void warnDefaultUsdBurst(java.io.PrintWriter err, java.util.List<RateDimension> given,
      dev.sluice.proto.v1.Limit stored) {
    for (RateDimension r : given) {
      if (r.getName().equals(USD) && r.getBurst() == 0) {
        stored.getRatesList().stream().filter(s -> s.getName().equals(USD)).findFirst().ifPresent(s ->
            err.println("note: " + format(r) + " has the default burst, $" + dollars(s.getBurst()) + " (one second's"
                + " worth): a call costing more can never fit; give the most one call may cost, e.g. "
                + format(r) + ":1"));
      }
    }
  }

  /** Micro-dollars as dollars: {@code 50}, {@code 0.25}, {@code 0.000001}. */
  static String dollars(long micros) {
    return BigDecimal.valueOf(micros).movePointLeft(6).stripTrailingZeros().toPlainString();
  }

  /** Micro-dollars (a bucket's fractional level) as dollars, to the micro-dollar. */
  static String dollars(double micros) {
    return BigDecimal.valueOf(micros).movePointLeft(6).setScale(6, java.math.RoundingMode.HALF_EVEN)
        .stripTrailingZeros().toPlainString();
  }

  /** A value of dimension {@code dim} as people read it: usd in dollars, others as they are. */
  static String amount(String dim, double value) {
    return USD.equals(dim) ? "$" + dollars(value) : Output.number(value);
  }

  private static long positive(String text, String what, String digits) {
    String d = digits.replace("_", "");
    if (d.isEmpty()) {
      throw bad(text, "missing " + what);
    }
    if (d.startsWith("-") && WHOLE.matcher(d.substring(1)).matches()) {
      throw bad(text, what + " must be at least 1, got " + digits);
    }
    if (!WHOLE.matcher(d).matches()) {
      throw bad(text, what + " '" + digits + "' is not a whole number");
    }
    long value;
    try {
      value = Long.parseLong(d);
    } catch (NumberFormatException e) {
      throw bad(text, what + " '" + digits + "' is too large");
    }
    if (value < 1) {
      throw bad(text, what + " must be at least 1, got " + digits
          + ("burst".equals(what) ? " (leave out ':BURST' for the server default)" : ""));
    }
    return value;
  }

  private static Duration period(String text, String periodText) {
    if (periodText.isEmpty()) {
      throw bad(text, "missing period after '/'");
    }
    Matcher m = PERIOD.matcher(periodText.toLowerCase(Locale.ROOT));
    Duration unit = m.matches() ? Durations.UNITS.get(m.group(2)) : null;
    if (unit == null) {
      throw bad(text, "unknown period '" + periodText
          + "'; use s, sec, second, min, minute, h, hour, d or day, optionally with a number"
          + " in front (10s, 5min)");
    }
    Duration period;
    try {
      period = m.group(1) == null
          ? unit
          : Durations.times(new BigDecimal(m.group(1)), unit, periodText);
    } catch (IllegalArgumentException e) {
      throw bad(text, "period " + e.getMessage());
    }
    if (period.compareTo(MIN_PERIOD) < 0 || period.compareTo(MAX_PERIOD) > 0) {
      throw bad(text, "period '" + periodText + "' must be between 1ms and 1d");
    }
    return period;
  }

  private static IllegalArgumentException bad(String text, String problem) {
    return new IllegalArgumentException(
        "bad rate '" + text + "': " + problem + "; expected " + FORM + ", e.g. " + EXAMPLE);
  }

  /** Formats a rate in the syntax {@link #parse} reads: {@code requests=500/min:10}. */
  static String format(RateDimension r) {
    boolean usd = r.getName().equals(USD);
    StringBuilder sb = new StringBuilder()
        .append(r.getName()).append('=').append(usd ? dollars(r.getAmount()) : r.getAmount()).append('/')
        .append(period(Duration.ofSeconds(r.getPeriod().getSeconds(), r.getPeriod().getNanos())));
    if (r.getBurst() > 0) {
      sb.append(':').append(usd ? dollars(r.getBurst()) : r.getBurst());
    }
    return sb.toString();
  }

  static String period(Duration p) {
    if (p.equals(Duration.ofSeconds(1))) {
      return "s";
    }
    if (p.equals(Duration.ofMinutes(1))) {
      return "min";
    }
    if (p.equals(Duration.ofHours(1))) {
      return "h";
    }
    if (p.equals(Duration.ofDays(1))) {
      return "d";
    }
    return Durations.format(p);
  }

  /** The picocli face of {@link #parse}. */
  static final class Converter implements ITypeConverter<RateDimension> {
    @Override
    public RateDimension convert(String value) {
      try {
        return parse(value);
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException(e.getMessage());
      }
    }
  }
}
