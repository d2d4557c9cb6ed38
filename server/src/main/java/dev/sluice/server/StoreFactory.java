package dev.sluice.server;

import dev.sluice.buffers.Buffers;
import dev.sluice.buffers.TargetPolicy;
import dev.sluice.server.auth.FileKeyStore;
import dev.sluice.server.auth.KeyStore;
import dev.sluice.server.auth.RedisKeyStore;
import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.FileLimitStore;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.PoolEngine;
import dev.sluice.server.engine.RedisEngine;
import dev.sluice.server.engine.RedisStore;
import dev.sluice.server.engine.Scheduler;
import dev.sluice.server.engine.SliceEngine;
import dev.sluice.server.engine.Ticker;
import dev.sluice.server.limits.FileLimitHistory;
import dev.sluice.server.limits.LimitHistory;
import dev.sluice.server.limits.RedisLimitHistory;
import dev.sluice.server.price.Prices;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Opens what the configured store needs: the engine, the API key store and where buffers
 * live, for {@code memory} (the data dir) or a Redis URI (one connection shared by the three).
 * Each resource is pushed on the server's {@link CloseStack} as soon as it is open, so a
 * failure at the next step closes it.
 */
final class StoreFactory {

  /** What the factory needs to know; every value already checked and defaulted. */
  record Settings(
      String store,
      Path dataDir,
      String nodeId,
      Ticker ticker,
      Scheduler scheduler,
      int maxWaiting,
      Duration leaseTtl,
      Duration aging,
      int metricsMaxResources,
      boolean bufferFsync,
      Duration bufferLease,
      List<SliceEngine.Rule> slices) {

    boolean shared() {
      return !store.equals("memory");
    }
  }

  /**
   * An open store.
   *
   * @param redis the shared Redis, or null on the memory store
   */
  record Opened(
      Engine engine, KeyStore keys, RedisStore redis, BufferHome buffers, Prices prices, LimitHistory history) {}

  /** Where buffers live on this store: SQLite in the data dir, or the shared Redis. */
  interface BufferHome {
    /** Opens the buffers and resumes their deliveries; the caller closes them. */
    Buffers open(MeterRegistry registry, TargetPolicy targets, dev.sluice.server.limits.LimitChanges changes)
        throws IOException;
  }

  private static final Logger log = LoggerFactory.getLogger(StoreFactory.class);

  private StoreFactory() {}

  /** The store's engine, under slice mode for the resources the settings name. */
  private static Engine sliced(Engine store, Settings s, Scheduler scheduler) {
    if (s.slices().isEmpty()) {
      return store;
    }
    for (SliceEngine.Rule r : s.slices()) {
      log.info("slice mode: resources '{}' take capacity from the store in slices held up to {} (FIFO within"
          + " this node; grants may pass their limit by rate x {})", r.glob(), Durations.format(r.hold()),
          Durations.format(r.hold()));
    }
    return new SliceEngine(store, s.slices(), s.ticker() == null ? Ticker.system() : s.ticker(), scheduler);
  }

  /**
   * Opens the store's engine and key store.
   *
   * @param timers runs the engine's wake-ups (unless the settings bring a scheduler) and the
   *     shared key store's refresh
   * @throws IOException if the store cannot be reached or a stored file cannot be read; the
   *     message names what and the fix
   */
  static Opened open(Settings s, ScheduledThreadPoolExecutor timers, MeterRegistry registry, CloseStack closer)
      throws IOException {
    Scheduler scheduler = s.scheduler() != null ? s.scheduler() : Scheduler.of(timers);
    if (!s.shared()) {
      MemoryEngine memory = MemoryEngine.builder()
          .store(new FileLimitStore(s.dataDir()))
          .ticker(s.ticker() == null ? Ticker.system() : s.ticker())
          .scheduler(scheduler)
          .meterRegistry(registry)
          .defaultMaxWaiting(s.maxWaiting())
          .defaultLease(s.leaseTtl())
          .aging(s.aging())
          .metricsMaxResources(s.metricsMaxResources())
          .build();
      Engine engine = new PoolEngine(sliced(memory, s, scheduler));
      closer.push("the engine", engine::close);
      KeyStore keys = new FileKeyStore(s.dataDir());
      BufferHome buffers = (meters, targets, changes) -> BufferWiring.builder(changes).registry(meters).targets(targets)
          .sqlite(BufferWiring.sqliteFile(s.dataDir()), s.bufferFsync()).open();
      FileLimitHistory history = FileLimitHistory.inDataDir(s.dataDir());
      closer.push("the limit history", history::close);
      return new Opened(engine, keys, null, buffers, Prices.inDataDir(s.dataDir()), history);
    }
    // Wake-ups and deadlines make Redis calls: give them a few threads, not one.
    timers.setCorePoolSize(4);
    RedisStore.Builder sb = RedisStore.builder().uri(s.store());
    if (s.ticker() != null) {
      sb.ticker(s.ticker());
    }
    if (s.nodeId() != null) {
      sb.nodeId(s.nodeId());
    }
    RedisStore redis = sb.build();
    closer.push("the Redis connection", redis::close);
    RedisEngine.Builder eb = RedisEngine.builder()
        .store(redis)
        .scheduler(scheduler)
        .defaultMaxWaiting(s.maxWaiting())
        .defaultLease(s.leaseTtl())
        .aging(s.aging());
    if (s.ticker() != null) {
      eb.ticker(s.ticker());
    }
    Engine engine = new PoolEngine(sliced(eb.build(), s, scheduler));
    // closeStore, not only close: it also stops the engine's events executor.
    closer.push("the engine", engine::closeStore);
    RedisKeyStore keys = new RedisKeyStore(redis.sharedHash("keys"), redis.describe() + " (sluice:keys)");
    timers.scheduleWithFixedDelay(keys::refresh, 1, 1, TimeUnit.SECONDS);
    BufferHome buffers = (meters, targets, changes) -> BufferWiring.builder(changes).registry(meters).targets(targets)
        .shared(BufferWiring.redis(redis), s.bufferLease()).open();
    Prices prices = Prices.shared(redis.sharedHash("prices"), redis.describe() + " (sluice:prices)");
    timers.scheduleWithFixedDelay(prices::refresh, 1, 1, TimeUnit.SECONDS);
    return new Opened(engine, keys, redis, buffers, prices, new RedisLimitHistory(redis));
  }
}
