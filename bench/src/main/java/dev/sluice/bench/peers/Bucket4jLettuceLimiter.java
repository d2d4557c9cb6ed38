package dev.sluice.bench.peers;

import static com.google.common.base.Preconditions.checkArgument;
import static java.nio.charset.StandardCharsets.UTF_8;
import static java.util.Objects.requireNonNull;

import dev.sluice.bench.Limiter;
import io.github.bucket4j.BucketConfiguration;
import io.github.bucket4j.distributed.AsyncBucketProxy;
import io.github.bucket4j.distributed.BucketProxy;
import io.github.bucket4j.distributed.ExpirationAfterWriteStrategy;
import io.github.bucket4j.distributed.proxy.RemoteAsyncBucketBuilder;
import io.github.bucket4j.distributed.proxy.RemoteBucketBuilder;
import io.github.bucket4j.distributed.proxy.RetryDecision;
import io.github.bucket4j.distributed.proxy.optimization.Optimizations;
import io.github.bucket4j.redis.lettuce.Bucket4jLettuce;
import io.github.bucket4j.redis.lettuce.cas.LettuceBasedProxyManager;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.codec.ByteArrayCodec;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.atomic.LongAdder;

/**
 * Bucket4j's distributed token bucket on Redis through Lettuce: one bucket, one hot key.
 *
 * <p>The path is {@code Bucket4jLettuce.casBasedBuilder(connection)} → {@link
 * LettuceBasedProxyManager} → {@code builder().build(key, config)} → {@code
 * bucket.asBlocking().consume(1)}. Bucket4j 8.19 offers only the compare-and-swap strategy for
 * Lettuce: each call {@code GET}s the serialized bucket, runs the token-bucket arithmetic on the
 * client with the client's millisecond clock, and writes it back with a Lua compare-and-swap
 * ({@code if GET == old then PSETEX new}). Two round trips per permit when nobody else touched
 * the key; on a hot key concurrent callers lose the swap and loop (unbounded by default, see
 * bucket4j issues #404 and #603). {@link #casRetries()} counts those lost swaps.
 *
 * <p>{@code asBlocking().consume(1)} is Bucket4j's own wait for distributed buckets: the CAS
 * reserves the tokens (the bucket may go negative) and returns how long to sleep; the caller
 * parks that long on the client. Nothing is queued on the server: a reservation cannot be
 * cancelled and is lost if the client dies.
 *
 * <p>With {@code batching}, Bucket4j's {@link Optimizations#batching()} merges the calls that
 * wait on the same key in this JVM into one CAS, its documented remedy for a hot key.
 *
 * <p>Its users on an event loop use the asynchronous proxy instead ({@code
 * proxyManager.asAsync()}, Lettuce's async commands): {@link #acquireAsync()} is {@code
 * asScheduler().consume(1, scheduler)}, the non-blocking twin of {@code asBlocking().consume(1)}
 * (the delay, if any, waited on a scheduler rather than a parked thread), on the same key with the
 * same optimization.
 */
public final class Bucket4jLettuceLimiter implements Limiter {

  private static final Duration SHUTDOWN_TIMEOUT = Duration.ofSeconds(2);

  private final boolean batching;
  private final RedisClient client;
  private final StatefulRedisConnection<byte[], byte[]> connection;
  private final LettuceBasedProxyManager<byte[]> proxyManager;
  private final byte[] key;
  private final BucketProxy bucket;
  private final AsyncBucketProxy asyncBucket;
  private final ScheduledExecutorService scheduler;
  private final LongAdder casRetries = new LongAdder();

  /**
   * Connects to {@code redisUri} and creates a fresh bucket of {@code permitsPerSecond} (capacity
   * one second's worth, refilled greedily), without request batching.
   */
  public Bucket4jLettuceLimiter(String redisUri, long permitsPerSecond) {
    this(redisUri, permitsPerSecond, false);
  }

  /**
   * Connects to {@code redisUri} and creates a fresh bucket of {@code permitsPerSecond} (capacity
   * one second's worth, refilled greedily).
   *
   * @param batching whether to use Bucket4j's batching optimization for this JVM's callers
   * @throws IllegalArgumentException if {@code permitsPerSecond} is not positive
   */
  public Bucket4jLettuceLimiter(String redisUri, long permitsPerSecond, boolean batching) {
    requireNonNull(redisUri, "redisUri");
    checkArgument(permitsPerSecond > 0, "permitsPerSecond must be positive: %s", permitsPerSecond);
    this.batching = batching;
    this.client = RedisClient.create(redisUri);
    try {
      // One shared connection, as Lettuce recommends: its commands pipeline on one socket.
      this.connection = client.connect(ByteArrayCodec.INSTANCE);
      this.proxyManager =
          Bucket4jLettuce.casBasedBuilder(connection)
              .expirationAfterWrite(
                  ExpirationAfterWriteStrategy.basedOnTimeForRefillingBucketUpToMax(
                      Duration.ofSeconds(10)))
              // The default (retry at once, forever), counted.
              .retryStrategy(
                  attempt -> {
                    casRetries.increment();
                    return RetryDecision.retryImmediately();
                  })
              .build();
      this.key = ("sluice-bench:bucket4j:" + UUID.randomUUID()).getBytes(UTF_8);
      BucketConfiguration configuration =
          BucketConfiguration.builder()
              .addLimit(
                  limit ->
                      limit
                          .capacity(permitsPerSecond)
                          .refillGreedy(permitsPerSecond, Duration.ofSeconds(1)))
              .build();
      RemoteBucketBuilder<byte[]> builder = proxyManager.builder();
      if (batching) {
        builder = builder.withOptimization(Optimizations.batching());
      }
      this.bucket = builder.build(key, () -> configuration);
      RemoteAsyncBucketBuilder<byte[]> asyncBuilder = proxyManager.asAsync().builder();
      if (batching) {
        asyncBuilder = asyncBuilder.withOptimization(Optimizations.batching());
      }
      this.asyncBucket = asyncBuilder.build(key, () -> CompletableFuture.completedFuture(configuration));
    } catch (RuntimeException | Error e) {
      client.shutdown(Duration.ZERO, SHUTDOWN_TIMEOUT);
      throw e;
    }
    this.scheduler = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "bucket4j-scheduler");
      t.setDaemon(true);
      return t;
    });
  }

  @Override
  public String name() {
    return batching ? "bucket4j-lettuce-batched" : "bucket4j-lettuce";
  }

  @Override
  public String notes() {
    return "Bucket4j 8.19 LettuceBasedProxyManager (compare-and-swap: GET, client-side refill with"
        + " the client's ms clock, Lua CAS write-back; the only strategy Bucket4j has for"
        + " Lettuce), one bucket on one key, asBlocking().consume(1): the CAS reserves the token"
        + " and the caller parks the returned delay on the client; no server-side queue, a"
        + " reservation cannot be cancelled. Its own-driver row: the async proxy (asAsync()),"
        + " asScheduler().consume(1, scheduler), many in flight."
        + (batching
            ? " Optimizations.batching(): concurrent calls in this JVM merged into one CAS."
            : " No optimization: every call is its own CAS; lost swaps retried at once"
                + " (bucket4j #404, #603).")
        + " Cannot: limit concurrency (no release), take several limits all-or-nothing across"
        + " buckets, refund after the fact except addTokens, pause on feedback.";
  }

  @Override
  public Object acquire() throws InterruptedException {
    bucket.asBlocking().consume(1);
    return null;
  }

  @Override
  public boolean async() {
    return true;
  }

  @Override
  public CompletableFuture<Object> acquireAsync() {
    return asyncBucket.asScheduler().consume(1, scheduler).thenApply(v -> null);
  }

  @Override
  public void release(Object permit) {
    // Bucket4j has no concurrency limit and nothing to release.
  }

  /** Compare-and-swap attempts lost to another writer of the key so far (each one retried). */
  public long casRetries() {
    return casRetries.sum();
  }

  @Override
  public void close() {
    try {
      proxyManager.removeProxy(key);
    } finally {
      scheduler.shutdownNow();
      connection.close();
      client.shutdown(Duration.ZERO, SHUTDOWN_TIMEOUT);
    }
  }
}
