package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Slice mode ({@link SliceEngine}) over each store, on a fake clock: nodes take capacity in
 * slices and grant from them; the store sees slices, never the permits; the precision bound
 * (the default's plus {@code rate x hold}) holds over a run of three nodes; order within a
 * node, timeouts, request ids, debts, feedback and limits out of its scope behave as documented.
 */
@ParameterizedClass(name = "{0}")
@EnumSource(SliceEngineTest.Store.class)
class SliceEngineTest {

  enum Store {
    MEMORY,
    REDIS
  }

  @Parameter Store store;

  private static RedisProcess redis;
  private static final long SEC = 1_000_000_000L;
  private static final Duration HOLD = Duration.ofMillis(50);

  private FakeClock clock;
  private final List<Engine> stores = new ArrayList<>();
  private MemoryEngine memory;

  @BeforeEach
  void setUp() {
    clock = new FakeClock();
  }

  @AfterEach
  void tearDown() {
    stores.forEach(Engine::closeStore);
  }

  @AfterAll
  static void stopRedis() {
    if (redis != null) {
      redis.close();
      redis = null;
    }
  }

  /** A node in slice mode for every resource, on the one store all nodes share. */
  private SliceEngine node() throws Exception {
    Engine under;
    if (store == Store.MEMORY) {
      if (memory == null) {
        memory = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
        stores.add(memory);
      }
      under = memory;
    } else {
      if (redis == null) {
        redis = RedisProcess.start();
      }
      if (stores.isEmpty()) {
        redis.flushAll();
      }
      under = RedisEngine.builder().uri(redis.uri()).ticker(clock).scheduler(clock).housekeeping(Duration.ZERO).build();
      stores.add(under);
    }
    return new SliceEngine(under, List.of(new SliceEngine.Rule("*", HOLD)), clock, clock);
  }

  private static LimitSpec rate(String name, long perSecond, long burst) {
    return new LimitSpec(name, List.of(new RateSpec("requests", perSecond, Duration.ofSeconds(1), burst)), 0, 0, null);
  }

  private static Ticket acquire(Engine e, String name) {
    return e.acquire(name, Map.of("requests", 1L), Lane.DEFAULT, 60 * SEC);
  }

  /** Waits for an answer that may come from Redis's side (a reply on another thread). */
  private static void answered(Ticket t) {
    if (!t.future().isDone()) {
      await().atMost(Duration.ofSeconds(10)).pollDelay(Duration.ZERO).pollInterval(Duration.ofMillis(1))
          .until(() -> t.future().isDone());
    }
  }

  private static Grant grantOf(Ticket t) {
    answered(t);
    return t.future().join();
  }

  private static EngineException refusal(Ticket t) {
    answered(t);
    try {
      t.future().join();
    } catch (CompletionException e) {
      return (EngineException) EngineException.unwrap(e);
    }
    throw new AssertionError("granted, not refused");
  }

  /** Sets the limit and lets its bucket fill (buckets start empty). */
  private void full(Engine e, LimitSpec limit) {
    sync(e).setLimit(limit);
    sync(e).stats(limit.resource());
    RateSpec r = limit.rates().get(0);
    clock.advance(r.period().multipliedBy((r.burst() + r.amount() - 1) / r.amount()));
    assertThat(available(e, limit.resource())).as("a full bucket").isEqualTo((double) limit.rates().get(0).burst());
  }

  private double available(Engine e, String name) {
    return sync(e).stats(name).available().get("requests");
  }

  /** What the store granted this node so far: a full bucket of {@code burst} less what is left. */
  private double taken(Engine e, String name, long burst) {
    return burst - available(e, name);
  }

  @Test
  void permitsComeFromSlicesSizedByDemandAndTheStoreSeesOnlyTheSlices() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200)); // at most 50 ms of it: slices of up to 50
    Grant first = grantOf(acquire(a, "r"));
    assertThat(first.permitId()).startsWith("slice-");
    assertThat(a.slicesTaken()).as("a first slice of what the head needs").isEqualTo(1);
    assertThat(taken(a, "r", 200)).isEqualTo(1.0);
    for (int i = 1; i < 150; i++) {
      grantOf(acquire(a, "r"));
    }
    assertThat(a.localGrants()).isEqualTo(150);
    // Slices grow with the demand (1, 4, 16, 50, 50, ...): a handful of store calls, not 150.
    assertThat(a.slicesTaken()).isBetween(4L, 7L);
    assertThat(taken(a, "r", 200)).as("granted by the store: the permits, and at most one slice's rest")
        .isBetween(150.0, 200.0);
    // Releases stay on the node: rate-only permits hold nothing at the store.
    double before = available(a, "r");
    assertThat(sync(a).release("r", first.permitId(), Map.of(), false, false)).isTrue();
    assertThat(sync(a).release("r", first.permitId(), Map.of(), false, false)).as("released twice").isFalse();
    assertThat(available(a, "r")).isEqualTo(before);
  }

  @Test
  void aSliceIsDroppedItsHoldAfterTheStoreGrantedIt() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    for (int i = 0; i < 6; i++) {
      grantOf(acquire(a, "r")); // slices of 1, 4, then 16: 15 left
    }
    assertThat(a.slicesTaken()).isEqualTo(3);
    clock.advance(HOLD.minusMillis(1));
    grantOf(acquire(a, "r"));
    assertThat(a.slicesTaken()).as("still held 49 ms after").isEqualTo(3);
    clock.advance(Duration.ofMillis(1));
    grantOf(acquire(a, "r"));
    assertThat(a.slicesTaken()).as("dropped at 50 ms: a new slice").isEqualTo(4);
  }

  /**
   * The precision test: three nodes, 8 acquires in flight on each, 3 s stepped 1 ms at a time
   * on a limit of 100/s with a burst of 10. Every grant's instant is the engine's own stamp
   * (its arrival plus its wait). In any 1 s, at most the default's {@code burst + rate x 1 s}
   * plus {@code rate x hold}; and the limit is used, not starved.
   */
  @Test
  void threeNodesStayWithinTheBoundAndUseTheLimit() throws Exception {
    List<SliceEngine> nodes = List.of(node(), node(), node());
    sync(nodes.get(0)).setLimit(rate("p", 100, 10));
    List<Long> granted = Collections.synchronizedList(new ArrayList<>());
    AtomicInteger inFlight = new AtomicInteger();
    for (SliceEngine n : nodes) {
      for (int i = 0; i < 8; i++) {
        loop(n, granted, inFlight);
      }
    }
    for (int ms = 0; ms < 3_000; ms++) {
      clock.advance(Duration.ofMillis(1));
      settle(nodes, "p");
    }
    List<Long> at = new ArrayList<>(granted);
    Collections.sort(at);
    long bound = 10 + 100 + 100 * HOLD.toMillis() / 1000; // burst + rate x 1 s + rate x hold
    int densest = 0;
    for (int i = 0, j = 0; i < at.size(); i++) {
      while (at.get(i) - at.get(j) >= SEC) {
        j++;
      }
      densest = Math.max(densest, i - j + 1);
    }
    System.out.printf("slice precision (%s): %d grants in 3 s, densest second %d, bound %d (without slices %d)%n",
        store, at.size(), densest, bound, 110);
    assertThat(densest).as("grants in the densest second").isLessThanOrEqualTo((int) bound);
    // 10 + 300 the store could grant in 3 s; each node may lose a slice's rest at the end.
    assertThat(at.size()).as("grants in 3 s").isBetween(250, 310 + 3 * 5);
  }

  private void loop(SliceEngine n, List<Long> granted, AtomicInteger inFlight) {
    long arrival = clock.read();
    inFlight.incrementAndGet();
    n.acquire("p", Map.of("requests", 1L), Lane.DEFAULT, 600 * SEC).future().whenComplete((g, e) -> {
      if (g != null) {
        granted.add(arrival + g.waitedNanos());
        n.release("p", g.permitId(), Map.of(), false, false);
        loop(n, granted, inFlight);
      }
      inFlight.decrementAndGet();
    });
  }

  /** Waits until the node's slice request for {@code name}, if any, is not landing. */
  private static void settle(SliceEngine a, String name) {
    settle(List.of(a), name);
  }

  /** Waits until no node's slice request is between the store and the node (Redis answers apart). */
  private static void settle(List<SliceEngine> nodes, String name) {
    await().atMost(Duration.ofSeconds(10)).pollDelay(Duration.ZERO).pollInterval(Duration.ofMillis(1)).until(() -> {
      for (SliceEngine n : nodes) {
        Ticket t = n.fetching(name);
        if (t == null) {
          continue;
        }
        if (t.future().isDone()) {
          return false; // landing
        }
        if (t instanceof RedisWaiters.AsyncTicket at && !at.op.admitted.isDone()) {
          return false;
        }
      }
      return true;
    });
  }

  @Test
  void aNodeGrantsInArrivalOrderAndTimesOutWithTheStoresWords() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 10, 1)); // slices of 1 (50 ms of 10/s rounds to 0, so 1)
    grantOf(acquire(a, "r"));
    Ticket late = a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC / 20);
    List<Ticket> line = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      line.add(acquire(a, "r"));
    }
    assertThat(a.waitingHere("r")).isEqualTo(4);
    clock.advance(Duration.ofMillis(60));
    EngineException timedOut = refusal(late);
    assertThat(timedOut.reason()).isEqualTo(EngineException.Reason.DEADLINE);
    assertThat(timedOut.getMessage()).startsWith("not granted on 'r' within 50 ms");
    List<Integer> order = new ArrayList<>();
    for (int step = 0; step < 40 && order.size() < 3; step++) {
      clock.advance(Duration.ofMillis(10));
      settle(a, "r");
      for (int i = 0; i < 3; i++) {
        if (line.get(i).future().isDone() && !order.contains(i)) {
          order.add(i);
        }
      }
    }
    assertThat(order).containsExactly(0, 1, 2);
    assertThat(sync(a).acquire("r", Map.of("requests", 1L), Lane.DEFAULT, 0).future())
        .as("a single try with nothing in hand").isCompletedExceptionally();
  }

  @Test
  void requestIdsKeepTheirMeaningOnTheNode() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    Grant g = grantOf(a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "id-1", null));
    Grant again = grantOf(a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "id-1", null));
    assertThat(again.permitId()).as("a retry of a fresh held permit").isEqualTo(g.permitId());
    assertThat(a.localGrants()).isEqualTo(1);
    sync(a).release("r", g.permitId(), Map.of(), false, false);
    EngineException reused = refusal(a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "id-1", null));
    assertThat(reused.reason()).isEqualTo(EngineException.Reason.INVALID);
    assertThat(reused.getMessage()).contains("request id 'id-1' already got a permit on 'r'");
  }

  @Test
  void aSettleAboveTheGrantIsADebtTheNextSlicesPay() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    Grant g = grantOf(acquire(a, "r")); // a slice of 1, used
    assertThat(sync(a).release("r", g.permitId(), Map.of("requests", 60L), true, false)).isTrue();
    // 59 owed: the next grant takes a slice of 60, 59 of them for the debt.
    grantOf(acquire(a, "r"));
    assertThat(a.slicesTaken()).isEqualTo(2);
    assertThat(taken(a, "r", 200)).isEqualTo(61.0);
    // A settle below the grant refunds nothing: the tokens stay spent.
    Grant h = grantOf(acquire(a, "r"));
    double before = available(a, "r");
    sync(a).release("r", h.permitId(), Map.of("requests", 0L), true, false);
    assertThat(available(a, "r")).isEqualTo(before);
  }

  @Test
  void aFullLineIsRefusedAndATakeOverKeepsItsPlace() throws Exception {
    SliceEngine a = node();
    full(a, new LimitSpec("w", List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 1)), 0, 2, null));
    grantOf(acquire(a, "w"));
    Ticket first = a.acquire("w", Map.of("requests", 1L), Lane.DEFAULT, 60 * SEC, "one", null);
    Ticket second = acquire(a, "w");
    EngineException full = refusal(acquire(a, "w"));
    assertThat(full.reason()).isEqualTo(EngineException.Reason.WAITING_ROOM_FULL);
    assertThat(full.getMessage()).contains("waiting room of 'w' is full (2 waiting, max 2)");
    assertThat(full.retryAfterNanos()).isPositive();
    Ticket retry = a.acquire("w", Map.of("requests", 1L), Lane.DEFAULT, 60 * SEC, "one", null);
    assertThatThrownBy(() -> first.future().join()).isInstanceOf(java.util.concurrent.CancellationException.class)
        .hasMessageContaining("taken over by a retry with the same request id");
    assertThat(a.waitingHere("w")).isEqualTo(2);
    for (int ms = 0; ms < 400 && !second.future().isDone(); ms += 10) {
      clock.advance(Duration.ofMillis(10));
      settle(a, "w");
    }
    assertThat(retry.future()).as("the retry kept the first place").isCompleted();
    assertThat(second.future()).isCompleted();
  }

  /** A long line served by slices the store grants at once is served in a loop, not by recursion. */
  @Test
  void aLongLineIsServedWithoutRecursion() throws Exception {
    SliceEngine a = node();
    full(a, rate("deep", 10, 10_000)); // slices of 1: 50 ms of 10/s
    sync(a).pause("deep", -1);
    List<Ticket> line = new ArrayList<>();
    for (int i = 0; i < 10_000; i++) {
      line.add(acquire(a, "deep"));
    }
    sync(a).resume("deep");
    for (Ticket t : line) {
      grantOf(t);
    }
    assertThat(a.localGrants()).isEqualTo(10_000);
  }

  @Test
  void theStateOfAnIdleResourceIsLetGo() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    Grant g = grantOf(acquire(a, "r"));
    assertThat(a.resourcesHeld()).isEqualTo(1);
    sync(a).release("r", g.permitId(), Map.of(), false, false);
    clock.advance(Duration.ofNanos(SliceEngine.SWEEP_NANOS));
    assertThat(a.resourcesHeld()).isZero();
    assertThat(grantOf(acquire(a, "r")).permitId()).startsWith("slice-");
  }

  @Test
  void limitsOutOfScopeAreServedByTheStore() throws Exception {
    SliceEngine a = node();
    full(a, new LimitSpec("c", List.of(new RateSpec("requests", 1_000, Duration.ofSeconds(1), 200)), 2, 0, null));
    Grant g = grantOf(acquire(a, "c"));
    assertThat(g.permitId()).doesNotStartWith("slice-");
    assertThat(a.slicesTaken()).isZero();
    assertThat(sync(a).release("c", g.permitId(), Map.of(), false, false)).isTrue();
    // An unknown resource, and a load the limit cannot take, get the store's own answers.
    assertThat(refusal(a.acquire("nope", Map.of(), Lane.DEFAULT, SEC)).reason())
        .isEqualTo(EngineException.Reason.NOT_FOUND);
    full(a, rate("r", 1_000, 200));
    EngineException tooBig = refusal(a.acquire("r", Map.of("requests", 201L), Lane.DEFAULT, SEC));
    assertThat(tooBig.getMessage()).contains("its burst is 200");
  }

  @Test
  void aThrottleReportDropsTheSlicesAndADeletionEndsTheLine() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    grantOf(acquire(a, "r"));
    grantOf(acquire(a, "r")); // a slice of 4: 3 left
    sync(a).report("r", true, SEC, Map.of());
    Ticket waiting = acquire(a, "r");
    assertThat(waiting.future()).as("the slice in hand was dropped with the upstream's 429").isNotDone();
    assertThat(a.waitingHere("r")).isEqualTo(1);
    sync(a).deleteLimit("r");
    assertThat(refusal(waiting).reason()).isEqualTo(EngineException.Reason.NOT_FOUND);
  }

  private static LimitSpec twoRates(String name, long tokensBurst) {
    return new LimitSpec(name, List.of(new RateSpec("requests", 1_000, Duration.ofSeconds(1), 200),
        new RateSpec("tokens", 100_000, Duration.ofSeconds(1), tokensBurst)), 0, 0, null);
  }

  /** A limit of requests and tokens: each slice carries every dimension the head charges. */
  @Test
  void aSliceCarriesEveryDimensionTheHeadCharges() throws Exception {
    SliceEngine a = node();
    sync(a).setLimit(twoRates("llm", 20_000));
    sync(a).stats("llm");
    clock.advance(Duration.ofSeconds(1));
    for (int i = 0; i < 20; i++) {
      grantOf(a.acquire("llm", Map.of("requests", 1L, "tokens", 700L), Lane.DEFAULT, 60 * SEC));
    }
    // Both dimensions came in the same slices: neither was asked for alone.
    double requests = 200 - sync(a).stats("llm").available().get("requests");
    double tokens = 20_000 - sync(a).stats("llm").available().get("tokens");
    assertThat(requests).isBetween(20.0, 200.0);
    assertThat(tokens).isBetween(14_000.0, 20_000.0);
    assertThat(a.slicesTaken()).isLessThan(20);
  }

  @Test
  void queuedAcquiresFollowAChangeOfTheLimitsRates() throws Exception {
    SliceEngine a = node();
    full(a, rate("ch", 10, 1));
    grantOf(acquire(a, "ch"));
    Ticket plain = acquire(a, "ch");
    Ticket second = a.acquire("ch", Map.of("requests", 1L), Lane.DEFAULT, 60 * SEC);
    assertThat(a.waitingHere("ch")).isEqualTo(2);
    // The limit gains a dimension: the next acquire lays the line out again; nothing breaks.
    sync(a).setLimit(twoRates("ch", 20_000));
    Ticket next = a.acquire("ch", Map.of("requests", 1L, "tokens", 10L), Lane.DEFAULT, 60 * SEC);
    for (int ms = 0; ms < 2_000 && !next.future().isDone(); ms += 10) {
      clock.advance(Duration.ofMillis(10));
      settle(a, "ch");
    }
    grantOf(plain);
    grantOf(second);
    grantOf(next);
    // And loses one: queued acquires that charge it are refused as the store would refuse them.
    sync(a).pause("ch", -1);
    Ticket one = a.acquire("ch", Map.of("requests", 1L, "tokens", 10L), Lane.DEFAULT, 60 * SEC);
    Ticket two = a.acquire("ch", Map.of("tokens", 10L), Lane.DEFAULT, 60 * SEC);
    assertThat(a.waitingHere("ch")).isEqualTo(2);
    sync(a).setLimit(rate("ch", 1_000, 200));
    Ticket after = acquire(a, "ch");
    for (Ticket t : List.of(one, two)) {
      EngineException gone = refusal(t);
      assertThat(gone.reason()).isEqualTo(EngineException.Reason.INVALID);
      assertThat(gone.getMessage()).contains("load names dimension 'tokens'");
    }
    assertThat(after.future()).as("the new acquire waits for the pause").isNotDone();
    assertThat(a.waitingHere("ch")).isEqualTo(1);
  }

  @Test
  void settlesAreCheckedAndADebtGoesNoDeeperThanAPeriod() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    Grant g = grantOf(acquire(a, "r"));
    assertThatThrownBy(() -> sync(a).release("r", g.permitId(), Map.of("cents", 5L), true, false))
        .isInstanceOf(EngineException.class).hasMessageContaining("'cents'");
    assertThatThrownBy(() -> sync(a).release("r", g.permitId(), Map.of("requests", Long.MAX_VALUE / 2), true, false))
        .isInstanceOf(EngineException.class).hasMessageContaining("is out of range");
    assertThat(sync(a).release("r", g.permitId(), Map.of(), false, false)).as("a refused settle ends nothing").isTrue();
    Grant h = grantOf(acquire(a, "r"));
    assertThat(sync(a).release("r", h.permitId(), Map.of("requests", 1_000_000_000_000L), true, false)).isTrue();
    // The debt is one period's amount at most (1 000): paid within about a second and a burst.
    Ticket next = acquire(a, "r");
    for (int ms = 0; ms < 3_000 && !next.future().isDone(); ms += 10) {
      clock.advance(Duration.ofMillis(10));
      settle(a, "r");
    }
    assertThat(grantOf(next).permitId()).startsWith("slice-");
  }

  @Test
  void aRetryHandedThePermitKeepsItWhenTheFirstDeliveryIsGivenBack() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    Ticket first = a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "id-7", null);
    Grant g = grantOf(first);
    Grant again = grantOf(a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "id-7", null));
    assertThat(again.permitId()).isEqualTo(g.permitId());
    first.cancel(); // the first call's caller went away: its give-back is ignored
    assertThat(sync(a).renew("r", List.of(g.permitId()))).as("not renewed").isEmpty();
    assertThat(sync(a).release("r", g.permitId(), Map.of(), false, false)).isTrue();
  }

  @Test
  void anEmptyRequestIdIsNoneAndADeletedLimitGrantsNothingMore() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    assertThat(grantOf(a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "", null)).permitId())
        .startsWith("slice-");
    grantOf(acquire(a, "r")); // a slice of 4: 3 left in hand
    sync(a).deleteLimit("r");
    assertThat(refusal(acquire(a, "r")).reason()).isEqualTo(EngineException.Reason.NOT_FOUND);
  }

  /** The SDK and the HTTP API release and renew through any node: another node's slice permit. */
  @Test
  void anotherNodeRenewsAndReleasesASlicePermitAndItsExcessIsADebtThere() throws Exception {
    SliceEngine a = node();
    SliceEngine b = node();
    full(a, rate("r", 1_000, 200));
    Grant g = grantOf(acquire(a, "r")); // a slice of 1 on a
    assertThat(g.permitId()).matches("slice-[0-9a-z]+-1_1");
    assertThat(sync(b).renew("r", List.of(g.permitId(), "slice-made-up"))).as("renewed through b")
        .containsExactly("slice-made-up");
    assertThat(sync(b).release("r", "slice-made-up", Map.of(), false, false)).as("not an id slices make").isFalse();
    assertThatThrownBy(() -> sync(b).release("r", g.permitId(), Map.of("cents", 5L), true, false))
        .isInstanceOf(EngineException.class).hasMessageContaining("'cents'");
    double before = available(b, "r");
    assertThat(sync(b).release("r", g.permitId(), Map.of("requests", 31L), true, false)).isTrue();
    // 30 above the grant: a debt of b's, paid by b's next slice (30 + the 1 it grants).
    grantOf(acquire(b, "r"));
    assertThat(available(b, "r")).isEqualTo(before - 31);
    // Made-up ids cannot owe more than a period: 100 settles of a burst each leave b owing 1 000.
    for (int i = 0; i < 100; i++) {
      sync(b).release("r", "slice-x-1_0", Map.of("requests", 200L), true, false);
    }
    Ticket next = acquire(b, "r");
    for (int ms = 0; ms < 2_500 && !next.future().isDone(); ms += 10) {
      clock.advance(Duration.ofMillis(10));
      settle(b, "r");
    }
    assertThat(next.future()).as("the debt paid within a period and a bit").isCompleted();
    assertThat(SliceEngine.grantedIn("slice-x-1_z_1", 2)).containsExactly(35, 1);
    assertThat(SliceEngine.grantedIn("slice-x-1_!", 1)).isNull();
    assertThat(SliceEngine.wellFormed("slice-x-1_0")).isTrue();
    assertThat(SliceEngine.wellFormed("slice-x-1_")).isFalse();
    assertThat(SliceEngine.wellFormed("slice-x-1_" + "z".repeat(14))).isFalse();
  }

  @Test
  void aCancelByRequestIdTakesOnlyAWaiterAndAClosedNodeRefusesAtOnce() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 200));
    Ticket granted = a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "mine", null);
    grantOf(granted);
    assertThat(sync(a).cancel("r", "mine")).as("granted: not a waiter any more").isFalse();
    assertThat(granted.claim()).as("the grant stays its caller's").isTrue();
    a.close();
    EngineException down = refusal(acquire(a, "r"));
    assertThat(down.reason()).isEqualTo(EngineException.Reason.UNAVAILABLE);
    stores.remove(0); // closed with the node
  }

  @Test
  void aWaiterTheLimitsChangeRefusesIsAnsweredEvenWhenTheNextAcquireIsRefused() throws Exception {
    SliceEngine a = node();
    full(a, rate("r", 1_000, 100));
    Grant used = grantOf(a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "used", null));
    sync(a).release("r", used.permitId(), Map.of(), false, false);
    sync(a).pause("r", -1);
    Ticket big = a.acquire("r", Map.of("requests", 80L), Lane.DEFAULT, 60 * SEC);
    sync(a).setLimit(rate("r", 1_000, 50));
    // The next acquire is refused (its request id is used up): the waiter of 80 is answered too.
    assertThat(refusal(a.acquire("r", Map.of("requests", 1L), Lane.DEFAULT, SEC, "used", null)).reason())
        .isEqualTo(EngineException.Reason.INVALID);
    EngineException tooBig = refusal(big);
    assertThat(tooBig.reason()).isEqualTo(EngineException.Reason.INVALID);
    assertThat(tooBig.getMessage()).contains("its burst is 50");
  }

  @Test
  void rulesAreReadWithClearErrors() {
    SliceEngine.Rule r = SliceEngine.Rule.parse("openai-*=50ms");
    assertThat(r.glob()).isEqualTo("openai-*");
    assertThat(r.hold()).isEqualTo(Duration.ofMillis(50));
    assertThat(r.matches("openai-gpt4")).isTrue();
    assertThat(r.matches("anthropic")).isFalse();
    assertThatThrownBy(() -> SliceEngine.Rule.parse("openai")).hasMessageContaining("is not GLOB=HOLD");
    assertThatThrownBy(() -> SliceEngine.Rule.parse("open ai=50ms")).hasMessageContaining("[A-Za-z0-9._:/-]");
    assertThatThrownBy(() -> SliceEngine.Rule.parse("openai=5s")).hasMessageContaining("from 1ms to 1s");
    assertThatThrownBy(() -> SliceEngine.Rule.parse("openai=0")).hasMessageContaining("held for a while");
  }
}
