package dev.sluice.buffers;

/**
 * All time of the buffers: a wall clock for what is stored and shown (an item's next attempt,
 * its history, retention), a monotonic one for ordering this node's own changes, and timers on
 * it. Nothing in this module reads the system clock or sleeps for a schedule: tests pass a fake
 * clock and move it, as the engine's tests do with its {@code Ticker}.
 */
public interface BufferClock {

  /** Milliseconds since the epoch. */
  long millis();

  /** Nanoseconds from an arbitrary origin; only differences mean anything. */
  long nanos();

  /**
   * Runs {@code task} once, {@code delayMillis} from now on this clock (at once when &lt;= 0),
   * on a thread of the clock's own.
   */
  Timer schedule(Runnable task, long delayMillis);

  /** A task scheduled and not yet run, which can still be called off. */
  interface Timer {
    void cancel();
  }
}
