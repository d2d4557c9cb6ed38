package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Pools on both stores, on a fake clock: one FIFO across the members, the grant from the member
 * that can grant, a paused or deleted member passed over, release and settle at the member that
 * granted, and the refusals of a pool that cannot be.
 */
@ParameterizedClass(name = "{0}")
@EnumSource(TwoStores.Store.class)
class PoolEngineTest {

  @Parameter TwoStores.Store store;
  private static final long SEC = 1_000_000_000L;
  /** One request a second, burst 1: each member grants one acquire per second. */
  private static final RateSpec ONE_PER_SECOND = new RateSpec("requests", 60, Duration.ofMinutes(1), 1);
  private static final Map<String, Long> ONE = Map.of("requests", 1L);

  private FakeClock clock;
  private Engine engine;
  /** Waits until the store has done what it was asked (Redis calls are asynchronous). */
  private final Runnable[] quiet = {() -> {}};

  @BeforeEach
  void setUp() throws Exception {
    clock = new FakeClock();
    engine = new PoolEngine(TwoStores.open(store, clock, quiet));
  }

  @AfterEach
  void tearDown() {
    engine.closeStore();
  }

  @AfterAll
  static void stopRedis() {
    TwoStores.stopRedis();
  }

  private void member(String name, RateSpec rate) {
    sync(engine).setLimit(new LimitSpec(name, List.of(rate), 0, 100, Duration.ofMinutes(1)));
  }

  /** A pool of these members, whose buckets are then filled (new limits start empty). */
  private void pool(String name, String... members) {
    sync(engine).setLimit(LimitSpec.pool(name, List.of(members)));
    clock.advance(Duration.ofSeconds(10));
  }

  private Ticket acquire(String resource, long timeoutNanos) {
    return sync(engine).acquire(resource, ONE, Lane.DEFAULT, timeoutNanos, null, null);
  }

  /** Steps the fake clock in 10 ms steps, so the stores' wake-ups run at their instants. */
  private void advance(Duration d) {
    for (long t = 0; t < d.toMillis(); t += 10) {
      clock.advance(Duration.ofMillis(10));
    }
  }

  private static Grant granted(Ticket t) {
    assertThat(t.future()).as("granted").isDone();
    Grant g = t.future().join();
    assertThat(t.claim()).isTrue();
    return g;
  }

  @Test
  void anAcquireIsGrantedByTheMemberThatCanGrantNowAndThePermitNamesIt() {
    member("a", ONE_PER_SECOND);
    member("b", new RateSpec("requests", 600, Duration.ofMinutes(1), 10));
    pool("p", "a", "b");
    granted(acquire("a", 0)); // a is spent by a direct user

    Grant g = granted(acquire("p", 5 * SEC));
    assertThat(g.resource()).as("the member that granted").isEqualTo("b");
    assertThat(sync(engine).stats("a").waiting().values().stream().mapToInt(Integer::intValue).sum())
        .as("nobody left waiting at a").isZero();
    assertThat(sync(engine).estimate("p", ONE, Lane.DEFAULT, null)).as("the pool's estimate: its soonest member")
        .isZero();
  }

  @Test
  void thePoolHasOneFifoAndARaceOfTwoMembersGivesTheSecondGrantBack() {
    member("a", ONE_PER_SECOND);
    member("b", ONE_PER_SECOND);
    pool("p", "a", "b");
    granted(acquire("a", 0));
    granted(acquire("b", 0));

    Ticket first = acquire("p", 30 * SEC);
    Ticket second = acquire("p", 30 * SEC);
    Ticket third = acquire("p", 30 * SEC);
    assertThat(sync(engine).stats("a").waiting().get(Lane.DEFAULT)).as("each waits at every member").isEqualTo(3);
    assertThat(sync(engine).stats("b").waiting().get(Lane.DEFAULT)).isEqualTo(3);

    advance(Duration.ofSeconds(1)); // both members refill one request at the same instant
    Grant g1 = granted(first);
    Grant g2 = granted(second);
    assertThat(List.of(g1.resource(), g2.resource())).as("one from each member").containsExactlyInAnyOrder("a", "b");
    assertThat(third.future()).as("the third waits for the next refill").isNotDone();
    assertThat(sync(engine).stats("a").waiting().get(Lane.DEFAULT)).isEqualTo(1);
    assertThat(sync(engine).stats("b").waiting().get(Lane.DEFAULT)).isEqualTo(1);

    // The member that granted the first, then lost the race, gave it back: no token went missing.
    advance(Duration.ofSeconds(1));
    granted(third);
    assertThat(sync(engine).stats("a").granted() + sync(engine).stats("b").granted())
        .as("grants kept: two direct, three through the pool").isEqualTo(5);
  }

  @Test
  void aPausedMemberGrantsNothingAndTheOthersCarryTheTraffic() {
    member("a", new RateSpec("requests", 600, Duration.ofMinutes(1), 10));
    member("b", new RateSpec("requests", 600, Duration.ofMinutes(1), 10));
    pool("p", "a", "b");
    sync(engine).report("a", true, 60 * SEC, Map.of()); // a 429 on a permit of a's: a pauses

    for (int i = 0; i < 5; i++) {
      assertThat(granted(acquire("p", 5 * SEC)).resource()).isEqualTo("b");
    }
    assertThatThrownBy(() -> sync(engine).report("p", true, SEC, Map.of()))
        .isInstanceOf(EngineException.class)
        .hasMessageContaining("report on the member that granted the permit");
  }

  @Test
  void aDeletedMemberTakesNoNewGrantsAndAPoolWithNoneLeftSaysSo() {
    member("a", ONE_PER_SECOND);
    member("b", ONE_PER_SECOND);
    pool("p", "a", "b");
    sync(engine).deleteLimit("a");
    assertThat(granted(acquire("p", 5 * SEC)).resource()).isEqualTo("b");

    sync(engine).deleteLimit("b");
    Ticket none = acquire("p", 5 * SEC);
    assertThat(none.future()).isCompletedExceptionally();
    assertThatThrownBy(() -> none.future().join())
        .isInstanceOf(CompletionException.class)
        .cause()
        .hasMessageContaining("pool 'p' has no member left");
  }

  @Test
  void releaseSettleAndRenewReachTheMemberThatGrantedEvenByThePoolsName() {
    RateSpec tokens = new RateSpec("tokens", 600, Duration.ofMinutes(1), 100);
    sync(engine).setLimit(new LimitSpec("a", List.of(tokens), 0, 100, Duration.ofMinutes(1)));
    sync(engine).setLimit(new LimitSpec("b", List.of(tokens), 0, 100, Duration.ofMinutes(1)));
    pool("p", "a", "b");
    Ticket t = sync(engine).acquire("p", Map.of("tokens", 80L), Lane.DEFAULT, 5 * SEC, null, null);
    Grant g = granted(t);
    String member = g.resource();
    assertThat(sync(engine).stats(member).available().get("tokens")).isEqualTo(20.0);

    assertThat(sync(engine).renew("p", List.of(g.permitId(), "nobody"))).containsExactly("nobody");
    assertThat(sync(engine).release("p", g.permitId(), Map.of("tokens", 30L), true, false)).isTrue();
    assertThat(sync(engine).stats(member).available().get("tokens")).as("settled low: 50 refunded").isEqualTo(70.0);
    assertThat(sync(engine).release("p", g.permitId(), Map.of(), false, false)).as("released once").isFalse();
  }

  @Test
  void aCancelledPoolAcquireLeavesEveryMembersRoom() {
    member("a", ONE_PER_SECOND);
    member("b", ONE_PER_SECOND);
    pool("p", "a", "b");
    granted(acquire("a", 0));
    granted(acquire("b", 0));
    Ticket t = acquire("p", 30 * SEC);
    t.cancel();
    assertThatThrownBy(() -> t.future().join()).isInstanceOf(CancellationException.class);
    quiet[0].run();
    assertThat(sync(engine).stats("a").waiting().get(Lane.DEFAULT)).isZero();
    assertThat(sync(engine).stats("b").waiting().get(Lane.DEFAULT)).isZero();
    advance(Duration.ofSeconds(1));
    granted(acquire("a", 0)); // its refill went to nobody else
  }

  @Test
  void aTryOnceOnAPoolTriesEachMemberAndTimesOutWhenNoneHasRoom() {
    member("a", ONE_PER_SECOND);
    member("b", ONE_PER_SECOND);
    pool("p", "a", "b");
    assertThat(granted(acquire("p", 0)).resource()).isEqualTo("a");
    assertThat(granted(acquire("p", 0)).resource()).isEqualTo("b");
    Ticket t = acquire("p", 0);
    assertThatThrownBy(() -> t.future().join())
        .cause()
        .isInstanceOf(EngineException.class)
        .hasMessageContaining("no member could grant at once (a, b)");
  }

  @Test
  void tenantsAndLanesApplyAtEveryMember() {
    TenantPolicy policy = new TenantPolicy(Map.of("x", 3.0), Map.of(), Map.of());
    sync(engine).setLimit(new LimitSpec("a", List.of(ONE_PER_SECOND), 0, 100, Duration.ofMinutes(1), policy));
    sync(engine).setLimit(new LimitSpec("b", List.of(ONE_PER_SECOND), 0, 100, Duration.ofMinutes(1), policy));
    pool("p", "a", "b");
    granted(acquire("a", 0));
    granted(acquire("b", 0));
    sync(engine).acquire("p", ONE, Lane.BATCH, 30 * SEC, null, "x");
    ResourceSnapshot a = sync(engine).stats("a");
    assertThat(a.waiting().get(Lane.BATCH)).isEqualTo(1);
    assertThat(a.tenants().get("x").waiting()).isEqualTo(1);
    assertThat(sync(engine).stats("b").tenants().get("x").waiting()).isEqualTo(1);
  }

  @Test
  void poolsThatCannotBeAreRefusedWithTheFixNamed() {
    member("a", ONE_PER_SECOND);
    sync(engine).setLimit(new LimitSpec("shared", List.of(ONE_PER_SECOND), 0, 100, Duration.ofMinutes(1),
        new TenantPolicy(Map.of("x", 2.0), Map.of(), Map.of())));
    pool("p", "a");

    assertThatThrownBy(() -> pool("q", "a", "missing"))
        .hasMessageContaining("member 'missing' has no limit: set one first");
    assertThatThrownBy(() -> pool("q", "a", "p"))
        .hasMessageContaining("member 'p' is itself a pool: a pool cannot be nested");
    assertThatThrownBy(() -> pool("q", "a", "a")).hasMessageContaining("lists member 'a' twice");
    assertThatThrownBy(() -> pool("q", "q")).hasMessageContaining("lists itself as a member");
    assertThatThrownBy(() -> pool("a", "shared"))
        .hasMessageContaining("'a' is a resource with a limit of its own");
    assertThatThrownBy(() -> pool("q", "a", "shared"))
        .hasMessageContaining("share tenants differently");
    assertThatThrownBy(() -> member("p", ONE_PER_SECOND))
        .hasMessageContaining("'p' is a pool of a: delete the pool first");
    assertThatThrownBy(() -> sync(engine).stats("p")).hasMessageContaining("its state is its members'");
    // A member of a pool with others may not change its tenant policy alone; the same one is fine.
    member("a2", ONE_PER_SECOND);
    pool("p2", "a", "a2");
    TenantPolicy other = new TenantPolicy(Map.of("x", 5.0), Map.of(), Map.of());
    assertThatThrownBy(() -> sync(engine).setLimit(
            new LimitSpec("a", List.of(ONE_PER_SECOND), 0, 100, Duration.ofMinutes(1), other)))
        .hasMessageContaining("'a' is a member of pool 'p2'", "give every member (a, a2) the same --share");
    member("a", new RateSpec("requests", 120, Duration.ofMinutes(1), 2));
    assertThat(sync(engine).stats()).extracting(s -> s.limit().resource()).containsExactly("a", "a2", "shared");
    assertThat(sync(engine).getLimit("p")).get().extracting(LimitSpec::members).isEqualTo(List.of("a"));
  }
}
