package dev.sluice.server.engine;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReferenceArray;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The memory engine's Micrometer meters, with a cap on the {@code resource} tag.
 *
 * <p>Meters tagged by resource cost about 3 KB of heap each set and one time series per meter
 * in the monitoring system, and a coordinator may hold a million resources. So only the first
 * {@code maxResources} resources used get meters of their own; the ones after share one set
 * tagged {@code resource="_other"}, and a warning says so once. Summed over the tag, the
 * counters still add up to every acquire. A deleted resource's meters are removed from the
 * registry and its slot goes to the next resource used. The exact per-resource figures are
 * never capped: the engine keeps them in plain fields for {@code stats}.
 *
 * <p>Micrometer's own {@code MeterFilter.maximumAllowableTags} was considered: past the cap it
 * can only deny (the meters become no-ops and those counts vanish from the metrics), it never
 * frees a value again, and installing it would change a registry the caller owns.
 */
final class Metering {

  /** The {@code resource} tag value of every resource beyond the cap. */
  static final String OTHER = "_other";

  private static final Logger log = LoggerFactory.getLogger(Metering.class);

  private final MeterRegistry registry;
  private final int maxResources;
  private final AtomicInteger tagged = new AtomicInteger();
  private final AtomicBoolean warned = new AtomicBoolean();
  private volatile Meters other;

  Metering(MeterRegistry registry, int maxResources) {
    this.registry = registry;
    this.maxResources = maxResources;
  }

  /** Meters for a resource on its first use: its own while the cap allows, else the shared set. */
  Meters forResource(String resource) {
    int before = tagged.getAndUpdate(n -> n < maxResources ? n + 1 : n);
    if (before < maxResources) {
      return new Meters(registry, resource, true);
    }
    if (warned.compareAndSet(false, true)) {
      log.warn(
          "{} resources have meters of their own (--metrics-max-resources): '{}' and further"
              + " ones are metered under resource=\"{}\" while the cap is reached; their exact"
              + " figures stay in `sluice stats`",
          maxResources, resource, OTHER);
    }
    return other();
  }

  /** The shared set of the resources beyond the cap, registered when first needed. */
  Meters other() {
    Meters m = other;
    if (m == null) {
      synchronized (this) {
        m = other;
        if (m == null) {
          other = m = new Meters(registry, OTHER, false);
        }
      }
    }
    return m;
  }

  /** A deleted resource's meters: removed from the registry, its slot freed if it had one. */
  void release(Meters m) {
    if (m.own) {
      m.removeFrom(registry);
      tagged.decrementAndGet();
    }
  }

  /** How many resources have meters of their own now. */
  int taggedResources() {
    return tagged.get();
  }

  /** One resource's meters, or the shared {@link #OTHER} set. */
  static final class Meters {
    /** Tagged with one resource (holds a slot under the cap), not the shared set. */
    final boolean own;
    private final Tags tags;
    private final MeterRegistry registry;
    /** By {@link Outcome#ordinal()}; rejection counters are registered on first use. */
    private final AtomicReferenceArray<Counter> counters =
        new AtomicReferenceArray<>(Outcome.ALL.length);
    private final Timer wait;
    private volatile boolean removed;

    Meters(MeterRegistry registry, String resource, boolean own) {
      this.own = own;
      this.registry = registry;
      this.tags = Tags.of("resource", resource);
      for (Outcome o : Outcome.ALL) {
        if (o.reason == null) {
          counters.set(o.ordinal(), Counter.builder(o.meter).description(o.help).tags(tags).register(registry));
        }
      }
      wait = Timer.builder("sluice.acquire.wait").description("Time granted acquires spent waiting").tags(tags)
          .register(registry);
    }

    void count(Outcome o) {
      Counter c = counters.get(o.ordinal());
      if (c == null) {
        if (removed) {
          return; // a straggler of a deleted resource: no new series for it
        }
        // Registering twice returns the same counter: a race here is harmless.
        c = Counter.builder(o.meter).description(o.help).tags(tags.and("reason", o.reason)).register(registry);
        counters.compareAndSet(o.ordinal(), null, c);
      }
      c.increment();
    }

    void recordWait(long waitedNanos) {
      wait.record(waitedNanos, TimeUnit.NANOSECONDS);
    }

    private void removeFrom(MeterRegistry registry) {
      removed = true;
      for (int i = 0; i < counters.length(); i++) {
        Meter m = counters.get(i);
        if (m != null) {
          registry.remove(m);
        }
      }
      registry.remove(wait);
    }
  }
}
