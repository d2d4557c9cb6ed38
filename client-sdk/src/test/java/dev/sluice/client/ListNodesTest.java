package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.Targets.HostPort;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.CoordinatorGrpc;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.EquivalentAddressGroup;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.NameResolver;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.SynchronizationContext;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.inprocess.InProcessSocketAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * What marking a node down does: the resolver leaves it out, and the calls in flight on it end
 * with UNAVAILABLE (retryable) unless the caller cancelled them. Two in-process nodes whose
 * acquires never answer, each reached through a channel carrying the tracking interceptor.
 */
class ListNodesTest {

  private static final HostPort A = new HostPort("a", 1);
  private static final HostPort B = new HostPort("b", 2);
  private static final String WHY = "did not answer a health probe within 1 s";

  private final ExecutorService executor = Executors.newSingleThreadExecutor();
  private final ListNodes nodes = new ListNodes(List.of(A, B), executor);
  private final List<AutoCloseable> closeables = new ArrayList<>();
  private final FakeCoordinator fakeA = parking(new FakeCoordinator());
  private final FakeCoordinator fakeB = parking(new FakeCoordinator());
  private final ManagedChannel toA = node(A, fakeA);
  private final ManagedChannel toB = node(B, fakeB);

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
    executor.shutdownNow();
  }

  private static FakeCoordinator parking(FakeCoordinator fake) {
    fake.onAcquire = (request, response) -> {}; // parked until the call ends
    return fake;
  }

  private ManagedChannel node(HostPort node, FakeCoordinator fake) {
    String name = InProcessServerBuilder.generateName();
    try {
      Server server = InProcessServerBuilder.forName(name).addService(fake).build().start();
      closeables.add(server::shutdownNow);
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
    nodes.resolved(node, List.of(new InProcessSocketAddress(name)));
    ManagedChannel channel = InProcessChannelBuilder.forName(name).intercept(nodes.interceptor()).build();
    closeables.add(channel::shutdownNow);
    return channel;
  }

  /** Starts an Acquire; the future completes with the status it ends with. */
  private static CompletableFuture<Status> acquire(ManagedChannel channel, String requestId,
      ClientCall<AcquireRequest, AcquireResponse>[] handle) {
    CompletableFuture<Status> closed = new CompletableFuture<>();
    ClientCall<AcquireRequest, AcquireResponse> call =
        channel.newCall(CoordinatorGrpc.getAcquireMethod(), CallOptions.DEFAULT);
    if (handle != null) {
      handle[0] = call;
    }
    call.start(new ClientCall.Listener<>() {
      @Override
      public void onClose(Status status, Metadata trailers) {
        closed.complete(status);
      }
    }, new Metadata());
    call.sendMessage(AcquireRequest.newBuilder().setResource("r").setRequestId(requestId).build());
    call.halfClose();
    call.request(1);
    return closed;
  }

  @Test
  void callsOnANodeMarkedDownEndRetryablyAndNamingTheNodeOthersGoOn() throws Exception {
    CompletableFuture<Status> onA = acquire(toA, "on-a", null);
    CompletableFuture<Status> onB = acquire(toB, "on-b", null);
    await().until(() -> fakeA.acquires.size() == 1 && fakeB.acquires.size() == 1);

    nodes.down(A, WHY);

    Status status = onA.get(5, TimeUnit.SECONDS);
    assertThat(status.getCode()).isEqualTo(Status.Code.UNAVAILABLE);
    assertThat(Retrier.isRetryable(status.asRuntimeException())).isTrue();
    assertThat(status.getDescription()).isEqualTo("coordinator node a:1 did not answer a health probe within 1 s;"
        + " the SDK cut this call off to send it to another node");
    assertThat(onB).isNotDone();
    assertThat(nodes.callsInFlight()).isEqualTo(1);
  }

  /**
   * A node that answers NOT_SERVING is alive, its store away: it gets no new calls while another
   * node serves, but a waiter parked on it keeps its place (issue 24: cutting them off lost every
   * waiter of a short store outage). The node answers it itself when its store is back.
   */
  @Test
  void callsOnANodeNotServingAreLeftToItAndNewOnesGoElsewhere() throws Exception {
    CompletableFuture<Status> onA = acquire(toA, "parked-on-a", null);
    await().until(() -> fakeA.acquires.size() == 1);

    nodes.down(A, NodeProber.NOT_SERVING);

    assertThat(nodes.isDown(A)).as("no new calls to it while B serves").isTrue();
    CompletableFuture<Status> alsoOnA = acquire(toA, "sent-there-anyway", null);
    await().until(() -> fakeA.acquires.size() == 2);
    assertThat(onA).as("not cut off").isNotDone();
    assertThat(alsoOnA).as("not cut off on creation either").isNotDone();

    nodes.down(A, WHY); // then silent: now its calls are cut
    // Cut for the silence, not for NOT_SERVING: a cut that the first verdict started and that
    // completed late would carry its reason (no sleep needed to give it the chance).
    for (CompletableFuture<Status> call : List.of(onA, alsoOnA)) {
      Status cut = call.get(5, TimeUnit.SECONDS);
      assertThat(cut.getCode()).isEqualTo(Status.Code.UNAVAILABLE);
      assertThat(cut.getDescription()).contains(WHY).doesNotContain(NodeProber.NOT_SERVING);
    }
  }

  @Test
  void aCallPutOnANodeAlreadyDownIsCutOffAtOnceAndOneBackUpIsLeftAlone() throws Exception {
    nodes.down(A, WHY);
    assertThat(acquire(toA, "first", null).get(5, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.UNAVAILABLE);

    nodes.up(A);
    CompletableFuture<Status> again = acquire(toA, "again", null);
    await().until(() -> fakeA.acquires.stream().anyMatch(r -> r.getRequestId().equals("again")));
    assertThat(again).isNotDone();
  }

  @Test
  void theCallersOwnCancelStaysACancel() throws Exception {
    @SuppressWarnings("unchecked")
    ClientCall<AcquireRequest, AcquireResponse>[] call = new ClientCall[1];
    CompletableFuture<Status> onA = acquire(toA, "mine", call);
    await().until(() -> fakeA.acquires.size() == 1);

    call[0].cancel("the caller gave up", null);
    nodes.down(A, WHY);

    Status status = onA.get(5, TimeUnit.SECONDS);
    assertThat(status.getCode()).isEqualTo(Status.Code.CANCELLED);
    assertThat(status.getDescription()).isEqualTo("the caller gave up");
  }

  @Test
  void theResolverLeavesOutTheNodesDownOrPublishesAllWhenAllAre() {
    List<List<SocketAddress>> published = new CopyOnWriteArrayList<>();
    SynchronizationContext sync = new SynchronizationContext((t, e) -> {
      throw new AssertionError(e);
    });
    NameResolver.Args args = NameResolver.Args.newBuilder()
        .setDefaultPort(7420)
        .setProxyDetector(target -> null)
        .setSynchronizationContext(sync)
        .setServiceConfigParser(new NameResolver.ServiceConfigParser() {
          @Override
          public NameResolver.ConfigOrError parseServiceConfig(Map<String, ?> rawServiceConfig) {
            return NameResolver.ConfigOrError.fromConfig(rawServiceConfig);
          }
        })
        .build();
    HostPort x = new HostPort("127.0.0.1", 7001);
    HostPort y = new HostPort("127.0.0.1", 7002);
    ListNodes list = new ListNodes(List.of(x, y), Runnable::run);
    Targets.ListResolver resolver = new Targets.ListResolver(list, args);
    resolver.start(new NameResolver.Listener2() {
      @Override
      public void onResult(NameResolver.ResolutionResult result) {
        published.add(result.getAddressesOrError().getValue().stream()
            .map(g -> g.getAddresses().get(0)).toList());
      }

      @Override
      public void onError(Status error) {
        throw new AssertionError(error);
      }
    });
    SocketAddress ax = new InetSocketAddress("127.0.0.1", 7001);
    SocketAddress ay = new InetSocketAddress("127.0.0.1", 7002);

    list.down(x, WHY);
    list.down(y, WHY);
    list.up(x);
    resolver.shutdown();
    list.up(y); // no longer watched

    assertThat(published).containsExactly(List.of(ax, ay), List.of(ay), List.of(ax, ay), List.of(ax));
  }

  @Test
  void usableKeepsListOrder() {
    Map<HostPort, EquivalentAddressGroup> resolved = new LinkedHashMap<>();
    resolved.put(A, new EquivalentAddressGroup(new InetSocketAddress("127.0.0.1", 1)));
    resolved.put(B, new EquivalentAddressGroup(new InetSocketAddress("127.0.0.1", 2)));
    assertThat(nodes.usable(resolved)).containsExactly(resolved.get(A), resolved.get(B));
    nodes.down(B, WHY);
    assertThat(nodes.usable(resolved)).containsExactly(resolved.get(A));
  }
}
