package dev.sluice.server.engine;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Per-resource configuration and counters; outlives the live state. What a used resource
 * needs beyond its limit ({@link Usage}) is created on its first event: a configured but idle
 * resource costs a few hundred bytes (a million limits must fit in a small heap).
 */
final class LimitEntry {
  volatile LimitSpec spec;
  volatile boolean startFull;
  /** When the limit was set or loaded: buckets are empty then and fill from there. */
  final long createdAt;
  /**
   * Loaded when this engine started (a coordinator restart): the permits its holders got from
   * the engine before are unknown here, and for one lease from {@link #createdAt} a renew adopts
   * them ({@link ResourceState#renew}).
   */
  volatile boolean restored;
  private final Metering metering;
  private volatile Usage usage;
  /** Ticker time of the last upstream throttle report; meaningful once one was counted. */
  volatile long lastThrottleAt;
  private boolean deleted; // guarded by this
  /**
   * The template this entry's limit comes from, or null for a limit of its own. Such an entry
   * lives only with its live state ({@link MemoryEngine}): freed with it when idle.
   */
  volatile Templates.Template template;
  /** The templates {@link #template} was chosen from: another snapshot means choose again. */
  volatile Templates resolvedIn;

  /**
   * Exact counts for stats, recent waits for p50/p99, and the meters they are also counted
   * on (the resource's own or the shared set beyond the cap, see {@link Metering}).
   */
  static final class Usage {
    private static final VarHandle[] COUNTS = new VarHandle[Outcome.ALL.length];

    static {
      try {
        MethodHandles.Lookup l = MethodHandles.lookup();
        COUNTS[Outcome.GRANTED.ordinal()] = l.findVarHandle(Usage.class, "granted", long.class);
        COUNTS[Outcome.TIMED_OUT.ordinal()] = l.findVarHandle(Usage.class, "timedOut", long.class);
        COUNTS[Outcome.CANCELLED.ordinal()] = l.findVarHandle(Usage.class, "cancelled", long.class);
        COUNTS[Outcome.GIVEN_BACK.ordinal()] = l.findVarHandle(Usage.class, "givenBack", long.class);
        COUNTS[Outcome.FORFEITED.ordinal()] = l.findVarHandle(Usage.class, "forfeited", long.class);
        COUNTS[Outcome.LEASE_EXPIRED.ordinal()] = l.findVarHandle(Usage.class, "expired", long.class);
        COUNTS[Outcome.THROTTLE_REPORTED.ordinal()] =
            l.findVarHandle(Usage.class, "throttled", long.class);
      } catch (ReflectiveOperationException e) {
        throw new ExceptionInInitializerError(e);
      }
    }

    final WaitStats waits = new WaitStats();
    final Metering.Meters meters;
    // Fields rather than an array: 8 bytes a count on a million resources. Rejections are
    // rare, so their counts come in an array created on the first.
    @SuppressWarnings("unused") private volatile long granted;
    @SuppressWarnings("unused") private volatile long timedOut;
    @SuppressWarnings("unused") private volatile long cancelled;
    @SuppressWarnings("unused") private volatile long givenBack;
    @SuppressWarnings("unused") private volatile long forfeited;
    @SuppressWarnings("unused") private volatile long expired;
    @SuppressWarnings("unused") private volatile long throttled;
    private volatile AtomicLongArray rejected;

    Usage(Metering.Meters meters) {
      this.meters = meters;
    }

    void add(Outcome o) {
      VarHandle h = COUNTS[o.ordinal()];
      if (h != null) {
        h.getAndAdd(this, 1L);
        return;
      }
      AtomicLongArray r = rejected;
      if (r == null) {
        synchronized (this) {
          r = rejected;
          if (r == null) {
            rejected = r = new AtomicLongArray(Outcome.ALL.length);
          }
        }
      }
      r.incrementAndGet(o.ordinal());
    }

    long get(Outcome o) {
      VarHandle h = COUNTS[o.ordinal()];
      if (h != null) {
        return (long) h.getVolatile(this);
      }
      AtomicLongArray r = rejected;
      return r == null ? 0 : r.get(o.ordinal());
    }
  }

  LimitEntry(LimitSpec spec, Metering metering, long createdAt) {
    this.spec = spec;
    this.createdAt = createdAt;
    this.metering = metering;
  }

  Usage usage() {
    Usage u = usage;
    if (u == null) {
      synchronized (this) {
        u = usage;
        if (u == null) {
          // A deleted resource's stragglers take no slot under the metrics cap.
          usage = u = new Usage(
              deleted ? metering.other() : metering.forResource(spec.resource()));
        }
      }
    }
    return u;
  }

  void add(Outcome o) {
    Usage u = usage();
    u.add(o);
    u.meters.count(o);
  }

  /** A count, 0 if nothing ever happened on this resource. */
  long count(Outcome o) {
    Usage u = usage;
    return u == null ? 0 : u.get(o);
  }

  void recordWait(long waitedNanos, long grantedAt) {
    Usage u = usage();
    u.waits.record(waitedNanos, grantedAt);
    u.meters.recordWait(waitedNanos);
  }

  /** {p50, p99} of recent waits in seconds. */
  double[] waitPercentiles(long now) {
    Usage u = usage;
    return u == null ? new double[] {0, 0} : u.waits.percentiles(now);
  }

  /** Whether a wait histogram is held now (tests: only waits should create one). */
  boolean holdsWaitHistogram() {
    Usage u = usage;
    return u != null && u.waits.holdsHistogram();
  }

  /** Called when the live state went idle: drops a wait histogram nobody needs any more. */
  void idle(long now) {
    Usage u = usage;
    if (u != null) {
      u.waits.trim(now);
    }
  }

  /** The limit was deleted: its meters leave the registry and free their slot. */
  void delete() {
    synchronized (this) {
      deleted = true;
      Usage u = usage;
      if (u != null) {
        metering.release(u.meters);
      }
    }
  }
}
