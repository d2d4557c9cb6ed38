package dev.sluice.server;

import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Ticket;
import io.grpc.Attributes;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerTransportFilter;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A cap on the acquires parked at once per client connection, so one runaway client cannot fill
 * every waiting room and the server's memory by itself. The count lives in the transport's own
 * attributes (set when the transport is ready), so it goes away with the transport: nothing to
 * remove when it ends. Each call learns it through the {@link Context}; an acquire that has to
 * wait counts against it until it ends, however it ends.
 *
 * <p>A transport that closes before HTTP/2 is set up (a port scan, an HTTP/1 request, a failed
 * TLS handshake) never was ready: grpc-java then calls {@link #transportTerminated} with null
 * attributes, and a filter that throws there stops grpc-java from ever finishing that
 * transport's close (issue 26: a leak per connection, and a stop that waits out its grace).
 */
final class ConnectionWaiters extends ServerTransportFilter implements ServerInterceptor {

  private static final Context.Key<AtomicInteger> COUNT = Context.key("sluice-connection-waiters");
  private static final Attributes.Key<AtomicInteger> PARKED = Attributes.Key.create("sluice-connection-waiters");

  private final int cap;

  ConnectionWaiters(int cap) {
    this.cap = cap;
  }

  @Override
  public Attributes transportReady(Attributes transportAttrs) {
    return transportAttrs.toBuilder().set(PARKED, new AtomicInteger()).build();
  }

  @Override
  public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(
      ServerCall<ReqT, RespT> call, Metadata headers, ServerCallHandler<ReqT, RespT> next) {
    AtomicInteger count = call.getAttributes().get(PARKED);
    if (count == null) {
      return next.startCall(call, headers);
    }
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
}
