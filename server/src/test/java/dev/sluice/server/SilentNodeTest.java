package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.ClientTestHooks;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import io.grpc.Attributes;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientStreamTracer;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A node that goes silent (its host cut off the network: no FIN, no RST) is found by the SDK's
 * health probes, not by keepalive: each real {@link SluiceServer} sits behind a {@link
 * FaultProxy}, and the client's target lists the proxies. Memory store on each node, the same
 * limits set on each.
 *
 * <p>Which mechanism cut a node is read from what the SDK recorded, the status it ended the
 * node's calls with ("did not answer a health probe within 1 s"), not from the time it took on a
 * shared machine: the probes' schedule (every second, a 1 s deadline) is tested on a fake clock
 * in {@code NodeProberTest}. The times measured here are printed, not asserted.
 */
class SilentNodeTest {

  private static final String PROBE_CUT = "did not answer a health probe within 1 s";

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

  /** A node and the proxy in front of it. */
  private record Node(SluiceServer server, FaultProxy proxy) {
    int port() {
      return proxy.port();
    }
  }

  private Node node(LimitSpec... limits) throws Exception {
    SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0)
        .dataDir(dataDir.resolve("node-" + nodes++))
        .shutdownGrace(Duration.ZERO)
        .build().start();
    closeables.add(s);
    for (LimitSpec limit : limits) {
      sync(s.engine()).setLimit(limit);
    }
    FaultProxy proxy = new FaultProxy(s.port());
    closeables.add(proxy);
    return new Node(s, proxy);
  }

  private SluiceClient client(Node... nodes) {
    String target = Arrays.stream(nodes).map(n -> "127.0.0.1:" + n.port()).collect(Collectors.joining(","));
    SluiceClient c = ClientTestHooks.intercept(SluiceClient.builder().target(target), recorder).build();
    closeables.add(c);
    // Cut only what the test cuts: every node has been connected to and answered its probe.
    await().atMost(Duration.ofSeconds(10)).until(() -> ClientTestHooks.everyNodeAnswered(c));
    return c;
  }

  private static LimitSpec open(String name) {
    return new LimitSpec(name, List.of(new RateSpec("requests", 100_000, Duration.ofSeconds(1), 1_000)), 0, 0, null);
  }

  private static int waiting(Node n, String name) {
    return sync(n.server().engine()).stats(name).waiting().values().stream().mapToInt(Integer::intValue).sum();
  }

  private static long ms(long nanos) {
    return Duration.ofNanos(nanos).toMillis();
  }

  /** Grants counted by the nodes' own engines. */
  private static long granted(String resource, Node... nodes) {
    return Arrays.stream(nodes).mapToLong(n -> sync(n.server().engine()).stats(resource).granted()).sum();
  }

  /** Starts acquire-and-close loops on a few threads; stopped at the latest by the tear-down. */
  private Workers workers(SluiceClient client, String resource, int threads) {
    Workers w = new Workers(client, resource, threads);
    closeables.add(w.pool::shutdownNow);
    closeables.add(() -> w.stop.set(true));
    return w;
  }

  /** Acquire-and-close loops. */
  private static final class Workers {
    private final AtomicBoolean stop = new AtomicBoolean();
    private final ExecutorService pool;
    private final List<Future<?>> workers = new ArrayList<>();

    Workers(SluiceClient client, String resource, int threads) {
      pool = Executors.newFixedThreadPool(threads);
      for (int t = 0; t < threads; t++) {
        workers.add(pool.submit(() -> {
          while (!stop.get()) {
            client.acquire(resource, Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(20)).build())
                .close();
          }
          return null;
        }));
      }
    }

    /** Stops the loops; an acquire that failed throws here. */
    void stop() throws Exception {
      stop.set(true);
      for (Future<?> w : workers) {
        w.get(30, TimeUnit.SECONDS);
      }
      pool.shutdown();
    }
  }

  @Test
  void aNodeBlackholedUnderLoadIsCutOffByItsProbeAndNoAcquireFails() throws Exception {
    Node a = node(open("api"));
    Node b = node(open("api"));
    Node c = node(open("api"));
    SluiceClient client = client(a, b, c);
    Workers load = workers(client, "api", 4);
    await().atMost(Duration.ofSeconds(10)).until(() -> granted("api", a, b, c) >= 300);

    long blackholed = System.nanoTime();
    a.proxy().blackhole();
    Recorder.Call cut = await().atMost(Duration.ofSeconds(15))
        .until(() -> recorder.cutOff(a.port()), Optional::isPresent).orElseThrow();
    long detected = cut.closedAt();
    long othersAtCut = granted("api", b, c);
    await().atMost(Duration.ofSeconds(10)).until(() -> granted("api", b, c) >= othersAtCut + 300);
    load.stop(); // no acquire failed

    System.out.printf("blackhole under load: calls on the node cut off after %d ms%n", ms(detected - blackholed));
    assertThat(cut.status().getDescription()).as("cut off by the probe, not keepalive")
        .contains("coordinator node 127.0.0.1:" + a.port() + " " + PROBE_CUT);
    // Once the node is down nothing is sent to it; a call put on it in the instant the new list
    // takes to reach round_robin is cut off at once as well.
    assertThat(recorder.created(a.port(), detected, Long.MAX_VALUE)).allSatisfy(Recorder.Call::assertCutOff);
    assertThat(List.of(b, c)).allSatisfy(n ->
        assertThat(recorder.created(n.port(), detected, Long.MAX_VALUE)).as("node %d carries on", n.port())
            .isNotEmpty());
  }

  @Test
  void anAcquireParkedOnABlackholedNodeIsCutOffAndGrantedByAnotherWithTheSameRequestId() throws Exception {
    // One slot per node, each held by someone else: the acquire parks wherever it lands.
    LimitSpec cap = new LimitSpec("cap", List.of(), 1, 0, Duration.ofSeconds(60));
    Node a = node(cap);
    Node b = node(cap);
    Grant heldOnA = sync(a.server().engine()).acquire("cap", Map.of(), Lane.DEFAULT, 0, "held-a").future().join();
    Grant heldOnB = sync(b.server().engine()).acquire("cap", Map.of(), Lane.DEFAULT, 0, "held-b").future().join();
    SluiceClient client = client(a, b);

    CompletableFuture<Permit> parked = client.acquireAsync("cap", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ofSeconds(30)).requestId("parked-1").build());
    await().until(() -> waiting(a, "cap") + waiting(b, "cap") == 1);
    Node holder = waiting(a, "cap") == 1 ? a : b;
    Node other = holder == a ? b : a;
    Grant heldOnOther = holder == a ? heldOnB : heldOnA;

    long blackholed = System.nanoTime();
    holder.proxy().blackhole();
    await().atMost(Duration.ofSeconds(15)).until(() -> waiting(other, "cap") == 1);
    long retried = System.nanoTime();
    assertThat(parked).as("the cut is retried, not failed").isNotDone();

    sync(other.server().engine()).release("cap", heldOnOther.permitId(), Map.of(), false, false);
    Permit permit = parked.get(5, TimeUnit.SECONDS);
    permit.close();

    System.out.printf("parked acquire: waiting on the other node %d ms after the blackhole%n",
        ms(retried - blackholed));
    // The permit is handed over on the answer; the call's close, which the recorder notes, comes
    // just after.
    await().until(() -> recorder.acquires("parked-1").stream().anyMatch(call -> call.status().isOk()));
    List<Recorder.Call> attempts = recorder.acquires("parked-1");
    Recorder.Call last = attempts.get(attempts.size() - 1);
    assertThat(last.port()).as("granted by the other node: %s", attempts).isEqualTo(other.port());
    assertThat(last.status().getCode()).isEqualTo(Status.Code.OK);
    assertThat(attempts.subList(0, attempts.size() - 1)).as("cut off, then retried").isNotEmpty()
        .allSatisfy(Recorder.Call::assertCutOff)
        .anySatisfy(attempt -> assertThat(attempt.port()).isEqualTo(holder.port()));
    assertThat(sync(other.server().engine()).stats("cap").granted()).as("its hold, then the retried acquire").isEqualTo(2);
  }

  @Test
  void aRestoredNodeGetsCallsAgain() throws Exception {
    Node a = node(open("api"));
    Node b = node(open("api"));
    Node c = node(open("api"));
    SluiceClient client = client(a, b, c);
    Workers load = workers(client, "api", 2);
    await().atMost(Duration.ofSeconds(10)).until(() -> granted("api", a, b, c) >= 100);

    a.proxy().blackhole();
    long detected = await().atMost(Duration.ofSeconds(15)).until(() -> recorder.cutOff(a.port()), Optional::isPresent)
        .orElseThrow().closedAt();
    long othersAtCut = granted("api", b, c);
    await().atMost(Duration.ofSeconds(10)).until(() -> granted("api", b, c) >= othersAtCut + 100);
    long restored = System.nanoTime();
    a.proxy().restore();
    assertThat(recorder.created(a.port(), detected, restored)).allSatisfy(Recorder.Call::assertCutOff);

    // Calls spread to it again: an acquire granted there, and more than the first call (stopping
    // the load at the first grant there would race the next call on a loaded machine).
    await().atMost(Duration.ofSeconds(10)).until(() -> {
      List<Recorder.Call> since = recorder.created(a.port(), restored, Long.MAX_VALUE);
      return since.size() > 1 && since.stream().anyMatch(call -> call.method().equals("Acquire") && call.status().isOk());
    });
    long back = recorder.created(a.port(), restored, Long.MAX_VALUE).stream()
        .mapToLong(Recorder.Call::createdAt).min().orElseThrow();
    load.stop();

    System.out.printf("restored node: first call sent to it %d ms after the restore%n", ms(back - restored));
    long afterBack = recorder.created(a.port(), back, Long.MAX_VALUE).size();
    assertThat(afterBack).as("calls spread to it again").isGreaterThan(1);
  }

  /**
   * Every call of the client: method, the acquire's request id, the node (proxy) port its stream
   * was put on, when, and how it ended. The port comes from a stream tracer, like the SDK's own:
   * a call cut off before any answer has no address in {@code getAttributes()}.
   */
  static final class Recorder implements ClientInterceptor {
    record Call(String method, String requestId, int port, long createdAt, long closedAt, Status status) {
      void assertCutOff() {
        assertThat(status.getCode()).as("%s on %d", method, port).isEqualTo(Status.Code.UNAVAILABLE);
        assertThat(status.getDescription()).as("%s on %d", method, port).contains(PROBE_CUT);
      }
    }

    private final List<Call> calls = new CopyOnWriteArrayList<>();

    /** The first call on {@code port} that the SDK cut off because the node failed its probe. */
    Optional<Call> cutOff(int port) {
      return calls.stream().filter(c -> c.port() == port && c.status().getCode() == Status.Code.UNAVAILABLE
          && String.valueOf(c.status().getDescription()).contains("health probe")).findFirst();
    }

    /** Calls whose stream was put on {@code port} in [from, to). */
    List<Call> created(int port, long from, long to) {
      return calls.stream().filter(c -> c.port() == port && c.createdAt() >= from && c.createdAt() < to).toList();
    }

    List<Call> acquires(String requestId) {
      return calls.stream().filter(c -> requestId.equals(c.requestId())).toList();
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      long[] created = {0};
      int[] port = {-1};
      CallOptions traced = options.withStreamTracerFactory(new ClientStreamTracer.Factory() {
        @Override
        public ClientStreamTracer newClientStreamTracer(ClientStreamTracer.StreamInfo info, Metadata headers) {
          return new ClientStreamTracer() {
            @Override
            public void streamCreated(Attributes transportAttrs, Metadata headers) {
              SocketAddress remote = transportAttrs.get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
              synchronized (created) {
                created[0] = System.nanoTime();
                port[0] = remote instanceof InetSocketAddress address ? address.getPort() : -1;
              }
            }
          };
        }
      });
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, traced)) {
        private volatile String requestId;

        @Override
        public void sendMessage(Q message) {
          if (message instanceof AcquireRequest r) {
            requestId = r.getRequestId();
          }
          super.sendMessage(message);
        }

        @Override
        public void start(Listener<R> listener, Metadata headers) {
          super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
            @Override
            public void onClose(Status status, Metadata trailers) {
              long closed = System.nanoTime();
              synchronized (created) {
                calls.add(new Call(method.getBareMethodName(), requestId, port[0], created[0], closed, status));
              }
              super.onClose(status, trailers);
            }
          }, headers);
        }
      };
    }
  }
}
