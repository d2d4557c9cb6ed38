package dev.sluice.bench;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Command-line options of {@link LoadGen}; {@link #USAGE} documents each and its default.
 *
 * @param jvmWarmup the JVM warm-up's minimum, 0 for none
 * @param jvmWarmupMax how long the JVM warm-up may go on waiting for the echo's plateau
 * @param warmup per scenario, recorded then discarded
 * @param duration measured time per scenario, split into {@code rounds} equal windows
 * @param groups which scenario groups to run
 * @param placement where the Sluice coordinators run
 */
record Options(boolean quick, Duration jvmWarmup, Duration jvmWarmupMax, Duration warmup, Duration duration,
    int rounds, Set<String> groups, Path out, Path jmhJson, int workers, int waiters, long contendedRate, long limit, int scaleResources,
    int scaleWaiters, int scaleWaiterResources, int noiseRetries, SluiceRig.Placement placement) {

  static final List<String> GROUPS = List.of("ceiling", "memory", "contended", "redis", "keys", "http", "peers",
      "scale");
  static final Path DEFAULT_SLUICE_BIN = Path.of("bin", "sluice");
  /** How these were chosen, on 2-core machines: docs/benchmarks.md, "Warm-up". */
  static final Duration DEFAULT_JVM_WARMUP = Duration.ofSeconds(20);
  static final Duration DEFAULT_WARMUP = Duration.ofSeconds(8);
  static final Duration DEFAULT_JVM_WARMUP_MAX = Duration.ofSeconds(60);

  static final String USAGE = """
      Usage: java -jar bench/target/sluice-bench.jar [options]
             java -jar bench/target/sluice-bench.jar jmh [JMH options]   (engine micro-benchmarks)
             java -jar bench/target/sluice-bench.jar soak [--duration 10m] [--rate 15000] [--out .]
                 (the soak run: errors, heap after GC and open files over time; writes the soak
                 section of BENCHMARKS.md, which the full run keeps)
             java -jar bench/target/sluice-bench.jar push [--duration 10s] [--callers 64]
                 (buffer items accepted per second over HTTP on each store, one per request and
                 100 per request, against GET /healthz on the same coordinator; prints only)
             java -jar bench/target/sluice-bench.jar first [--threads 32] [--runs 3]
                 (a fresh JVM's first acquire against the p50 of the next ones, with the client
                 only built and with warmUp after building; prints only)

      Runs every scenario in one JVM, one after another, prints a table as it goes, then writes
      BENCHMARKS.md and docs/bench/{throughput,latency}.svg under --out.

        --quick              about a minute: 1 s warm-up, 1.2 s measured per scenario, scale / 10
        --warmup D           warm-up per scenario (default %WARMUP%; quick 0.6s)
        --duration D         measured time per scenario, split into --rounds windows (default 6s; quick 1.2s)
        --rounds N           measured windows per scenario, the spread of each figure (default 3)
        --jvm-warmup D       one-off warm-up before the first scenario: laps of 1 s echo, then 1 s Sluice,
                             each lap's figure printed, for at least D (default %JVM_WARMUP%; quick 1s;
                             0s: none), then on until the echo of the last 3 laps is within 10 %%
        --jvm-warmup-max D   but no longer than D (default %JVM_WARMUP_MAX%, or --jvm-warmup if longer;
                             quick 1s). The echo is measured again at the end of the run; start and end
                             within 10 %% say the warm-up was long enough
        --only G,G           groups to run: ceiling, memory, contended, redis, keys, http, peers, scale
                             (default all)
        --coordinator WHERE  jvm: every coordinator in the load generator's JVM (default); process: each
                             one in its own process, started as users start it (--sluice-bin serve
                             --port 0 ...), reached over loopback; every row says which it used
        --sluice-bin FILE    the launcher for --coordinator process (default bin/sluice, from a built
                             checkout: ./mvnw -q -DskipTests package)
        --out DIR            where BENCHMARKS.md (and docs/bench/*.svg) go (default .)
        --jmh-json FILE      JMH results to include if present (default bench/target/jmh.json)
        --workers N          the "many" concurrency (default 64)
        --waiters N          parked waiters in the contended scenarios (default 10000)
        --contended-rate N   permits/s of the contended limit (default 2000)
        --limit N            permits/s of the "far above demand" limits (default 1000000000)
        --scale-resources N  resources configured in the scale scenario (default 1000000)
        --scale-waiters N    parked waiters in the scale scenario (default 100000)
        --scale-waiter-resources N  resources they spread over (default 1000)
        --noise-retries N    times a scenario is measured again when other processes took over 10 %
                             of the machine in one of its windows (default 2; 0 keeps the first try)
      Durations: 500ms, 3s, 1.5s, 2m.
      """.replace("%WARMUP%", DEFAULT_WARMUP.toSeconds() + "s").replace("%JVM_WARMUP%",
      DEFAULT_JVM_WARMUP.toSeconds() + "s").replace("%JVM_WARMUP_MAX%", DEFAULT_JVM_WARMUP_MAX.toSeconds() + "s")
      .replace("%%", "%");

  static Options parse(String[] args) {
    boolean quick = List.of(args).contains("--quick");
    Duration jvmWarmup = quick ? Duration.ofSeconds(1) : DEFAULT_JVM_WARMUP;
    Duration warmup = quick ? Duration.ofMillis(600) : DEFAULT_WARMUP;
    Duration jvmWarmupMax = null;
    Duration duration = quick ? Duration.ofMillis(1200) : Duration.ofSeconds(6);
    int rounds = 3;
    Set<String> groups = new LinkedHashSet<>(GROUPS);
    Path out = Path.of(".");
    Path jmhJson = Path.of("bench", "target", "jmh.json");
    int workers = 64;
    int waiters = 10_000;
    long contendedRate = 2_000;
    long limit = dev.sluice.bench.peers.Peers.UNCONTENDED_PERMITS_PER_SECOND;
    int scaleResources = quick ? 20_000 : 1_000_000;
    int scaleWaiters = quick ? 10_000 : 100_000;
    int scaleWaiterResources = quick ? 100 : 1_000;
    int noiseRetries = 2;
    String coordinator = "jvm";
    Path sluiceBin = DEFAULT_SLUICE_BIN;
    boolean sluiceBinGiven = false;
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      switch (a) {
        case "--quick" -> { }
        case "--warmup" -> warmup = duration(value(args, ++i, a));
        case "--duration" -> duration = duration(value(args, ++i, a));
        case "--rounds" -> rounds = positive(value(args, ++i, a), a);
        case "--jvm-warmup" -> jvmWarmup = duration(value(args, ++i, a));
        case "--jvm-warmup-max" -> jvmWarmupMax = duration(value(args, ++i, a));
        case "--only" -> {
          groups = new LinkedHashSet<>();
          for (String g : value(args, ++i, a).split(",")) {
            if (!GROUPS.contains(g.trim())) {
              throw new IllegalArgumentException("--only: unknown group '" + g + "'; use " + String.join(", ", GROUPS));
            }
            groups.add(g.trim());
          }
        }
        case "--out" -> out = Path.of(value(args, ++i, a));
        case "--jmh-json" -> jmhJson = Path.of(value(args, ++i, a));
        case "--workers" -> workers = positive(value(args, ++i, a), a);
        case "--waiters" -> waiters = positive(value(args, ++i, a), a);
        case "--contended-rate" -> contendedRate = positive(value(args, ++i, a), a);
        case "--limit" -> limit = positive(value(args, ++i, a), a);
        case "--scale-resources" -> scaleResources = positive(value(args, ++i, a), a);
        case "--scale-waiters" -> scaleWaiters = positive(value(args, ++i, a), a);
        case "--scale-waiter-resources" -> scaleWaiterResources = positive(value(args, ++i, a), a);
        case "--noise-retries" -> noiseRetries = atLeastZero(value(args, ++i, a), a);
        case "--coordinator" -> {
          coordinator = value(args, ++i, a);
          if (!coordinator.equals("jvm") && !coordinator.equals("process")) {
            throw new IllegalArgumentException("--coordinator: unknown placement '" + coordinator
                + "'; use jvm (in the load generator's JVM) or process (each coordinator its own process)");
          }
        }
        case "--sluice-bin" -> {
          sluiceBin = Path.of(value(args, ++i, a));
          sluiceBinGiven = true;
        }
        default -> throw new IllegalArgumentException("unknown option '" + a + "'");
      }
    }
    if (duration.dividedBy(rounds).toMillis() < 100) {
      throw new IllegalArgumentException("--duration " + duration.toMillis() + "ms over " + rounds
          + " rounds leaves windows under 100 ms: lengthen it or lower --rounds");
    }
    if (jvmWarmupMax == null) {
      jvmWarmupMax = quick || jvmWarmup.compareTo(DEFAULT_JVM_WARMUP_MAX) > 0 ? jvmWarmup : DEFAULT_JVM_WARMUP_MAX;
    } else if (jvmWarmupMax.compareTo(jvmWarmup) < 0) {
      throw new IllegalArgumentException("--jvm-warmup-max " + jvmWarmupMax.toMillis() + "ms is shorter than"
          + " --jvm-warmup " + jvmWarmup.toMillis() + "ms: give a maximum at least as long as the minimum");
    }
    if (sluiceBinGiven && !coordinator.equals("process")) {
      throw new IllegalArgumentException("--sluice-bin is used only with --coordinator process: add that, or drop"
          + " --sluice-bin");
    }
    SluiceRig.Placement placement = SluiceRig.Placement.JVM;
    if (coordinator.equals("process")) {
      if (!Files.isExecutable(sluiceBin)) {
        throw new IllegalArgumentException("--coordinator process: " + sluiceBin + " is not an executable file;"
            + " run from the repository root after ./mvnw -q -DskipTests package, or give --sluice-bin");
      }
      placement = SluiceRig.Placement.process(sluiceBin);
    }
    return new Options(quick, jvmWarmup, jvmWarmupMax, warmup, duration, rounds, groups, out, jmhJson, workers, waiters,
        contendedRate, limit, scaleResources, scaleWaiters, scaleWaiterResources, noiseRetries, placement);
  }

  Duration round() {
    return duration.dividedBy(rounds);
  }

  boolean runs(String group) {
    return groups.contains(group);
  }

  static String value(String[] args, int i, String option) {
    if (i >= args.length) {
      throw new IllegalArgumentException(option + " needs a value");
    }
    return args[i];
  }

  static int positive(String v, String option) {
    try {
      int n = Integer.parseInt(v.replace("_", ""));
      if (n < 1) {
        throw new NumberFormatException();
      }
      return n;
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(option + " '" + v + "' is not a positive whole number");
    }
  }

  private static int atLeastZero(String v, String option) {
    try {
      int n = Integer.parseInt(v);
      if (n < 0) {
        throw new NumberFormatException();
      }
      return n;
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(option + " '" + v + "' is not a whole number >= 0");
    }
  }

  /** 500ms, 3s, 1.5s, 2m. */
  static Duration duration(String v) {
    String s = v.trim().toLowerCase(Locale.ROOT);
    try {
      if (s.endsWith("ms")) {
        return Duration.ofMillis(Long.parseLong(s.substring(0, s.length() - 2)));
      }
      if (s.endsWith("s")) {
        return Duration.ofMillis(Math.round(Double.parseDouble(s.substring(0, s.length() - 1)) * 1000));
      }
      if (s.endsWith("m")) {
        return Duration.ofMillis(Math.round(Double.parseDouble(s.substring(0, s.length() - 1)) * 60_000));
      }
    } catch (NumberFormatException e) {
      // fall through
    }
    throw new IllegalArgumentException("duration '" + v + "' is not like 500ms, 3s, 1.5s or 2m");
  }
}
