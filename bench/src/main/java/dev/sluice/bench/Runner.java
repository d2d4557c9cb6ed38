package dev.sluice.bench;

import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Runs one workload through its phases: warm-up (recorded, then thrown away), then
 * {@code rounds} back-to-back measured windows of equal length. Throughput of a window is the
 * operations that completed in it divided by its measured length.
 */
final class Runner {

  private final Duration warmup;
  private final Duration round;
  private final int rounds;

  Runner(Duration warmup, Duration round, int rounds) {
    this.warmup = warmup;
    this.round = round;
    this.rounds = rounds;
  }

  Duration warmup() {
    return warmup;
  }

  Duration round() {
    return round;
  }

  int rounds() {
    return rounds;
  }

  /** Runs {@code w} into {@code r}; failures of the workload itself land in {@code r.failure}. */
  void run(Workload w, Result r) throws InterruptedException {
    run(w, r, () -> { });
  }

  /** Like {@link #run(Workload, Result)}; {@code beforeStop} runs after the last window, load still on. */
  void run(Workload w, Result r, Runnable beforeStop) throws InterruptedException {
    r.driver = w.driver();
    Meter meter = new Meter();
    try {
      w.start(meter);
    } catch (InterruptedException e) {
      throw e;
    } catch (Exception e) {
      r.failure = "could not start: " + e;
      w.stop();
      return;
    }
    try {
      sleep(warmup);
      Meter.Window previous = meter.interval();
      long mark = System.nanoTime();
      CpuShare.Sample cpu = CpuShare.sample();
      for (int i = 0; i < rounds; i++) {
        sleep(round);
        Meter.Window window = meter.interval();
        long now = System.nanoTime();
        CpuShare.Sample cpuNow = CpuShare.sample();
        double seconds = (now - mark) / 1e9;
        r.rounds.add(Result.Round.of(seconds, window.total(), window.first(),
            window.errorsSoFar() - previous.errorsSoFar(), CpuShare.others(cpu, cpuNow)));
        previous = window;
        mark = now;
        cpu = cpuNow;
      }
      beforeStop.run();
    } finally {
      String note = w.stop();
      if (note != null) {
        r.facts.put("stop", note);
      }
      r.firstError = meter.firstError();
    }
  }

  private static void sleep(Duration d) throws InterruptedException {
    TimeUnit.NANOSECONDS.sleep(d.toNanos());
  }
}
