package dev.sluice.bench;

import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.RedisEngine;
import dev.sluice.server.engine.Scheduler;
import dev.sluice.server.engine.Ticker;
import dev.sluice.server.redis.RedisProcess;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@code sluice-bench.jar templates}: what many distinct names matched by one template cost once
 * they went idle. One template {@code customer:*} (60/min, burst 1), then {@code --names}
 * distinct names {@code customer:0..} used once each (one acquire and its release, on
 * the engine directly, no gRPC), then left idle.
 *
 * <ul>
 *   <li>memory store: heap in use after full GCs before, after the names were used, and after
 *       they went idle; the engine's clock is a manual one moved past the idle grace (the
 *       figure is memory, not time);
 *   <li>Redis store: {@code INFO memory} used_memory and the key count on a redis-server of
 *       its own, the same three times; Redis's own clock, so idle takes real time: the bucket
 *       full again (1 s), the request ids the node made up forgotten (60 s), plus the idle grace
 *       (1 min, the least allowed), then Redis's expiry; waited for until no name's key is left
 *       or 6 minutes passed.
 * </ul>
 *
 * Prints one block per store; asserts nothing.
 */
final class TemplateBench {

  private static final Map<String, Long> ONE = Map.of("requests", 1L);
  private static final LimitSpec TEMPLATE = new LimitSpec("customer:*",
      List.of(new RateSpec("requests", 60, Duration.ofMinutes(1), 1)), 0, 0, null);
  /** Calls in flight: on Redis each name's first call is its own script calls, not batched. */
  private static final int MEMORY_IN_FLIGHT = 2_000;
  private static final int REDIS_IN_FLIGHT = 200;

  private TemplateBench() {}

  static void run(String[] args, PrintStream out) throws Exception {
    int memoryNames = 1_000_000;
    int redisNames = 200_000;
    String store = "both";
    for (int i = 1; i < args.length; i++) {
      switch (args[i]) {
        case "--names" -> memoryNames = redisNames = Integer.parseInt(args[++i]);
        case "--memory-names" -> memoryNames = Integer.parseInt(args[++i]);
        case "--redis-names" -> redisNames = Integer.parseInt(args[++i]);
        case "--store" -> store = args[++i];
        default -> throw new IllegalArgumentException("unknown option " + args[i]
            + ": templates [--names N | --memory-names N --redis-names N] [--store memory|redis|both]");
      }
    }
    if (!store.equals("redis")) {
      memory(memoryNames, out);
    }
    if (!store.equals("memory")) {
      redis(redisNames, out);
    }
  }

  private static void memory(int names, PrintStream out) throws Exception {
    AtomicLong now = new AtomicLong(1_000_000_000L);
    Ticker ticker = now::get;
    ScheduledThreadPoolExecutor timers = new ScheduledThreadPoolExecutor(1);
    try {
      MemoryEngine engine = MemoryEngine.builder().ticker(ticker).scheduler(Scheduler.of(timers))
          .idleGrace(Duration.ofMinutes(1)).build();
      long before = Scale.usedHeapAfterGc();
      engine.setTemplate(TEMPLATE).join();
      now.addAndGet(Duration.ofMinutes(1).toNanos());
      long t0 = System.nanoTime();
      use(engine, "customer:", names, MEMORY_IN_FLIGHT);
      double seconds = (System.nanoTime() - t0) / 1e9;
      long used = Scale.usedHeapAfterGc();
      // Past full (1 s), then the idle grace: every name's state is due; one more name's first
      // use runs the cache's maintenance, which lets the due ones go.
      now.addAndGet(Duration.ofMinutes(2).toNanos());
      use(engine, "customer:probe:", 1, 1);
      long idle = Scale.usedHeapAfterGc();
      out.printf(Locale.ROOT, "templates, memory store: %,d names used once (acquire + release, %.1f s, %,.0f/s)%n",
          names, seconds, names / seconds);
      out.printf(Locale.ROOT, "  heap after GC: before %s, names used %s (+%.0f B per name), idle %s (%+.1f B per"
          + " name against before)%n", mib(before), mib(used), (double) (used - before) / names, mib(idle),
          (double) (idle - before) / names);
      engine.close();
    } finally {
      timers.shutdownNow();
    }
  }

  private static void redis(int names, PrintStream out) throws Exception {
    ScheduledThreadPoolExecutor timers = new ScheduledThreadPoolExecutor(1);
    try (RedisProcess server = RedisProcess.start()) {
      RedisClient client = RedisClient.create(server.uri());
      try (StatefulRedisConnection<String, String> c = client.connect()) {
        RedisEngine engine = RedisEngine.builder().uri(server.uri()).scheduler(Scheduler.of(timers))
            .commandTimeout(Duration.ofSeconds(10)).templateIdle(Duration.ofMinutes(1)).build();
        long memBefore = usedMemory(c);
        long keysBefore = c.sync().dbsize();
        engine.setTemplate(TEMPLATE).join();
        Thread.sleep(1_100); // the template's buckets fill (as set a second ago)
        long t0 = System.nanoTime();
        use(engine, "customer:", names, REDIS_IN_FLIGHT);
        double seconds = (System.nanoTime() - t0) / 1e9;
        long memUsed = usedMemory(c);
        long keysUsed = c.sync().dbsize();
        long waitStart = System.nanoTime();
        long keysIdle = keysUsed;
        while (System.nanoTime() - waitStart < Duration.ofMinutes(6).toNanos()) {
          Thread.sleep(5_000);
          keysIdle = c.sync().dbsize();
          if (keysIdle <= keysBefore + 2) {
            break;
          }
        }
        double waited = (System.nanoTime() - waitStart) / 1e9;
        long memIdle = usedMemory(c);
        out.printf(Locale.ROOT, "templates, Redis store: %,d names used once (acquire + release, %.1f s, %,.0f/s)%n",
            names, seconds, names / seconds);
        out.printf(Locale.ROOT, "  used_memory: before %s, names used %s (+%.0f B per name), idle %s (%+.1f B per"
                + " name against before) after %.0f s%n", mib(memBefore), mib(memUsed),
            (double) (memUsed - memBefore) / names, mib(memIdle), (double) (memIdle - memBefore) / names, waited);
        out.printf(Locale.ROOT, "  keys: before %,d, names used %,d (%.1f per name), idle %,d%n", keysBefore, keysUsed,
            (double) (keysUsed - keysBefore) / names, keysIdle);
        engine.closeStore();
      } finally {
        client.shutdown();
      }
    } finally {
      timers.shutdownNow();
    }
  }

  /** Each name once: an acquire, then its release; {@code inFlight} names at a time. */
  private static void use(Engine engine, String prefix, int names, int inFlight) {
    List<CompletableFuture<?>> batch = new ArrayList<>(inFlight);
    for (int i = 0; i < names; i++) {
      String name = prefix + i;
      // Granted at once as a rule; a wait of up to 10 s keeps a busy machine's hiccup from
      // ending the run (a name's bucket starts full: the template is older than its refill).
      CompletableFuture<Grant> granted = engine.acquire(name, ONE, Lane.DEFAULT, 10_000_000_000L).future();
      batch.add(granted.thenCompose(g -> engine.release(name, g.permitId(), Map.of(), false, false)));
      if (batch.size() == inFlight || i == names - 1) {
        CompletableFuture.allOf(batch.toArray(CompletableFuture[]::new)).join();
        batch.clear();
      }
    }
  }

  private static long usedMemory(StatefulRedisConnection<String, String> c) {
    for (String line : c.sync().info("memory").split("\r?\n")) {
      if (line.startsWith("used_memory:")) {
        return Long.parseLong(line.substring("used_memory:".length()).trim());
      }
    }
    throw new IllegalStateException("INFO memory has no used_memory");
  }

  private static String mib(long bytes) {
    return String.format(Locale.ROOT, "%.1f MiB", bytes / 1048576.0);
  }
}
