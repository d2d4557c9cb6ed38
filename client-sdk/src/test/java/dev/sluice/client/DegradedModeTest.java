package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Retries, failover and degraded modes against an in-process coordinator that the test stops and
 * restarts. The client runs on a {@link ManualScheduler} and its fake clock.
 */
class DegradedModeTest {

  private final String name = InProcessServerBuilder.generateName();
  private final FakeCoordinator fake = new FakeCoordinator();
  private final ManualScheduler scheduler = new ManualScheduler();
  private final SimpleMeterRegistry meters = new SimpleMeterRegistry();
  private Server server;
  private ManagedChannel channel;
  private SluiceClient client;

  @AfterEach
  void tearDown() throws InterruptedException {
    if (client != null) {
      client.close();
    }
    channel.shutdownNow();
    if (server != null) {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private void startServer() throws IOException {
    server = InProcessServerBuilder.forName(name).addService(fake).directExecutor().build().start();
  }

  private void connect(FailureMode mode) throws IOException {
    startServer();
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    client = SluiceClient.builder().channel(channel).scheduler(scheduler).ticker(scheduler::nanoTime)
        .failureMode(mode).meterRegistry(meters).defaultTimeout(Duration.ofSeconds(3)).build();
  }

  /** Stops the coordinator and lets the client notice it for the degraded threshold. */
  private void allNodesDown() throws InterruptedException {
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    server = null;
    // A call finds the channel broken and puts it into TRANSIENT_FAILURE.
    CompletableFuture<Permit> probe = client.acquireAsync("openai", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ZERO).build());
    await().until(() -> channel.getState(false) == io.grpc.ConnectivityState.TRANSIENT_FAILURE);
    scheduler.advance(ClusterHealth.DEGRADE_AFTER); // the probe's one retry fails meanwhile
    assertThat(client.isDegraded()).isTrue();
    assertThat(probe).isCompletedExceptionally();
  }

  private double gauge() {
    return meters.get("sluice.client.degraded").gauge().value();
  }

  @Test
  void reportWhileDegradedFailsAtOnceAsUnavailable() throws Exception {
    connect(FailureMode.FAIL_CLOSED);
    allNodesDown();
    // One attempt with the full call deadline, no retry: the channel refuses it at once. (The
    // manual scheduler is never advanced here, so a scheduled retry would hang this test.)
    assertThatThrownBy(() -> client.reportHeaders("openai", java.util.Map.of()))
        .isInstanceOf(SluiceUnavailableException.class)
        .hasMessageStartingWith("report on resource 'openai'");
    assertThat(client.reportThrottledAsync("openai", Duration.ofSeconds(1), java.util.Map.of()))
        .failsWithin(Duration.ofSeconds(10))
        .withThrowableOfType(java.util.concurrent.ExecutionException.class)
        .withCauseInstanceOf(SluiceUnavailableException.class);
  }

  @Test
  void unavailableAcquireIsRetriedWithTheSameRequestId() throws Exception {
    connect(FailureMode.FAIL_CLOSED);
    AtomicInteger calls = new AtomicInteger();
    var grant = fake.onAcquire;
    fake.onAcquire = (request, response) -> {
      if (calls.getAndIncrement() < 2) {
        response.onError(Status.UNAVAILABLE.withDescription("node shutting down").asRuntimeException());
      } else {
        grant.accept(request, response);
      }
    };
    CompletableFuture<Permit> f = client.acquireAsync("openai", Load.requests(1), AcquireOptions.defaults());
    assertThat(fake.acquires).hasSize(1);
    scheduler.advance(Retrier.FIRST_BACKOFF);
    assertThat(fake.acquires).hasSize(2);
    scheduler.advance(Retrier.FIRST_BACKOFF.multipliedBy(2));

    assertThat(f).isCompleted();
    assertThat(fake.acquires).extracting(r -> r.getRequestId()).containsOnly(fake.acquires.get(0).getRequestId());
    assertThat(Protos.toJava(fake.acquires.get(2).getTimeout())).as("what is left of the 3 s timeout")
        .isEqualTo(Duration.ofMillis(2850));
  }

  @Test
  void unavailableReleaseIsRetriedAndUnknownOnRetryCountsAsDone() throws Exception {
    connect(FailureMode.FAIL_CLOSED);
    Permit p = client.acquire("openai");
    fake.releaseFailure = Status.UNAVAILABLE.withDescription("connection reset").asRuntimeException();
    p.close();
    assertThat(fake.releases).hasSize(1);
    fake.releaseFailure = null;
    scheduler.advance(Retrier.FIRST_BACKOFF);
    assertThat(fake.releases).hasSize(2);
    assertThat(fake.releases.get(1).getPermitId()).isEqualTo(p.id());
  }

  @Test
  void otherFailuresAreNotRetried() throws Exception {
    connect(FailureMode.FAIL_CLOSED);
    fake.onAcquire = (request, response) -> response.onError(Status.NOT_FOUND.asRuntimeException());
    assertThatThrownBy(() -> client.acquire("openai")).isInstanceOf(ResourceNotFoundException.class);
    scheduler.advance(Duration.ofSeconds(5));
    assertThat(fake.acquires).hasSize(1);
  }

  @Test
  void failClosedThrowsUnavailableAfterTheTimeout() throws Exception {
    connect(FailureMode.FAIL_CLOSED);
    assertThat(gauge()).isZero();
    allNodesDown();
    assertThat(gauge()).isOne();

    CompletableFuture<Permit> f = client.acquireAsync("openai", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ofSeconds(2)).build());
    scheduler.advance(Duration.ofMillis(1999));
    assertThat(f).as("still retrying").isNotDone();
    scheduler.advance(Duration.ofMillis(1));
    assertThat(f).isCompletedExceptionally();
    assertThatThrownBy(f::join).cause().isInstanceOf(SluiceUnavailableException.class)
        .hasMessageContaining("No node answered within the acquire's timeout of 2 s")
        .hasMessageContaining("FAIL_CLOSED");
  }

  @Test
  void failOpenGrantsAtOnceAndLeavesWhenTheNodeIsBack() throws Exception {
    connect(FailureMode.FAIL_OPEN);
    allNodesDown();

    CompletableFuture<Permit> f = client.acquireAsync("openai", Load.of("tokens", 100), AcquireOptions.defaults());
    assertThat(f).isCompleted();
    Permit p = f.join();
    assertThat(p.id()).startsWith("local-");
    assertThat(p.granted()).isEqualTo(Load.of("requests", 1, "tokens", 100));
    p.settle(Load.of("tokens", 5));
    p.close();
    assertThat(fake.releases).as("a local permit's release is a no-op").isEmpty();

    startServer();
    scheduler.advance(ClusterHealth.PROBE_INTERVAL); // the probe reconnects
    await().until(() -> !client.isDegraded());
    assertThat(gauge()).isZero();
    assertThat(client.acquire("openai").id()).startsWith("permit-");
  }

  @Test
  void localGrantsAtTheShareOfTheLastKnownLimit() throws Exception {
    connect(FailureMode.local(0.5));
    fake.onDescribe = resource -> Limit.newBuilder().setResource(resource)
        .addRates(RateDimension.newBuilder().setName("requests").setAmount(10)
            .setPeriod(Protos.toProto(Duration.ofSeconds(1))).setBurst(10))
        .build();
    client.acquire("openai").close();
    assertThat(fake.describes).as("learnt after the first grant").hasSize(1);
    client.acquire("openai").close();
    assertThat(fake.describes).as("once").hasSize(1);
    allNodesDown();

    scheduler.advance(Duration.ofSeconds(1));
    int granted = 0;
    while (client.tryAcquire("openai", Load.requests(1), Duration.ZERO).isPresent()) {
      granted++;
    }
    assertThat(granted).as("half of 10/s over one second").isEqualTo(5);
    CompletableFuture<Permit> other = client.acquireAsync("other", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ZERO).build());
    scheduler.advance(Retrier.FIRST_BACKOFF);
    assertThatThrownBy(other::join).as("no known limit: fails closed")
        .cause().isInstanceOf(SluiceUnavailableException.class);
  }

  @Test
  void localWaitsForItsTurnWithinTheTimeout() throws Exception {
    connect(FailureMode.local(0.5));
    fake.onDescribe = resource -> Limit.newBuilder().setResource(resource)
        .addRates(RateDimension.newBuilder().setName("requests").setAmount(10)
            .setPeriod(Protos.toProto(Duration.ofSeconds(1))).setBurst(10))
        .build();
    client.acquire("openai").close();
    allNodesDown();

    CompletableFuture<Permit> f = client.acquireAsync("openai", Load.requests(1), AcquireOptions.defaults());
    scheduler.advance(Duration.ofMillis(199));
    assertThat(f).isNotDone();
    scheduler.advance(Duration.ofMillis(1));
    assertThat(f).isCompleted();
    assertThat(f.join().waited()).isEqualTo(Duration.ofMillis(200));
  }

  @Test
  void localWithoutDescribeOnTheCoordinatorFailsClosed() throws Exception {
    connect(FailureMode.local(1));
    client.acquire("openai").close();
    assertThat(fake.describes).hasSize(1); // answered UNIMPLEMENTED
    allNodesDown();

    CompletableFuture<Permit> f = client.acquireAsync("openai", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ofSeconds(1)).build());
    scheduler.advance(Duration.ofSeconds(2));
    assertThatThrownBy(f::join).cause().isInstanceOf(SluiceUnavailableException.class);
  }
}
