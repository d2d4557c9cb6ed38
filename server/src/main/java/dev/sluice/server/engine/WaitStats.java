package dev.sluice.server.engine;

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
 */
final class WaitStats {

  static final long WINDOW_NANOS = TimeUnit.MINUTES.toNanos(1);
  private static final long MAX_MICROS = TimeUnit.HOURS.toMicros(1);

  /** Created on the first grant: ~30 KB of buckets an idle resource should not pay for. */
  private volatile Recorder recorder;
  private Histogram current;
  private Histogram previous;
  private long currentStart;

  void record(long waitedNanos) {
    long micros = Math.max(1, Math.min(MAX_MICROS, waitedNanos / 1_000));
    Recorder r = recorder;
    if (r == null) {
      synchronized (this) {
        r = recorder;
        if (r == null) {
          recorder = r = new Recorder(1, MAX_MICROS, 2);
        }
      }
    }
    r.recordValue(micros);
  }

  /** {p50, p99} in seconds over the recent windows; zeros when nothing was granted. */
  synchronized double[] percentiles(long now) {
    Recorder r = recorder;
    if (r == null) {
      return new double[] {0, 0};
    }
    Histogram interval = r.getIntervalHistogram();
    if (current == null) {
      current = interval;
      currentStart = now;
    } else {
      current.add(interval);
    }
    if (now - currentStart >= WINDOW_NANOS) {
      previous = current;
      current = new Histogram(1, MAX_MICROS, 2);
      currentStart = now;
    }
    Histogram merged = current.copy();
    if (previous != null) {
      merged.add(previous);
    }
    if (merged.getTotalCount() == 0) {
      return new double[] {0, 0};
    }
    return new double[] {
      merged.getValueAtPercentile(50) / 1e6, merged.getValueAtPercentile(99) / 1e6
    };
  }
}
