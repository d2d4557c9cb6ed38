package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Buffers over the HTTP API of a real coordinator, delivering to a real strict upstream: order,
 * pacing, 429 feedback, retries and their budget, and every refusal of the API.
 */
class BufferTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path dataDir;
  private SluiceServer server;
  private final HttpClient http = HttpClient.newHttpClient();
  private String base;

  @BeforeEach
  void start() throws Exception {
    server = configure(SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO)).build().start();
    base = "http://127.0.0.1:" + server.httpPort();
  }

  /** The store under test: the embedded one here, a shared Redis in {@link RedisBufferTest}. */
  SluiceServer.Builder configure(SluiceServer.Builder b) {
    return b;
  }

  @AfterEach
  void stop() {
    server.close();
  }

  private HttpResponse<String> call(String method, String path, String body) throws Exception {
    return http.send(HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30))
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body))
        .build(), HttpResponse.BodyHandlers.ofString());
  }

  private JsonNode ok(String method, String path, String body) throws Exception {
    HttpResponse<String> r = call(method, path, body);
    assertThat(r.statusCode()).as(method + " " + path + ": " + r.body()).isBetween(200, 202);
    return JSON.readTree(r.body());
  }

  private void refused(String method, String path, String body, int status, String... words) throws Exception {
    HttpResponse<String> r = call(method, path, body);
    assertThat(r.statusCode()).as(r.body()).isEqualTo(status);
    String message = JSON.readTree(r.body()).get("error").get("message").asText();
    for (String w : words) {
      assertThat(message).contains(w);
    }
  }

  private JsonNode item(String buffer, long id) throws Exception {
    return ok("GET", "/v1/buffers/" + buffer + "/items/" + id, null);
  }

  static String items(int from, int to) {
    StringBuilder b = new StringBuilder("{\"items\": [");
    for (int i = from; i < to; i++) {
      b.append(i == from ? "" : ",").append("{\"body\": {\"n\": ").append(i).append("}}");
    }
    return b.append("]}").toString();
  }

  @Test
  void aBurstOf2000IsDeliveredInOrderAtTheLimitWithoutA429() throws Exception {
    int rate = 200;
    try (Upstream up = new Upstream(rate, 20)) {
      // The quota the buffer shares with workers: the upstream's own rate, bursts of 5 (so a
      // delivery that took longer than 1/rate can be caught up). The upstream's bucket holds 20:
      // that burst plus the jitter between a grant and its arrival on a loaded 2-core machine.
      server.engine().setLimit(new LimitSpec("partner", List.of(new RateSpec("requests", rate, Duration.ofSeconds(1),
          5)), 0, 10_000, Duration.ofSeconds(30)));
      ok("POST", "/v1/buffers", "{\"name\": \"orders\", \"url\": \"" + up.url("/ok") + "\", \"resource\": \"partner\","
          + " \"headers\": {\"Authorization\": \"Bearer upstream-secret-123456\"}}");
      long t0 = System.nanoTime();
      List<Long> ids = new ArrayList<>();
      for (int from = 0; from < 2000; from += 500) {
        for (JsonNode id : ok("POST", "/v1/buffers/orders/items", items(from, from + 500)).get("ids")) {
          ids.add(id.asLong());
        }
      }
      double pushSeconds = (System.nanoTime() - t0) / 1e9;
      assertThat(ids).hasSize(2000).isSorted().doesNotHaveDuplicates();
      await().atMost(Duration.ofSeconds(60)).conditionEvaluationListener(c -> {
        if (c.getElapsedTimeInMS() % 5000 < 100) {
          System.out.println("delivered so far: " + up.arrivals().size());
        }
      }).until(() -> up.arrivals().size() >= 2000);
      List<Upstream.Arrival> a = up.arrivals();
      assertThat(up.rejected.get()).as("upstream 429s caused by pacing").isZero();
      for (int i = 0; i < a.size(); i++) {
        assertThat(JSON.readTree(a.get(i).body()).get("n").asInt()).as("arrival %d", i).isEqualTo(i);
      }
      double seconds = (a.get(a.size() - 1).nanos() - a.get(0).nanos()) / 1e9;
      double achieved = (a.size() - 1) / seconds;
      System.out.printf("buffer: 2000 items pushed in %.2f s; delivered in order in %.2f s = %.1f/s, %.1f %% of the"
          + " %d/s limit; upstream 429s %d%n", pushSeconds, seconds, achieved, 100 * achieved / rate, rate,
          up.rejected.get());
      assertThat(achieved).as("delivery rate").isGreaterThanOrEqualTo(0.95 * rate);
      assertThat(a).allSatisfy(x -> assertThat(x.idempotencyKey()).startsWith("sluice-orders-"));
      await().atMost(Duration.ofSeconds(10)).until(() ->
          ok("GET", "/v1/buffers/orders", null).get("stats").get("completed").asInt() == 2000);
      JsonNode view = ok("GET", "/v1/buffers/orders", null);
      assertThat(view.get("stats").get("pending").asInt()).isZero();
      assertThat(view.get("headers").get("Authorization").asText()).as("secrets masked").isEqualTo("***3456");
      assertThat(view.toString()).doesNotContain("upstream-secret");
      JsonNode last = item("orders", ids.get(1999));
      assertThat(last.get("state").asText()).isEqualTo("completed");
      assertThat(last.get("lastStatus").asInt()).isEqualTo(200);
      assertThat(last.get("responseExcerpt").asText()).contains("200");
      assertThat(server.engine().stats("partner").granted()).isEqualTo(2000);
    }
  }

  @Test
  void a429IsRetriedAfterItsRetryAfterWithoutSpendingTheBudgetAndPausesTheResource() throws Exception {
    try (Upstream up = new Upstream(1000, 1000)) {
      ok("POST", "/v1/buffers", "{\"name\": \"t\", \"url\": \"" + up.url("/throttle-once") + "\", \"rate\":"
          + " {\"amount\": 100, \"period\": \"1s\", \"burst\": 5}, \"maxRetries\": 0}");
      long id = ok("POST", "/v1/buffers/t/items", "{\"body\": \"hello\", \"idempotencyKey\": \"k-1\"}").get("id").asLong();
      await().atMost(Duration.ofSeconds(15)).until(() -> item("t", id).get("state").asText().equals("completed"));
      JsonNode it = item("t", id);
      assertThat(it.get("attempts").asInt()).isEqualTo(2);
      assertThat(it.get("retriesUsed").asInt()).as("a 429 spends nothing of the budget (0 here)").isZero();
      assertThat(it.get("history").toString()).contains("HTTP 429", "Retry-After", "HTTP 200");
      List<Upstream.Arrival> a = up.arrivals();
      assertThat(a).hasSize(2);
      assertThat(a.get(0).idempotencyKey()).isEqualTo("k-1");
      assertThat(a.get(1).nanos() - a.get(0).nanos()).as("retried after Retry-After: 1")
          .isGreaterThanOrEqualTo(1_000_000_000L);
      assertThat(server.engine().stats("buffer:t").throttleReports()).as("fed back to the shared resource").isEqualTo(1);
    }
  }

  @Test
  void fiveHundredsBackOffExponentiallyUntilTheBudgetIsSpentAndA400FailsAtOnce() throws Exception {
    try (Upstream up = new Upstream(1000, 1000)) {
      ok("POST", "/v1/buffers", "{\"name\": \"f\", \"url\": \"" + up.url("/fail") + "\", \"rate\": {\"amount\": 1000},"
          + " \"maxRetries\": 3, \"backoff\": \"exponential\", \"backoffBase\": \"100ms\", \"backoffMax\": \"2s\"}");
      long id = ok("POST", "/v1/buffers/f/items", "{\"body\": \"x\"}").get("id").asLong();
      await().atMost(Duration.ofSeconds(15)).until(() -> item("f", id).get("state").asText().equals("failed"));
      JsonNode it = item("f", id);
      assertThat(it.get("attempts").asInt()).isEqualTo(4);
      assertThat(it.get("retriesUsed").asInt()).isEqualTo(3);
      assertThat(it.get("lastStatus").asInt()).isEqualTo(500);
      assertThat(it.get("history").toString()).contains("retry 1 of 3", "retry 3 of 3", "retry budget of 3 spent");
      List<Upstream.Arrival> a = up.arrivals();
      assertThat(a).hasSize(4);
      for (int n = 1; n <= 3; n++) {
        long gap = a.get(n).nanos() - a.get(n - 1).nanos();
        // Retry n waits 100 ms * 2^(n-1), jittered into [50 %, 100 %] of that.
        assertThat(gap).as("gap before retry %d", n).isGreaterThanOrEqualTo((long) (50e6 * Math.pow(2, n - 1)));
      }

      ok("POST", "/v1/buffers", "{\"name\": \"b\", \"url\": \"" + up.url("/bad") + "\", \"rate\": {\"amount\": 1000}}");
      JsonNode two = ok("POST", "/v1/buffers/b/items", "{\"items\": [{\"body\": \"1\"}, {\"body\": \"2\"}]}");
      long first = two.get("ids").get(0).asLong();
      long second = two.get("ids").get(1).asLong();
      await().atMost(Duration.ofSeconds(15)).until(() -> item("b", second).get("state").asText().equals("failed"));
      assertThat(item("b", first).get("attempts").asInt()).as("a 400 is not retried").isEqualTo(1);
      assertThat(item("b", first).get("history").toString()).contains("400 is not retried");
    }
  }

  @Test
  void idempotencyKeysDeduplicatePushesAndPauseHoldsDelivery() throws Exception {
    try (Upstream up = new Upstream(1000, 1000)) {
      ok("POST", "/v1/buffers", "{\"name\": \"p\", \"url\": \"" + up.url("/ok") + "\", \"rate\": {\"amount\": 1000}}");
      ok("POST", "/v1/buffers/p/pause", null);
      long a = ok("POST", "/v1/buffers/p/items", "{\"body\": \"a\", \"idempotencyKey\": \"same\"}").get("id").asLong();
      long b = ok("POST", "/v1/buffers/p/items", "{\"body\": \"a\", \"idempotencyKey\": \"same\"}").get("id").asLong();
      assertThat(b).as("the same key is the same item").isEqualTo(a);
      JsonNode paused = ok("GET", "/v1/buffers/p", null).get("stats");
      assertThat(paused.get("paused").asBoolean()).isTrue();
      assertThat(paused.get("pending").asInt()).isEqualTo(1);
      assertThat(up.arrivals()).isEmpty();
      ok("POST", "/v1/buffers/p/resume", null);
      await().atMost(Duration.ofSeconds(10)).until(() -> item("p", a).get("state").asText().equals("completed"));
      assertThat(up.arrivals()).hasSize(1);
    }
  }

  @Test
  void everyBadRequestIsRefusedWithItsFieldAndFix() throws Exception {
    server.engine().setLimit(new LimitSpec("shared", List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 1)),
        0, 100, Duration.ofSeconds(30)));
    String url = "\"url\": \"http://127.0.0.1:9/x\"";
    refused("POST", "/v1/buffers", "{}", 400, "buffer name is missing");
    refused("POST", "/v1/buffers", "{\"name\": \"a b\", " + url + ", \"resource\": \"shared\"}", 400, "'a b' is invalid");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", \"resource\": \"shared\"}", 400, "url is missing");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", \"url\": \"ftp://x/y\", \"resource\": \"shared\"}", 400,
        "http or https");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + "}", 400, "either resource", "or rate");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"nope\"}", 400,
        "'nope' has no limit", "sluice limit set");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"shared\", \"method\": \"TRACE\"}",
        400, "method 'TRACE'");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"shared\", \"backoff\": \"linear\"}",
        400, "backoff 'linear'", "exponential");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"shared\", \"backoffBase\": \"5m\","
        + " \"backoffMax\": \"1m\"}", 400, "backoffMax");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"shared\", \"maxRetries\": -1}",
        400, "maxRetries");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"shared\", \"headers\":"
        + " {\"Host\": \"x\"}}", 400, "set by the delivery");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"shared\", \"colour\": 1}", 400,
        "unknown field 'colour'");
    ok("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"shared\"}");
    refused("POST", "/v1/buffers", "{\"name\": \"a\", " + url + ", \"resource\": \"shared\"}", 400, "exists already");
    refused("GET", "/v1/buffers/zzz", null, 404, "no buffer 'zzz'");
    refused("POST", "/v1/buffers/zzz/items", "{\"body\": \"x\"}", 404, "no buffer 'zzz'");
    ok("POST", "/v1/buffers/a/pause", null); // keep the item below from being sent to port 9
    refused("POST", "/v1/buffers/a/items", "{}", 400, "needs a body");
    refused("POST", "/v1/buffers/a/items", "{\"items\": []}", 400, "1 to 10000 items");
    refused("POST", "/v1/buffers/a/items", "{\"body\": \"" + "x".repeat(600_000) + "\"}", 400, "at most 524288");
    refused("POST", "/v1/buffers/a/items", "{\"body\": \"x\", \"idempotencyKey\": \"\"}", 400, "idempotencyKey");
    refused("GET", "/v1/buffers/a/items/abc", null, 400, "not a number");
    refused("GET", "/v1/buffers/a/items/999", null, 404, "has no item 999");
    refused("PUT", "/v1/buffers", null, 405, "use GET or POST");
    ok("DELETE", "/v1/buffers/a", null);
    refused("POST", "/v1/buffers/a/items", "{\"body\": \"x\"}", 404, "no buffer 'a'");
    assertThat(ok("GET", "/v1/buffers", null).get("buffers")).isEmpty();
  }
}
