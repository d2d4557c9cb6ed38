package dev.sluice.bench.jmh;

import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.LimitStore;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.Scheduler;
import dev.sluice.server.engine.Ticket;
import dev.sluice.server.engine.Validation;
import java.time.Duration;
import java.util.AbstractList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The engine's hot path without the network: acquire (try once, so a grant is synchronous),
 * claim, release, on {@link MemoryEngine} directly. One hot key (every thread on one monitor)
 * on an engine holding only that key, and 100 000 keys, each used once before measuring (a
 * random key per operation: the lookup and cache-cold state) on an engine holding those. The limits are far above what a benchmark thread
 * can take, so every acquire is granted at once.
 *
 * <p>Short by default (3 x 1 s warm-up, 5 x 1 s measured, 1 fork): run it through
 * {@link JmhMain}, which adds the JSON result file the load generator's report reads.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
public class EngineBench {

  static final int KEYS = 100_000;
  static final String HOT = "hot";
  private static final Map<String, Long> ONE = Map.of("requests", 1L);
  private static final Map<String, Long> NOTHING = Map.of();

  /** An engine and its timer thread, with the named resources loaded as on a restart. */
  abstract static class Engine {
    ScheduledThreadPoolExecutor timers;
    MemoryEngine engine;

    void open(String[] names) throws Exception {
      timers = new ScheduledThreadPoolExecutor(1, r -> {
        Thread t = new Thread(r, "engine-bench-timer");
        t.setDaemon(true);
        return t;
      });
      timers.setRemoveOnCancelPolicy(true); // as the server's (see TenantBench)
      // Loaded through the store: setLimit one by one is O(n) per call.
      engine = MemoryEngine.builder().scheduler(Scheduler.of(timers)).store(new LimitStore() {
        @Override
        public List<LimitSpec> load() {
          return new AbstractList<>() {
            @Override
            public LimitSpec get(int i) {
              return spec(names[i]);
            }

            @Override
            public int size() {
              return names.length;
            }
          };
        }

        @Override
        public void save(Collection<LimitSpec> limits) {}
      }).build();
      // Buckets start empty and fill at the rate: give them a moment before measuring.
      Thread.sleep(100);
    }

    @TearDown(Level.Trial)
    public void close() {
      engine.close();
      timers.shutdownNow();
    }

    /** One permit: acquire (try once), claim, release. False if not granted at once. */
    boolean cycle(String resource) {
      Ticket t = engine.acquire(resource, ONE, Lane.DEFAULT, 0);
      Grant g = t.future().getNow(null);
      if (g == null || !t.claim()) {
        return false;
      }
      return engine.release(resource, g.permitId(), NOTHING, false, false).join();
    }
  }

  /** One resource. */
  @State(Scope.Benchmark)
  public static class HotKey extends Engine {
    @Setup(Level.Trial)
    public void setUp() throws Exception {
      open(new String[] {HOT});
    }
  }

  /** 100 000 resources. */
  @State(Scope.Benchmark)
  public static class ManyKeys extends Engine {
    String[] keys;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
      keys = new String[KEYS];
      for (int i = 0; i < KEYS; i++) {
        keys[i] = "k" + i;
      }
      open(keys);
      // Every key used once before measuring: the steady state of 100 000 live resources, not the
      // cost of each one's first use (meters, wait histogram), which the load generator's scale
      // scenario reports.
      for (String k : keys) {
        cycle(k);
      }
    }

    String random() {
      return keys[ThreadLocalRandom.current().nextInt(KEYS)];
    }
  }

  private static LimitSpec spec(String name) {
    long perSecond = 1_000_000_000L;
    LimitSpec raw = new LimitSpec(name, List.of(new RateSpec("requests", perSecond, Duration.ofSeconds(1),
        perSecond)), 0, 0, null);
    return Validation.limit(raw, 10_000, Duration.ofSeconds(30));
  }

  @Benchmark
  @Threads(1)
  public boolean hotKey_1thread(HotKey s) {
    return s.cycle(HOT);
  }

  @Benchmark
  @Threads(2)
  public boolean hotKey_2threads(HotKey s) {
    return s.cycle(HOT);
  }

  @Benchmark
  @Threads(1)
  public boolean keys100k_1thread(ManyKeys s) {
    return s.cycle(s.random());
  }

  @Benchmark
  @Threads(2)
  public boolean keys100k_2threads(ManyKeys s) {
    return s.cycle(s.random());
  }
}
