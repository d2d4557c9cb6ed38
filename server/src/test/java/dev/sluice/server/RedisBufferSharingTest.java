package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.redis.RedisProcess;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Buffers across two coordinators on one real {@code redis-server}: a buffer is seen, fed,
 * paused and deleted from either node; exactly one node delivers it; both report the same
 * counts; a clean stop hands delivery over at once rather than after the lease.
 */
class RedisBufferSharingTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private final HttpClient http = HttpClient.newHttpClient();

  @TempDir Path dir;

  private static SluiceServer node(RedisProcess redis, Path dir, String id) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir.resolve(id)).store(redis.uri())
        .nodeId(id).bufferLease(Duration.ofSeconds(30)).shutdownGrace(Duration.ZERO).build().start();
  }

  private HttpResponse<String> call(SluiceServer node, String method, String path, String body) throws Exception {
    return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + node.httpPort() + path))
        .timeout(Duration.ofSeconds(30))
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body))
        .build(), HttpResponse.BodyHandlers.ofString());
  }

  private JsonNode ok(SluiceServer node, String method, String path, String body) throws Exception {
    HttpResponse<String> r = call(node, method, path, body);
    assertThat(r.statusCode()).as(method + " " + path + ": " + r.body()).isBetween(200, 202);
    return JSON.readTree(r.body());
  }

  private JsonNode stats(SluiceServer node) throws Exception {
    return ok(node, "GET", "/v1/buffers/shared", null).get("stats");
  }

  @Test
  void eitherNodeFeedsPausesAndDeletesOneDeliverer() throws Exception {
    try (RedisProcess redis = RedisProcess.start(); Upstream up = new Upstream(10_000, 10_000)) {
      SluiceServer a = node(redis, dir, "a");
      SluiceServer b = node(redis, dir, "b");
      try {
        ok(a, "POST", "/v1/buffers", "{\"name\": \"shared\", \"url\": \"" + up.url("/ok") + "\","
            + " \"rate\": {\"amount\": 50, \"period\": \"1s\", \"burst\": 1}}");
        // B learns of it at once when asked (not only at its next sync).
        assertThat(ok(b, "GET", "/v1/buffers/shared", null).get("name").asText()).isEqualTo("shared");
        ok(b, "POST", "/v1/buffers/shared/items", BufferTest.items(0, 50));
        ok(a, "POST", "/v1/buffers/shared/items", BufferTest.items(50, 100));
        ok(b, "POST", "/v1/buffers/shared/items", "{\"body\": {\"n\": 100}, \"idempotencyKey\": \"k-100\"}");
        JsonNode again = ok(a, "POST", "/v1/buffers/shared/items", "{\"body\": {\"n\": 100}, \"idempotencyKey\": \"k-100\"}");
        assertThat(again.get("id").asLong()).as("the idempotency key is shared by every node").isEqualTo(101);
        await().atMost(Duration.ofSeconds(20)).until(() -> up.arrivals().size() >= 20);

        boolean aDelivers = stats(a).get("deliveredHere").asBoolean();
        assertThat(stats(b).get("deliveredHere").asBoolean()).as("exactly one deliverer").isEqualTo(!aDelivers);
        SluiceServer deliverer = aDelivers ? a : b;
        SluiceServer other = aDelivers ? b : a;

        // Paused on the node that does not deliver: the deliverer stops within its sync (1 s).
        ok(other, "POST", "/v1/buffers/shared/pause", null);
        await().atMost(Duration.ofSeconds(5)).until(() -> stats(deliverer).get("paused").asBoolean());
        int held = await().atMost(Duration.ofSeconds(5)).until(() -> {
          int n = up.arrivals().size();
          Thread.sleep(600);
          return up.arrivals().size() == n ? n : -1;
        }, n -> n >= 0);
        assertThat(held).isLessThan(101);
        ok(other, "POST", "/v1/buffers/shared/resume", null);

        // A clean stop gives the lease back: the other node delivers long before the 30 s lease.
        deliverer.close();
        long stopped = System.nanoTime();
        int atStop = up.arrivals().size();
        await().atMost(Duration.ofSeconds(10)).until(() -> up.arrivals().size() > atStop);
        System.out.printf("shared buffer: clean stop of the deliverer, the other node delivered %.1f s later%n",
            (System.nanoTime() - stopped) / 1e9);
        await().atMost(Duration.ofSeconds(20)).until(() -> stats(other).get("completed").asInt() == 101);
        JsonNode s = stats(other);
        assertThat(s.get("deliveredHere").asBoolean()).isTrue();
        assertThat(s.get("pending").asInt()).isZero();
        assertThat(s.get("failed").asInt()).isZero();
        for (int i = 0; i < up.arrivals().size(); i++) {
          assertThat(JSON.readTree(up.arrivals().get(i).body()).get("n").asInt()).as("arrival %d", i).isEqualTo(i);
        }
        JsonNode item = ok(other, "GET", "/v1/buffers/shared/items/101", null);
        assertThat(item.get("state").asText()).isEqualTo("completed");
        assertThat(item.get("idempotencyKey").asText()).isEqualTo("k-100");
        assertThat(up.arrivals().get(100).idempotencyKey()).isEqualTo("k-100");

        ok(other, "DELETE", "/v1/buffers/shared", null);
        assertThat(call(other, "GET", "/v1/buffers/shared", null).statusCode()).isEqualTo(404);
      } finally {
        a.close();
        b.close();
      }
    }
  }

  @Test
  void aBufferDeletedOnOneNodeIsGoneOnTheOther() throws Exception {
    try (RedisProcess redis = RedisProcess.start()) {
      SluiceServer a = node(redis, dir, "a");
      SluiceServer b = node(redis, dir, "b");
      try {
        ok(a, "POST", "/v1/buffers", "{\"name\": \"shared\", \"url\": \"http://127.0.0.1:9/\","
            + " \"rate\": {\"amount\": 1, \"period\": \"1s\"}}");
        assertThat(call(b, "POST", "/v1/buffers", "{\"name\": \"shared\", \"url\": \"http://127.0.0.1:9/\","
            + " \"rate\": {\"amount\": 1, \"period\": \"1s\"}}").statusCode()).as("one name across nodes").isEqualTo(400);
        await().atMost(Duration.ofSeconds(5)).until(() -> ok(b, "GET", "/v1/buffers", null).toString()
            .contains("\"shared\""));
        ok(a, "DELETE", "/v1/buffers/shared", null);
        // B may still hold its copy for up to a second: the store refuses the push all the same.
        HttpResponse<String> late = call(b, "POST", "/v1/buffers/shared/items", "{\"body\": \"x\"}");
        assertThat(late.statusCode()).as(late.body()).isEqualTo(404);
        assertThat(late.body()).contains("shared").containsAnyOf("was deleted", "no buffer");
        await().atMost(Duration.ofSeconds(5)).until(() -> call(b, "GET", "/v1/buffers/shared", null).statusCode() == 404);
        assertThat(ok(b, "GET", "/v1/buffers", null).get("buffers")).isEmpty();
      } finally {
        a.close();
        b.close();
      }
    }
  }

  @Test
  void aStoreOutageAnswers503NamingTheStoreAndTheNodeRecovers() throws Exception {
    try (RedisProcess redis = RedisProcess.start()) {
      SluiceServer a = node(redis, dir, "a");
      try {
        ok(a, "POST", "/v1/buffers", "{\"name\": \"shared\", \"url\": \"http://127.0.0.1:9/\","
            + " \"rate\": {\"amount\": 1, \"period\": \"1s\"}}");
        redis.kill();
        for (String[] req : new String[][] {{"POST", "/v1/buffers/shared/items", "{\"body\": \"x\"}"},
            {"GET", "/v1/buffers/shared/items/1", null}, {"GET", "/v1/buffers", null},
            {"GET", "/v1/buffers/shared", null}}) {
          HttpResponse<String> r = call(a, req[0], req[1], req[2]);
          assertThat(r.statusCode()).as(req[0] + " " + req[1] + ": " + r.body()).isEqualTo(503);
          assertThat(r.headers().firstValue("retry-after")).hasValue("1");
          assertThat(JSON.readTree(r.body()).get("error").get("message").asText())
              .contains("the shared store", "did not answer", "retry in a moment");
        }
        assertThat(call(a, "GET", "/healthz", null).statusCode()).as("alive, just not ready").isEqualTo(200);
        redis.restart();
        // The store came back empty (killed without persistence): the buffer is gone, said plainly.
        await().atMost(Duration.ofSeconds(15)).until(() ->
            call(a, "GET", "/v1/buffers/shared/items/1", null).statusCode() == 404);
        ok(a, "POST", "/v1/buffers", "{\"name\": \"again\", \"url\": \"http://127.0.0.1:9/\","
            + " \"rate\": {\"amount\": 1, \"period\": \"1s\"}}");
        assertThat(ok(a, "POST", "/v1/buffers/again/items", "{\"body\": \"x\"}").get("id").asLong()).isEqualTo(1);
      } finally {
        a.close();
      }
    }
  }

  /**
   * A node whose lease lapsed (here: its key removed, as a pause longer than the lease would)
   * while nobody took over: outcomes it recorded meanwhile were refused by the fence, so it must
   * reload from the store rather than trust its memory, or the store keeps an item pending forever.
   */
  @Test
  void aNodeWhoseOwnLeaseLapsedReloadsFromTheStore() throws Exception {
    try (RedisProcess redis = RedisProcess.start(); Upstream up = new Upstream(10_000, 10_000)) {
      SluiceServer a = node(redis, dir, "a");
      io.lettuce.core.RedisClient client = io.lettuce.core.RedisClient.create(redis.uri());
      try (var conn = client.connect()) {
        ok(a, "POST", "/v1/buffers", "{\"name\": \"shared\", \"url\": \"" + up.url("/ok") + "\","
            + " \"rate\": {\"amount\": 20, \"period\": \"1s\", \"burst\": 1}}");
        ok(a, "POST", "/v1/buffers/shared/items", BufferTest.items(0, 60));
        await().atMost(Duration.ofSeconds(10)).until(() -> up.arrivals().size() >= 10);
        // Lapse the lease for a while: every outcome written in the gap is fenced off.
        long until = System.nanoTime() + Duration.ofMillis(1500).toNanos();
        while (System.nanoTime() < until) {
          conn.sync().del("sluice:buf:{shared}:owner");
          Thread.sleep(20);
        }
        await().atMost(Duration.ofSeconds(30)).until(() -> stats(a).get("completed").asInt() == 60);
        JsonNode s = stats(a);
        assertThat(s.get("pending").asInt()).as("the store agrees nothing is left").isZero();
        assertThat(s.get("running").asInt()).isZero();
        java.util.Set<Integer> seen = new java.util.TreeSet<>();
        List<Integer> order = new java.util.ArrayList<>();
        for (Upstream.Arrival x : up.arrivals()) {
          int n = JSON.readTree(x.body()).get("n").asInt();
          order.add(n);
          seen.add(n);
        }
        assertThat(seen).hasSize(60);
        assertThat(order).isSorted();
      } finally {
        client.shutdown();
        a.close();
      }
    }
  }
}
