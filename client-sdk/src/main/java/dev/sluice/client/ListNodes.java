package dev.sluice.client;

import dev.sluice.client.Targets.HostPort;
import io.grpc.Attributes;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientStreamTracer;
import io.grpc.EquivalentAddressGroup;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.net.SocketAddress;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The nodes of one comma-list target and which of them are down (failed their last health
 * probe, see {@link NodeProber}); shared by the target's {@link Targets.ListResolver}, its
 * prober and the calls on its channel.
 *
 * <p>A node marked down
 *
 * <ul>
 *   <li>is left out of the addresses the resolver publishes, so round_robin stops picking it at
 *       once; when every node is down all of them are published, so gRPC keeps trying them;
 *   <li>loses every call in flight on it: each is cancelled, and ends with UNAVAILABLE naming the
 *       node instead of CANCELLED, so the SDK's retries ({@link AcquireCall}, {@link Retrier})
 *       send it again, to another node (an acquire with the same request id). A cancel that the
 *       caller asked for is left alone: it still ends with CANCELLED. Not so for a node that
 *       answered NOT_SERVING ({@link NodeProber#NOT_SERVING}): it is alive and answers its calls
 *       itself, so a waiter parked there keeps its place through a short store outage.
 * </ul>
 *
 * <p>Which node a call is on. {@code ClientCall.getAttributes()} cannot tell in time: with
 * gRPC's transparent retry (on by default) a call's stream is a {@code RetriableStream}, whose
 * attributes stay empty until the response headers arrive, and a parked acquire gets none until it
 * is answered. So every call carries a {@link ClientStreamTracer}: gRPC calls its
 * {@code streamCreated} with the attributes of the transport the stream was put on, including
 * {@link Grpc#TRANSPORT_ATTR_REMOTE_ADDR}, which is matched against the addresses the resolver
 * found for each node. A transparent retry creates a new stream, and so updates the address.
 *
 * <p>A stream created on a node just as it is marked down: the stream writes its address, then
 * reads the down set; marking down writes the down set, then reads every call's address. All four
 * are volatile accesses, so at least one side sees the other and the call is cancelled (at most
 * twice, harmlessly).
 */
final class ListNodes implements NodeProber.Listener {

  /** Marks a call the caller cancelled itself: never rewritten. */
  private static final Status BY_CALLER = Status.CANCELLED.withDescription("cancelled by the caller");

  private final List<HostPort> nodes;
  private final Executor executor;
  private final Map<HostPort, List<SocketAddress>> addresses = new ConcurrentHashMap<>();
  private final Set<Tracked<?, ?>> calls = ConcurrentHashMap.newKeySet();
  private final List<Runnable> watchers = new CopyOnWriteArrayList<>();
  private final ClientInterceptor interceptor = new Tracker();
  // Copy on write, under the monitor; the status is what cancelled calls end with.
  private volatile Map<HostPort, Status> down = Map.of();
  /** The down nodes that answered NOT_SERVING: left out of publishing, their calls not cut. */
  private volatile Set<HostPort> alive = Set.of();

  /** @param executor where calls found on a down node while being created are cancelled */
  ListNodes(List<HostPort> nodes, Executor executor) {
    this.nodes = List.copyOf(nodes);
    this.executor = executor;
  }

  List<HostPort> nodes() {
    return nodes;
  }

  boolean isDown(HostPort node) {
    return down.containsKey(node);
  }

  /** Watches every call of the channel, to know its node; install it on the target's channel. */
  ClientInterceptor interceptor() {
    return interceptor;
  }

  /** Calls in flight; for tests. */
  int callsInFlight() {
    return calls.size();
  }

  // ---- the resolver's side

  /** What {@code node} resolved to last. */
  void resolved(HostPort node, List<SocketAddress> found) {
    addresses.put(node, List.copyOf(found));
  }

  /**
   * The address groups to publish, in list order: those of nodes not down, or all of them when
   * every node is down (then gRPC keeps connecting to them, and nothing is lost by trying).
   */
  List<EquivalentAddressGroup> usable(Map<HostPort, EquivalentAddressGroup> resolved) {
    Map<HostPort, Status> d = down;
    List<EquivalentAddressGroup> up = new ArrayList<>();
    for (Map.Entry<HostPort, EquivalentAddressGroup> e : resolved.entrySet()) {
      if (!d.containsKey(e.getKey())) {
        up.add(e.getValue());
      }
    }
    return up.isEmpty() ? List.copyOf(resolved.values()) : up;
  }

  /**
   * Runs {@code onChange} whenever a node is marked down or up, on the prober's thread.
   *
   * @return cancels the watch
   */
  Runnable watch(Runnable onChange) {
    watchers.add(onChange);
    return () -> watchers.remove(onChange);
  }

  // ---- the prober's side

  @Override
  public void down(HostPort node, String why) {
    Status reason = Status.UNAVAILABLE.withDescription("coordinator node " + node + " " + why
        + "; the SDK cut this call off to send it to another node");
    boolean answers = NodeProber.NOT_SERVING.equals(why);
    synchronized (this) {
      Map<HostPort, Status> d = new HashMap<>(down);
      d.put(node, reason);
      down = Map.copyOf(d);
      Set<HostPort> a = new HashSet<>(alive);
      if (answers) {
        a.add(node);
      } else {
        a.remove(node);
      }
      alive = Set.copyOf(a);
    }
    watchers.forEach(Runnable::run); // republish first: the retries must not pick the node again
    if (answers) {
      return; // alive, its store away: it answers its calls itself (see NodeProber.NOT_SERVING)
    }
    List<SocketAddress> at = addresses.getOrDefault(node, List.of());
    for (Tracked<?, ?> call : calls) {
      SocketAddress remote = call.remote;
      if (remote != null && at.contains(remote)) {
        call.cancelFor(reason);
      }
    }
  }

  @Override
  public void up(HostPort node) {
    synchronized (this) {
      Map<HostPort, Status> d = new HashMap<>(down);
      d.remove(node);
      down = Map.copyOf(d);
      Set<HostPort> a = new HashSet<>(alive);
      a.remove(node);
      alive = Set.copyOf(a);
    }
    watchers.forEach(Runnable::run);
  }

  /** Why calls on {@code remote} are cut off, or null when it is not a down node's address. */
  private Status downReason(SocketAddress remote) {
    Set<HostPort> answering = alive;
    for (Map.Entry<HostPort, Status> e : down.entrySet()) {
      if (!answering.contains(e.getKey()) && addresses.getOrDefault(e.getKey(), List.of()).contains(remote)) {
        return e.getValue();
      }
    }
    return null;
  }

  private final class Tracker implements ClientInterceptor {
    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      Tracked<Q, R> call = new Tracked<>(!method.getType().clientSendsOneMessage());
      call.delegate = next.newCall(method, options.withStreamTracerFactory(new ClientStreamTracer.Factory() {
        @Override
        public ClientStreamTracer newClientStreamTracer(ClientStreamTracer.StreamInfo info, Metadata headers) {
          return new ClientStreamTracer() {
            @Override
            public void streamCreated(Attributes transportAttrs, Metadata headers) {
              call.streamCreated(transportAttrs.get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR));
            }
          };
        }
      }));
      return call;
    }
  }

  /**
   * A call that knows the address of its current stream and can be cut off for its node.
   *
   * <p>When. gRPC refuses {@code sendMessage} and {@code halfClose} on a cancelled call (it throws
   * IllegalStateException), and a stub sends its request right after {@code start}, on the
   * caller's thread. So a unary call is cut off only once it is half-closed: a cut requested
   * before that is done by {@code halfClose} itself. The flag and the reason are volatile and each
   * side writes its own before reading the other's, so the cut is made at least once (a second
   * cancel is a no-op).
   */
  private final class Tracked<Q, R> extends ForwardingClientCall<Q, R> {
    private ClientCall<Q, R> delegate; // set before the call is handed out
    private volatile SocketAddress remote;
    private volatile boolean sent;
    // null; BY_CALLER; or the UNAVAILABLE the SDK cut it off with. The caller's cancel wins.
    private final AtomicReference<Status> cancelled = new AtomicReference<>();

    /** @param sent true for calls that stream requests: those are cut off at any time */
    Tracked(boolean sent) {
      this.sent = sent;
    }

    @Override
    protected ClientCall<Q, R> delegate() {
      return delegate;
    }

    @Override
    public void start(Listener<R> listener, Metadata headers) {
      calls.add(this);
      try {
        super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
          @Override
          public void onClose(Status status, Metadata trailers) {
            calls.remove(Tracked.this);
            Status reason = cancelled.get();
            boolean ours = reason != null && reason != BY_CALLER && status.getCode() == Status.Code.CANCELLED;
            super.onClose(ours ? reason : status, trailers);
          }
        }, headers);
      } catch (RuntimeException | Error e) {
        calls.remove(this);
        throw e;
      }
    }

    @Override
    public void halfClose() {
      super.halfClose();
      sent = true;
      Status reason = cancelled.get();
      if (reason != null && reason != BY_CALLER) {
        delegate.cancel(reason.getDescription(), null);
      }
    }

    @Override
    public void cancel(String message, Throwable cause) {
      cancelled.set(BY_CALLER);
      super.cancel(message, cause);
    }

    void cancelFor(Status reason) {
      if (cancelled.compareAndSet(null, reason) && sent) {
        delegate.cancel(reason.getDescription(), null);
      }
    }

    // On whatever thread gRPC creates the stream, possibly deep inside the channel: cut off
    // from elsewhere.
    void streamCreated(SocketAddress at) {
      remote = at;
      Status reason = at == null ? null : downReason(at);
      if (reason != null) {
        try {
          executor.execute(() -> cancelFor(reason));
        } catch (RejectedExecutionException e) {
          // The client is closing.
        }
      }
    }
  }
}
