package dev.sluice.buffers;

import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * The clock of a running coordinator: the system's wall and monotonic clocks, and one timer
 * thread ({@code sluice-buffer-timer}) that the buffers start and stop with themselves.
 */
final class SystemClock implements BufferClock, AutoCloseable {

  private final ScheduledThreadPoolExecutor timers;

  SystemClock() {
    timers = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "sluice-buffer-timer");
      t.setDaemon(true);
      return t;
    });
    timers.setRemoveOnCancelPolicy(true); // a retry timer moved earlier leaves nothing queued
  }

  @Override
  public long millis() {
    return System.currentTimeMillis();
  }

  @Override
  public long nanos() {
    return System.nanoTime();
  }

  @Override
  public Timer schedule(Runnable task, long delayMillis) {
    var f = timers.schedule(task, Math.max(0, delayMillis), TimeUnit.MILLISECONDS);
    return () -> f.cancel(false);
  }

  @Override
  public void close() {
    Threads.stop(timers);
  }
}
