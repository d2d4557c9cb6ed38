package dev.sluice.server;

import io.grpc.Context;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * For a server on {@code directExecutor()} whose engine blocks on some calls: runs every call
 * except the named methods on a pool, each call's callbacks one after another, so no transport
 * thread waits for the store. The named methods never block and stay on the transport thread:
 * a hop to a pool costs more than their work (see STYLE.md, "thread hand-off").
 *
 * <p>grpc-java's per-method {@code ServerCallExecutorSupplier} is no substitute: it still looks
 * the method up on the default executor, one hop per call even for the direct ones.
 */
final class OffloadInterceptor implements ServerInterceptor {

  private static final Logger log = LoggerFactory.getLogger(OffloadInterceptor.class);

  private final Executor pool;
  private final Set<String> direct;

  /** {@code direct}: full method names that run on the transport thread. */
  OffloadInterceptor(Executor pool, Set<String> direct) {
    this.pool = pool;
    this.direct = Set.copyOf(direct);
  }

  @Override
  public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(
      ServerCall<ReqT, RespT> call, Metadata headers, ServerCallHandler<ReqT, RespT> next) {
    if (direct.contains(call.getMethodDescriptor().getFullMethodName())) {
      return next.startCall(call, headers);
    }
    Offloaded<ReqT, RespT> listener =
        new Offloaded<>(call, new Serial(pool), Context.current());
    listener.start(next, headers);
    return listener;
  }

  /** Runs tasks on the pool one at a time, in the order given. */
  private static final class Serial implements Executor {
    private final Executor pool;
    private final ConcurrentLinkedQueue<Runnable> tasks = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean scheduled = new AtomicBoolean();

    Serial(Executor pool) {
      this.pool = pool;
    }

    @Override
    public void execute(Runnable task) {
      tasks.add(task);
      schedule();
    }

    private void schedule() {
      if (!tasks.isEmpty() && scheduled.compareAndSet(false, true)) {
        try {
          pool.execute(this::drain);
        } catch (RuntimeException e) { // pool shut down: the server is stopping
          scheduled.set(false);
          tasks.clear();
        }
      }
    }

    private void drain() {
      try {
        Runnable task;
        while ((task = tasks.poll()) != null) {
          task.run();
        }
      } finally {
        scheduled.set(false);
        schedule(); // a task added after the last poll
      }
    }
  }

  /** Hands each callback to the call's sequential executor, in the order they came. */
  private static final class Offloaded<ReqT, RespT> extends ServerCall.Listener<ReqT> {
    private final ServerCall<ReqT, RespT> call;
    private final Executor serial;
    private final Context context;
    private ServerCall.Listener<ReqT> delegate; // only used on serial

    Offloaded(ServerCall<ReqT, RespT> call, Executor serial, Context context) {
      this.call = call;
      this.serial = serial;
      this.context = context;
    }

    void start(ServerCallHandler<ReqT, RespT> next, Metadata headers) {
      serial.execute(
          () ->
              context.run(
                  () -> {
                    try {
                      delegate = next.startCall(call, headers);
                    } catch (RuntimeException e) {
                      delegate = new ServerCall.Listener<>() {};
                      fail(e);
                    }
                  }));
    }

    private void run(Consumer<ServerCall.Listener<ReqT>> callback) {
      serial.execute(
          () ->
              context.run(
                  () -> {
                    try {
                      callback.accept(delegate);
                    } catch (RuntimeException e) {
                      fail(e);
                    }
                  }));
    }

    private void fail(RuntimeException e) {
      log.error("call {} failed", call.getMethodDescriptor().getFullMethodName(), e);
      try {
        call.close(
            Status.UNKNOWN.withDescription("Application error processing RPC").withCause(e),
            new Metadata());
      } catch (RuntimeException alreadyClosed) {
        // The call ended meanwhile.
      }
    }

    @Override
    public void onMessage(ReqT message) {
      run(l -> l.onMessage(message));
    }

    @Override
    public void onHalfClose() {
      run(ServerCall.Listener::onHalfClose);
    }

    @Override
    public void onCancel() {
      run(ServerCall.Listener::onCancel);
    }

    @Override
    public void onComplete() {
      run(ServerCall.Listener::onComplete);
    }

    @Override
    public void onReady() {
      run(ServerCall.Listener::onReady);
    }
  }
}
