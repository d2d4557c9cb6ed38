package dev.sluice.cli;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.MessageOrBuilder;
import com.google.protobuf.util.JsonFormat;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import java.io.PrintWriter;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.stream.Collectors;
import picocli.CommandLine.Option;

/** {@code --json}, mixed into every command that prints what it read, and the shared renderers. */
final class Output {

  /**
   * Proto3 JSON mapping, fields with default values included, so a script can rely on every
   * key being present ({@code "paused": false}, {@code "inFlight": "0"}).
   */
  private static final JsonFormat.Printer JSON = JsonFormat.printer().includingDefaultValueFields();

  @Option(names = "--json", description = "Print protobuf JSON instead of text.")
  boolean json;

  static void printJson(PrintWriter out, MessageOrBuilder message) {
    out.println(toJson(message, false));
  }

  static String toJson(MessageOrBuilder message, boolean compact) {
    try {
      return (compact ? JSON.omittingInsignificantWhitespace() : JSON).print(message);
    } catch (InvalidProtocolBufferException e) {
      // Only Any fields with unknown types can fail, and the Admin API has none.
      throw new IllegalStateException("cannot print " + message.getClass().getSimpleName(), e);
    }
  }

  /** A limit as an aligned block, rates in the syntax {@code limit set --rate} reads. */
  static void printLimit(PrintWriter out, Limit limit) {
    Table t = new Table("resource", limit.getResource());
    for (RateDimension r : limit.getRatesList()) {
      t.row("rate", Rates.format(r));
    }
    t.row("concurrency", limit.getConcurrency() == 0 ? "no cap" : limit.getConcurrency());
    t.row("max waiting", limit.getMaxWaiting() == 0 ? "server default" : limit.getMaxWaiting());
    t.row("lease ttl", limit.hasLeaseTtl() ? Durations.format(limit.getLeaseTtl()) : "server default");
    if (limit.hasLearn()) {
      t.row("rates", Learning.describe(limit.getLearn()));
      t.row("learn ceiling", Learning.ceilings(limit));
    }
    t.print(out);
  }

  static String rates(Limit limit) {
    return limit.getRatesCount() == 0
        ? "-"
        : limit.getRatesList().stream().map(Rates::format).collect(Collectors.joining(" "));
  }

  /** A number of tokens: whole numbers as such, others to two decimals. */
  static String number(double d) {
    if (Double.isNaN(d) || Double.isInfinite(d)) {
      return String.valueOf(d);
    }
    return BigDecimal.valueOf(d).setScale(2, RoundingMode.HALF_EVEN).stripTrailingZeros()
        .toPlainString();
  }

  /** A wait in seconds, in a readable unit: {@code 0s}, {@code 12.5ms}, {@code 1.25s}. */
  static String seconds(double s) {
    if (s <= 0 || Double.isNaN(s)) {
      return "0s";
    }
    if (s < 1) {
      return number(s * 1000) + "ms";
    }
    return number(s) + "s";
  }
}
