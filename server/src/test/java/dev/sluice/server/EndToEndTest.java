package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.AcquireTimeoutException;
import dev.sluice.client.InvalidRequestException;
import dev.sluice.client.Lane;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.ResourceNotFoundException;
import dev.sluice.client.SluiceClient;
import dev.sluice.client.SluiceUnavailableException;
import dev.sluice.client.WaitingRoomFullException;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.server.engine.EngineTestHooks;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Guarantees 1-8 of docs/guarantees.md and every error code, through the real SDK over a real Netty
 * connection on loopback. Where time matters the server runs on a {@link FakeClock}.
 */
class EndToEndTest {

  @TempDir Path dataDir;

  private final List<AutoCloseable> closeables = new ArrayList<>();
  private FakeClock clock;

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private SluiceServer server(boolean fakeClock) throws Exception {
    SluiceServer.Builder b =
        SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).shutdownGrace(Duration.ofSeconds(2));
    if (fakeClock) {
      clock = new FakeClock();
      b.clock(clock, clock);
    }
    SluiceServer s = b.build().start();
    closeables.add(s);
    return s;
  }

  private SluiceClient client(SluiceServer s) {
    SluiceClient c = SluiceClient.builder().target("127.0.0.1:" + s.port()).build();
    closeables.add(c);
    return c;
  }

  private static RateSpec rate(String dim, long amount, Duration period, long burst) {
    return new RateSpec(dim, amount, period, burst);
  }

  private static void limit(SluiceServer s, String name, long concurrency, int maxWaiting, RateSpec... rates) {
    sync(s.engine()).setLimit(new LimitSpec(name, List.of(rates), concurrency, maxWaiting, null));
  }

  private static int waiting(SluiceServer s, String name) {
    return sync(s.engine()).stats(name).waiting().values().stream().mapToInt(Integer::intValue).sum();
  }

  private static AcquireOptions opts(Duration timeout, Lane lane) {
    return AcquireOptions.builder().timeout(timeout).lane(lane).build();
  }

  // ------------------------------------------------------------------ 1. never over the limit

  @Test
  void g1_rateNeverExceedsAmountPlusBurstInAnyWindow() throws Exception {
    SluiceServer s = server(true);
    SluiceClient c = client(s);
    limit(s, "api", 0, 0, rate("requests", 20, Duration.ofSeconds(1), 5));
    List<CompletableFuture<Permit>> all = new ArrayList<>();
    for (int i = 0; i < 120; i++) {
      all.add(c.acquireAsync("api", Load.requests(1), opts(Duration.ofMinutes(5), Lane.DEFAULT)));
    }
    await().until(() -> waiting(s, "api") == 120);
    // Step the clock 100 ms at a time and count grants per step from the server's counter.
    List<Long> perStep = new ArrayList<>();
    long before = 0;
    for (int step = 0; step < 60; step++) {
      advanceAndDeliver(s, all, Duration.ofMillis(100)); // fresh 125 ms: 5 / 20/s / 2
      long granted = sync(s.engine()).stats("api").granted();
      perStep.add(granted - before);
      before = granted;
    }
    for (int i = 0; i + 10 <= perStep.size(); i++) {
      long window = perStep.subList(i, i + 10).stream().mapToLong(Long::longValue).sum();
      assertThat(window).as("grants in 1 s window at step %d", i).isLessThanOrEqualTo(20 + 5);
    }
    assertThat(before).isEqualTo(120);
    await().until(() -> all.stream().allMatch(CompletableFuture::isDone));
    for (var f : all) {
      f.join().close();
    }
  }

  @Test
  void g1_concurrencyNeverExceedsItsCap() throws Exception {
    SluiceServer s = server(false);
    SluiceClient c = client(s);
    limit(s, "conc", 3, 0);
    // The cap is reached, and holds: three permits held, a fourth acquire parks.
    List<Permit> held = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      held.add(c.acquire("conc"));
    }
    CompletableFuture<Permit> fourth = c.acquireAsync("conc", Load.requests(1), opts(Duration.ofMinutes(1), Lane.DEFAULT));
    await().until(() -> waiting(s, "conc") == 1);
    assertThat(fourth).isNotDone();
    held.forEach(Permit::close);
    fourth.get(10, TimeUnit.SECONDS).close();

    // Then 12 threads race for the 3 slots through the real SDK.
    ExecutorService pool = Executors.newFixedThreadPool(12);
    CountDownLatch start = new CountDownLatch(1);
    List<java.util.concurrent.Future<?>> done = new ArrayList<>();
    for (int t = 0; t < 12; t++) {
      done.add(
          pool.submit(
              () -> {
                start.await();
                for (int i = 0; i < 20; i++) {
                  c.acquire("conc").close();
                }
                return null;
              }));
    }
    start.countDown();
    for (var f : done) {
      f.get(60, TimeUnit.SECONDS);
    }
    pool.shutdown();
    // The engine's own peak, taken at every grant: a slot granted twice for an instant shows
    // here even if no client thread happened to hold its permit at that instant.
    assertThat(EngineTestHooks.peakInFlight(s.engine(), "conc")).as("most permits held at once").isEqualTo(3);
    assertThat(sync(s.engine()).stats("conc").granted()).isEqualTo(4 + 240);
    await().until(() -> sync(s.engine()).stats("conc").inFlight() == 0);
  }

  // ------------------------------------------------------------------ 2. no wasted quota

  @Test
  void g2_saturatedDemandGetsTheFullRate() throws Exception {
    SluiceServer s = server(true);
    SluiceClient c = client(s);
    limit(s, "api", 0, 0, rate("requests", 100, Duration.ofSeconds(1), 10));
    List<CompletableFuture<Permit>> all = new ArrayList<>();
    for (int i = 0; i < 700; i++) {
      all.add(c.acquireAsync("api", Load.requests(1), opts(Duration.ofMinutes(5), Lane.DEFAULT)));
    }
    await().until(() -> waiting(s, "api") == 700);
    for (int i = 0; i < 120; i++) {
      advanceAndDeliver(s, all, Duration.ofMillis(50)); // a grant stays fresh 50 ms: 10 / 100/s / 2
    }
    // 6 s of refill at 100/s from an empty bucket: every unit is used, none wasted.
    var stats = sync(s.engine()).stats("api");
    assertThat(stats.granted()).isEqualTo(600);
    assertThat(stats.forfeited()).isZero();
    assertThat(all.stream().filter(CompletableFuture::isDone).count()).isEqualTo(600);
    // The 100 still waiting give up: the room empties (and the client closes at once, with no call open).
    all.forEach(f -> f.cancel(true));
    await().until(() -> waiting(s, "api") == 0);
  }

  /**
   * Moves the fake clock {@code step} on (the coordinator grants at each token's own instant
   * within it), then waits until every grant counted on "api" reached its caller. The SDK
   * confirms a grant whose answer spent longer on the way than the least lately seen by more than
   * the grant stays fresh (AcquireCall#late); with hundreds of acquires sent at once on a loaded
   * machine many do. A confirmation that finds the grant older than its freshness on the
   * coordinator's clock forfeits it (its units stay spent, ResourceState#late), and the caller
   * waits for capacity that a stopped clock never makes: the counters then say granted while
   * the futures stay open. A step no longer than the freshness, with a wait after each, keeps
   * every grant fresh until its caller has it, as a real clock does on a quick network.
   */
  private void advanceAndDeliver(SluiceServer s, List<CompletableFuture<Permit>> all, Duration step) {
    clock.advance(step);
    long granted = sync(s.engine()).stats("api").granted();
    await().pollDelay(Duration.ZERO).pollInterval(Duration.ofMillis(2))
        .until(() -> all.stream().filter(CompletableFuture::isDone).count() == granted);
  }

  // ------------------------------------------------------------------ 3. FIFO, lanes

  @Test
  void g3_fifoWithinALaneAndLanesInPriority() throws Exception {
    SluiceServer s = server(true);
    SluiceClient c = client(s);
    limit(s, "api", 0, 0, rate("requests", 1, Duration.ofSeconds(1), 1));
    List<String> order = java.util.Collections.synchronizedList(new ArrayList<>());
    String[] names = {"b1", "b2", "d1", "d2", "i1"};
    Lane[] lanes = {Lane.BATCH, Lane.BATCH, Lane.DEFAULT, Lane.DEFAULT, Lane.INTERACTIVE};
    for (int i = 0; i < names.length; i++) {
      String name = names[i];
      c.acquireAsync("api", Load.requests(1), opts(Duration.ofMinutes(5), lanes[i]))
          .thenAccept(p -> order.add(name));
      int expected = i + 1;
      await().until(() -> waiting(s, "api") == expected); // arrival order at the coordinator
    }
    for (int i = 0; i < 5; i++) {
      clock.advance(Duration.ofSeconds(1));
      int expected = i + 1;
      await().until(() -> order.size() == expected);
    }
    assertThat(order).containsExactly("i1", "d1", "d2", "b1", "b2");
  }

  // ------------------------------------------------------------------ 4. fail fast

  @Test
  void g4_impossibleRequestsFailFastWithClearErrors() throws Exception {
    SluiceServer s = server(false);
    SluiceClient c = client(s);
    limit(s, "llm", 0, 0, rate("tokens", 1000, Duration.ofMinutes(1), 100));
    assertThatThrownBy(() -> c.acquire("llm", Load.of("tokens", 101)))
        .isInstanceOf(InvalidRequestException.class)
        .hasMessageContaining("can never fit");
    assertThatThrownBy(() -> c.acquire("llm", Load.of("images", 1)))
        .isInstanceOf(InvalidRequestException.class)
        .hasMessageContaining("images");
    assertThatThrownBy(() -> c.acquire("llm", Load.of("tokens", 0, "requests", 0)))
        .isInstanceOf(InvalidRequestException.class);
    assertThatThrownBy(() -> c.acquire("bad name"))
        .isInstanceOf(InvalidRequestException.class)
        .hasMessageContaining("A-Z a-z 0-9");
    assertThatThrownBy(() -> c.acquire("missing"))
        .isInstanceOf(ResourceNotFoundException.class)
        .hasMessageContaining("sluice limit set missing");
    // Through the raw stub too: negative values never reach the engine's buckets.
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
    closeables.add(ch::shutdownNow);
    var stub = CoordinatorGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
    assertThatThrownBy(
            () -> stub.acquire(AcquireRequest.newBuilder().setResource("llm").putLoad("tokens", -1).build()))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> {
              assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
              assertThat(e.getStatus().getDescription()).contains("out of range");
            });
    assertThat(waiting(s, "llm")).isZero();
  }

  // ------------------------------------------------------------------ 5. cancellation

  @Test
  void g5_cancelStormLeavesCapacityExactlyIntact() throws Exception {
    SluiceServer s = server(true);
    // The timeouts below run on the server's fake clock; on a loaded machine the test can take
    // longer than timeout + 5 s in real time, and a client-side deadline would cut calls whose
    // grant is on the wire (that permit then waits for its 10 min lease). Not what this tests.
    SluiceClient c = dev.sluice.client.ClientTestHooks.deadlineMargin(
        SluiceClient.builder().target("127.0.0.1:" + s.port()), Duration.ofMinutes(10)).build();
    closeables.add(c);
    // A week-long period: refill during the test is tiny and exactly computable.
    Duration period = Duration.ofDays(7);
    // Leases outlast the stepped clock below, so every release lands on a live permit.
    sync(s.engine())
        .setLimit(
            new LimitSpec(
                "storm",
                List.of(rate("requests", 20_000, period, 20_000)),
                64,
                20_000,
                Duration.ofMinutes(10)));
    clock.advance(period); // bucket full: 20 000
    // Hold every concurrency slot so the storm queues.
    List<Permit> held = new ArrayList<>();
    for (int i = 0; i < 64; i++) {
      held.add(c.acquire("storm"));
    }
    int n = 10_000;
    AtomicInteger stormKept = new AtomicInteger();
    ScheduledExecutorService users = Executors.newScheduledThreadPool(2);
    closeables.add(users::shutdownNow);
    List<CompletableFuture<Permit>> storm = new ArrayList<>(n);
    for (int i = 0; i < n; i++) {
      // Even ones reach their deadline at the coordinator (30-35 s on the fake clock, stepped
      // below); odd ones are cancelled by their caller.
      Duration timeout =
          i % 2 == 0 ? Duration.ofMillis(30_000 + (i % 50) * 100) : Duration.ofMinutes(10);
      CompletableFuture<Permit> f =
          c.acquireAsync("storm", Load.requests(1), opts(timeout, Lane.DEFAULT));
      // A caller that gets its permit uses it briefly and closes it: grants keep flowing and
      // keep racing with the cancels and deadlines.
      f.whenComplete(
          (p, e) -> {
            if (p != null) {
              stormKept.incrementAndGet();
              users.execute(p::close);
            }
          });
      storm.add(f);
    }
    await().atMost(Duration.ofSeconds(60)).until(() -> waiting(s, "storm") == n);
    for (Permit p : held) {
      p.close(); // the flow starts
    }
    // Cancels and deadlines interleaved, while grants flow through the 64 slots.
    Duration stepped = Duration.ZERO;
    for (int step = 0; step < 360; step++) {
      for (int i = 1 + 2 * 14 * step; i < Math.min(n, 1 + 2 * 14 * (step + 1)); i += 2) {
        storm.get(i).cancel(true);
      }
      clock.advance(Duration.ofMillis(100));
      stepped = stepped.plusMillis(100);
    }
    await().atMost(Duration.ofSeconds(60)).until(() -> storm.stream().allMatch(CompletableFuture::isDone));
    try {
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> waiting(s, "storm") == 0 && sync(s.engine()).stats("storm").inFlight() == 0);
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      throw new AssertionError("capacity not restored: " + sync(s.engine()).stats("storm"), e);
    }
    int delivered = held.size() + stormKept.get();
    double refill = 20_000.0 * stepped.toNanos() / period.toNanos();
    double expected = 20_000.0 - delivered + refill;
    var stats = sync(s.engine()).stats("storm");
    double available = stats.available().get("requests");
    System.out.printf(
        "cancel storm: %d acquires, %d kept by callers, server saw %d cancelled and %d timed out;"
            + " available %.6f, expected with no waiters %.6f%n",
        n, delivered, stats.cancelled(), stats.timedOut(), available, expected);
    assertThat(stormKept.get()).isLessThan(n);
    assertThat(stats.cancelled() + stats.timedOut()).isGreaterThan(0);
    assertThat(available).isEqualTo(expected, within(1e-6));
  }

  @Test
  void g5_disconnectRemovesTheWaiter() throws Exception {
    SluiceServer s = server(false);
    limit(s, "slow", 0, 0, rate("requests", 1, Duration.ofHours(1), 1));
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
    CoordinatorGrpc.newStub(ch)
        .acquire(
            AcquireRequest.newBuilder().setResource("slow").build(),
            new io.grpc.stub.StreamObserver<>() {
              @Override
              public void onNext(dev.sluice.proto.v1.AcquireResponse value) {}

              @Override
              public void onError(Throwable t) {}

              @Override
              public void onCompleted() {}
            });
    await().until(() -> waiting(s, "slow") == 1);
    ch.shutdownNow(); // the worker vanishes: the connection closes under the parked call
    await().until(() -> waiting(s, "slow") == 0);
    assertThat(sync(s.engine()).stats("slow").cancelled()).isEqualTo(1);
  }

  @Test
  void leasesAreRenewedWhileOpenAndExpireWhenTheWorkerIsGone() throws Exception {
    SluiceServer s = server(false);
    SluiceClient c = client(s);
    sync(s.engine()).setLimit(new LimitSpec("conc", List.of(), 1, 0, Duration.ofSeconds(1)));
    try (Permit p = c.acquire("conc")) {
      // Three lease lengths pass; the SDK's renewals keep the slot.
      await()
          .during(Duration.ofMillis(3000))
          .atMost(Duration.ofSeconds(5))
          .until(() -> sync(s.engine()).stats("conc").inFlight() == 1);
      assertThat(c.tryAcquire("conc", Load.requests(1), Duration.ofMillis(50))).isEmpty();
    }
    await().until(() -> sync(s.engine()).stats("conc").inFlight() == 0);
    // A worker that takes a slot and dies: nobody renews, the slot comes back after the lease.
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
    var granted = CoordinatorGrpc.newBlockingStub(ch).acquire(AcquireRequest.newBuilder().setResource("conc").build());
    assertThat(granted.getLeaseTtl().getSeconds()).isEqualTo(1);
    ch.shutdownNow();
    assertThat(sync(s.engine()).stats("conc").inFlight()).isEqualTo(1);
    try (Permit next = c.acquire("conc", Load.requests(1), opts(Duration.ofSeconds(10), Lane.DEFAULT))) {
      assertThat(next.waited()).isPositive();
    }
  }

  // ------------------------------------------------------------------ 6. bounded waiting room

  @Test
  void g6_fullWaitingRoomIsResourceExhaustedWithRetryHint() throws Exception {
    SluiceServer s = server(true);
    SluiceClient c = client(s);
    limit(s, "small", 0, 2, rate("requests", 1, Duration.ofSeconds(10), 1));
    List<CompletableFuture<Permit>> parked = List.of(
        c.acquireAsync("small", Load.requests(1), opts(Duration.ofMinutes(1), Lane.DEFAULT)),
        c.acquireAsync("small", Load.requests(1), opts(Duration.ofMinutes(1), Lane.DEFAULT)));
    await().until(() -> waiting(s, "small") == 2);
    assertThatThrownBy(() -> c.acquire("small"))
        .isInstanceOfSatisfying(
            WaitingRoomFullException.class,
            e -> assertThat(e.retryAfter()).isGreaterThanOrEqualTo(Duration.ofSeconds(10)))
        .hasMessageContaining("waiting room");
    // Their callers give up: the room empties (and the client closes at once, with no call open).
    parked.forEach(f -> f.cancel(true));
    await().until(() -> waiting(s, "small") == 0);
  }

  // ------------------------------------------------------------------ 7. upstream feedback

  @Test
  void g7_reportedThrottlePausesEveryWorkerAndRemainingOnlyLowers() throws Exception {
    SluiceServer s = server(true);
    SluiceClient a = client(s);
    SluiceClient b = client(s);
    limit(s, "openai", 0, 0, rate("requests", 100, Duration.ofSeconds(1), 100), rate("tokens", 1000, Duration.ofSeconds(1), 1000));
    clock.advance(Duration.ofSeconds(1));
    a.reportHeaders("openai", Map.of("x-ratelimit-remaining-tokens", "400"));
    assertThat(sync(s.engine()).stats("openai").available().get("tokens")).isEqualTo(400.0);
    a.reportHeaders("openai", Map.of("x-ratelimit-remaining-tokens", "900"));
    assertThat(sync(s.engine()).stats("openai").available().get("tokens")).as("never raised").isEqualTo(400.0);

    Duration paused = a.reportThrottled("openai", null, Map.of("Retry-After", "3", "x-ratelimit-remaining-tokens", "400"));
    assertThat(paused).isEqualTo(Duration.ofSeconds(3));
    assertThat(sync(s.engine()).stats("openai").available().get("tokens")).as("a 429 empties the view").isEqualTo(0.0);

    CompletableFuture<Permit> other = b.acquireAsync("openai", Load.of("tokens", 10), opts(Duration.ofMinutes(1), Lane.DEFAULT));
    await().until(() -> waiting(s, "openai") == 1);
    clock.advance(Duration.ofMillis(2999));
    assertThat(other).isNotDone();
    clock.advance(Duration.ofMillis(1));
    other.get(10, TimeUnit.SECONDS).close();
  }

  // ------------------------------------------------------------------ 8. limits survive restarts

  @Test
  void g8_limitsSurviveRestartAndBucketsStartEmpty() throws Exception {
    SluiceServer first = server(false);
    limit(first, "durable", 5, 0, rate("requests", 600, Duration.ofHours(1), 10));
    first.close();
    SluiceServer second = server(false);
    LimitSpec spec = sync(second.engine()).getLimit("durable").orElseThrow();
    assertThat(spec.concurrency()).isEqualTo(5);
    assertThat(spec.rate("requests").burst()).isEqualTo(10);
    assertThat(sync(second.engine()).stats("durable").available().get("requests")).isLessThan(1.0);
  }

  // ------------------------------------------------------------------ error codes

  @Test
  void deadlineExceededWhenNotGrantedInTime() throws Exception {
    SluiceServer s = server(false);
    SluiceClient c = client(s);
    limit(s, "slow", 0, 0, rate("requests", 1, Duration.ofHours(1), 1));
    assertThatThrownBy(() -> c.acquire("slow", Load.requests(1), opts(Duration.ofMillis(200), Lane.DEFAULT)))
        .isInstanceOf(AcquireTimeoutException.class)
        .hasMessageContaining("slow");
    assertThat(c.tryAcquire("slow", Load.requests(1), Duration.ofMillis(100))).isEmpty();
    await().until(() -> sync(s.engine()).stats("slow").timedOut() == 2 && waiting(s, "slow") == 0);
  }

  @Test
  void unavailableWhenTheNodeShutsDownUnderAWaiter() throws Exception {
    SluiceServer s = server(false);
    SluiceClient c = client(s);
    limit(s, "slow", 0, 0, rate("requests", 1, Duration.ofHours(1), 1));
    // The SDK retries elsewhere until the acquire's timeout (FailoverTest); with no node left, it
    // then fails as unavailable.
    CompletableFuture<Permit> parked = c.acquireAsync("slow", Load.requests(1), opts(Duration.ofSeconds(2), Lane.DEFAULT));
    await().until(() -> waiting(s, "slow") == 1);
    s.close();
    assertThatThrownBy(() -> parked.get(20, TimeUnit.SECONDS))
        .hasCauseInstanceOf(SluiceUnavailableException.class);
    assertThatThrownBy(() -> c.acquire("slow", Load.requests(1), opts(Duration.ofMillis(500), Lane.DEFAULT)))
        .isInstanceOf(SluiceUnavailableException.class);
  }

  @Test
  void healthServiceReportsServingThenNotServing() throws Exception {
    SluiceServer s = server(false);
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
    closeables.add(ch::shutdownNow);
    var health = HealthGrpc.newBlockingStub(ch);
    assertThat(health.check(HealthCheckRequest.getDefaultInstance()).getStatus())
        .isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
    assertThat(health.check(HealthCheckRequest.newBuilder().setService(CoordinatorGrpc.SERVICE_NAME).build()).getStatus())
        .isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
  }

  @Test
  void settleOverTheWireRefundsAndCharges() throws Exception {
    SluiceServer s = server(true);
    SluiceClient c = client(s);
    limit(s, "llm", 0, 0, rate("tokens", 10_000, Duration.ofSeconds(1), 10_000));
    clock.advance(Duration.ofSeconds(1));
    try (Permit p = c.acquire("llm", Load.of("tokens", 4000))) {
      p.settle(Load.of("tokens", 1500));
    }
    // close() releases in the background: wait for the server to have seen it.
    await().until(() -> sync(s.engine()).stats("llm").inFlight() == 0);
    assertThat(sync(s.engine()).stats("llm").available().get("tokens")).isEqualTo(8500.0, within(1e-6));
    try (Permit p = c.acquire("llm", Load.of("tokens", 1000))) {
      p.settle(Load.of("tokens", 9000));
    }
    await().until(() -> sync(s.engine()).stats("llm").inFlight() == 0);
    assertThat(sync(s.engine()).stats("llm").available().get("tokens")).isEqualTo(-500.0, within(1e-6));
  }
}
