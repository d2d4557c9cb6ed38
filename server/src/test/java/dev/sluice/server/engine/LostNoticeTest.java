package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.server.FaultProxy;
import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A grant notice lost while a node's connections to Redis were down (issue 24's campaign: two
 * seconds after a node's connections were reset, the rate was at 29-49/s of 60). Node b grants
 * a waiter parked on node a while a's link is cut, so the notice published to a is lost; then
 * a's connections are reset and come back. Without asking again what became of its waiters, a
 * would hold the grant, and its slot, unheard until the waiter's deadline (600 s here).
 */
class LostNoticeTest {

  private static final long SEC = 1_000_000_000L;
  // Names of its own: an engine another test left reconnecting could meet this test's Redis on a
  // reused port, and must not share a node id or a resource with it.
  private static final String R = "lost-notice";

  private RedisProcess redis;
  private FaultProxy proxy;
  private FakeClock clock;
  private RedisEngine a;
  private RedisEngine b;

  @BeforeEach
  void setUp() throws Exception {
    redis = RedisProcess.start();
    proxy = new FaultProxy(redis.port());
    clock = new FakeClock();
    a = RedisEngine.builder().uri("redis://127.0.0.1:" + proxy.port()).nodeId("lost-notice-a").ticker(clock)
        .scheduler(clock).housekeeping(Duration.ZERO).build();
    b = RedisEngine.builder().uri(redis.uri()).nodeId("lost-notice-b").ticker(clock).scheduler(clock)
        .housekeeping(Duration.ZERO).build();
  }

  @AfterEach
  void tearDown() throws Exception {
    if (a != null) {
      a.closeStore();
    }
    if (b != null) {
      b.closeStore();
    }
    proxy.close();
    redis.close();
  }

  @Test
  void aWaiterWhoseGrantNoticeWasLostGetsItOnceTheConnectionsAreBack() {
    sync(b).setLimit(new LimitSpec(R, List.of(new RateSpec("requests", 1, Duration.ofSeconds(1), 1)), 0, 0, null));
    clock.advance(Duration.ofSeconds(1));
    sync(b).acquire(R, Map.of(), Lane.DEFAULT, 0, "drain").future().join(); // the bucket is empty
    Ticket parked = a.acquire(R, Map.of(), Lane.DEFAULT, 600 * SEC, "parked");
    // In line in Redis before the link is cut (a reads the limit first: under load that can
    // outlast a batch already answered, and the acquire would be cut off on its way).
    await().atMost(Duration.ofSeconds(10))
        .until(() -> sync(b).stats(R).waiting().get(Lane.DEFAULT) == 1);
    a.awaitQuiet();
    assertThat(parked.future()).isNotDone();

    proxy.blackhole();
    clock.advance(Duration.ofSeconds(1));
    // b's acquire drains the line: the parked waiter is granted, its notice to a is lost.
    Ticket other = sync(b).acquire(R, Map.of(), Lane.DEFAULT, 0, "other");
    assertThat(other.future()).isCompletedExceptionally(); // the token went to the waiter ahead
    assertThat(sync(b).stats(R).inFlight()).isEqualTo(2);

    proxy.resetAll(); // a's connections are reset while held: the notice is lost with them
    proxy.restore();
    await().atMost(Duration.ofSeconds(15)).until(() -> {
      clock.advance(Duration.ofMillis(250)); // the node asks again a moment after reconnecting
      return parked.future().isDone();
    });
    assertThat(parked.future().join().permitId()).isNotBlank();
  }
}
