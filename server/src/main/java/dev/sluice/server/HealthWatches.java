package dev.sluice.server;

import io.grpc.Attributes;
import io.grpc.ForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerTransportFilter;
import io.grpc.Status;
import io.grpc.health.v1.HealthGrpc;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Bounds the health service's {@code Watch} streams, which need no key (issue 26: 100 000 of them
 * held 153 MiB): {@link GrpcLimits#HEALTH_WATCHES_PER_CONNECTION} per connection and a total for
 * the port. Beyond either, a Watch fails at once with RESOURCE_EXHAUSTED. {@code Check}, what
 * load balancers, Kubernetes and the SDK call, is one short call and stays unlimited.
 */
final class HealthWatches extends ServerTransportFilter implements ServerInterceptor {

  private static final String WATCH = HealthGrpc.getWatchMethod().getFullMethodName();
  private static final Attributes.Key<AtomicInteger> WATCHING = Attributes.Key.create("sluice-health-watches");

  private final int total;
  private final AtomicInteger open = new AtomicInteger();
  private final Refusals refusals;

  HealthWatches(int total, Refusals refusals) {
    this.total = total;
    this.refusals = refusals;
  }

  @Override
  public Attributes transportReady(Attributes attrs) {
    return attrs.toBuilder().set(WATCHING, new AtomicInteger()).build();
  }

  @Override
  public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(
      ServerCall<ReqT, RespT> call, Metadata headers, ServerCallHandler<ReqT, RespT> next) {
    if (!WATCH.equals(call.getMethodDescriptor().getFullMethodName())) {
      return next.startCall(call, headers);
    }
    AtomicInteger here = call.getAttributes().get(WATCHING);
    if (here == null) {
      here = new AtomicInteger(); // in-process transports: only the total applies
    }
    boolean connectionFull = here.incrementAndGet() > GrpcLimits.HEALTH_WATCHES_PER_CONNECTION;
    boolean portFull = open.incrementAndGet() > total;
    if (connectionFull || portFull) {
      here.decrementAndGet();
      open.decrementAndGet();
      String why = connectionFull
          ? "this connection already watches health " + GrpcLimits.HEALTH_WATCHES_PER_CONNECTION + " times, the most"
              + " one connection may: reuse a Watch, or call Check"
          : total + " health Watch streams are open, the most this node allows (--max-health-watches): call"
              + " Check, or retry later";
      refusals.refuse("health_watch_cap", why);
      call.close(Status.RESOURCE_EXHAUSTED.withDescription(why), new Metadata());
      return new ServerCall.Listener<>() {};
    }
    AtomicInteger connection = here;
    AtomicBoolean ended = new AtomicBoolean();
    Runnable end = () -> {
      if (ended.compareAndSet(false, true)) {
        connection.decrementAndGet();
        open.decrementAndGet();
      }
    };
    return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(next.startCall(call, headers)) {
      @Override
      public void onCancel() {
        end.run();
        super.onCancel();
      }

      @Override
      public void onComplete() {
        end.run();
        super.onComplete();
      }
    };
  }
}
