package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisCommandTimeoutException;
import io.lettuce.core.RedisConnectionException;
import io.lettuce.core.RedisException;
import io.lettuce.core.cluster.PartitionSelectorException;
import io.lettuce.core.cluster.ClusterTopologyRefreshOptions;
import io.lettuce.core.cluster.ClusterTopologyRefreshOptions.RefreshTrigger;
import io.lettuce.core.cluster.models.partitions.ClusterPartitionParser;
import io.lettuce.core.cluster.models.partitions.RedisClusterNode;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;

/**
 * Issue 24: a script refused by Redis Cluster before it ran (TRYAGAIN while its slot migrates,
 * CLUSTERDOWN or no connection while a primary fails over) is sent again within its deadline;
 * one that may have run never is.
 */
class ClusterRetryTest {

  @Test
  void refusalsBeforeTheCommandRanAreRetriedAndNothingElseIs() {
    assertThat(ClusterRetry.notRun(new RedisCommandExecutionException(
        "TRYAGAIN Multiple keys request during rehashing of slot"))).isTrue();
    assertThat(ClusterRetry.notRun(new RedisCommandExecutionException("CLUSTERDOWN The cluster is down"))).isTrue();
    assertThat(ClusterRetry.notRun(new RedisCommandExecutionException("MOVED 6049 127.0.0.1:7001"))).isTrue();
    assertThat(ClusterRetry.notRun(new RedisCommandExecutionException("ASK 6049 127.0.0.1:7001"))).isTrue();
    assertThat(ClusterRetry.notRun(new RedisException("Currently not connected. Commands are rejected."))).isTrue();
    assertThat(ClusterRetry.notRun(new PartitionSelectorException("Cannot determine a partition for slot 6049.", null)))
        .isTrue();
    assertThat(ClusterRetry.notRun(new RedisConnectionException("Unable to connect to 127.0.0.1:7001"))).isTrue();

    // May have run: the caller decides (the engine answers UNAVAILABLE, the request id settles it).
    assertThat(ClusterRetry.notRun(new RedisCommandTimeoutException("Command timed out after 1 second(s)"))).isFalse();
    assertThat(ClusterRetry.notRun(new RedisException("Connection reset"))).isFalse();
    assertThat(ClusterRetry.notRun(new RedisException("Connection closed"))).isFalse();
    // A script's own error is an answer.
    assertThat(ClusterRetry.notRun(new RedisCommandExecutionException("ERR user_script:1: boom"))).isFalse();
  }

  @Test
  void theNodeFollowsAFailoverAtOnceNotAtAPeriodicRefresh() {
    ClusterTopologyRefreshOptions o = RedisStore.CLUSTER_REFRESH;
    assertThat(o.getAdaptiveRefreshTriggers()).containsExactlyInAnyOrder(RefreshTrigger.values());
    assertThat(o.getRefreshTriggersReconnectAttempts()).isEqualTo(1);
    assertThat(o.getAdaptiveRefreshTimeout()).isLessThanOrEqualTo(Duration.ofMillis(200));
    assertThat(o.isPeriodicRefreshEnabled()).isTrue();
    // A primary the cluster marked failing serves no slot: its slots count as unserved.
    assertThat(RedisStore.servesSlots(node("master,fail"))).isFalse();
    assertThat(RedisStore.servesSlots(node("master,fail?"))).isFalse();
    assertThat(RedisStore.servesSlots(node("master"))).isTrue();
    assertThat(RedisStore.servesSlots(node("slave"))).isTrue();
  }

  private static RedisClusterNode node(String flags) {
    return ClusterPartitionParser.parse("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:7000@17000 " + flags
        + " - 0 0 1 connected 0-5460\n").getPartition(0);
  }

  @Test
  void aSlotThatSettlesCostsWaitingOnly() {
    AtomicInteger calls = new AtomicInteger();
    CompletableFuture<String> out = ClusterRetry.call(() -> calls.incrementAndGet() <= 3
            ? CompletableFuture.failedFuture(new RedisCommandExecutionException("TRYAGAIN Multiple keys request"))
            : CompletableFuture.completedFuture("GRANTED"),
        System.nanoTime() + TimeUnit.SECONDS.toNanos(30), () -> {});
    assertThat(out.join()).isEqualTo("GRANTED");
    assertThat(calls).hasValue(4);
  }

  @Test
  void aRefusalThatOutlastsTheDeadlineEndsWithIt() {
    AtomicInteger calls = new AtomicInteger();
    CompletableFuture<String> out = ClusterRetry.call(() -> {
      calls.incrementAndGet();
      return CompletableFuture.failedFuture(new RedisCommandExecutionException("TRYAGAIN Multiple keys request"));
    }, System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(50), () -> {});
    assertThatThrownBy(out::join).isInstanceOf(CompletionException.class).hasMessageContaining("TRYAGAIN");
    assertThat(calls.get()).isBetween(1, 4); // 10, 20, 40 ms pauses: at most three fit in 50 ms
  }

  /**
   * A failover whose refreshed view still routed the slot to the killed primary: Lettuce refuses
   * the script itself ("Currently not connected", a connection that cannot open), no adaptive
   * trigger of Lettuce's fires, so each such refusal asks for a refresh; Redis's own refusals
   * (TRYAGAIN, CLUSTERDOWN) say nothing about the view and do not.
   */
  @Test
  void aRefusalForAStaleViewAsksForATopologyRefresh() {
    Predicate<Throwable> stale = ClusterRetry::staleRoute;
    assertThat(List.of(
            new RedisException("Currently not connected. Commands are rejected."),
            new RedisConnectionException("Unable to connect to 127.0.0.1:7001"),
            new PartitionSelectorException("Cannot determine a partition for slot 6049.", null)))
        .allMatch(stale);
    assertThat(List.of(
            new RedisCommandExecutionException("TRYAGAIN Multiple keys request"),
            new RedisCommandExecutionException("CLUSTERDOWN The cluster is down"),
            new RedisCommandTimeoutException("Command timed out")))
        .noneMatch(stale);

    AtomicInteger calls = new AtomicInteger();
    AtomicInteger refreshes = new AtomicInteger();
    CompletableFuture<String> out = ClusterRetry.call(() -> switch (calls.incrementAndGet()) {
          case 1, 2 -> CompletableFuture.failedFuture(new RedisException("Currently not connected. Commands are rejected."));
          case 3 -> CompletableFuture.failedFuture(new RedisCommandExecutionException("CLUSTERDOWN The cluster is down"));
          default -> CompletableFuture.completedFuture("GRANTED");
        },
        System.nanoTime() + TimeUnit.SECONDS.toNanos(30), refreshes::incrementAndGet);
    assertThat(out.join()).isEqualTo("GRANTED");
    assertThat(calls).hasValue(4);
    assertThat(refreshes).hasValue(2);
  }

  @Test
  void aCommandThatMayHaveRunIsNeverSentAgain() {
    AtomicInteger calls = new AtomicInteger();
    CompletableFuture<String> out = ClusterRetry.call(() -> {
      calls.incrementAndGet();
      return CompletableFuture.failedFuture(new RedisCommandTimeoutException("Command timed out"));
    }, System.nanoTime() + TimeUnit.SECONDS.toNanos(30), () -> {});
    assertThatThrownBy(out::join).hasCauseInstanceOf(RedisCommandTimeoutException.class);
    assertThat(calls).hasValue(1);
  }
}
