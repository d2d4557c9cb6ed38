package dev.sluice.bench;

import dev.sluice.bench.peers.Bucket4jLettuceLimiter;
import dev.sluice.bench.peers.Peers;
import dev.sluice.bench.peers.SentinelClusterLimiter;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.bench.jmh.JmhMain;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.server.redis.RedisProcess;
import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * The load generator: every scenario in one JVM run, one after another (warm-up, then measured
 * windows), a table on the console as it goes, and at the end {@code BENCHMARKS.md} with the
 * ratios against the ceiling measured in the same run, plus two SVG charts.
 *
 * <pre>
 *   java -jar bench/target/sluice-bench.jar            # full run, about 14 minutes
 *   java -jar bench/target/sluice-bench.jar --quick    # about a minute
 *   java -jar bench/target/sluice-bench.jar jmh        # the engine's JMH micro-benchmarks
 *   java -jar bench/target/sluice-bench.jar first      # a fresh client's first acquire against p50
 *   java -jar bench/target/sluice-bench.jar precision  # one rate shared by 4 worker JVMs: share used, densest second
 * </pre>
 *
 * <p>All load is closed-loop: each worker (thread, or async slot) starts its next operation when
 * the previous one ends, so throughput is what the system sustains at that concurrency and
 * latency is not inflated by a queue in the load generator (nor corrected for one: with a closed
 * loop there is none to correct for).
 */
public final class LoadGen {

  static final String HOT = "hot";
  /** Peers.all opens five today; the step count is corrected once they are open. */
  private static final int EXPECTED_PEERS = 5;
  /** Sluice itself in the peers group: memory and Redis store, unary and session. */
  private static final int SLUICE_PEERS = 5;
  /** The transport's ceiling on the peers' driver (blocking threads), which the peer targets quote. */
  static final String ECHO_BATCHED_THREADS = "echo.stream.nt.batched";
  /** The slice mode rows' hold: the grants may pass a limit by rate x this. */
  static final String SLICE_HOLD = "20ms";
  /** Of those, the ones with an asynchronous API their users drive them with (a row of their own). */
  private static final int ASYNC_PEERS = SLUICE_PEERS + 3;
  /** The JVM warm-up alternates laps this long of echo and of Sluice. */
  static final Duration WARMUP_LAP = Duration.ofSeconds(1);
  private static final Duration LONG_WAIT = Duration.ofSeconds(120);

  private final Options o;
  private final PrintStream out;
  private final Runner runner;
  private final List<Result> results = new ArrayList<>();
  private final Map<String, String> peerNotes = new LinkedHashMap<>();
  private Scale.Resources scaleResources;
  private Scale.Waiters scaleWaiters;
  private String scaleFailure;
  private RedisProcess redis;
  /** Echo and Sluice figures of each lap of the JVM warm-up: how the JIT got there. */
  private final List<double[]> warmupLaps = new ArrayList<>();
  private int step;
  private int steps;

  private LoadGen(Options o, PrintStream out) {
    this.o = o;
    this.out = out;
    this.runner = new Runner(o.warmup(), o.round(), o.rounds());
  }

  public static void main(String[] args) throws Exception {
    if (args.length > 0 && args[0].equals("jmh")) {
      JmhMain.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    if (args.length > 0 && args[0].equals("push")) {
      quietLogs();
      PushBench.run(args, System.out);
      System.exit(0);
      return;
    }
    if (args.length > 0 && args[0].equals("templates")) {
      quietLogs();
      TemplateBench.run(args, System.out);
      System.exit(0);
      return;
    }
    if (args.length > 0 && args[0].equals("first")) {
      quietLogs();
      FirstAcquire.run(args, System.out);
      System.exit(0);
      return;
    }
    if (args.length > 0 && args[0].equals("precision")) {
      quietLogs();
      Precision.run(args, System.out);
      System.exit(0);
      return;
    }
    if (args.length > 0 && args[0].equals("soak")) {
      quietLogs();
      boolean pass;
      try {
        pass = Soak.run(args, System.out);
      } catch (IllegalArgumentException e) {
        System.err.println("sluice-bench: " + e.getMessage());
        System.exit(2);
        return;
      }
      System.exit(pass ? 0 : 1);
      return;
    }
    quietLogs();
    Options options;
    try {
      if (List.of(args).contains("--help") || List.of(args).contains("-h")) {
        System.out.print(Options.USAGE);
        return;
      }
      options = Options.parse(args);
    } catch (IllegalArgumentException e) {
      System.err.println("sluice-bench: " + e.getMessage());
      System.err.print(Options.USAGE);
      System.exit(2);
      return;
    }
    run(options, System.out);
    // Peers' clients (Redisson, Lettuce) may leave non-daemon threads behind.
    System.exit(0);
  }

  /** Runs the scenarios of {@code options}, writes the report; returns its path. */
  static Path run(Options options, PrintStream out) throws Exception {
    quietLogs();
    return new LoadGen(options, out).run();
  }

  /** Our own components log at WARN while measuring unless the caller chose otherwise. */
  private static void quietLogs() {
    if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
      System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    }
  }

  private Path run() throws Exception {
    Instant started = Instant.now();
    java.nio.file.Files.createDirectories(o.out());
    Machine machine = Machine.describe(o.out().toAbsolutePath());
    steps = plannedSteps();
    out.println("Sluice load generator: " + machine.summary());
    out.printf(Locale.ROOT, "warm-up %s + %d x %s measured per scenario; %d steps; load average at start %.2f%n",
        secs(o.warmup()), o.rounds(), secs(o.round()), steps, machine.loadAverage());
    out.println("coordinators: " + o.placement().describe());
    out.println();
    out.printf(Locale.ROOT, "%-8s %-46s %-22s %-11s %28s %10s %10s %7s %7s%n", "step", "scenario", "driver",
        "coordinator", "throughput [min-max]", "p50", "p99", "errors", "others");
    try {
      if (o.groups().stream().anyMatch(g -> !g.equals("scale"))) {
        jvmWarmup();
      }
      if (o.runs("ceiling")) {
        ceiling();
      }
      if (o.runs("memory")) {
        memory();
      }
      if (o.runs("contended")) {
        contended();
      }
      if (o.runs("redis")) {
        redisStore();
      }
      if (o.runs("keys")) {
        apiKeys();
      }
      if (o.runs("http")) {
        httpApi();
      }
      if (o.runs("peers")) {
        peers();
      }
      if (o.runs("ceiling")) {
        echoAgain();
      }
      if (o.runs("scale")) {
        scale();
      }
    } finally {
      if (redis != null) {
        redis.close();
      }
    }
    Duration took = Duration.between(started, Instant.now());
    Report report = new Report(o, machine, started, took, results, peerNotes, scaleResources, scaleWaiters,
        scaleFailure, warmupLaps);
    Path written = report.write();
    out.println();
    for (String line : report.targetLines()) {
      out.println(line);
    }
    out.println();
    out.println("Wrote " + written + " and the charts in " + o.out().resolve("docs/bench") + " (run took "
        + secs(took) + ")");
    return written;
  }

  private int plannedSteps() {
    int n = 0;
    n += o.runs("ceiling") ? 9 : 0;
    n += o.runs("memory") ? 6 : 0;
    n += o.runs("contended") ? 2 : 0;
    n += o.runs("redis") ? 8 : 0;
    n += o.runs("keys") ? 3 : 0;
    n += o.runs("http") ? 2 : 0;
    n += o.runs("peers") ? 2 * (SLUICE_PEERS + EXPECTED_PEERS) + ASYNC_PEERS : 0;
    n += o.runs("scale") ? 2 : 0;
    return n;
  }

  // ---------------------------------------------------------------------------------------------
  // Scenarios

  /**
   * The transport, JIT and Netty warm before the first measurement (the scenarios warm up too):
   * laps of {@link #WARMUP_LAP} of the echo, then of Sluice's memory store, each at {@code
   * --workers} in flight, for at least {@code --jvm-warmup}, then on until the echo has reached
   * its plateau on a quiet machine ({@link #plateau}) or {@code --jvm-warmup-max} is spent. How long the JIT takes
   * depends on the CPU it gets: on two cores shared with other work it took more than twice as
   * long as on a quiet machine. Each lap's figure is printed, so a run shows where it stood.
   */
  private void jvmWarmup() throws Exception {
    if (o.jvmWarmup().isZero()) {
      return;
    }
    int laps = laps(o.jvmWarmup());
    int maxLaps = Math.max(laps, laps(o.jvmWarmupMax()));
    out.printf(Locale.ROOT, "         (warming the JVM up for %s to %s: laps of %s echo unary, then %s Sluice memory,"
        + " %d in flight, until the echo of 3 laps is within %s; not in the tables)%n", secs(o.jvmWarmup()),
        secs(o.jvmWarmupMax()), secs(WARMUP_LAP), secs(WARMUP_LAP), o.workers(), Fmt.percent(PLATEAU));
    try (Echo echo = Echo.start(); SluiceRig rig = SluiceRig.memory()) {
      rig.setLimit(SluiceRig.rate(HOT, o.limit(), 10_000));
      try (SluiceClient client = rig.client()) {
        for (int i = 0; i < maxLaps && (i < laps || !plateau(warmupLaps)); i++) {
          CpuShare.Sample before = CpuShare.sample();
          double e = lap(echo.unaryAsync(o.workers(), true), WARMUP_LAP);
          double s = lap(sluiceAsync(client, HOT, o.workers()), WARMUP_LAP);
          double others = CpuShare.others(before, CpuShare.sample());
          warmupLaps.add(new double[] {e, s, others});
          out.printf(Locale.ROOT, "         lap %2d: echo %s calls/s, Sluice %s permits/s (other processes: %.0f %%)%n",
              i + 1, Fmt.rateAscii(e), Fmt.rateAscii(s), others * 100);
        }
      }
    }
    if (warmupLaps.size() >= 3) {
      double[] last = warmupLaps.subList(warmupLaps.size() - 3, warmupLaps.size()).stream().mapToDouble(l -> l[0])
          .sorted().toArray();
      out.printf(Locale.ROOT, "         echo over the last 3 laps: %s-%s calls/s, spread %s: %s%n", Fmt.rateAscii(last[0]),
          Fmt.rateAscii(last[2]), Fmt.percent(Ratios.spread(last[0], last[2])), plateau(warmupLaps)
              ? "plateau reached" : "NO plateau by --jvm-warmup-max (the echo still moving, or other processes"
                  + " took over 10 % of the machine): the first rows may be low");
    }
  }

  /** The echo laps' figures agree this closely at the plateau. */
  static final double PLATEAU = 0.10;

  /**
   * Whether the echo of the last 3 {@code laps} ({echo/s, Sluice/s, others' CPU share}) is within
   * {@link #PLATEAU} and no other process took over {@link #DISTURBED} of the machine in them: on
   * a starved machine the echo is flat long before the JIT is done, so such laps do not count.
   */
  static boolean plateau(List<double[]> laps) {
    if (laps.size() < 3) {
      return false;
    }
    double min = Double.MAX_VALUE;
    double max = 0;
    for (double[] lap : laps.subList(laps.size() - 3, laps.size())) {
      if (!(lap[2] <= DISTURBED)) {
        return false;
      }
      min = Math.min(min, lap[0]);
      max = Math.max(max, lap[0]);
    }
    return min > 0 && Ratios.spread(min, max) <= PLATEAU;
  }

  /** Laps in a JVM warm-up of {@code d}: one lap each of echo and Sluice per two {@link #WARMUP_LAP}s. */
  static int laps(Duration d) {
    return (int) Math.max(1, d.toMillis() / (2 * WARMUP_LAP.toMillis()));
  }

  /** Runs {@code w} for {@code d}; its operations per second. */
  private static double lap(Workload w, Duration d) throws Exception {
    Meter m = new Meter();
    w.start(m);
    long t0 = System.nanoTime();
    TimeUnit.NANOSECONDS.sleep(d.toNanos());
    Meter.Window window = m.interval();
    double seconds = (System.nanoTime() - t0) / 1e9;
    w.stop();
    return window.total().getTotalCount() / seconds;
  }

  /**
   * A coordinator of {@code --coordinator process} is a fresh JVM: before its first row it gets the
   * same warm-up as this JVM did (unary and session acquires, not measured). In this JVM the
   * coordinator code is warm already.
   */
  private SluiceRig warmed(SluiceRig rig) throws Exception {
    if (!rig.placement().process() || o.jvmWarmup().isZero()) {
      return rig;
    }
    try {
      out.println("         (" + rig.nodes() + " coordinator process(es) started; warming "
          + (rig.nodes() == 1 ? "it" : "them") + " up for " + secs(o.jvmWarmup()) + ", not measured)");
      String resource = "bench-warm-up";
      rig.setLimit(SluiceRig.rate(resource, o.limit(), 10_000));
      try (SluiceClient unary = rig.client(); SluiceClient session = rig.sessionClient(rig.nodes())) {
        Workload a = sluiceAsync(unary, resource, o.workers());
        Workload b = sluiceAsync(session, resource, o.workers());
        Meter m = new Meter();
        a.start(m);
        b.start(m);
        TimeUnit.NANOSECONDS.sleep(o.jvmWarmup().toNanos());
        a.stop();
        b.stop();
      }
      return rig;
    } catch (Exception | Error e) {
      rig.close();
      throw e;
    }
  }

  private SluiceRig memoryRig(boolean http) throws Exception {
    return warmed(SluiceRig.memory(o.placement(), http));
  }

  private SluiceRig redisRig(String uri, int nodes) throws Exception {
    return warmed(SluiceRig.redis(o.placement(), uri, nodes));
  }

  /** Nodes in slice mode for every resource, slices held up to {@link #SLICE_HOLD}. */
  private SluiceRig slicedRig(String uri, int nodes) throws Exception {
    return warmed(SluiceRig.redis(o.placement(), uri, nodes, "*=" + SLICE_HOLD));
  }

  /** Marks {@code r} as measured on {@code rig}'s coordinators. */
  private static Result on(SluiceRig rig, Result r) {
    r.coordinator = rig.placement().label();
    return r;
  }

  /**
   * The echo as the SDK's channel is built (client {@code directExecutor()}: callbacks on the
   * event loop, the transport's best, which the targets use) and with gRPC's default callback
   * executor: the gap between the two is what an executor hop costs.
   */
  private void ceiling() throws Exception {
    try (Echo echo = Echo.start()) {
      measure(new Result("echo.unary.1", "ceiling", "echo unary", "calls/s"), () -> echo.unaryThreads(1));
      measure(new Result("echo.unary.n.direct", "ceiling", "echo unary, client directExecutor", "calls/s"),
          () -> echo.unaryAsync(o.workers(), true));
      measure(new Result("echo.unary.n", "ceiling", "echo unary, client default executor", "calls/s"),
          () -> echo.unaryAsync(o.workers(), false));
      measure(new Result("echo.unary.nt", "ceiling", "echo unary, blocking stub", "calls/s"),
          () -> echo.unaryThreads(o.workers()));
      measure(new Result("echo.stream.1", "ceiling", "echo bidi stream, client directExecutor", "msgs/s"),
          () -> echo.stream(1, true));
      measure(new Result("echo.stream.n.direct", "ceiling", "echo bidi stream, client directExecutor", "msgs/s"),
          () -> echo.stream(o.workers(), true));
      measure(new Result("echo.stream.n", "ceiling", "echo bidi stream, client default executor", "msgs/s"),
          () -> echo.stream(o.workers(), false));
      measure(new Result(ECHO_BATCHED_THREADS, "ceiling", "echo bidi stream, batched as the SDK's session",
          "ops/s"), () -> echo.batchedThreads(o.workers()));
    }
  }

  /**
   * The unary echo at {@code --workers} in flight once more, after the other groups: against the
   * same row at the start, it says whether the warm-up was long enough (the JIT still compiling
   * while the first rows ran shows as a lower start).
   */
  private void echoAgain() throws Exception {
    try (Echo echo = Echo.start()) {
      measure(new Result("echo.unary.n.direct.end", "ceiling", "echo unary, client directExecutor, again at the end",
          "calls/s"), () -> echo.unaryAsync(o.workers(), true));
    }
    Result start = results.stream().filter(r -> r.id.equals("echo.unary.n.direct")).findFirst().orElse(null);
    Result end = results.get(results.size() - 1);
    if (start != null && start.ok() && end.ok()) {
      out.printf("%-8s   %s%n", "", Ratios.echoSpread(start, end).replace('\u2009', ' '));
    }
  }

  private void memory() throws Exception {
    try (SluiceRig rig = memoryRig(true)) {
      rig.setLimit(SluiceRig.rate(HOT, o.limit(), 10_000));
      try (SluiceClient client = rig.client()) {
        Result one = permits(on(rig, new Result("memory.1", "memory", "Sluice memory, acquire+release", "permits/s")));
        measure(one, () -> sluiceBlocking(client, HOT, 1), NOTHING, () -> releasesCaughtUp(rig, HOT, one));
        Result many = permits(on(rig, new Result("memory.n", "memory", "Sluice memory, acquire+release", "permits/s")));
        measure(many, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(rig, HOT, many));
      }
      // The SDK's session streams: acquires and releases batched on one bidi stream.
      try (SluiceClient client = rig.sessionClient(1)) {
        String label = "Sluice memory, session stream";
        Result one = permits(on(rig, new Result("memory.1.session", "memory", label, "permits/s")));
        measure(one, () -> sluiceBlocking(client, HOT, 1), NOTHING, () -> releasesCaughtUp(rig, HOT, one));
        Result many = permits(on(rig, new Result("memory.n.session", "memory", label, "permits/s")));
        measure(many, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(rig, HOT, many));
      }
      // What the HTTP port costs (gRPC metrics interceptor, once-a-second sampler): the unary row
      // again with it on, then on a node without it, back to back on a warm JVM (the first rows
      // of a run are slower, so memory.n itself is no fair baseline).
      try (SluiceClient client = rig.client()) {
        Result on = permits(on(rig, new Result("memory.n.http", "memory",
            "Sluice memory, acquire+release, HTTP on (again)", "permits/s")));
        measure(on, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(rig, HOT, on));
      }
      try (SluiceRig bare = memoryRig(false)) {
        bare.setLimit(SluiceRig.rate(HOT, o.limit(), 10_000));
        try (SluiceClient client = bare.client()) {
          Result off = permits(on(bare, new Result("memory.n.nohttp", "memory",
              "Sluice memory, acquire+release, no HTTP port", "permits/s")));
          measure(off, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(bare, HOT, off));
        }
      }
    }
  }

  private void contended() throws Exception {
    try (SluiceRig rig = memoryRig(true)) {
      int room = o.waiters() * 2;
      rig.setLimit(SluiceRig.rate("contended", o.contendedRate(), contendedBurst(), room));
      rig.setLimit(SluiceRig.concurrency("handoff", 1, room));

      Result rate = on(rig, new Result("contended.rate", "contended",
          "Sluice memory, " + Fmt.rateAscii(o.contendedRate()) + "/s limit", "grants/s"));
      rate.totalName = "wait in queue";
      parked(rig, "contended", rate, false);
      if (rate.ok()) {
        double limit = o.contendedRate();
        double seconds = rate.rounds.stream().mapToDouble(Result.Round::seconds).sum();
        double window = seconds / rate.rounds.size();
        rate.facts.put("accuracy", Fmt.percent(rate.ops() / seconds / limit) + " of the limit over all "
            + rate.rounds.size() + " windows (" + rate.ops() + " grants in " + String.format(Locale.ROOT, "%.2f",
                seconds) + " s); per window " + Fmt.percent(rate.rate().min() / limit) + "–"
            + Fmt.percent(rate.rate().max() / limit) + ", where the bucket allows at most "
            + Fmt.percent((limit * window + contendedBurst()) / (limit * window)) + " (rate × window + burst "
            + contendedBurst() + ")");
      }

      Result handoff = on(rig, new Result("contended.handoff", "contended",
          "Sluice memory, cap 1: release→grant", "handoffs/s"));
      handoff.totalName = "release→next grant";
      parked(rig, "handoff", handoff, true);
    }
  }

  /** 1 % of a second's worth: a window's count cannot be inflated by a stored burst. */
  long contendedBurst() {
    return Math.max(1, o.contendedRate() / 100);
  }

  /**
   * {@code o.waiters()} acquires parked on {@code resource} at all times: each one, once granted,
   * is released and issued again at the back of the line. With {@code handoff}, the latency is
   * from the previous holder's release to this grant (the resource has a cap of 1); otherwise it
   * is the time in the queue. The warm-up starts once the queue is full; the next scenario once
   * the coordinator is empty again.
   */
  private void parked(SluiceRig rig, String resource, Result r, boolean handoff) throws Exception {
    try (SluiceClient client = rig.client()) {
      AcquireOptions options = AcquireOptions.builder().timeout(LONG_WAIT).build();
      int full = (int) (o.waiters() * 0.95);
      java.util.function.Supplier<Workload> workload = () -> {
        Set<CompletableFuture<Permit>> pending = ConcurrentHashMap.newKeySet();
        Object lock = new Object();
        long[] lastRelease = {0};
        AsyncLoop loop = new AsyncLoop(resource, o.waiters(), (lap, done) -> {
          CompletableFuture<Permit> f = client.acquireAsync(resource, Load.requests(1), options);
          pending.add(f);
          f.whenComplete((p, e) -> {
            pending.remove(f);
            if (e != null) {
              done.accept(e);
              return;
            }
            if (handoff) {
              // One holder at a time (cap 1): the previous holder's release made this grant.
              long previous;
              synchronized (lock) {
                lap.end();
                previous = lastRelease[0];
                lastRelease[0] = System.nanoTime();
              }
              if (previous == 0) {
                lap.skip();
              } else {
                lap.from(previous);
              }
            }
            p.close();
            done.accept(null);
          });
        }).onStop(() -> pending.forEach(f -> f.cancel(false)));
        return gate(loop, () -> waiting(rig.stats(resource)) >= full, r,
            "queue filled to " + Fmt.rateAscii(full) + "+ parked");
      };
      measure(r, workload,
          () -> r.facts.put("parked at the end of the last window", Fmt.rateAscii(waiting(rig.stats(resource)))),
          () -> drained(rig, resource, r));
    }
  }

  /** Waits (up to 30 s) until the coordinator holds no waiter and no permit of {@code resource}. */
  private static void drained(SluiceRig rig, String resource, Result r) {
    try {
      long start = System.nanoTime();
      ResourceStats s = rig.stats(resource);
      while ((waiting(s) > 0 || s.getInFlight() > 0) && System.nanoTime() - start < TimeUnit.SECONDS.toNanos(30)) {
        Thread.sleep(20);
        s = rig.stats(resource);
      }
      r.facts.put("after the stop", waiting(s) == 0 && s.getInFlight() == 0
          ? "coordinator empty (no waiter, no open permit) after "
              + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start) + " ms"
          : waiting(s) + " waiters and " + s.getInFlight() + " open permits still there 30 s after the stop");
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Starts {@code w}, then waits (up to 60 s) until {@code ready} before the warm-up begins. */
  private static Workload gate(Workload w, java.util.function.BooleanSupplier ready, Result r, String what) {
    return new Workload() {
      @Override
      public String driver() {
        return w.driver().replace(" async in flight", " parked (async)");
      }

      @Override
      public void start(Meter meter) throws Exception {
        long t0 = System.nanoTime();
        w.start(meter);
        while (!ready.getAsBoolean()) {
          if (System.nanoTime() - t0 > TimeUnit.SECONDS.toNanos(60)) {
            r.facts.put("start", "not ready after 60 s (" + what + "); measured anyway");
            return;
          }
          Thread.sleep(20);
        }
        r.facts.put("start", what + " after " + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0) + " ms");
      }

      @Override
      public String stop() throws InterruptedException {
        return w.stop();
      }
    };
  }

  private void redisStore() throws Exception {
    String uri = redis().uri();
    for (int nodes : new int[] {1, 3}) {
      String resource = HOT + "-r" + nodes;
      try (SluiceRig rig = redisRig(uri, nodes)) {
        rig.setLimit(SluiceRig.rate(resource, o.limit(), 10_000));
        try (SluiceClient client = rig.client()) {
          String label = "Sluice Redis, " + nodes + (nodes == 1 ? " node" : " nodes") + ", acquire+release";
          Result one = permits(on(rig, new Result("redis" + nodes + ".1", "redis", label, "permits/s")));
          measure(one, () -> sluiceBlocking(client, resource, 1), NOTHING,
              () -> releasesCaughtUp(rig, resource, one));
          Result many = permits(on(rig, new Result("redis" + nodes + ".n", "redis", label, "permits/s")));
          measure(many, () -> sluiceAsync(client, resource, o.workers()), NOTHING,
              () -> releasesCaughtUp(rig, resource, many));
        }
        // One session stream per node: the client's load spread over every node, batched.
        try (SluiceClient client = rig.sessionClient(nodes)) {
          String label = "Sluice Redis, " + nodes + (nodes == 1 ? " node" : " nodes") + ", session streams";
          Result many = permits(on(rig, new Result("redis" + nodes + ".n.session", "redis", label, "permits/s")));
          measure(many, () -> sluiceAsync(client, resource, o.workers()), NOTHING,
              () -> releasesCaughtUp(rig, resource, many));
        }
      }
    }
    // The opt-in slice mode: each node takes capacity in slices and grants locally.
    String resource = HOT + "-s3";
    try (SluiceRig rig = slicedRig(uri, 3)) {
      rig.setLimit(SluiceRig.rate(resource, o.limit(), 10_000));
      try (SluiceClient client = rig.client()) {
        Result many = permits(on(rig, new Result("redis3.n.sliced", "redis",
            "Sluice Redis, 3 nodes, slice mode (" + SLICE_HOLD + "), acquire+release", "permits/s")));
        measure(many, () -> sluiceAsync(client, resource, o.workers()));
      }
      try (SluiceClient client = rig.sessionClient(3)) {
        Result many = permits(on(rig, new Result("redis3.n.session.sliced", "redis",
            "Sluice Redis, 3 nodes, slice mode (" + SLICE_HOLD + "), session streams", "permits/s")));
        measure(many, () -> sluiceAsync(client, resource, o.workers()));
      }
    }
  }

  /**
   * What API keys cost: the unary acquire+release at {@code --workers} in flight on one
   * coordinator, open (no key), then with a worker key limited to the resource by a glob (the
   * key's salted hash checked, its role and resources matched, on every call), then open again
   * after every key is revoked, so the keyed row sits between two open ones on the same warm
   * coordinator.
   */
  private void apiKeys() throws Exception {
    try (SluiceRig rig = memoryRig(true)) {
      rig.setLimit(SluiceRig.rate(HOT, o.limit(), 10_000));
      try (SluiceClient client = rig.client()) {
        Result open = permits(on(rig, new Result("keys.open", "keys", "Sluice memory, open (no API keys)",
            "permits/s")));
        measure(open, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(rig, HOT, open));
      }
      String worker = rig.createWorkerKey(HOT + "*");
      try (SluiceClient client = rig.client(worker)) {
        Result keyed = permits(on(rig, new Result("keys.worker", "keys",
            "Sluice memory, worker key (role + resource glob)", "permits/s")));
        measure(keyed, () -> sluiceAsync(client, HOT, o.workers()), NOTHING,
            () -> releasesCaughtUp(rig, HOT, keyed));
      } finally {
        rig.revokeAllKeys();
      }
      try (SluiceClient client = rig.client()) {
        Result again = permits(on(rig, new Result("keys.open.again", "keys",
            "Sluice memory, open again (keys revoked)", "permits/s")));
        measure(again, () -> sluiceAsync(client, HOT, o.workers()), NOTHING,
            () -> releasesCaughtUp(rig, HOT, again));
      }
    }
    keysRatio().ifPresent(line -> out.printf("%-8s   %s%n", "", line.replace('\u2009', ' ')));
  }

  /** The keyed row against the mean of the open rows around it, when all three ran. */
  java.util.Optional<String> keysRatio() {
    return keysRatio(results);
  }

  static java.util.Optional<String> keysRatio(List<Result> results) {
    Map<String, Result> byId = new LinkedHashMap<>();
    results.forEach(r -> byId.put(r.id, r));
    Result keyed = byId.get("keys.worker");
    Result open = byId.get("keys.open");
    Result again = byId.get("keys.open.again");
    if (keyed == null || open == null || !keyed.ok() || !open.ok()) {
      return java.util.Optional.empty();
    }
    String line = Ratios.versus("worker key vs open", keyed, open);
    if (again != null && again.ok()) {
      line += "; vs open again: " + Fmt.ratio(keyed.rate().median() / again.rate().median()) + " the permits/s";
    }
    return java.util.Optional.of(line);
  }

  /**
   * The HTTP port's worker API against the cheapest request that port answers, on one coordinator
   * in the same run: {@code GET /healthz}, then acquire+release over HTTP (two requests per
   * permit), each at {@code --workers} in flight on keep-alive connections.
   */
  private void httpApi() throws Exception {
    try (SluiceRig rig = memoryRig(true)) {
      rig.setLimit(SluiceRig.rate(HOT, o.limit(), 10_000));
      HttpLoad http = new HttpLoad(rig.httpPort());
      Result health = on(rig, new Result("http.healthz", "http", "HTTP GET /healthz", "requests/s"));
      measure(health, () -> http.healthz(o.workers()));
      Result permits = permits(on(rig, new Result("http.acquire", "http",
          "HTTP acquire+release (2 requests/permit)", "permits/s")));
      measure(permits, () -> http.acquireRelease(HOT, o.workers()), NOTHING,
          () -> releasesCaughtUp(rig, HOT, permits));
    }
    httpRatio(results).ifPresent(line -> out.printf("%-8s   %s%n", "", line.replace('\u2009', ' ')));
  }

  /** HTTP acquire+release against GET /healthz, in permits and in requests. */
  static java.util.Optional<String> httpRatio(List<Result> results) {
    Result health = null;
    Result permits = null;
    for (Result r : results) {
      if (r.id.equals("http.healthz")) {
        health = r;
      } else if (r.id.equals("http.acquire")) {
        permits = r;
      }
    }
    if (health == null || permits == null || !health.ok() || !permits.ok()) {
      return java.util.Optional.empty();
    }
    double ratio = permits.rate().median() / health.rate().median();
    return java.util.Optional.of(Ratios.versus("HTTP acquire+release vs GET /healthz", permits, health)
        + "; counting both requests of a permit, " + Fmt.ratio(2 * ratio) + " the requests/s");
  }

  private void peers() throws Exception {
    String uri = redis().uri();
    try (SluiceRig memory = memoryRig(true); SluiceRig redis1 = redisRig(uri, 1);
        SluiceRig sliced1 = slicedRig(uri, 1)) {
      memory.setLimit(SluiceRig.rate("peer", o.limit(), 10_000));
      redis1.setLimit(SluiceRig.rate("peer", o.limit(), 10_000));
      sliced1.setLimit(SluiceRig.rate("peer-s", o.limit(), 10_000));
      List<Limiter> all = new ArrayList<>();
      all.add(new SluiceLimiter("sluice-memory", memory.client(), "peer",
          "Sluice, memory store, one node; the SDK's blocking acquire(), release = Permit.close() (the"
              + " Release RPC is sent, not awaited). Waits in a FIFO queue at the coordinator."));
      all.add(new SluiceLimiter("sluice-memory-session", memory.sessionClient(1), "peer",
          "Sluice, memory store, one node; the same calls with the SDK's session stream"
              + " (`SluiceClient.Builder.session(1)`): acquires and releases of all threads batched on one"
              + " bidi stream."));
      all.add(new SluiceLimiter("sluice-redis", redis1.client(), "peer",
          "Sluice, Redis store, one node on the same redis-server as the peers; same SDK calls. The node"
              + " batches a resource's concurrent acquires and releases into one EVALSHA."));
      all.add(new SluiceLimiter("sluice-redis-session", redis1.sessionClient(1), "peer",
          "Sluice, Redis store, one node; the same calls on the SDK's session stream."));
      all.add(new SluiceLimiter("sluice-redis-sliced-session", sliced1.sessionClient(1), "peer-s",
          "Sluice, Redis store, one node in the opt-in slice mode (`--slice '*=" + SLICE_HOLD + "'`): the node"
              + " takes capacity from Redis in slices and grants from them locally, FIFO within the node; the"
              + " SDK's session stream."));
      try {
        all.addAll(Peers.all(uri, o.limit()));
        // The peers group was planned with EXPECTED_PEERS peers and ASYNC_PEERS own-driver rows.
        steps += 2 * (all.size() - SLUICE_PEERS - EXPECTED_PEERS)
            + (int) all.stream().filter(Limiter::async).count() - ASYNC_PEERS;
      } catch (Exception | LinkageError e) {
        steps -= 2 * EXPECTED_PEERS + ASYNC_PEERS - SLUICE_PEERS;
        Result r = new Result("peer.all", "peers", "peers", "permits/s");
        r.failure = "Peers.all could not open the peers: " + e;
        r.driver = "-";
        results.add(r);
        out.println("         " + r.failure);
      }
      try {
        for (Limiter limiter : all) {
          peerNotes.putIfAbsent(limiter.name(), limiter.notes());
          SluiceRig rig = limiter.name().startsWith("sluice-redis-sliced") ? sliced1
              : limiter.name().startsWith("sluice-redis") ? redis1
              : limiter.name().startsWith("sluice-") ? memory : null;
          for (int n : new int[] {1, o.workers()}) {
            Result r = new Result("peer." + limiter.name() + "." + (n == 1 ? "1" : "n"), "peers", limiter.name(),
                "permits/s");
            if (rig != null) {
              on(rig, r);
            }
            r.totalName = "acquire+release";
            r.firstName = "acquire";
            long[] before = peerCounters(limiter);
            measure(r, () -> new ThreadLoop(limiter.name(), n, lap -> {
              Object p = limiter.acquire();
              lap.mark();
              limiter.release(p);
            }));
            long[] after = peerCounters(limiter);
            if (limiter instanceof Bucket4jLettuceLimiter) {
              r.facts.put("CAS retries (lost compare-and-swaps, warm-up included)", Long.toString(after[0] - before[0]));
            }
            if (limiter instanceof SentinelClusterLimiter) {
              r.facts.put("BLOCKED answers retried / SHOULD_WAIT answers slept (warm-up included)",
                  (after[0] - before[0]) + " / " + (after[1] - before[1]));
            }
          }
          if (limiter.async()) {
            // The same system driven as its own users drive it: its asynchronous API, N in flight.
            Result r = new Result("peer." + limiter.name() + ".async", "peers", limiter.name(), "permits/s");
            if (rig != null) {
              on(rig, r);
            }
            r.totalName = "acquire+release";
            r.firstName = "acquire";
            long[] before = peerCounters(limiter);
            measure(r, () -> new AsyncLoop(limiter.name(), o.workers(), (lap, done) -> {
              CompletableFuture<Object> f;
              try {
                f = limiter.acquireAsync();
              } catch (Exception e) {
                done.accept(e);
                return;
              }
              f.whenComplete((p, e) -> {
                if (e != null) {
                  done.accept(e);
                  return;
                }
                lap.mark();
                try {
                  limiter.release(p);
                  done.accept(null);
                } catch (Exception releaseFailed) {
                  done.accept(releaseFailed);
                }
              });
            }));
            long[] after = peerCounters(limiter);
            if (limiter instanceof Bucket4jLettuceLimiter) {
              r.facts.put("CAS retries (lost compare-and-swaps, warm-up included)", Long.toString(after[0] - before[0]));
            }
          }
        }
      } finally {
        for (Limiter limiter : all) {
          try {
            limiter.close();
          } catch (Exception e) {
            out.println("         closing " + limiter.name() + " failed: " + e);
          }
        }
      }
    }
  }

  /** The peers' own counters of retries and refusals, where they keep them. */
  private static long[] peerCounters(Limiter limiter) {
    if (limiter instanceof Bucket4jLettuceLimiter b) {
      return new long[] {b.casRetries(), 0};
    }
    if (limiter instanceof SentinelClusterLimiter s) {
      return new long[] {s.refusals(), s.waits()};
    }
    return new long[] {0, 0};
  }

  private void scale() throws Exception {
    Result shown = new Result("scale.resources", "scale", "scale: " + Fmt.rateAscii(o.scaleResources()) + " resources",
        "");
    shown.driver = "MemoryEngine";
    started(shown);
    try {
      scaleResources = Scale.resources(o.scaleResources());
      out.printf(Locale.ROOT, "%-8s %-46s %s%n", "", "", scaleResources.failure() != null ? scaleResources.failure()
          : String.format(Locale.ROOT, "%d B/resource configured (%s), %d B/resource used once (%s), setLimit at"
              + " this size %.0f ms", Math.round(scaleResources.bytesPerResource()),
              Fmt.rateAscii(scaleResources.configured()), Math.round(scaleResources.bytesPerLiveResource()),
              Fmt.rateAscii(scaleResources.live()), scaleResources.setLimitMillis()));
    } catch (Exception | OutOfMemoryError e) {
      scaleFailure = "resources: " + e;
      out.println("         failed: " + e);
    }
    Result waiters = new Result("scale.waiters", "scale", "scale: " + Fmt.rateAscii(o.scaleWaiters()) + " parked waiters",
        "");
    waiters.driver = "MemoryEngine";
    started(waiters);
    try {
      scaleWaiters = Scale.waiters(o.scaleWaiters(), o.scaleWaiterResources());
      out.printf(Locale.ROOT, "%-8s %-46s %s%n", "", "", scaleWaiters.failure() != null ? scaleWaiters.failure()
          : String.format(Locale.ROOT, "%d B/waiter, threads %d -> %d", Math.round(scaleWaiters.bytesPerWaiter()),
              scaleWaiters.threadsBefore(), scaleWaiters.threadsAfter()));
    } catch (Exception | OutOfMemoryError e) {
      scaleFailure = (scaleFailure == null ? "" : scaleFailure + "; ") + "waiters: " + e;
      out.println("         failed: " + e);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Sluice workloads

  private static Result permits(Result r) {
    r.totalName = "acquire+release";
    r.firstName = "acquire";
    return r;
  }

  /** Blocking SDK acquire, then close (the SDK sends the Release without waiting for it). */
  private static Workload sluiceBlocking(SluiceClient client, String resource, int threads) {
    return new ThreadLoop("sluice", threads, lap -> {
      Permit p = client.acquire(resource);
      lap.mark();
      p.close();
    });
  }

  private static Workload sluiceAsync(SluiceClient client, String resource, int inFlight) {
    AcquireOptions options = AcquireOptions.defaults();
    Load one = Load.requests(1);
    return new AsyncLoop("sluice", inFlight, (lap, done) ->
        client.acquireAsync(resource, one, options).whenComplete((p, e) -> {
          if (e != null) {
            done.accept(e);
            return;
          }
          lap.mark();
          p.close();
          done.accept(null);
        }));
  }

  /**
   * Releases are sent without waiting, so a closed loop could outrun them: how long after the
   * stop the coordinator still held permits says whether they kept up.
   */
  private static void releasesCaughtUp(SluiceRig rig, String resource, Result r) {
    long start = System.nanoTime();
    long open = -1;
    while (System.nanoTime() - start < TimeUnit.SECONDS.toNanos(5)) {
      open = rig.stats(resource).getInFlight();
      if (open == 0) {
        break;
      }
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return;
      }
    }
    long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    r.facts.put("releases", open == 0 ? "all permits released " + ms + " ms after the stop"
        : open + " permits still open 5 s after the stop");
  }

  private static long waiting(ResourceStats s) {
    return s.getWaitingMap().values().stream().mapToLong(Long::longValue).sum();
  }

  private RedisProcess redis() throws InterruptedException {
    if (redis == null) {
      redis = RedisProcess.start();
      out.println("         (redis-server " + redis.uri() + ", binary " + RedisProcess.binary() + ")");
    }
    return redis;
  }

  // ---------------------------------------------------------------------------------------------
  // Running and printing

  private static final Runnable NOTHING = () -> { };
  /** A window in which other processes took more than this share of the machine is disturbed. */
  static final double DISTURBED = 0.10;

  private void measure(Result r, java.util.function.Supplier<Workload> w) throws InterruptedException {
    measure(r, w, NOTHING, NOTHING);
  }

  /**
   * Runs one scenario; {@code beforeStop} runs after its last window with the load still on,
   * {@code afterStop} once it has stopped. When other processes took more than 10 % of the machine
   * in a window, the scenario is measured again (up to {@code --noise-retries} times, default 2, after
   * a 5 s pause): on a shared box a
   * figure taken next to someone's build says nothing about Sluice.
   */
  private void measure(Result r, java.util.function.Supplier<Workload> w, Runnable beforeStop, Runnable afterStop)
      throws InterruptedException {
    List<String> disturbed = new ArrayList<>();
    for (int attempt = 0; ; attempt++) {
      r.reset();
      Workload workload = w.get();
      r.driver = workload.driver();
      if (attempt == 0) {
        started(r);
      }
      try {
        runner.run(workload, r, beforeStop);
      } catch (RuntimeException e) {
        r.failure = e.toString();
      }
      afterStop.run();
      double others = r.othersCpu().max();
      if (!(others > DISTURBED) || attempt >= o.noiseRetries()) {
        break;
      }
      disturbed.add(String.format(Locale.ROOT, "%.0f %%", others * 100));
      out.printf(Locale.ROOT, "%-8s   other processes took %.0f %% of the machine in a window: measuring again%n", "",
          others * 100);
      Thread.sleep(5_000);
    }
    if (!disturbed.isEmpty()) {
      r.facts.put("measured again", disturbed.size() + " time(s): other processes took " + String.join(", ", disturbed)
          + " of the machine in an earlier attempt");
    }
    finished(r);
    results.add(r);
  }

  private void started(Result r) {
    step++;
    out.printf(Locale.ROOT, "%-8s %-46s %-22s %-11s %s%n", String.format(Locale.ROOT, "[%2d/%d]", step, steps),
        cut(r.label, 46), cut(r.driver, 22), coordinator(r), "...");
  }

  private void finished(Result r) {
    String figures;
    if (!r.ok()) {
      figures = "FAILED: " + (r.failure != null ? r.failure : r.firstError != null ? r.firstError : "no operation completed");
    } else {
      figures = String.format(Locale.ROOT, "%28s %10s %10s %7d %7s", Fmt.rateAscii(r.rate().median()) + " ["
              + Fmt.rateAscii(r.rate().min()) + "-" + Fmt.rateAscii(r.rate().max()) + "]",
          Fmt.micros(r.p50().median()), Fmt.micros(r.p99().median()), r.errors(),
          Report.othersCpu(r).replace("**", ""));
      if (r.hasFirst()) {
        figures += String.format(Locale.ROOT, "   (%s p50 %s p99 %s)", r.firstName, Fmt.micros(r.firstP50().median()),
            Fmt.micros(r.firstP99().median()));
      }
      if (r.errors() > 0 && r.firstError != null) {
        figures += "  first error: " + r.firstError;
      }
    }
    out.printf(Locale.ROOT, "%-8s %-46s %-22s %-11s %s%n", "", cut(r.label, 46), cut(r.driver, 22), coordinator(r),
        figures);
    for (Map.Entry<String, String> f : r.facts.entrySet()) {
      out.printf(Locale.ROOT, "%-8s   %s: %s%n", "", f.getKey(), f.getValue());
    }
  }

  /** The coordinator column: where this row's Sluice coordinator ran, "-" for other systems. */
  static String coordinator(Result r) {
    return r.coordinator == null ? "-" : r.coordinator;
  }

  private static String cut(String s, int n) {
    return s.length() <= n ? s : s.substring(0, n - 1) + "~";
  }

  static String secs(Duration d) {
    return String.format(Locale.ROOT, "%.1f s", d.toMillis() / 1000.0);
  }
}
