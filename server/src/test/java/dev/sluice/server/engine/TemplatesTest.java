package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.sluice.server.redis.RedisProcess;
import io.lettuce.core.RedisClient;
import io.lettuce.core.api.StatefulRedisConnection;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Templates on both stores, on a fake clock: a name matched by a template gets a bucket of its
 * own with the template's limit, the most specific template wins, a limit of the name's own wins
 * over any, a change reaches the live buckets, and an idle bucket is freed (memory: its state is
 * evicted; Redis: its keys expire).
 */
@ParameterizedClass(name = "{0}")
@EnumSource(TwoStores.Store.class)
class TemplatesTest {

  @Parameter TwoStores.Store store;

  private static final long SEC = 1_000_000_000L;
  private static RedisProcess redis;
  private static RedisClient client;
  private static StatefulRedisConnection<String, String> conn;

  private FakeClock clock;
  private Engine engine;

  @BeforeEach
  void setUp() throws Exception {
    clock = new FakeClock();
    if (store == TwoStores.Store.MEMORY) {
      engine = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
      return;
    }
    if (redis == null) {
      redis = RedisProcess.start();
      client = RedisClient.create(redis.uri());
      conn = client.connect();
    }
    redis.flushAll();
    RedisEngine r = RedisEngine.builder().uri(redis.uri()).ticker(clock).scheduler(clock)
        .housekeeping(Duration.ZERO).build();
    clock.afterEachTask(r::awaitQuiet);
    engine = r;
  }

  @AfterEach
  void tearDown() {
    engine.closeStore();
  }

  @AfterAll
  static void stopRedis() {
    if (redis != null) {
      conn.close();
      client.shutdown();
      redis.close();
      redis = null;
    }
  }

  private static LimitSpec template(String pattern, long perMinute, long burst) {
    return new LimitSpec(pattern, List.of(new RateSpec("requests", perMinute, Duration.ofMinutes(1), burst)), 0, 0,
        null);
  }

  private Ticket acquire(String name) {
    return sync(engine).acquire(name, Map.of("requests", 1L), Lane.DEFAULT, 0);
  }

  private Ticket acquire(String name, long timeoutNanos) {
    return sync(engine).acquire(name, Map.of("requests", 1L), Lane.DEFAULT, timeoutNanos);
  }

  private static boolean granted(Ticket t) {
    return t.future().isDone() && !t.future().isCompletedExceptionally();
  }

  /** Why an acquire was refused, at once or by its ticket. */
  private static EngineException.Reason refusal(java.util.function.Supplier<Ticket> acquire) {
    Ticket t;
    try {
      t = acquire.get();
    } catch (EngineException e) {
      return e.reason();
    }
    assertThat(t.future()).isCompletedExceptionally();
    return refusal(t);
  }

  private static EngineException.Reason refusal(Ticket t) {
    try {
      t.future().join();
    } catch (CompletionException e) {
      return ((EngineException) EngineException.unwrap(e)).reason();
    }
    throw new AssertionError("not refused");
  }

  private void release(Ticket t) {
    assertThat(sync(engine).release(t.future().join().resource(), t.future().join().permitId(), Map.of(), false,
        false)).isTrue();
  }

  private double available(String name) {
    return sync(engine).stats(name).available().get("requests");
  }

  @Test
  void aMatchedNameGetsItsOwnBucketWithTheTemplatesLimit() {
    sync(engine).setTemplate(template("customer:*", 60, 3));
    clock.advance(Duration.ofMinutes(1)); // the template's buckets filled since it was set
    for (int i = 0; i < 3; i++) {
      assertThat(granted(acquire("customer:1"))).isTrue();
    }
    assertThat(refusal(() -> acquire("customer:1"))).isEqualTo(EngineException.Reason.DEADLINE);
    // Another name has a bucket of its own.
    assertThat(granted(acquire("customer:2"))).isTrue();
    assertThat(available("customer:2")).isCloseTo(2.0, within(1e-9));
    assertThat(sync(engine).stats("customer:1").limit().rates().get(0).burst()).isEqualTo(3);
    // It refills as a resource with that limit does: one a second.
    clock.advance(Duration.ofSeconds(1));
    assertThat(granted(acquire("customer:1"))).isTrue();
    // A name no template matches has no limit.
    assertThat(refusal(() -> acquire("vendor:1"))).isEqualTo(EngineException.Reason.NOT_FOUND);
    // Templates are not limits: list shows none, and a waiter queues as on any resource.
    assertThat(sync(engine).listLimits("")).isEmpty();
    Ticket waiting = acquire("customer:1", 10 * SEC);
    assertThat(waiting.future()).isNotDone();
    clock.advance(Duration.ofSeconds(1));
    assertThat(granted(waiting)).isTrue();
  }

  @Test
  void aBucketStartsAsALimitSetWhenTheTemplateWasWouldBeNow() {
    sync(engine).setTemplate(template("customer:*", 60, 10));
    clock.advance(Duration.ofSeconds(4));
    // Set 4 s ago at 1/s: 4 of the burst of 10 (a restart, which sets templates again, cannot
    // hand out a fresh burst).
    assertThat(available("customer:9")).isCloseTo(4.0, within(1e-6));
  }

  @Test
  void theMostSpecificTemplateWins() {
    sync(engine).setTemplate(template("customer:*", 60, 1));
    sync(engine).setTemplate(template("customer:gold:*", 60, 5));
    sync(engine).setTemplate(template("customer:?", 60, 2));
    clock.advance(Duration.ofMinutes(1));
    assertThat(sync(engine).stats("customer:gold:7").limit().rates().get(0).burst()).isEqualTo(5);
    assertThat(sync(engine).stats("customer:7").limit().rates().get(0).burst()).isEqualTo(2);
    assertThat(sync(engine).stats("customer:77").limit().rates().get(0).burst()).isEqualTo(1);
    assertThat(sync(engine).templateFor("customer:gold:7")).map(LimitSpec::resource).contains("customer:gold:*");
    assertThat(sync(engine).templateFor("customer:7")).map(LimitSpec::resource).contains("customer:?");
    assertThat(sync(engine).templateFor("customer:77")).map(LimitSpec::resource).contains("customer:*");
    assertThat(sync(engine).templateFor("vendor:1")).isEmpty();
    assertThat(sync(engine).listTemplates()).extracting(LimitSpec::resource)
        .containsExactly("customer:*", "customer:?", "customer:gold:*");
  }

  @Test
  void aLimitOfItsOwnBeatsATemplateAndAdoptsTheLiveBucket() {
    sync(engine).setTemplate(template("customer:*", 60, 3));
    sync(engine).setLimit(template("customer:vip", 600, 20));
    clock.advance(Duration.ofMinutes(1));
    assertThat(sync(engine).stats("customer:vip").limit().rates().get(0).burst()).isEqualTo(20);
    assertThat(sync(engine).templateFor("customer:vip")).isEmpty();
    // A live template bucket given a limit of its own keeps what it holds, clipped.
    assertThat(granted(acquire("customer:5"))).isTrue();
    assertThat(sync(engine).setLimit(template("customer:5", 60, 10))).isTrue();
    assertThat(available("customer:5")).isCloseTo(2.0, within(1e-6));
    assertThat(sync(engine).getLimit("customer:5")).isPresent();
    // Deleted again, the name goes back to its template, as a new bucket.
    sync(engine).deleteLimit("customer:5");
    assertThat(sync(engine).getLimit("customer:5")).isEmpty();
    assertThat(sync(engine).templateFor("customer:5")).map(LimitSpec::resource).contains("customer:*");
    assertThat(available("customer:5")).isCloseTo(3.0, within(1e-6));
  }

  @Test
  void aTemplateChangeReachesItsLiveBuckets() {
    sync(engine).setTemplate(template("customer:*", 60, 1));
    clock.advance(Duration.ofMinutes(1));
    assertThat(granted(acquire("customer:1"))).isTrue();
    Ticket waiting = acquire("customer:1", 30 * SEC);
    assertThat(waiting.future()).isNotDone();
    assertThat(sync(engine).setTemplate(template("customer:*", 6000, 5))).isFalse();
    // The waiter's bucket follows at once: at 100/s it refills in 10 ms.
    clock.advance(Duration.ofMillis(10));
    assertThat(granted(waiting)).isTrue();
    assertThat(sync(engine).stats("customer:1").limit().rates().get(0).burst()).isEqualTo(5);
    assertThat(sync(engine).stats("customer:2").limit().rates().get(0).burst()).isEqualTo(5);
  }

  @Test
  void deletingATemplateEndsItsWaitersAndItsNamesAreUnknown() {
    sync(engine).setTemplate(template("customer:*", 60, 1));
    clock.advance(Duration.ofMinutes(1));
    assertThat(granted(acquire("customer:1"))).isTrue();
    Ticket waiting = acquire("customer:1", 30 * SEC);
    sync(engine).deleteTemplate("customer:*");
    assertThat(refusal(waiting)).isEqualTo(EngineException.Reason.NOT_FOUND);
    assertThat(refusal(() -> acquire("customer:1"))).isEqualTo(EngineException.Reason.NOT_FOUND);
    assertThat(refusal(() -> acquire("customer:2"))).isEqualTo(EngineException.Reason.NOT_FOUND);
    assertThatThrownBy(() -> sync(engine).deleteTemplate("customer:*"))
        .isInstanceOfSatisfying(EngineException.class, e -> {
          assertThat(e.reason()).isEqualTo(EngineException.Reason.NOT_FOUND);
          assertThat(e.getMessage()).contains("no template 'customer:*'");
        });
  }

  @Test
  void badTemplatesAreRefusedWithTheFix() {
    assertRefused(template("", 60, 1), "empty");
    assertRefused(template("*", 60, 1), "starts with '*'");
    assertRefused(template("?x", 60, 1), "starts with '?'");
    assertRefused(template("_other*", 60, 1), "reserves");
    assertRefused(template("customer", 60, 1), "no wildcard");
    assertRefused(template("customer:**", 60, 1), "use 'customer:*'");
    assertRefused(template("customer:*!", 60, 1), "has '!'");
    assertRefused(template("c" + "x".repeat(200) + "*", 60, 1), "at most 200");
    assertRefused(LimitSpec.pool("pool:*", List.of("a", "b")), "pool");
    assertRefused(new LimitSpec("customer:*", List.of(), 0, 0, null), "no rate and no concurrency");
    // A pattern is no resource name: setLimit refuses it.
    assertThatThrownBy(() -> sync(engine).setLimit(template("customer:*", 60, 1)))
        .isInstanceOf(EngineException.class).hasMessageContaining("resource name 'customer:*' is invalid");
    assertThat(sync(engine).listTemplates()).isEmpty();
  }

  @Test
  void atMostAThousandTemplates() {
    for (int i = 0; i < Templates.MAX_TEMPLATES; i++) {
      sync(engine).setTemplate(template("t" + i + ":*", 60, 1));
    }
    assertRefused(template("one-more:*", 60, 1), "already 1000 templates");
    // Changing one that exists is no new one.
    assertThat(sync(engine).setTemplate(template("t7:*", 120, 2))).isFalse();
  }

  private void assertRefused(LimitSpec t, String why) {
    assertThatThrownBy(() -> sync(engine).setTemplate(t))
        .isInstanceOfSatisfying(EngineException.class, e -> {
          assertThat(e.reason()).isEqualTo(EngineException.Reason.INVALID);
          assertThat(e.getMessage()).contains(why);
        });
  }

  @Test
  void anIdleBucketIsFreed() {
    sync(engine).setTemplate(template("customer:*", 60, 2));
    clock.advance(Duration.ofMinutes(1));
    Ticket used = acquire("customer:1");
    assertThat(granted(used)).isTrue();
    release(used);
    if (engine instanceof MemoryEngine m) {
      assertThat(m.holdsState("customer:1")).isTrue();
      // Full again after 1 s, then the idle grace (10 min): the state goes.
      clock.advance(Duration.ofSeconds(1).plusMinutes(10).minusMillis(1));
      assertThat(m.holdsState("customer:1")).isTrue();
      clock.advance(Duration.ofMillis(2));
      assertThat(m.holdsState("customer:1")).isFalse();
    } else {
      // Every key of the name expires once the bucket is full again and the request id it
      // made up for the acquire is forgotten (60 s), plus the idle grace (10 min).
      List<String> keys = conn.sync().keys("sluice:{customer:1}:*");
      assertThat(keys).isNotEmpty();
      for (String k : keys) {
        assertThat(conn.sync().pttl(k)).as(k).isBetween(660_000L - 50, 660_000L);
      }
      // As Redis would at that instant (its own clock, not the test's): then no key is left.
      clock.advance(Duration.ofMinutes(11));
      conn.sync().del(keys.toArray(String[]::new));
      assertThat(conn.sync().keys("sluice:{customer:1}:*")).isEmpty();
    }
    // Used again, the name gets a full bucket, as one never freed would have.
    assertThat(available("customer:1")).isCloseTo(2.0, within(1e-6));
    assertThat(granted(acquire("customer:1"))).isTrue();
    assertThat(granted(acquire("customer:1"))).isTrue();
  }

  @Test
  void aBucketWithAPermitHeldIsNotFreed() {
    sync(engine).setTemplate(new LimitSpec("job:*", List.of(), 1, 0, Duration.ofMinutes(30)));
    Ticket held = acquire("job:1");
    assertThat(granted(held)).isTrue();
    if (engine instanceof MemoryEngine m) {
      clock.advance(Duration.ofMinutes(20));
      assertThat(m.holdsState("job:1")).isTrue();
    } else {
      for (String k : conn.sync().keys("sluice:{job:1}:*")) {
        assertThat(conn.sync().pttl(k)).as(k).isGreaterThanOrEqualTo(Duration.ofMinutes(40).toMillis() - 50);
      }
    }
    assertThat(refusal(() -> acquire("job:1"))).isEqualTo(EngineException.Reason.DEADLINE);
    assertThat(sync(engine).release("job:1", held.future().join().permitId(), Map.of(), false, false)).isTrue();
    assertThat(granted(acquire("job:1"))).isTrue();
  }

  @Test
  void templatesComeBackWhenRedisLostItsData() {
    sync(engine).setTemplate(template("customer:*", 60, 2));
    if (!(engine instanceof RedisEngine r)) {
      return; // the memory store keeps them in limits.json (TemplateCommandsTest restarts one)
    }
    conn.sync().flushall();
    r.housekeep();
    assertThat(r.storeLosses()).isEqualTo(1);
    assertThat(sync(engine).listTemplates()).extracting(LimitSpec::resource).containsExactly("customer:*");
    // Written back as created now: a name's bucket starts empty, as every restored bucket does.
    assertThat(available("customer:1")).isCloseTo(0.0, within(1e-6));
  }

  @Test
  void aThousandNamesUsedOnceLeaveNothingOnceIdle() {
    sync(engine).setTemplate(template("customer:*", 60, 1));
    clock.advance(Duration.ofMinutes(1));
    List<String> names = new ArrayList<>();
    for (int i = 0; i < 1_000; i++) {
      names.add("customer:" + i);
      Ticket t = acquire("customer:" + i);
      assertThat(granted(t)).isTrue();
      release(t);
    }
    clock.advance(Duration.ofMinutes(11));
    if (engine instanceof MemoryEngine m) {
      assertThat(names).noneMatch(m::holdsState);
    } else {
      // Every key has its TTL: nothing would outlive the idle grace.
      List<String> keys = conn.sync().keys("sluice:{customer:*");
      assertThat(keys).hasSizeGreaterThanOrEqualTo(1_000);
      assertThat(keys).allMatch(k -> conn.sync().pttl(k) > 0);
      assertThat(((RedisEngine) engine).tableSizes()).containsEntry("limits", 0).containsEntry("lastKnown", 0);
    }
  }
}
