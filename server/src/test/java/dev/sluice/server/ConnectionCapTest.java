package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.client.WaitingRoomFullException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The per-connection cap on parked acquires, over Netty, unary and session. */
class ConnectionCapTest {

  @TempDir Path dataDir;

  private static int waiting(SluiceServer s) {
    return sync(s.engine()).stats("slow").waiting().values().stream().mapToInt(Integer::intValue).sum();
  }

  @Test
  void oneConnectionCannotParkMoreThanItsCapAndOthersStillCan() throws Exception {
    try (SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir)
            .maxWaitingPerConnection(3).shutdownGrace(Duration.ZERO).build().start();
        SluiceClient greedy = SluiceClient.builder().target("127.0.0.1:" + s.port()).build();
        SluiceClient greedySession = SluiceClient.builder().target("127.0.0.1:" + s.port()).session(1).build();
        SluiceClient other = SluiceClient.builder().target("127.0.0.1:" + s.port()).build()) {
      sync(s.engine()).setLimit(new LimitSpec("slow", List.of(new RateSpec("requests", 1, Duration.ofHours(1), 1)), 0,
          1000, null));
      AcquireOptions wait = AcquireOptions.builder().timeout(Duration.ofMinutes(1)).build();
      List<CompletableFuture<Permit>> parked = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        parked.add(greedy.acquireAsync("slow", Load.requests(1), wait));
      }
      await().until(() -> waiting(s) == 3);

      assertThatThrownBy(() -> greedy.acquire("slow", Load.requests(1), wait))
          .isInstanceOf(WaitingRoomFullException.class)
          .hasMessageContaining("this connection already has 3 acquires waiting")
          .hasMessageContaining("--max-waiting-per-connection");
      assertThat(waiting(s)).as("the refused acquire left no waiter").isEqualTo(3);

      CompletableFuture<Permit> elsewhere = other.acquireAsync("slow", Load.requests(1), wait);
      await().until(() -> waiting(s) == 4);
      for (int i = 0; i < 3; i++) {
        parked.add(greedySession.acquireAsync("slow", Load.requests(1), wait));
      }
      await().until(() -> waiting(s) == 7);
      CompletableFuture<Permit> fourthOnSession = greedySession.acquireAsync("slow", Load.requests(1), wait);
      assertThatThrownBy(() -> fourthOnSession.get(5, TimeUnit.SECONDS))
          .isInstanceOf(ExecutionException.class).hasCauseInstanceOf(WaitingRoomFullException.class);

      parked.get(0).cancel(false);
      await().until(() -> waiting(s) == 6);
      CompletableFuture<Permit> again = greedy.acquireAsync("slow", Load.requests(1), wait);
      await().until(() -> waiting(s) == 7);
      assertThat(again).as("a slot freed on the connection is usable again").isNotDone();
      assertThat(elsewhere).isNotDone();

      // Every caller gives up: the room empties (and the clients close at once, with no call open).
      parked.forEach(f -> f.cancel(false));
      again.cancel(false);
      elsewhere.cancel(false);
      await().until(() -> waiting(s) == 0);
    }
  }
}
