package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.AcquireTimeoutException;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The SDK's session streams against real servers over Netty: same behaviour as unary calls. */
class SessionClientTest {

  @TempDir Path dataDir;

  private final List<AutoCloseable> closeables = new ArrayList<>();
  private int nodes;

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private SluiceServer node(FakeClock clock) throws Exception {
    SluiceServer.Builder b = SluiceServer.builder().host("127.0.0.1").port(0)
        .dataDir(dataDir.resolve("node-" + nodes++)).shutdownGrace(Duration.ZERO);
    if (clock != null) {
      b.clock(clock, clock);
    }
    SluiceServer s = b.build().start();
    closeables.add(s);
    return s;
  }

  private SluiceClient client(SluiceServer... servers) {
    String target = java.util.Arrays.stream(servers).map(s -> "127.0.0.1:" + s.port())
        .collect(Collectors.joining(","));
    SluiceClient c = SluiceClient.builder().target(target).session(1).build();
    closeables.add(c);
    return c;
  }

  private static int waiting(SluiceServer s, String name) {
    return sync(s.engine()).stats(name).waiting().values().stream().mapToInt(Integer::intValue).sum();
  }

  private static AcquireOptions timeout(Duration d) {
    return AcquireOptions.builder().timeout(d).build();
  }

  @Test
  void aPermitSettlesAndReleasesOnTheStream() throws Exception {
    FakeClock clock = new FakeClock();
    SluiceServer s = node(clock);
    sync(s.engine()).setLimit(new LimitSpec("openai", List.of(
        new RateSpec("tokens", 1000, Duration.ofSeconds(1), 1000)), 2, 0, null));
    clock.advance(Duration.ofSeconds(2));
    SluiceClient c = client(s);

    try (Permit p = c.acquire("openai", Load.of("tokens", 800))) {
      assertThat(sync(s.engine()).stats("openai").inFlight()).isEqualTo(1);
      p.settle(Load.of("tokens", 300));
    }

    await().until(() -> sync(s.engine()).stats("openai").inFlight() == 0);
    assertThat(sync(s.engine()).stats("openai").available().get("tokens")).as("500 refunded").isEqualTo(700.0);
  }

  @Test
  void manyConcurrentCallersAreEachGrantedOnceAndTheCapHolds() throws Exception {
    SluiceServer s = node(null);
    sync(s.engine()).setLimit(new LimitSpec("api", List.of(), 8, 0, null));
    SluiceClient c = client(s);
    int threads = 32;
    int each = 100;
    AtomicInteger holding = new AtomicInteger();
    AtomicInteger most = new AtomicInteger();
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    List<Future<?>> workers = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      workers.add(pool.submit(() -> {
        for (int i = 0; i < each; i++) {
          try (Permit p = c.acquire("api", Load.requests(1), timeout(Duration.ofSeconds(30)))) {
            most.accumulateAndGet(holding.incrementAndGet(), Math::max);
            holding.decrementAndGet();
          }
        }
        return null;
      }));
    }
    for (Future<?> w : workers) {
      w.get(60, TimeUnit.SECONDS);
    }
    pool.shutdown();

    assertThat(most.get()).isLessThanOrEqualTo(8);
    assertThat(sync(s.engine()).stats("api").granted()).isEqualTo((long) threads * each);
    await().until(() -> sync(s.engine()).stats("api").inFlight() == 0);
  }

  @Test
  void cancellingTheFutureWithdrawsTheWaiter() throws Exception {
    FakeClock clock = new FakeClock();
    SluiceServer s = node(clock);
    sync(s.engine()).setLimit(new LimitSpec("slow", List.of(
        new RateSpec("requests", 1, Duration.ofSeconds(10), 1)), 0, 0, null));
    SluiceClient c = client(s);

    CompletableFuture<Permit> parked = c.acquireAsync("slow", Load.requests(1), timeout(Duration.ofSeconds(60)));
    await().until(() -> waiting(s, "slow") == 1);
    parked.cancel(false);

    await().until(() -> waiting(s, "slow") == 0);
    assertThat(sync(s.engine()).stats("slow").cancelled()).isEqualTo(1);
    clock.advance(Duration.ofSeconds(10));
    assertThat(sync(s.engine()).stats("slow").available().get("requests")).isEqualTo(1.0);
  }

  @Test
  void theCoordinatorsTimeoutEndsTheAcquire() throws Exception {
    FakeClock clock = new FakeClock();
    SluiceServer s = node(clock);
    sync(s.engine()).setLimit(new LimitSpec("slow", List.of(
        new RateSpec("requests", 1, Duration.ofSeconds(10), 1)), 0, 0, null));
    SluiceClient c = client(s);

    CompletableFuture<Permit> parked = c.acquireAsync("slow", Load.requests(1), timeout(Duration.ofSeconds(2)));
    await().until(() -> waiting(s, "slow") == 1);
    clock.advance(Duration.ofSeconds(2));

    assertThatThrownBy(() -> parked.get(5, TimeUnit.SECONDS)).isInstanceOf(ExecutionException.class)
        .hasCauseInstanceOf(AcquireTimeoutException.class);
  }

  @Test
  void anAcquireParkedOnAKilledNodeIsRetriedOnAnotherOnANewStream() throws Exception {
    FakeClock clockA = new FakeClock();
    FakeClock clockB = new FakeClock();
    SluiceServer a = node(clockA);
    SluiceServer b = node(clockB);
    for (SluiceServer s : List.of(a, b)) {
      sync(s.engine()).setLimit(new LimitSpec("slow", List.of(
          new RateSpec("requests", 1, Duration.ofSeconds(10), 1)), 0, 0, null));
    }
    SluiceClient c = client(a, b);

    CompletableFuture<Permit> parked = c.acquireAsync("slow", Load.requests(1), timeout(Duration.ofSeconds(30)));
    await().until(() -> waiting(a, "slow") + waiting(b, "slow") == 1);
    SluiceServer holder = waiting(a, "slow") == 1 ? a : b;
    SluiceServer other = holder == a ? b : a;
    holder.close();

    await().atMost(Duration.ofSeconds(5)).until(() -> waiting(other, "slow") == 1);
    assertThat(parked).isNotDone();
    (other == a ? clockA : clockB).advance(Duration.ofSeconds(10));
    try (Permit p = parked.get(5, TimeUnit.SECONDS)) {
      assertThat(p.resource()).isEqualTo("slow");
    }
    await().until(() -> sync(other.engine()).stats("slow").inFlight() == 0);
    assertThat(sync(other.engine()).stats("slow").granted()).isEqualTo(1);
  }
}
