package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** Which thread a call runs on behind the interceptor, in-process on a direct executor. */
class OffloadInterceptorTest {

  private final ExecutorService pool =
      Executors.newFixedThreadPool(2, r -> new Thread(r, "offload-pool"));
  private Server server;
  private ManagedChannel channel;

  @AfterEach
  void tearDown() throws Exception {
    channel.shutdownNow();
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    pool.shutdownNow();
  }

  /** Runs one health check and returns the name of the thread its handler started on. */
  private String handlerThread(Set<String> direct) throws Exception {
    AtomicReference<String> seen = new AtomicReference<>();
    ServerInterceptor recorder =
        new ServerInterceptor() {
          @Override
          public <Q, R> ServerCall.Listener<Q> interceptCall(
              ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
            seen.set(Thread.currentThread().getName());
            return next.startCall(call, headers);
          }
        };
    String name = InProcessServerBuilder.generateName();
    server =
        InProcessServerBuilder.forName(name)
            .directExecutor()
            .addService(
                ServerInterceptors.intercept(
                    new HealthStatusManager().getHealthService(),
                    recorder,
                    new OffloadInterceptor(pool, direct)))
            .build()
            .start();
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    var reply = HealthGrpc.newBlockingStub(channel).check(HealthCheckRequest.getDefaultInstance());
    assertThat(reply.getStatus()).isNotNull();
    return seen.get();
  }

  @Test
  void callsThatMayBlockRunOnThePool() throws Exception {
    assertThat(handlerThread(Set.of())).isEqualTo("offload-pool");
  }

  @Test
  void namedMethodsStayOnTheTransportThread() throws Exception {
    assertThat(handlerThread(Set.of(HealthGrpc.getCheckMethod().getFullMethodName())))
        .isNotEqualTo("offload-pool");
  }
}
