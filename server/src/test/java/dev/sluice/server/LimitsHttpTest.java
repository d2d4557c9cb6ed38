package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code GET/PUT /v1/limits} on a real coordinator: the document out (YAML, or JSON), a document
 * in with its diff, dry run and prune, a bad document refused with its line, admin keys only.
 */
class LimitsHttpTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  private static final String DOC = """
      resources:
        openai:
          rates: [{dimension: requests, amount: 500, period: 1m}]
        shop:
          concurrency: 10
      """;

  private static HttpResponse<String> call(SluiceServer node, String method, String path, String body, String key)
      throws Exception {
    return HttpCalls.call(node, method, path, body, key);
  }

  private static JsonNode ok(HttpResponse<String> r) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return JSON.readTree(r.body());
  }

  private static SluiceServer node(Path dir) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir)
        .shutdownGrace(Duration.ZERO).build().start();
  }

  @Test
  void putADocumentThenGetItBackAndPutItAgainForNoChanges(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      JsonNode dry = ok(call(node, "PUT", "/v1/limits?dryRun=true", DOC, null));
      assertThat(dry.get("applied").asBoolean()).isFalse();
      assertThat(dry.get("summary").asText()).isEqualTo("2 added, 0 changed, 0 removed");
      assertThat(dry.get("changes").get(0).get("kind").asText()).isEqualTo("added");
      assertThat(sync(node.engine()).listLimits("")).isEmpty();

      JsonNode applied = ok(call(node, "PUT", "/v1/limits", DOC, null));
      assertThat(applied.get("applied").asBoolean()).isTrue();
      assertThat(applied.get("documentHash").asText()).hasSize(12);
      assertThat(sync(node.engine()).getLimit("shop")).isPresent();
      assertThat(sync(node.engine()).getLimit("shop").orElseThrow().owner().file())
          .as("a document without ?source= is managed as the HTTP API's").isEqualTo("the HTTP API");

      HttpResponse<String> yaml = call(node, "GET", "/v1/limits", null, null);
      assertThat(yaml.statusCode()).isEqualTo(200);
      assertThat(yaml.headers().firstValue("content-type")).hasValueSatisfying(v -> assertThat(v).contains("yaml"));
      assertThat(yaml.body()).contains("openai:").contains("period: 1m");
      JsonNode again = ok(call(node, "PUT", "/v1/limits?prune=true", yaml.body(), null));
      assertThat(again.get("summary").asText()).isEqualTo("no changes");
      assertThat(again.get("applied").asBoolean()).isFalse();

      JsonNode json = ok(call(node, "GET", "/v1/limits?format=json", null, null));
      assertThat(json.at("/resources/shop/concurrency").asLong()).isEqualTo(10);
      assertThat(ok(call(node, "PUT", "/v1/limits", json.toString(), null)).get("summary").asText())
          .as("the JSON form reads back too").isEqualTo("no changes");

      JsonNode pruned = ok(call(node, "PUT", "/v1/limits?prune", "resources:\n  shop: {concurrency: 11}\n", null));
      assertThat(pruned.get("summary").asText()).isEqualTo("0 added, 1 changed, 1 removed");
      assertThat(sync(node.engine()).getLimit("openai")).isEmpty();
    }
  }

  @Test
  void aBadDocumentIsA400NamingItsLineAndNothingChanges(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      ok(call(node, "PUT", "/v1/limits", DOC, null));
      HttpResponse<String> bad = call(node, "PUT", "/v1/limits", DOC.replace("concurrency: 10", "concurrency: -3"),
          null);
      assertThat(bad.statusCode()).isEqualTo(400);
      assertThat(bad.body()).contains("the body:5:5:").contains("concurrency -3 is out of range");
      assertThat(sync(node.engine()).getLimit("shop").orElseThrow().concurrency()).isEqualTo(10);

      assertThat(call(node, "PUT", "/v1/limits?dryRun=maybe", DOC, null).body())
          .contains("dryRun=maybe is not a flag");
      assertThat(call(node, "GET", "/v1/limits?format=toml", null, null).statusCode()).isEqualTo(400);
      assertThat(call(node, "POST", "/v1/limits", DOC, null).statusCode()).isEqualTo(405);
      assertThat(call(node, "PUT", "/v1/limits", "", null).body()).contains("the document is empty");
    }
  }

  @Test
  void limitsDocumentsAreAdminCalls(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      HttpCalls.Keys keys = HttpCalls.keys(node);
      String admin = keys.admin();
      String worker = keys.worker();
      HttpResponse<String> byWorker = call(node, "PUT", "/v1/limits", DOC, worker);
      assertThat(byWorker.statusCode()).isEqualTo(403);
      assertThat(byWorker.body()).contains("limits documents are admin calls");
      assertThat(call(node, "GET", "/v1/limits", null, worker).statusCode()).isEqualTo(403);
      assertThat(call(node, "GET", "/v1/limits", null, null).statusCode()).isEqualTo(401);
      assertThat(sync(node.engine()).listLimits("")).isEmpty();
      assertThat(ok(call(node, "PUT", "/v1/limits", DOC, admin)).get("applied").asBoolean()).isTrue();
    }
  }
}
