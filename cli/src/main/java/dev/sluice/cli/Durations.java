package dev.sluice.cli;

import dev.sluice.client.HumanDurations;
import java.math.BigDecimal;
import java.time.Duration;
import java.util.Map;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * The command line's face of the one duration syntax ({@link dev.sluice.server.engine.Durations},
 * shared with the HTTP port, buffer definitions and gRPC): a number and a unit, as in
 * {@code 500ms}, {@code 30s}, {@code 5m} or {@code 5min}, {@code 1h}, {@code 1d}; fractions such
 * as {@code 1.5s} too; ISO-8601 ({@code PT30S}) for scripts that already speak it. The same
 * bounds as the server's, so the CLI refuses at once what the server would refuse.
 */
final class Durations {

  static final String EXAMPLES = "e.g. 500ms, 30s, 5m, 1h, 1d";

  /** Unit names (lowercase) to their length. Shared with the rate syntax's PERIOD. */
  static final Map<String, Duration> UNITS = dev.sluice.server.engine.Durations.UNITS;

  private Durations() {}

  /**
   * Parses a duration of 0 to 3650d.
   *
   * @throws IllegalArgumentException saying what is wrong and showing the right form
   */
  static Duration parse(String text) {
    return dev.sluice.server.engine.Durations.parse("", text, dev.sluice.server.engine.Durations.ANY, false);
  }

  /** {@code amount} × {@code unit}, exact to the nanosecond, refusing what does not fit. */
  static Duration times(BigDecimal amount, Duration unit, String text) {
    return dev.sluice.server.engine.Durations.times(amount, unit, "", text, dev.sluice.server.engine.Durations.ANY);
  }

  /**
   * Formats a duration in the syntax {@link #parse} reads, in the largest unit that is exact:
   * {@code 1d}, {@code 90m}, {@code 30s}, {@code 250ms}, {@code 1.5ms}.
   */
  static String format(Duration d) {
    return dev.sluice.server.engine.Durations.format(d);
  }

  /**
   * A time left, for people ({@link HumanDurations}): whole seconds rounded up from 1 s on
   * ({@code 42 s}, {@code 4m 20s}), whole milliseconds below, so it never reads shorter than it is.
   */
  static String formatLeft(com.google.protobuf.Duration d) {
    Duration left = Duration.ofSeconds(d.getSeconds(), d.getNanos());
    if (left.compareTo(Duration.ofSeconds(1)) >= 0) {
      long s = left.getSeconds() + (left.getNano() > 0 ? 1 : 0);
      return HumanDurations.format(Duration.ofSeconds(s));
    }
    long ms = (left.toNanos() + 999_999) / 1_000_000;
    return HumanDurations.format(Duration.ofMillis(ms));
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

  /** {@code pause --for}: the bounds of every pause (more than 0, at most a day), as the server checks them. */
  static final class PauseConverter implements ITypeConverter<Duration> {
    @Override
    public Duration convert(String value) {
      try {
        return dev.sluice.server.engine.Durations.parse("", value, dev.sluice.server.engine.Durations.PAUSE, false);
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException(e.getMessage());
      }
    }
  }
}
