package dev.sluice.server;

import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Ticket;
import io.grpc.Attributes;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerTransportFilter;
import java.net.SocketAddress;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A cap on the acquires parked at once per client connection, so one runaway client cannot fill
 * every waiting room and the server's memory by itself. Each call learns its connection (the
 * peer's address and port) through the {@link Context}; an acquire that has to wait counts
 * against it until it ends, however it ends.
 */
final class ConnectionWaiters extends ServerTransportFilter implements ServerInterceptor {

  private static final Context.Key<AtomicInteger> COUNT = Context.key("sluice-connection-waiters");

  private final int cap;
  private final ConcurrentHashMap<SocketAddress, AtomicInteger> perConnection = new ConcurrentHashMap<>();

  ConnectionWaiters(int cap) {
    this.cap = cap;
  }

  @Override
  public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(
      ServerCall<ReqT, RespT> call, Metadata headers, ServerCallHandler<ReqT, RespT> next) {
    SocketAddress peer = call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
    if (peer == null) {
      return next.startCall(call, headers);
    }
    AtomicInteger count = perConnection.computeIfAbsent(peer, p -> new AtomicInteger());
    return Contexts.interceptCall(Context.current().withValue(COUNT, count), call, headers, next);
  }

  /**
   * Counts {@code ticket} against the calling connection while it waits, or refuses it (and
   * cancels it) when the connection is at its cap. Tickets already done are not counted.
   */
  void track(Ticket ticket) {
    AtomicInteger count = COUNT.get();
    if (count == null || ticket.future().isDone()) {
      return;
    }
    if (count.incrementAndGet() > cap) {
      count.decrementAndGet();
      ticket.cancel();
      throw new EngineException(EngineException.Reason.WAITING_ROOM_FULL, "this connection already has " + cap
          + " acquires waiting, the most one connection may park (--max-waiting-per-connection): let some"
          + " finish, or spread the callers over more connections or processes", TimeUnit.SECONDS.toNanos(1));
    }
    ticket.future().whenComplete((g, e) -> count.decrementAndGet());
  }

  @Override
  public void transportTerminated(Attributes transportAttrs) {
    SocketAddress peer = transportAttrs.get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
    if (peer != null) {
      perConnection.remove(peer);
    }
  }

  /** Connections known; for tests. */
  int connections() {
    return perConnection.size();
  }
}
