package dev.sluice.cli;

import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.GetStatsResponse;
import dev.sluice.proto.v1.ResourceStats;
import java.io.PrintWriter;
import java.time.Duration;
import java.time.LocalTime;
import java.time.temporal.ChronoUnit;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code sluice stats [NAME] [--watch [--interval D]]}. */
@Command(name = "stats", mixinStandardHelpOptions = true,
    description = "Live state and counters of one resource, or of all.")
final class StatsCommand implements Callable<Integer> {
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
      description = "Print again every --interval until interrupted; with --json, one compact"
          + " JSON document per line.")
  private boolean watch;
  @Option(names = "--interval", paramLabel = "DURATION", defaultValue = "2s",
      converter = Durations.Converter.class,
      description = "Time between two prints with --watch (default ${DEFAULT-VALUE}).")
  private Duration interval;

  @Override
  public Integer call() {
    if (interval.compareTo(Duration.ofMillis(100)) < 0) {
      throw new ParameterException(spec.commandLine(), "--interval must be at least 100ms");
    }
    PrintWriter out = spec.commandLine().getOut();
    GetStatsRequest request = GetStatsRequest.newBuilder().setResource(resource).build();
    try (AdminClient admin = client.connect()) {
      if (!watch) {
        print(out, admin.call(stub -> stub.getStats(request)), false);
        return 0;
      }
      // Watching ends with Ctrl-C, or an interrupt when embedded: both are a normal end.
      try {
        while (true) {
          GetStatsResponse stats = admin.call(stub -> stub.getStats(request));
          if (!output.json) {
            out.println("-- " + LocalTime.now().truncatedTo(ChronoUnit.SECONDS) + " --");
          }
          print(out, stats, true);
          out.flush();
          Thread.sleep(interval.toMillis());
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

  private void print(PrintWriter out, GetStatsResponse stats, boolean watching) {
    if (output.json) {
      out.println(Output.toJson(stats, watching));
      return;
    }
    if (stats.getResourcesCount() == 0) {
      out.println("no resources");
      return;
    }
    Table t = new Table("RESOURCE", "AVAILABLE", "IN FLIGHT", "WAITING I/D/B", "GRANTED",
        "TIMED OUT", "CANCELLED", "REJECTED", "WAIT P50", "WAIT P99", "PAUSED");
    for (ResourceStats s : stats.getResourcesList()) {
      t.row(s.getResource(), available(s), s.getInFlight(), waiting(s), s.getGranted(),
          s.getTimedOut(), s.getCancelled(), rejected(s), Output.seconds(s.getWaitP50Seconds()),
          Output.seconds(s.getWaitP99Seconds()), paused(s));
    }
    t.print(out);
  }

  private static String available(ResourceStats s) {
    if (s.getAvailableCount() == 0) {
      return "-";
    }
    return new TreeMap<>(s.getAvailableMap()).entrySet().stream()
        .map(e -> e.getKey() + "=" + Output.number(e.getValue()))
        .collect(Collectors.joining(" "));
  }

  private static String waiting(ResourceStats s) {
    Map<String, Long> w = s.getWaitingMap();
    return w.getOrDefault("interactive", 0L) + "/" + w.getOrDefault("default", 0L) + "/"
        + w.getOrDefault("batch", 0L);
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
