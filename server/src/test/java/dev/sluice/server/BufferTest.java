package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.buffers.NewItem;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.Role;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.UnaryOperator;
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
    restart(UnaryOperator.identity());
  }

  /** (Re)starts the coordinator on the same data dir (and store), with {@code extra} settings. */
  private void restart(UnaryOperator<SluiceServer.Builder> extra) throws Exception {
    if (server != null) {
      server.close();
    }
    server = configure(extra.apply(SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO))).build().start();
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

  private HttpResponse<String> call(String method, String path, String body, String key) throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30))
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
    if (key != null) {
      b.header("Authorization", "Bearer " + key);
    }
    return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  private JsonNode ok(String method, String path, String body) throws Exception {
    return ok(method, path, body, null);
  }

  private JsonNode ok(String method, String path, String body, String key) throws Exception {
    HttpResponse<String> r = call(method, path, body, key);
    assertThat(r.statusCode()).as(method + " " + path + ": " + r.body()).isBetween(200, 202);
    return JSON.readTree(r.body());
  }

  private void refused(String method, String path, String body, int status, String... words) throws Exception {
    refusedWith(null, method, path, body, status, words);
  }

  /** The refusal's message, checked to hold every word. */
  private String refusedWith(String key, String method, String path, String body, int status, String... words)
      throws Exception {
    HttpResponse<String> r = call(method, path, body, key);
    assertThat(r.statusCode()).as(r.body()).isEqualTo(status);
    String message = JSON.readTree(r.body()).get("error").get("message").asText();
    for (String w : words) {
      assertThat(message).contains(w);
    }
    return message;
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
      sync(server.engine()).setLimit(new LimitSpec("partner", List.of(new RateSpec("requests", rate, Duration.ofSeconds(1),
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
      assertThat(view.get("headers").get("Authorization").asText()).as("secrets masked").isEqualTo("***");
      assertThat(view.toString()).doesNotContain("upstream-secret");
      JsonNode last = item("orders", ids.get(1999));
      assertThat(last.get("state").asText()).isEqualTo("completed");
      assertThat(last.get("lastStatus").asInt()).isEqualTo(200);
      assertThat(last.get("responseExcerpt").asText()).contains("200");
      // One grant a delivery. A grant may also go back unused (on Redis: a reply the node lost,
      // or a delivery the buffer's owner let go when it started over): it refunds its token. Or,
      // on a loaded machine, reach its caller too late and be forfeited when the caller asks
      // again: its token stays spent, as the contract says. So the quota's use net of refunds
      // is one request a delivery plus one a forfeit.
      var partner = sync(server.engine()).stats("partner");
      System.out.printf("buffer grants: %d granted, %d given back, %d forfeited, %.0f requests charged%n",
          partner.granted(), partner.givenBack(), partner.forfeited(), partner.used().get("requests"));
      assertThat(partner.forfeited()).as("forfeited grants").isLessThanOrEqualTo(10L);
      assertThat(partner.used().get("requests")).as("requests charged net of refunds, less forfeits")
          .isEqualTo(2000.0 + partner.forfeited());
      assertThat(partner.granted()).as("grants, the unused ones included").isBetween(2000L, 2010L);
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
      assertThat(sync(server.engine()).stats("buffer:t").throttleReports()).as("fed back to the shared resource").isEqualTo(1);
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
    sync(server.engine()).setLimit(new LimitSpec("shared", List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 1)),
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
        + " {\"Host\": \"x\"}}", 400, "header Host may not be set");
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

  // ---------------------------------------------------------------------------------------
  // What a push or a buffer may say, and what an item can do to a buffer (issue 14)

  /** An item as a version without the push checks stored it, straight into the buffer. */
  private long storedUnchecked(String buffer, String body, Map<String, String> headers) throws Exception {
    return server.buffers().push(buffer, List.of(new NewItem(body.getBytes(StandardCharsets.UTF_8), null,
        headers, null, null))).get(10, TimeUnit.SECONDS).get(0);
  }

  private static String create(String name, String url, String more) {
    return "{\"name\": \"" + name + "\", \"url\": \"" + url + "\", \"rate\": {\"amount\": 1000}" + more + "}";
  }

  @Test
  void headersAnEndpointCannotReceiveAndNonPositiveTimeoutsAreRefusedAtPushAndCreate() throws Exception {
    ok("POST", "/v1/buffers", create("h", "http://127.0.0.1:9/x", ""));
    ok("POST", "/v1/buffers/h/pause", null);
    refused("POST", "/v1/buffers/h/items", "{\"body\": \"x\", \"headers\": {\"X-P\": \"\\u20ac\"}}", 400,
        "item headers.X-P", "U+20AC", "printable ASCII");
    refused("POST", "/v1/buffers/h/items", "{\"body\": \"x\", \"headers\": {\"X-P\": \"a\\u0001b\"}}", 400,
        "X-P", "U+0001");
    refused("POST", "/v1/buffers/h/items", "{\"items\": [{\"body\": \"x\"}, {\"body\": \"y\", \"headers\": {\"X-Q\":"
        + " \"caf\\u00e9\"}}]}", 400, "X-Q", "U+00E9");
    refused("POST", "/v1/buffers/h/items", "{\"body\": \"x\", \"headers\": {\"X-P\": 5}}", 400, "X-P", "string");
    assertThat(ok("GET", "/v1/buffers/h", null).get("stats").get("pending").asInt()).as("nothing stored").isZero();
    refused("POST", "/v1/buffers", create("c", "http://127.0.0.1:9/x", ", \"headers\": {\"X-P\": \"\\u20ac\"}"), 400,
        "headers.X-P", "U+20AC");
    for (String timeout : List.of("\"PT-5S\"", "\"0s\"", "0", "\"11m\"")) {
      refused("POST", "/v1/buffers", create("c", "http://127.0.0.1:9/x", ", \"timeout\": " + timeout), 400, "timeout",
          "1ms to 10m");
    }
    refused("POST", "/v1/buffers", create("c", "http://127.0.0.1:9/x", ", \"timeout\": -1"), 400, "timeout");
    refused("POST", "/v1/buffers", create("c", "http://127.0.0.1:9/x", ", \"timeout\": \"99999999999999999999s\""), 400,
        "timeout", "too long", "1ms to 10m");
    refused("POST", "/v1/buffers", create("c", "http://127.0.0.1:9/x", ", \"backoffBase\": \"PT-5S\""), 400,
        "backoffBase", "1ms to 1h");
    refused("POST", "/v1/buffers", create("c", "http://127.0.0.1:99999/x", ""), 400, "port 99999", "1 to 65535");
  }

  @Test
  void anItemThatCannotBeSentFailsWithAHistoryLineAndTheNextIsDelivered() throws Exception {
    try (RawTarget target = new RawTarget()) {
      ok("POST", "/v1/buffers", create("s", target.url("/hook"), ""));
      ok("POST", "/v1/buffers/s/pause", null);
      long bad = storedUnchecked("s", "stuck?", Map.of("X-P", "\u20ac"));
      long good = ok("POST", "/v1/buffers/s/items", "{\"body\": \"fine\"}").get("id").asLong();
      ok("POST", "/v1/buffers/s/resume", null);
      await().atMost(Duration.ofSeconds(15)).until(() -> item("s", good).get("state").asText().equals("completed"));
      JsonNode it = item("s", bad);
      assertThat(it.get("state").asText()).isEqualTo("failed");
      assertThat(it.get("attempts").asInt()).isEqualTo(1);
      assertThat(it.get("history").toString()).contains("attempt 1: the request could not be built", "X-P",
          "not retried");
      assertThat(target.requests()).extracting(RawTarget.Request::body).containsExactly("fine");
      assertThat(ok("GET", "/v1/buffers/s", null).get("stats").get("running").asInt()).isZero();
    }
  }

  @Test
  void itemsMayNotSetFramingOrHopByHopHeadersSoNothingIsSmuggled() throws Exception {
    try (RawTarget target = new RawTarget()) {
      ok("POST", "/v1/buffers", create("m", target.url("/hook"), ""));
      for (String h : List.of("Transfer-Encoding", "Content-Length", "Connection", "Host", "Upgrade", "TE", "Trailer",
          "Keep-Alive", "Proxy-Authorization", "proxy-connection", "transfer-encoding", "Expect", "Idempotency-Key")) {
        refused("POST", "/v1/buffers/m/items", "{\"body\": \"x\", \"headers\": {\"" + h + "\": \"chunked\"}}", 400,
            "header " + h + " may not be set");
      }
      refused("POST", "/v1/buffers", create("m2", target.url("/hook"), ", \"headers\": {\"Transfer-Encoding\":"
          + " \"chunked\"}"), 400, "header Transfer-Encoding may not be set");
      // Stored before the check existed: the delivery refuses to send it, so the target frames no
      // second request out of its body.
      String smuggled = "0\r\n\r\nDELETE /api/admin/everything HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
      long sneaky = storedUnchecked("m", smuggled, Map.of("Transfer-Encoding", "chunked"));
      long plain = ok("POST", "/v1/buffers/m/items", "{\"body\": \"after\"}").get("id").asLong();
      await().atMost(Duration.ofSeconds(15)).until(() -> item("m", plain).get("state").asText().equals("completed"));
      assertThat(item("m", sneaky).get("state").asText()).isEqualTo("failed");
      assertThat(item("m", sneaky).get("history").toString()).contains("Transfer-Encoding may not be set");
      assertThat(target.requests()).extracting(RawTarget.Request::line).containsExactly("POST /hook HTTP/1.1");
      assertThat(target.requests().get(0).body()).isEqualTo("after");
    }
  }

  @Test
  void theBuffersHeadersWinAndAnItemMayNotSetThem() throws Exception {
    try (RawTarget target = new RawTarget()) {
      ok("POST", "/v1/buffers", create("a", target.url("/hook"), ", \"headers\": {\"Authorization\": \"Bearer"
          + " admin-secret\"}"));
      refused("POST", "/v1/buffers/a/items", "{\"body\": \"x\", \"headers\": {\"authorization\": \"Bearer mine\"}}",
          400, "header authorization is set by buffer 'a'", "leave it out");
      ok("POST", "/v1/buffers/a/items", "{\"body\": \"x\", \"headers\": {\"X-Extra\": \"1\"}}");
      await().atMost(Duration.ofSeconds(15)).until(() -> target.requests().size() == 1);
      Map<String, String> sent = target.requests().get(0).headers();
      assertThat(sent).containsEntry("authorization", "Bearer admin-secret").containsEntry("x-extra", "1");
    }
  }

  /** Each delivery's acquire has a request id within the engine's 64 characters, whatever the buffer's name. */
  @Test
  void aBufferWithTheLongestNameDelivers() throws Exception {
    String name = "b".repeat(100);
    try (Upstream up = new Upstream(1000, 1000)) {
      ok("POST", "/v1/buffers", create(name, up.url("/ok"), ""));
      long id = ok("POST", "/v1/buffers/" + name + "/items", "{\"body\": \"x\"}").get("id").asLong();
      await().atMost(Duration.ofSeconds(15)).until(() -> item(name, id).get("state").asText().equals("completed"));
      assertThat(up.arrivals()).hasSize(1);
    }
  }

  /** An admin key and a worker key covering {@code team1:*}, created over gRPC. */
  private String[] keys() {
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try {
      String admin = AdminGrpc.newBlockingStub(ch).createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN)
          .build()).getKey();
      Metadata h = new Metadata();
      h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + admin);
      String worker = AdminGrpc.newBlockingStub(ch).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h))
          .createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER).setResources("team1:*").build()).getKey();
      return new String[] {admin, worker};
    } finally {
      ch.shutdownNow();
    }
  }

  @Test
  void excerptsAreForAdminsUnlessTheBufferSharesThemAndSecretsShowNothing() throws Exception {
    sync(server.engine()).setLimit(new LimitSpec("team1:api", List.of(new RateSpec("requests", 1000, Duration.ofSeconds(1),
        10)), 0, 100, Duration.ofSeconds(30)));
    String[] k = keys();
    String admin = k[0];
    String worker = k[1];
    try (RawTarget target = new RawTarget()) {
      String spec = "\"url\": \"" + target.url("/echo?token=s3cret-token&v=2") + "\", \"resource\": \"team1:api\","
          + " \"headers\": {\"Authorization\": \"Bearer admin-secret-123456\"}";
      ok("POST", "/v1/buffers", "{\"name\": \"e\", " + spec + "}", admin);
      ok("POST", "/v1/buffers", "{\"name\": \"open\", " + spec + ", \"excerptsVisibleToWorkers\": true}", admin);
      long id = ok("POST", "/v1/buffers/e/items", "{\"body\": \"x\"}", worker).get("id").asLong();
      long shared = ok("POST", "/v1/buffers/open/items", "{\"body\": \"x\"}", worker).get("id").asLong();
      await().atMost(Duration.ofSeconds(15)).until(() ->
          ok("GET", "/v1/buffers/open/items/" + shared, null, admin).get("state").asText().equals("completed")
              && ok("GET", "/v1/buffers/e/items/" + id, null, admin).get("state").asText().equals("completed"));
      assertThat(ok("GET", "/v1/buffers/e/items/" + id, null, admin).get("responseExcerpt").asText())
          .as("the echoing target returned the admin's secret: admins see it").contains("admin-secret-123456");
      JsonNode seen = ok("GET", "/v1/buffers/e/items/" + id, null, worker);
      assertThat(seen.has("responseExcerpt")).isFalse();
      assertThat(seen.toString()).doesNotContain("admin-secret");
      assertThat(seen.get("lastStatus").asInt()).isEqualTo(200);
      assertThat(ok("GET", "/v1/buffers/open/items/" + shared, null, worker).get("responseExcerpt").asText())
          .as("the buffer opted in").contains("authorization");

      JsonNode view = ok("GET", "/v1/buffers/e", null, worker);
      assertThat(view.get("headers").get("Authorization").asText()).isEqualTo("***");
      assertThat(view.get("url").asText()).isEqualTo(target.url("/echo?token=***&v=***"));
      assertThat(view.get("excerptsVisibleToWorkers").asBoolean()).isFalse();
      assertThat(view.toString()).doesNotContain("s3cret", "3456");
      assertThat(ok("GET", "/v1/buffers", null, admin).toString()).doesNotContain("s3cret", "3456");

      String told = refusedWith(worker, "POST", "/v1/buffers", "{}", 403, "creating a buffer is an admin call",
          "may push items");
      assertThat(told).doesNotContain("pause and resume");
      refusedWith(worker, "GET", "/v1/buffers", null, 403, "listing buffers is an admin call");
      refusedWith(worker, "POST", "/v1/buffers/e/pause", null, 403, "pause of a buffer is an admin call");
      refusedWith(worker, "DELETE", "/v1/buffers/e", null, 403, "deleting a buffer is an admin call");
    }
  }

  @Test
  void theKeylessReadsListNoBuffers() throws Exception {
    ok("POST", "/v1/buffers", create("k", "http://user:pw@127.0.0.1:9/hook?token=s3cret", ""));
    ok("POST", "/v1/buffers/k/pause", null);
    JsonNode resources = ok("GET", "/v1/resources", null);
    assertThat(resources.has("buffers")).isFalse();
    assertThat(resources.toString()).doesNotContain("s3cret", "127.0.0.1:9", "hook");
    HttpResponse<java.io.InputStream> events = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/events"))
        .build(), HttpResponse.BodyHandlers.ofInputStream());
    try (BufferedReader in = new BufferedReader(new InputStreamReader(events.body(), StandardCharsets.UTF_8))) {
      String line = in.readLine();
      while (line != null && !line.startsWith("data: ")) {
        line = in.readLine();
      }
      assertThat(line).isNotNull().doesNotContain("s3cret", "127.0.0.1:9", "buffers");
    }
    assertThat(ok("GET", "/v1/buffers/k", null).get("url").asText()).isEqualTo("http://***@127.0.0.1:9/hook?token=***");
  }

  @Test
  void buffersMayNotTargetLinkLocalTheCoordinatorItselfOrAmbiguousAddresses() throws Exception {
    refused("POST", "/v1/buffers", create("t", "http://169.254.169.254/latest/meta-data", ""), 400,
        "'169.254.169.254' is link-local (169.254.0.0/16)", "--buffer-allow");
    refused("POST", "/v1/buffers", create("t", "http://[fe80::1]:8080/", ""), 400, "link-local (fe80::/10)");
    refused("POST", "/v1/buffers", create("t", "http://127.0.0.1:" + server.httpPort() + "/v1/resources/x/report",
        ""), 400, "port " + server.httpPort() + " is this coordinator's own");
    refused("POST", "/v1/buffers", create("t", "http://[::1]:" + server.port() + "/", ""), 400,
        "port " + server.port() + " is this coordinator's own");
    refused("POST", "/v1/buffers", create("t", "http://localhost:" + server.httpPort() + "/", ""), 400,
        "'localhost' resolves to", "this coordinator's own");
    refused("POST", "/v1/buffers", create("t", "http://0x7f000001:8080/", ""), 400, "non-standard form",
        "e.g. 127.0.0.1");
    refused("POST", "/v1/buffers", create("t", "http://2130706433/", ""), 400, "non-standard form", "127.0.0.1");
    refused("POST", "/v1/buffers", create("t", "http://0177.0.0.1/", ""), 400, "non-standard form", "127.0.0.1");
    refused("POST", "/v1/buffers", create("t", "http://127.0.0.1:0/", ""), 400, "port 0");
    refused("POST", "/v1/buffers", create("t", "http://no-such-host.invalid/", ""), 400, "does not resolve");
    ok("POST", "/v1/buffers", create("t", "http://127.0.0.1:9/", "")); // loopback elsewhere: the admin's call
  }

  @Test
  void denyAndAllowListsApplyAtCreateAndBeforeEveryAttempt() throws Exception {
    try (Upstream up = new Upstream(1000, 1000)) {
      ok("POST", "/v1/buffers", create("d", up.url("/ok"), ", \"maxRetries\": 0"));
      long first = ok("POST", "/v1/buffers/d/items", "{\"body\": \"1\"}").get("id").asLong();
      await().atMost(Duration.ofSeconds(15)).until(() -> item("d", first).get("state").asText().equals("completed"));

      restart(b -> b.bufferDeny(List.of("10.0.0.0/8,127.0.0.0/8")));
      refused("POST", "/v1/buffers", create("d2", up.url("/ok"), ""), 400, "in --buffer-deny 127.0.0.0/8");
      long second = ok("POST", "/v1/buffers/d/items", "{\"body\": \"2\"}").get("id").asLong();
      await().atMost(Duration.ofSeconds(15)).until(() -> item("d", second).get("state").asText().equals("failed"));
      assertThat(item("d", second).get("history").toString()).contains("not sent", "--buffer-deny 127.0.0.0/8");
      assertThat(up.arrivals()).hasSize(1);

      restart(b -> b.bufferAllow(List.of("10.0.0.0/8")));
      refused("POST", "/v1/buffers", create("d3", up.url("/ok"), ""), 400, "outside --buffer-allow (10.0.0.0/8)");
    }
  }

  @Test
  void aHostThatLaterResolvesToADeniedAddressIsNotSentTo() throws Exception {
    AtomicReference<String> answer = new AtomicReference<>("127.0.0.1");
    restart(b -> b.bufferResolver(host -> host.equals("rebind.test")
        ? new InetAddress[] {InetAddress.getByName(answer.get())} : InetAddress.getAllByName(host)));
    ok("POST", "/v1/buffers", create("r", "http://rebind.test:8080/hook", ", \"maxRetries\": 0"));
    ok("POST", "/v1/buffers/r/pause", null);
    long id = ok("POST", "/v1/buffers/r/items", "{\"body\": \"x\"}").get("id").asLong();
    answer.set("169.254.169.254");
    ok("POST", "/v1/buffers/r/resume", null);
    await().atMost(Duration.ofSeconds(15)).until(() -> item("r", id).get("state").asText().equals("failed"));
    assertThat(item("r", id).get("history").toString()).contains("not sent", "resolves to 169.254.169.254",
        "link-local");
  }
}
