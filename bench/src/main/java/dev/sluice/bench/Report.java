package dev.sluice.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;

/**
 * Writes {@code BENCHMARKS.md} and the two charts from one run: the machine, every figure with
 * its spread, the targets as ratios against the ceiling measured in the same run, and
 * PASS/MISS with the size of each miss.
 */
final class Report {

  static final String COMMAND = "java -jar bench/target/sluice-bench.jar";
  static final String JMH_COMMAND = "java -jar bench/target/sluice-bench.jar jmh";

  enum Status { PASS, MISS, DISTURBED, NA }

  /** One target of the issue, evaluated on this run. */
  record Target(String what, String measured, Status status, String detail) {
    String line() {
      return switch (status) {
        case PASS -> "PASS  " + what + ": " + measured;
        case MISS -> "MISS  " + what + ": " + measured + " (" + detail + ")";
        case DISTURBED -> "noisy " + what + ": " + measured + " (" + detail + ")";
        case NA -> "n/a   " + what + ": " + detail;
      };
    }
  }

  private static final long GIB = 1L << 30;
  private static final long MIB = 1L << 20;

  private final Options o;
  private final Machine machine;
  private final Instant started;
  private final Duration took;
  private final List<Result> results;
  private final Map<String, Result> byId = new LinkedHashMap<>();
  private final Map<String, String> peerNotes;
  private final Scale.Resources resources;
  private final Scale.Waiters waiters;
  private final String scaleFailure;
  private final List<double[]> warmupLaps;
  private final List<Target> targets;

  /**
   * {@code warmupLaps}: per lap of the JVM warm-up, echo calls/s, Sluice permits/s and the share
   * of the machine other processes took.
   */
  Report(Options o, Machine machine, Instant started, Duration took, List<Result> results,
      Map<String, String> peerNotes, Scale.Resources resources, Scale.Waiters waiters, String scaleFailure,
      List<double[]> warmupLaps) {
    this.o = o;
    this.machine = machine;
    this.started = started;
    this.took = took;
    this.results = results;
    for (Result r : results) {
      byId.put(r.id, r);
    }
    this.peerNotes = peerNotes;
    this.resources = resources;
    this.waiters = waiters;
    this.scaleFailure = scaleFailure;
    this.warmupLaps = warmupLaps;
    this.targets = targets();
  }

  List<String> targetLines() {
    List<String> lines = new ArrayList<>();
    lines.add("Targets (ratios within this run):");
    for (Target t : targets) {
      lines.add("  " + t.line());
    }
    return lines;
  }

  /** Writes the report and the charts; returns the report's path. */
  Path write() throws IOException {
    Path dir = o.out().resolve("docs").resolve("bench");
    Files.createDirectories(dir);
    String subtitle = "Sluice bench, " + date() + ", " + machine.cores() + " cores shared by client, servers and Redis";
    Files.writeString(dir.resolve("throughput.svg"), Svg.throughput(chartable(), subtitle), StandardCharsets.UTF_8);
    Files.writeString(dir.resolve("latency.svg"), Svg.latency(chartable().stream()
        .filter(r -> !r.id.equals("contended.rate")).toList(), subtitle), StandardCharsets.UTF_8);
    Path report = o.out().resolve("BENCHMARKS.md");
    // The soak section comes from its own (10 min) command: carried over, not rerun.
    String soak = Soak.existingSection(report);
    Files.writeString(report, markdown() + (soak.isEmpty() ? "" : "\n" + soak), StandardCharsets.UTF_8);
    return report;
  }

  /** Everything with a throughput, except the contended rate (its rate is the limit, by design). */
  private List<Result> chartable() {
    return results.stream().filter(Result::ok).filter(r -> !r.id.equals("contended.rate")).toList();
  }

  private String date() {
    return DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm 'UTC'", Locale.ROOT).withZone(ZoneOffset.UTC).format(started);
  }

  // ---------------------------------------------------------------------------------------------
  // Targets

  private Optional<Result> ok(String id) {
    Result r = byId.get(id);
    return r != null && r.ok() ? Optional.of(r) : Optional.empty();
  }

  private List<Target> targets() {
    List<Target> t = new ArrayList<>();
    Optional<Result> echoStart = ok("echo.unary.n.direct");
    Optional<Result> echoEnd = ok("echo.unary.n.direct.end");
    String warm = "warm-up: echo unary calls/s at " + o.workers() + " in flight, at the start and at the end of the"
        + " run, within " + Fmt.percent(Ratios.ECHO_SPREAD_ALLOWED) + " of each other";
    if (echoStart.isPresent() && echoEnd.isPresent()) {
      double a = echoStart.get().rate().median();
      double z = echoEnd.get().rate().median();
      double spread = Ratios.spread(a, z);
      String measured = Fmt.percent(spread) + " (" + Fmt.rate(a) + " then " + Fmt.rate(z) + " calls/s)";
      t.add(judged(spread <= Ratios.ECHO_SPREAD_ALLOWED ? new Target(warm, measured, Status.PASS, "")
          : new Target(warm, measured, Status.MISS, z > a ? "faster at the end: lengthen --jvm-warmup and --warmup"
              : "slower at the end: the machine or this JVM changed during the run, not the warm-up"),
          echoStart.get(), echoEnd.get()));
    } else {
      t.add(na(warm, "needs group ceiling"));
    }
    Optional<Result> echo1 = ok("echo.unary.1");
    Optional<Result> echoN = ok("echo.unary.n.direct");
    Optional<Result> mem1 = ok("memory.1");
    Optional<Result> memN = ok("memory.n");

    if (echo1.isPresent() && mem1.isPresent()) {
      double a = mem1.get().firstP50().median();
      double e = echo1.get().p50().median();
      t.add(judged(atMost("uncontended acquire p50 ≤ 1.3× echo unary p50 (1 in flight)", a / e, 1.3,
          Fmt.micros(a) + " vs " + Fmt.micros(e)), mem1.get(), echo1.get()));
      double a99 = mem1.get().firstP99().median();
      double e99 = echo1.get().p99().median();
      t.add(judged(atMost("uncontended acquire p99 ≤ 2× echo unary p99 (1 in flight)", a99 / e99, 2.0,
          Fmt.micros(a99) + " vs " + Fmt.micros(e99)), mem1.get(), echo1.get()));
    } else {
      t.add(na("uncontended acquire p50 ≤ 1.3× / p99 ≤ 2× echo unary (1 in flight)", "needs groups ceiling and memory"));
    }
    if (echoN.isPresent() && memN.isPresent()) {
      double s = memN.get().rate().median();
      double e = echoN.get().rate().median();
      String session = ok("memory.n.session").map(r -> "; with the session stream "
          + Fmt.rate(r.rate().median()) + "/s, " + Fmt.ratio(r.rate().median() / e)).orElse("");
      t.add(judged(atLeast("permits/s at " + o.workers() + " workers ≥ 0.4× echo unary calls/s at " + o.workers()
          + " in flight", s / e, 0.4, Fmt.rate(s) + " vs " + Fmt.rate(e) + "/s, unary calls" + session),
          memN.get(), echoN.get()));
    } else {
      t.add(na("permits/s at " + o.workers() + " workers ≥ 0.4× echo unary", "needs groups ceiling and memory"));
    }
    Optional<Result> memS = ok("memory.n.session");
    Optional<Result> echoS = ok("echo.stream.n.direct");
    if (memS.isPresent() && echoS.isPresent()) {
      double s = memS.get().rate().median();
      double e = echoS.get().rate().median();
      t.add(judged(atLeast("streaming session: permits/s at " + o.workers() + " workers ≥ 0.3× echo stream"
          + " messages/s at " + o.workers() + " in flight", s / e, 0.3, Fmt.rate(s) + " permits/s vs "
          + Fmt.rate(e) + " msgs/s"), memS.get(), echoS.get()));
    } else {
      t.add(na("streaming session ≥ 0.3× echo stream messages/s", "needs groups ceiling and memory"));
    }

    // The memory store against an in-memory token server: twice its rate. The Redis store against
    // the fastest Redis limiter, which grants without a queue: at least its rate (issue 21).
    peerTarget(t, "sentinel", List.of("sluice-memory", "sluice-memory-session"), "Sentinel's cluster token server", 2.0);
    peerTarget(t, "bucket4j", List.of("sluice-redis", "sluice-redis-session"), "Bucket4j-Lettuce", 1.0);
    // The same bar for the opt-in slice mode (FIFO within a node, rate x hold of slack): shown apart,
    // never in place of the default mode's.
    peerTarget(t, "bucket4j", List.of("sluice-redis-sliced-session"), "Bucket4j-Lettuce, Sluice Redis in slice mode",
        1.0);

    Optional<Result> red3 = ok("redis3.n");
    if (red3.isPresent() && memN.isPresent()) {
      double r = red3.get().rate().median();
      double m = memN.get().rate().median();
      t.add(judged(atLeast("Redis store, one hot key, 3 nodes ≥ 0.5× memory store (permits/s, " + o.workers()
          + " in flight)", r / m, 0.5, Fmt.rate(r) + " vs " + Fmt.rate(m) + "/s"), red3.get(), memN.get()));
    } else {
      t.add(na("Redis store, 3 nodes ≥ 0.5× memory store", "needs groups memory and redis"));
    }
    Optional<Result> sliced3 = ok("redis3.n.sliced");
    if (sliced3.isPresent() && memN.isPresent()) {
      double r = sliced3.get().rate().median();
      double m = memN.get().rate().median();
      t.add(judged(atLeast("the same in slice mode (opt-in: FIFO within a node, grants may pass the limit by"
          + " rate × " + LoadGen.SLICE_HOLD + "), 3 nodes ≥ 0.5× memory store", r / m, 0.5,
          Fmt.rate(r) + " vs " + Fmt.rate(m) + "/s"), sliced3.get(), memN.get()));
    }

    if (resources != null && resources.failure() == null) {
      double per = resources.bytesPerResource();
      t.add(atMost("1 M resources configured in ≤ 1 GiB heap", per * 1_000_000 / GIB, 1.0,
          Fmt.mib(per * 1_000_000) + " = " + Fmt.bytes(per) + " per configured resource × 1 M"
              + (resources.configured() != 1_000_000 ? "; measured on " + Fmt.rate(resources.configured()) : "")));
      double live = resources.bytesPerLiveResource();
      t.add(atMost("the same 1 M resources, each used once (live state built), in ≤ 1 GiB heap",
          live * 1_000_000 / GIB, 1.0, Fmt.mib(live * 1_000_000) + " = " + Fmt.bytes(live)
              + " per used resource × 1 M; measured on " + Fmt.rate(resources.live())));
    } else {
      t.add(na("1 M resources in ≤ 1 GiB heap", resources == null ? "scale not run"
          + (scaleFailure != null ? ": " + scaleFailure : "") : resources.failure()));
    }
    if (waiters != null && waiters.failure() == null) {
      double bytes = waiters.bytesPerWaiter() * 100_000.0;
      int grew = waiters.threadsAfter() - waiters.threadsBefore();
      Target heap = atMost("100 k parked waiters in ≤ 512 MiB heap", bytes / (512 * MIB), 1.0,
          Fmt.mib(bytes) + " = " + Fmt.bytes(waiters.bytesPerWaiter()) + " per waiter × 100 k"
              + (waiters.parked() != 100_000 ? "; measured on " + Fmt.rate(waiters.parked()) : ""));
      t.add(heap);
      t.add(new Target("no thread per waiter", "threads " + waiters.threadsBefore() + " → " + waiters.threadsAfter()
          + " while parking " + Fmt.rate(waiters.parked()), grew < 5 ? Status.PASS : Status.MISS,
          grew + " threads more"));
    } else {
      t.add(na("100 k parked waiters in ≤ 512 MiB, no thread per waiter", waiters == null ? "scale not run"
          + (scaleFailure != null ? ": " + scaleFailure : "") : waiters.failure()));
    }
    return t;
  }

  /** Sluice ≥ {@code factor} × the peer's permits/s at the many-workers point, at equal or better p99. */
  private void peerTarget(List<Target> t, String peerPrefix, List<String> sluiceNames, String peerTitle,
      double factor) {
    // Sluice's best variant (unary or session) against the peer's best.
    Optional<Result> sluice = sluiceNames.stream().map(n -> ok("peer." + n + ".n")).flatMap(Optional::stream)
        .max((a, b) -> Double.compare(a.rate().median(), b.rate().median()));
    String sluiceName = sluice.map(r -> r.label).orElse(String.join(" / ", sluiceNames));
    String what = "≥ " + Fmt.ratio(factor) + " the permits/s of " + peerTitle + " (" + sluiceName + ", " + o.workers()
        + " threads, one hot key) at equal or better p99";
    // The peer's best variant (e.g. Bucket4j with and without batching): the strictest comparison.
    Optional<Result> peer = results.stream()
        .filter(r -> r.group.equals("peers") && r.id.startsWith("peer." + peerPrefix) && r.id.endsWith(".n"))
        .filter(Result::ok)
        .max((a, b) -> Double.compare(a.rate().median(), b.rate().median()));
    if (sluice.isEmpty() || peer.isEmpty()) {
      boolean tried = results.stream().anyMatch(r -> r.id.startsWith("peer." + peerPrefix));
      t.add(na(what, peer.isEmpty() ? (tried ? "the peer failed in this run" : "peer not available in this build")
          : sluiceName + " did not run"));
      return;
    }
    double s = sluice.get().rate().median();
    double p = peer.get().rate().median();
    double s99 = sluice.get().p99().median();
    double p99 = peer.get().p99().median();
    double ratio = s / p;
    String measured = Fmt.ratio(ratio) + " (" + Fmt.rate(s) + " vs " + Fmt.rate(p) + " permits/s, "
        + peer.get().label + "); p99 " + Fmt.micros(s99) + " vs " + Fmt.micros(p99)
        + ok(LoadGen.ECHO_BATCHED_THREADS).map(e -> "; the bar, " + Fmt.rate(factor * p) + "/s, is "
            + Fmt.ratio(factor * p / e.rate().median()) + " the bare transport on this driver (echo batched as the"
            + " session, " + Fmt.rate(e.rate().median()) + " ops/s), Sluice " + Fmt.ratio(s / e.rate().median()))
        .orElse("");
    boolean rateOk = ratio >= factor;
    boolean p99Ok = s99 <= p99;
    String detail = (rateOk ? "" : "throughput short by " + Fmt.percent(1 - ratio / factor) + " (needs "
        + Fmt.ratio(factor) + ")")
        + (!rateOk && !p99Ok ? "; " : "")
        + (p99Ok ? "" : "p99 worse by " + Fmt.percent(s99 / p99 - 1));
    t.add(judged(new Target(what, measured, rateOk && p99Ok ? Status.PASS : Status.MISS, detail), sluice.get(),
        peer.get()));
  }

  /**
   * A target whose figures were taken while other processes took more than 10 % of the machine
   * (after the retries) is not judged: the ratio is shown, the verdict withheld.
   */
  private static Target judged(Target t, Result... inputs) {
    for (Result r : inputs) {
      double others = r.othersCpu().max();
      if (others > LoadGen.DISTURBED) {
        return new Target(t.what(), t.measured(), Status.DISTURBED, String.format(Locale.ROOT,
            "other processes took %.0f %% of the machine while '%s, %s' was measured; rerun on a quiet machine",
            others * 100, r.label, r.driver));
      }
    }
    return t;
  }

  private static Target atMost(String what, double value, double limit, String detail) {
    String measured = Fmt.ratio(value) + " (" + detail + ")";
    return value <= limit ? new Target(what, measured, Status.PASS, "")
        : new Target(what, measured, Status.MISS, "over by " + Fmt.percent(value / limit - 1) + ": needs ≤ "
            + Fmt.ratio(limit));
  }

  private static Target atLeast(String what, double value, double limit, String detail) {
    String measured = Fmt.ratio(value) + " (" + detail + ")";
    return value >= limit ? new Target(what, measured, Status.PASS, "")
        : new Target(what, measured, Status.MISS, "short by " + Fmt.percent(1 - value / limit) + ": needs ≥ "
            + Fmt.ratio(limit));
  }

  private static Target na(String what, String why) {
    return new Target(what, "", Status.NA, why);
  }

  // ---------------------------------------------------------------------------------------------
  // Markdown

  private String markdown() {
    StringBuilder b = new StringBuilder();
    b.append("# Sluice benchmarks\n\n");
    b.append("<!-- Generated by dev.sluice.bench.LoadGen: do not edit by hand, rerun the command. -->\n");
    b.append("> **Generated file.** Written by `").append(COMMAND).append(o.quick() ? " --quick" : "")
        .append("` on ").append(date()).append(" (the run took ").append(minutes(took)).append("), commit `")
        .append(machine.commit()).append("`. Rerun to refresh; see [How to run](#how-to-run).\n\n");
    if (o.quick()) {
      b.append("**This is a `--quick` run: windows are short and the spread wide. Use the full run for figures to"
          + " quote.**\n\n");
    }
    b.append("**Machine:** ").append(machine.cores()).append(" cores (").append(machine.cpu()).append("), ")
        .append(machine.ramBytes() < 0 ? "?" : Fmt.mib(machine.ramBytes()).replace(" MiB", "") + " MiB")
        .append(" RAM; ").append(machine.os()).append("; ").append(machine.jvm()).append(", max heap ")
        .append(Fmt.mib(machine.maxHeap())).append(", GC ").append(machine.gc()).append(". Load average (1 min)"
            + " when the run started: ").append(String.format(Locale.ROOT, "%.2f", machine.loadAverage()))
        .append(", when it ended: ").append(String.format(Locale.ROOT, "%.2f",
            java.lang.management.ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage()))
        .append(".\n\n");
    b.append("**Noise.** The load generator, the coordinator(s), Redis and every peer share these ")
        .append(machine.cores()).append(" cores: a client thread and a server thread compete for the same CPU,"
            + " so absolute figures are lower than on separate machines and swing with anything else running."
            + " The ratios are the point: each one divides two figures measured minutes apart in the same JVM."
            + " The column **others' CPU** is the largest share of the machine (all cores) that processes other"
            + " than this JVM and its redis-server took in any measured window of the scenario (from"
            + " `/proc/stat`); in bold above 10 %, where the figure was disturbed by other work on the box. "
            + (o.noiseRetries() > 0 ? "Such a scenario is measured again, up to " + o.noiseRetries()
                + " times after a 5 s pause; a" : "Such a scenario was not measured again (`--noise-retries 0`); a")
            + " target whose figures stayed disturbed is shown but not judged.\n\n");
    b.append("**Method.** Closed loop: each worker (a thread, or an async slot) starts its next operation when"
        + " the previous one ends. Every scenario runs a warm-up of ").append(LoadGen.secs(o.warmup()))
        .append(" (discarded), then ").append(o.rounds()).append(" back-to-back measured windows of ")
        .append(LoadGen.secs(o.round())).append(". Every figure is the **median window**, with the [min–max]"
            + " of the windows as its spread. Throughput = operations completed in a window / its length;"
            + " latencies are per operation, recorded in HdrHistogram (3 significant digits). The windows are"
            + " consecutive in one JVM: they show the jitter within a run, not the run-to-run spread (rerun"
            + " for that).\n\n");
    b.append("**Warm-up.** ").append(warmupText()).append("\n\n");
    b.append("**Coordinators:** ").append(o.placement().describe()).append("; the column *coordinator* says"
        + " where each row's Sluice ran (\"same JVM\" or \"own process\"; \"–\" for other systems).\n\n");

    b.append("## Targets\n\n");
    b.append("From the issue; every ratio divides two figures of this run.\n\n");
    b.append("| target | measured | result |\n|---|---|---|\n");
    for (Target t : targets) {
      b.append("| ").append(t.what()).append(" | ").append(t.measured().isEmpty() ? "–" : t.measured()).append(" | ")
          .append(switch (t.status()) {
            case PASS -> "**PASS**";
            case MISS -> "**MISS**: " + t.detail();
            case DISTURBED -> "**not judged**: " + t.detail();
            case NA -> "n/a: " + t.detail();
          }).append(" |\n");
    }
    b.append("\n![Throughput per scenario](docs/bench/throughput.svg)\n\n");
    b.append("![Latency p50 and p99 per scenario](docs/bench/latency.svg)\n\n");

    ceilingSection(b);
    memorySection(b);
    contendedSection(b);
    redisSection(b);
    keysSection(b);
    httpSection(b);
    peersSection(b);
    scaleSection(b);
    jmhSection(b);
    howToRun(b);
    return b.toString();
  }

  /** The JVM warm-up's laps, and how the echo at the end of the run compares with the one at the start. */
  private String warmupText() {
    StringBuilder w = new StringBuilder();
    if (warmupLaps.isEmpty()) {
      w.append("No JVM warm-up before the first scenario (`--jvm-warmup 0s`); each scenario still warms up for ")
          .append(LoadGen.secs(o.warmup())).append(".");
    } else {
      w.append("Before the first scenario, at least ").append(LoadGen.secs(o.jvmWarmup()))
          .append(" and at most ").append(LoadGen.secs(o.jvmWarmupMax()))
          .append(o.jvmWarmup().equals(Options.DEFAULT_JVM_WARMUP) && o.warmup().equals(Options.DEFAULT_WARMUP)
              ? " (the defaults, with " + LoadGen.secs(Options.DEFAULT_WARMUP) + " per scenario; how they were"
                  + " chosen is in docs/benchmarks.md)" : "")
          .append(" of laps of ")
          .append(LoadGen.secs(LoadGen.WARMUP_LAP)).append(" echo unary, then ").append(LoadGen.secs(LoadGen.WARMUP_LAP))
          .append(" Sluice memory store, ").append(o.workers()).append(" in flight (not in the tables). Echo calls/s per"
              + " lap: ");
      double others = 0;
      for (int i = 0; i < warmupLaps.size(); i++) {
        w.append(i == 0 ? "" : ", ").append(Fmt.rate(warmupLaps.get(i)[0]));
        others = Math.max(others, warmupLaps.get(i)[2]);
      }
      w.append(" (other processes took up to ").append(String.format(Locale.ROOT, "%.0f %%", others * 100))
          .append(" of the machine in a lap): ").append(LoadGen.plateau(warmupLaps) ? "the last 3 laps agree within " + Fmt.percent(LoadGen.PLATEAU) + " (plateau)."
              : "no plateau by `--jvm-warmup-max` " + LoadGen.secs(o.jvmWarmupMax()) + " (the echo still moving,"
                  + " or other processes took over 10 % of the machine): the first rows may be low.");
    }
    Optional<Result> start = ok("echo.unary.n.direct");
    Optional<Result> end = ok("echo.unary.n.direct.end");
    if (start.isPresent() && end.isPresent()) {
      w.append(" The echo measured again after the other groups: ").append(Ratios.echoSpread(start.get(), end.get()))
          .append(".");
    }
    return w.toString();
  }

  private void ceilingSection(StringBuilder b) {
    List<Result> rows = group("ceiling");
    if (rows.isEmpty()) {
      return;
    }
    b.append("## 1. The ceiling: a raw gRPC echo\n\n");
    b.append("A grpc-java echo defined without protoc (byte-array marshaller, ").append(Echo.PAYLOAD_BYTES)
        .append("-byte payload, about an Acquire request), served as Sluice's memory store is served: Netty on"
            + " loopback, `directExecutor()`. The client channel is built as the SDK builds its own"
            + " (`Grpc.newChannelBuilder`, plaintext, `round_robin`, 10 s keepalive, `directExecutor()`: answers"
            + " handled on the event loop), the transport's best and the ceiling the targets use; and, to show"
            + " what an executor hop costs, with gRPC's default callback executor (a cached thread pool: every"
            + " answer hops from the event loop to a pool thread). \"1 thread\" is the blocking stub"
            + " (its answer is handled on the calling thread, no hop); \"N async in flight\" re-issues each call"
            + " from its callback on one channel; the stream keeps N messages outstanding on one bidi stream."
            + " \"Batched as the SDK's session\" is the peers' driver (N blocking threads) on one bidi stream,"
            + " batched as the SDK's session batches: each operation queues a record and blocks until its answer,"
            + " then queues a second record that is not answered (the release); the event loop writes all queued"
            + " records in one message and wakes each answered thread. It is what the transport carries on that"
            + " driver with no engine behind it: the peer targets quote it.\n\n");
    table(b, rows, false);
    Optional<Result> direct = ok("echo.unary.n.direct");
    Optional<Result> sdk = ok("echo.unary.n");
    if (direct.isPresent() && sdk.isPresent()) {
      b.append("The client's executor hop alone: at ").append(o.workers()).append(" in flight the echo with"
          + " gRPC's default client executor does ").append(Fmt.ratio(sdk.get().rate().median() / direct.get().rate().median()))
          .append(" the calls/s of the same echo with a `directExecutor()` client.\n\n");
    }
  }

  private void memorySection(StringBuilder b) {
    List<Result> rows = group("memory");
    if (rows.isEmpty()) {
      return;
    }
    b.append("## 2. Sluice, memory store, uncontended\n\n");
    b.append("A real `SluiceServer` (memory store) in this JVM, one resource limited to ")
        .append(Fmt.rate(o.limit())).append(" requests/s (far above demand), the SDK's `acquire` then"
            + " `Permit.close()` per operation. **acquire** is the time until the permit is in hand;"
            + " **acquire+release** adds `close()`, which only *sends* the Release RPC (the SDK does not wait"
            + " for its answer), so its cost shows in throughput (two RPCs per permit) more than in latency."
            + " The releases line says whether the sent releases kept up. The coordinator runs with its HTTP"
            + " port on, as `sluice serve` does (metrics per gRPC call, a sampler once a second); the \"no HTTP"
            + " port\" row shows what that costs.\n\n");
    table(b, rows, true);
    ratioLine(b, "memory.1", "echo.unary.1", "unary, 1 in flight, vs the blocking-stub echo");
    ratioLine(b, "memory.n", "echo.unary.n.direct", "unary, " + o.workers() + " in flight, vs the unary echo");
    Optional<Result> on = ok("memory.n.http");
    Optional<Result> off = ok("memory.n.nohttp");
    if (on.isPresent() && off.isPresent()) {
      b.append("- HTTP port on (as `sluice serve` runs it: gRPC metrics interceptor, a sampler once a second) vs off,"
          + " unary, ").append(o.workers()).append(" in flight, measured back to back, on first: ")
          .append(Fmt.ratio(on.get().rate().median() / off.get().rate().median())).append(" the permits/s, acquire p50 ")
          .append(Fmt.ratio(on.get().firstP50().median() / off.get().firstP50().median())).append(" and p99 ")
          .append(Fmt.ratio(on.get().firstP99().median() / off.get().firstP99().median()))
          .append(" (the row measured first in a JVM tends to be the slower one, so this errs against the HTTP"
              + " port).\n");
    }
    ratioLine(b, "memory.1.session", "echo.stream.1", "session stream, 1 in flight, vs the stream echo");
    ratioLine(b, "memory.n.session", "echo.stream.n.direct", "session stream, " + o.workers()
        + " in flight, vs the stream echo");
    facts(b, rows);
    b.append("\nThe rows \"session stream\" use `SluiceClient.Builder.session(1)`: acquires and releases of all"
        + " callers ride one bidi stream, and those made at the same moment share a message (no timer, no added"
        + " wait: a lone call is sent at once). The default SDK makes one unary call each.\n");
    b.append("\nA permit is two unary calls (Acquire, Release), so at equal cost per call its closed-loop bound is"
        + " about 0.5× the echo's calls/s; the Release is not awaited, so the caller's loop can run ahead of it"
        + " and the ratio can exceed 0.5× while the releases still keep up (see the releases lines).\n");
  }

  private void ratioLine(StringBuilder b, String sluiceId, String echoId, String where) {
    Optional<Result> s = ok(sluiceId);
    Optional<Result> e = ok(echoId);
    if (s.isEmpty() || e.isEmpty()) {
      return;
    }
    b.append("- ").append(where).append(": ").append(Fmt.ratio(s.get().rate().median() / e.get().rate().median()))
        .append(" the echo's calls/s; acquire p50 ").append(Fmt.ratio(s.get().firstP50().median()
            / e.get().p50().median())).append(" and p99 ").append(Fmt.ratio(s.get().firstP99().median()
            / e.get().p99().median())).append(" the echo's (Sluice adds ")
        .append(Fmt.micros(s.get().firstP50().median() - e.get().p50().median())).append(" at p50).\n");
  }

  private void contendedSection(StringBuilder b) {
    List<Result> rows = group("contended");
    if (rows.isEmpty()) {
      return;
    }
    b.append("\n## 3. Sluice, memory store, contended\n\n");
    b.append("Demand far above the limit: ").append(Fmt.rate(o.waiters())).append(" acquires parked at the"
        + " coordinator at all times (async, 120 s timeout, each re-issued at the back of the line as soon as it is"
        + " granted and released). Two limits:\n\n");
    b.append("- **rate**: ").append(Fmt.rate(o.contendedRate())).append(" requests/s. The grant rate the clients"
        + " see per window against the limit is the accuracy (100 % is exact; above 100 % would be an overshoot)."
        + " The latency is the time in the queue, ≈ waiters / rate by design.\n");
    b.append("- **release → grant** (capacity-available to grant): a concurrency cap of 1, so every grant is"
        + " caused by the previous holder's release. Measured from the instant the holder calls `close()`"
        + " (the Release RPC leaves) to the instant the next waiter's callback has its permit: one trip to the"
        + " coordinator, the engine's drain, one trip back on another call. The same clock on both ends (one"
        + " JVM), no clock skew. A pause/resume probe was not used: the resume's answer and the first grant race"
        + " on two calls, so neither order measures \"capacity available\" cleanly.\n\n");
    table(b, rows, false);
    facts(b, rows);
    Optional<Result> h = ok("contended.handoff");
    Optional<Result> e = ok("echo.unary.1");
    if (h.isPresent() && e.isPresent()) {
      b.append("- release → grant p50 is ").append(Fmt.ratio(h.get().p50().median() / e.get().p50().median()))
          .append(" the echo's unary round trip at 1 in flight (").append(Fmt.micros(h.get().p50().median()))
          .append(" vs ").append(Fmt.micros(e.get().p50().median())).append("), with ")
          .append(Fmt.rate(o.waiters())).append(" parked waiters.\n");
    }
  }

  private void redisSection(StringBuilder b) {
    List<Result> rows = group("redis");
    if (rows.isEmpty()) {
      return;
    }
    b.append("\n## 4. Sluice, Redis store\n\n");
    b.append("One `redis-server` (").append("the `RedisProcess` test launcher: PATH or embedded-redis's binary,"
        + " no persistence) on loopback; 1 and 3 `SluiceServer`s with `.store(redis)` in this JVM; the client"
        + " gets every node as its target (round_robin). One hot key. Each node batches the acquires and"
        + " releases of one resource that arrive while its previous script call is on the wire into the next"
        + " EVALSHA (up to 64; a lone call goes at once), asynchronously, on the event loop. The session rows"
        + " give the client one stream per node. The slice mode rows run every node with `--slice '*="
        + LoadGen.SLICE_HOLD + "'`: a node takes capacity from Redis in slices (an acquire of up to "
        + LoadGen.SLICE_HOLD + " worth of the rate, capped at the burst, waiting in Redis's line like any other)"
        + " and grants from them locally, FIFO within the node; a slice is dropped " + LoadGen.SLICE_HOLD
        + " after Redis granted it, so the grants may pass the limit by rate × " + LoadGen.SLICE_HOLD + ".\n\n");
    table(b, rows, true);
    facts(b, rows);
    for (String id : List.of("redis1.n", "redis3.n", "redis1.n.session", "redis3.n.session", "redis3.n.sliced",
        "redis3.n.session.sliced")) {
      Optional<Result> r = ok(id);
      boolean session = id.endsWith(".session") || id.endsWith(".session.sliced");
      Optional<Result> m = ok(session ? "memory.n.session" : "memory.n");
      if (r.isPresent() && m.isPresent()) {
        b.append("- ").append(r.get().label).append(", ").append(r.get().driver).append(": ")
            .append(Fmt.ratio(r.get().rate().median() / m.get().rate().median())).append(" the memory store's"
                + " permits/s").append(session ? " on its session stream" : "").append(".\n");
      }
    }
  }

  private void keysSection(StringBuilder b) {
    List<Result> rows = group("keys");
    if (rows.isEmpty()) {
      return;
    }
    b.append("\n## 4a. The cost of API keys\n\n");
    b.append("One memory-store coordinator, the unary acquire+release at ").append(o.workers()).append(" in flight:"
        + " open (no key exists), then with a `worker` key whose resources are a glob (`").append(LoadGen.HOT)
        .append("*`): every call's key is looked up, its salted SHA-256 checked, its role and resource glob matched."
            + " Then every key is revoked and the open row measured again, so the keyed row sits between two open"
            + " ones on the same warm coordinator.\n\n");
    table(b, rows, true);
    facts(b, rows);
    LoadGen.keysRatio(results).ifPresent(line -> b.append("- ").append(line).append(".\n"));
  }

  private void httpSection(StringBuilder b) {
    List<Result> rows = group("http");
    if (rows.isEmpty()) {
      return;
    }
    b.append("\n## 4b. HTTP API against GET /healthz\n\n");
    b.append("The JSON API on the coordinator's HTTP port, driven by the JDK's `HttpClient` (HTTP/1.1 keep-alive, "
        + "one connection per request in flight), ").append(o.workers()).append(" in flight: `GET /healthz` (the"
            + " cheapest answer that port gives: its HTTP stack's ceiling), then `POST /v1/resources/")
        .append(LoadGen.HOT).append("/acquire` and, once granted, `POST /v1/permits/{id}/release`: two requests per"
            + " permit, both awaited. **acquire** is the first request alone.\n\n");
    table(b, rows, true);
    facts(b, rows);
    LoadGen.httpRatio(results).ifPresent(line -> b.append("- ").append(line).append(".\n"));
  }

  private void peersSection(StringBuilder b) {
    List<Result> rows = new ArrayList<>(group("peers"));
    if (rows.isEmpty()) {
      return;
    }
    b.append("\n## 5. Peers, same driver, same Redis\n\n");
    b.append("Every system through one interface (`dev.sluice.bench.Limiter`: acquire, then release) and one"
        + " driver: 1 and ").append(o.workers()).append(" platform threads, each acquiring and releasing one"
            + " permit of one hot key after another, the limit far above demand (").append(Fmt.rate(o.limit()))
        .append("/s), the Redis-backed ones on the same `redis-server`. Sluice is driven through the same"
            + " interface (`SluiceLimiter`: blocking `acquire`, `Permit.close()`). The blocking-stub echo at "
            + o.workers() + " threads is this driver's ceiling.\n\n"
            + "Each system is also driven as its own users drive it, where that differs: the rows with driver \""
            + o.workers() + " async in flight\" use its asynchronous API (Sluice: the SDK's `acquireAsync`;"
            + " Bucket4j: the async proxy's `asScheduler().consume(1)`; Redisson: `acquireAsync(1)`), each"
            + " completion issuing the next. Guava and Sentinel's token client only block: their users call them"
            + " from threads, as the shared driver does.\n\n");
    ok("echo.unary.nt").ifPresent(r -> rows.add(0, r));
    table(b, rows, true);
    facts(b, group("peers"));
    b.append("\n**Reading this table.** Per permit, Sluice makes two gRPC unary calls (Acquire, then Release:"
        + " an HTTP/2 stream, headers and protobuf each) and holds a lease it can give back; Sentinel's token"
        + " client sends one small binary request over one raw Netty TCP connection and has nothing to release;"
        + " Bucket4j with batching merges the requests waiting in this JVM into one compare-and-swap, so at many"
        + " threads most permits cost no round trip of their own, while without it the CAS on one hot key is"
        + " lost again and again (its retry count above); Redisson runs one Lua script per permit over a pool"
        + " of connections; Guava never leaves the process. None of the peers queues at the server.\n");
    b.append("\n**How each peer was driven, and what it cannot do:**\n\n");
    for (Map.Entry<String, String> n : peerNotes.entrySet()) {
      b.append("- **").append(n.getKey()).append("**: ").append(n.getValue()).append("\n");
    }
    group("peers").stream().filter(r -> !r.ok()).forEach(r -> b.append("- **").append(r.label).append("** (")
        .append(r.driver).append(") did not produce figures: ").append(r.failure != null ? r.failure
            : r.firstError != null ? r.firstError : "no operation completed").append("\n"));
  }

  private void scaleSection(StringBuilder b) {
    if (resources == null && waiters == null && scaleFailure == null) {
      return;
    }
    b.append("\n## 6. Scale: memory per resource and per waiter\n\n");
    b.append("On a `MemoryEngine` driven directly (no gRPC), heap in use after full GCs before and after.\n\n");
    if (resources != null) {
      if (resources.failure() != null) {
        b.append("- resources: ").append(resources.failure()).append("\n");
      } else {
        b.append("- **").append(Fmt.rate(resources.configured())).append(" resources configured** (limits"
            + " loaded through the `LimitStore` at build time, as on a restart; ")
            .append(Fmt.seconds(resources.loadSeconds())).append("): ")
            .append(Fmt.bytes(resources.bytesPerResource())).append(" per resource, ")
            .append(Fmt.mib(resources.heapConfigured() - resources.heapBefore())).append(" in all.\n");
        b.append("- **").append(Fmt.rate(resources.live())).append(" of them used once** (one acquire + release"
            + " each: the live state with its buckets, lease map, waiting room, meters and wait histogram; ")
            .append(Fmt.seconds(resources.activateSeconds())).append("): ")
            .append(Fmt.bytes(resources.bytesPerLiveResource())).append(" per used resource in all, ")
            .append(Fmt.mib(resources.heapLive() - resources.heapConfigured())).append(" added by the first use.\n");
        if (resources.note() != null) {
          b.append("- ").append(resources.note()).append(".\n");
        }
        if (!Double.isNaN(resources.setLimitMillis())) {
          b.append("- `setLimit` of one more resource at ").append(Fmt.rate(resources.configured()))
              .append(" resources, stored by the server's `FileLimitStore`, took ")
              .append(String.format(Locale.ROOT, "%.0f", resources.setLimitMillis())).append(" ms (median of 3):"
                  + " every change snapshots and rewrites the whole set, so configuring n resources one call at a"
                  + " time is O(n²). That is why the resources were loaded at build time.\n");
        }
        classes(b, resources.top(), resources.configured(), "configured resource");
        classes(b, resources.topLive(), resources.live(), "resource's first use");
      }
    }
    if (waiters != null) {
      if (waiters.failure() != null) {
        b.append("- waiters: ").append(waiters.failure()).append("\n");
      } else {
        b.append("- **").append(Fmt.rate(waiters.parked())).append(" parked waiters** over ")
            .append(Fmt.rate(waiters.resources())).append(" resources with empty buckets (1 request/hour),"
                + " 10-minute timeouts, parked in ").append(Fmt.micros(waiters.parkSeconds() * 1e6)).append(": ")
            .append(Fmt.bytes(waiters.bytesPerWaiter())).append(" per waiter (the engine's waiter, its future"
                + " and its deadline timer), ").append(Fmt.mib(waiters.heapAfter() - waiters.heapBefore()))
            .append(" in all; ").append(Fmt.rate(waiters.stillWaiting())).append(" still waiting when measured. JVM threads: ")
            .append(waiters.threadsBefore()).append(" before, ").append(waiters.threadsAfter()).append(" after.\n");
        b.append("- Over gRPC each parked acquire also holds an HTTP/2 stream and a server call (not counted"
            + " here).\n");
        classes(b, waiters.top(), waiters.parked(), "waiter");
      }
    }
    if (scaleFailure != null) {
      b.append("- failed: ").append(scaleFailure).append("\n");
    }
  }

  /** Where the bytes go: the classes that grew most, per unit. */
  private static void classes(StringBuilder b, List<Scale.ClassShare> top, int units, String unit) {
    if (top.isEmpty() || units == 0) {
      return;
    }
    b.append("\n  Where the bytes go (live objects added, from `GC.class_histogram`, per ").append(unit)
        .append("):\n\n  | class | objects per ").append(unit).append(" | bytes per ").append(unit)
        .append(" |\n  |---|---:|---:|\n");
    for (Scale.ClassShare c : top) {
      b.append("  | `").append(c.name()).append("` | ").append(String.format(Locale.ROOT, "%.2f",
          (double) c.instances() / units)).append(" | ").append(String.format(Locale.ROOT, "%.0f",
          (double) c.bytes() / units)).append(" |\n");
    }
    b.append("\n");
  }

  private void jmhSection(StringBuilder b) {
    b.append("\n## 7. Engine micro-benchmarks (JMH)\n\n");
    b.append("`dev.sluice.bench.jmh.EngineBench`: acquire (try once) + claim + release on `MemoryEngine`"
        + " directly, one hot key and 100 000 keys (a random key per operation), 1 and 2 threads."
        + " `dev.sluice.bench.jmh.TenantBench`: waiters queued over 0 (none named), 1, 10 or 1 000 tenants, then"
        + " granted in one drain (section 8). Not run by the load generator; run `").append(JMH_COMMAND)
        .append("` first (it writes `bench/target/jmh.json`) and the next report includes it.\n\n");
    Path json = o.jmhJson();
    if (!Files.isRegularFile(json)) {
      b.append("_No JMH results at `").append(json).append("` when this report was written._\n");
      return;
    }
    try {
      JsonNode root = new ObjectMapper().readTree(json.toFile());
      b.append("From `").append(json).append("`, written ").append(DateTimeFormatter.ofPattern(
          "yyyy-MM-dd HH:mm 'UTC'", Locale.ROOT).withZone(ZoneOffset.UTC).format(
              Files.getLastModifiedTime(json).toInstant())).append(" (a separate run: same machine, not the same"
                  + " minute).\n\n");
      b.append("| benchmark | threads | score | error (99.9 %) | unit |\n|---|---:|---:|---:|---|\n");
      for (JsonNode n : root) {
        String name = jmhName(n);
        JsonNode m = n.path("primaryMetric");
        b.append("| ").append(name).append(" | ").append(n.path("threads").asInt()).append(" | ")
            .append(Fmt.rate(m.path("score").asDouble())).append(" | ± ")
            .append(Fmt.rate(m.path("scoreError").asDouble())).append(" | ")
            .append(m.path("scoreUnit").asText()).append(" |\n");
      }
    } catch (IOException | RuntimeException e) {
      b.append("_Could not read `").append(json).append("`: ").append(e.getMessage()).append("_\n");
    }
  }

  /** A JMH result's class and method, and its parameters if it has any: {@code TenantBench.x (tenants=10)}. */
  static String jmhName(JsonNode result) {
    String name = result.path("benchmark").asText();
    name = name.substring(name.lastIndexOf('.', name.lastIndexOf('.') - 1) + 1);
    JsonNode params = result.path("params");
    if (params.isObject() && params.size() > 0) {
      java.util.StringJoiner p = new java.util.StringJoiner(", ", " (", ")");
      params.fields().forEachRemaining(e -> p.add(e.getKey() + "=" + e.getValue().asText()));
      name += p;
    }
    return name;
  }

  private void howToRun(StringBuilder b) {
    b.append("\n## How to run\n\n");
    b.append("```sh\n./mvnw -q -B -DskipTests install        # builds bench/target/sluice-bench.jar\n")
        .append(COMMAND).append("                  # this report, about 14 minutes\n")
        .append(COMMAND).append(" --quick          # about a minute, rough figures\n")
        .append(COMMAND).append(" --coordinator process   # each coordinator its own `bin/sluice serve`\n")
        .append(JMH_COMMAND).append("              # engine micro-benchmarks -> bench/target/jmh.json\n```\n\n");
    b.append("`--help` lists the options (durations, groups, concurrency, scale sizes, where the coordinators"
        + " run). The report and the charts are overwritten on every run.\n");
  }

  // ---------------------------------------------------------------------------------------------

  private List<Result> group(String g) {
    return results.stream().filter(r -> r.group.equals(g)).toList();
  }

  private static void table(StringBuilder b, List<Result> rows, boolean split) {
    if (split) {
      b.append("| scenario | driver | coordinator | throughput [min–max] | acquire p50 | acquire p99 | acq+rel p50 |"
          + " acq+rel p99 | acq+rel p99.9 | errors | others' CPU |\n"
          + "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
      b.append("| scenario | driver | coordinator | throughput [min–max] | p50 | p90 | p99 | p99.9 | errors |"
          + " others' CPU |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    for (Result r : rows) {
      b.append("| ").append(r.label);
      if (!r.ok()) {
        b.append(" | ").append(r.driver).append(" | ").append(coordinator(r)).append(" | failed: ").append(escape(r.failure != null ? r.failure
            : r.firstError != null ? r.firstError : "no operation completed")).append(split ? " | | | | | | | |\n"
            : " | | | | | | |\n");
        continue;
      }
      b.append(" | ").append(r.driver).append(" | ").append(coordinator(r)).append(" | ")
          .append(Fmt.spreadRate(r.rate())).append(" ").append(r.unit);
      if (split) {
        b.append(" | ").append(r.hasFirst() ? Fmt.spreadMicros(r.firstP50()) : "–")
            .append(" | ").append(r.hasFirst() ? Fmt.spreadMicros(r.firstP99()) : "–")
            .append(" | ").append(Fmt.spreadMicros(r.p50()))
            .append(" | ").append(Fmt.spreadMicros(r.p99()))
            .append(" | ").append(Fmt.micros(r.p999().median()));
      } else {
        b.append(" | ").append(Fmt.spreadMicros(r.p50()))
            .append(" | ").append(Fmt.micros(r.p90().median()))
            .append(" | ").append(Fmt.spreadMicros(r.p99()))
            .append(" | ").append(Fmt.micros(r.p999().median()));
      }
      b.append(" | ").append(r.errors()).append(" | ").append(othersCpu(r)).append(" |\n");
    }
    b.append("\n");
  }

  private static String coordinator(Result r) {
    return r.coordinator == null ? "–" : r.coordinator;
  }

  /** The worst window's share of the machine taken by other processes; bold above 10 %. */
  static String othersCpu(Result r) {
    Result.Spread s = r.othersCpu();
    if (s.isNaN()) {
      return "?";
    }
    String text = String.format(Locale.ROOT, "%.0f %%", s.max() * 100);
    return s.max() > 0.10 ? "**" + text + "**" : text;
  }

  private static void facts(StringBuilder b, List<Result> rows) {
    for (Result r : rows) {
      for (Map.Entry<String, String> f : r.facts.entrySet()) {
        b.append("- ").append(r.label).append(", ").append(r.driver).append(": ").append(f.getKey()).append(": ")
            .append(f.getValue()).append("\n");
      }
      if (r.ok() && r.errors() > 0) {
        b.append("- ").append(r.label).append(", ").append(r.driver).append(": ").append(r.errors())
            .append(" failed operations in the measured windows; first: ").append(escape(String.valueOf(
                r.firstError))).append("\n");
      }
    }
  }

  private static String escape(String s) {
    return s.replace("|", "\\|").replace("\n", " ");
  }

  private static String minutes(Duration d) {
    long s = d.toSeconds();
    return s < 60 ? s + " s" : (s / 60) + " min " + (s % 60) + " s";
  }
}
