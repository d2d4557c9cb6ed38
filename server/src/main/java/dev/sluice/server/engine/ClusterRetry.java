package dev.sluice.server.engine;

import io.lettuce.core.RedisCommandExecutionException;
import io.lettuce.core.RedisConnectionException;
import io.lettuce.core.cluster.PartitionException;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Retries a Redis Cluster command that certainly did not run, within a deadline (issue 24).
 *
 * <p>While a slot migrates, a script whose keys are split between the two primaries is
 * refused with {@code TRYAGAIN}; Lettuce follows {@code ASK} and {@code MOVED} itself, and a
 * redirect past its limit, or {@code CLUSTERDOWN} while a primary fails over, ends the same
 * way: Redis refused the command before running it. So does Lettuce when it has no
 * connection to the slot's primary (it rejects commands while disconnected) or no primary for
 * the slot. Each is sent again after a short backoff (10, 20, 40, 80, then every 100 ms), which
 * also lets the adaptive topology refresh ({@link RedisStore#CLUSTER_REFRESH}) that such a
 * failure triggers find the new owner. A command that may have run (a timeout, a connection lost
 * with the command on the wire) is never sent again here: its failure is the caller's.
 *
 * <p>A refusal of Lettuce's own ({@link #staleRoute}: no connection to the node its view gives
 * the slot) also asks for a topology refresh ({@link RedisStore#refreshTopology}): none of
 * Lettuce's adaptive triggers fires for it, and a view that still routes the slot to a killed
 * primary would otherwise stand until the periodic refresh.
 *
 * <p>The backoff runs on real time: it paces calls to a real Redis, not the engine's clock.
 */
final class ClusterRetry {

  private ClusterRetry() {}

  /** The longest a call retries when its caller gives no deadline. */
  static final Duration BUDGET = Duration.ofSeconds(5);

  private static final long FIRST = TimeUnit.MILLISECONDS.toNanos(10);
  private static final long MAX = TimeUnit.MILLISECONDS.toNanos(100);

  /**
   * True if Redis Cluster, or Lettuce's routing, refused {@code t}'s command before it ran: it is
   * safe to send again.
   */
  static boolean notRun(Throwable t) {
    if (t instanceof PartitionException || t instanceof RedisConnectionException) {
      return true; // no node serves the slot, or no connection to it could be made
    }
    String m = t.getMessage();
    if (m == null) {
      return false;
    }
    if (t instanceof RedisCommandExecutionException) {
      return m.startsWith("TRYAGAIN") || m.startsWith("CLUSTERDOWN") || m.startsWith("MOVED")
          || m.startsWith("ASK");
    }
    return m.startsWith("Currently not connected. Commands are rejected");
  }

  /**
   * True if Lettuce itself refused {@code t}'s command because its view of the cluster routes the
   * slot to a node it cannot reach, or to no node: a sign that view is stale (a primary failed
   * over). Redis's own refusals ({@code TRYAGAIN}, {@code CLUSTERDOWN}, redirects) are not.
   */
  static boolean staleRoute(Throwable t) {
    return notRun(t) && !(t instanceof RedisCommandExecutionException);
  }

  /** The pause before retry {@code n} (from 0). */
  static long backoffNanos(int n) {
    return n >= 4 ? MAX : FIRST << n;
  }

  /**
   * Runs {@code command}, and again while it fails with {@link #notRun} and a retry can start
   * before {@code deadline} ({@link System#nanoTime()}); the future ends as the last attempt did.
   * Each attempt refused with {@link #staleRoute} runs {@code staleView} first (it must not wait).
   */
  static <T> CompletableFuture<T> call(Supplier<CompletableFuture<T>> command, long deadline, Runnable staleView) {
    CompletableFuture<T> out = new CompletableFuture<>();
    attempt(command, deadline, 0, out, staleView);
    return out;
  }

  private static <T> void attempt(
      Supplier<CompletableFuture<T>> command, long deadline, int n, CompletableFuture<T> out, Runnable staleView) {
    CompletableFuture<T> f;
    try {
      f = command.get();
    } catch (RuntimeException e) {
      f = CompletableFuture.failedFuture(e);
    }
    f.whenComplete(
        (value, error) -> {
          if (error == null) {
            out.complete(value);
            return;
          }
          Throwable t = EngineException.unwrap(error);
          if (staleRoute(t)) {
            staleView.run();
          }
          long pause = backoffNanos(n);
          if (!notRun(t) || System.nanoTime() + pause - deadline > 0) {
            out.completeExceptionally(t);
            return;
          }
          CompletableFuture.delayedExecutor(pause, TimeUnit.NANOSECONDS)
              .execute(() -> attempt(command, deadline, n + 1, out, staleView));
        });
  }
}
