package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.ClientTestHooks;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.client.SluiceException;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.Scheduler;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Fault injection on one coordinator in the test JVM, on a {@link FakeClock} so that windows are
 * counted exactly at the coordinator: a {@link FaultProxy} between SDK and server that adds
 * latency, resets and drops connections mid-call; and steps of the test clock. Each test adds its
 * row to the reliability report ({@link ReliabilityReport}).
 */
class FaultInjectionTest {

  private static final long RATE = 20;
  private static final long BURST = 5;
  private static final int CAP = 4;
  private static final Duration LEASE = Duration.ofSeconds(10);
  private static final Duration STEP = Duration.ofMillis(100);
  private static final int STEPS_PER_PERIOD = 10;

  @TempDir Path dataDir;

  private final List<AutoCloseable> closeables = new ArrayList<>();
  private final FakeClock clock = new FakeClock();

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private SluiceServer server() throws Exception {
    SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).clock(clock, clock).build().start();
    closeables.add(s);
    return s;
  }

  private SluiceClient client(int port) {
    SluiceClient c = SluiceClient.builder().target("127.0.0.1:" + port).build();
    closeables.add(c);
    return c;
  }

  /**
   * A client that takes every grant as it comes. The SDK confirms a grant that reached it later
   * than its {@code fresh_for} (AcquireCall), and the coordinator then forfeits it if it is stale
   * on the coordinator's clock. Here that clock is the test's, which stands still while a starved
   * machine delays answers and then jumps by hours: every confirmation would be forfeited and
   * queued again, adding waiters this test does not count. Stripping {@code fresh_for} on the way
   * in turns the check off; late grants have their own tests (LateGrantTest).
   */
  private SluiceClient clientTakingGrantsAsTheyCome(int port) {
    ClientInterceptor noFreshness = new ClientInterceptor() {
      @Override
      public <Q, A> ClientCall<Q, A> interceptCall(MethodDescriptor<Q, A> method, CallOptions options, Channel next) {
        return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
          @Override
          public void start(Listener<A> listener, Metadata headers) {
            super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
              @Override
              @SuppressWarnings("unchecked")
              public void onMessage(A message) {
                super.onMessage(message instanceof AcquireResponse r ? (A) r.toBuilder().clearFreshFor().build() : message);
              }
            }, headers);
          }
        };
      }
    };
    SluiceClient c = ClientTestHooks.intercept(SluiceClient.builder().target("127.0.0.1:" + port), noFreshness).build();
    closeables.add(c);
    return c;
  }

  private static int waiting(SluiceServer s, String name) {
    return sync(s.engine()).stats(name).waiting().values().stream().mapToInt(Integer::intValue).sum();
  }

  /** The largest sum of {@code window} consecutive entries. */
  private static long densest(List<Long> perStep, int window) {
    long worst = 0;
    for (int i = 0; i < perStep.size(); i++) {
      long sum = 0;
      for (int j = i; j < Math.min(perStep.size(), i + window); j++) {
        sum += perStep.get(j);
      }
      worst = Math.max(worst, sum);
    }
    return worst;
  }

  @Test
  void latencyResetsAndDropsMidCallNeverGrantOverTheLimitAndLoseNoCapacity() throws Exception {
    SluiceServer s = server();
    sync(s.engine()).setLimit(new LimitSpec("api", List.of(new RateSpec("requests", RATE, Duration.ofSeconds(1), BURST)),
        CAP, 0, LEASE));
    FaultProxy proxy = new FaultProxy(s.port());
    closeables.add(proxy);
    proxy.latency(15);
    SluiceClient client = client(proxy.port());

    int threads = 6;
    AtomicBoolean stop = new AtomicBoolean();
    AtomicLong errors = new AtomicLong();
    AtomicLongArray lastGrant = new AtomicLongArray(threads);
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    closeables.add(pool::shutdownNow);
    List<Future<?>> workers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      int me = t;
      workers.add(pool.submit(() -> {
        while (!stop.get()) {
          try (Permit p = client.acquire("api", Load.requests(1),
              AcquireOptions.builder().timeout(Duration.ofSeconds(30)).build())) {
            lastGrant.set(me, System.nanoTime());
          } catch (SluiceException e) {
            errors.incrementAndGet(); // counted and reported; the same client goes on
          }
        }
        return null;
      }));
    }

    // Chaos on the real clock, time steps on the fake one: 100 ms of server time per 20 ms.
    List<Long> perStep = new ArrayList<>();
    long peakInFlight = 0;
    int resets = 0;
    int drops = 0;
    int cutConnections = 0;
    long before = 0;
    int chaosSteps = 300;
    for (int step = 0; step < chaosSteps; step++) {
      if (step % 12 == 6) {
        boolean reset = (step / 12) % 2 == 0;
        cutConnections += reset ? proxy.resetAll() : proxy.dropAll();
        if (reset) {
          resets++;
        } else {
          drops++;
        }
      }
      clock.advance(STEP);
      var stats = sync(s.engine()).stats("api");
      perStep.add(stats.granted() - before);
      before = stats.granted();
      peakInFlight = Math.max(peakInFlight, stats.inFlight());
      TimeUnit.MILLISECONDS.sleep(20); // real time for the SDK to retry and the proxy to carry
    }

    // Chaos off: every worker thread is granted again by the same client, on its own.
    proxy.latency(0);
    long calm = System.nanoTime();
    while (true) {
      boolean all = true;
      for (int t = 0; t < threads; t++) {
        all &= lastGrant.get(t) > calm;
      }
      if (all) {
        break;
      }
      assertThat(Duration.ofNanos(System.nanoTime() - calm)).as("workers granted again after the chaos")
          .isLessThan(Duration.ofSeconds(20));
      clock.advance(STEP);
      var stats = sync(s.engine()).stats("api");
      perStep.add(stats.granted() - before);
      before = stats.granted();
      peakInFlight = Math.max(peakInFlight, stats.inFlight());
      TimeUnit.MILLISECONDS.sleep(20);
    }
    long recoveredMs = Duration.ofNanos(System.nanoTime() - calm).toMillis();
    stop.set(true);
    // Waiters still parked get their grants as time moves; then every worker ends.
    for (int i = 0; i < 100 && workers.stream().anyMatch(f -> !f.isDone()); i++) {
      clock.advance(STEP);
      var stats = sync(s.engine()).stats("api");
      perStep.add(stats.granted() - before);
      before = stats.granted();
      TimeUnit.MILLISECONDS.sleep(20);
    }
    for (Future<?> w : workers) {
      w.get(30, TimeUnit.SECONDS);
    }
    client.close();

    // One lease TTL later everything is back: no permit in flight, no waiter, a full bucket.
    clock.advance(LEASE);
    var after = sync(s.engine()).stats("api");
    long worst = densest(perStep, STEPS_PER_PERIOD);
    System.out.printf("proxy chaos: %d resets, %d drops (%d connections cut), latency 0-15 ms per chunk;"
        + " %d grants, densest 1 s window %d (bound %d), peak in flight %d (cap %d), %d acquire errors,"
        + " all workers granted again %d ms after the chaos; after one lease TTL: in flight %d, waiting %d,"
        + " available %s%n", resets, drops, cutConnections, before, worst, RATE + BURST, peakInFlight, CAP,
        errors.get(), recoveredMs, after.inFlight(), waiting(s, "api"), after.available());
    assertThat(worst).as("grants in the densest 1 s window at the coordinator").isLessThanOrEqualTo(RATE + BURST);
    assertThat(peakInFlight).as("in flight at the coordinator").isLessThanOrEqualTo(CAP);
    assertThat(cutConnections).as("the proxy cut live connections").isPositive();
    assertThat(after.inFlight()).as("in flight one lease TTL after the chaos").isZero();
    assertThat(waiting(s, "api")).isZero();
    assertThat(after.available().get("requests")).as("bucket full again").isEqualTo((double) BURST);
    // And the capacity is usable: a fresh client gets all CAP slots at once.
    SluiceClient fresh = client(s.port());
    List<CompletableFuture<Permit>> slots = new ArrayList<>();
    for (int i = 0; i < CAP; i++) {
      slots.add(fresh.acquireAsync("api", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(10)).build()));
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> slots.stream().allMatch(CompletableFuture::isDone));
    for (var f : slots) {
      f.join().close();
    }

    ReliabilityReport.record("1-proxy", "TCP proxy SDK→server: 0-15 ms latency per chunk, connections reset (RST)"
            + " and dropped (FIN) mid-call under load (6 threads, 20/s burst 5, concurrency 4)",
        String.format("%d resets + %d drops every 1.2 s of server time (%d connections cut), %d grants",
            resets, drops, cutConnections, before),
        "grants per 1 s window at the coordinator ≤ amount + burst; in flight ≤ cap; after one lease TTL: in flight 0,"
            + " no waiter, bucket full, all 4 slots granted to a fresh client; same client grants again",
        String.format("0 over the limit (densest window %d of %d, peak in flight %d of %d); capacity restored;"
            + " %d acquire errors surfaced; every worker granted again %d ms after the chaos",
            worst, RATE + BURST, peakInFlight, CAP, errors.get(), recoveredMs));
  }

  @Test
  void clockStepsNeitherOverGrantNorLoseOrDoubleCapacity() throws Exception {
    // Every timer task of the engine runs at its own instant of the fake clock; the grant counter
    // is read after each one, so each grant is placed at the server time it was made.
    // {server time, grants so far, grants given back so far}; test thread only. A grant whose
    // caller was gone (a call cut and retried on a loaded machine) goes back and counts in both.
    List<long[]> samples = new ArrayList<>();
    SluiceServer[] ref = new SluiceServer[1];
    Runnable sample = () -> {
      if (ref[0] != null) {
        var stats = sync(ref[0].engine()).stats("rate");
        samples.add(new long[] {clock.read(), stats.granted(), stats.givenBack()});
      }
    };
    Scheduler sampling = (task, delayNanos) -> clock.schedule(() -> {
      task.run();
      sample.run();
    }, delayNanos);
    SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).clock(clock, sampling).build().start();
    closeables.add(s);
    Duration lease = Duration.ofSeconds(5);
    sync(s.engine()).setLimit(new LimitSpec("rate", List.of(new RateSpec("requests", RATE, Duration.ofSeconds(1), BURST)),
        0, 0, null));
    sync(s.engine()).setLimit(new LimitSpec("conc", List.of(), 3, 0, lease));
    ref[0] = s;
    SluiceClient holder = clientTakingGrantsAsTheyCome(s.port());
    SluiceClient other = clientTakingGrantsAsTheyCome(s.port());

    // Rate: 300 waiters, then the clock jumps 1 h and 1 day; 100 more waiters, then it creeps
    // by 1 ns 100 times, steps 1 s - 1 ns, 100 ms 30 times, 999 ms, 2 ns.
    List<Duration> steps = new ArrayList<>();
    List<CompletableFuture<Permit>> waiters = new ArrayList<>();
    for (int round = 0; round < 2; round++) {
      int n = round == 0 ? 300 : 100;
      for (int i = 0; i < n; i++) {
        waiters.add(other.acquireAsync("rate", Load.requests(1),
            AcquireOptions.builder().timeout(Duration.ofMinutes(5)).build()));
      }
      int expected = round == 0 ? n : n - (int) BURST; // empty at start; full after a day
      // Queued over a real connection: on a loaded machine 300 calls may take more than await's 10 s.
      await().atMost(Duration.ofSeconds(40)).untilAsserted(() -> assertThat(waiting(s, "rate"))
          .as("waiters queued at the coordinator").isEqualTo(expected));
      sample.run();
      List<Duration> these = new ArrayList<>();
      if (round == 0) {
        these.add(Duration.ofHours(1));
        these.add(Duration.ofDays(1));
      } else {
        for (int i = 0; i < 100; i++) {
          these.add(Duration.ofNanos(1));
        }
        these.add(Duration.ofSeconds(1).minusNanos(1));
        for (int i = 0; i < 30; i++) {
          these.add(STEP);
        }
        these.add(Duration.ofMillis(999));
        these.add(Duration.ofNanos(2));
      }
      for (Duration d : these) {
        clock.advance(d);
        sample.run();
      }
      steps.addAll(these);
    }
    long worst = 0;
    for (int i = 1; i < samples.size(); i++) {
      long from = samples.get(i)[0];
      long upTo = samples.get(i - 1)[1];
      int j = i;
      while (j + 1 < samples.size() && samples.get(j + 1)[0] - from < 1_000_000_000L) {
        j++;
      }
      worst = Math.max(worst, samples.get(j)[1] - upTo);
    }
    long total = samples.get(samples.size() - 1)[1];
    long givenBack = samples.get(samples.size() - 1)[2];
    await().atMost(Duration.ofSeconds(10)).until(() -> waiters.stream().allMatch(CompletableFuture::isDone));
    for (var w : waiters) {
      w.join().close();
    }
    long afterHourJump = total;

    // Concurrency: 3 slots held by one client, a 4th acquire parked; the clock jumps past the
    // holder's lease (its renewals run on real time, so they are late): the slot goes to the
    // waiter, and the holder's late releases must not free a second one.
    List<Permit> held = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      held.add(holder.acquire("conc", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(10)).build()));
    }
    CompletableFuture<Permit> fourth =
        other.acquireAsync("conc", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofMinutes(5)).build());
    await().until(() -> waiting(s, "conc") == 1);
    long inFlightBefore = sync(s.engine()).stats("conc").inFlight();
    clock.advance(lease.plusSeconds(1));
    Permit granted = fourth.get(10, TimeUnit.SECONDS);
    long inFlightAfterJump = sync(s.engine()).stats("conc").inFlight();
    held.forEach(Permit::close);
    // Late releases of expired leases give nothing back twice: only the 4th is in flight.
    List<CompletableFuture<Permit>> probes = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      probes.add(other.acquireAsync("conc", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofMinutes(5)).build()));
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting(s, "conc") + sync(s.engine()).stats("conc").inFlight() == 4);
    long inFlightWithProbes = sync(s.engine()).stats("conc").inFlight();
    granted.close();
    await().atMost(Duration.ofSeconds(10)).until(() -> probes.stream().allMatch(CompletableFuture::isDone));
    for (var p : probes) {
      p.join().close();
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> sync(s.engine()).stats("conc").inFlight() == 0);

    System.out.printf("clock steps: %d steps (1 h, 1 day, then 100 more waiters and 100 x 1 ns, 1 s - 1 ns, 30 x 100 ms, 999 ms, 2 ns);"
        + " %d grants (%d given back), densest 1 s window %d (bound %d); concurrency: in flight %d before the"
        + " jump past the lease, %d after (the waiter), %d with 3 more asking after the late releases (cap 3)%n",
        steps.size(), afterHourJump, givenBack, worst, RATE + BURST, inFlightBefore, inFlightAfterJump,
        inFlightWithProbes);
    assertThat(worst).as("grants in the densest 1 s window of server time").isLessThanOrEqualTo(RATE + BURST);
    assertThat(ClientTestHooks.lateGrants(other)).as("grants confirmed as late (fresh_for stripped)").isZero();
    assertThat(total - givenBack).as("every waiter granted once (grants net of those given back)").isEqualTo(400);
    assertThat(inFlightBefore).isEqualTo(3);
    assertThat(inFlightAfterJump).as("expired leases freed, the waiter holds one").isEqualTo(1);
    assertThat(inFlightWithProbes).as("in flight with 3 more asking, never over the cap").isLessThanOrEqualTo(3);

    ReliabilityReport.record("2-clock", "Steps of the coordinator's (test) clock: 1 h and 1 day jumps, 100 × 1 ns,"
            + " 1 s − 1 ns, 100 ms steps, with 300 then 100 waiters on 20/s burst 5 (every engine timer runs at its own instant); a jump past the lease of 3 held permits",
        String.format("%d steps; 1 jump past a 5 s lease", steps.size()),
        "grants per 1 s window of server time ≤ amount + burst; every waiter granted; expired leases free"
            + " their slots once (late releases free nothing twice); in flight ≤ cap; in flight 0 at the end",
        String.format("0 over the limit (densest window %d of %d, %d grants); concurrency"
            + " %d → %d after the jump, %d of 3 with 3 more asking; capacity restored",
            worst, RATE + BURST, afterHourJump, inFlightBefore, inFlightAfterJump, inFlightWithProbes));
  }
}
