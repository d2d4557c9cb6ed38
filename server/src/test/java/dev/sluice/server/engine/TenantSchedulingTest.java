package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Fair shares between tenants, on a fake clock, against both stores: backlogged tenants keep a
 * few acquires waiting at all times, each grant is settled at once and asked for again, and the
 * shares are measured on the grants' own instants, window by window.
 */
@ParameterizedClass(name = "{0}")
@EnumSource(TwoStores.Store.class)
class TenantSchedulingTest {

  @Parameter TwoStores.Store store;
  private static final long SEC = 1_000_000_000L;
  /** The quota: 100 tokens/s, burst 200; every test's acquires take 5 tokens. */
  private static final RateSpec TOKENS = new RateSpec("tokens", 6_000, Duration.ofMinutes(1), 200);

  private FakeClock clock;
  private Engine engine;

  @BeforeEach
  void setUp() throws Exception {
    clock = new FakeClock();
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

  /** One tenant's steady demand: how many acquires it keeps waiting, their load, what it settles. */
  record Demand(String tenant, long fromSeconds, long tokens, long settles) {
    static Demand of(String tenant) {
      return new Demand(tenant, 0, 5, 5);
    }
  }

  /** A grant as measured: whose, when (the engine's instant), and what its holder really used. */
  record Granted(String tenant, long atNanos, long used) {}

  /** Estimates asked for just before an acquire, and that acquire's real wait (nanos). */
  private final List<long[]> probes = new ArrayList<>();
  /** The tenant that also sends a probe (an estimate, then an acquire) every second, or null. */
  private String probing;

  /** Runs the demands for {@code seconds} of fake time; returns every grant. */
  private List<Granted> run(TenantPolicy policy, long seconds, Demand... demands) {
    sync(engine).setLimit(new LimitSpec("q", List.of(TOKENS), 0, 10_000, Duration.ofMinutes(5), policy));
    long start = clock.read();
    List<Granted> out = new ArrayList<>();
    Map<Ticket, Object[]> open = new LinkedHashMap<>(); // ticket -> {demand, arrival}
    Map<String, Boolean> started = new HashMap<>();
    long step = 20_000_000L;
    for (long t = start; t - start < seconds * SEC; t += step) {
      for (Demand d : demands) {
        if (!started.containsKey(d.tenant()) && clock.read() - start >= d.fromSeconds() * SEC) {
          started.put(d.tenant(), true);
          for (int i = 0; i < 4; i++) {
            open.put(acquire(d), new Object[] {d, clock.read()});
          }
        }
      }
      if (probing != null && (t - start) % SEC == 0 && t > start) {
        long estimate = sync(engine).estimate("q", Map.of("tokens", 5L), Lane.DEFAULT, probing);
        open.put(acquire(new Demand(probing, 0, 5, 5)), new Object[] {new Demand(probing, -1, 5, 5), clock.read(), estimate});
      }
      clock.advance(Duration.ofNanos(step));
      // Handed-over grants: recorded at the instant they were made, settled, asked for again.
      List<Ticket> done = open.keySet().stream().filter(k -> k.future().isDone()).toList();
      for (Ticket k : done) {
        Object[] o = open.remove(k);
        Demand d = (Demand) o[0];
        Grant g = k.future().join();
        out.add(new Granted(d.tenant(), (long) o[1] + g.waitedNanos() - start, d.settles()));
        sync(engine).release("q", g.permitId(), Map.of("tokens", d.settles()), true, false);
        if (d.fromSeconds() < 0) {
          probes.add(new long[] {(long) o[2], g.waitedNanos()}); // a probe: not asked for again
          continue;
        }
        open.put(acquire(d), new Object[] {d, clock.read()});
      }
    }
    return out;
  }

  private Ticket acquire(Demand d) {
    return sync(engine).acquire("q", Map.of("tokens", d.tokens()), Lane.DEFAULT, 600 * SEC, null, d.tenant());
  }

  /** Each tenant's share of the tokens really used in {@code [from, to)} seconds. */
  private static Map<String, Double> shares(List<Granted> grants, long from, long to) {
    Map<String, Double> used = new HashMap<>();
    double total = 0;
    for (Granted g : grants) {
      if (g.atNanos() >= from * SEC && g.atNanos() < to * SEC) {
        used.merge(g.tenant(), (double) g.used(), Double::sum);
        total += g.used();
      }
    }
    Map<String, Double> out = new HashMap<>();
    for (Map.Entry<String, Double> e : used.entrySet()) {
      out.put(e.getKey(), e.getValue() / total);
    }
    return out;
  }

  private static double usedIn(List<Granted> grants, String tenant, long fromNanos, long toNanos) {
    return grants.stream()
        .filter(g -> (tenant == null || g.tenant().equals(tenant)) && g.atNanos() >= fromNanos && g.atNanos() < toNanos)
        .mapToDouble(Granted::used)
        .sum();
  }

  @Test
  void backloggedTenantsShareByWeightInEveryWindow() {
    List<Granted> grants = run(new TenantPolicy(Map.of("a", 3.0), Map.of(), Map.of()), 40,
        Demand.of("a"), Demand.of("b"), Demand.of("c"));
    for (long w = 10; w < 40; w += 10) {
      Map<String, Double> s = shares(grants, w, w + 10);
      assertThat(s.get("a")).as("a's share in [%d, %d) s", w, w + 10).isCloseTo(0.6, within(0.03));
      assertThat(s.get("b")).as("b's share in [%d, %d) s", w, w + 10).isCloseTo(0.2, within(0.03));
      assertThat(s.get("c")).as("c's share in [%d, %d) s", w, w + 10).isCloseTo(0.2, within(0.03));
    }
    // Work-conserving: the quota is used in full while everybody waits.
    assertThat(usedIn(grants, null, 10 * SEC, 40 * SEC)).isCloseTo(3_000.0, within(30.0));
  }

  @Test
  void aTenantThatArrivesLateGetsItsShareWithinOneRefillOfItsHeadLoad() {
    List<Granted> grants = run(TenantPolicy.NONE, 30,
        Demand.of("a"), Demand.of("b"), new Demand("late", 15, 5, 5));
    long first = grants.stream().filter(g -> g.tenant().equals("late")).mapToLong(Granted::atNanos).min().orElseThrow();
    // Its head load (5 tokens) refills in 50 ms; the test's own step adds up to 20 ms.
    assertThat(first).as("the late tenant's first grant").isLessThanOrEqualTo(15 * SEC + 70_000_000L);
    Map<String, Double> s = shares(grants, 20, 30);
    assertThat(s.get("late")).isCloseTo(1 / 3.0, within(0.03));
    assertThat(s.get("a")).isCloseTo(1 / 3.0, within(0.03));
  }

  @Test
  void aTenantAloneUsesTheWholeQuota() {
    List<Granted> grants = run(new TenantPolicy(Map.of("a", 3.0), Map.of(), Map.of()), 20, Demand.of("b"));
    assertThat(usedIn(grants, "b", 10 * SEC, 20 * SEC)).as("100 tokens/s for 10 s").isCloseTo(1_000.0, within(10.0));
  }

  @Test
  void aFloorHoldsWhileItsTenantHasDemand() {
    // Four tenants of weight 1 would get 25 % each; b's floor lifts it to 40 %.
    List<Granted> grants = run(new TenantPolicy(Map.of(), Map.of("b", 0.4), Map.of()), 30,
        Demand.of("a"), Demand.of("b"), Demand.of("c"), Demand.of("d"));
    for (long w = 10; w < 30; w += 10) {
      Map<String, Double> s = shares(grants, w, w + 10);
      assertThat(s.get("b")).as("b's share in [%d, %d) s", w, w + 10).isGreaterThanOrEqualTo(0.4 - 0.03);
      assertThat(s.get("a")).as("the others share the rest").isCloseTo(0.2, within(0.03));
    }
  }

  @Test
  void aCapIsNeverExceededAndTheOthersUseWhatItLeaves() {
    // c may use 20 tokens/s (burst 10) of the 100: the other two share the remaining 80.
    RateSpec cap = new RateSpec("tokens", 1_200, Duration.ofMinutes(1), 10);
    List<Granted> grants = run(new TenantPolicy(Map.of(), Map.of(), Map.of("c", List.of(cap))), 30,
        Demand.of("a"), Demand.of("b"), Demand.of("c"));
    for (long from = 0; from + SEC <= 30 * SEC; from += SEC / 2) {
      assertThat(usedIn(grants, "c", from, from + SEC)).as("c in the second from %d ms", from / 1_000_000)
          .isLessThanOrEqualTo(20 + 10);
    }
    assertThat(usedIn(grants, "c", 10 * SEC, 30 * SEC)).as("c gets its cap").isCloseTo(400.0, within(15.0));
    assertThat(usedIn(grants, null, 10 * SEC, 30 * SEC)).as("work-conserving").isCloseTo(2_000.0, within(20.0));
  }

  @Test
  void underSteadyLoadTheWaitEstimateIsWithinTwentyPercentAtP90() {
    probing = "a";
    run(new TenantPolicy(Map.of("a", 2.0), Map.of(), Map.of()), 40, Demand.of("a"), Demand.of("b"), Demand.of("c"));
    assertThat(probes).hasSizeGreaterThan(30);
    List<Double> errors = probes.stream().skip(5) // after the first few seconds: steady
        .map(p -> Math.abs(p[0] - p[1]) / (double) p[1]).sorted().toList();
    double p90 = errors.get((int) Math.ceil(errors.size() * 0.9) - 1);
    assertThat(p90).as("p90 of |estimate - wait| / wait over %d probes", errors.size()).isLessThanOrEqualTo(0.2);
  }

  @Test
  void anEstimateNeedsNoQueueingAndSaysWhenOnlyAResumeCanHelp() {
    sync(engine).setLimit(new LimitSpec("q", List.of(TOKENS), 0, 100, Duration.ofMinutes(5)));
    clock.advance(Duration.ofSeconds(1)); // 100 tokens in the bucket
    assertThat(sync(engine).estimate("q", Map.of("tokens", 50L), Lane.DEFAULT, null)).isZero();
    assertThat(sync(engine).estimate("q", Map.of("tokens", 150L), Lane.DEFAULT, "x"))
        .as("50 more tokens at 100/s").isEqualTo(500_000_000L);
    assertThat(sync(engine).stats("q").waiting().values()).allMatch(n -> n == 0);
    sync(engine).pause("q", -1);
    assertThat(sync(engine).estimate("q", Map.of("tokens", 1L), Lane.DEFAULT, null)).isEqualTo(-1);
  }

  @Test
  void statsCountEachNamedTenantAndTheRestTogether() {
    // a is named by the policy; x and y are not: they are counted together as "other".
    List<Granted> grants = run(new TenantPolicy(Map.of("a", 2.0), Map.of(), Map.of()), 5,
        new Demand("a", 0, 10, 5), Demand.of("x"), Demand.of("y"));
    Map<String, ResourceSnapshot.TenantUse> t = sync(engine).stats("q").tenants();
    assertThat(t).containsOnlyKeys("a", "other");
    assertThat(t.get("a").used().get("tokens")).as("settled, not estimated")
        .isEqualTo(5.0 * grants.stream().filter(g -> g.tenant().equals("a")).count());
    assertThat(t.get("other").used().get("tokens"))
        .isEqualTo(5.0 * grants.stream().filter(g -> !g.tenant().equals("a")).count());
    assertThat(t.get("a").waiting() + t.get("other").waiting()).as("4 kept waiting by each").isEqualTo(12);
  }

  @Test
  void aPolicyChangeReachesTheTenantsAlreadyWaiting() {
    // a and b queue under a policy that names neither; then a weighs 3 and is named in stats.
    sync(engine).setLimit(new LimitSpec("q", List.of(TOKENS), 0, 100, Duration.ofMinutes(5)));
    sync(engine).pause("q", -1);
    List<Ticket> a = new ArrayList<>();
    List<Ticket> b = new ArrayList<>();
    for (int i = 0; i < 8; i++) {
      a.add(acquire(Demand.of("a")));
      b.add(acquire(Demand.of("b")));
    }
    sync(engine).setLimit(new LimitSpec("q", List.of(TOKENS), 0, 100, Duration.ofMinutes(5),
        new TenantPolicy(Map.of("a", 3.0), Map.of(), Map.of())));
    clock.advance(Duration.ofMillis(400)); // 40 tokens: eight grants of 5
    sync(engine).resume("q");
    long grantedA = a.stream().filter(t -> t.future().isDone()).count();
    long grantedB = b.stream().filter(t -> t.future().isDone()).count();
    assertThat(grantedA + grantedB).isEqualTo(8);
    assertThat(grantedA).as("a at weight 3 (virtual time +1/3 a grant): 6 of 8; at its old weight 1, 4")
        .isEqualTo(6);
    Map<String, ResourceSnapshot.TenantUse> t = sync(engine).stats("q").tenants();
    assertThat(t.get("a").used().get("tokens")).as("counted under its own name since").isEqualTo(30.0);
    assertThat(t.get("other").used().get("tokens")).isEqualTo(10.0);
  }

  @Test
  void settledUsageNotTheEstimateDecidesTheShares() {
    // a always asks for twice what it uses; b asks for what it uses. Equal weights: equal use.
    List<Granted> grants = run(TenantPolicy.NONE, 30, new Demand("a", 0, 10, 5), new Demand("b", 0, 5, 5));
    for (long w = 10; w < 30; w += 10) {
      Map<String, Double> s = shares(grants, w, w + 10);
      assertThat(s.get("a")).as("a's share of the tokens used in [%d, %d) s", w, w + 10).isCloseTo(0.5, within(0.03));
    }
  }
}
