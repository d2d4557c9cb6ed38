package dev.sluice.client;

import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.DescribeRequest;
import dev.sluice.proto.v1.DescribeResponse;
import dev.sluice.proto.v1.Limit;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the client does instead of the cluster while degraded, per its {@link FailureMode}, and
 * (for {@link FailureMode#local}) the last known limits that the local limiters are built from.
 *
 * <p>Limits are learnt with the Describe RPC after a resource's first grant from the cluster, and
 * refreshed every {@link #REFRESH_INTERVAL} while the cluster answers. Each degraded episode starts
 * fresh limiters (empty buckets, no slots held) from the limits known when it began.
 */
final class Fallback {

  private static final Logger log = LoggerFactory.getLogger(SluiceClient.class);

  static final Duration REFRESH_INTERVAL = Duration.ofSeconds(60);

  /** What a local acquire came to. */
  enum Kind {
    /** Granted: deliver {@link Outcome#permit} after {@link Outcome#delayNanos}. */
    GRANTED,
    /** Cannot be granted locally within the acquire's timeout. */
    TOO_LATE,
    /** Every local concurrency slot is held: try again shortly. */
    NO_SLOT,
    /** No fallback for this acquire: keep retrying the cluster until the timeout. */
    CLOSED
  }

  record Outcome(Kind kind, long delayNanos, LocalPermit permit) {
    static final Outcome TOO_LATE = new Outcome(Kind.TOO_LATE, 0, null);
    static final Outcome NO_SLOT = new Outcome(Kind.NO_SLOT, 0, null);
    static final Outcome CLOSED = new Outcome(Kind.CLOSED, 0, null);
  }

  private final FailureMode mode;
  private final CoordinatorGrpc.CoordinatorStub stub;
  private final ScheduledExecutorService scheduler;
  private final LongSupplier localTicker;
  private final Map<String, Limit> known = new ConcurrentHashMap<>();
  private final Set<String> fetching = ConcurrentHashMap.newKeySet();
  private final Map<String, LocalLimiter> limiters = new ConcurrentHashMap<>();
  private final Set<String> closedLogged = ConcurrentHashMap.newKeySet();
  private final AtomicBoolean refreshArmed = new AtomicBoolean();
  private final AtomicBoolean describeUnsupported = new AtomicBoolean();
  private final AtomicLong localGrants = new AtomicLong();
  private volatile boolean closed;

  Fallback(FailureMode mode, CoordinatorGrpc.CoordinatorStub stub, ScheduledExecutorService scheduler,
      LongSupplier localTicker) {
    this.mode = mode;
    this.stub = stub;
    this.scheduler = scheduler;
    this.localTicker = localTicker;
  }

  FailureMode mode() {
    return mode;
  }

  /** The cluster granted an acquire on {@code resource}: in LOCAL mode, learn its limit once. */
  void granted(String resource) {
    if (mode.kind() != FailureMode.Kind.LOCAL || known.containsKey(resource) || describeUnsupported.get()) {
      return;
    }
    if (fetching.add(resource)) {
      describe(resource);
    }
  }

  /** The limit known for {@code resource}, or null. */
  Limit knownLimit(String resource) {
    return known.get(resource);
  }

  /**
   * A local acquire while degraded.
   *
   * @param waitedNanos how long the acquire has waited so far
   * @param remainingNanos how much of its timeout is left
   */
  Outcome acquire(String resource, Load load, String requestId, long waitedNanos, long remainingNanos) {
    Load granted = withRequestsDefault(load);
    switch (mode.kind()) {
      case FAIL_OPEN:
        localGrants.incrementAndGet();
        return new Outcome(Kind.GRANTED, 0,
            new LocalPermit("local-" + requestId, resource, granted, Duration.ofNanos(waitedNanos), null));
      case LOCAL:
        LocalLimiter limiter = limiters.get(resource);
        if (limiter == null) {
          if (closedLogged.add(resource)) {
            log.warn("Sluice degraded mode {}: no limit is known yet for '{}' (no grant from a coordinator since"
                + " this client started), so acquires on it fail closed until a coordinator answers",
                mode, resource);
          }
          return Outcome.CLOSED;
        }
        if (!limiter.tryTakeSlot()) {
          return Outcome.NO_SLOT;
        }
        long delay = limiter.reserve(granted.asMap(), remainingNanos);
        if (delay < 0) {
          limiter.releaseSlot();
          return Outcome.TOO_LATE;
        }
        localGrants.incrementAndGet();
        return new Outcome(Kind.GRANTED, delay, new LocalPermit("local-" + requestId, resource, granted,
            Duration.ofNanos(waitedNanos + delay), limiter));
      case FAIL_CLOSED:
      default:
        return Outcome.CLOSED;
    }
  }

  /** Starts a degraded episode and returns the one WARN line that announces it. */
  String enter() {
    limiters.clear();
    closedLogged.clear();
    localGrants.set(0);
    String why = "No Sluice coordinator node answers (every node has failed to connect for "
        + ClusterHealth.DEGRADE_AFTER.toMillis() + " ms): entering degraded mode " + mode + ". ";
    switch (mode.kind()) {
      case FAIL_OPEN:
        return why + "Acquires are granted locally at once, WITHOUT any limit, until a node answers again";
      case LOCAL: {
        List<String> rates = new ArrayList<>();
        for (Limit limit : new TreeMap<>(known).values()) {
          LocalLimiter limiter = new LocalLimiter(limit, mode.share(), localTicker);
          limiters.put(limit.getResource(), limiter);
          rates.add(limiter.describe());
        }
        String local = rates.isEmpty()
            ? "No limit is known yet (no grant since this client started), so every resource fails closed"
            : "Acquires are limited locally at " + FailureMode.formatShare(mode.share())
                + " of the last known limits: " + String.join("; ", rates)
                + ". Resources with no known limit fail closed";
        return why + local;
      }
      case FAIL_CLOSED:
      default:
        return why + "Acquires keep retrying until their timeout, then throw SluiceUnavailableException";
    }
  }

  /** Ends a degraded episode and returns the INFO line that says so. */
  String leave(Duration degradedFor) {
    limiters.clear();
    String grants = mode.kind() == FailureMode.Kind.FAIL_CLOSED
        ? "" : "; " + localGrants.get() + " acquire(s) were granted locally meanwhile";
    return "A Sluice coordinator node answers again: leaving degraded mode " + mode + " after "
        + degradedFor.toMillis() + " ms" + grants;
  }

  void close() {
    closed = true;
  }

  private static Load withRequestsDefault(Load load) {
    if (load.asMap().containsKey("requests")) {
      return load;
    }
    Map<String, Long> map = new TreeMap<>(load.asMap());
    map.put("requests", 1L);
    return Load.of(map);
  }

  private void describe(String resource) {
    try {
      stub.withDeadlineAfter(ClientRuntime.CALL_DEADLINE.toNanos(), TimeUnit.NANOSECONDS)
          .describe(DescribeRequest.newBuilder().setResource(resource).build(), new StreamObserver<>() {
            @Override
            public void onNext(DescribeResponse response) {
              known.put(resource, response.getLimit());
              armRefresh();
            }

            @Override
            public void onError(Throwable t) {
              fetching.remove(resource);
              Status.Code code = Status.fromThrowable(t).getCode();
              if (code == Status.Code.NOT_FOUND) {
                known.remove(resource);
              } else if (code == Status.Code.UNIMPLEMENTED) {
                if (describeUnsupported.compareAndSet(false, true)) {
                  log.warn("the Sluice coordinator does not implement Describe (an older version), so failure mode"
                      + " {} cannot learn limits and fails closed; upgrade the coordinators", mode);
                }
              } else {
                log.debug("learning the limit of '{}' failed; retrying after its next grant: {}", resource, t.toString());
              }
            }

            @Override
            public void onCompleted() {
              fetching.remove(resource);
            }
          });
    } catch (RuntimeException e) {
      fetching.remove(resource);
      log.debug("learning the limit of '{}' failed", resource, e);
    }
  }

  private void armRefresh() {
    if (refreshArmed.compareAndSet(false, true)) {
      scheduleRefresh();
    }
  }

  private void scheduleRefresh() {
    if (closed) {
      return;
    }
    try {
      scheduler.schedule(() -> {
        for (String resource : known.keySet()) {
          if (fetching.add(resource)) {
            describe(resource);
          }
        }
        scheduleRefresh();
      }, REFRESH_INTERVAL.toNanos(), TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) {
      // The client is closing.
    }
  }
}
