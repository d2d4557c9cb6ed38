package dev.sluice.bench;

import java.util.Locale;

/** Number formats shared by the console table, BENCHMARKS.md and the charts. */
final class Fmt {

  private Fmt() {}

  /** 45210.3 -> "45 210"; small fractional rates keep one decimal; whole numbers (counts) never do. */
  static String rate(double v) {
    if (Double.isNaN(v)) {
      return "-";
    }
    if (v < 100 && v != Math.rint(v)) {
      return String.format(Locale.ROOT, "%.1f", v);
    }
    String digits = Long.toString(Math.round(v));
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < digits.length(); i++) {
      if (i > 0 && (digits.length() - i) % 3 == 0) {
        b.append('\u2009'); // thin space: 45 210
      }
      b.append(digits.charAt(i));
    }
    return b.toString();
  }

  /** Plain-ASCII variant for the console. */
  static String rateAscii(double v) {
    return rate(v).replace('\u2009', ' ');
  }

  /** A latency given in microseconds: "142 µs", "1.42 ms", "5.01 s". */
  static String micros(double us) {
    if (Double.isNaN(us)) {
      return "-";
    }
    if (us < 10) {
      return String.format(Locale.ROOT, "%.1f µs", us);
    }
    if (us < 1000) {
      return String.format(Locale.ROOT, "%.0f µs", us);
    }
    if (us < 1_000_000) {
      return String.format(Locale.ROOT, us < 10_000 ? "%.2f ms" : "%.1f ms", us / 1e3);
    }
    return String.format(Locale.ROOT, "%.2f s", us / 1e6);
  }

  static String ratio(double r) {
    return Double.isNaN(r) ? "-" : String.format(Locale.ROOT, "%.2f×", r);
  }

  static String percent(double fraction) {
    return String.format(Locale.ROOT, "%.1f %%", fraction * 100);
  }

  static String mib(double bytes) {
    return String.format(Locale.ROOT, "%.0f MiB", bytes / (1 << 20));
  }

  static String bytes(double b) {
    return Double.isNaN(b) ? "-" : String.format(Locale.ROOT, "%.0f B", b);
  }

  static String seconds(double s) {
    return String.format(Locale.ROOT, "%.1f s", s);
  }

  /** Median with the range of the windows: "45 210 [44 800–46 100]". */
  static String spreadRate(Result.Spread s) {
    if (s.isNaN()) {
      return "-";
    }
    return rate(s.median()) + " [" + rate(s.min()) + "–" + rate(s.max()) + "]";
  }

  static String spreadMicros(Result.Spread s) {
    if (s.isNaN()) {
      return "-";
    }
    String min = micros(s.min());
    String max = micros(s.max());
    String minUnit = min.substring(min.indexOf(' '));
    if (minUnit.equals(max.substring(max.indexOf(' ')))) {
      min = min.substring(0, min.indexOf(' '));
    }
    return micros(s.median()) + " [" + min + "–" + max + "]";
  }
}
