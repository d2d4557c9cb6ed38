package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.Role;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * The HTTP/JSON API over a real coordinator's HTTP port: every status of docs/http-api.md's table, the
 * long poll (a hang-up leaves the queue), settle, renew, report, the dashboard's reads and its
 * pause and resume, health and readiness. Under paranoid leak detection: no path may leave a
 * pooled buffer unreleased.
 */
@ExtendWith(NettyLeakCheck.class)
class HttpApiTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path dataDir;
  private SluiceServer server;
  private HttpClient http;
  private String base;

  @BeforeEach
  void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).build().start();
    base = "http://127.0.0.1:" + server.httpPort();
    http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  }

  @AfterEach
  void stop() {
    server.close();
  }

  private void limit(String resource, long amount, Duration period, long burst, long concurrency, int maxWaiting) {
    sync(server.engine()).setLimit(new LimitSpec(resource, List.of(new RateSpec("requests", amount, period, burst),
        new RateSpec("tokens", 1_000_000, Duration.ofMinutes(1), 1_000_000)), concurrency, maxWaiting,
        Duration.ofSeconds(30)));
  }

  private HttpResponse<String> post(String path, String body, String key) throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30))
        .POST(body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body))
        .header("Content-Type", "application/json");
    if (key != null) {
      b.header("Authorization", "Bearer " + key);
    }
    return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  private HttpResponse<String> post(String path, String body) throws Exception {
    return post(path, body, null);
  }

  private HttpResponse<String> get(String path) throws Exception {
    return http.send(HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30)).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private static JsonNode json(HttpResponse<String> r) throws Exception {
    return JSON.readTree(r.body());
  }

  /** Asserts the status, the JSON error code and words of its message. */
  private static void refused(HttpResponse<String> r, int status, String code, String... words) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(status);
    assertThat(r.headers().firstValue("content-type")).hasValue("application/json");
    JsonNode e = json(r).get("error");
    assertThat(e.get("code").asText()).isEqualTo(code);
    assertThat(e.get("status").asInt()).isEqualTo(status);
    assertThat(e.get("message").asText()).isNotBlank();
    for (String w : words) {
      assertThat(e.get("message").asText()).contains(w);
    }
  }

  @Test
  void acquireReleaseAndRenewOverJson() throws Exception {
    limit("api", 100, Duration.ofSeconds(1), 100, 2, 100);
    HttpResponse<String> r = post("/v1/resources/api/acquire",
        "{\"load\": {\"requests\": 1, \"tokens\": 500}, \"lane\": \"interactive\"}");
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    JsonNode grant = json(r);
    String permit = grant.get("permitId").asText();
    assertThat(grant.get("resource").asText()).isEqualTo("api");
    assertThat(grant.get("granted").get("tokens").asLong()).isEqualTo(500);
    assertThat(grant.get("leaseSeconds").asDouble()).isEqualTo(30.0);
    assertThat(sync(server.engine()).stats("api").inFlight()).isEqualTo(1);
    assertThat(sync(server.engine()).stats("api").used().get("tokens")).isEqualTo(500.0);

    HttpResponse<String> renewed = post("/v1/permits/" + permit + "/renew", null);
    assertThat(renewed.statusCode()).as(renewed.body()).isEqualTo(200);
    assertThat(json(renewed).get("leaseSeconds").asDouble()).isEqualTo(30.0);

    // Settling with actual usage refunds the over-estimate.
    HttpResponse<String> released = post("/v1/permits/" + permit + "/release", "{\"usage\": {\"tokens\": 200}}");
    assertThat(json(released).get("released").asBoolean()).isTrue();
    ResourceSnapshot after = sync(server.engine()).stats("api");
    assertThat(after.inFlight()).isZero();
    assertThat(after.used().get("tokens")).isEqualTo(200.0);

    // Releasing twice is harmless (retries after a lost answer); renewing a gone permit is 404.
    HttpResponse<String> again = post("/v1/permits/" + permit + "/release", null);
    assertThat(again.statusCode()).isEqualTo(200);
    assertThat(json(again).get("released").asBoolean()).isFalse();
    refused(post("/v1/permits/" + permit + "/renew", null), 404, "NOT_FOUND", "not held", "acquire again");

    // unused: the call was never made, the whole load comes back.
    String second = json(post("/v1/resources/api/acquire?timeout=5s", "{\"load\": {\"tokens\": 300}}"))
        .get("permitId").asText();
    assertThat(json(post("/v1/permits/" + second + "/release", "{\"unused\": true}")).get("released").asBoolean())
        .isTrue();
    assertThat(sync(server.engine()).stats("api").used().get("tokens")).isEqualTo(200.0);
  }

  @Test
  void badRequestsAre400NamingTheFieldAndTheFix() throws Exception {
    limit("api", 100, Duration.ofSeconds(1), 100, 0, 100);
    refused(post("/v1/resources/api/acquire", "{not json"), 400, "INVALID_ARGUMENT", "not valid JSON");
    refused(post("/v1/resources/api/acquire", "[1]"), 400, "INVALID_ARGUMENT", "must be a JSON object");
    refused(post("/v1/resources/api/acquire", "{\"load\": {\"tokens\": 1.5}}"), 400, "INVALID_ARGUMENT",
        "load.tokens", "whole number");
    refused(post("/v1/resources/api/acquire", "{\"load\": 5}"), 400, "INVALID_ARGUMENT", "load must be an object");
    refused(post("/v1/resources/api/acquire", "{\"lane\": \"fast\"}"), 400, "INVALID_ARGUMENT",
        "lane 'fast' is unknown", "interactive, default or batch");
    refused(post("/v1/resources/api/acquire", "{\"loads\": {}}"), 400, "INVALID_ARGUMENT", "unknown field 'loads'",
        "load, lane, timeout, requestId");
    refused(post("/v1/resources/api/acquire?timeout=soon", null), 400, "INVALID_ARGUMENT",
        "timeout 'soon' is not a duration");
    refused(post("/v1/resources/api/acquire", "{\"timeout\": -1}"), 400, "INVALID_ARGUMENT", "timeout '-1' is negative",
        "from 0s to 1d");
    // The engine's own checks come through with their words.
    refused(post("/v1/resources/api/acquire", "{\"load\": {\"images\": 1}}"), 400, "INVALID_ARGUMENT", "images");
    refused(post("/v1/resources/bad%20name/acquire", null), 400, "INVALID_ARGUMENT", "resource name");
    refused(post("/v1/permits/nonsense/release", null), 400, "INVALID_ARGUMENT", "not one this API hands out");
    refused(post("/v1/resources/api/report", "{\"throttled\": \"yes\"}"), 400, "INVALID_ARGUMENT",
        "throttled must be true or false");
    String permit = json(post("/v1/resources/api/acquire", null)).get("permitId").asText();
    refused(post("/v1/permits/" + permit + "/release", "{\"usage\": {\"tokens\": 1}, \"unused\": true}"), 400,
        "INVALID_ARGUMENT", "not both");
    // Nothing was lost to the refusals: one permit held, one request taken.
    assertThat(sync(server.engine()).stats("api").inFlight()).isEqualTo(1);
    assertThat(sync(server.engine()).stats("api").used().get("requests")).isEqualTo(1.0);
  }

  @Test
  void unknownThingsAre404AndWrongMethods405() throws Exception {
    refused(post("/v1/resources/nope/acquire", null), 404, "NOT_FOUND", "'nope' has no limit", "sluice limit set");
    refused(get("/v1/nothing"), 404, "NOT_FOUND", "no such endpoint", "docs/http-api.md");
    refused(get("/elsewhere"), 404, "NOT_FOUND", "/metrics");
    refused(get("/dashboard/../pom.xml"), 404, "NOT_FOUND", "no such dashboard file");
    HttpResponse<String> r = get("/v1/resources/api/acquire");
    refused(r, 405, "METHOD_NOT_ALLOWED", "GET /v1/resources/api/acquire is not served: use POST"
        + " /v1/resources/api/acquire");
    assertThat(r.headers().firstValue("allow")).hasValue("POST");
    // Wrong case or wrong method: the answer names the right method and path (it once said "use GET").
    HttpResponse<String> upper = post("/v1/resources/api/ACQUIRE", null);
    refused(upper, 404, "NOT_FOUND", "case-sensitive", "use POST /v1/resources/api/acquire");
    assertThat(upper.body()).doesNotContain("use GET");
    refused(post("/v1/permits/abc.def/Release", null), 404, "NOT_FOUND", "use POST /v1/permits/abc.def/release");
    HttpResponse<String> onResource = post("/v1/resources/api", null);
    refused(onResource, 405, "METHOD_NOT_ALLOWED", "GET /v1/resources/api reads the resource",
        "POST /v1/resources/api/acquire");
    assertThat(onResource.headers().firstValue("allow")).hasValue("GET");
    refused(post("/healthz", null), 405, "METHOD_NOT_ALLOWED", "use GET or HEAD /healthz");
  }

  @Test
  void aBodyOverOneMebibyteIs413AndNothingIsTaken() throws Exception {
    limit("big", 100, Duration.ofSeconds(1), 100, 0, 100);
    HttpResponse<String> r = post("/v1/resources/big/acquire", "{\"requestId\": \"" + "x".repeat(1 << 20) + "\"}");
    assertThat(r.statusCode()).isEqualTo(413);
    assertThat(sync(server.engine()).stats("big").used().get("requests")).isZero();
  }

  @Test
  void aTimedOutLongPollIs408() throws Exception {
    limit("slow", 1000, Duration.ofSeconds(1), 1000, 1, 100); // one at a time

    assertThat(post("/v1/resources/slow/acquire", null).statusCode()).isEqualTo(200);
    refused(post("/v1/resources/slow/acquire?timeout=50ms", null), 408, "DEADLINE_EXCEEDED");
    assertThat(sync(server.engine()).stats("slow").timedOut()).isEqualTo(1);
    assertThat(sync(server.engine()).stats("slow").waiting().values()).containsOnly(0);
  }

  @Test
  void aFullWaitingRoomIs429WithRetryAfter() throws Exception {
    limit("room", 1000, Duration.ofSeconds(1), 1000, 0, 1);
    sync(server.engine()).pause("room", -1);
    CompletableFuture<HttpResponse<String>> parked = http.sendAsync(
        HttpRequest.newBuilder(URI.create(base + "/v1/resources/room/acquire?timeout=30s"))
            .POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
    await().atMost(Duration.ofSeconds(10)).until(() -> sync(server.engine()).stats("room").waiting().get(Lane.DEFAULT) == 1);
    HttpResponse<String> full = post("/v1/resources/room/acquire", null);
    refused(full, 429, "RESOURCE_EXHAUSTED", "waiting room");
    assertThat(full.headers().firstValue("retry-after")).isPresent();
    assertThat(Long.parseLong(full.headers().firstValue("retry-after").get())).isPositive();
    sync(server.engine()).resume("room");
    assertThat(parked.get(10, TimeUnit.SECONDS).statusCode()).isEqualTo(200);
  }

  @Test
  void aClientThatHangsUpLeavesTheQueueAndLosesNoPermit() throws Exception {
    limit("hang", 1, Duration.ofMinutes(1), 1, 1, 100);
    sync(server.engine()).pause("hang", -1);
    try (Socket s = new Socket("127.0.0.1", server.httpPort())) {
      s.getOutputStream().write(("POST /v1/resources/hang/acquire?timeout=60s HTTP/1.1\r\nHost: x\r\n"
          + "Content-Length: 0\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
      s.getOutputStream().flush();
      await().atMost(Duration.ofSeconds(10))
          .until(() -> sync(server.engine()).stats("hang").waiting().get(Lane.DEFAULT) == 1);
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> sync(server.engine()).stats("hang").waiting().get(Lane.DEFAULT) == 0);
    sync(server.engine()).resume("hang");
    ResourceSnapshot s = sync(server.engine()).stats("hang");
    assertThat(s.cancelled()).isEqualTo(1);
    assertThat(s.inFlight()).isZero();
    assertThat(s.used().get("requests")).isZero(); // nothing taken for the departed caller
  }

  @Test
  void aWaiterIsWithdrawnByItsRequestIdAndAGrantIsNotCancelled() throws Exception {
    limit("wd", 1000, Duration.ofSeconds(1), 1000, 0, 100);
    sync(server.engine()).pause("wd", -1);
    CompletableFuture<HttpResponse<String>> parked = http.sendAsync(
        HttpRequest.newBuilder(URI.create(base + "/v1/resources/wd/acquire?timeout=30s"))
            .POST(HttpRequest.BodyPublishers.ofString("{\"requestId\": \"w-1\"}")).build(),
        HttpResponse.BodyHandlers.ofString());
    await().atMost(Duration.ofSeconds(10)).until(() -> sync(server.engine()).stats("wd").waiting().get(Lane.DEFAULT) == 1);

    HttpResponse<String> cancelled = post("/v1/resources/wd/cancel", "{\"requestId\": \"w-1\"}");
    assertThat(cancelled.statusCode()).as(cancelled.body()).isEqualTo(200);
    assertThat(json(cancelled).get("cancelled").asBoolean()).isTrue();
    // The long poll ends at once, and says why; the waiter is counted as cancelled, nothing taken.
    refused(parked.get(10, TimeUnit.SECONDS), 503, "CANCELLED", "cancelled");
    ResourceSnapshot s = sync(server.engine()).stats("wd");
    assertThat(s.waiting().values()).containsOnly(0);
    assertThat(s.cancelled()).isEqualTo(1);
    assertThat(json(post("/v1/resources/wd/cancel", "{\"requestId\": \"w-1\"}")).get("cancelled").asBoolean())
        .as("a second cancel finds nothing").isFalse();

    // A granted acquire is not withdrawn: its permit stays with whoever holds it.
    sync(server.engine()).resume("wd");
    HttpResponse<String> granted = post("/v1/resources/wd/acquire", "{\"requestId\": \"w-2\"}");
    assertThat(granted.statusCode()).as(granted.body()).isEqualTo(200);
    assertThat(json(post("/v1/resources/wd/cancel", "{\"requestId\": \"w-2\"}")).get("cancelled").asBoolean())
        .isFalse();
    assertThat(sync(server.engine()).stats("wd").inFlight()).isEqualTo(1);

    refused(post("/v1/resources/wd/cancel", null), 400, "INVALID_ARGUMENT", "requestId is missing");
    refused(post("/v1/resources/wd/cancel", "{\"requestId\": \"no spaces\"}"), 400, "INVALID_ARGUMENT",
        "request id 'no spaces' is invalid");
    refused(post("/v1/resources/wd/cancel", "{\"requestId\": 7}"), 400, "INVALID_ARGUMENT", "must be a string");
    refused(post("/v1/resources/wd/cancel", "{\"id\": \"w-1\"}"), 400, "INVALID_ARGUMENT", "unknown field 'id'",
        "requestId");
    refused(post("/v1/resources/nope/cancel", "{\"requestId\": \"w-1\"}"), 404, "NOT_FOUND", "'nope' has no limit");
    HttpResponse<String> wrong = get("/v1/resources/wd/cancel");
    refused(wrong, 405, "METHOD_NOT_ALLOWED", "use POST /v1/resources/wd/cancel");
  }

  @Test
  void reportPausesEveryWorkerAndPauseResumeAreAdminCalls() throws Exception {
    limit("up", 100, Duration.ofSeconds(1), 100, 0, 100);
    HttpResponse<String> r = post("/v1/resources/up/report", "{\"throttled\": true, \"retryAfter\": \"20s\"}");
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    assertThat(json(r).get("pausedForSeconds").asDouble()).isBetween(19.0, 20.0);
    assertThat(sync(server.engine()).stats("up").paused()).isTrue();
    assertThat(sync(server.engine()).stats("up").throttleReports()).isEqualTo(1);
    refused(post("/v1/resources/up/acquire?timeout=20ms", null), 408, "DEADLINE_EXCEEDED");

    HttpResponse<String> resumed = post("/v1/resources/up/resume", null);
    assertThat(json(resumed).get("paused").asBoolean()).isFalse();
    assertThat(sync(server.engine()).stats("up").paused()).isFalse();
    HttpResponse<String> paused = post("/v1/resources/up/pause", "{\"seconds\": 30}");
    assertThat(json(paused).get("pausedForSeconds").asDouble()).isBetween(29.0, 30.0);
    assertThat(sync(server.engine()).stats("up").paused()).isTrue();
    refused(post("/v1/resources/up/pause", "{\"seconds\": 0}"), 400, "INVALID_ARGUMENT", "does nothing");
    assertThat(json(post("/v1/resources/up/pause", null)).get("pausedForSeconds").asDouble()).isEqualTo(-1.0);
    assertThat(sync(server.engine()).stats("up").pausedForNanos()).isEqualTo(-1);
  }

  @Test
  void reportedProviderLimitsTeachALearningResourceAndTheViewShowsIt() throws Exception {
    sync(server.engine()).setLimit(new LimitSpec("taught", List.of(new RateSpec("requests", 60, Duration.ofMinutes(1), 1)),
        0, 0, null, new dev.sluice.server.engine.LearnSpec("openai", List.of(), 0, "")));
    JsonNode before = json(get("/v1/resources/taught")).get("limit").get("learn");
    assertThat(before.get("learnedAt").isNull()).isTrue();
    assertThat(before.get("summary").asText()).contains("no openai limit headers reported yet");

    HttpResponse<String> r = post("/v1/resources/taught/report", "{\"limits\": {\"requests\": 600}}");
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    // What the change's one log line says after "limit changed taught: ": who changed it.
    assertThat(dev.sluice.server.engine.MemoryEngine.describe(sync(server.engine()).getLimit("taught").orElseThrow()))
        .startsWith("requests=600/PT1M:5 ").contains("(learned from openai report at ").endsWith(", was requests=60/min:1)");
    JsonNode limit = json(get("/v1/resources/taught")).get("limit");
    assertThat(limit.get("rates").get(0).get("amount").asLong()).isEqualTo(600);
    assertThat(limit.get("rates").get(0).get("burst").asLong()).isEqualTo(5);
    assertThat(limit.get("learn").get("provider").asText()).isEqualTo("openai");
    assertThat(limit.get("learn").get("was").asText()).isEqualTo("requests=60/min:1");
    assertThat(limit.get("learn").get("learnedAt").asText()).matches("20\\d\\d-.*Z");
    refused(post("/v1/resources/taught/report", "{\"limits\": {\"requests\": -1}}"), 400, "INVALID_ARGUMENT");
  }

  @Test
  void withKeysEveryCallNeedsOneAndRolesAndResourcesAreChecked() throws Exception {
    limit("mine", 100, Duration.ofSeconds(1), 100, 0, 100);
    limit("theirs", 100, Duration.ofSeconds(1), 100, 0, 100);
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try {
      String admin = AdminGrpc.newBlockingStub(ch).createKey(CreateKeyRequest.newBuilder()
          .setRole(Role.ROLE_ADMIN).build()).getKey();
      Metadata h = new Metadata();
      h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + admin);
      String worker = AdminGrpc.newBlockingStub(ch).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h))
          .createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER).setResources("mine").build()).getKey();

      HttpResponse<String> none = post("/v1/resources/mine/acquire", null);
      refused(none, 401, "UNAUTHENTICATED", "requires an API key", "Authorization: Bearer");
      assertThat(none.headers().firstValue("www-authenticate")).hasValueSatisfying(v -> assertThat(v).startsWith("Bearer"));
      refused(post("/v1/resources/mine/acquire", null, "slk_000000000000_nope"), 401, "UNAUTHENTICATED",
          "unknown or revoked API key");
      refused(post("/v1/resources/mine/acquire", null, "garbage"), 401, "UNAUTHENTICATED", "not a Sluice key");
      refused(post("/v1/resources/theirs/acquire", null, worker), 403, "PERMISSION_DENIED", "may use resources 'mine'");
      refused(post("/v1/resources/mine/pause", null, worker), 403, "PERMISSION_DENIED", "admin");
      assertThat(sync(server.engine()).stats("mine").paused()).isFalse();

      HttpResponse<String> ok = post("/v1/resources/mine/acquire", null, worker);
      assertThat(ok.statusCode()).as(ok.body()).isEqualTo(200);
      String permit = json(ok).get("permitId").asText();
      refused(post("/v1/permits/" + permit + "/release", null), 401, "UNAUTHENTICATED");
      assertThat(json(post("/v1/permits/" + permit + "/release", null, worker)).get("released").asBoolean()).isTrue();
      assertThat(post("/v1/resources/theirs/pause", null, admin).statusCode()).isEqualTo(200);
      assertThat(sync(server.engine()).stats("theirs").paused()).isTrue();
      // Keys are never echoed back.
      assertThat(post("/v1/resources/theirs/acquire", null, worker).body()).doesNotContain(worker.substring(17));
    } finally {
      ch.shutdownNow();
    }
  }

  @Test
  void aLongPollCutByShutdownIs503AndReadinessGoesDown() throws Exception {
    limit("bye", 1000, Duration.ofSeconds(1), 1000, 0, 100);
    sync(server.engine()).pause("bye", -1);
    assertThat(get("/healthz").statusCode()).isEqualTo(200);
    assertThat(get("/readyz").statusCode()).isEqualTo(200);
    CompletableFuture<HttpResponse<String>> parked = http.sendAsync(
        HttpRequest.newBuilder(URI.create(base + "/v1/resources/bye/acquire?timeout=30s"))
            .POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString());
    await().atMost(Duration.ofSeconds(10)).until(() -> sync(server.engine()).stats("bye").waiting().get(Lane.DEFAULT) == 1);
    server.close();
    HttpResponse<String> r = parked.get(10, TimeUnit.SECONDS);
    refused(r, 503, "UNAVAILABLE");
    assertThat(r.headers().firstValue("retry-after")).hasValue("1");
  }

  @Test
  void aResourcesLimitShowsItsJitterAndTheEffectiveRateOfEachDimension() throws Exception {
    sync(server.engine()).setLimit(new LimitSpec("tier", List.of(new RateSpec("requests", 60, Duration.ofMinutes(1), 1),
        new RateSpec("tokens", 30_000, Duration.ofMinutes(1), 250)), 0, 0, null, Duration.ofMillis(20)));
    JsonNode limit = json(get("/v1/resources/tier")).get("limit");
    assertThat(limit.get("jitterSeconds").asDouble()).isEqualTo(0.02);
    assertThat(limit.get("rates").get(0).get("amount").asLong()).isEqualTo(60);
    assertThat(limit.get("rates").get(0).get("effectiveAmount").asDouble()).isEqualTo(58.824);
    assertThat(limit.get("rates").get(1).get("effectiveAmount").asDouble()).isEqualTo(30_000.0);
  }

  @Test
  void theDashboardReadsShowResourcesHistoryAndAnEventStream() throws Exception {
    limit("seen", 10, Duration.ofSeconds(1), 10, 3, 100);
    assertThat(post("/v1/resources/seen/acquire", "{\"load\": {\"tokens\": 100}}").statusCode()).isEqualTo(200);
    await().atMost(Duration.ofSeconds(10)).until(() -> {
      JsonNode list = json(get("/v1/resources")).get("resources");
      return list.size() == 1 && list.get(0).get("inFlight").asInt() == 1;
    });
    JsonNode view = json(get("/v1/resources"));
    assertThat(view.get("node").asText()).isEqualTo("standalone");
    assertThat(view.get("total").asInt()).isEqualTo(1);
    assertThat(view.has("buffers")).as("buffers are read from /v1/buffers, with a key").isFalse();
    JsonNode r = view.get("resources").get(0);
    assertThat(r.get("name").asText()).isEqualTo("seen");
    assertThat(r.get("limit").get("concurrency").asInt()).isEqualTo(3);
    assertThat(r.get("limit").get("rates").get(0).get("perSecond").asDouble()).isEqualTo(10.0);
    assertThat(r.get("waiting").get("interactive").asInt()).isZero();
    assertThat(r.get("granted").asLong()).isEqualTo(1);
    JsonNode one = json(get("/v1/resources/seen"));
    assertThat(one.get("inFlight").asInt()).isEqualTo(1);

    await().atMost(Duration.ofSeconds(10)).until(() ->
        json(get("/v1/history")).get("resources").path("seen").path("requests").size() >= 2);
    JsonNode history = json(get("/v1/history"));
    assertThat(history.get("points").asInt()).isEqualTo(900);
    assertThat(history.get("resources").get("seen").has("tokens")).isTrue();

    HttpRequest sse = HttpRequest.newBuilder(URI.create(base + "/v1/events")).build();
    HttpResponse<InputStream> stream = http.send(sse, HttpResponse.BodyHandlers.ofInputStream());
    assertThat(stream.statusCode()).isEqualTo(200);
    assertThat(stream.headers().firstValue("content-type").orElse("")).startsWith("text/event-stream");
    try (BufferedReader in = new BufferedReader(new InputStreamReader(stream.body(), StandardCharsets.UTF_8))) {
      int events = 0;
      for (String line; events < 2 && (line = in.readLine()) != null; ) {
        if (line.startsWith("data: ")) {
          JsonNode e = JSON.readTree(line.substring(6));
          assertThat(e.get("resources").get(0).get("name").asText()).isEqualTo("seen");
          events++;
        }
      }
      assertThat(events).isEqualTo(2); // the first at once, the next a sample later
    }
  }
}
