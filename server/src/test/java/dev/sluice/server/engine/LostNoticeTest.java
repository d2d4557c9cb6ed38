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

  /** A limit of {@code perSecond}/s burst 1 with its bucket emptied by b, and a waiter parked on a. */
  private Ticket parkBehindAnEmptyBucket(long perSecond) {
    sync(b).setLimit(new LimitSpec(R, List.of(new RateSpec("requests", perSecond, Duration.ofSeconds(1), 1)), 0, 0,
        null));
    clock.advance(Duration.ofSeconds(1));
    sync(b).acquire(R, Map.of(), Lane.DEFAULT, 0, "drain").future().join(); // the bucket is empty
    Ticket parked = a.acquire(R, Map.of(), Lane.DEFAULT, 600 * SEC, "parked");
    // In line in Redis before the link is cut (a reads the limit first: under load that can
    // outlast a batch already answered, and the acquire would be cut off on its way).
    await().atMost(Duration.ofSeconds(10))
        .until(() -> sync(b).stats(R).waiting().get(Lane.DEFAULT) == 1);
    a.awaitQuiet();
    return parked;
  }

  @Test
  void aWaiterWhoseGrantNoticeWasLostGetsItOnceTheConnectionsAreBack() {
    Ticket parked = parkBehindAnEmptyBucket(1);
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

  /**
   * A grant notice held up on the way (a's link held its replies while b granted a's waiter)
   * reaches a older than the grant stays fresh. Handed over then, it would reach the upstream
   * together with the grants made since; so a asks again with the request id, the script
   * forfeits the stale grant, and the waiter waits at the head of the line for fresh capacity.
   */
  @Test
  void aGrantNoticeHeldUpOnTheWayIsNotHandedOverStale() {
    // 10/s, burst 1 (a grant stays fresh 50 ms), one at a time: the parked waiter is granted
    // when b releases, never by a wake-up of a's own.
    sync(b).setLimit(new LimitSpec(R, List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 1)), 1, 0, null));
    clock.advance(Duration.ofSeconds(1));
    Grant first = sync(b).acquire(R, Map.of(), Lane.DEFAULT, 0, "first").future().join();
    Ticket parked = a.acquire(R, Map.of(), Lane.DEFAULT, 600 * SEC, "parked");
    await().atMost(Duration.ofSeconds(10))
        .until(() -> sync(b).stats(R).waiting().get(Lane.DEFAULT) == 1);
    a.awaitQuiet();
    clock.advance(Duration.ofMillis(100)); // a token is back; the slot is still held

    proxy.holdReplies();
    // b's release lets the parked waiter go: its notice to a is held up on the way.
    assertThat(sync(b).release(R, first.permitId(), Map.of(), false, false)).isTrue();
    assertThat(sync(b).stats(R).granted()).isEqualTo(2);
    clock.advance(Duration.ofMillis(200)); // the grant is 200 ms old when the notice arrives

    proxy.restore();
    await().atMost(Duration.ofSeconds(10)).until(() -> parked.future().isDone());
    Grant got = parked.future().join();
    ResourceSnapshot s = sync(b).stats(R);
    assertThat(a.staleGrants()).isEqualTo(1);
    assertThat(s.forfeited()).as("the stale grant is forfeited, not handed over").isEqualTo(1);
    assertThat(s.granted()).isEqualTo(3);
    assertThat(s.inFlight()).isEqualTo(1);
    assertThat(got.freshNanos()).isEqualTo(Duration.ofMillis(50).toNanos()); // made just now
  }

  /**
   * A wake-up of a's own grants its waiter while a's replies are held: the call times out and
   * its grant is lost with the reply. Once Redis answers a again, a asks what became of its
   * waiters, and the waiter is served (its grant, now stale, is forfeited for a fresh one)
   * instead of waiting out its 600 s deadline.
   */
  @Test
  void aGrantInAWakeUpWhoseReplyWasLostIsFoundOnceRedisAnswersAgain() {
    Ticket parked = parkBehindAnEmptyBucket(10);

    proxy.holdReplies();
    clock.advance(Duration.ofMillis(100)); // a's wake-up runs, grants, and hears nothing back
    assertThat(sync(b).stats(R).granted()).isEqualTo(2);
    assertThat(parked.future()).isNotDone();
    proxy.restore();
    await().atMost(Duration.ofSeconds(15)).until(() -> {
      clock.advance(Duration.ofMillis(250)); // a's next wake-up is answered; it asks again
      return parked.future().isDone();
    });
    assertThat(parked.future().join().permitId()).isNotBlank();
    assertThat(sync(b).stats(R).inFlight()).isEqualTo(2); // drain's, and the one handed over
  }
}
