package dev.sluice.bench.jmh;

import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.Scheduler;
import dev.sluice.server.engine.Ticket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The scheduler's cost with tenants: acquires queue on a paused resource, spread over {@code
 * tenants} tenants (0: none, the default tenant only, without fair queuing), then a resume grants
 * them all in one drain, and each permit is released. The score is permits per second through
 * queue, pick and grant; the bar is 0.8x the no-tenant figure of the same run for 1, 10
 * and 1 000 tenants. Two shapes: 1 000 waiters (at 1 000 tenants, one each: the worst case, every
 * permit activates and retires its tenant) and 10 000 (a backlog of ten each at 1 000 tenants).
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
@State(Scope.Benchmark)
public class TenantBench {

  static final int WAITERS = 1_000;
  /** The backlogged shape: ten waiters a tenant at 1 000 tenants (a hundred at 10, ...). */
  static final int BACKLOG = 10_000;
  private static final Map<String, Long> ONE = Map.of("requests", 1L);

  @Param({"0", "1", "10", "1000"})
  public int tenants;

  private ScheduledThreadPoolExecutor timers;
  private MemoryEngine engine;
  private String[] names;
  private String[] backlogNames;

  @Setup(Level.Trial)
  public void setUp() throws Exception {
    timers = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "tenant-bench-timer");
      t.setDaemon(true);
      return t;
    });
    timers.setRemoveOnCancelPolicy(true); // as the server's: a granted waiter's timeout leaves the queue
    engine = MemoryEngine.builder().scheduler(Scheduler.of(timers)).build();
    long huge = 1_000_000_000L;
    engine.setLimit(new LimitSpec("q", List.of(new RateSpec("requests", huge, Duration.ofSeconds(1), huge)),
        0, 100_000, Duration.ofMinutes(1))).join();
    Thread.sleep(200); // the bucket fills: only the pause holds the waiters
    names = new String[WAITERS];
    for (int i = 0; i < WAITERS; i++) {
      names[i] = tenants == 0 ? null : "t" + (i % tenants);
    }
    backlogNames = new String[BACKLOG];
    for (int i = 0; i < BACKLOG; i++) {
      backlogNames[i] = tenants == 0 ? null : "t" + (i % tenants);
    }
  }

  @TearDown(Level.Trial)
  public void close() {
    engine.close();
    timers.shutdownNow();
  }

  /** 1 000 waiters: at 1 000 tenants one each, so every permit makes its tenant wait, then idle. */
  @Benchmark
  @OperationsPerInvocation(WAITERS)
  public int queueThenDrain() {
    return run(names);
  }

  /** 10 000 waiters: at 1 000 tenants a backlog of ten each, the case fair queuing is for. */
  @Benchmark
  @OperationsPerInvocation(BACKLOG)
  public int queueThenDrainBacklogged() {
    return run(backlogNames);
  }

  private int run(String[] who) {
    engine.pause("q", -1).join();
    List<Ticket> tickets = new ArrayList<>(who.length);
    for (String tenant : who) {
      tickets.add(engine.acquire("q", ONE, Lane.DEFAULT, 60_000_000_000L, null, tenant));
    }
    engine.resume("q").join();
    int granted = 0;
    for (Ticket t : tickets) {
      Grant g = t.future().join();
      if (t.claim()) {
        engine.release("q", g.permitId(), Map.of(), false, false).join();
        granted++;
      }
    }
    return granted;
  }
}
