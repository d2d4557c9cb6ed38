package dev.sluice.bench;

import java.util.Locale;

/**
 * The lines that put two rows of one run side by side: a ratio means something only between
 * figures measured in the same run, on the same machine, minutes apart.
 */
final class Ratios {

  /** Two figures of the same thing (echo at the start and at the end of a run) may differ this much. */
  static final double ECHO_SPREAD_ALLOWED = 0.10;

  private Ratios() {}

  /** How far apart two figures of the same thing are: (larger − smaller) / smaller. */
  static double spread(double a, double b) {
    return (Math.max(a, b) - Math.min(a, b)) / Math.min(a, b);
  }

  /**
   * {@code row} against {@code base}: its throughput as a multiple of the base's, and its
   * latencies (the marked part when both have one, e.g. acquire alone) as multiples of the
   * base's, e.g. {@code with a key vs open: 0.93× the permits/s (27 900 vs 30 000/s); acquire
   * p50 1.05×, p99 1.10×}.
   */
  static String versus(String what, Result row, Result base) {
    boolean first = row.hasFirst() && base.hasFirst();
    String latency = first ? row.firstName : "latency";
    double p50 = first ? row.firstP50().median() / base.firstP50().median() : row.p50().median() / base.p50().median();
    double p99 = first ? row.firstP99().median() / base.firstP99().median() : row.p99().median() / base.p99().median();
    return what + ": " + Fmt.ratio(row.rate().median() / base.rate().median()) + " the " + base.unit + " ("
        + Fmt.rate(row.rate().median()) + " " + row.unit + " vs " + Fmt.rate(base.rate().median()) + " " + base.unit
        + "); " + latency + " p50 " + Fmt.ratio(p50) + ", p99 " + Fmt.ratio(p99);
  }

  /**
   * The echo at the start and again at the end of the run: if they differ by more than {@link
   * #ECHO_SPREAD_ALLOWED}, the JVM was still warming up (or the machine changed) while the first
   * rows were measured.
   */
  static String echoSpread(Result start, Result end) {
    double s = start.rate().median();
    double e = end.rate().median();
    double spread = spread(s, e);
    String verdict;
    if (spread <= ECHO_SPREAD_ALLOWED) {
      verdict = "within " + Fmt.percent(ECHO_SPREAD_ALLOWED);
    } else if (e > s) {
      verdict = "over " + Fmt.percent(ECHO_SPREAD_ALLOWED) + ", faster at the end: the JIT was still at work while"
          + " the first rows ran; lengthen --jvm-warmup and --warmup";
    } else {
      verdict = "over " + Fmt.percent(ECHO_SPREAD_ALLOWED) + ", slower at the end: not the warm-up; the machine got"
          + " busier (see the others' CPU) or this JVM's state changed during the run";
    }
    return String.format(Locale.ROOT, "echo unary, %s: %s %s at the start, %s at the end of the run: spread %s (%s)",
        start.driver, Fmt.rate(s), start.unit, Fmt.rate(e), Fmt.percent(spread), verdict);
  }
}
