package dev.sluice.bench;

import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * N operations in flight without a thread each: when one completes (on whatever thread its
 * system calls back on) the next one of that slot is issued from the callback.
 */
final class AsyncLoop implements Workload {

  /** Starts one operation; calls {@code done} once, with null or the failure. */
  @FunctionalInterface
  interface Op {
    void start(Lap lap, Consumer<Throwable> done);
  }

  /** Callbacks that complete inline this deep hand the next issue to a thread (no stack overflow). */
  private static final int MAX_INLINE_DEPTH = 16;
  private static final ThreadLocal<int[]> DEPTH = ThreadLocal.withInitial(() -> new int[1]);

  private final String name;
  private final int inFlight;
  private final Op op;
  private final AtomicInteger active = new AtomicInteger();
  private final ScheduledExecutorService spill;
  private volatile boolean stopping;
  private Meter meter;
  private Runnable onStop = () -> { };

  AsyncLoop(String name, int inFlight, Op op) {
    this.name = name;
    this.inFlight = inFlight;
    this.op = op;
    ScheduledThreadPoolExecutor s = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "bench-" + name + "-spill");
      t.setDaemon(true);
      return t;
    });
    this.spill = s;
  }

  /** Runs when the stop begins, e.g. to cancel operations that would otherwise wait long. */
  AsyncLoop onStop(Runnable action) {
    this.onStop = action;
    return this;
  }

  @Override
  public String driver() {
    return Fmt.rateAscii(inFlight) + " async in flight";
  }

  @Override
  public void start(Meter meter) {
    this.meter = meter;
    active.set(inFlight);
    for (int i = 0; i < inFlight; i++) {
      issue();
    }
  }

  private void issue() {
    if (stopping) {
      active.decrementAndGet();
      return;
    }
    int[] depth = DEPTH.get();
    depth[0]++;
    try {
      Lap lap = new Lap(System.nanoTime());
      op.start(lap, failure -> completed(lap, failure));
    } catch (RuntimeException e) {
      completed(new Lap(System.nanoTime()), e);
    } finally {
      depth[0]--;
    }
  }

  private void completed(Lap lap, Throwable failure) {
    long now = System.nanoTime();
    if (failure == null) {
      meter.done(lap, now);
    } else {
      meter.error(failure);
    }
    if (failure != null) {
      // Back off a little: a system failing at once must not spin.
      spill.schedule(this::issue, 1, TimeUnit.MILLISECONDS);
    } else if (DEPTH.get()[0] >= MAX_INLINE_DEPTH) {
      spill.execute(this::issue);
    } else {
      issue();
    }
  }

  @Override
  public String stop() throws InterruptedException {
    stopping = true;
    onStop.run();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
    while (active.get() > 0 && System.nanoTime() < deadline) {
      Thread.sleep(5);
    }
    spill.shutdownNow();
    int left = active.get();
    return left == 0 ? null : left + " of " + inFlight + " operations of " + name + " still in flight 20 s after the stop";
  }
}
