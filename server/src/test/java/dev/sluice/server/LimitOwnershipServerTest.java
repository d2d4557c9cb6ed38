package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.ApplyLimitsRequest;
import dev.sluice.proto.v1.ApplyLimitsResponse;
import dev.sluice.proto.v1.DeleteLimitRequest;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.LimitChange;
import dev.sluice.proto.v1.LimitHistoryEntry;
import dev.sluice.proto.v1.LimitHistoryRequest;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.server.limits.LimitsDocument;
import dev.sluice.server.limits.LimitsFileWatcher.Outcome;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A limits file's ownership and the audit trail on a real coordinator: gRPC SetLimit,
 * DeleteLimit, ApplyLimits and LimitHistory, and the HTTP port, with API keys (who is the key).
 */
class LimitOwnershipServerTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  private static final String FILE = """
      resources:
        shop:
          concurrency: 10
        openai:
          rates: [{dimension: requests, amount: 500, period: 1m}]
      pools:
        any: [shop, openai]
      """;

  @TempDir Path dir;
  private ManagedChannel channel;

  @AfterEach
  void closeChannel() {
    if (channel != null) {
      channel.shutdownNow();
    }
  }

  private SluiceServer node(Path file) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir.resolve("data"))
        .limitsFile(file).limitsFilePoll(Duration.ofHours(1)).shutdownGrace(Duration.ZERO).build().start();
  }

  private AdminGrpc.AdminBlockingStub admin(SluiceServer node, String key) {
    if (channel == null) {
      channel = ManagedChannelBuilder.forAddress("127.0.0.1", node.port()).usePlaintext().build();
    }
    Metadata h = new Metadata();
    h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
    return AdminGrpc.newBlockingStub(channel).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h));
  }

  private static String keyId(String key) {
    return key.split("_")[1];
  }

  private static SetLimitRequest shop(long concurrency, boolean force) {
    return SetLimitRequest.newBuilder().setLimit(Limit.newBuilder().setResource("shop").setConcurrency(concurrency))
        .setForce(force).build();
  }

  private static void refused(Runnable call, Status.Code code, String text) {
    assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(code);
      assertThat(e.getStatus().getDescription()).contains(text);
    });
  }

  @Test
  void overGrpcAManagedLimitIsRefusedForcedReportedAsDriftAndPutBackAndTheHistoryNamesTheKey() throws Exception {
    Path file = dir.resolve("limits.yaml");
    Files.writeString(file, FILE);
    String hash = LimitsDocument.parse(FILE, "x").hash();
    try (SluiceServer node = node(file)) {
      HttpCalls.Keys keys = HttpCalls.keys(node);
      AdminGrpc.AdminBlockingStub admin = admin(node, keys.admin());
      Limit got = admin.getLimit(GetLimitRequest.newBuilder().setResource("shop").build());
      assertThat(got.getManagedBy().getFile()).isEqualTo("limits.yaml");
      assertThat(got.getManagedBy().getSha256()).isEqualTo(hash);
      assertThat(got.getManagedBy().getOverridden()).isFalse();

      refused(() -> admin.setLimit(shop(99, false)), Status.Code.FAILED_PRECONDITION,
          "resource 'shop' is managed by limits file limits.yaml (sha256 " + hash + "): edit limits.yaml and apply"
              + " it, or pass --force");
      refused(() -> admin.deleteLimit(DeleteLimitRequest.newBuilder().setResource("shop").build()),
          Status.Code.FAILED_PRECONDITION, "or pass --force to delete it");
      assertThat(admin.setLimit(shop(99, true)).getLimit().getManagedBy().getOverridden()).isTrue();

      ApplyLimitsResponse dry = admin.applyLimits(ApplyLimitsRequest.newBuilder().setDocument(FILE)
          .setSource("conf/limits.yaml").setDryRun(true).build());
      assertThat(dry.getChangesList()).singleElement().satisfies(c -> {
        assertThat(c.getKind()).isEqualTo(LimitChange.Kind.DRIFTED);
        assertThat(c.getDetailsList()).containsExactly("drifted: changed by hand since the file was applied",
            "concurrency 99 → 10");
      });
      assertThat(node.reloadLimitsFile()).as("SIGHUP puts it back too")
          .isEqualTo(new Outcome(true, "applied: 0 added, 0 changed, 0 removed, 1 drifted (changed by hand, put back)"));
      assertThat(admin.getLimit(GetLimitRequest.newBuilder().setResource("shop").build()).getConcurrency())
          .isEqualTo(10);

      String other = "resources:\n  shop: {concurrency: 20}\n";
      refused(() -> admin.applyLimits(ApplyLimitsRequest.newBuilder().setDocument(other).setSource("team.yaml")
              .build()), Status.Code.FAILED_PRECONDITION,
          "resource 'shop' is managed by limits file limits.yaml (sha256 " + hash + "), not by team.yaml");
      assertThat(admin.applyLimits(ApplyLimitsRequest.newBuilder().setDocument(other).setSource("team.yaml")
          .setForce(true).build()).getApplied()).isTrue();
      assertThat(node.reloadLimitsFile().text()).as("the node's own file no longer owns shop: it does not force")
          .contains("resource 'shop' is managed by limits file team.yaml").contains("not by limits.yaml")
          .endsWith("(a node following its file never forces: sluice limit apply -f limits.yaml --force takes it"
              + " over; nothing was applied)");

      List<LimitHistoryEntry> h = admin.limitHistory(LimitHistoryRequest.newBuilder().setResource("shop").build())
          .getChangesList();
      assertThat(h).extracting(LimitHistoryEntry::getAction)
          .containsExactly("changed", "changed", "changed", "created");
      assertThat(h.get(0).getWho()).isEqualTo("key " + keyId(keys.admin()) + ", file team.yaml sha256:"
          + LimitsDocument.parse(other, "x").hash());
      assertThat(h.get(1).getWho()).isEqualTo("file " + file.toAbsolutePath() + " sha256:" + hash + " on this node");
      assertThat(h.get(2).getWho()).isEqualTo("key " + keyId(keys.admin()));
      assertThat(h.get(2).getChangesList()).containsExactly("concurrency 10 → 99",
          "managed by limits file limits.yaml → hand (over limits file limits.yaml)");
      assertThat(h.get(3).getAtUnixMillis()).isPositive();
      assertThat(admin.limitHistory(LimitHistoryRequest.newBuilder().setResource("shop").setLimit(1).build())
          .getChangesCount()).isEqualTo(1);
      refused(() -> admin.limitHistory(LimitHistoryRequest.newBuilder().setResource("shop").setLimit(51).build()),
          Status.Code.INVALID_ARGUMENT, "asked for 51 changes: ask for 1 to 50");
      refused(() -> admin.limitHistory(LimitHistoryRequest.newBuilder().setResource("bad name").build()),
          Status.Code.INVALID_ARGUMENT, "bad name");
      refused(() -> admin(node, keys.worker()).limitHistory(LimitHistoryRequest.newBuilder().setResource("shop")
          .build()), Status.Code.PERMISSION_DENIED, "");
    }
  }

  @Test
  void overHttpA409NamesTheFileForceOverridesAndTheHistoryIsAnAdminRead() throws Exception {
    Path file = dir.resolve("limits.yaml");
    Files.writeString(file, FILE);
    try (SluiceServer node = node(file)) {
      HttpCalls.Keys keys = HttpCalls.keys(node);
      String body = "{\"concurrency\": 12}";
      HttpResponse<String> refused = HttpCalls.call(node, "POST", "/v1/resources/shop/limit", body, keys.admin());
      assertThat(refused.statusCode()).isEqualTo(409);
      assertThat(JSON.readTree(refused.body()).toString()).contains("FAILED_PRECONDITION")
          .contains("edit limits.yaml and apply it, or pass --force");
      assertThat(HttpCalls.call(node, "POST", "/v1/resources/shop/limit?force=maybe", body, keys.admin()).body())
          .contains("force=maybe is not a flag");
      HttpResponse<String> forced = HttpCalls.call(node, "POST", "/v1/resources/shop/limit?force=true", body,
          keys.admin());
      assertThat(forced.statusCode()).as(forced.body()).isEqualTo(200);
      JsonNode managed = JSON.readTree(forced.body()).at("/limit/managedBy");
      assertThat(managed.get("file").asText()).isEqualTo("limits.yaml");
      assertThat(managed.get("overridden").asBoolean()).isTrue();

      assertThat(HttpCalls.call(node, "DELETE", "/v1/pools/any", null, keys.admin()).statusCode())
          .as("a pool the file manages").isEqualTo(409);
      assertThat(HttpCalls.call(node, "PUT", "/v1/pools/any?force=true", "{\"members\": [\"shop\"]}", keys.admin())
          .statusCode()).isEqualTo(200);

      String other = "resources:\n  openai: {concurrency: 2}\n";
      HttpResponse<String> taken = HttpCalls.call(node, "PUT", "/v1/limits?source=team.yaml", other, keys.admin());
      assertThat(taken.statusCode()).isEqualTo(409);
      assertThat(taken.body()).contains("not by team.yaml");
      assertThat(HttpCalls.call(node, "PUT", "/v1/limits?source=team.yaml&force=true", other, keys.admin())
          .statusCode()).isEqualTo(200);

      HttpResponse<String> history = HttpCalls.call(node, "GET", "/v1/resources/shop/history?n=5", null, keys.admin());
      assertThat(history.statusCode()).as(history.body()).isEqualTo(200);
      JsonNode changes = JSON.readTree(history.body()).get("changes");
      assertThat(changes).hasSize(2);
      assertThat(changes.get(0).get("who").asText()).isEqualTo("key " + keyId(keys.admin()));
      assertThat(changes.get(0).get("action").asText()).isEqualTo("changed");
      assertThat(changes.get(0).get("changes").get(0).asText()).isEqualTo("concurrency 10 → 12");
      assertThat(changes.get(0).get("at").asText()).matches("20\\d\\d-.*Z");
      assertThat(HttpCalls.call(node, "GET", "/v1/resources/openai/history", null, keys.admin()).body())
          .contains("\"who\":\"key " + keyId(keys.admin()) + ", file team.yaml sha256:");
      assertThat(HttpCalls.call(node, "GET", "/v1/resources/shop/history?n=x", null, keys.admin()).body())
          .contains("n=x is not a number");
      assertThat(HttpCalls.call(node, "GET", "/v1/resources/shop/history?n=0", null, keys.admin()).statusCode())
          .isEqualTo(400);
      assertThat(HttpCalls.call(node, "GET", "/v1/resources/shop/history", null, keys.worker()).statusCode())
          .isEqualTo(403);
      assertThat(HttpCalls.call(node, "GET", "/v1/resources/shop/history", null, null).statusCode()).isEqualTo(401);
    }
  }

  @Test
  void withoutKeysTheHistorySaysLocal() throws Exception {
    try (SluiceServer node = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0)
        .dataDir(dir.resolve("data")).shutdownGrace(Duration.ZERO).build().start()) {
      assertThat(HttpCalls.call(node, "POST", "/v1/resources/shop/limit", "{\"concurrency\": 3}", null).statusCode())
          .isEqualTo(200);
      assertThat(JSON.readTree(HttpCalls.call(node, "GET", "/v1/resources/shop/history", null, null).body())
          .at("/changes/0/who").asText()).isEqualTo("local");
    }
  }

  /** The embedded store keeps the history in its data directory, as its limits: a restart keeps both. */
  @Test
  void theEmbeddedStoresHistoryOutlivesARestart() throws Exception {
    SluiceServer.Builder node = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0)
        .dataDir(dir.resolve("data")).shutdownGrace(Duration.ZERO);
    try (SluiceServer first = node.build().start()) {
      assertThat(HttpCalls.call(first, "POST", "/v1/resources/shop/limit", "{\"concurrency\": 3}", null).statusCode())
          .isEqualTo(200);
      assertThat(HttpCalls.call(first, "POST", "/v1/resources/shop/limit", "{\"concurrency\": 4}", null).statusCode())
          .isEqualTo(200);
    }
    try (SluiceServer second = node.build().start()) {
      JsonNode changes = JSON.readTree(HttpCalls.call(second, "GET", "/v1/resources/shop/history", null, null).body())
          .get("changes");
      assertThat(changes).hasSize(2);
      assertThat(changes.get(0).toString()).contains("3", "4");
      assertThat(changes.get(1).get("who").asText()).isEqualTo("local");
    }
  }
}
