package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;

import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.ToDoubleFunction;

/**
 * The coordinator's own record of what it granted, for tests that put real load on a real
 * clock: a thread reads one resource's stats over and over, each read stamped with the machine's
 * monotonic clock just before and just after it. A read is atomic (the memory store reads under
 * the resource's monitor, Redis in one script), so it happened at one instant between its two
 * stamps.
 *
 * <p>Hence the grants counted between reads i &lt; j were made between {@code before(i)} and
 * {@code after(j)}, and a token bucket of {@code rate} per second and capacity {@code burst},
 * refilled from the same machine clock, allows at most {@code burst + rate * (after(j) -
 * before(i))} of them. Checked over every pair of reads this is the window bound of guarantee 1,
 * on the coordinator's own counts: a worker descheduled with its answer in hand cannot push it
 * over, and a grant no worker received still counts.
 */
public final class GrantSampler implements AutoCloseable {

  /** One read of the stats, with the monotonic instants just before and just after it. */
  public record Sample(long before, long after, ResourceSnapshot stats) {
    /** Grants that reached or may have reached a caller (not given back, not forfeited). */
    public double net() {
      return stats.granted() - stats.givenBack() - stats.forfeited();
    }

    /** Units of {@code dimension} taken, net of refunds and settle charges. */
    public double used(String dimension) {
      return stats.used().getOrDefault(dimension, 0.0);
    }

    /** What {@code dimension} owes after settle charges above the estimates: 0 unless in debt. */
    public double debt(String dimension) {
      return Math.max(0, -stats.available().getOrDefault(dimension, 0.0));
    }
  }

  /** The densest stretch between two reads at most a second apart, for the printout. */
  public record Densest(double count, long spanNanos) {
    @Override
    public String toString() {
      return String.format("%.0f in %.0f ms", count, spanNanos / 1e6);
    }
  }

  private static final Duration EVERY = Duration.ofMillis(10);

  private final List<Sample> samples = new CopyOnWriteArrayList<>();
  private final Thread thread;
  private volatile RuntimeException failure;

  private GrantSampler(Engine engine, String resource) {
    thread = new Thread(() -> {
      while (!Thread.currentThread().isInterrupted()) {
        try {
          long before = System.nanoTime();
          ResourceSnapshot stats = sync(engine).stats(resource);
          samples.add(new Sample(before, System.nanoTime(), stats));
        } catch (RuntimeException e) {
          failure = e;
          return;
        }
        LockSupport.parkNanos(EVERY.toNanos());
      }
    }, "grant-sampler-" + resource);
    thread.setDaemon(true);
  }

  /** Starts reading {@code resource}'s stats on {@code engine} every 10 ms. */
  public static GrantSampler start(Engine engine, String resource) {
    GrantSampler s = new GrantSampler(engine, resource);
    s.thread.start();
    return s;
  }

  /** Stops reading; returns every read, in order. A read that failed is thrown. */
  public List<Sample> stop() throws InterruptedException {
    thread.interrupt();
    thread.join(TimeUnit.SECONDS.toMillis(10));
    if (failure != null) {
      throw new IllegalStateException("reading the stats failed: " + failure, failure);
    }
    return List.copyOf(samples);
  }

  @Override
  public void close() {
    thread.interrupt();
  }

  /** The reads taken from {@code from} to {@code to} (monotonic nanos). */
  public static List<Sample> between(List<Sample> samples, long from, long to) {
    return samples.stream().filter(s -> s.before() >= from && s.after() <= to).toList();
  }

  /**
   * Asserts that net grants (one unit of {@code rate} each) never exceed {@code rate}'s window
   * bound between any two reads; returns the densest stretch of at most a second.
   */
  public static Densest assertGrantsWithinLimit(List<Sample> samples, RateSpec rate) {
    return assertWithinLimit(samples, rate, Sample::net, s -> 0);
  }

  /**
   * Asserts that {@code counter} (a count of units of {@code rate}'s dimension taken) grows
   * between any two reads by at most {@code burst + rate * time + slack(later read)}; returns the
   * densest stretch of at most a second. {@code slack} is for what the bucket may owe: units a
   * settle charged above the estimates are taken already, and paid back before the next grant.
   */
  public static Densest assertWithinLimit(
      List<Sample> samples, RateSpec rate, ToDoubleFunction<Sample> counter, ToDoubleFunction<Sample> slack) {
    String over = overLimit(samples, rate, counter, slack);
    if (over != null) {
      throw new AssertionError(over);
    }
    return densest(samples, counter);
  }

  /**
   * The first pair of reads between which {@code counter} grew by more than {@code rate}'s
   * window bound plus {@code slack(later read)}, described; null when there is none.
   */
  public static String overLimit(
      List<Sample> samples, RateSpec rate, ToDoubleFunction<Sample> counter, ToDoubleFunction<Sample> slack) {
    if (samples.size() < 2) {
      return "only " + samples.size() + " read(s) of the coordinator's stats: nothing to compare";
    }
    double perNano = (double) rate.amount() / rate.period().toNanos();
    for (int j = 1; j < samples.size(); j++) {
      Sample later = samples.get(j);
      if (later.stats().granted() < samples.get(j - 1).stats().granted()) {
        return "the grant counter went down at read " + j + ": the resource's counters restarted mid-run";
      }
      for (int i = 0; i < j; i++) {
        Sample earlier = samples.get(i);
        long span = later.after() - earlier.before();
        double taken = counter.applyAsDouble(later) - counter.applyAsDouble(earlier);
        double bound = rate.burst() + perNano * span + slack.applyAsDouble(later);
        if (taken > bound + 1e-6) {
          return String.format(
              "%s: %.1f taken between reads %.3f s apart (reads %d and %d), more than burst %d + %d per %s"
                  + " allows: %.1f",
              rate.name(), taken, span / 1e9, i, j, rate.burst(), rate.amount(), rate.period(), bound);
        }
      }
    }
    return null;
  }

  /** The most {@code counter} grew between two reads at most a second apart (first to last stamp). */
  public static Densest densest(List<Sample> samples, ToDoubleFunction<Sample> counter) {
    long second = TimeUnit.SECONDS.toNanos(1);
    Densest densest = new Densest(0, 0);
    for (int j = 1; j < samples.size(); j++) {
      for (int i = j - 1; i >= 0 && samples.get(j).after() - samples.get(i).before() <= second; i--) {
        double taken = counter.applyAsDouble(samples.get(j)) - counter.applyAsDouble(samples.get(i));
        if (taken > densest.count()) {
          densest = new Densest(taken, samples.get(j).after() - samples.get(i).before());
        }
      }
    }
    return densest;
  }

  /** The stats of the last read. */
  public static ResourceSnapshot last(List<Sample> samples) {
    return samples.get(samples.size() - 1).stats();
  }
}
