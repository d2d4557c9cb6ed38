package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.server.limits.LimitChanges;
import dev.sluice.server.limits.LimitHistory;
import dev.sluice.server.limits.LimitsApply;
import dev.sluice.server.limits.LimitsApply.Change;
import dev.sluice.server.limits.LimitsDocument;
import dev.sluice.server.limits.RedisLimitHistory;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Limits a limits file manages, on both stores: the owner stored with the limit, a change by
 * hand refused without force and reported as drift after it, another file refused; and every
 * change logged once and kept in the capped history with who made it.
 */
@ParameterizedClass(name = "{0}")
@EnumSource(TwoStores.Store.class)
class LimitOwnershipTest {

  @Parameter TwoStores.Store store;
  private Engine engine;
  private RedisStore redis;
  private final AtomicLong wall = new AtomicLong(1_700_000_000_000L);
  private LimitChanges changes;
  private final java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
  private final java.io.PrintStream originalErr = System.err;

  private static final String FILE = """
      resources:
        openai:
          rates: [{dimension: requests, amount: 500, period: 1m}]
          concurrency: 50
        shop:
          concurrency: 10
      pools:
        any: [openai, shop]
      """;

  @BeforeEach
  void setUp() throws Exception {
    engine = new PoolEngine(TwoStores.open(store, new FakeClock(), null));
    changes = new LimitChanges(engine, history(LimitHistory.PER_RESOURCE, LimitHistory.RESOURCES), wall::get);
    // slf4j-simple writes to System.err as it is at each line.
    System.setErr(new java.io.PrintStream(err, true, java.nio.charset.StandardCharsets.UTF_8));
  }

  private LimitHistory history(int perResource, int resources) throws Exception {
    if (store == TwoStores.Store.MEMORY) {
      return LimitHistory.inMemory(perResource, resources);
    }
    if (redis == null) {
      redis = RedisStore.builder().uri(TwoStores.redisUri()).build();
    }
    return new RedisLimitHistory(redis, perResource, resources);
  }

  @AfterEach
  void tearDown() {
    System.setErr(originalErr);
    engine.closeStore();
    if (redis != null) {
      redis.close();
    }
  }

  private List<String> logLines() {
    System.err.flush();
    return List.of(err.toString(java.nio.charset.StandardCharsets.UTF_8).split("\n"));
  }

  @AfterAll
  static void stopRedis() {
    TwoStores.stopRedis();
  }

  private List<Change> plan(String text, String file, boolean prune, boolean force) {
    return LimitsApply.plan(engine, LimitsDocument.parse(text, file), prune, file, force).join();
  }

  private List<Change> apply(String text, String file, boolean prune, boolean force) {
    LimitsDocument doc = LimitsDocument.parse(text, file);
    return LimitsApply.apply(changes, plan(text, file, prune, force), LimitChanges.file(file, doc.hash())).join();
  }

  private static LimitSpec concurrency(String resource, long n) {
    return new LimitSpec(resource, List.of(), n, 0, null, null, TenantPolicy.NONE, null); // jitter: the default
  }

  private LimitOwner owner(String resource) {
    return sync(engine).getLimit(resource).orElseThrow().owner();
  }

  private static Throwable cause(Throwable t) {
    return EngineException.unwrap(t);
  }

  @Test
  void anAppliedFileOwnsItsLimitsAndTheStoreKeepsTheOwner() {
    apply(FILE, "limits.yaml", false, false);
    String hash = LimitsDocument.parse(FILE, "x").hash();
    assertThat(owner("openai")).isEqualTo(new LimitOwner("limits.yaml", hash, false));
    assertThat(owner("any")).as("a pool too").isEqualTo(new LimitOwner("limits.yaml", hash, false));
    assertThat(owner("any").describe()).isEqualTo("limits file limits.yaml (sha256 " + hash + ")");
    assertThat(plan(FILE, "limits.yaml", false, false)).as("applied again: nothing").isEmpty();
    assertThat(plan(FILE, "/etc/sluice/limits.yaml", false, false))
        .as("the same file from another directory is the same owner").isEmpty();
    assertThat(LimitsApply.ownerName("C:\\conf\\limits.yaml")).isEqualTo("limits.yaml");
    assertThat(LimitsApply.ownerName("conf/a\nb.yaml")).isEqualTo("a?b.yaml");
    assertThat(LimitsApply.ownerName("x".repeat(300))).hasSize(120);

    // A version of the file that changes one resource: only that one is written, with the new hash.
    String v2 = FILE.replace("concurrency: 10", "concurrency: 12");
    apply(v2, "limits.yaml", false, false);
    assertThat(owner("shop").sha256()).isEqualTo(LimitsDocument.parse(v2, "x").hash());
    assertThat(owner("openai").sha256()).as("unchanged, not rewritten").isEqualTo(hash);
  }

  @Test
  void setAndDeleteByHandAreRefusedWithoutForceNamingTheFileAndTheFix() {
    apply(FILE, "limits.yaml", false, false);
    assertThatThrownBy(() -> changes.set(concurrency("shop", 99), "key abc", false).join())
        .satisfies(e -> {
          EngineException ee = (EngineException) cause(e);
          assertThat(ee.reason()).isEqualTo(EngineException.Reason.CONFLICT);
          assertThat(ee.getMessage()).isEqualTo("resource 'shop' is managed by limits file limits.yaml (sha256 "
              + owner("shop").sha256() + "): edit limits.yaml and apply it, or pass --force to set it by hand"
              + " (the file's next apply reports it as drift and puts it back)");
        });
    assertThatThrownBy(() -> changes.delete("shop", "key abc", false).join())
        .satisfies(e -> assertThat(cause(e).getMessage()).contains("managed by limits file limits.yaml")
            .contains("--force to delete it"));
    assertThatThrownBy(() -> changes.set(LimitSpec.pool("any", List.of("shop")), "local", false).join())
        .as("a pool the file manages").satisfies(e -> assertThat(((EngineException) cause(e)).reason())
            .isEqualTo(EngineException.Reason.CONFLICT));
    assertThat(sync(engine).getLimit("shop").orElseThrow().concurrency()).as("nothing changed").isEqualTo(10);
  }

  @Test
  void aForcedSetIsDriftThatThePlanReportsAndTheApplyPutsBack() {
    apply(FILE, "limits.yaml", false, false);
    assertThat(changes.set(concurrency("shop", 99), "key abc", true).join()).isFalse();
    assertThat(owner("shop").overridden()).isTrue();
    assertThat(owner("shop").describe()).endsWith(", changed by hand since");
    // Changed by hand already: a further change needs no force.
    changes.set(concurrency("shop", 98), "key abc", false).join();

    List<Change> plan = plan(FILE, "limits.yaml", false, false);
    assertThat(plan).hasSize(1);
    assertThat(plan.get(0).kind()).isEqualTo(Change.Kind.DRIFTED);
    assertThat(plan.get(0).details()).containsExactly(LimitsApply.DRIFTED, "concurrency 98 → 10");
    assertThat(plan.get(0).toString()).startsWith("! shop: drifted: changed by hand since the file was applied");
    assertThat(LimitsApply.summary(plan)).isEqualTo("0 added, 0 changed, 0 removed, 1 drifted (changed by hand, put back)");

    apply(FILE, "limits.yaml", false, false);
    assertThat(sync(engine).getLimit("shop").orElseThrow().concurrency()).isEqualTo(10);
    assertThat(owner("shop").overridden()).isFalse();
    assertThat(plan(FILE, "limits.yaml", false, false)).isEmpty();

    // Forced to the very same values: still drift (its owner says so), put back with no field change.
    changes.set(concurrency("shop", 10), "local", true).join();
    assertThat(plan(FILE, "limits.yaml", false, false)).singleElement()
        .satisfies(c -> assertThat(c.details()).containsExactly(LimitsApply.DRIFTED));
  }

  @Test
  void aForcedDeleteIsAddedBackByTheNextApply() {
    apply(FILE, "limits.yaml", false, false);
    changes.delete("any", "local", true).join();
    assertThat(sync(engine).getLimit("any")).isEmpty();
    assertThat(plan(FILE, "limits.yaml", false, false)).singleElement()
        .satisfies(c -> assertThat(c.kind()).isEqualTo(Change.Kind.ADDED));
  }

  @Test
  void aLimitSetByHandIsTakenOverByTheFirstApplyThatChangesItOrByForce() {
    changes.set(concurrency("shop", 10), "local", false).join();
    assertThat(owner("shop")).isNull();
    assertThat(plan(FILE, "limits.yaml", false, false)).as("the file's values already: left to its owner")
        .noneMatch(c -> c.resource().equals("shop"));
    assertThat(plan(FILE, "limits.yaml", false, true)).filteredOn(c -> c.resource().equals("shop")).singleElement()
        .satisfies(c -> assertThat(c.details()).containsExactly("managed by hand → limits file limits.yaml"));

    changes.set(concurrency("shop", 9), "local", false).join();
    assertThat(plan(FILE, "limits.yaml", false, false)).filteredOn(c -> c.resource().equals("shop")).singleElement()
        .satisfies(c -> assertThat(c.details()).containsExactly("concurrency 9 → 10",
            "managed by hand → limits file limits.yaml"));
    apply(FILE, "limits.yaml", false, false);
    assertThat(owner("shop").file()).isEqualTo("limits.yaml");
  }

  @Test
  void anotherFileIsRefusedUnlessForcedAndItsPruneLeavesTheOthersLimits() {
    apply(FILE, "limits.yaml", false, false);
    String other = "resources:\n  shop: {concurrency: 20}\n  mine: {concurrency: 1}\n";
    assertThatThrownBy(() -> plan(other, "team.yaml", false, false)).satisfies(e -> {
      EngineException ee = (EngineException) cause(e);
      assertThat(ee.reason()).isEqualTo(EngineException.Reason.CONFLICT);
      assertThat(ee.getMessage()).startsWith("resource 'shop' is managed by limits file limits.yaml (sha256 ")
          .endsWith(", not by team.yaml: remove it from one of the two files, or pass --force to move it to team.yaml");
    });

    assertThat(plan("resources:\n  shop: {concurrency: 10}\n", "team.yaml", false, false))
        .as("another file with the same values changes nothing: export, then apply, is no changes")
        .noneMatch(c -> c.kind() != Change.Kind.UNMANAGED);

    // Prune by another file leaves what limits.yaml manages; forced, it removes them.
    String mine = "resources:\n  mine: {concurrency: 1}\n";
    List<Change> pruned = plan(mine, "team.yaml", true, false);
    assertThat(pruned).filteredOn(c -> c.resource().equals("openai")).singleElement().satisfies(c -> {
      assertThat(c.kind()).isEqualTo(Change.Kind.UNMANAGED);
      assertThat(c.details()).singleElement().asString().startsWith("managed by limits file limits.yaml")
          .endsWith(": left (--prune --force removes it)");
    });
    assertThat(plan(mine, "team.yaml", true, true)).filteredOn(c -> c.kind() == Change.Kind.REMOVED).hasSize(3);

    List<Change> moved = apply(other, "team.yaml", false, true);
    assertThat(moved).filteredOn(c -> c.resource().equals("shop")).singleElement()
        .satisfies(c -> assertThat(c.details()).containsExactly("concurrency 10 → 20",
            "managed by limits file limits.yaml → limits file team.yaml"));
    assertThat(owner("shop").file()).isEqualTo("team.yaml");
  }

  @Test
  void everyChangeLogsOneLineAndIsKeptNewestFirstWithWhoMadeIt() {
    String hash = LimitsDocument.parse(FILE, "x").hash();
    err.reset();
    apply(FILE, "limits.yaml", false, false);
    wall.addAndGet(1000);
    changes.set(concurrency("shop", 11), "key abc", true).join();
    wall.addAndGet(1000);
    changes.delete("shop", "local", true).join();

    List<String> audit = logLines().stream().filter(l -> l.contains("LimitChanges - limit ")).toList();
    assertThat(audit).as("one line per change: 3 of the file, then 2 by hand").hasSize(5);
    assertThat(audit).filteredOn(l -> l.contains("limit shop ")).satisfiesExactly(
        l -> assertThat(l).endsWith("limit shop created by file limits.yaml sha256:" + hash + ": concurrency 10;"
            + " maxWaiting 10000; lease 30s; jitter 20ms; managed by hand → limits file limits.yaml"),
        l -> assertThat(l).endsWith("limit shop changed by key abc: concurrency 10 → 11; managed by limits file"
            + " limits.yaml → hand (over limits file limits.yaml)"),
        l -> assertThat(l).endsWith("limit shop deleted by local: concurrency 11; maxWaiting 10000; lease 30s;"
            + " jitter 20ms"));

    List<LimitHistory.Entry> h = changes.history("shop", 20).join();
    assertThat(h).extracting(LimitHistory.Entry::action).containsExactly("deleted", "changed", "created");
    assertThat(h.get(2).who()).isEqualTo("file limits.yaml sha256:" + hash);
    assertThat(h.get(2).changes()).containsExactly("concurrency 10", "maxWaiting 10000", "lease 30s", "jitter 20ms",
        "managed by hand → limits file limits.yaml");
    assertThat(h.get(1).who()).isEqualTo("key abc");
    assertThat(h.get(1).atMillis()).isEqualTo(1_700_000_001_000L);
    assertThat(h.get(1).changes()).containsExactly("concurrency 10 → 11",
        "managed by limits file limits.yaml → hand (over limits file limits.yaml)");
    assertThat(h.get(0).who()).isEqualTo("local");
    assertThat(h.get(0).changes()).contains("concurrency 11");
    assertThat(changes.history("shop", 1).join()).extracting(LimitHistory.Entry::action).containsExactly("deleted");
    assertThat(changes.history("never-changed", 5).join()).isEmpty();
  }

  @Test
  void theHistoryKeepsTheCapPerResourceAndForgetsTheResourcesChangedLongestAgo() throws Exception {
    changes = new LimitChanges(engine, history(3, 2), wall::get);
    for (int i = 1; i <= 5; i++) {
      wall.addAndGet(1);
      changes.set(concurrency("a", i), "local", false).join();
    }
    assertThat(changes.history("a", 50).join()).extracting(e -> e.changes().get(0))
        .containsExactly("concurrency 4 → 5", "concurrency 3 → 4", "concurrency 2 → 3");
    wall.addAndGet(1);
    changes.set(concurrency("b", 1), "local", false).join();
    assertThat(changes.history("a", 50).join()).hasSize(3);
    wall.addAndGet(1);
    changes.set(concurrency("c", 1), "local", false).join();
    assertThat(changes.history("a", 50).join()).as("a changed longest ago: its history is dropped").isEmpty();
    assertThat(changes.history("b", 50).join()).hasSize(1);
    assertThat(changes.history("c", 50).join()).hasSize(1);
  }

  @Test
  void badHistoryQuestionsAreRefusedAndAnUnreadableStoreIsUnavailable() {
    assertThatThrownBy(() -> changes.history("shop", 0).join())
        .satisfies(e -> assertThat(cause(e).getMessage()).isEqualTo("asked for 0 changes: ask for 1 to 50 (that many"
            + " are kept per resource)"));
    assertThatThrownBy(() -> changes.history("shop", 51).join()).satisfies(e ->
        assertThat(((EngineException) cause(e)).reason()).isEqualTo(EngineException.Reason.INVALID));
    assertThatThrownBy(() -> changes.history("bad name!", 5).join()).satisfies(e ->
        assertThat(((EngineException) cause(e)).reason()).isEqualTo(EngineException.Reason.INVALID));
    assertThatThrownBy(() -> changes.set(concurrency("bad name!", 1), "local", false).join()).satisfies(e ->
        assertThat(((EngineException) cause(e)).reason()).isEqualTo(EngineException.Reason.INVALID));
    assertThatThrownBy(() -> changes.delete("bad name!", "local", false).join()).satisfies(e ->
        assertThat(((EngineException) cause(e)).reason()).isEqualTo(EngineException.Reason.INVALID));
    assertThatThrownBy(() -> changes.delete("nothing", "local", false).join()).satisfies(e ->
        assertThat(((EngineException) cause(e)).reason()).isEqualTo(EngineException.Reason.NOT_FOUND));

    LimitChanges broken = new LimitChanges(engine, new LimitHistory() {
      @Override
      public CompletableFuture<Void> add(String resource, Entry entry) {
        return CompletableFuture.failedFuture(new IllegalStateException("store away"));
      }

      @Override
      public CompletableFuture<List<Entry>> recent(String resource, int n) {
        throw new IllegalStateException("store away");
      }
    }, wall::get);
    err.reset();
    assertThat(broken.set(concurrency("kept", 1), "local", false).join()).as("the change is made").isTrue();
    assertThat(sync(engine).getLimit("kept")).isPresent();
    assertThat(logLines()).filteredOn(l -> l.contains("WARN")).singleElement().asString()
        .contains("the change of limit kept by local is made but not kept in its history")
        .contains("store away");
    assertThatThrownBy(() -> broken.history("kept", 5).join()).satisfies(e -> {
      EngineException ee = (EngineException) cause(e);
      assertThat(ee.reason()).isEqualTo(EngineException.Reason.UNAVAILABLE);
      assertThat(ee.getMessage()).isEqualTo("the history of 'kept' could not be read from the store (store away): retry");
    });
  }

  @Test
  void theOwnerSurvivesTheStoreRoundTrip() throws Exception {
    apply(FILE, "limits.yaml", false, false);
    changes.set(concurrency("shop", 3), "local", true).join();
    if (store == TwoStores.Store.REDIS) {
      // Read back from Redis (getLimit does not use the node's cache).
      assertThat(owner("shop")).isEqualTo(new LimitOwner("limits.yaml", LimitsDocument.parse(FILE, "x").hash(), true));
      assertThat(RedisLimits.decode("shop", RedisLimits.encode(sync(engine).getLimit("any").orElseThrow(), "1"))
          .spec().owner()).isEqualTo(owner("any"));
      return;
    }
    java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("owner");
    FileLimitStore file = new FileLimitStore(dir);
    file.save(sync(engine).listLimits(""));
    assertThat(file.load()).filteredOn(l -> l.resource().equals("shop")).singleElement()
        .satisfies(l -> assertThat(l.owner()).isEqualTo(owner("shop")));
    assertThat(file.load()).filteredOn(l -> l.resource().equals("any")).singleElement()
        .satisfies(l -> assertThat(l.owner()).isEqualTo(owner("any")));
    java.nio.file.Files.writeString(file.file(), java.nio.file.Files.readString(file.file())
        .replaceFirst("\"sha256\" : \"[0-9a-f]+\"", "\"sha256\" : null"));
    assertThatThrownBy(file::load).hasMessageContaining(".owner needs a file and a sha256");
  }

  @Test
  void aLearnedChangeLogsOneLineNamingTheProvider() {
    sync(engine).setLimit(new LimitSpec("taught", List.of(new RateSpec("requests", 60, Duration.ofMinutes(1), 1)),
        0, 0, null, new LearnSpec("openai", List.of(), 0, "")));
    err.reset();
    engine.report("taught", false, 0, java.util.Map.of(), java.util.Map.of("requests", 600L), wall.get()).join();
    engine.report("taught", false, 0, java.util.Map.of(), java.util.Map.of("requests", 600L), wall.get()).join();
    assertThat(logLines()).filteredOn(l -> l.contains("changed by learning")).singleElement().asString()
        .contains("limit taught changed by learning from openai headers: requests=60/PT1M:1 ")
        .contains("→ requests=600/PT1M:");
  }

  /**
   * A worker's report that teaches a learning limit new rates, through the server's limit changes
   * (as the gRPC and HTTP ports send it): one audit line by "learned from openai headers", and the
   * change kept in the history; a report that teaches nothing new adds neither.
   */
  @Test
  void aLearnedChangeIsKeptInTheHistoryByItsProvider() {
    sync(engine).setLimit(new LimitSpec("taught", List.of(new RateSpec("requests", 60, Duration.ofMinutes(1), 1)),
        0, 0, null, new LearnSpec("openai", List.of(), 0, "")));
    err.reset();
    assertThat(changes.report("taught", false, 0, java.util.Map.of(), java.util.Map.of("requests", 600L), wall.get())
        .join()).isZero();
    changes.report("taught", false, 0, java.util.Map.of(), java.util.Map.of("requests", 600L), wall.get()).join();
    List<LimitHistory.Entry> h = changes.history("taught", 10).join();
    assertThat(h).singleElement().satisfies(e -> {
      assertThat(e.who()).isEqualTo("learned from openai headers");
      assertThat(e.action()).isEqualTo("changed");
      assertThat(String.join("; ", e.changes())).contains("60").contains("600");
    });
    assertThat(logLines()).filteredOn(l -> l.contains("LimitChanges - limit taught")).singleElement().asString()
        .contains("changed by learned from openai headers");
    assertThat(logLines()).as("the engine's own line is not logged as well").noneMatch(l -> l.contains("changed by learning"));
  }
}
