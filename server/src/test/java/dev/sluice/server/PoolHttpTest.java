package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.TenantPolicy;
import dev.sluice.server.redis.RedisProcess;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code /v1/pools} on a real coordinator: create, change, read, list and delete a pool (its
 * members stay), each bad body and wrong name refused with its fix, admin keys only; pools in the
 * dashboard's {@code /v1/resources}; {@code sluice_pool_grants_total{pool,member}} counted where
 * both ports hand a grant over. One Redis case: a pool set on one node is served by another.
 */
class PoolHttpTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  private static HttpResponse<String> call(SluiceServer node, String method, String path, String body, String key)
      throws Exception {
    return HttpCalls.call(node, method, path, body, key);
  }

  private static HttpResponse<String> call(SluiceServer node, String method, String path, String body)
      throws Exception {
    return call(node, method, path, body, null);
  }

  private static JsonNode ok(HttpResponse<String> r) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return JSON.readTree(r.body());
  }

  private static SluiceServer node(Path dir) throws Exception {
    SluiceServer node = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir)
        .shutdownGrace(Duration.ZERO).build().start();
    members(node);
    return node;
  }

  /** Members a and b: one permit at a time each. */
  private static void members(SluiceServer node) {
    for (String m : List.of("a", "b")) {
      sync(node.engine()).setLimit(new LimitSpec(m, List.of(), 1, 0, null));
    }
  }

  @Test
  void createChangeReadListAndDeleteAPoolWhoseMembersStay(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      JsonNode created = ok(call(node, "PUT", "/v1/pools/openai", "{\"members\": [\"a\", \"b\"]}"));
      assertThat(created.toString()).isEqualTo("{\"name\":\"openai\",\"created\":true,\"members\":[\"a\",\"b\"]}");
      assertThat(ok(call(node, "PUT", "/v1/pools/openai", "{\"members\": [\"b\"]}")).get("created").asBoolean())
          .isFalse();
      ok(call(node, "PUT", "/v1/pools/openai", "{\"members\": [\"a\", \"b\"]}"));
      sync(node.engine()).pause("b", -1);

      JsonNode one = ok(call(node, "GET", "/v1/pools/openai", null));
      assertThat(one.get("name").asText()).isEqualTo("openai");
      JsonNode a = one.get("members").get(0);
      JsonNode b = one.get("members").get(1);
      assertThat(a.get("name").asText()).isEqualTo("a");
      assertThat(a.get("found").asBoolean()).isTrue();
      assertThat(a.get("paused").asBoolean()).isFalse();
      assertThat(a.get("limit").get("concurrency").asLong()).isEqualTo(1);
      assertThat(b.get("paused").asBoolean()).isTrue();
      assertThat(b.get("pausedForSeconds").asDouble()).isEqualTo(-1);

      assertThat(ok(call(node, "GET", "/v1/pools", null)).toString())
          .isEqualTo("{\"pools\":[{\"name\":\"openai\",\"members\":[\"a\",\"b\"]}]}");

      assertThat(ok(call(node, "DELETE", "/v1/pools/openai", null)).toString())
          .isEqualTo("{\"name\":\"openai\",\"deleted\":true}");
      assertThat(sync(node.engine()).getLimit("openai")).isEmpty();
      assertThat(sync(node.engine()).getLimit("a")).isPresent();
      assertThat(sync(node.engine()).getLimit("b")).isPresent();
      assertThat(ok(call(node, "GET", "/v1/pools", null)).toString()).isEqualTo("{\"pools\":[]}");
    }
  }

  @Test
  void badBodiesAndNamesAreRefusedNamingTheFix(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      for (String body : List.of("{}", "{\"members\": []}", "{\"members\": null}")) {
        HttpResponse<String> r = call(node, "PUT", "/v1/pools/p", body);
        assertThat(r.statusCode()).as(body).isEqualTo(400);
        assertThat(r.body()).contains("a pool needs at least one member").contains("{\\\"members\\\": [");
      }
      HttpResponse<String> notList = call(node, "PUT", "/v1/pools/p", "{\"members\": \"a\"}");
      assertThat(notList.statusCode()).isEqualTo(400);
      assertThat(notList.body()).contains("members must be a list of resource names");
      HttpResponse<String> notText = call(node, "PUT", "/v1/pools/p", "{\"members\": [1]}");
      assertThat(notText.statusCode()).isEqualTo(400);
      assertThat(notText.body()).contains("each of members must be a string");
      HttpResponse<String> extra = call(node, "PUT", "/v1/pools/p", "{\"members\": [\"a\"], \"rates\": []}");
      assertThat(extra.statusCode()).isEqualTo(400);
      assertThat(extra.body()).contains("unknown field 'rates'");

      HttpResponse<String> unknown = call(node, "PUT", "/v1/pools/p", "{\"members\": [\"a\", \"nope\"]}");
      assertThat(unknown.statusCode()).isEqualTo(404);
      assertThat(unknown.body()).contains("member 'nope' has no limit: set one first");
      ok(call(node, "PUT", "/v1/pools/inner", "{\"members\": [\"a\"]}"));
      HttpResponse<String> nested = call(node, "PUT", "/v1/pools/outer", "{\"members\": [\"inner\"]}");
      assertThat(nested.statusCode()).isEqualTo(400);
      assertThat(nested.body()).contains("a pool cannot be nested");
      sync(node.engine()).setLimit(new LimitSpec("c", List.of(), 1, 0, null, Duration.ZERO,
          new TenantPolicy(Map.of("search", 3.0), Map.of(), Map.of())));
      HttpResponse<String> tenants = call(node, "PUT", "/v1/pools/mixed", "{\"members\": [\"a\", \"c\"]}");
      assertThat(tenants.statusCode()).isEqualTo(400);
      assertThat(tenants.body()).contains("share tenants differently");
      HttpResponse<String> overLimit = call(node, "PUT", "/v1/pools/a", "{\"members\": [\"b\"]}");
      assertThat(overLimit.statusCode()).isEqualTo(400);
      assertThat(overLimit.body()).contains("'a' is a resource with a limit of its own");

      HttpResponse<String> missing = call(node, "GET", "/v1/pools/nope", null);
      assertThat(missing.statusCode()).isEqualTo(404);
      assertThat(missing.body()).contains("no pool 'nope': create it with PUT /v1/pools/nope");
      HttpResponse<String> plain = call(node, "GET", "/v1/pools/a", null);
      assertThat(plain.statusCode()).isEqualTo(400);
      assertThat(plain.body()).contains("not a pool: read it with GET /v1/resources/a");
      assertThat(call(node, "DELETE", "/v1/pools/a", null).statusCode()).isEqualTo(400);
      assertThat(sync(node.engine()).getLimit("a")).as("never deletes a resource's own limit").isPresent();
      assertThat(call(node, "POST", "/v1/pools/inner", "{}").statusCode()).isEqualTo(405);
      assertThat(call(node, "POST", "/v1/pools", "{}").statusCode()).isEqualTo(405);
    }
  }

  @Test
  void poolsAreAdminCalls(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      HttpCalls.Keys keys = HttpCalls.keys(node);
      String admin = keys.admin();
      String worker = keys.worker();
      String body = "{\"members\": [\"a\", \"b\"]}";
      HttpResponse<String> byWorker = call(node, "PUT", "/v1/pools/p", body, worker);
      assertThat(byWorker.statusCode()).isEqualTo(403);
      assertThat(byWorker.body()).contains("pools are admin calls");
      assertThat(call(node, "GET", "/v1/pools", null, worker).statusCode()).isEqualTo(403);
      assertThat(call(node, "DELETE", "/v1/pools/p", null, worker).statusCode()).isEqualTo(403);
      assertThat(call(node, "GET", "/v1/pools", null).statusCode()).isEqualTo(401);
      assertThat(ok(call(node, "PUT", "/v1/pools/p", body, admin)).get("created").asBoolean()).isTrue();
      assertThat(call(node, "GET", "/v1/pools/p", null, worker).statusCode()).isEqualTo(403);
    }
  }

  /**
   * Without the sampler's fix a pool's limit failed the whole sample (the engine refuses a pool's
   * stats), so the dashboard froze as soon as a pool existed.
   */
  @Test
  void theDashboardShowsPoolsWithTheirMembersAndMetricsCountGrantsPerMember(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      ok(call(node, "PUT", "/v1/pools/pool", "{\"members\": [\"a\", \"b\"]}"));
      HttpResponse<String> byHttp = call(node, "POST", "/v1/resources/pool/acquire?timeout=5s", "{}");
      String httpMember = ok(byHttp).get("member").asText();
      String grpcMember;
      try (SluiceClient c = SluiceClient.builder().target("127.0.0.1:" + node.port()).build()) {
        Permit p = c.acquire("pool", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(5)).build());
        grpcMember = p.member();
        // A direct acquire on a member is not a pool grant.
        assertThat(c.tryAcquire(httpMember, Load.requests(1), Duration.ZERO)).isEmpty();
      }
      assertThat(List.of(httpMember, grpcMember)).containsExactlyInAnyOrder("a", "b");
      sync(node.engine()).pause("b", -1);

      await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> {
        JsonNode sample = ok(call(node, "GET", "/v1/resources", null));
        assertThat(sample.get("resources").findValuesAsText("name")).containsExactly("a", "b");
        assertThat(sample.get("total").asInt()).as("a pool is not counted as a resource").isEqualTo(2);
        JsonNode pool = sample.get("pools").get(0);
        assertThat(pool.get("name").asText()).isEqualTo("pool");
        assertThat(pool.get("members").get(0).get("name").asText()).isEqualTo("a");
        assertThat(pool.get("members").get(0).get("paused").asBoolean()).isFalse();
        assertThat(pool.get("members").get(0).get("poolGranted").asLong()).isEqualTo(1);
        assertThat(pool.get("members").get(1).get("paused").asBoolean()).isTrue();
        assertThat(pool.get("members").get(1).get("poolGranted").asLong()).isEqualTo(1);
      });
      String metrics = call(node, "GET", "/metrics", null).body();
      assertThat(metrics).contains("# TYPE sluice_pool_grants_total counter")
          .contains("sluice_pool_grants_total{member=\"a\",pool=\"pool\"} 1.0")
          .contains("sluice_pool_grants_total{member=\"b\",pool=\"pool\"} 1.0")
          .doesNotContain("pool=\"a\"");
    }
  }

  @Test
  void onRedisAPoolSetOnOneNodeIsServedByAnother(@TempDir Path dir) throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer a = redisNode(redis, dir, "a");
        SluiceServer b = redisNode(redis, dir, "b")) {
      members(a);
      assertThat(ok(call(a, "PUT", "/v1/pools/pool", "{\"members\": [\"a\", \"b\"]}")).get("created").asBoolean())
          .isTrue();
      assertThat(ok(call(b, "GET", "/v1/pools", null)).toString())
          .isEqualTo("{\"pools\":[{\"name\":\"pool\",\"members\":[\"a\",\"b\"]}]}");
      String member = ok(call(b, "POST", "/v1/resources/pool/acquire?timeout=5s", "{}")).get("member").asText();
      assertThat(call(b, "GET", "/metrics", null).body())
          .contains("sluice_pool_grants_total{member=\"" + member + "\",pool=\"pool\"} 1.0");
      assertThat(ok(call(b, "DELETE", "/v1/pools/pool", null)).get("deleted").asBoolean()).isTrue();
      assertThat(call(a, "GET", "/v1/pools/pool", null).statusCode()).isEqualTo(404);
    }
  }

  private static SluiceServer redisNode(RedisProcess redis, Path dir, String id) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir.resolve(id))
        .store(redis.uri()).nodeId(id).shutdownGrace(Duration.ofMillis(200)).build().start();
  }
}
