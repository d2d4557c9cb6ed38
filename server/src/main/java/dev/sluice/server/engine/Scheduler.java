package dev.sluice.server.engine;

import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Runs a task after a delay measured on the engine's {@link Ticker}. The engine computes
 * exactly when capacity appears and asks for one wake-up then; it never polls.
 */
public interface Scheduler {

  /** A scheduled task that can still be called off. */
  interface Cancellable {
    void cancel();
  }

  /** Runs {@code task} once, {@code delayNanos} from now (at once when &lt;= 0). */
  Cancellable schedule(Runnable task, long delayNanos);

  /** Adapts an executor whose clock is {@link System#nanoTime()}, matching {@link Ticker#system()}. */
  static Scheduler of(ScheduledExecutorService executor) {
    return (task, delayNanos) -> {
      var future = executor.schedule(task, Math.max(0, delayNanos), TimeUnit.NANOSECONDS);
      return () -> future.cancel(false);
    };
  }
}
