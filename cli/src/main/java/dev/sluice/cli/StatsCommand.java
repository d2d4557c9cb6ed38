package dev.sluice.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.GetStatsResponse;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.ResourceStats;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalTime;
import java.time.temporal.ChronoUnit;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.function.LongSupplier;
import java.util.stream.Collectors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code sluice stats [NAME] [--by tenant] [--watch [--interval D]]}: a table, or with {@code
 * --watch} a live view redrawn in place every second (on a terminal) with per-second rates and
 * utilization; with {@code --json}, one JSON document per line per refresh. {@code --by tenant}
 * prints one row per tenant instead ({@link TenantStatsView}).
 */
@Command(name = "stats", mixinStandardHelpOptions = true,
    description = "Live state and counters of one resource, or of all. With --watch, a live view"
        + " refreshed every --interval (on a terminal it redraws in place) with grants/s, refusals/s"
        + " and utilization per dimension since the previous refresh. With --by tenant, one row per"
        + " tenant of a resource shared between tenants.")
final class StatsCommand implements Callable<Integer> {

  /** How the watch loop waits; tests swap in a fake clock. */
  interface Sleeper {
    void sleep(long millis) throws InterruptedException;
  }

  // Test hooks: the monotonic clock rates are measured with, and the wait between refreshes.
  static volatile LongSupplier clock = System::nanoTime;
  static volatile Sleeper sleeper = Thread::sleep;
  /** Whether to redraw in place; null: when a console is attached. */
  static volatile Boolean terminal;

  private static final ObjectMapper JSON = new ObjectMapper();

  @Spec
  private CommandSpec spec;
  @Mixin
  private ClientOptions client;
  @Mixin
  private Output output;
  @Parameters(index = "0", arity = "0..1", paramLabel = "NAME", defaultValue = "",
      description = "One resource; all when left out.")
  private String resource;
  @Option(names = {"-w", "--watch"},
      description = "Refresh every --interval until interrupted (Ctrl-C); with --json, one compact JSON"
          + " document per line: {time, intervalSeconds, stats, rates}.")
  private boolean watch;
  @Option(names = "--interval", paramLabel = "DURATION", defaultValue = "1s",
      converter = Durations.Converter.class,
      description = "Time between two prints with --watch (default ${DEFAULT-VALUE}).")
  private Duration interval;
  @Option(names = "--by", paramLabel = "tenant",
      description = "--by tenant: one row per tenant of the resource (those its limit names, default, and other"
          + " for the rest) with its weight, floor, cap, recent share against its fair share, use, waiters and"
          + " estimated wait per lane.")
  private String by;

  @Override
  public Integer call() {
    if (interval.compareTo(Duration.ofMillis(100)) < 0) {
      throw new ParameterException(spec.commandLine(), "--interval must be at least 100ms");
    }
    if (by != null && !by.equals(TenantStatsView.BY_TENANT)) {
      throw new ParameterException(spec.commandLine(), "--by '" + by + "' is not a way to split stats: the one"
          + " accepted value is '" + TenantStatsView.BY_TENANT + "' (sluice stats NAME --by tenant)");
    }
    PrintWriter out = spec.commandLine().getOut();
    GetStatsRequest request = GetStatsRequest.newBuilder().setResource(resource).build();
    try (AdminClient admin = client.connect()) {
      if (!watch) {
        GetStatsResponse stats = PoolCommand.statsOf(resource, () -> admin.call(stub -> stub.getStats(request)));
        if (by != null) {
          printByTenant(out, stats);
        } else {
          print(out, stats, false);
        }
        return 0;
      }
      // Watching ends with Ctrl-C, or an interrupt when embedded: both are a normal end.
      boolean redraw = !output.json && (terminal != null ? terminal : System.console() != null);
      long every = interval.toNanos();
      long next = clock.getAsLong();
      Map<String, ResourceStats> previous = new HashMap<>();
      long previousAt = 0;
      try {
        while (true) {
          GetStatsResponse stats = PoolCommand.statsOf(resource, () -> admin.call(stub -> stub.getStats(request)));
          long now = clock.getAsLong();
          Map<String, Rates> rates = rates(stats, previous, previousAt == 0 ? 0 : (now - previousAt) / 1e9);
          if (output.json) {
            out.println(jsonLine(stats, rates));
          } else {
            if (redraw) {
              out.print("\033[H\033[2J"); // home, clear: the view stays in place
            }
            out.println("sluice stats " + (resource.isEmpty() ? "(all resources)" : resource) + " · "
                + client.describeTarget() + " · every " + Durations.format(interval) + " · "
                + LocalTime.now().truncatedTo(ChronoUnit.SECONDS) + (redraw ? "  (Ctrl-C to stop)" : ""));
            if (by != null) {
              printByTenant(out, stats);
            } else {
              printWatched(out, stats, rates);
            }
          }
          out.flush();
          previous.clear();
          for (ResourceStats r : stats.getResourcesList()) {
            previous.put(r.getResource(), r);
          }
          previousAt = now;
          // Fixed rate: the next refresh is due one interval after the last one was due.
          next += every;
          long wait = next - clock.getAsLong();
          if (wait < 0) {
            next = clock.getAsLong(); // fell behind (a slow call): start again from now
            wait = 0;
          }
          sleeper.sleep(wait / 1_000_000);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return 0;
      } catch (CliFailure e) {
        if (Thread.currentThread().isInterrupted()) { // grpc cancels a call on interrupt
          return 0;
        }
        throw e;
      }
    }
  }

  /** What changed since the previous refresh, per second, and utilization per dimension. */
  record Rates(double granted, double rejected, double timedOut, Map<String, Double> utilization) {}

  static Map<String, Rates> rates(GetStatsResponse stats, Map<String, ResourceStats> previous, double seconds) {
    Map<String, Rates> out = new LinkedHashMap<>();
    for (ResourceStats r : stats.getResourcesList()) {
      ResourceStats p = previous.get(r.getResource());
      Map<String, Double> util = new LinkedHashMap<>();
      if (p == null || seconds <= 0) {
        out.put(r.getResource(), new Rates(Double.NaN, Double.NaN, Double.NaN, util));
        continue;
      }
      for (RateDimension d : r.getLimit().getRatesList()) {
        double perSecond = d.getAmount() / (d.getPeriod().getSeconds() + d.getPeriod().getNanos() / 1e9);
        double used = r.getUsedOrDefault(d.getName(), 0);
        double before = p.getUsedOrDefault(d.getName(), 0);
        double taken = used >= before ? used - before : used; // below: the counter restarted
        util.put(d.getName(), perSecond > 0 ? taken / (perSecond * seconds) : 0);
      }
      out.put(r.getResource(), new Rates(
          delta(r.getGranted(), p.getGranted()) / seconds,
          delta(sum(r.getRejectedMap()), sum(p.getRejectedMap())) / seconds,
          delta(r.getTimedOut(), p.getTimedOut()) / seconds,
          util));
    }
    return out;
  }

  private static double delta(long now, long before) {
    return now >= before ? now - before : now; // the node restarted: count from zero
  }

  private static long sum(Map<String, Long> m) {
    return m.values().stream().mapToLong(Long::longValue).sum();
  }

  private String jsonLine(GetStatsResponse stats, Map<String, Rates> rates) {
    ObjectNode o = JSON.createObjectNode();
    o.put("time", Instant.now().toString());
    o.put("intervalSeconds", interval.toNanos() / 1e9);
    try {
      o.set("stats", JSON.readTree(Output.toJson(stats, true)));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    ObjectNode all = o.putObject("rates");
    rates.forEach((name, r) -> {
      ObjectNode x = all.putObject(name);
      if (Double.isNaN(r.granted())) {
        x.putNull("grantedPerSecond"); // the first refresh has nothing to compare with
        x.putNull("rejectedPerSecond");
        x.putNull("timedOutPerSecond");
      } else {
        x.put("grantedPerSecond", r.granted());
        x.put("rejectedPerSecond", r.rejected());
        x.put("timedOutPerSecond", r.timedOut());
      }
      ObjectNode u = x.putObject("utilization");
      r.utilization().forEach(u::put);
    });
    return o.toString();
  }

  private void printWatched(PrintWriter out, GetStatsResponse stats, Map<String, Rates> rates) {
    if (stats.getResourcesCount() == 0) {
      out.println("no resources");
      return;
    }
    Table t = new Table("RESOURCE", "GRANTED/S", "UTILIZATION", "AVAILABLE NOW", "IN FLIGHT", "WAITING",
        "GRANTED", "REJECTED/S", "TIMED OUT/S", "WAIT P50", "WAIT P99", "PAUSED");
    for (ResourceStats s : stats.getResourcesList()) {
      Rates r = rates.get(s.getResource());
      boolean first = r == null || Double.isNaN(r.granted());
      t.row(s.getResource(), first ? "-" : Output.number(r.granted()),
          first ? "-" : r.utilization().entrySet().stream()
              .map(e -> e.getKey() + "=" + Math.round(e.getValue() * 100) + "%").collect(Collectors.joining(" ")),
          available(s), s.getInFlight(), waiting(s), s.getGranted(),
          first ? "-" : Output.number(r.rejected()), first ? "-" : Output.number(r.timedOut()),
          Output.seconds(s.getWaitP50Seconds()), Output.seconds(s.getWaitP99Seconds()), paused(s));
    }
    t.print(out);
    out.println(UTILIZATION_LEGEND);
    out.println(LEGEND);
  }

  /** What the watched view's UTILIZATION means, and why it can pass 100 %. */
  static final String UTILIZATION_LEGEND = "UTILIZATION: tokens taken since the last refresh over what the rate"
      + " allows in that time; above 100 % the burst saved up while idle was spent, or a settle charged more"
      + " than was estimated (debt).";

  /** What the columns of both tables hold. */
  static final String LEGEND = "AVAILABLE NOW: tokens in each bucket (below 0: debt from a settle)."
      + " WAITING: callers in line, by lane. REJECTED: refused at once, by reason. WAIT P50/P99: recent waits"
      + " of granted acquires.";

  private void print(PrintWriter out, GetStatsResponse stats, boolean watching) {
    if (output.json) {
      out.println(Output.toJson(stats, watching));
      return;
    }
    if (stats.getResourcesCount() == 0) {
      out.println("no resources");
      return;
    }
    Table t = new Table("RESOURCE", "AVAILABLE NOW", "IN FLIGHT", "WAITING", "GRANTED",
        "TIMED OUT", "CANCELLED", "REJECTED", "WAIT P50", "WAIT P99", "PAUSED");
    for (ResourceStats s : stats.getResourcesList()) {
      t.row(s.getResource(), available(s), s.getInFlight(), waiting(s), s.getGranted(),
          s.getTimedOut(), s.getCancelled(), rejected(s), Output.seconds(s.getWaitP50Seconds()),
          Output.seconds(s.getWaitP99Seconds()), paused(s));
    }
    t.print(out);
    printSpend(out, stats);
    for (ResourceStats s : stats.getResourcesList()) {
      if (TenantStatsView.shared(s)) {
        out.println(TenantStatsView.summary(s));
      }
    }
    out.println(LEGEND);
  }

  /**
   * {@code --by tenant}: the tenant table of each resource shared between tenants (with {@code
   * --json}, those resources' stats, tenants included). A resource without tenants is an error
   * that says so, rather than an empty table.
   */
  private void printByTenant(PrintWriter out, GetStatsResponse stats) {
    GetStatsResponse.Builder shared = GetStatsResponse.newBuilder();
    stats.getResourcesList().stream().filter(TenantStatsView::shared).forEach(shared::addResources);
    if (shared.getResourcesCount() == 0) {
      throw new CliFailure(resource.isEmpty()
          ? "no resource is shared between tenants: give a limit --share, --floor or --cap, or acquire with a"
              + " tenant (AcquireOptions.tenant, \"tenant\" over HTTP)"
          : "resource '" + resource + "' has no tenants: its limit names none (--share, --floor, --cap) and no"
              + " acquire named one; `sluice stats " + resource + "` shows it whole", null);
    }
    if (output.json) {
      out.println(Output.toJson(shared, watch));
      return;
    }
    for (ResourceStats s : shared.getResourcesList()) {
      TenantStatsView.print(out, s);
    }
    out.println(TenantStatsView.LEGEND);
  }

  private static String available(ResourceStats s) {
    if (s.getAvailableCount() == 0) {
      return "-";
    }
    return new TreeMap<>(s.getAvailableMap()).entrySet().stream()
        .map(e -> e.getKey() + "=" + dev.sluice.cli.Rates.amount(e.getKey(), e.getValue()))
        .collect(Collectors.joining(" "));
  }

  /**
   * One line per resource that counts usd: what it has spent (its usd used, net of settles,
   * since its live state started), in dollars.
   */
  private static void printSpend(PrintWriter out, GetStatsResponse stats) {
    for (ResourceStats s : stats.getResourcesList()) {
      if (s.getUsedMap().containsKey(dev.sluice.cli.Rates.USD)) {
        out.println("spent on " + s.getResource() + ": " + dev.sluice.cli.Rates.amount(dev.sluice.cli.Rates.USD, s.getUsedMap().get(dev.sluice.cli.Rates.USD))
            + " (usd used since its counters started)");
      }
    }
  }

  /** {@code 0}, or the total and its lanes: {@code 5 (interactive 2, batch 3)}. */
  static String waiting(ResourceStats s) {
    Map<String, Long> w = s.getWaitingMap();
    long total = 0;
    StringBuilder lanes = new StringBuilder();
    for (String lane : new String[] {"interactive", "default", "batch"}) {
      long n = w.getOrDefault(lane, 0L);
      if (n > 0) {
        total += n;
        lanes.append(lanes.length() == 0 ? "" : ", ").append(lane).append(' ').append(n);
      }
    }
    return total == 0 ? "0" : total + " (" + lanes + ")";
  }

  private static String rejected(ResourceStats s) {
    long total = s.getRejectedMap().values().stream().mapToLong(Long::longValue).sum();
    if (total == 0) {
      return "0";
    }
    return total + " (" + new TreeMap<>(s.getRejectedMap()).entrySet().stream()
        .filter(e -> e.getValue() != 0)
        .map(e -> e.getKey() + "=" + e.getValue())
        .collect(Collectors.joining(" ")) + ")";
  }

  private static String paused(ResourceStats s) {
    if (!s.getPaused()) {
      return "no";
    }
    return s.hasPausedFor() ? "for " + Durations.formatLeft(s.getPausedFor()) : "until resume";
  }
}
