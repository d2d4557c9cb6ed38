package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.ClientTestHooks;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Grants that reach their callers late, in a bunch: the network between workers and a node holds
 * the node's answers for a while (shorter than the SDK takes to call a node silent), then lets
 * them through at once. Handed to their callers as they come, the grants made during the hold
 * would reach the upstream together. The SDK sees that each answer spent longer on the way than
 * answers lately did, by more than the grant stays fresh, and confirms it with its request id;
 * the coordinator forfeits each stale grant and serves the callers again at the rate.
 *
 * <p>The coordinator runs on a {@link FakeClock}, so grant ages are exact; the hold itself is
 * real time on the wire, which is what the SDK measures.
 */
class LateGrantTest {

  @TempDir Path dataDir;

  private final List<AutoCloseable> closeables = new ArrayList<>();
  private final FakeClock clock = new FakeClock();

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  @Test
  void grantsHeldBackOnTheWayAreConfirmedAndServedAgainAtTheRate() throws Exception {
    SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).clock(clock, clock).build().start();
    closeables.add(s);
    // 10/s, burst 1: a grant stays fresh 50 ms.
    sync(s.engine()).setLimit(new LimitSpec("late", List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 1)),
        0, 0, Duration.ofSeconds(600)));
    FaultProxy proxy = new FaultProxy(s.port());
    closeables.add(proxy);
    SluiceClient client = ClientTestHooks.deadlineMargin(SluiceClient.builder().target("127.0.0.1:" + proxy.port()),
        Duration.ofSeconds(120)).build();
    closeables.add(client);
    AcquireOptions options = AcquireOptions.builder().timeout(Duration.ofSeconds(60)).build();

    // Answers that come straight through set what "on time" means.
    for (int i = 0; i < 5; i++) {
      clock.advance(Duration.ofMillis(100));
      try (Permit p = client.acquire("late", Load.requests(1), options)) {
        assertThat(p.id()).isNotBlank();
      }
    }
    assertThat(ClientTestHooks.lateGrants(client)).isZero();

    proxy.holdReplies();
    List<CompletableFuture<Permit>> calls = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      calls.add(client.acquireAsync("late", Load.requests(1), options));
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting(s) == 4);
    for (int i = 0; i < 4; i++) {
      clock.advance(Duration.ofMillis(100)); // one grant each, into the hold
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> stats(s).granted() == 9);
    clock.advance(Duration.ofMillis(200)); // the newest of them is 200 ms old, 4 times its freshness
    Thread.sleep(500); // the hold on the wire: 10 times the freshness, in real time
    proxy.restore();

    // Each caller confirms; each stale grant is forfeited, and they are served again at 10/s.
    await().atMost(Duration.ofSeconds(20)).until(() -> stats(s).forfeited() == 4);
    await().atMost(Duration.ofSeconds(20)).until(() -> {
      clock.advance(Duration.ofMillis(100));
      return calls.stream().allMatch(CompletableFuture::isDone);
    });
    Set<String> ids = new HashSet<>();
    for (CompletableFuture<Permit> c : calls) {
      try (Permit p = c.join()) {
        ids.add(p.id());
      }
    }
    assertThat(ids).hasSize(4);
    ResourceSnapshot after = stats(s);
    assertThat(ClientTestHooks.lateGrants(client)).isEqualTo(4);
    assertThat(after.forfeited()).isEqualTo(4);
    assertThat(after.granted()).as("5 on time, 4 held back and forfeited, 4 fresh").isEqualTo(13);
    await().atMost(Duration.ofSeconds(10)).until(() -> stats(s).inFlight() == 0);
  }

  private static ResourceSnapshot stats(SluiceServer s) {
    return sync(s.engine()).stats("late");
  }

  private static int waiting(SluiceServer s) {
    return stats(s).waiting().values().stream().mapToInt(Integer::intValue).sum();
  }
}
