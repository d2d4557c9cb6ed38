package dev.sluice.server.engine;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * Wait times of recent grants, for p50/p99 in stats. An HdrHistogram {@link Recorder} with a
 * fixed range (1 µs to 1 h, 2 significant digits) records in tens of nanoseconds without
 * locks or resizing, so it can sit on the grant path; Micrometer's client-side percentiles
 * resize on each new magnitude and were measured taking milliseconds there.
 *
 * <p>"Recent" is the current window plus the previous one; a window lasts {@link #WINDOW_NANOS}
 * and turns over when stats are read.
 *
 * <p>Memory: that range costs ~27 KB of counts per histogram, and most resources never make
 * anybody wait. So a grant that waited under 1 µs is only counted (a long), and the recorder is
 * created on the first grant that really waited; {@link #trim} drops it again once nothing has
 * waited for two windows, when it could no longer change a percentile. A million resources used
 * without contention then cost no histogram at all.
 */
final class WaitStats {

  static final long WINDOW_NANOS = TimeUnit.MINUTES.toNanos(1);
  private static final long MAX_MICROS = TimeUnit.HOURS.toMicros(1);
  private static final int DIGITS = 2;
  private static final VarHandle PENDING_ZEROS;

  static {
    try {
      PENDING_ZEROS =
          MethodHandles.lookup().findVarHandle(WaitStats.class, "pendingZeros", long.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  /** Grants that did not wait, since the last read; added atomically by {@link #record}. */
  @SuppressWarnings("unused") // through PENDING_ZEROS
  private volatile long pendingZeros;
  /** Null until a grant waits; null again after {@link #trim}. */
  private volatile Recorder recorder;
  /** When the last grant that waited was made; meaningful while {@link #recorder} is set. */
  private volatile long lastWaitAt;
  /** When the last grant was made, waited or not. */
  private volatile long lastGrantAt;

  // Guarded by this: the two windows, zero waits as counts, the rest as histograms (or null).
  private Histogram current;
  private Histogram previous;
  private long zerosCurrent;
  private long zerosPrevious;
  private long currentStart;
  private boolean started;

  /**
   * Records one grant's wait.
   *
   * @param waitedNanos how long it waited
   * @param grantedAt when it was granted, on the engine's ticker
   */
  void record(long waitedNanos, long grantedAt) {
    long micros = Math.min(MAX_MICROS, waitedNanos / 1_000);
    lastGrantAt = grantedAt;
    if (micros == 0) {
      PENDING_ZEROS.getAndAdd(this, 1L);
      return;
    }
    lastWaitAt = grantedAt;
    while (true) {
      Recorder r = recorder;
      if (r == null) {
        synchronized (this) {
          r = recorder;
          if (r == null) {
            recorder = r = new Recorder(1, MAX_MICROS, DIGITS);
          }
        }
      }
      r.recordValue(micros);
      if (recorder == r) {
        return;
      }
      // trim() dropped that recorder meanwhile (its data unread): record into a new one.
    }
  }

  /** Whether a wait histogram is held (for tests: uncontended resources hold none). */
  boolean holdsHistogram() {
    return recorder != null;
  }

  /**
   * True once nothing was granted for two windows: every percentile then reads 0, as on a new
   * one, so a store that keeps these per resource may drop it.
   */
  boolean idle(long now) {
    return now - lastGrantAt >= 2 * WINDOW_NANOS;
  }

  /**
   * Drops the histograms once the last grant that waited is two windows old: they could only
   * report waits older than "recent". Called when the resource's live state goes idle and on
   * every read.
   */
  synchronized void trim(long now) {
    if (recorder != null && now - lastWaitAt >= 2 * WINDOW_NANOS) {
      recorder = null;
      current = null;
      previous = null;
    }
  }

  /** {p50, p99} in seconds over the recent windows; zeros when nothing was granted. */
  synchronized double[] percentiles(long now) {
    if (!started) {
      started = true;
      currentStart = now;
    }
    trim(now);
    zerosCurrent += (long) PENDING_ZEROS.getAndSet(this, 0L);
    Recorder r = recorder;
    if (r != null) {
      Histogram interval = r.getIntervalHistogram();
      if (current == null) {
        current = interval;
      } else {
        current.add(interval);
      }
    }
    if (now - currentStart >= WINDOW_NANOS) {
      previous = current;
      zerosPrevious = zerosCurrent;
      current = null;
      zerosCurrent = 0;
      currentStart = now;
    }
    if (current == null && previous == null) {
      // Every recent grant waited under 1 µs, or there was none: both percentiles are 0.
      return new double[] {0, 0};
    }
    Histogram merged = new Histogram(1, MAX_MICROS, DIGITS);
    if (current != null) {
      merged.add(current);
    }
    if (previous != null) {
      merged.add(previous);
    }
    long zeros = zerosCurrent + zerosPrevious;
    if (zeros > 0) {
      merged.recordValueWithCount(0, zeros);
    }
    if (merged.getTotalCount() == 0) {
      return new double[] {0, 0};
    }
    return new double[] {
      merged.getValueAtPercentile(50) / 1e6, merged.getValueAtPercentile(99) / 1e6
    };
  }
}
