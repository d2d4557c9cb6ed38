package dev.sluice.bench;

import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;
import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * Where workloads report finished operations: latencies in nanoseconds into HdrHistogram
 * recorders (wait-free for any number of writers), failures counted apart. The runner cuts the
 * recorders into measured windows with {@link #interval}.
 */
final class Meter {

  private final Recorder total = new Recorder(3);
  private final Recorder first = new Recorder(3);
  private final LongAdder errors = new LongAdder();
  private final AtomicReference<String> firstError = new AtomicReference<>();

  /** One operation done; see {@link Lap} for which instants count. */
  void done(Lap lap, long now) {
    if (lap.skip) {
      return;
    }
    long end = lap.end >= 0 ? lap.end : now;
    total.recordValue(Math.max(0, end - lap.from));
    if (lap.mark >= 0) {
      first.recordValue(Math.max(0, lap.mark - lap.start));
    }
  }

  void error(Throwable t) {
    errors.increment();
    if (firstError.get() == null) {
      String text = t.getClass().getSimpleName() + ": " + t.getMessage();
      firstError.compareAndSet(null, text.length() > 300 ? text.substring(0, 300) + "..." : text);
    }
  }

  long errors() {
    return errors.sum();
  }

  String firstError() {
    return firstError.get();
  }

  /** What was recorded since the previous call; the recorders start afresh. */
  Window interval() {
    return new Window(total.getIntervalHistogram(), first.getIntervalHistogram(), errors.sum());
  }

  /** Histograms of one window; {@code errorsSoFar} is the running total at its end. */
  record Window(Histogram total, Histogram first, long errorsSoFar) {}
}
