package dev.sluice.bench.peers;

import static java.util.concurrent.TimeUnit.SECONDS;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.bench.Limiter;
import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Each peer against a real {@code redis-server} (and, for Sentinel, a real token server on
 * loopback): far below its limit every call is granted; at 10 permits a second it really
 * limits. The bounds are coarse on purpose: these check the wiring, the bench measures.
 */
class PeersTest {

  private static final long HIGH = Peers.UNCONTENDED_PERMITS_PER_SECOND;
  private static final long LOW = 10;
  private static final int CALLS = 100;
  private static final int WORKERS = 3;
  private static final int CONTENDED_CALLS_EACH = 10;
  /**
   * 30 permits at 10 a second with at most one second's burst up front take 2 s; allow for
   * coarse clocks and windows.
   */
  private static final Duration CONTENDED_AT_LEAST = Duration.ofMillis(1500);
  private static final Duration CONTENDED_AT_MOST = Duration.ofSeconds(20);
  /**
   * Sentinel's default 20 ms request timeout fails calls that a busy two-core box merely delays;
   * these checks are about the wiring, so they give it 200 ms.
   */
  private static final Duration SENTINEL_TIMEOUT = Duration.ofMillis(200);
  /**
   * Even so, Sentinel's client drops an answer that arrives before it has registered the promise
   * for it (alibaba/Sentinel#2852), up to 1 call in 100 on a busy box: that call fails after the
   * timeout. These checks only need most calls to go through.
   */
  private static final int SENTINEL_FAILURES_ALLOWED = CALLS / 10;
  /** Failed acquires retried in the contended check. */
  private static final int SENTINEL_CONTENDED_FAILURES_ALLOWED = WORKERS * CONTENDED_CALLS_EACH;

  /** 20 permits at 10 a second, at most one second's burst up front: about 1 s; coarse on purpose. */
  private static final Duration ASYNC_LIMITED_AT_LEAST = Duration.ofMillis(700);

  private static final Duration SERVER_GONE_WITHIN = Duration.ofSeconds(5);

  private static RedisProcess redis;

  @BeforeAll
  static void startRedis() throws InterruptedException {
    redis = RedisProcess.start();
  }

  @AfterAll
  static void stopRedis() {
    if (redis != null) {
      redis.close();
    }
  }

  @Test
  void guavaGrantsFarBelowItsLimitAndLimitsAtIt() throws Exception {
    try (GuavaLimiter high = new GuavaLimiter(HIGH)) {
      assertThat(acquireReleaseSequentially(high)).isZero();
    }
    try (GuavaLimiter low = new GuavaLimiter(LOW)) {
      assertLimits(low, 0);
    }
  }

  @Test
  void bucket4jGrantsFarBelowItsLimitAndLimitsAtIt() throws Exception {
    try (Bucket4jLettuceLimiter high = new Bucket4jLettuceLimiter(redis.uri(), HIGH)) {
      assertThat(high.name()).isEqualTo("bucket4j-lettuce");
      assertThat(acquireReleaseSequentially(high)).isZero();
      assertThat(high.casRetries()).as("one caller never loses a swap").isZero();
    }
    try (Bucket4jLettuceLimiter low = new Bucket4jLettuceLimiter(redis.uri(), LOW)) {
      assertLimits(low, 0);
    }
  }

  @Test
  void bucket4jBatchedGrantsFarBelowItsLimitAndLimitsAtIt() throws Exception {
    try (Bucket4jLettuceLimiter high = new Bucket4jLettuceLimiter(redis.uri(), HIGH, true)) {
      assertThat(high.name()).isEqualTo("bucket4j-lettuce-batched");
      assertThat(acquireReleaseSequentially(high)).isZero();
    }
    try (Bucket4jLettuceLimiter low = new Bucket4jLettuceLimiter(redis.uri(), LOW, true)) {
      assertLimits(low, 0);
    }
  }

  @Test
  void redissonGrantsFarBelowItsLimitAndLimitsAtIt() throws Exception {
    try (RedissonLimiter high = new RedissonLimiter(redis.uri(), HIGH)) {
      assertThat(acquireReleaseSequentially(high)).isZero();
    }
    try (RedissonLimiter low = new RedissonLimiter(redis.uri(), LOW)) {
      assertLimits(low, 0);
    }
  }

  @Test
  void sentinelGrantsFarBelowItsLimitAndLimitsAtIt() throws Exception {
    try (SentinelClusterLimiter high = new SentinelClusterLimiter(HIGH, SENTINEL_TIMEOUT)) {
      assertThat(acquireReleaseSequentially(high)).isLessThanOrEqualTo(SENTINEL_FAILURES_ALLOWED);
    }
    try (SentinelClusterLimiter low = new SentinelClusterLimiter(LOW, SENTINEL_TIMEOUT)) {
      assertLimits(low, SENTINEL_CONTENDED_FAILURES_ALLOWED);
      assertThat(low.refusals() + low.waits())
          .as("the server said BLOCKED or SHOULD_WAIT for the calls past the first 10")
          .isPositive();
    }
  }

  @Test
  void sentinelTokensComeFromTheServerOverTheNetwork() throws Exception {
    try (SentinelClusterLimiter sentinel = new SentinelClusterLimiter(HIGH, SENTINEL_TIMEOUT)) {
      acquireReleaseSequentially(sentinel);
      // At least: a previous test's connection may not have been dropped yet.
      assertThat(sentinel.connectedClients()).as("clients the server registered").isPositive();

      sentinel.stopServer();

      long deadline = System.nanoTime() + SERVER_GONE_WITHIN.toNanos();
      while (sentinel.clientConnected() && System.nanoTime() - deadline < 0) {
        Thread.sleep(10); // Sentinel offers nothing to wait on for a disconnect.
      }
      assertThat(sentinel.clientConnected()).as("client connected after the server stopped").isFalse();
      assertThatThrownBy(sentinel::acquire)
          .isInstanceOf(IllegalStateException.class)
          .hasMessageContaining("FAIL");
    }
  }

  @Test
  void onlyOneSentinelAtATimeInAJvm() throws Exception {
    try (SentinelClusterLimiter first = new SentinelClusterLimiter(HIGH, SENTINEL_TIMEOUT)) {
      assertThat(first.name()).isEqualTo("sentinel-cluster");
      assertThatThrownBy(() -> new SentinelClusterLimiter(HIGH, SENTINEL_TIMEOUT))
          .isInstanceOf(IllegalStateException.class)
          .hasMessageContaining("already open");
    }
    // Closing the first frees the JVM's Sentinel for the next.
    try (SentinelClusterLimiter second = new SentinelClusterLimiter(HIGH, SENTINEL_TIMEOUT)) {
      assertThat(acquireReleaseSequentially(second)).isLessThanOrEqualTo(SENTINEL_FAILURES_ALLOWED);
    }
  }

  @Test
  void allOpensEveryPeerOnceAndEachGrants() throws Exception {
    List<Limiter> peers = Peers.all(redis.uri());
    try {
      assertThat(peers)
          .extracting(Limiter::name)
          .containsExactly(
              "guava-inprocess",
              "bucket4j-lettuce",
              "bucket4j-lettuce-batched",
              "redisson",
              "sentinel-cluster");
      for (Limiter peer : peers) {
        assertThat(peer.notes()).as(peer.name()).isNotBlank();
        int failures = acquireReleaseSequentially(peer);
        if (peer instanceof SentinelClusterLimiter) {
          // Opened with its default 20 ms timeout, which a busy box exceeds now and then.
          assertThat(failures).as(peer.name()).isLessThan(CALLS);
        } else {
          assertThat(failures).as(peer.name()).isZero();
        }
      }
    } finally {
      for (Limiter peer : peers) {
        peer.close();
      }
    }
  }

  /**
   * The peers with an asynchronous API (their own users' driver): {@value #CALLS} acquires in
   * flight at once all complete far below the limit, and at {@value #LOW} a second the same
   * number waits (the async path limits too, it does not just say yes).
   */
  @Test
  void asyncPeersGrantManyInFlightFarBelowTheirLimitAndWaitAtIt() throws Exception {
    for (boolean batching : new boolean[] {false, true}) {
      try (Bucket4jLettuceLimiter high = new Bucket4jLettuceLimiter(redis.uri(), HIGH, batching);
          Bucket4jLettuceLimiter low = new Bucket4jLettuceLimiter(redis.uri(), LOW, batching)) {
        assertAsyncGrantsAndLimits(high, low);
      }
    }
    try (RedissonLimiter high = new RedissonLimiter(redis.uri(), HIGH);
        RedissonLimiter low = new RedissonLimiter(redis.uri(), LOW)) {
      assertAsyncGrantsAndLimits(high, low);
    }
  }

  @Test
  void peersWithoutAnAsyncApiSaySoAndAreDrivenByThreads() throws Exception {
    try (GuavaLimiter guava = new GuavaLimiter(HIGH)) {
      assertThat(guava.async()).isFalse();
      assertThatThrownBy(guava::acquireAsync)
          .isInstanceOf(UnsupportedOperationException.class)
          .hasMessageContaining("guava-inprocess has no asynchronous acquire");
    }
    try (SentinelClusterLimiter sentinel = new SentinelClusterLimiter(HIGH, SENTINEL_TIMEOUT)) {
      assertThat(sentinel.async()).isFalse();
    }
  }

  private static void assertAsyncGrantsAndLimits(Limiter high, Limiter low) throws Exception {
    assertThat(high.async()).as(high.name()).isTrue();
    List<CompletableFuture<Object>> all = new ArrayList<>();
    for (int i = 0; i < CALLS; i++) {
      all.add(high.acquireAsync());
    }
    CompletableFuture.allOf(all.toArray(CompletableFuture[]::new)).get(CONTENDED_AT_MOST.toSeconds(), SECONDS);
    // Past the first second's burst of 10, the next 10 need about a second more.
    long start = System.nanoTime();
    List<CompletableFuture<Object>> limited = new ArrayList<>();
    for (int i = 0; i < 2 * LOW; i++) {
      limited.add(low.acquireAsync());
    }
    CompletableFuture.allOf(limited.toArray(CompletableFuture[]::new)).get(CONTENDED_AT_MOST.toSeconds(), SECONDS);
    assertThat(Duration.ofNanos(System.nanoTime() - start))
        .as("%d permits from %s at %d/s, asynchronously", 2 * LOW, low.name(), LOW)
        .isGreaterThanOrEqualTo(ASYNC_LIMITED_AT_LEAST);
  }

  /** {@value #CALLS} acquire/release pairs on this thread; returns how many acquires threw. */
  private static int acquireReleaseSequentially(Limiter limiter) throws Exception {
    int failures = 0;
    for (int i = 0; i < CALLS; i++) {
      Object permit;
      try {
        permit = limiter.acquire();
      } catch (IllegalStateException e) {
        failures++;
        continue;
      }
      limiter.release(permit);
    }
    return failures;
  }

  /**
   * {@value #WORKERS} workers released together each take {@value #CONTENDED_CALLS_EACH} permits
   * (retrying an acquire that throws, up to {@code failuresAllowed} in all) from a limiter of
   * {@value #LOW} a second; asserts that took at least {@link #CONTENDED_AT_LEAST}.
   */
  private static void assertLimits(Limiter limiter, int failuresAllowed) throws Exception {
    CountDownLatch ready = new CountDownLatch(WORKERS);
    CountDownLatch go = new CountDownLatch(1);
    AtomicInteger failures = new AtomicInteger();
    ExecutorService workers = Executors.newFixedThreadPool(WORKERS);
    try {
      List<Future<?>> done = new ArrayList<>();
      for (int w = 0; w < WORKERS; w++) {
        done.add(
            workers.submit(
                () -> {
                  ready.countDown();
                  go.await();
                  for (int granted = 0; granted < CONTENDED_CALLS_EACH; ) {
                    Object permit;
                    try {
                      permit = limiter.acquire();
                    } catch (IllegalStateException e) {
                      if (failures.incrementAndGet() > failuresAllowed) {
                        throw e;
                      }
                      continue;
                    }
                    limiter.release(permit);
                    granted++;
                  }
                  return null;
                }));
      }
      ready.await();
      long start = System.nanoTime();
      go.countDown();
      for (Future<?> f : done) {
        f.get(CONTENDED_AT_MOST.toSeconds(), SECONDS);
      }
      Duration took = Duration.ofNanos(System.nanoTime() - start);
      assertThat(took)
          .as("%d permits from %s at %d/s", WORKERS * CONTENDED_CALLS_EACH, limiter.name(), LOW)
          .isGreaterThanOrEqualTo(CONTENDED_AT_LEAST);
    } finally {
      workers.shutdownNow();
    }
  }
}
