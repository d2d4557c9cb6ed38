package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static dev.sluice.server.engine.EngineContractTest.assertInvalid;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.LinkedHashMap;
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
 * Held dimensions ({@link LimitSpec#holds}) on both stores: a cap on the sum of a dimension over
 * the live permits, which comes back when a permit ends and never with time.
 */
@ParameterizedClass(name = "{0}")
@EnumSource(TwoStores.Store.class)
class HeldDimensionTest {

  @Parameter TwoStores.Store store;
  private final FakeClock clock = new FakeClock();
  private Engine engine;

  private static final long SEC = 1_000_000_000L;

  @BeforeEach
  void setUp() throws Exception {
    engine = TwoStores.open(store, clock, null);
  }

  @AfterEach
  void tearDown() {
    engine.closeStore();
  }

  @AfterAll
  static void stopRedis() {
    TwoStores.stopRedis();
  }

  private static LimitSpec held(String name, long cap, Duration lease, RateSpec... rates) {
    return new LimitSpec(name, List.of(rates), 0, 0, lease).withHolds(Map.of("tok", cap));
  }

  private Ticket acquire(String name, long tok) {
    return sync(engine).acquire(name, Map.of("tok", tok), Lane.DEFAULT, 600 * SEC);
  }

  private static Grant granted(Ticket t) {
    assertThat(t.future()).isCompleted();
    return t.future().join();
  }

  private double available(String name) {
    return sync(engine).stats(name).available().get("tok");
  }

  @Test
  void theCapIsTheSumOverLivePermitsAndNeverRefillsWithTime() {
    sync(engine).setLimit(held("q", 1000, Duration.ofMinutes(10)));
    assertThat(sync(engine).getLimit("q").orElseThrow().holds()).isEqualTo(Map.of("tok", 1000L));
    assertThat(available("q")).as("a new limit holds nothing").isEqualTo(1000.0);
    Grant a = granted(acquire("q", 600));
    assertThat(available("q")).isEqualTo(400.0);
    Ticket b = acquire("q", 500);
    clock.advance(Duration.ofMinutes(5));
    assertThat(b.future()).as("no room comes back with time").isNotDone();
    assertThat(available("q")).isEqualTo(400.0);
    assertThat(sync(engine).release("q", a.permitId(), Map.of(), false, false)).isTrue();
    granted(b);
    assertThat(available("q")).isEqualTo(500.0);
    assertThat(sync(engine).stats("q").used()).as("a held dimension is not a rate").doesNotContainKey("tok");
  }

  @Test
  void waitersAreServedInOrderSoASmallLoadNeverOvertakesABigOne() {
    sync(engine).setLimit(held("q", 1000, Duration.ofMinutes(10)));
    Grant a = granted(acquire("q", 600));
    Ticket big = acquire("q", 500);
    Ticket small = acquire("q", 100);
    assertThat(small.future()).as("it would fit, but the big one is first").isNotDone();
    sync(engine).release("q", a.permitId(), Map.of(), false, true);
    granted(big);
    granted(small);
    assertThat(available("q")).isEqualTo(400.0);
  }

  @Test
  void anExpiredLeaseGivesItsRoomBackAndARenewedOneKeepsIt() {
    sync(engine).setLimit(held("q", 1000, Duration.ofSeconds(10)));
    Grant a = granted(acquire("q", 1000));
    Ticket b = acquire("q", 1);
    clock.advance(Duration.ofSeconds(5));
    assertThat(sync(engine).renew("q", List.of(a.permitId()))).isEmpty();
    clock.advance(Duration.ofSeconds(9));
    assertThat(b.future()).as("renewed at 5 s: held until 15 s").isNotDone();
    clock.advance(Duration.ofSeconds(1));
    granted(b);
    assertThat(sync(engine).stats("q").expired()).isEqualTo(1);
    assertThat(available("q")).isEqualTo(999.0);
  }

  @Test
  void aSettleChangesNothingHeldAndTheReleaseGivesAllOfItBack() {
    sync(engine).setLimit(held("q", 1000, Duration.ofMinutes(10)));
    Grant a = granted(acquire("q", 700));
    sync(engine).release("q", a.permitId(), Map.of("tok", 100L), true, false);
    assertThat(available("q")).isEqualTo(1000.0);
  }

  @Test
  void ratesStillApplyBesideAHeldDimension() {
    sync(engine).setLimit(held("q", 1000, Duration.ofMinutes(10), new RateSpec("requests", 1, Duration.ofSeconds(1), 1)));
    clock.advance(Duration.ofSeconds(1));
    granted(acquire("q", 100));
    Ticket b = acquire("q", 100);
    assertThat(b.future()).as("room held, but the request rate paces it").isNotDone();
    clock.advance(Duration.ofSeconds(1));
    granted(b);
    assertThat(available("q")).isEqualTo(800.0);
  }

  @Test
  void aLimitChangeRecountsWhatIsHeldAndFailsWaitersThatCanNoLongerFit() {
    sync(engine).setLimit(held("q", 1000, Duration.ofMinutes(10)));
    Grant a = granted(acquire("q", 600));
    Ticket over = acquire("q", 900);
    Ticket fits = acquire("q", 300);
    sync(engine).setLimit(held("q", 800, Duration.ofMinutes(10)));
    assertThatThrownBy(() -> over.future().join())
        .isInstanceOf(CompletionException.class)
        .hasMessageContaining("tok");
    assertThat(available("q")).as("the permit still holds its 600").isEqualTo(200.0);
    assertThat(fits.future()).isNotDone();
    sync(engine).setLimit(held("q", 900, Duration.ofMinutes(10)));
    granted(fits);
    assertThat(available("q")).isEqualTo(0.0);
    sync(engine).release("q", a.permitId(), Map.of(), false, false);
    assertThat(available("q")).isEqualTo(600.0);
  }

  @Test
  void aLoadOverTheCapIsRefusedWithTheFix() {
    sync(engine).setLimit(held("q", 1000, Duration.ofMinutes(10)));
    assertInvalid(() -> acquire("q", 1001), "may hold only 1000 tok at once; split the call or raise the cap (--hold tok=N)");
  }

  @Test
  void badHeldDimensionsAreRefusedNamingTheFix() {
    assertInvalid(() -> sync(engine).setLimit(held("q", 0, null)), "held tok=0 on 'q' is out of range: use 1 to");
    assertInvalid(
        () -> sync(engine).setLimit(held("q", 10, null, new RateSpec("tok", 1, Duration.ofSeconds(1), 1))),
        "is both a rate and held");
    assertInvalid(
        () -> sync(engine).setLimit(new LimitSpec("q", List.of(), 0, 0, null).withHolds(Map.of("requests", 5L))),
        "--concurrency N");
    assertInvalid(
        () -> sync(engine).setLimit(new LimitSpec("q", List.of(), 0, 0, null).withHolds(Map.of("bad name", 5L))),
        "dimension name 'bad name' is invalid");
    Map<String, Long> many = new LinkedHashMap<>();
    for (int i = 0; i < 17; i++) {
      many.put("d" + i, 1L);
    }
    assertInvalid(() -> sync(engine).setLimit(new LimitSpec("q", List.of(), 0, 0, null).withHolds(many)),
        "17 held dimensions");
    assertInvalid(
        () -> sync(engine).setLimit(LimitSpec.pool("p", List.of("a", "b")).withHolds(Map.of("tok", 5L))),
        "held dimensions");
  }
}
