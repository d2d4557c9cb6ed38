package dev.sluice.bench.peers;

import static com.google.common.base.Preconditions.checkArgument;
import static java.util.Objects.requireNonNull;

import dev.sluice.bench.Limiter;
import java.util.ArrayList;
import java.util.List;

/**
 * The peers Sluice is measured against, each behind {@link Limiter} so the load generator drives
 * them with the same workload: one hot key, closed loop, {@code acquire()} then {@code
 * release()}.
 *
 * <pre>{@code
 * for (Limiter peer : Peers.all(redis.uri())) {   // limit far above demand: overhead only
 *   try (peer) {
 *     run(peer);
 *   }
 * }
 * }</pre>
 *
 * <p>Each peer's {@link Limiter#notes()} says how it was driven and what it cannot do.
 */
public final class Peers {

  /**
   * The limit for uncontended runs: a billion permits a second. Guava in-process alone reaches
   * about 8 million a second on two cores, the networked peers under 100 000, so no peer ever
   * waits and only overhead is measured.
   */
  public static final long UNCONTENDED_PERMITS_PER_SECOND = 1_000_000_000;

  private Peers() {}

  /** {@link #all(String, long)} at {@link #UNCONTENDED_PERMITS_PER_SECOND}. */
  public static List<Limiter> all(String redisUri) throws InterruptedException {
    return all(redisUri, UNCONTENDED_PERMITS_PER_SECOND);
  }

  /**
   * Opens every peer with a limit of {@code permitsPerSecond} on one fresh key of the Redis at
   * {@code redisUri} (Bucket4j, Redisson) or in this JVM (Guava; Sentinel's token server on a free
   * loopback port), in this order: {@code guava-inprocess}, {@code bucket4j-lettuce}, {@code
   * bucket4j-lettuce-batched}, {@code redisson}, {@code sentinel-cluster}. The caller closes them.
   *
   * @param redisUri e.g. {@code redis://127.0.0.1:6379}
   * @throws IllegalArgumentException if {@code permitsPerSecond} is not positive
   * @throws InterruptedException if interrupted while Sentinel's server and client start; the
   *     peers already opened are closed
   */
  public static List<Limiter> all(String redisUri, long permitsPerSecond)
      throws InterruptedException {
    requireNonNull(redisUri, "redisUri");
    checkArgument(permitsPerSecond > 0, "permitsPerSecond must be positive: %s", permitsPerSecond);
    List<Limiter> peers = new ArrayList<>();
    try {
      peers.add(new GuavaLimiter(permitsPerSecond));
      peers.add(new Bucket4jLettuceLimiter(redisUri, permitsPerSecond, false));
      peers.add(new Bucket4jLettuceLimiter(redisUri, permitsPerSecond, true));
      peers.add(new RedissonLimiter(redisUri, permitsPerSecond));
      peers.add(new SentinelClusterLimiter(permitsPerSecond));
      return List.copyOf(peers);
    } catch (RuntimeException | Error | InterruptedException e) {
      for (Limiter peer : peers) {
        try {
          peer.close();
        } catch (Exception suppressed) {
          e.addSuppressed(suppressed);
        }
      }
      throw e;
    }
  }
}
