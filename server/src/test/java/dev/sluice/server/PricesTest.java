package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.redis.RedisProcess;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The price table and usd charged from token counts, over the HTTP port, on both stores: the
 * embedded one, and two nodes sharing one Redis (a price set on one node prices the other's
 * acquires).
 */
class PricesTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  private static HttpResponse<String> call(SluiceServer node, String method, String path, String body, String key)
      throws Exception {
    return HttpCalls.call(node, method, path, body, key);
  }

  private static HttpResponse<String> call(SluiceServer node, String method, String path, String body)
      throws Exception {
    return call(node, method, path, body, null);
  }

  private static void budget(SluiceServer node, String resource) {
    sync(node.engine()).setLimit(new LimitSpec(resource,
        List.of(new RateSpec("usd", 1_000_000, Duration.ofMinutes(1), 1_000_000)), 0, 0, Duration.ofSeconds(30)));
  }

  private static long usedUsd(SluiceServer node, String resource) {
    return Math.round(sync(node.engine()).stats(resource).used().getOrDefault("usd", 0.0));
  }

  @Test
  void overHttpPricesAreSetReadAndDeletedAndAcquireAndReleaseArePriced(@TempDir Path dir) throws Exception {
    try (SluiceServer node = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir)
        .shutdownGrace(Duration.ZERO).build().start()) {
      HttpResponse<String> set = call(node, "PUT", "/v1/prices/gpt-4o-mini",
          "{\"input\": 0.15, \"output\": \"0.60/M\", \"cachedInput\": 0.075}");
      assertThat(set.statusCode()).as(set.body()).isEqualTo(200);
      assertThat(JSON.readTree(set.body()).get("output").decimalValue()).isEqualByComparingTo("0.6");
      assertThat(call(node, "GET", "/v1/prices/gpt-4o-mini", null).body()).contains("\"cachedInput\":0.075");
      assertThat(call(node, "GET", "/v1/prices", null).body()).contains("\"model\":\"gpt-4o-mini\"");

      budget(node, "money");
      HttpResponse<String> granted = call(node, "POST", "/v1/resources/money/acquire?timeout=10s",
          "{\"model\": \"gpt-4o-mini\", \"load\": {\"input_tokens\": 2000, \"output_tokens\": 100,"
              + " \"cached_input_tokens\": 1000}}");
      assertThat(granted.statusCode()).as(granted.body()).isEqualTo(200);
      JsonNode grant = JSON.readTree(granted.body());
      // 2000 × 0.15 + 100 × 0.60 + 1000 × 0.075 = 435 micro-dollars
      assertThat(grant.get("granted").toString()).isEqualTo("{\"usd\":435}");
      assertThat(usedUsd(node, "money")).isEqualTo(435);

      HttpResponse<String> released = call(node, "POST", "/v1/permits/" + grant.get("permitId").asText() + "/release",
          "{\"model\": \"gpt-4o-mini\", \"usage\": {\"input_tokens\": 2000, \"output_tokens\": 1000}}");
      assertThat(released.body()).contains("\"released\":true");
      assertThat(usedUsd(node, "money")).as("settled: 300 + 600").isEqualTo(900);

      HttpResponse<String> unknown = call(node, "POST", "/v1/resources/money/acquire?timeout=1s",
          "{\"model\": \"gpt-9\", \"load\": {\"input_tokens\": 1}}");
      assertThat(unknown.statusCode()).isEqualTo(400);
      assertThat(unknown.body()).contains("model 'gpt-9' has no price").contains("sluice price set gpt-9");
      HttpResponse<String> noModel = call(node, "POST", "/v1/resources/money/acquire?timeout=1s",
          "{\"load\": {\"output_tokens\": 1}}");
      assertThat(noModel.statusCode()).isEqualTo(400);
      assertThat(noModel.body()).contains("but no model").contains("\\\"model\\\" over HTTP");

      HttpResponse<String> negative = call(node, "PUT", "/v1/prices/m", "{\"input\": -1, \"output\": 1}");
      assertThat(negative.statusCode()).isEqualTo(400);
      assertThat(negative.body()).contains("is negative");
      HttpResponse<String> garbage = call(node, "PUT", "/v1/prices/m", "{\"input\": \"lots\", \"output\": 1}");
      assertThat(garbage.statusCode()).isEqualTo(400);
      assertThat(garbage.body()).contains("'lots', not a price");
      assertThat(call(node, "PUT", "/v1/prices/m", "{\"input\": 1, \"output\": 1, \"extra\": 1}").body())
          .contains("unknown field 'extra'");

      assertThat(call(node, "DELETE", "/v1/prices/gpt-4o-mini", null).body()).contains("\"deleted\":true");
      HttpResponse<String> gone = call(node, "GET", "/v1/prices/gpt-4o-mini", null);
      assertThat(gone.statusCode()).isEqualTo(404);
      assertThat(call(node, "DELETE", "/v1/prices/gpt-4o-mini", null).statusCode()).isEqualTo(404);
    }
  }

  @Test
  void pricesAreAdminCalls(@TempDir Path dir) throws Exception {
    try (SluiceServer node = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir)
        .shutdownGrace(Duration.ZERO).build().start()) {
      HttpCalls.Keys keys = HttpCalls.keys(node);
      String admin = keys.admin();
      String worker = keys.worker();
      HttpResponse<String> byWorker = call(node, "PUT", "/v1/prices/m", "{\"input\": 1, \"output\": 1}", worker);
      assertThat(byWorker.statusCode()).isEqualTo(403);
      assertThat(byWorker.body()).contains("prices are admin calls");
      assertThat(call(node, "GET", "/v1/prices", null, worker).statusCode()).isEqualTo(403);
      assertThat(call(node, "GET", "/v1/prices", null).statusCode()).isEqualTo(401);
      assertThat(call(node, "PUT", "/v1/prices/m", "{\"input\": 1, \"output\": 1}", admin).statusCode())
          .isEqualTo(200);
    }
  }

  @Test
  void onRedisEveryNodePricesWithTheSameTable(@TempDir Path dir) throws Exception {
    try (RedisProcess redis = RedisProcess.start()) {
      try (SluiceServer a = redisNode(redis, dir, "a");
          SluiceServer b = redisNode(redis, dir, "b")) {
        budget(a, "shared-money");
        assertThat(call(a, "PUT", "/v1/prices/shared-model", "{\"input\": 1, \"output\": 2}").statusCode())
            .isEqualTo(200);
        // b re-reads the table every second.
        await().atMost(Duration.ofSeconds(10)).until(() -> call(b, "GET", "/v1/prices/shared-model", null)
            .statusCode() == 200);
        HttpResponse<String> granted = call(b, "POST", "/v1/resources/shared-money/acquire?timeout=10s",
            "{\"model\": \"shared-model\", \"load\": {\"input_tokens\": 10, \"output_tokens\": 5}}");
        assertThat(granted.statusCode()).as(granted.body()).isEqualTo(200);
        assertThat(JSON.readTree(granted.body()).get("granted").toString()).isEqualTo("{\"usd\":20}");
        assertThat(usedUsd(a, "shared-money")).isEqualTo(20);

        assertThat(call(b, "DELETE", "/v1/prices/shared-model", null).statusCode()).isEqualTo(200);
        await().atMost(Duration.ofSeconds(10)).until(() -> call(a, "POST",
            "/v1/resources/shared-money/acquire?timeout=1s",
            "{\"model\": \"shared-model\", \"load\": {\"input_tokens\": 1}}").statusCode() == 400);
        assertThat(call(a, "PUT", "/v1/prices/kept", "{\"input\": 0.5, \"output\": 1.5}").statusCode())
            .isEqualTo(200);
      }
      // A node started later reads the table from Redis.
      try (SluiceServer c = redisNode(redis, dir, "c")) {
        assertThat(call(c, "GET", "/v1/prices", null).body()).contains("\"model\":\"kept\"")
            .doesNotContain("shared-model");
      }
    }
  }

  private static SluiceServer redisNode(RedisProcess redis, Path dir, String id) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir.resolve(id))
        .store(redis.uri()).nodeId(id).shutdownGrace(Duration.ofMillis(200)).build().start();
  }
}
