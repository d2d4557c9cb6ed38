package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.ClientTestHooks;
import dev.sluice.client.FailureMode;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.client.SluiceUnavailableException;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.DescribeRequest;
import dev.sluice.proto.v1.RenewRequest;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The SDK across several coordinator nodes, over Netty on loopback: calls spread over the nodes,
 * a node killed under load loses no acquire, an acquire in flight on it is retried elsewhere with
 * the same request id, leases are re-renewed at once, and the three degraded modes when no node
 * answers. Each node runs the memory store with the same limits set on each.
 */
class FailoverTest {

  @TempDir Path dataDir;

  private final List<AutoCloseable> closeables = new ArrayList<>();
  private final Recorder recorder = new Recorder();
  private int nodes;

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private SluiceServer node(FakeClock clock, int port) throws Exception {
    SluiceServer.Builder b = SluiceServer.builder().host("127.0.0.1").port(port)
        .dataDir(dataDir.resolve("node-" + nodes++))
        .shutdownGrace(Duration.ZERO); // close() is a kill: calls in flight are cut
    if (clock != null) {
      b.clock(clock, clock);
    }
    SluiceServer s = b.build().start();
    closeables.add(s);
    return s;
  }

  private SluiceServer node() throws Exception {
    return node(null, 0);
  }

  private static String targets(SluiceServer... servers) {
    return java.util.Arrays.stream(servers).map(s -> "127.0.0.1:" + s.port()).collect(Collectors.joining(","));
  }

  private SluiceClient client(SluiceClient.Builder b) {
    SluiceClient c = ClientTestHooks.intercept(b, recorder).build();
    closeables.add(c);
    return c;
  }

  private static void limit(LimitSpec spec, SluiceServer... servers) {
    for (SluiceServer s : servers) {
      sync(s.engine()).setLimit(spec);
    }
  }

  private static LimitSpec rate(String name, long perSecond, long burst) {
    return new LimitSpec(name, List.of(new RateSpec("requests", perSecond, Duration.ofSeconds(1), burst)), 0, 0, null);
  }

  /** One request per 10 s: an acquire parks until the node's fake clock moves. */
  private static LimitSpec parking(String name) {
    return new LimitSpec(name, List.of(new RateSpec("requests", 1, Duration.ofSeconds(10), 1)), 0, 0, null);
  }

  private static int waiting(SluiceServer s, String name) {
    return sync(s.engine()).stats(name).waiting().values().stream().mapToInt(Integer::intValue).sum();
  }

  // ------------------------------------------------------------------ spreading and failover

  @Test
  void callsAreSpreadOverEveryNode() throws Exception {
    SluiceServer a = node();
    SluiceServer b = node();
    SluiceServer c = node();
    limit(new LimitSpec("api", List.of(), 1000, 0, null), a, b, c);
    limit(new LimitSpec("warm", List.of(), 1000, 0, null), a, b, c);
    SluiceClient client = client(SluiceClient.builder().target(targets(a, b, c)));
    List<Permit> held = new ArrayList<>();
    closeables.add(() -> held.forEach(Permit::close));
    // round_robin picks among the nodes whose connection is READY, and a connection gets there
    // when it gets there: wait for that state, seen as a call answered by each node.
    await().until(() -> ClientTestHooks.everyNodeAnswered(client));
    await().until(() -> {
      held.add(client.acquire("warm"));
      return recorder.calls("Acquire").stream().filter(call -> call.code() == Status.Code.OK)
          .map(Recorder.Call::port).distinct().count() == 3;
    });

    // Every pick now cycles over the three. The permits are held, so no release takes a turn.
    for (int i = 0; i < 60; i++) {
      held.add(client.acquire("api"));
    }

    assertThat(List.of(a, b, c)).allSatisfy(s ->
        assertThat(sync(s.engine()).stats("api").granted()).as("node %d's share", s.port()).isEqualTo(20));
  }

  @Test
  void killingANodeUnderLoadLosesNoAcquire() throws Exception {
    SluiceServer a = node();
    SluiceServer b = node();
    SluiceServer c = node();
    limit(rate("api", 5000, 200), a, b, c);
    SluiceClient client = client(SluiceClient.builder().target(targets(a, b, c)));
    int threads = 4;
    int perThread = 150;
    CountDownLatch start = new CountDownLatch(1);
    CountDownLatch aThird = new CountDownLatch(threads * perThread / 3);
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    List<Future<?>> workers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      workers.add(pool.submit(() -> {
        start.await();
        for (int i = 0; i < perThread; i++) {
          // A timeout far beyond the test's: a failover that waited for it would fail the test.
          try (Permit p = client.acquire("api", Load.requests(1),
              AcquireOptions.builder().timeout(Duration.ofMinutes(5)).build())) {
            aThird.countDown();
          }
        }
        return null;
      }));
    }
    start.countDown();
    assertThat(aThird.await(30, TimeUnit.SECONDS)).as("a third of the acquires granted").isTrue();
    // The survivors' counts as the kill begins: a close drains what a holds, and the workers
    // can finish the rest meanwhile, so counts read after it may already be final.
    long bAtKill = sync(b.engine()).stats("api").granted();
    long cAtKill = sync(c.engine()).stats("api").granted();
    a.close();
    long aGranted = sync(a.engine()).stats("api").granted();
    for (Future<?> w : workers) {
      w.get(60, TimeUnit.SECONDS); // an acquire that failed would throw here
    }
    pool.shutdown();

    // Counted by the coordinators: every acquire was granted by one of them (the killed node
    // may also have granted some it could not deliver), and both survivors carried on.
    long bGranted = sync(b.engine()).stats("api").granted();
    long cGranted = sync(c.engine()).stats("api").granted();
    assertThat(aGranted).as("the kill came mid-run").isLessThan(threads * perThread);
    assertThat(aGranted + bGranted + cGranted).isGreaterThanOrEqualTo(threads * perThread);
    assertThat(bGranted).as("b granted after the kill").isGreaterThan(bAtKill);
    assertThat(cGranted).as("c granted after the kill").isGreaterThan(cAtKill);
  }

  @Test
  void anAcquireParkedOnTheKilledNodeIsRetriedElsewhereWithTheSameRequestId() throws Exception {
    FakeClock clockA = new FakeClock();
    FakeClock clockB = new FakeClock();
    SluiceServer a = node(clockA, 0);
    SluiceServer b = node(clockB, 0);
    limit(parking("slow"), a, b);
    SluiceClient client = client(SluiceClient.builder().target(targets(a, b)));

    CompletableFuture<Permit> parked = client.acquireAsync("slow", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ofSeconds(30)).requestId("parked-1").build());
    await().until(() -> waiting(a, "slow") + waiting(b, "slow") == 1);
    SluiceServer holder = waiting(a, "slow") == 1 ? a : b;
    SluiceServer other = holder == a ? b : a;
    FakeClock otherClock = other == a ? clockA : clockB;
    int holderPort = holder.port();
    int otherPort = other.port();

    holder.close();
    await().until(() -> waiting(other, "slow") == 1);
    assertThat(parked).as("no acquire fails").isNotDone();
    otherClock.advance(Duration.ofSeconds(10));
    Permit permit = parked.get(5, TimeUnit.SECONDS);
    permit.close();

    // Either the SDK retried (the node failed the call with UNAVAILABLE or reset it) or gRPC
    // replayed the same request transparently (the node's GOAWAY disowned the stream): the same
    // request id either way, granted by the node left. The permit is handed over on the answer;
    // the call's close, which the recorder notes, comes just after.
    await().until(() -> recorder.calls("Acquire").stream().anyMatch(c -> c.code() == Status.Code.OK
        && ((AcquireRequest) c.request()).getRequestId().equals("parked-1")));
    List<Recorder.Call> attempts = recorder.calls("Acquire").stream()
        .filter(c -> ((AcquireRequest) c.request()).getRequestId().equals("parked-1")).toList();
    assertThat(attempts.get(attempts.size() - 1).code()).isEqualTo(Status.Code.OK);
    assertThat(attempts.subList(0, attempts.size() - 1)).allSatisfy(c ->
        assertThat(c.code()).isIn(Status.Code.UNAVAILABLE, Status.Code.CANCELLED));
    assertThat(sync(other.engine()).stats("slow").granted()).isEqualTo(1);
    assertThat(otherPort).isNotEqualTo(holderPort);
  }

  @Test
  void leasesAreRenewedOnTheSurvivingNodeRightAfterAFailover() throws Exception {
    FakeClock clockA = new FakeClock();
    FakeClock clockB = new FakeClock();
    SluiceServer a = node(clockA, 0);
    SluiceServer b = node(clockB, 0);
    // A 30 min lease: the SDK's regular renewal would come only after 10 min, so a renewal
    // within the test is the one the failover set off.
    limit(new LimitSpec("leased", List.of(), 10, 0, Duration.ofMinutes(30)), a, b);
    limit(parking("slow"), a, b);
    SluiceClient client = client(SluiceClient.builder().target(targets(a, b)));
    Permit p1 = client.acquire("leased");
    Permit p2 = client.acquire("leased");
    // One waiter parked on each node. round_robin picks among READY connections: on a loaded
    // machine b's may not be ready for the first calls, so keep parking until both have one.
    List<CompletableFuture<Permit>> parked = new CopyOnWriteArrayList<>();
    await().until(() -> {
      if (waiting(a, "slow") >= 1 && waiting(b, "slow") >= 1) {
        return true;
      }
      parked.add(client.acquireAsync("slow", Load.requests(1),
          AcquireOptions.builder().timeout(Duration.ofSeconds(30)).build()));
      return false;
    });
    assertThat(recorder.calls("Renew")).isEmpty();

    a.close(); // cuts the acquire parked on a: the client notices the failover

    // Answered OK, so by b, the only node left.
    await().until(() -> recorder.calls("Renew").stream().anyMatch(c ->
        c.code() == Status.Code.OK
            && ((RenewRequest) c.request()).getPermitIdsList().containsAll(List.of(p1.id(), p2.id()))));
    p1.close();
    p2.close();
    // The parked callers give up: b's room empties (and the client closes at once, with no call open).
    parked.forEach(f -> f.cancel(true));
    await().until(() -> waiting(b, "slow") == 0);
  }

  // ------------------------------------------------------------------ no node answers

  @Test
  void failClosedThrowsUnavailableAfterTheAcquireTimeout() throws Exception {
    SluiceServer a = node();
    SluiceServer b = node();
    limit(rate("api", 100, 10), a, b);
    SluiceClient client = client(SluiceClient.builder().target(targets(a, b)));
    a.close();
    b.close();

    long started = System.nanoTime();
    assertThatThrownBy(() -> client.acquire("api", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ofMillis(1500)).build()))
        .isInstanceOf(SluiceUnavailableException.class)
        .hasMessageContaining("No node answered within the acquire's timeout of 1.5 s")
        .hasMessageContaining("FAIL_CLOSED");
    assertThat(Duration.ofNanos(System.nanoTime() - started)).as("kept retrying until the timeout")
        .isGreaterThanOrEqualTo(Duration.ofMillis(1500));
  }

  @Test
  void failOpenGrantsAtOnceAndTheGaugeFollowsTheCluster() throws Exception {
    SluiceServer a = node();
    SluiceServer b = node();
    limit(rate("api", 100, 10), a, b);
    int portA = a.port();
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    SluiceClient client = client(SluiceClient.builder().target(targets(a, b))
        .failureMode(FailureMode.FAIL_OPEN).meterRegistry(meters));
    client.tryAcquire("api", Load.requests(1), Duration.ofSeconds(5));
    assertThat(meters.get("sluice.client.degraded").gauge().value()).isZero();

    a.close();
    b.close();
    await().atMost(Duration.ofSeconds(10)).until(client::isDegraded);
    assertThat(meters.get("sluice.client.degraded").gauge().value()).isOne();
    // Granted at once: had the SDK retried the cluster until the acquire's timeout, this would
    // wait an hour.
    Permit local = client.acquireAsync("api", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ofHours(1)).build()).get(30, TimeUnit.SECONDS);
    assertThat(local.id()).startsWith("local-");
    local.close();

    SluiceServer back = node(null, portA);
    limit(rate("api", 100, 100), back);
    await().atMost(Duration.ofSeconds(10)).until(() -> !client.isDegraded());
    assertThat(meters.get("sluice.client.degraded").gauge().value()).isZero();
    await().atMost(Duration.ofSeconds(5)).until(() ->
        client.tryAcquire("api", Load.requests(1), Duration.ofSeconds(1)).map(Permit::id).orElse("").startsWith("permit")
            || sync(back.engine()).stats("api").granted() > 0);
  }

  @Test
  void localGrantsHalfTheLastKnownRateOnAFakeClock() throws Exception {
    SluiceServer a = node();
    SluiceServer b = node();
    limit(rate("api", 10, 10), a, b);
    AtomicLong now = new AtomicLong(1_000_000_000L);
    SluiceClient client = client(ClientTestHooks.ticker(
        SluiceClient.builder().target(targets(a, b)).failureMode(FailureMode.local(0.5)), now::get));
    client.acquire("api", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(5)).build()).close();
    await().until(() -> recorder.calls("Describe").stream().anyMatch(c -> c.code() == Status.Code.OK));

    a.close();
    b.close();
    // The degraded rule needs one second of failure on the client's clock.
    await().atMost(Duration.ofSeconds(10)).until(() -> {
      now.addAndGet(Duration.ofMillis(200).toNanos());
      return client.isDegraded();
    });

    now.addAndGet(Duration.ofSeconds(1).toNanos());
    int granted = 0;
    while (client.tryAcquire("api", Load.requests(1), Duration.ZERO).isPresent()) {
      granted++;
    }
    assertThat(granted).as("0.5 x 10/s over one second").isEqualTo(5);
    now.addAndGet(Duration.ofMillis(600).toNanos());
    granted = 0;
    while (client.tryAcquire("api", Load.requests(1), Duration.ZERO).isPresent()) {
      granted++;
    }
    assertThat(granted).as("0.5 x 10/s over 0.6 s").isEqualTo(3);
    now.addAndGet(Duration.ofSeconds(10).toNanos());
    granted = 0;
    while (client.tryAcquire("api", Load.requests(1), Duration.ZERO).isPresent()) {
      granted++;
    }
    assertThat(granted).as("never more than 0.5 x the burst of 10 at once").isEqualTo(5);
  }

  // ------------------------------------------------------------------ Describe

  @Test
  void describeReturnsTheLimitOrNotFound() throws Exception {
    SluiceServer a = node();
    limit(rate("api", 10, 4), a);
    ManagedChannel channel = ManagedChannelBuilder.forAddress("127.0.0.1", a.port()).usePlaintext().build();
    closeables.add(channel::shutdownNow);
    var stub = CoordinatorGrpc.newBlockingStub(channel);

    var limit = stub.describe(DescribeRequest.newBuilder().setResource("api").build()).getLimit();
    assertThat(limit.getResource()).isEqualTo("api");
    assertThat(limit.getRates(0).getAmount()).isEqualTo(10);
    assertThat(limit.getRates(0).getBurst()).isEqualTo(4);
    assertThatThrownBy(() -> stub.describe(DescribeRequest.newBuilder().setResource("nope").build()))
        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
          assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND);
          assertThat(e.getStatus().getDescription()).contains("'nope' has no limit").contains("sluice limit set");
        });
  }

  /** Records every call of the client: method, request, the node's port and how it ended. */
  static final class Recorder implements ClientInterceptor {
    record Call(String method, Object request, int port, Status.Code code) {}

    private final List<Call> calls = new CopyOnWriteArrayList<>();

    List<Call> calls(String method) {
      return calls.stream().filter(c -> c.method().equals(method)).toList();
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        private volatile Object request;

        @Override
        public void sendMessage(Q message) {
          request = message;
          super.sendMessage(message);
        }

        @Override
        public void start(Listener<R> listener, Metadata headers) {
          ClientCall<Q, R> self = this;
          super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
            @Override
            public void onClose(Status status, Metadata trailers) {
              SocketAddress remote = self.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
              int port = remote instanceof InetSocketAddress address ? address.getPort() : -1;
              calls.add(new Call(method.getBareMethodName(), request, port, status.getCode()));
              super.onClose(status, trailers);
            }
          }, headers);
        }
      };
    }
  }
}
