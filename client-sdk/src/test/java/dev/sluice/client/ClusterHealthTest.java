package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** The degraded rule on a fake channel and a fake clock. */
class ClusterHealthTest {

  private final ManualScheduler scheduler = new ManualScheduler();
  private final FakeChannel channel = new FakeChannel();
  private final List<String> events = new ArrayList<>();
  private final ClusterHealth health = new ClusterHealth(channel, scheduler, scheduler::nanoTime,
      new ClusterHealth.Listener() {
        @Override
        public void entered() {
          events.add("entered");
        }

        @Override
        public void left(Duration degradedFor) {
          events.add("left after " + degradedFor.toMillis() + " ms");
        }
      });

  @Test
  void degradedAfterOneSecondOfTransientFailure() {
    health.start();
    channel.set(ConnectivityState.READY);
    channel.set(ConnectivityState.TRANSIENT_FAILURE);
    scheduler.advance(ClusterHealth.DEGRADE_AFTER.minusMillis(1));
    assertThat(health.isDegraded()).isFalse();

    scheduler.advance(Duration.ofMillis(1));
    assertThat(health.isDegraded()).isTrue();
    assertThat(events).containsExactly("entered");

    channel.set(ConnectivityState.CONNECTING); // a reconnect attempt proves nothing
    scheduler.advance(Duration.ofSeconds(2));
    assertThat(health.isDegraded()).isTrue();

    channel.set(ConnectivityState.READY);
    assertThat(health.isDegraded()).isFalse();
    assertThat(events).containsExactly("entered", "left after 2000 ms");
  }

  @Test
  void aShortOutageIsNotDegraded() {
    health.start();
    channel.set(ConnectivityState.TRANSIENT_FAILURE);
    scheduler.advance(Duration.ofMillis(900));
    channel.set(ConnectivityState.READY);
    scheduler.advance(Duration.ofSeconds(5));
    assertThat(health.isDegraded()).isFalse();
    assertThat(events).isEmpty();
  }

  @Test
  void whileDegradedEveryNodeIsAskedToReconnectEachSecond() {
    health.start();
    channel.set(ConnectivityState.TRANSIENT_FAILURE);
    scheduler.advance(ClusterHealth.DEGRADE_AFTER);
    assertThat(channel.backoffResets).hasValue(0);
    scheduler.advance(Duration.ofSeconds(3));
    assertThat(channel.backoffResets).hasValue(3);
    channel.set(ConnectivityState.READY);
    scheduler.advance(Duration.ofSeconds(3));
    assertThat(channel.backoffResets).as("probing stops when a node is back").hasValue(3);
  }

  /** Connectivity state set by the test; the listener contract of ManagedChannel. */
  private static final class FakeChannel extends ManagedChannel {
    private ConnectivityState state = ConnectivityState.IDLE;
    private final List<Runnable> waiting = new ArrayList<>();
    final AtomicInteger backoffResets = new AtomicInteger();

    void set(ConnectivityState next) {
      List<Runnable> run;
      synchronized (this) {
        state = next;
        run = new ArrayList<>(waiting);
        waiting.clear();
      }
      run.forEach(Runnable::run);
    }

    @Override
    public synchronized ConnectivityState getState(boolean requestConnection) {
      return state;
    }

    @Override
    public void notifyWhenStateChanged(ConnectivityState source, Runnable callback) {
      boolean now;
      synchronized (this) {
        now = source != state;
        if (!now) {
          waiting.add(callback);
        }
      }
      if (now) {
        callback.run();
      }
    }

    @Override
    public void resetConnectBackoff() {
      backoffResets.incrementAndGet();
    }

    @Override
    public ManagedChannel shutdown() {
      return this;
    }

    @Override
    public boolean isShutdown() {
      return false;
    }

    @Override
    public boolean isTerminated() {
      return false;
    }

    @Override
    public ManagedChannel shutdownNow() {
      return this;
    }

    @Override
    public boolean awaitTermination(long timeout, TimeUnit unit) {
      return true;
    }

    @Override
    public <Q, R> ClientCall<Q, R> newCall(MethodDescriptor<Q, R> method, CallOptions options) {
      throw new UnsupportedOperationException();
    }

    @Override
    public String authority() {
      return "fake";
    }
  }
}
