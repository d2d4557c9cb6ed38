package dev.sluice.server.engine;

import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;

/**
 * The two stores a fake-clock engine test runs against: the memory engine, and the Redis engine
 * on one redis-server per test class (started on first use, emptied for every engine, stopped
 * by {@link #stopRedis}). On Redis, a timer's calls are answered before the clock moves on, so
 * a wake-up's grants are handed over at its instant, as on the memory store.
 */
final class TwoStores {

  enum Store {
    MEMORY,
    REDIS
  }

  private static RedisProcess redis;

  private TwoStores() {}

  /** A fresh engine of {@code store} on {@code clock}; {@code quiet}, when given, is set to wait for its store. */
  static Engine open(Store store, FakeClock clock, Runnable[] quiet) throws Exception {
    if (store == Store.MEMORY) {
      return MemoryEngine.builder().ticker(clock).scheduler(clock).build();
    }
    if (redis == null) {
      redis = RedisProcess.start();
    }
    redis.flushAll();
    RedisEngine engine =
        RedisEngine.builder().uri(redis.uri()).ticker(clock).scheduler(clock).housekeeping(Duration.ZERO).build();
    clock.afterEachTask(engine::awaitQuiet);
    if (quiet != null) {
      quiet[0] = engine::awaitQuiet;
    }
    return engine;
  }

  /** The Redis of the last {@link #open} on {@link Store#REDIS}, for a store beside the engine's. */
  static String redisUri() {
    return redis.uri();
  }

  static void stopRedis() {
    if (redis != null) {
      redis.close();
      redis = null;
    }
  }
}
