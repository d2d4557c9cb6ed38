package dev.sluice.server;

import dev.sluice.buffers.BufferPermits;
import dev.sluice.buffers.BufferSpec;
import dev.sluice.buffers.BufferSyntax;
import dev.sluice.buffers.Buffers;
import dev.sluice.buffers.SharedRedis;
import dev.sluice.server.engine.DataFiles;
import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.RedisStore;
import dev.sluice.server.engine.Validation;
import io.lettuce.core.api.StatefulConnection;
import io.lettuce.core.cluster.api.async.RedisClusterAsyncCommands;
import io.lettuce.core.cluster.api.sync.RedisClusterCommands;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * The coordinator's side of the buffers module: its engine as the permits that pace delivery,
 * its resource names and duration syntax as the rules a buffer spec follows, its data dir and its
 * Redis as the buffers' store.
 */
public final class BufferWiring {

  /** The buffers' SQLite database in the data dir. */
  static final String FILE = "buffers.db";

  private BufferWiring() {}

  /** Buffers paced by {@code engine}, following the coordinator's rules; say where they live, then open. */
  public static Buffers.Builder builder(Engine engine) {
    return builder(new dev.sluice.server.limits.LimitChanges(engine));
  }

  /** Buffers whose pacing limits change through {@code changes}: logged and kept with who ("buffer"). */
  public static Buffers.Builder builder(dev.sluice.server.limits.LimitChanges changes) {
    return Buffers.builder(new EnginePermits(changes), SYNTAX);
  }

  /**
   * {@code buffers.db} in the data dir, made 0600 before SQLite opens it (its {@code -wal} and
   * {@code -shm} files take its mode), as every data file is.
   */
  public static Path sqliteFile(Path dataDir) throws IOException {
    Path file = dataDir.resolve(FILE);
    DataFiles.createOwnerOnly(file);
    DataFiles.ownerOnly(file.resolveSibling(FILE + "-wal"), file.resolveSibling(FILE + "-shm"));
    return file;
  }

  /** The coordinator's Redis client, shared with the buffers. */
  static SharedRedis redis(RedisStore store) {
    return new SharedRedis() {
      @Override
      public String nodeId() {
        return store.nodeId();
      }

      @Override
      public String describe() {
        return store.describe();
      }

      @Override
      public RedisClusterCommands<String, String> sync() {
        return store.sync();
      }

      @Override
      public RedisClusterAsyncCommands<String, String> async() {
        return store.async();
      }

      @Override
      public StatefulConnection<String, String> openConnection() {
        return store.openConnection();
      }

      @Override
      public boolean isCluster() {
        return store.isCluster();
      }
    };
  }

  /** Resource names as limits take them; durations in the one syntax ({@link Durations}). */
  static final BufferSyntax SYNTAX = new BufferSyntax() {
    @Override
    public void checkResource(String name) {
      try {
        Validation.resource(name);
      } catch (EngineException e) {
        throw new IllegalArgumentException(e.getMessage(), e);
      }
    }

    @Override
    public Duration duration(String field, String text, Duration min, Duration max, String example) {
      return Durations.parse(field, text, Durations.Bounds.of(min, max, example), true);
    }

    @Override
    public Duration minPeriod() {
      return Validation.MIN_PERIOD;
    }

    @Override
    public Duration maxPeriod() {
      return Validation.MAX_PERIOD;
    }
  };

  /** The engine as buffers use it: one request per delivery, in the default lane, never settled. */
  static final class EnginePermits implements BufferPermits {

    private final Engine engine;
    private final dev.sluice.server.limits.LimitChanges changes;

    EnginePermits(dev.sluice.server.limits.LimitChanges changes) {
      this.engine = changes.engine();
      this.changes = changes;
    }

    @Override
    public CompletableFuture<Optional<String>> acquire(String resource, Duration timeout, String requestId) {
      return acquire(resource, Map.of("requests", 1L), timeout, requestId);
    }

    @Override
    public CompletableFuture<Wait> waitEstimate(String resource) {
      return engine.getLimit(resource).thenCombine(
          engine.estimate(resource, Map.of("requests", 1L), Lane.DEFAULT, null), (limit, first) -> {
            RateSpec requests = limit.map(l -> l.rate("requests")).orElse(null);
            long perItem = requests == null ? 0 : requests.period().toNanos() / Math.max(1, requests.amount());
            return new Wait(first, perItem);
          });
    }

    @Override
    public CompletableFuture<Boolean> hasDimension(String resource, String dimension) {
      return engine.getLimit(resource).thenApply(l -> l.isPresent()
          && (l.get().rate(dimension) != null || l.get().holds().containsKey(dimension)));
    }

    @Override
    public CompletableFuture<Boolean> holdsDimension(String resource, String dimension) {
      return engine.getLimit(resource).thenApply(l -> l.isPresent() && l.get().holds().containsKey(dimension));
    }

    @Override
    public CompletableFuture<Optional<Duration>> renew(String resource, String permitId) {
      return engine.renew(resource, List.of(permitId)).thenCompose(expired -> expired.isEmpty()
          ? engine.leaseTtlNanos(resource).thenApply(n -> Optional.of(Duration.ofNanos(n)))
          : CompletableFuture.completedFuture(Optional.<Duration>empty()));
    }

    @Override
    public CompletableFuture<Optional<String>> acquire(String resource, Map<String, Long> load, Duration timeout,
        String requestId) {
      return engine.acquire(resource, load, Lane.DEFAULT, timeout.toNanos(), requestId).future()
          .handle((grant, error) -> {
            if (error == null) {
              return Optional.of(grant.permitId());
            }
            if (EngineException.unwrap(error) instanceof EngineException e
                && e.reason() == EngineException.Reason.DEADLINE) {
              return Optional.empty();
            }
            throw error instanceof CompletionException c ? c : new CompletionException(error);
          });
    }

    @Override
    public void release(String resource, String permitId, boolean unused) {
      engine.release(resource, permitId, Map.of(), false, unused);
    }

    @Override
    public CompletableFuture<?> throttled(String resource, Duration retryAfter) {
      return engine.report(resource, true, retryAfter.toNanos(), Map.of());
    }

    @Override
    public CompletableFuture<Boolean> hasLimit(String resource) {
      return engine.getLimit(resource).thenApply(Optional::isPresent);
    }

    @Override
    public CompletableFuture<?> setRate(String resource, BufferSpec.Rate rate, Duration lease) {
      return changes.set(new LimitSpec(resource, List.of(new RateSpec("requests", rate.amount(), rate.period(),
          rate.burst())), 0, 100_000, lease), "buffer", false);
    }

    @Override
    public CompletableFuture<?> deleteLimit(String resource) {
      return changes.delete(resource, "buffer", false);
    }
  }
}
