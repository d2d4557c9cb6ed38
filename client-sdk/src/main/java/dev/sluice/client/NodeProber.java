package dev.sluice.client;

import dev.sluice.client.Targets.HostPort;
import dev.sluice.proto.v1.CoordinatorGrpc;
import io.grpc.ChannelCredentials;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Finds a silent coordinator node of a list target within {@link #INTERVAL} + {@link #TIMEOUT}
 * (2 s), instead of the ~11 s of keepalive.
 *
 * <p>Why. A node that exits closes its connections and gRPC sees it at once. A node that goes
 * silent (host down, network cut, process stopped) closes nothing: its connection looks READY,
 * calls on it wait, and only keepalive notices, which grpc-java clamps to one ping per 10 s. So
 * every {@link #INTERVAL} each node gets a health check with a {@link #TIMEOUT} deadline, on a
 * small channel of its own (no load balancing: one node, one connection). A node whose check
 * fails is marked down ({@link Listener#down}): the resolver stops publishing it and the calls
 * on it are cut off and retried elsewhere ({@link ListNodes}). One check that passes marks it up
 * again. Transitions log one WARN and one INFO line.
 *
 * <p>The check is the standard {@code grpc.health.v1.Health/Check} for the Coordinator service
 * (grpc-services' stubs), not a Coordinator call such as {@code Describe} on a resource that
 * cannot exist: the node answers it from memory, costing its store (Redis) nothing for each
 * client each second, and it carries NOT_SERVING, which a node reports when its store is away or
 * it is shutting down. grpc-java's own client-side health checking
 * ({@code healthCheckConfig}) was no help: it watches a stream, which a silent node leaves as
 * quiet as a healthy one.
 *
 * <p>Verdicts: DEADLINE_EXCEEDED, UNAVAILABLE or NOT_SERVING is down. Anything else is an answer,
 * so up: SERVING, and also an error such as UNIMPLEMENTED or NOT_FOUND from a node without the
 * health service or this service name in it, which proves it alive.
 *
 * <p>A node has at most one probe out: a tick that finds the last one unanswered skips the node.
 * That costs no detection time, since the unanswered probe is the one that will fail. A probe
 * sent while the node's probe channel is not connected gets {@link Targets#CONNECT_TIMEOUT} more
 * time to connect in: that is the first probe of each node, when a node that is merely slow to
 * accept its first connection (or to load its health service) must not be marked down, and a
 * node already down or killed, which the main channel does not send to anyway. A node whose
 * connection is up, the silent case, gets {@link #TIMEOUT}.
 *
 * <p>Results arrive on gRPC's network thread and are handed to the client's scheduler, which also
 * sends the probes; state is guarded by the monitor and the listener called outside it. No thread
 * of its own: the probe channels share gRPC's event loop.
 */
final class NodeProber implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(NodeProber.class);

  static final Duration INTERVAL = Duration.ofSeconds(1);
  static final Duration TIMEOUT = Duration.ofSeconds(1);
  /**
   * The verdict on a node that answered NOT_SERVING: alive, its store away (or shutting down). It
   * gets no new calls while another node serves, but its calls in flight are left to it: it
   * answers them itself, with a grant once its store is back or UNAVAILABLE, so a waiter keeps
   * its place in line through a short store outage.
   */
  static final String NOT_SERVING = "did not pass its health probe (NOT_SERVING)";

  /** Whether grpc-services' health stubs can be loaded; {@link HealthProbe} is loaded only if so. */
  static final boolean HEALTH_STUBS = present("io.grpc.health.v1.HealthGrpc");

  /** Told when a node is marked down and up again. */
  interface Listener {
    /** @param why what the probe found, e.g. "did not answer a health probe within 1 s" */
    void down(HostPort node, String why);

    void up(HostPort node);
  }

  /** Checks one node once. */
  interface Probe extends AutoCloseable {
    /** Calls {@code done}, on any thread, with null when the node is up, else why it is down. */
    void check(HostPort node, Consumer<String> done);

    @Override
    void close();
  }

  private final ScheduledExecutorService scheduler;
  private final LongSupplier ticker;
  private final Probe probe;
  private final Listener listener;
  private final Map<HostPort, State> states = new LinkedHashMap<>();
  private ScheduledFuture<?> next;
  private boolean closed;

  NodeProber(List<HostPort> nodes, Probe probe, ScheduledExecutorService scheduler, LongSupplier ticker,
      Listener listener) {
    this.scheduler = scheduler;
    this.ticker = ticker;
    this.probe = probe;
    this.listener = listener;
    for (HostPort node : nodes) {
      states.put(node, new State());
    }
  }

  /**
   * The prober of a list target's nodes, or null when grpc-services (whose stubs the health check
   * uses) is not on the classpath: it is an optional dependency of the SDK. Without it a silent
   * node is found by keepalive only (about 11 s instead of 2 s); one INFO line says so.
   */
  static NodeProber forList(ListNodes nodes, ChannelCredentials credentials, ScheduledExecutorService scheduler,
      LongSupplier ticker) {
    if (!HEALTH_STUBS) {
      log.info("io.grpc:grpc-services is not on the classpath: the nodes of {} get no health probes, and a node"
          + " that goes silent is found by keepalive only (about 11 s); add grpc-services to find it within 2 s",
          nodes.nodes());
      return null;
    }
    return new NodeProber(nodes.nodes(), new HealthProbe(nodes.nodes(), credentials), scheduler, ticker, nodes);
  }

  static boolean present(String className) {
    try {
      Class.forName(className, false, NodeProber.class.getClassLoader());
      return true;
    } catch (ClassNotFoundException | LinkageError e) {
      return false;
    }
  }

  /** Sends the first probes now, then one per node every {@link #INTERVAL}. */
  void start() {
    schedule(0);
  }

  /** Whether {@code node} passed its last probe (every node is up until one fails). */
  synchronized boolean isUp(HostPort node) {
    return states.get(node).up;
  }

  /** Whether every node has passed a probe since the start; for tests. */
  synchronized boolean everyNodeAnswered() {
    return states.values().stream().allMatch(s -> s.answered);
  }

  private void tick() {
    List<HostPort> sends = new ArrayList<>();
    synchronized (this) {
      if (closed) {
        return;
      }
      schedule(INTERVAL.toNanos());
      states.forEach((node, state) -> {
        if (!state.probing) {
          state.probing = true;
          sends.add(node);
        }
      });
    }
    for (HostPort node : sends) {
      try {
        probe.check(node, why -> {
          try {
            scheduler.execute(() -> result(node, why));
          } catch (RejectedExecutionException e) {
            // The client is closing.
          }
        });
      } catch (RuntimeException e) {
        result(node, "could not be probed (" + e + ")");
      }
    }
  }

  private void result(HostPort node, String why) {
    long downFor;
    synchronized (this) {
      State state = states.get(node);
      state.probing = false;
      state.answered |= why == null;
      if (closed || (why == null) == state.up) {
        return;
      }
      state.up = why == null;
      long now = ticker.getAsLong();
      downFor = now - state.changedAt; // read when it comes up: how long it was down
      state.changedAt = now;
    }
    if (why != null) {
      log.warn("node {} {}: not sending to it until it does", node, why);
      listener.down(node, why);
    } else {
      log.info("node {} answers its health probe again, after {} ms: sending to it again", node,
          Duration.ofNanos(downFor).toMillis());
      listener.up(node);
    }
  }

  private void schedule(long delayNanos) {
    try {
      next = scheduler.schedule(this::tick, delayNanos, TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) {
      next = null; // the client is closing
    }
  }

  @Override
  public void close() {
    synchronized (this) {
      closed = true;
      if (next != null) {
        next.cancel(false);
      }
    }
    probe.close();
  }

  private static final class State {
    boolean up = true;
    boolean probing;
    boolean answered;
    long changedAt;
  }

  /**
   * The real probe: {@code Health/Check} for the Coordinator service over one channel per node
   * ({@link Targets#probeChannel}), with a {@link #TIMEOUT} deadline, plus
   * {@link Targets#CONNECT_TIMEOUT} when the channel is not connected. Wait-for-ready, and the
   * reconnect backoff cut short when the channel is in TRANSIENT_FAILURE, so a node that comes
   * back is found by the next probe rather than when a backoff that grows to minutes ends.
   */
  static final class HealthProbe implements Probe {
    private static final HealthCheckRequest REQUEST =
        HealthCheckRequest.newBuilder().setService(CoordinatorGrpc.SERVICE_NAME).build();

    private final Map<HostPort, ManagedChannel> channels = new LinkedHashMap<>();

    HealthProbe(List<HostPort> nodes, ChannelCredentials credentials) {
      for (HostPort node : nodes) {
        channels.put(node, Targets.probeChannel(node, credentials));
      }
    }

    @Override
    public void check(HostPort node, Consumer<String> done) {
      ManagedChannel channel = channels.get(node);
      ConnectivityState state = channel.getState(false);
      if (state == ConnectivityState.TRANSIENT_FAILURE) {
        channel.resetConnectBackoff();
      }
      Duration deadline = state == ConnectivityState.READY ? TIMEOUT : TIMEOUT.plus(Targets.CONNECT_TIMEOUT);
      HealthGrpc.newStub(channel)
          .withWaitForReady()
          .withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS)
          .check(REQUEST, new StreamObserver<>() {
            @Override
            public void onNext(HealthCheckResponse response) {
              done.accept(response.getStatus() == HealthCheckResponse.ServingStatus.NOT_SERVING
                  ? NOT_SERVING : null);
            }

            @Override
            public void onError(Throwable t) {
              done.accept(verdict(Status.fromThrowable(t), deadline));
            }

            @Override
            public void onCompleted() {}
          });
    }

    static String verdict(Status status, Duration deadline) {
      switch (status.getCode()) {
        case DEADLINE_EXCEEDED:
          return "did not answer a health probe within " + deadline.toSeconds() + " s";
        case UNAVAILABLE:
          return "did not pass its health probe (UNAVAILABLE"
              + (status.getDescription() == null ? "" : ": " + status.getDescription()) + ")";
        default:
          return null; // it answered, if only to refuse: alive
      }
    }

    @Override
    public void close() {
      channels.values().forEach(ManagedChannel::shutdownNow);
    }
  }
}
