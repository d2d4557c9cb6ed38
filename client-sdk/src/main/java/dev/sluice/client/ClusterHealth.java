package dev.sluice.client;

import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import java.time.Duration;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Decides whether the client is degraded: no coordinator node answers.
 *
 * <p>The rule: the channel reached TRANSIENT_FAILURE and has not been READY since, for at least
 * {@link #DEGRADE_AFTER}. With round_robin the channel is in TRANSIENT_FAILURE only when every node
 * has failed to connect or lost its connection, and calls then fail at once with UNAVAILABLE
 * instead of queueing; it is READY as soon as one node is. The second of grace keeps a rolling
 * restart or a single reconnect from flipping the client into its fallback.
 *
 * <p>While degraded, a probe runs every {@link #PROBE_INTERVAL}: it asks an idle channel to connect
 * and cuts gRPC's reconnect backoff short (which grows to two minutes), so a node that comes back
 * is found within about a second even if no acquire is made. Leaving is immediate on READY.
 *
 * <p>State changes arrive on gRPC's threads and the check on the scheduler; the monitor guards
 * them. Listeners are called outside it.
 */
final class ClusterHealth implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(ClusterHealth.class);

  static final Duration DEGRADE_AFTER = Duration.ofSeconds(1);
  static final Duration PROBE_INTERVAL = Duration.ofSeconds(1);

  /** Told when the client enters and leaves degraded mode. */
  interface Listener {
    void entered();

    /** @param degradedFor how long the client was degraded */
    void left(Duration degradedFor);
  }

  private final ManagedChannel channel;
  private final ScheduledExecutorService scheduler;
  private final LongSupplier ticker;
  private final Listener listener;
  private boolean failing; // TRANSIENT_FAILURE seen, no READY since
  private long failingSince;
  private long degradedSince;
  private ScheduledFuture<?> check;
  private ScheduledFuture<?> probe;
  private volatile boolean degraded;
  private volatile boolean closed;

  ClusterHealth(ManagedChannel channel, ScheduledExecutorService scheduler, LongSupplier ticker, Listener listener) {
    this.channel = channel;
    this.scheduler = scheduler;
    this.ticker = ticker;
    this.listener = listener;
  }

  /** Starts watching the channel. Does not make it connect. */
  void start() {
    watch(channel.getState(false));
  }

  boolean isDegraded() {
    return degraded;
  }

  private void watch(ConnectivityState state) {
    if (closed || state == ConnectivityState.SHUTDOWN) {
      return;
    }
    onState(state);
    channel.notifyWhenStateChanged(state, () -> watch(channel.getState(false)));
  }

  private void onState(ConnectivityState state) {
    boolean left = false;
    long degradedFor = 0;
    synchronized (this) {
      if (state == ConnectivityState.READY) {
        failing = false;
        cancel(check);
        check = null;
        if (degraded) {
          degraded = false;
          left = true;
          degradedFor = ticker.getAsLong() - degradedSince;
          cancel(probe);
          probe = null;
        }
      } else if (state == ConnectivityState.TRANSIENT_FAILURE && !failing) {
        failing = true;
        failingSince = ticker.getAsLong();
        if (!degraded) {
          check = schedule(this::check, DEGRADE_AFTER.toNanos());
        }
      }
      // IDLE and CONNECTING change nothing: only READY proves a node answers again.
    }
    if (left) {
      listener.left(Duration.ofNanos(degradedFor));
    }
  }

  private void check() {
    synchronized (this) {
      if (!failing || degraded || closed) {
        return;
      }
      long left = failingSince + DEGRADE_AFTER.toNanos() - ticker.getAsLong();
      if (left > 0) {
        check = schedule(this::check, left);
        return;
      }
    }
    // The fallback is ready before anyone can see the flag; only this task enters.
    listener.entered();
    boolean backMeanwhile = false;
    synchronized (this) {
      if (failing && !closed) {
        degraded = true;
        degradedSince = ticker.getAsLong();
        probe = schedule(this::probe, PROBE_INTERVAL.toNanos());
      } else {
        backMeanwhile = true;
      }
    }
    if (backMeanwhile) {
      listener.left(Duration.ZERO); // a node answered while the fallback was being prepared
    }
  }

  private void probe() {
    synchronized (this) {
      if (!degraded || closed) {
        return;
      }
      probe = schedule(this::probe, PROBE_INTERVAL.toNanos());
    }
    try {
      channel.getState(true);
      channel.resetConnectBackoff();
    } catch (RuntimeException e) {
      log.debug("probing the coordinator nodes failed", e);
    }
  }

  private ScheduledFuture<?> schedule(Runnable task, long delayNanos) {
    try {
      return scheduler.schedule(task, delayNanos, TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) {
      return null; // the client is closing
    }
  }

  private static void cancel(ScheduledFuture<?> f) {
    if (f != null) {
      f.cancel(false);
    }
  }

  @Override
  public synchronized void close() {
    closed = true;
    cancel(check);
    cancel(probe);
  }
}
