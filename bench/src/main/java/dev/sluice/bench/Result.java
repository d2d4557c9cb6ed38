package dev.sluice.bench;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.HdrHistogram.Histogram;

/**
 * What one scenario measured: one {@link Round} per measured window, so every figure comes with
 * its spread (the median of the windows, and their min and max).
 */
final class Result {

  /** One measured window. Latencies in microseconds; {@code NaN} when not recorded. */
  record Round(double seconds, long ops, double rate, double p50, double p90, double p99, double p999,
      double max, double firstP50, double firstP99, long errors, double othersCpu) {

    /** {@code othersCpu}: share of all cores other processes used in the window (see {@link CpuShare}). */
    static Round of(double seconds, Histogram total, Histogram first, long errors, double othersCpu) {
      long ops = total.getTotalCount();
      boolean hasFirst = first.getTotalCount() > 0;
      return new Round(seconds, ops, ops / seconds,
          micros(total, 50), micros(total, 90), micros(total, 99), micros(total, 99.9),
          ops == 0 ? Double.NaN : total.getMaxValue() / 1e3,
          hasFirst ? micros(first, 50) : Double.NaN, hasFirst ? micros(first, 99) : Double.NaN, errors,
          othersCpu);
    }

    private static double micros(Histogram h, double percentile) {
      return h.getTotalCount() == 0 ? Double.NaN : h.getValueAtPercentile(percentile) / 1e3;
    }
  }

  /** Median and range of one figure over the rounds. */
  record Spread(double median, double min, double max) {
    static Spread of(double[] values) {
      double[] v = Arrays.stream(values).filter(x -> !Double.isNaN(x)).sorted().toArray();
      if (v.length == 0) {
        return new Spread(Double.NaN, Double.NaN, Double.NaN);
      }
      double median = v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
      return new Spread(median, v[0], v[v.length - 1]);
    }

    boolean isNaN() {
      return Double.isNaN(median);
    }
  }

  final String id;
  final String group;
  final String label;
  final String unit;
  String driver = "";
  /** Where the Sluice coordinator of this row ran ("same JVM", "own process"); null for other systems. */
  String coordinator;
  final List<Round> rounds = new ArrayList<>();
  /** Names of the two latencies: the whole operation, and the marked part (if any). */
  String totalName = "latency";
  String firstName = null;
  String firstError;
  /** Set when the scenario could not run or broke; the figures are then absent or partial. */
  String failure;
  /** Scenario-specific facts for the report ("open permits after the stop" ...). */
  final Map<String, String> facts = new LinkedHashMap<>();

  Result(String id, String group, String label, String unit) {
    this.id = id;
    this.group = group;
    this.label = label;
    this.unit = unit;
  }

  /** Forgets a previous attempt's figures, facts and failure. */
  void reset() {
    rounds.clear();
    facts.clear();
    failure = null;
    firstError = null;
  }

  boolean ok() {
    return failure == null && !rounds.isEmpty() && !rate().isNaN() && rate().median() > 0;
  }

  long errors() {
    return rounds.stream().mapToLong(Round::errors).sum();
  }

  long ops() {
    return rounds.stream().mapToLong(Round::ops).sum();
  }

  Spread rate() {
    return Spread.of(rounds.stream().mapToDouble(Round::rate).toArray());
  }

  Spread p50() {
    return Spread.of(rounds.stream().mapToDouble(Round::p50).toArray());
  }

  Spread p90() {
    return Spread.of(rounds.stream().mapToDouble(Round::p90).toArray());
  }

  Spread p99() {
    return Spread.of(rounds.stream().mapToDouble(Round::p99).toArray());
  }

  Spread p999() {
    return Spread.of(rounds.stream().mapToDouble(Round::p999).toArray());
  }

  /** Others' CPU share over the windows; the max is what a reader should check. */
  Spread othersCpu() {
    return Spread.of(rounds.stream().mapToDouble(Round::othersCpu).toArray());
  }

  Spread firstP50() {
    return Spread.of(rounds.stream().mapToDouble(Round::firstP50).toArray());
  }

  Spread firstP99() {
    return Spread.of(rounds.stream().mapToDouble(Round::firstP99).toArray());
  }

  boolean hasFirst() {
    return firstName != null && !firstP50().isNaN();
  }
}
