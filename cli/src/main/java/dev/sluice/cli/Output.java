package dev.sluice.cli;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.MessageOrBuilder;
import com.google.protobuf.util.JsonFormat;
import dev.sluice.client.HumanDurations;
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
    printLimit(out, limit, null);
  }

  /**
   * A limit as a table; with {@code available} (its stats), each held dimension shows what the
   * live permits hold now.
   */
  static void printLimit(PrintWriter out, Limit limit, java.util.Map<String, Double> available) {
    Table t = new Table("resource", limit.getResource());
    boolean jitter = limit.hasJitter() && (limit.getJitter().getSeconds() != 0 || limit.getJitter().getNanos() != 0);
    for (RateDimension r : limit.getRatesList()) {
      t.row("rate", Rates.format(r) + (jitter
          ? "  effective " + effective(r.getEffectiveAmount()) + "/"
              + Rates.period(java.time.Duration.ofSeconds(r.getPeriod().getSeconds(), r.getPeriod().getNanos()))
              + " for jitter " + human(limit.getJitter())
          : ""));
    }
    t.row("jitter", jitter ? human(limit.getJitter()) : "0 (rates scheduled as set)");
    t.row("concurrency", limit.getConcurrency() == 0 ? "no cap" : limit.getConcurrency());
    new java.util.TreeMap<>(limit.getHoldsMap()).forEach((dim, cap) -> {
      Double free = available == null ? null : available.get(dim);
      t.row("held", dim + " at most " + cap + " at once"
          + (free == null ? "" : ", held now " + Math.round(cap - free) + " (" + Math.round(free) + " free)"));
    });
    t.row("max waiting", limit.getMaxWaiting() == 0 ? "server default" : limit.getMaxWaiting());
    t.row("lease ttl", limit.hasLeaseTtl() ? Durations.format(limit.getLeaseTtl()) : "server default");
    Tenants.rows(t, limit);
    if (limit.hasLearn()) {
      t.row("rates", Learning.describe(limit.getLearn()));
      t.row("learn ceiling", Learning.ceilings(limit));
    }
    t.row("managed by", managedBy(limit));
    t.print(out);
  }

  /** "limits file limits.yaml (sha256 0123456789ab)", or "hand (limit set)" for a limit no file manages. */
  static String managedBy(Limit limit) {
    if (!limit.hasManagedBy()) {
      return "hand (sluice limit set)";
    }
    var o = limit.getManagedBy();
    String file = "limits file " + o.getFile() + " (sha256 " + o.getSha256() + ")";
    return o.getOverridden() ? "hand, since forced; before: " + file + " (its next apply puts it back)" : file;
  }

  /**
   * An effective amount, rounded down (never shown above what is granted) with at least three
   * significant digits: 58.8, 2.99, 199999.3.
   */
  static String effective(double amount) {
    BigDecimal d = BigDecimal.valueOf(amount);
    int whole = d.setScale(0, RoundingMode.FLOOR).precision();
    int digits = Math.max(3, (d.compareTo(BigDecimal.ONE) < 0 ? 0 : whole) + 1);
    return d.round(new java.math.MathContext(digits, RoundingMode.FLOOR)).stripTrailingZeros().toPlainString();
  }

  /** A jitter for people: {@code 20 ms}, {@code 1.5 s}. */
  static String human(com.google.protobuf.Duration d) {
    java.time.Duration j = java.time.Duration.ofSeconds(d.getSeconds(), d.getNanos());
    String f = Durations.format(j);
    return f.replaceAll("^([0-9.]+)([a-z]+)$", "$1 $2");
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

  /** A wait in seconds, as a person writes it ({@link HumanDurations}): {@code 0 s}, {@code 13 ms}, {@code 1.3 s}. */
  static String seconds(double s) {
    if (s <= 0 || Double.isNaN(s)) {
      return "0 s";
    }
    return HumanDurations.format(java.time.Duration.ofNanos(Math.round(Math.min(s, 1e9) * 1e9)));
  }
}
