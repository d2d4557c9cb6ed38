package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.ResourceNotFoundException;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.limits.LimitsFileWatcher.Outcome;
import dev.sluice.server.redis.RedisProcess;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code serve --limits-file}: applied at start, again when the file changes, a bad file leaving
 * the running limits, and two Redis nodes with one file converging without undoing each other.
 */
class LimitsFileServeTest {

  @TempDir Path dir;

  private static final String FILE = """
      resources:
        openai:
          rates: [{dimension: requests, amount: 500, period: 1m}]
        shop:
          concurrency: 10
      """;

  private SluiceServer.Builder node(Path file, String data) {
    return SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve(data)).limitsFile(file)
        .limitsFilePoll(Duration.ofMillis(50)).shutdownGrace(Duration.ofMillis(200));
  }

  private static long concurrency(SluiceServer s, String resource) {
    return sync(s.engine()).getLimit(resource).map(LimitSpec::concurrency).orElse(-1L);
  }

  @Test
  void appliedAtStartAndAgainWhenTheFileChanges() throws Exception {
    Path file = dir.resolve("limits.yaml");
    Files.writeString(file, FILE);
    try (SluiceServer server = node(file, "data").build().start()) {
      assertThat(sync(server.engine()).getLimit("openai")).as("there before the first call").isPresent();
      assertThat(concurrency(server, "shop")).isEqualTo(10);

      Files.writeString(file, FILE.replace("concurrency: 10", "concurrency: 12"));
      await().atMost(Duration.ofSeconds(10)).until(() -> concurrency(server, "shop") == 12);
      assertThat(server.reloadLimitsFile()).isEqualTo(new Outcome(true, "no changes"));
    }
  }

  /**
   * A coordinator given nothing but a limits file serves its resources and every name its
   * template matches, each with a cap of its own (2 at once), to a worker over its port; a name that no
   * template matches is NOT_FOUND.
   */
  @Test
  void aFileAloneServesItsResourcesAndEveryNameItsTemplatesMatch() throws Exception {
    Path file = dir.resolve("limits.yaml");
    Files.writeString(file, FILE + """
        templates:
          "customer:*":
            concurrency: 2
        """);
    try (SluiceServer server = node(file, "data").build().start();
        SluiceClient worker = SluiceClient.builder().target("127.0.0.1:" + server.port()).build()) {
      worker.acquire("openai", Load.requests(1)).close();
      List<Permit> held = new ArrayList<>();
      int names = 500;
      for (int i = 0; i < names; i++) {
        String name = "customer:" + i;
        held.add(worker.acquire(name, Load.requests(1)));
        held.add(worker.acquire(name, Load.requests(1)));
        assertThat(worker.tryAcquire(name, Load.requests(1), Duration.ZERO)).as("%s's own 2 at once are held", name)
            .isEmpty();
      }
      assertThat(held).hasSize(2 * names);
      held.forEach(Permit::close);
      assertThatThrownBy(() -> worker.acquire("vendor:1", Load.requests(1)))
          .isInstanceOf(ResourceNotFoundException.class);
    }
  }

  @Test
  void aBadFileLeavesTheRunningLimitsAndSaysWhere() throws Exception {
    Path file = dir.resolve("limits.yaml");
    Files.writeString(file, FILE);
    try (SluiceServer server = node(file, "data").build().start()) {
      Files.writeString(file, FILE.replace("concurrency: 10", "concurrency: -1").replace("openai:", "openai2:"));
      Outcome bad = server.reloadLimitsFile();
      assertThat(bad.ok()).isFalse();
      assertThat(bad.text()).startsWith("limits.yaml:").contains("concurrency -1 is out of range")
          .contains("the running limits stay");
      assertThat(concurrency(server, "shop")).isEqualTo(10);
      assertThat(sync(server.engine()).getLimit("openai2")).as("nothing of a bad file is applied").isEmpty();

      Files.delete(file);
      assertThat(server.reloadLimitsFile().text()).contains("does not exist");
      assertThat(sync(server.engine()).getLimit("openai")).isPresent();

      Files.writeString(file, FILE.replace("concurrency: 10", "concurrency: 11"));
      await().atMost(Duration.ofSeconds(10)).until(() -> concurrency(server, "shop") == 11);
    }
  }

  @Test
  void aNodeStartsWithABadFileAndServesItsStoredLimits() throws Exception {
    Path file = dir.resolve("limits.yaml");
    Files.writeString(file, "resources:\n  shop: {concurrency: 10\n");
    try (SluiceServer server = node(file, "data").build().start()) {
      assertThat(server.reloadLimitsFile().text()).contains("limits.yaml:").contains("not a valid YAML document")
          .doesNotContain("\n");
      sync(server.engine()).setLimit(new LimitSpec("by-hand", List.of(new RateSpec("requests", 5,
          Duration.ofSeconds(1), 5)), 0, 0, null));
      Files.writeString(file, FILE);
      await().atMost(Duration.ofSeconds(10)).until(() -> concurrency(server, "shop") == 10);
      assertThat(sync(server.engine()).getLimit("by-hand")).as("not pruned").isPresent();
    }
  }

  @Test
  void twoRedisNodesWithOneFileConverge() throws Exception {
    Path file = dir.resolve("limits.yaml");
    Files.writeString(file, FILE);
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer a = node(file, "a").store(redis.uri()).nodeId("a").build().start();
        SluiceServer b = node(file, "b").store(redis.uri()).nodeId("b").build().start()) {
      assertThat(b.reloadLimitsFile()).as("b finds what a applied").isEqualTo(new Outcome(true, "no changes"));
      Files.writeString(file, FILE.replace("concurrency: 10", "concurrency: 30"));
      await().atMost(Duration.ofSeconds(10)).until(() -> concurrency(a, "shop") == 30 && concurrency(b, "shop") == 30);
      assertThat(a.reloadLimitsFile()).isEqualTo(new Outcome(true, "no changes"));
      assertThat(b.reloadLimitsFile()).isEqualTo(new Outcome(true, "no changes"));
    }
  }

  /** The changes of {@code resource} kept in the shared history, read through node {@code s}. */
  private static int changes(SluiceServer s, String resource) {
    io.grpc.ManagedChannel ch = io.grpc.ManagedChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
    try {
      return dev.sluice.proto.v1.AdminGrpc.newBlockingStub(ch).limitHistory(dev.sluice.proto.v1.LimitHistoryRequest
          .newBuilder().setResource(resource).setLimit(50).build()).getChangesCount();
    } finally {
      ch.shutdownNow();
    }
  }

  @Test
  void twoRedisNodesWithOneFileSettleAndTheirChangeCountStopsGrowing() throws Exception {
    Path file = dir.resolve("limits.yaml");
    Files.writeString(file, FILE);
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer a = node(file, "a").store(redis.uri()).nodeId("a").build().start();
        SluiceServer b = node(file, "b").store(redis.uri()).nodeId("b").build().start()) {
      assertThat(changes(a, "shop")).as("a created it, b found it there").isEqualTo(1);
      assertThat(changes(b, "shop")).as("one history, shared").isEqualTo(1);

      // Both nodes see the edit within a poll: one or both write it, then neither writes again.
      Files.writeString(file, FILE.replace("concurrency: 10", "concurrency: 30"));
      await().atMost(Duration.ofSeconds(10)).until(() -> concurrency(a, "shop") == 30 && concurrency(b, "shop") == 30);
      await().atMost(Duration.ofSeconds(10)).until(() -> a.reloadLimitsFile().text().equals("no changes")
          && b.reloadLimitsFile().text().equals("no changes"));
      int settled = changes(a, "shop");
      assertThat(settled).isBetween(2, 3);
      for (int i = 0; i < 5; i++) {
        assertThat(a.reloadLimitsFile()).isEqualTo(new Outcome(true, "no changes"));
        assertThat(b.reloadLimitsFile()).isEqualTo(new Outcome(true, "no changes"));
      }
      assertThat(changes(a, "shop")).as("no apply loop between the nodes").isEqualTo(settled);
      String hash = dev.sluice.server.limits.LimitsDocument.parse(Files.readString(file), "x").hash();
      assertThat(sync(a.engine()).getLimit("shop").orElseThrow().owner())
          .isEqualTo(sync(b.engine()).getLimit("shop").orElseThrow().owner())
          .isEqualTo(new dev.sluice.server.engine.LimitOwner("limits.yaml", hash, false));

      // A change by hand (forced) is put back by whichever node applies next, once.
      io.grpc.ManagedChannel ch = io.grpc.ManagedChannelBuilder.forAddress("127.0.0.1", a.port()).usePlaintext().build();
      try {
        dev.sluice.proto.v1.AdminGrpc.newBlockingStub(ch).setLimit(dev.sluice.proto.v1.SetLimitRequest.newBuilder()
            .setLimit(dev.sluice.proto.v1.Limit.newBuilder().setResource("shop").setConcurrency(31)).setForce(true)
            .build());
      } finally {
        ch.shutdownNow();
      }
      assertThat(b.reloadLimitsFile().text()).isEqualTo(
          "applied: 0 added, 0 changed, 0 removed, 1 drifted (changed by hand, put back)");
      assertThat(a.reloadLimitsFile()).isEqualTo(new Outcome(true, "no changes"));
      assertThat(concurrency(a, "shop")).isEqualTo(30);
      assertThat(changes(a, "shop")).as("the forced set and the put-back").isEqualTo(settled + 2);
    }
  }
}
