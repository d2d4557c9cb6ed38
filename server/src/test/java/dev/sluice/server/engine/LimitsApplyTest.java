package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.server.limits.LimitsApply;
import dev.sluice.server.limits.LimitsApply.Change;
import dev.sluice.server.limits.LimitsDocument;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Limits files applied to both stores: the diff against what the store holds, dry run, prune,
 * pools ordered around their members, and export then apply changing nothing.
 */
@ParameterizedClass(name = "{0}")
@EnumSource(TwoStores.Store.class)
class LimitsApplyTest {

  @Parameter TwoStores.Store store;
  private Engine engine;

  private static final String FILE = """
      resources:
        openai-a:
          rates:
            - {dimension: requests, amount: 500, period: 1m}
            - {dimension: tokens, amount: 200000, period: 1m, burst: 4000}
          shares: {search: 3}
        openai-b:
          rates: [{dimension: requests, amount: 500, period: 1m}]
          shares: {search: 3}
        shop:
          concurrency: 10
          lease: 1m
      pools:
        openai: [openai-a, openai-b]
      """;

  @BeforeEach
  void setUp() throws Exception {
    engine = new PoolEngine(TwoStores.open(store, new FakeClock(), null));
  }

  @AfterEach
  void tearDown() {
    engine.closeStore();
  }

  @AfterAll
  static void stopRedis() {
    TwoStores.stopRedis();
  }

  private List<Change> plan(String text, boolean prune) {
    return LimitsApply.plan(engine, LimitsDocument.parse(text, "limits.yaml"), prune).join();
  }

  private List<Change> apply(String text, boolean prune) {
    return LimitsApply.apply(engine, plan(text, prune), "test").join();
  }

  private Map<String, Change.Kind> kinds(List<Change> plan) {
    Map<String, Change.Kind> out = new LinkedHashMap<>();
    plan.forEach(c -> out.put(c.resource(), c.kind()));
    return out;
  }

  @Test
  void appliesADiffOnceAndThenHasNothingToDo() {
    sync(engine).setLimit(new LimitSpec("manual", List.of(new RateSpec("requests", 5, Duration.ofSeconds(1), 5)),
        0, 0, null));
    List<Change> dry = plan(FILE, false);
    assertThat(kinds(dry)).containsExactly(Map.entry("openai-a", Change.Kind.ADDED),
        Map.entry("openai-b", Change.Kind.ADDED), Map.entry("shop", Change.Kind.ADDED),
        Map.entry("openai", Change.Kind.ADDED), Map.entry("manual", Change.Kind.UNMANAGED));
    assertThat(sync(engine).listLimits("")).as("a plan changes nothing").hasSize(1);

    apply(FILE, false);
    assertThat(sync(engine).getLimit("openai").orElseThrow().members()).containsExactly("openai-a", "openai-b");
    assertThat(sync(engine).getLimit("shop").orElseThrow().leaseTtl()).isEqualTo(Duration.ofMinutes(1));
    assertThat(sync(engine).getLimit("openai-a").orElseThrow().rates().get(1).burst()).isEqualTo(4000);
    assertThat(kinds(plan(FILE, false))).as("idempotent: only the limit it does not name")
        .containsExactly(Map.entry("manual", Change.Kind.UNMANAGED));

    String changed = FILE.replace("concurrency: 10", "concurrency: 12");
    List<Change> second = apply(changed, true);
    assertThat(kinds(second)).containsExactly(Map.entry("shop", Change.Kind.CHANGED),
        Map.entry("manual", Change.Kind.REMOVED));
    assertThat(second.get(0).details()).containsExactly("concurrency 10 → 12");
    assertThat(sync(engine).getLimit("manual")).isEmpty();
    assertThat(plan(changed, true)).isEmpty();
  }

  @Test
  void pruneRemovesAPoolBeforeItsMembers() {
    apply(FILE, false);
    List<Change> gone = apply("resources:\n  shop: {concurrency: 10, lease: 1m}\n", true);
    assertThat(kinds(gone)).containsOnly(Map.entry("openai-a", Change.Kind.REMOVED),
        Map.entry("openai-b", Change.Kind.REMOVED), Map.entry("openai", Change.Kind.REMOVED));
    assertThat(sync(engine).listLimits("")).extracting(LimitSpec::resource).containsExactly("shop");
  }

  @Test
  void aRefusedChangeSaysHowManyWereApplied() {
    // The pool's member is neither in the file nor in the store: the store refuses the pool.
    String text = "resources:\n  a: {concurrency: 1}\npools:\n  p: [a, missing]\n";
    assertThatThrownBy(() -> apply(text, false))
        .isInstanceOf(CompletionException.class)
        .hasRootCauseInstanceOf(EngineException.class)
        .rootCause().hasMessageContaining("1 of 2 changes applied, then:").hasMessageContaining("missing");
    assertThat(sync(engine).getLimit("a")).isPresent();
    assertThat(sync(engine).getLimit("p")).isEmpty();
  }

  /** Export, then apply: no changes, over limits of every kind, generated. */
  @Test
  void exportThenApplyChangesNothing() {
    Random random = new Random(20261205L);
    List<String> names = new ArrayList<>();
    for (int i = 0; i < 60; i++) {
      String name = "r" + i + (random.nextBoolean() ? ":team/" + random.nextInt(100) : "");
      names.add(name);
      sync(engine).setLimit(randomLimit(name, random));
    }
    sync(engine).setLimit(LimitSpec.pool("pool-1", List.of(names.get(0))));
    for (int i = 0; i < 20; i++) {
      String pattern = "t" + i + (random.nextBoolean() ? ":*" : ":team/?" + (random.nextBoolean() ? "*" : ""));
      LimitSpec t = randomLimit(pattern, random);
      // Floors drawn as 0 % are refused by any store; weights show that policies go through.
      sync(engine).setTemplate(t.withTenants(new TenantPolicy(t.tenants().weights(), Map.of(), Map.of())));
    }
    String exported = LimitsDocument.export(LimitsApply.current(engine).join());
    assertThat(exported).contains("templates:");
    assertThat(plan(exported, true)).as(exported).isEmpty();
  }

  private static final String TEMPLATES = """
      resources:
        customer:vip: {rates: [{dimension: requests, amount: 600, period: 1m}]}
      templates:
        "customer:*":
          rates: [{dimension: requests, amount: 60, period: 1m}]
        "customer:gold:*":
          rates: [{dimension: requests, amount: 300, period: 1m}]
          concurrency: 5
      """;

  @Test
  void templatesAreAppliedDiffedAndPruned() {
    assertThat(kinds(apply(TEMPLATES, false))).containsExactly(Map.entry("customer:vip", Change.Kind.ADDED),
        Map.entry("customer:*", Change.Kind.ADDED), Map.entry("customer:gold:*", Change.Kind.ADDED));
    assertThat(sync(engine).templateFor("customer:gold:1")).map(LimitSpec::resource).contains("customer:gold:*");
    assertThat(sync(engine).templateFor("customer:vip")).isEmpty();
    assertThat(plan(TEMPLATES, true)).as("a second apply: no changes").isEmpty();

    String changed = """
        resources:
          customer:vip: {rates: [{dimension: requests, amount: 600, period: 1m}]}
        templates:
          "customer:*":
            rates: [{dimension: requests, amount: 120, period: 1m}]
        """;
    List<Change> second = apply(changed, true);
    assertThat(kinds(second)).containsExactly(Map.entry("customer:*", Change.Kind.CHANGED),
        Map.entry("customer:gold:*", Change.Kind.REMOVED));
    assertThat(second.get(0).details()).containsExactly("rates.requests 60/1m burst 1 → 120/1m burst 2");
    assertThat(sync(engine).listTemplates()).extracting(LimitSpec::resource).containsExactly("customer:*");

    // Without prune a template the file does not name is left, and listed.
    sync(engine).setTemplate(new LimitSpec("vendor:*", List.of(), 3, 0, null));
    assertThat(kinds(plan(changed, false))).containsExactly(Map.entry("vendor:*", Change.Kind.UNMANAGED));
  }

  @Test
  void aBadTemplateIsRefusedWithItsLineAndColumn() {
    assertThatThrownBy(() -> LimitsDocument.parse("templates:\n  \"*\": {concurrency: 1}\n", "limits.yaml"))
        .hasMessageContaining("limits.yaml:2:3").hasMessageContaining("starts with '*'");
    assertThatThrownBy(() -> LimitsDocument.parse("templates:\n  customer: {concurrency: 1}\n", "limits.yaml"))
        .hasMessageContaining("limits.yaml:2:3").hasMessageContaining("no wildcard");
    assertThatThrownBy(() -> LimitsDocument.parse(
            "templates:\n  \"c:*\":\n    rates: [{dimension: requests, amount: 0, period: 1m}]\n", "limits.yaml"))
        .hasMessageContaining("limits.yaml:2:3: template 'c:*': rate requests amount 0 is out of range");
    assertThatThrownBy(() -> LimitsDocument.parse("templates: [a]\n", "limits.yaml"))
        .hasMessageContaining("limits.yaml:1:1").hasMessageContaining("templates must be a mapping");
  }

  private static LimitSpec randomLimit(String name, Random random) {
    List<RateSpec> rates = new ArrayList<>();
    List<String> dims = List.of("requests", "tokens", "usd", "input-tokens");
    int n = random.nextInt(3);
    for (int d = 0; d < n; d++) {
      long amount = 1 + random.nextInt(1_000_000);
      Duration period = List.of(Duration.ofSeconds(1), Duration.ofMinutes(1), Duration.ofMillis(1500),
          Duration.ofHours(1)).get(random.nextInt(4));
      rates.add(new RateSpec(dims.get(d), amount, period, random.nextBoolean() ? 0 : 1 + random.nextInt((int) amount)));
    }
    long concurrency = rates.isEmpty() || random.nextBoolean() ? 1 + random.nextInt(100) : 0;
    Duration lease = random.nextBoolean() ? null : Duration.ofSeconds(1 + random.nextInt(600));
    Map<String, Double> weights = random.nextBoolean() ? Map.of() : Map.of("search", 1 + random.nextInt(5) + 0.5);
    Map<String, Double> floors = random.nextBoolean() ? Map.of() : Map.of("batch", random.nextInt(50) / 100.0);
    return new LimitSpec(name, rates, concurrency, random.nextBoolean() ? 0 : 1 + random.nextInt(5000), lease,
        rates.isEmpty() || random.nextBoolean() ? Duration.ZERO : null, new TenantPolicy(weights, floors, Map.of()));
  }
}
