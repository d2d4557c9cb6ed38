package dev.sluice.bench;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** N platform threads, each running one blocking operation after another. */
final class ThreadLoop implements Workload {

  /** One blocking operation; may {@link Lap#mark()} an intermediate point. */
  @FunctionalInterface
  interface Op {
    void run(Lap lap) throws Exception;
  }

  private static final long ERROR_PAUSE_NANOS = TimeUnit.MILLISECONDS.toNanos(1);

  private final String name;
  private final int threads;
  private final Op op;
  private final List<Thread> workers = new ArrayList<>();
  private volatile boolean stopping;

  ThreadLoop(String name, int threads, Op op) {
    this.name = name;
    this.threads = threads;
    this.op = op;
  }

  @Override
  public String driver() {
    return threads == 1 ? "1 thread" : threads + " threads";
  }

  @Override
  public void start(Meter meter) {
    for (int i = 0; i < threads; i++) {
      Thread t = new Thread(() -> loop(meter), "bench-" + name + "-" + i);
      t.setDaemon(true);
      workers.add(t);
      t.start();
    }
  }

  private void loop(Meter meter) {
    while (!stopping) {
      Lap lap = new Lap(System.nanoTime());
      try {
        op.run(lap);
        meter.done(lap, System.nanoTime());
      } catch (InterruptedException e) {
        return;
      } catch (Exception | LinkageError e) {
        meter.error(e);
        // A system that fails at once must not turn the loop into a spin that starves the rest.
        java.util.concurrent.locks.LockSupport.parkNanos(ERROR_PAUSE_NANOS);
      }
    }
  }

  @Override
  public String stop() throws InterruptedException {
    stopping = true;
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
    for (Thread t : workers) {
      t.join(Math.max(1, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime())));
    }
    int stuck = 0;
    for (Thread t : workers) {
      if (t.isAlive()) {
        stuck++;
        t.interrupt();
      }
    }
    return stuck == 0 ? null : stuck + " of " + threads + " workers were still blocked 15 s after the stop (interrupted)";
  }
}
