package dev.sluice.client;

import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.RenewRequest;
import dev.sluice.proto.v1.RenewResponse;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps the leases of open permits alive.
 *
 * <p>One {@link Group} per resource holds the ids of its open leased permits and a single timer.
 * Each tick sends one batched RenewRequest for the whole group, then re-arms the timer for a third
 * of the lease length, so two ticks can be lost before a lease runs out. A group found with no
 * permits at a tick is removed; the next permit on that resource starts a new group. (Closing a
 * permit only drops its id: cancelling and re-arming a timer per permit cost a timer-thread
 * wake-up per acquire on a busy resource.)
 *
 * <p>Failover: a renewal that fails with UNAVAILABLE is sent again after a short backoff (see
 * {@link Retrier}) until the next tick is due, landing on a live node; and {@link #renewAllNow}
 * renews every group at once when the client notices a failover, so a lease whose last renewal
 * went to the lost node does not wait for its next tick.
 *
 * <p>Concurrency: a group's mutable fields other than its id set are only touched inside
 * {@code groups.compute*} for its key, which serialises them on the map's bin lock (adding an id to
 * a live group takes no lock: see {@link #register}); nothing blocks inside those sections (arming a
 * timer does not). The RPC itself is asynchronous, so neither the scheduler thread nor a gRPC
 * thread ever waits on the network here.
 */
final class LeaseRenewer {

  private static final Logger log = LoggerFactory.getLogger(LeaseRenewer.class);
  private static final Duration MIN_INTERVAL = Duration.ofMillis(1);

  private final CoordinatorGrpc.CoordinatorStub stub;
  private final ScheduledExecutorService scheduler;
  private final Retrier retrier;
  private final ConcurrentHashMap<String, Group> groups = new ConcurrentHashMap<>();
  private volatile boolean closed;

  /** The scheduler is the client's; this class never shuts it down. */
  LeaseRenewer(CoordinatorGrpc.CoordinatorStub stub, ScheduledExecutorService scheduler, Retrier retrier) {
    this.stub = stub;
    this.scheduler = scheduler;
    this.retrier = retrier;
  }

  /** Starts renewing {@code permit}'s lease until {@link #unregister} is called for it. */
  void register(GrpcPermit permit) {
    Duration ttl = permit.leaseTtl();
    // Fast path, no lock: join the resource's live group. A tick that finds a group empty marks it
    // dead before looking, so either it sees this id (and keeps the group) or this sees the mark.
    Group live = groups.get(permit.resource());
    if (live != null && ttl.compareTo(live.ttl) >= 0) {
      live.permitIds.add(permit.id());
      if (!live.dead) {
        return;
      }
      live.permitIds.remove(permit.id());
    }
    groups.compute(permit.resource(), (resource, group) -> {
      if (closed) {
        return group;
      }
      Group g = group != null ? group : new Group(resource, ttl);
      g.permitIds.add(permit.id());
      if (g.next == null) {
        arm(g);
      } else if (ttl.compareTo(g.ttl) < 0) {
        // The limit's lease length shrank: the tick armed for the old one could come too late.
        g.ttl = ttl;
        if (g.next.getDelay(TimeUnit.NANOSECONDS) > Protos.saturatedNanos(interval(ttl))) {
          g.next.cancel(false);
          arm(g);
        }
      }
      return g;
    });
  }

  void unregister(String resource, String permitId) {
    Group g = groups.get(resource);
    if (g != null) {
      g.permitIds.remove(permitId); // the group's next tick removes it if it is empty by then
    }
  }

  /** Stops every renewal. Leases still held run out at the coordinator. */
  void close() {
    closed = true;
    for (String resource : groups.keySet()) {
      groups.computeIfPresent(resource, (r, g) -> {
        if (g.next != null) {
          g.next.cancel(false);
        }
        return null;
      });
    }
  }

  /** Renews every open lease now, without moving the groups' next ticks. */
  void renewAllNow() {
    for (Group g : groups.values()) {
      if (!closed && groups.get(g.resource) == g) {
        send(g);
      }
    }
  }

  private void tick(Group g) {
    boolean[] current = {false};
    groups.computeIfPresent(g.resource, (r, cur) -> {
      if (cur != g || closed) {
        return cur;
      }
      g.dead = true; // before looking: see register's fast path
      if (g.permitIds.isEmpty()) {
        return null;
      }
      g.dead = false;
      arm(g);
      current[0] = true;
      return cur;
    });
    if (current[0]) {
      send(g);
    }
  }

  private void send(Group g) {
    List<String> ids = List.copyOf(g.permitIds);
    if (ids.isEmpty()) {
      return;
    }
    RenewRequest request = RenewRequest.newBuilder().setResource(g.resource).addAllPermitIds(ids).build();
    RenewObserver observer = new RenewObserver(g, ids.size());
    // Retries on UNAVAILABLE end when the next tick is due; a renewal answered after the lease ran
    // out is worthless, so the lease bounds each attempt's wait.
    retrier.<RenewResponse>unary(Protos.saturatedNanos(interval(g.ttl)),
        (deadline, o) -> stub.withDeadlineAfter(Math.min(deadline, Math.max(1, Protos.saturatedNanos(g.ttl))),
            TimeUnit.NANOSECONDS).renew(request, o),
        () -> {},
        (response, failure, retries) -> {
          if (failure != null) {
            observer.onError(failure);
          } else {
            observer.onNext(response);
          }
        });
  }

  /** Must run inside a compute section for {@code g}'s key. */
  private void arm(Group g) {
    try {
      g.next = scheduler.schedule(() -> tick(g), Protos.saturatedNanos(interval(g.ttl)), TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) {
      // The scheduler is shutting down with the client: nothing left to renew for.
      g.next = null;
    }
  }

  private static Duration interval(Duration ttl) {
    Duration third = ttl.dividedBy(3);
    return third.compareTo(MIN_INTERVAL) < 0 ? MIN_INTERVAL : third;
  }

  private final class RenewObserver implements StreamObserver<RenewResponse> {
    private final Group group;
    private final int count;

    RenewObserver(Group group, int count) {
      this.group = group;
      this.count = count;
    }

    @Override
    public void onNext(RenewResponse response) {
      for (String expired : response.getExpiredList()) {
        // A permit closed while this renewal was on the wire is reported gone too: not news.
        if (group.permitIds.remove(expired)) {
          log.warn("lease of permit {} on '{}' has expired: its concurrency slot is gone; no longer renewing it",
              expired, group.resource);
        }
      }
      if (response.hasLeaseTtl()) {
        Duration ttl = Protos.toJava(response.getLeaseTtl());
        if (ttl.compareTo(Duration.ZERO) > 0) {
          groups.computeIfPresent(group.resource, (r, cur) -> {
            if (cur == group) {
              group.ttl = ttl; // takes effect from the next re-arm
            }
            return cur;
          });
        }
      }
    }

    @Override
    public void onError(Throwable t) {
      log.warn("renewing {} lease(s) on '{}' failed; retrying at the next tick: {}", count, group.resource,
          Errors.map(t, "renew", group.resource).getMessage());
    }

    @Override
    public void onCompleted() {}
  }

  /** Open leased permits of one resource. Fields other than the id set: see the class comment. */
  private static final class Group {
    final String resource;
    final Set<String> permitIds = ConcurrentHashMap.newKeySet();
    volatile Duration ttl;
    volatile ScheduledFuture<?> next;
    /** Set by a tick while it checks for emptiness; a dead group is out of the map. */
    volatile boolean dead;

    Group(String resource, Duration ttl) {
      this.resource = resource;
      this.ttl = ttl;
    }
  }
}
