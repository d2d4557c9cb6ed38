package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * What only a shared store does: several nodes on one real redis-server, waiters parked on one
 * node granted by another, failover retries, node loss, Redis loss. One fake clock stands for
 * Redis time and drives every node's timers; news between nodes travels over real pub/sub, so
 * those checks wait for it (Awaitility), never for time.
 */
class RedisEngineTest {

  private static final long SEC = 1_000_000_000L;
  private static RedisProcess redis;

  private FakeClock clock;
  private final List<RedisEngine> nodes = new ArrayList<>();

  @BeforeAll
  static void startRedis() throws Exception {
    redis = RedisProcess.start();
  }

  @AfterAll
  static void stopRedis() {
    redis.close();
  }

  @BeforeEach
  void setUp() {
    redis.flushAll();
    clock = new FakeClock();
  }

  @AfterEach
  void tearDown() {
    for (RedisEngine n : nodes) {
      try {
        n.closeStore();
      } catch (RuntimeException e) {
        // crashed already
      }
    }
  }

  private RedisEngine node(String id) throws Exception {
    RedisEngine e =
        RedisEngine.builder()
            .uri(redis.uri())
            .nodeId(id)
            .ticker(clock)
            .scheduler(clock)
            .housekeeping(Duration.ZERO)
            .build();
    nodes.add(e);
    return e;
  }

  private static void limit(Engine e, String name, long concurrency, long perSecond, Duration lease) {
    List<RateSpec> rates =
        perSecond == 0 ? List.of() : List.of(new RateSpec("requests", perSecond, Duration.ofSeconds(1), 1));
    sync(e).setLimit(new LimitSpec(name, rates, concurrency, 0, lease));
  }

  private static Ticket acquire(Engine e, String name, String rid) {
    return sync(e).acquire(name, Map.of(), Lane.DEFAULT, 600 * SEC, rid);
  }

  /** The ticket's grant, waited for up to 10 s on the future itself (no poll interval to sit out). */
  private static Grant awaitGrant(Ticket t) throws Exception {
    try {
      return t.future().get(10, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      throw new CompletionException(e.getCause());
    }
  }

  /**
   * No method waits for Redis (issue 15, item 4): with Redis stalled for longer than a command
   * may take (1 s), every call returns with its answer still to come. A method that waited would
   * return a future already settled, with the answer or the store's refusal.
   */
  @Test
  void noMethodWaitsForAStalledRedis() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b"); // caches no limit: its reads of one go to Redis
    limit(a, "c", 1, 0, Duration.ofMinutes(1));
    limit(a, "gone", 1, 0, Duration.ofMinutes(1));
    Grant held = acquire(a, "c", "r1").future().join();
    redis.pause(Duration.ofSeconds(3));
    Map<String, java.util.concurrent.CompletableFuture<?>> calls = new java.util.LinkedHashMap<>();
    Ticket parked = a.acquire("c", Map.of(), Lane.DEFAULT, 600 * SEC, "r2");
    calls.put("acquire", parked.future());
    calls.put("renew", a.renew("c", List.of(held.permitId())));
    calls.put("cancel", a.cancel("c", "r9"));
    calls.put("report", a.report("c", false, 0, Map.of()));
    calls.put("pause", a.pause("c", SEC));
    calls.put("resume", a.resume("c"));
    calls.put("stats(c)", a.stats("c"));
    calls.put("stats()", a.stats());
    calls.put("setLimit", a.setLimit(new LimitSpec("d", List.of(), 1, 0, Duration.ofMinutes(1))));
    calls.put("deleteLimit", a.deleteLimit("gone"));
    calls.put("listLimits", a.listLimits(""));
    calls.put("release", a.release("c", held.permitId(), Map.of(), false, false));
    calls.put("getLimit on b", b.getLimit("c"));
    calls.put("leaseTtlNanos on b", b.leaseTtlNanos("c"));
    calls.put("acquire on b", b.acquire("c", Map.of(), Lane.DEFAULT, 0, "r3").future());
    calls.forEach((name, f) -> assertThat(f).as(name + " returned settled: it waited for Redis").isNotDone());
    calls.remove("acquire"); // parked, as it should be
    calls.forEach((name, f) -> await().atMost(Duration.ofSeconds(30)).until(f::isDone));
    parked.cancel();
  }

  /**
   * Found by the fault harness once it checked leases: Redis away for 4 s (killed, restarted
   * from AOF) took the leases of live holders of 5 s leases, whose renewals could not get
   * through meanwhile. A lease that ran out while the store was away waits, for a while after it
   * is back, for its holder to renew it.
   */
  @Test
  void aLeaseThatRanOutWhileRedisWasAwayWaitsForItsHolderToRenew() throws Exception {
    RedisEngine a = node("a");
    sync(a).setLimit(new LimitSpec("c", List.of(), 1, 0, Duration.ofSeconds(5)));
    Grant held = acquire(a, "c", "holder").future().join();
    redis.pause(Duration.ofSeconds(2));
    assertThatThrownBy(() -> sync(a).renew("c", List.of(held.permitId())))
        .as("the holder's renewal does not get through").hasMessageContaining("retry");
    clock.advance(Duration.ofSeconds(6)); // its lease runs out while Redis is away
    await().atMost(Duration.ofSeconds(20)).ignoreExceptions().until(() -> sync(a).stats("c") != null);

    assertThat(sync(a).renew("c", List.of(held.permitId()))).as("renewed, not expired").isEmpty();
    assertThat(sync(a).stats("c").expired()).isZero();
    Ticket next = acquire(a, "c", "next");
    assertThat(next.future()).as("the slot is still the holder's").isNotDone();

    // Past the grace, a lease nobody renews runs out as ever.
    clock.advance(RedisStore.LEASE_GRACE_WINDOW.plusSeconds(3)); // short of next's own lease
    awaitGrant(next);
    assertThat(sync(a).stats("c").expired()).isEqualTo(1);
    assertThat(sync(a).stats("c").inFlight()).as("next holds the slot").isEqualTo(1);
  }

  @Test
  void aWaiterOnOneNodeIsGrantedByAReleaseOnAnother() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "c", 1, 0, Duration.ofMinutes(1));
    Grant held = acquire(a, "c", "r1").future().join();
    Ticket waiting = acquire(b, "c", "r2");
    assertThat(waiting.future()).isNotDone();

    assertThat(sync(a).release("c", held.permitId(), Map.of(), false, false)).isTrue();
    // No clock movement: the release on a granted b's waiter and told b over pub/sub.
    Grant g = awaitGrant(waiting);
    assertThat(waiting.claim()).isTrue();
    assertThat(sync(b).stats("c").inFlight()).isEqualTo(1);
    assertThat(sync(a).release("c", g.permitId(), Map.of(), false, false))
        .as("any node releases any permit").isTrue();
  }

  @Test
  void grantsFollowArrivalAtRedisAcrossNodes() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "r", 0, 1, null); // 1/s, starts empty
    Ticket first = acquire(a, "r", "x1");
    Ticket second = acquire(b, "r", "x2");
    Ticket third = acquire(a, "r", "x3");
    clock.advance(Duration.ofSeconds(1));
    awaitGrant(first);
    assertThat(second.future()).isNotDone();
    clock.advance(Duration.ofSeconds(1));
    awaitGrant(second);
    assertThat(third.future()).isNotDone();
    clock.advance(Duration.ofSeconds(1));
    awaitGrant(third);
  }

  /**
   * A waiter's entry keeps its times to the microsecond at today's epoch (Redis TIME reads about
   * 1.7e15 us): Lua's own number-to-text conversion keeps 14 digits, which there rounds to 100 us
   * and would misstate how long the waiter waited, when its deadline falls and when it ages.
   */
  @Test
  void aWaiterStampedAtAnEpochLikeClockReportsItsWaitToTheMicrosecond() throws Exception {
    clock.advance(Duration.ofNanos(1_765_000_000_123_456_000L - clock.read()));
    RedisEngine a = node("a");
    limit(a, "r", 0, 1, null); // 1/s, starts empty: a token in exactly 1 s
    Ticket t = acquire(a, "r", "x1");
    assertThat(t.future()).isNotDone();
    clock.advance(Duration.ofSeconds(1));
    assertThat(awaitGrant(t).waitedNanos()).isEqualTo(Duration.ofSeconds(1).toNanos());
  }

  @Test
  void aRetryOnAnotherNodeTakesTheWaiterOverInItsPlace() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "r", 0, 1, null);
    Ticket onA = acquire(a, "r", "lost-call");
    Ticket behind = acquire(a, "r", "behind");
    // The client lost its connection to a and retries on b with the same request id.
    Ticket onB = acquire(b, "r", "lost-call");
    assertThat(sync(a).stats("r").waiting().get(Lane.DEFAULT)).as("still one waiter, not two").isEqualTo(2);

    // a's call hears at once that it lost its place (its client went away, or, if this was a
    // late copy of an older call, is told to take the line back).
    await().atMost(Duration.ofSeconds(10)).until(() -> onA.future().isDone());
    assertThatThrownBy(() -> onA.future().join()).hasMessageContaining("taken over by a retry");

    clock.advance(Duration.ofSeconds(1));
    awaitGrant(onB);
    assertThat(behind.future()).as("kept its place ahead of later arrivals").isNotDone();
    clock.advance(Duration.ofSeconds(1));
    awaitGrant(behind);
    assertThat(sync(b).stats("r").granted()).isEqualTo(2);
  }

  /**
   * Found by the fault campaign: workers cut off from node a for 1.9 s retried on b; when the
   * cut healed, a received the held-up first call and then its cancel. The late call took the
   * line over from b's and its cancel took the waiter out, while b's call waited on, unheard,
   * until its deadline. Now b's call hears at once that it was taken over (its client retries:
   * CANCELLED), and the retry is back in line.
   */
  @Test
  void aLateCopyOfAnOlderCallDoesNotLeaveTheNewerOneWaitingForNothing() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "r", 0, 1, null); // its bucket starts empty: every acquire waits
    Ticket live = acquire(b, "r", "call"); // the client's retry, on b
    Ticket late = acquire(a, "r", "call"); // the older call, delivered when the cut healed
    late.cancel(); // ... and its cancel right behind it
    await().atMost(Duration.ofSeconds(10)).until(() -> late.future().isDone() && live.future().isDone());
    assertThatThrownBy(() -> live.future().join())
        .as("b's call must end, so its client retries, not wait for its deadline")
        .hasMessageContaining("taken over by a retry");
    Ticket retry = acquire(b, "r", "call");
    clock.advance(Duration.ofSeconds(1));
    awaitGrant(retry);
    assertThat(sync(b).stats("r").granted()).isEqualTo(1);
  }

  /**
   * A leave from an earlier call of a request id (cancelled, or at its deadline) that reaches
   * Redis after a retry of the id on the same node took the line over leaves the retry in line.
   */
  @Test
  void aLateLeaveOfAnEarlierCallOnTheSameNodeLeavesTheRetryInLine() throws Exception {
    RedisEngine a = node("a");
    limit(a, "r", 0, 1, null);
    Ticket earlier = acquire(a, "r", "call");
    String earlierAttempt = RedisEngine.attemptOf(earlier);
    Ticket retry = acquire(a, "r", "call");
    assertThatThrownBy(() -> earlier.future().join()).hasMessageContaining("taken over by a retry");
    assertThat(RedisEngine.attemptOf(retry)).isNotEqualTo(earlierAttempt);

    List<Object> reply = a.script("r", "leave", "call", "cancelled", "1", earlierAttempt);
    assertThat(reply.get(0)).as("not the earlier call's entry any more").isEqualTo("MOVED");
    assertThat(sync(a).stats("r").waiting().get(Lane.DEFAULT)).isEqualTo(1);
    clock.advance(Duration.ofSeconds(1));
    awaitGrant(retry);

    // The retry's own leave still works (its attempt), and a leave naming no attempt as before.
    Ticket other = acquire(a, "r", "other");
    assertThat(a.script("r", "leave", "other", "cancelled", "1", RedisEngine.attemptOf(other)).get(0))
        .isEqualTo("LEFT");
  }

  /**
   * A node asks again for its own waiter's grant with the same call (after an outage, or a reply
   * it lost); the grant may have reached its caller meanwhile, on another path. So the same call
   * asking again never forfeits a late grant, unless it names the permit it found stale and held
   * back (the campaign found a live holder's permit forfeited under it: its lease "expired").
   */
  @Test
  void theSameCallAskingAgainForfeitsALateGrantOnlyWhenItNamesIt() throws Exception {
    RedisEngine a = node("a");
    limit(a, "s", 0, 10, null); // 10/s, burst 1: a grant stays fresh 50 ms
    clock.advance(Duration.ofSeconds(1));
    String load = RedisCalls.encodeLoad(Map.of("requests", 1L));
    List<Object> first = a.script("s", "acquire", "", "x", "2", load, "5000000", "call-1");
    assertThat(first.get(0)).isEqualTo("GRANTED");
    String permit = (String) first.get(1);
    clock.advance(Duration.ofSeconds(1)); // late

    List<Object> again = a.script("s", "acquire", "", "x", "2", load, "5000000", "call-1");
    assertThat(again.subList(0, 2)).as("the same call, naming nothing").containsExactly("GRANTED", permit);
    again = a.script("s", "acquire", "", "x", "2", load, "5000000", "call-1", "another");
    assertThat(again.subList(0, 2)).as("naming another permit").containsExactly("GRANTED", permit);
    assertThat(sync(a).stats("s").forfeited()).isZero();

    List<Object> named = a.script("s", "acquire", "", "x", "2", load, "5000000", "call-1", permit);
    assertThat(named.subList(0, 2)).as("naming it: forfeited, back in line").containsExactly("QUEUED", "taken");
    assertThat(sync(a).stats("s").forfeited()).isEqualTo(1);
    assertThat(a.script("s", "release", permit, "plain", "-").get(0)).isEqualTo("UNKNOWN");
  }

  @Test
  void aRetryOfAGrantedAcquireGetsTheSamePermitAndTheFirstNodeCannotTakeItBack() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "c", 1, 0, Duration.ofMinutes(1));
    Ticket onA = acquire(a, "c", "call-1");
    Grant g = onA.future().join();
    // a could not deliver the answer (the client's connection died) ...
    Ticket onB = acquire(b, "c", "call-1");
    assertThat(onB.future().join().permitId()).isEqualTo(g.permitId());
    assertThat(sync(b).stats("c").inFlight()).as("never granted twice").isEqualTo(1);
    // ... and gives its unclaimed grant back, which must not free what the client now holds.
    onA.cancel();
    assertThat(sync(b).stats("c").inFlight()).isEqualTo(1);
    Ticket other = acquire(b, "c", "call-2");
    assertThat(other.future()).isNotDone();
    assertThat(sync(b).release("c", g.permitId(), Map.of(), false, false)).isTrue();
    awaitGrant(other);
  }

  @Test
  void aDeadNodesWaitersAreDroppedAndItsLeasesExpire() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "c", 1, 0, Duration.ofSeconds(10));
    Grant held = acquire(a, "c", "held").future().join();
    Ticket deadWaiter = acquire(a, "c", "dead-waiter");
    Ticket live = acquire(b, "c", "live");
    a.crash();

    // b beats every second; after the node timeout a's waiter is dropped, and when a's
    // client's lease runs out (nobody renews it) the slot goes to b's waiter, not a dead one.
    clock.advance(Duration.ofSeconds(9));
    assertThat(live.future()).isNotDone();
    assertThat(sync(b).stats("c").waiting().get(Lane.DEFAULT)).as("a's waiter dropped").isEqualTo(1);
    clock.advance(Duration.ofSeconds(1));
    awaitGrant(live);
    assertThat(deadWaiter.future()).isNotDone();
    assertThat(sync(b).release("c", held.permitId(), Map.of(), false, false))
        .as("the dead node's lease has expired").isFalse();
  }

  @Test
  void leasesOfADeadNodesClientsStayValidWhenRenewedElsewhere() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "c", 1, 0, Duration.ofSeconds(10));
    Grant held = acquire(a, "c", "held").future().join();
    a.crash();
    clock.advance(Duration.ofSeconds(8));
    assertThat(sync(b).renew("c", List.of(held.permitId()))).as("renewed through b").isEmpty();
    clock.advance(Duration.ofSeconds(8));
    assertThat(sync(b).stats("c").inFlight()).isEqualTo(1);
    assertThat(sync(b).release("c", held.permitId(), Map.of(), false, false)).isTrue();
  }

  @Test
  void redisDownAnswersUnavailableAndTheNodeRecoversWithLimitsRestoredAndBucketsEmpty()
      throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    sync(a).setLimit(new LimitSpec("r", List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 10)), 0, 0, null));
    clock.advance(Duration.ofSeconds(2));
    assertThat(sync(b).stats("r").available().get("requests")).isEqualTo(10.0);

    redis.kill();
    assertThatThrownBy(() -> acquire(a, "r", "during-outage"))
        .isInstanceOfSatisfying(EngineException.class, e -> {
          assertThat(e.reason()).isEqualTo(EngineException.Reason.UNAVAILABLE);
          assertThat(e.getMessage()).contains("unreachable").contains("retry on another node");
        });

    redis.restart(); // back, but empty: it lost every key
    await().atMost(Duration.ofSeconds(15)).ignoreExceptions().until(() -> {
      b.housekeep();
      return true;
    });
    // The second node finds the limits already restored.
    await().atMost(Duration.ofSeconds(15)).ignoreExceptions().until(() -> {
      a.housekeep();
      return true;
    });
    assertThat(sync(a).getLimit("r")).isPresent();
    assertThat(sync(b).stats("r").available().get("requests")).as("buckets start empty").isZero();
    Ticket t = acquire(a, "r", "after");
    clock.advance(Duration.ofMillis(100));
    awaitGrant(t);
  }

  @Test
  void waitersOfANodeCutOffFromRedisFailOverOnceTheOthersHaveDroppedThem() throws Exception {
    RedisEngine a = node("a");
    limit(a, "r", 0, 1, null);
    Ticket parked = acquire(a, "r", "parked");
    redis.kill();
    // a notices at its next wake-up (1 s); for the node timeout (3 s) after that its waiters
    // keep their place, as the other nodes would still count a as alive.
    clock.advance(Duration.ofSeconds(3));
    assertThat(parked.future()).isNotDone();
    clock.advance(Duration.ofSeconds(2)); // past the node timeout: a's place in line is gone
    assertThat(parked.future()).isCompletedExceptionally();
    assertThatThrownBy(() -> parked.future().join())
        .hasCauseInstanceOf(EngineException.class)
        .hasMessageContaining("lost contact with Redis");
    redis.restart();
  }

  @Test
  void aDeletedLimitEndsWaitersOnEveryNode() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "r", 0, 1, null);
    Ticket onB = acquire(b, "r", "w");
    sync(a).deleteLimit("r");
    await().atMost(Duration.ofSeconds(10)).until(() -> onB.future().isDone());
    assertThatThrownBy(() -> onB.future().join())
        .isInstanceOf(CompletionException.class)
        .hasCauseInstanceOf(EngineException.class)
        .hasMessageContaining("has no limit");
    assertThat(sync(b).getLimit("r")).isEmpty();
  }

  @Test
  void cancelByRequestIdWorksFromAnyNode() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "r", 0, 1, null);
    Ticket onA = acquire(a, "r", "to-cancel");
    assertThat(sync(b).cancel("r", "to-cancel")).isTrue();
    await().atMost(Duration.ofSeconds(10)).until(() -> onA.future().isDone());
    assertThat(onA.future()).isCompletedExceptionally();
    assertThat(sync(a).stats("r").waiting().get(Lane.DEFAULT)).isZero();
    assertThat(sync(b).cancel("r", "to-cancel")).as("only once").isFalse();
  }

  @Test
  void acquiresSentInOneBatchKeepArrivalOrderAndNeverExceedTheLimit() throws Exception {
    RedisEngine a = node("a");
    limit(a, "c", 3, 0, Duration.ofMinutes(1));
    a.holdBatches(true);
    List<Ticket> tickets = new ArrayList<>();
    for (int i = 0; i < 40; i++) {
      tickets.add(a.acquire("c", Map.of(), Lane.DEFAULT, 600 * SEC, "call-" + i));
    }
    a.holdBatches(false); // 40 acquires in one script call
    await().atMost(Duration.ofSeconds(10))
        .until(() -> sync(a).stats("c").waiting().get(Lane.DEFAULT) == 37);
    for (int next = 0; next < 40; next++) {
      // The earliest three not yet released hold the slots, in arrival order, and only they.
      for (int i = 0; i < 40; i++) {
        boolean holds = i >= next && i < next + 3;
        if (holds) {
          awaitGrant(tickets.get(i));
        } else if (i >= next) {
          assertThat(tickets.get(i).future()).as("call-" + i).isNotDone();
        }
      }
      assertThat(sync(a).stats("c").inFlight()).isLessThanOrEqualTo(3);
      Grant g = tickets.get(next).future().join();
      assertThat(sync(a).release("c", g.permitId(), Map.of(), false, false)).isTrue();
    }
    assertThat(sync(a).stats("c").granted()).isEqualTo(40);
    assertThat(sync(a).stats("c").inFlight()).isZero();
  }

  @Test
  void aReleaseAndANewAcquireInOneBatchLetNoNewcomerPassAWaiter() throws Exception {
    RedisEngine a = node("a");
    RedisEngine b = node("b");
    limit(a, "c", 1, 0, Duration.ofMinutes(1));
    Grant held = acquire(a, "c", "held").future().join();
    Ticket waiter = acquire(b, "c", "waiter"); // queued on another node
    a.holdBatches(true);
    var released = a.release("c", held.permitId(), Map.of(), false, false);
    Ticket first = a.acquire("c", Map.of(), Lane.DEFAULT, 600 * SEC, "newcomer");
    // The same request id again, in the same batch: it takes the first one over in its place.
    Ticket newcomer = a.acquire("c", Map.of(), Lane.DEFAULT, 600 * SEC, "newcomer");
    assertThatThrownBy(() -> first.future().join()).hasMessageContaining("taken over by a retry");
    a.holdBatches(false);
    assertThat(released.get()).isTrue();
    Grant granted = awaitGrant(waiter);
    assertThat(newcomer.future()).isNotDone();
    assertThat(sync(a).stats("c").waiting().get(Lane.DEFAULT)).isEqualTo(1);
    assertThat(sync(b).release("c", granted.permitId(), Map.of(), false, false)).isTrue();
    awaitGrant(newcomer);
    assertThat(sync(a).stats("c").inFlight()).isEqualTo(1);
  }

  @Test
  void aReleaseOfAnUnknownPermitInABatchIsFalseAndHarmsNoOther() throws Exception {
    RedisEngine a = node("a");
    limit(a, "c", 2, 0, Duration.ofMinutes(1));
    Grant g = acquire(a, "c", "one").future().join();
    a.holdBatches(true);
    var bogus = a.release("c", "no-such-permit", Map.of(), false, false);
    // A batch goes to Redis as one line per op, fields split at spaces: a permit id that tries
    // to smuggle in an op of its own (here a second release of the real permit) is no permit.
    var smuggled = a.release("c", g.permitId() + " plain -\nr " + g.permitId(), Map.of(), false, false);
    var spaced = a.release("c", " " + g.permitId(), Map.of(), false, false);
    var real = a.release("c", g.permitId(), Map.of(), false, false);
    var again = a.release("c", g.permitId(), Map.of(), false, false);
    a.holdBatches(false);
    assertThat(bogus.get()).isFalse();
    assertThat(smuggled.get()).isFalse();
    assertThat(spaced.get()).isFalse();
    assertThat(real.get()).isTrue();
    assertThat(again.get()).as("released once only").isFalse();
    assertThat(sync(a).stats("c").inFlight()).isZero();
  }

  /**
   * A permit granted before a permit's record became one field (its load alone in its field, the
   * rest in '#g', '#r', ... beside it) is released in full after an upgrade: its request id read
   * from the old field, every old field dropped.
   */
  @Test
  void aPermitRecordedByAnOlderVersionIsReleasedInFull() throws Exception {
    RedisEngine a = node("a");
    limit(a, "c", 2, 0, Duration.ofMinutes(1));
    Grant g = acquire(a, "c", "old-call").future().join();
    String pl = RedisCalls.keys("c")[3];
    String pid = g.permitId();
    assertThat(redis.command("HDEL " + pl + " " + pid)).isEqualTo(":1");
    assertThat(redis.command("HSET " + pl + " " + pid + " requests=1 " + pid + "#g 1 " + pid + "#r old-call"))
        .isEqualTo(":3");
    assertThat(sync(a).release("c", pid, Map.of(), false, false)).isTrue();
    assertThat(redis.command("HLEN " + pl)).isEqualTo(":0");
    assertThat(sync(a).stats("c").inFlight()).isZero();
    // Its request id, read from the old field, is used up as a released one is.
    assertThatThrownBy(() -> acquire(a, "c", "old-call").future().join()).hasMessageContaining("already got a permit");
  }

  @Test
  void badStoreUrisAndUnreachableRedisAreClearErrors() {
    assertThatThrownBy(() -> RedisEngine.builder().uri("http://localhost:6379"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("redis://host:port");
    assertThatThrownBy(
            () -> RedisEngine.builder().uri("redis://127.0.0.1:1").scheduler(clock).build())
        .hasMessageContaining("cannot reach Redis at redis://127.0.0.1:1")
        .hasMessageContaining("fix --store");
  }
}
