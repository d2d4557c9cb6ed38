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
 *   java -jar bench/target/sluice-bench.jar            # full run, about 6 minutes
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
  private static final int SLUICE_PEERS = 4;
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
    out.println();
    out.printf(Locale.ROOT, "%-8s %-46s %-22s %28s %10s %10s %7s %7s%n", "step", "scenario", "driver",
        "throughput [min-max]", "p50", "p99", "errors", "others");
    try {
      if (o.runs("ceiling") || o.runs("memory")) {
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
      if (o.runs("peers")) {
        peers();
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
        scaleFailure);
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
    n += o.runs("ceiling") ? 7 : 0;
    n += o.runs("memory") ? 4 : 0;
    n += o.runs("contended") ? 2 : 0;
    n += o.runs("redis") ? 6 : 0;
    n += o.runs("peers") ? 2 * (SLUICE_PEERS + EXPECTED_PEERS) : 0;
    n += o.runs("scale") ? 2 : 0;
    return n;
  }

  // ---------------------------------------------------------------------------------------------
  // Scenarios

  /** The transport, JIT and Netty warm before the first measurement (the scenarios warm up too). */
  private void jvmWarmup() throws Exception {
    if (o.jvmWarmup().isZero()) {
      return;
    }
    out.println("         (warming the JVM up for " + secs(o.jvmWarmup()) + ": echo and Sluice, not measured)");
    try (Echo echo = Echo.start(); SluiceRig rig = SluiceRig.memory()) {
      rig.setLimit(SluiceRig.rate(HOT, o.limit(), 10_000));
      try (SluiceClient client = rig.client()) {
        Workload a = echo.unaryAsync(o.workers(), false);
        Workload b = sluiceAsync(client, HOT, o.workers());
        Meter m = new Meter();
        a.start(m);
        b.start(m);
        TimeUnit.NANOSECONDS.sleep(o.jvmWarmup().toNanos());
        a.stop();
        b.stop();
      }
    }
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
    }
  }

  private void memory() throws Exception {
    try (SluiceRig rig = SluiceRig.memory()) {
      rig.setLimit(SluiceRig.rate(HOT, o.limit(), 10_000));
      try (SluiceClient client = rig.client()) {
        Result one = permits(new Result("memory.1", "memory", "Sluice memory, acquire+release", "permits/s"));
        measure(one, () -> sluiceBlocking(client, HOT, 1), NOTHING, () -> releasesCaughtUp(rig, HOT, one));
        Result many = permits(new Result("memory.n", "memory", "Sluice memory, acquire+release", "permits/s"));
        measure(many, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(rig, HOT, many));
      }
      // The SDK's session streams: acquires and releases batched on one bidi stream.
      try (SluiceClient client = rig.sessionClient(1)) {
        String label = "Sluice memory, session stream";
        Result one = permits(new Result("memory.1.session", "memory", label, "permits/s"));
        measure(one, () -> sluiceBlocking(client, HOT, 1), NOTHING, () -> releasesCaughtUp(rig, HOT, one));
        Result many = permits(new Result("memory.n.session", "memory", label, "permits/s"));
        measure(many, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(rig, HOT, many));
      }
      // What the HTTP port costs (gRPC metrics interceptor, once-a-second sampler): the unary row
      // again with it on, then on a node without it, back to back on a warm JVM (the first rows
      // of a run are slower, so memory.n itself is no fair baseline).
      try (SluiceClient client = rig.client()) {
        Result on = permits(new Result("memory.n.http", "memory", "Sluice memory, acquire+release, HTTP on (again)",
            "permits/s"));
        measure(on, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(rig, HOT, on));
      }
      try (SluiceRig bare = SluiceRig.memory(false)) {
        bare.setLimit(SluiceRig.rate(HOT, o.limit(), 10_000));
        try (SluiceClient client = bare.client()) {
          Result off = permits(new Result("memory.n.nohttp", "memory",
              "Sluice memory, acquire+release, no HTTP port", "permits/s"));
          measure(off, () -> sluiceAsync(client, HOT, o.workers()), NOTHING, () -> releasesCaughtUp(bare, HOT, off));
        }
      }
    }
  }

  private void contended() throws Exception {
    try (SluiceRig rig = SluiceRig.memory()) {
      int room = o.waiters() * 2;
      rig.setLimit(SluiceRig.rate("contended", o.contendedRate(), contendedBurst(), room));
      rig.setLimit(SluiceRig.concurrency("handoff", 1, room));

      Result rate = new Result("contended.rate", "contended",
          "Sluice memory, " + Fmt.rateAscii(o.contendedRate()) + "/s limit", "grants/s");
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

      Result handoff = new Result("contended.handoff", "contended",
          "Sluice memory, cap 1: release→grant", "handoffs/s");
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
      try (SluiceRig rig = SluiceRig.redis(uri, nodes)) {
        rig.setLimit(SluiceRig.rate(resource, o.limit(), 10_000));
        try (SluiceClient client = rig.client()) {
          String label = "Sluice Redis, " + nodes + (nodes == 1 ? " node" : " nodes") + ", acquire+release";
          Result one = permits(new Result("redis" + nodes + ".1", "redis", label, "permits/s"));
          measure(one, () -> sluiceBlocking(client, resource, 1), NOTHING,
              () -> releasesCaughtUp(rig, resource, one));
          Result many = permits(new Result("redis" + nodes + ".n", "redis", label, "permits/s"));
          measure(many, () -> sluiceAsync(client, resource, o.workers()), NOTHING,
              () -> releasesCaughtUp(rig, resource, many));
        }
        // One session stream per node: the client's load spread over every node, batched.
        try (SluiceClient client = rig.sessionClient(nodes)) {
          String label = "Sluice Redis, " + nodes + (nodes == 1 ? " node" : " nodes") + ", session streams";
          Result many = permits(new Result("redis" + nodes + ".n.session", "redis", label, "permits/s"));
          measure(many, () -> sluiceAsync(client, resource, o.workers()), NOTHING,
              () -> releasesCaughtUp(rig, resource, many));
        }
      }
    }
  }

  private void peers() throws Exception {
    String uri = redis().uri();
    try (SluiceRig memory = SluiceRig.memory(); SluiceRig redis1 = SluiceRig.redis(uri, 1)) {
      memory.setLimit(SluiceRig.rate("peer", o.limit(), 10_000));
      redis1.setLimit(SluiceRig.rate("peer", o.limit(), 10_000));
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
      try {
        all.addAll(Peers.all(uri, o.limit()));
        steps += 2 * (all.size() - SLUICE_PEERS - EXPECTED_PEERS);
      } catch (Exception | LinkageError e) {
        steps -= 2 * EXPECTED_PEERS;
        Result r = new Result("peer.all", "peers", "peers", "permits/s");
        r.failure = "Peers.all could not open the peers: " + e;
        r.driver = "-";
        results.add(r);
        out.println("         " + r.failure);
      }
      try {
        for (Limiter limiter : all) {
          peerNotes.putIfAbsent(limiter.name(), limiter.notes());
          for (int n : new int[] {1, o.workers()}) {
            Result r = new Result("peer." + limiter.name() + "." + (n == 1 ? "1" : "n"), "peers", limiter.name(),
                "permits/s");
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
    out.printf(Locale.ROOT, "%-8s %-46s %-22s %s%n", String.format(Locale.ROOT, "[%2d/%d]", step, steps),
        cut(r.label, 46), cut(r.driver, 22), "...");
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
    out.printf(Locale.ROOT, "%-8s %-46s %-22s %s%n", "", cut(r.label, 46), cut(r.driver, 22), figures);
    for (Map.Entry<String, String> f : r.facts.entrySet()) {
      out.printf(Locale.ROOT, "%-8s   %s: %s%n", "", f.getKey(), f.getValue());
    }
  }

  private static String cut(String s, int n) {
    return s.length() <= n ? s : s.substring(0, n - 1) + "~";
  }

  static String secs(Duration d) {
    return String.format(Locale.ROOT, "%.1f s", d.toMillis() / 1000.0);
  }
}
