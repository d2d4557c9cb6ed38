package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.examples.mock.MockOpenAi;
import dev.sluice.server.ServerTestHooks;
import dev.sluice.server.SluiceServer;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.redis.RedisProcess;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Buffers delivered through OpenAI's Batch API (issue 22), against the strict mock's Files and
 * Batches endpoints with a shortened processing time: every item completed with its own
 * response, line errors retried in a later batch, expired lines queued again, bad input refused
 * at push. Every case runs on both stores: the embedded one ({@code buffers.db}, {@link
 * BatchBufferTest}) and a shared Redis ({@link RedisBatchBufferTest}); two classes, so that the
 * examples module's two test JVMs run them side by side (most of their time is the mock's
 * processing and the overflow threshold, waited out in real time).
 */
abstract class BatchBufferCases {

  enum Store {
    EMBEDDED,
    REDIS
  }

  private static final ObjectMapper JSON = new ObjectMapper();
  private static RedisProcess redis;

  /** The store every case of this class runs on. */
  final Store store;

  BatchBufferCases(Store store) {
    this.store = store;
  }
  @TempDir Path dataDir;
  private SluiceServer server;
  private MockOpenAi mock;
  private final HttpClient http = HttpClient.newHttpClient();

  @AfterAll
  static void stopRedis() {
    if (redis != null) {
      redis.close();
      redis = null;
    }
  }

  /** A coordinator on this run's store (the same Redis or data dir each time within a test). */
  private SluiceServer coordinator() throws Exception {
    SluiceServer.Builder b = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO);
    return (store == Store.REDIS ? b.store(redis.uri()) : b).build().start();
  }

  private void start() throws Exception {
    start(10_000_000, new LimitSpec("openai-batch", List.of(new RateSpec("enqueued_tokens",
        5_000_000, Duration.ofMinutes(1), 5_000_000)), 0, 10_000, Duration.ofHours(1)));
  }

  /** A mock whose batch queue takes {@code queueTokens}, and a coordinator with {@code limit}. */
  private void start(long queueTokens, LimitSpec limit) throws Exception {
    if (store == Store.REDIS) {
      if (redis == null) {
        redis = RedisProcess.start();
      }
      redis.flushAll();
    }
    mock = MockOpenAi.builder().latency(Duration.ZERO, Duration.ZERO).batchProcessing(Duration.ofMillis(500))
        .batchQueueTokens(queueTokens).build().start();
    server = coordinator();
    // The provider's batch queue as a resource: enqueued tokens. As a rate (the default here), a
    // new limit's bucket starts empty and fills at its rate, so the test's fills in a minute.
    ServerTestHooks.engine(server).setLimit(limit).join();
  }

  @AfterEach
  void stop() {
    if (server != null) {
      server.close();
    }
    if (mock != null) {
      mock.close();
    }
  }

  private HttpResponse<String> call(String method, String path, String body) throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.httpPort() + path))
        .timeout(Duration.ofSeconds(30))
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
    return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  private JsonNode ok(String method, String path, String body) throws Exception {
    HttpResponse<String> r = call(method, path, body);
    assertThat(r.statusCode()).as(method + " " + path + ": " + r.body()).isBetween(200, 202);
    return JSON.readTree(r.body());
  }

  private String refused(String method, String path, String body) throws Exception {
    HttpResponse<String> r = call(method, path, body);
    assertThat(r.statusCode()).as(r.body()).isEqualTo(400);
    return JSON.readTree(r.body()).get("error").get("message").asText();
  }

  private String buffer(String name, String extra) {
    return "{\"name\": \"" + name + "\", \"url\": \"" + mock.baseUrl() + "\", \"resource\": \"openai-batch\","
        + " \"delivery\": \"openai-batch\", \"endpoint\": \"/v1/chat/completions\", \"flushAfter\": \"1s\","
        + " \"headers\": {\"Authorization\": \"Bearer sk-batch\"}" + extra + "}";
  }

  /** Item i asks a prompt of i % 40 + 1 words with a budget of i % 7 + 1 tokens: its answer shows both. */
  private static String chat(int i) {
    return "{\"model\": \"gpt-4o-mini\", \"max_tokens\": " + (i % 7 + 1) + ", \"messages\": [{\"role\": \"user\","
        + " \"content\": \"" + words(i % 40 + 1) + "\"}]}";
  }

  private static String words(int n) {
    return "the ".repeat(n).strip();
  }

  private List<Long> push(String buffer, int from, int to, java.util.function.IntFunction<String> body)
      throws Exception {
    StringBuilder b = new StringBuilder("{\"items\": [");
    for (int i = from; i < to; i++) {
      b.append(i == from ? "" : ",").append("{\"body\": ").append(body.apply(i)).append("}");
    }
    List<Long> ids = new ArrayList<>();
    for (JsonNode id : ok("POST", "/v1/buffers/" + buffer + "/items", b.append("]}").toString()).get("ids")) {
      ids.add(id.asLong());
    }
    return ids;
  }

  private JsonNode item(String buffer, long id) throws Exception {
    return ok("GET", "/v1/buffers/" + buffer + "/items/" + id, null);
  }

  private void awaitFinished(String buffer, long total) {
    await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(200)).untilAsserted(() -> {
      JsonNode stats = ok("GET", "/v1/buffers/" + buffer, null).get("stats");
      assertThat(stats.get("completed").asLong() + stats.get("failed").asLong()).as(stats.toString())
          .isEqualTo(total);
    });
  }

  @Test
  void twoThousandItemsCompleteEachWithItsOwnResponse() throws Exception {
    start();
    // flushAfter 5s: both pushes are in before the first batch goes, so it is a full one.
    ok("POST", "/v1/buffers", buffer("nightly", ", \"maxBatchItems\": 1500").replace("\"1s\"", "\"5s\""));
    List<Long> ids = new ArrayList<>();
    ids.addAll(push("nightly", 0, 1000, BatchBufferCases::chat));
    ids.addAll(push("nightly", 1000, 2000, BatchBufferCases::chat));
    awaitFinished("nightly", 2000);

    JsonNode stats = ok("GET", "/v1/buffers/nightly", null).get("stats");
    assertThat(stats.get("completed").asLong()).isEqualTo(2000);
    long promptTotal = 0;
    long completionTotal = 0;
    for (int i = 0; i < 2000; i++) {
      JsonNode x = item("nightly", ids.get(i));
      assertThat(x.get("state").asText()).isEqualTo("completed");
      assertThat(x.get("lastStatus").asInt()).isEqualTo(200);
      JsonNode answer = JSON.readTree(x.get("responseExcerpt").asText());
      assertThat(answer.get("object").asText()).isEqualTo("chat.completion");
      // Matched to its own request: the prompt's size and the budget are the item's.
      int prompt = TokenEstimator.promptTokens(List.of(new TokenEstimator.Message("user", words(i % 40 + 1))));
      assertThat(answer.get("usage").get("prompt_tokens").asInt()).as("item %d", i).isEqualTo(prompt);
      assertThat(answer.get("usage").get("completion_tokens").asInt()).isBetween(1, i % 7 + 1);
      promptTotal += prompt;
      completionTotal += answer.get("usage").get("completion_tokens").asInt();
    }
    // The README's cost comparison comes from this line (gpt-4o-mini: $0.15 / $0.60 per million
    // input / output tokens live, half that through the Batch API).
    System.out.printf("batch cost: %d input + %d output tokens: live $%.6f, batch $%.6f%n", promptTotal,
        completionTotal, (promptTotal * 0.15 + completionTotal * 0.60) / 1e6,
        (promptTotal * 0.075 + completionTotal * 0.30) / 1e6);
    // 1 500 + 500: on Redis a batch of 1 500 results is recorded in two parts (1 000 per script call).
    assertThat(providerBatches()).anySatisfy(b -> assertThat(b.get("request_counts").get("total").asInt())
        .isEqualTo(1500));
    assertThat(item("nightly", ids.get(1999)).get("history").toString()).contains("batch batch_");
    java.util.regex.Matcher ended = java.util.regex.Pattern.compile(
        "sluice_buffer_batches_ended_total\\{buffer=\"nightly\",status=\"completed\"} ([0-9.]+)").matcher(metrics());
    assertThat(ended.find()).as("the ended-batches counter is exported").isTrue();
    assertThat(Double.parseDouble(ended.group(1))).as("every batch the provider ran, counted once")
        .isEqualTo(providerBatches().size());
    assertThat(metrics()).contains("sluice_buffer_batch_items{buffer=\"nightly\"} 0.0");
    assertThat(mock.stats().admitted()).isZero(); // nothing went to the live endpoint
  }

  /**
   * Two batch buffers share one resource whose {@code enqueued_tokens} is held, capped at the
   * provider's queue limit: their batches (each over half the cap) never sit in the queue
   * together, so the provider never refuses one; the second waits for room, which comes back
   * when the first ends. Leases of 1 s against batches of 3 s: the room is held by renewing.
   */
  @Test
  void batchBuffersSharingAHeldQueueNeverEnqueuePastItAndWaitForRoom() throws Exception {
    // 100 items are 4 050 estimated tokens (bytes / 4) and fewer counted by the provider: one
    // batch fits the cap, and two together would pass the provider's limit.
    long cap = 4_500;
    long counted = 0;
    for (int i = 0; i < 100; i++) {
      counted += TokenEstimator.promptTokens(List.of(new TokenEstimator.Message("user", words(i % 40 + 1))));
    }
    assertThat(2 * counted).as("two batches in the queue at once would be refused").isGreaterThan(cap);
    start(cap, new LimitSpec("openai-batch", List.of(), 0, 10_000, Duration.ofSeconds(1))
        .withHolds(java.util.Map.of("enqueued_tokens", cap)));
    mock.batchProcessing(Duration.ofSeconds(3));
    ok("POST", "/v1/buffers", buffer("night-a", ""));
    ok("POST", "/v1/buffers", buffer("night-b", ""));
    push("night-a", 0, 100, BatchBufferCases::chat);
    push("night-b", 0, 100, BatchBufferCases::chat);
    awaitFinished("night-a", 100);
    awaitFinished("night-b", 100);

    assertThat(ok("GET", "/v1/buffers/night-a", null).get("stats").get("completed").asLong()).isEqualTo(100);
    assertThat(ok("GET", "/v1/buffers/night-b", null).get("stats").get("completed").asLong()).isEqualTo(100);
    JsonNode batches = providerBatches();
    assertThat(batches).as("one batch per buffer, none refused for the queue").hasSize(2)
        .allSatisfy(b -> assertThat(b.get("status").asText()).as(b.toString()).isEqualTo("completed"));
    var engine = ServerTestHooks.engine(server);
    await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> {
      var stats = engine.stats("openai-batch").join();
      assertThat(stats.available().get("enqueued_tokens")).as("the room came back").isEqualTo((double) cap);
      assertThat(stats.inFlight()).isZero();
    });
    var stats = engine.stats("openai-batch").join();
    assertThat(stats.expired()).as("held by renewing, never lost to a lease").isZero();
    assertThat(stats.granted()).isEqualTo(2);
    assertThat(stats.waitP99Seconds()).as("the second batch waited for the first to end").isGreaterThan(1.0);
    assertThat(mock.batchEnqueuedTokens("gpt-4o-mini")).isZero();
  }

  @Test
  void lineErrorsAreRetriedInALaterBatchAndRefusedBodiesFail() throws Exception {
    start();
    mock.batchLineErrorEvery(4);
    ok("POST", "/v1/buffers", buffer("retries", ", \"maxBatchItems\": 9, \"backoffBase\": \"10ms\""));
    // Item 9 passes the push check but not OpenAI's: a role it does not know.
    List<Long> ids = push("retries", 0, 9, i -> i < 8 ? chat(i)
        : "{\"model\": \"gpt-4o-mini\", \"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}");
    awaitFinished("retries", 9);
    for (int i = 0; i < 8; i++) {
      JsonNode x = item("retries", ids.get(i));
      assertThat(x.get("state").asText()).as(x.toString()).isEqualTo("completed");
      boolean failedOnce = i == 3 || i == 7; // lines 4 and 8 of the first batch
      assertThat(x.get("attempts").asInt()).as(x.toString()).isEqualTo(failedOnce ? 2 : 1);
      assertThat(x.get("retriesUsed").asInt()).isEqualTo(failedOnce ? 1 : 0);
      if (failedOnce) {
        assertThat(x.get("history").toString()).contains("HTTP 500").contains("retry 1 of 5");
      }
    }
    JsonNode bad = item("retries", ids.get(8));
    assertThat(bad.get("state").asText()).isEqualTo("failed");
    assertThat(bad.get("lastStatus").asInt()).isEqualTo(400);
    assertThat(bad.get("responseExcerpt").asText()).contains("invalid_request_error");
    assertThat(bad.get("attempts").asInt()).isEqualTo(1);
  }

  @Test
  void aBatchStopsAtItsByteCapAndTheRestGoInTheNext() throws Exception {
    start();
    ok("POST", "/v1/buffers", buffer("small", ", \"maxBatchBytes\": 2048, \"maxBatchItems\": 20"));
    List<Long> ids = push("small", 0, 20, BatchBufferCases::chat); // over 3 KiB of lines
    awaitFinished("small", 20);
    JsonNode batches = providerBatches();
    assertThat(batches.size()).isGreaterThanOrEqualTo(2);
    for (JsonNode batch : batches) {
      JsonNode file = JSON.readTree(http.send(HttpRequest.newBuilder(URI.create(mock.baseUrl() + "/files/"
          + batch.get("input_file_id").asText())).header("Authorization", "Bearer sk").build(),
          HttpResponse.BodyHandlers.ofString()).body());
      assertThat(file.get("bytes").asLong()).isLessThanOrEqualTo(2048);
    }
    for (long id : ids) {
      assertThat(item("small", id).get("attempts").asInt()).isEqualTo(1); // taken out, not attempted
    }
  }

  @Test
  void aProviderAnsweringGarbageIsRetriedAndNoItemIsLost() throws Exception {
    start();
    mock.batchGarbage(3); // the upload, its retry, and the first create see an HTML page
    ok("POST", "/v1/buffers", buffer("garbled", ", \"maxBatchItems\": 4, \"backoffBase\": \"10ms\""));
    List<Long> ids = push("garbled", 0, 4, BatchBufferCases::chat);
    awaitFinished("garbled", 4);
    assertThat(providerBatches()).hasSize(1);
    for (long id : ids) {
      JsonNode x = item("garbled", id);
      assertThat(x.get("state").asText()).isEqualTo("completed");
      assertThat(x.get("attempts").asInt()).isEqualTo(1);
    }
  }

  @Test
  void anExpiredBatchsUnfinishedLinesAreQueuedAgainWithoutSpendingRetries() throws Exception {
    start();
    mock.batchProcessing(Duration.ofSeconds(4));
    mock.batchExpiry(Duration.ofSeconds(1)); // a quarter of each batch runs before it expires
    ok("POST", "/v1/buffers", buffer("late", ", \"maxBatchItems\": 8"));
    List<Long> ids = push("late", 0, 8, BatchBufferCases::chat);
    await().atMost(Duration.ofSeconds(30)).untilAsserted(() ->
        assertThat(item("late", ids.get(7)).get("history").toString()).contains("ended expired"));
    mock.batchExpiry(Duration.ofHours(24));
    mock.batchProcessing(Duration.ofMillis(200));
    awaitFinished("late", 8);
    assertThat(item("late", ids.get(0)).get("attempts").asInt()).isEqualTo(1); // ran in the first batch
    for (int i = 2; i < 8; i++) {
      JsonNode x = item("late", ids.get(i));
      assertThat(x.get("state").asText()).isEqualTo("completed");
      assertThat(x.get("attempts").asInt()).as(x.toString()).isGreaterThanOrEqualTo(2);
      assertThat(x.get("retriesUsed").asInt()).isZero();
    }
  }

  /** The coordinator's Prometheus text. */
  private String metrics() throws Exception {
    return call("GET", "/metrics", null).body();
  }

  /**
   * A provider that never finishes a batch (it stays in progress past its window): the batch is
   * reported and cancelled, its lines go in a later batch without spending a retry, and no item
   * is lost or answered twice.
   */
  @Test
  void aBatchTheProviderNeverFinishesIsCancelledAndItsItemsGoAgain() throws Exception {
    start();
    mock.batchProcessing(Duration.ofHours(1));
    mock.batchExpiry(Duration.ofSeconds(2)); // expires_at 2 s after create, which the stuck provider ignores
    mock.batchStuck(true);
    ok("POST", "/v1/buffers", buffer("stuck", ", \"maxBatchItems\": 6"));
    List<Long> ids = push("stuck", 0, 6, BatchBufferCases::chat);
    await().atMost(Duration.ofSeconds(30)).untilAsserted(() ->
        assertThat(item("stuck", ids.get(5)).get("history").toString()).contains("ended cancelled"));
    mock.batchStuck(false); // the next batch (it may be sent already) ends
    JsonNode first = null;
    for (JsonNode batch : providerBatches()) {
      if (batch.get("metadata").get("sluice_batch").asText().equals("stuck/1")) {
        first = batch;
      }
    }
    assertThat(first).isNotNull();
    assertThat(first.get("status").asText()).isEqualTo("cancelled");
    mock.batchExpiry(Duration.ofHours(24));
    mock.batchProcessing(Duration.ofMillis(200));
    awaitFinished("stuck", 6);
    for (long id : ids) {
      JsonNode x = item("stuck", id);
      assertThat(x.get("state").asText()).isEqualTo("completed");
      assertThat(x.get("attempts").asInt()).isGreaterThanOrEqualTo(2);
      assertThat(x.get("retriesUsed").asInt()).isZero();
      assertThat(x.get("history").toString()).containsOnlyOnce("HTTP 200");
    }
  }

  private JsonNode providerBatches() throws Exception {
    return JSON.readTree(http.send(HttpRequest.newBuilder(URI.create(mock.baseUrl() + "/batches?limit=100"))
        .header("Authorization", "Bearer sk-batch").build(), HttpResponse.BodyHandlers.ofString()).body())
        .get("data");
  }

  @Test
  void pausingHoldsNewBatchesAndDeletingCancelsTheOpenOnes() throws Exception {
    start();
    ok("POST", "/v1/buffers", buffer("held", ", \"maxBatchItems\": 4"));
    ok("POST", "/v1/buffers/held/pause", null);
    List<Long> ids = push("held", 0, 4, BatchBufferCases::chat); // a full batch: due at once, but paused
    Thread.sleep(1500); // past flushAfter: a paused buffer still sends nothing
    assertThat(providerBatches()).isEmpty();
    assertThat(item("held", ids.get(0)).get("state").asText()).isEqualTo("pending");

    mock.batchProcessing(Duration.ofHours(1));
    ok("POST", "/v1/buffers/held/resume", null);
    await().atMost(Duration.ofSeconds(20)).untilAsserted(() -> assertThat(providerBatches()).hasSize(1));
    JsonNode batch = providerBatches().get(0);
    assertThat(batch.get("metadata").get("sluice_batch").asText()).isEqualTo("held/1");
    assertThat(item("held", ids.get(0)).get("state").asText()).isEqualTo("running");
    await().atMost(Duration.ofSeconds(10)).untilAsserted(() ->
        assertThat(ok("GET", "/v1/buffers/held", null).get("stats").get("openBatches").asInt()).isEqualTo(1));
    JsonNode stats = ok("GET", "/v1/buffers/held", null).get("stats");
    assertThat(stats.get("itemsInBatches").asInt()).isEqualTo(4);
    assertThat(stats.get("batchesUploaded").asInt() + stats.get("batchesPreparing").asInt()).isZero();
    assertThat(ClientProcesses.cli("127.0.0.1:" + server.port(), null, "buffer", "stats", "held"))
        .contains("open batches at the provider: 1 (uploaded, create not yet confirmed: 0; being prepared: 0);"
            + " items in them: 4");
    assertThat(metrics()).contains("sluice_buffer_batches{buffer=\"held\",stage=\"created\"} 1.0",
        "sluice_buffer_batches{buffer=\"held\",stage=\"uploaded\"} 0.0",
        "sluice_buffer_batch_items{buffer=\"held\"} 4.0");

    ok("DELETE", "/v1/buffers/held", null);
    await().atMost(Duration.ofSeconds(20)).untilAsserted(() ->
        assertThat(providerBatches().get(0).get("status").asText()).isEqualTo("cancelled"));
  }

  @Test
  void aRestartResumesPollingItsOpenBatchAndEveryResultLandsOnce() throws Exception {
    start();
    mock.batchProcessing(Duration.ofSeconds(3));
    ok("POST", "/v1/buffers", buffer("durable", ", \"maxBatchItems\": 50"));
    List<Long> ids = push("durable", 0, 50, BatchBufferCases::chat);
    await().atMost(Duration.ofSeconds(20)).untilAsserted(() -> assertThat(providerBatches()).hasSize(1));
    server.close(); // the batch runs on at the provider while the coordinator is away
    server = coordinator();
    awaitFinished("durable", 50);
    assertThat(providerBatches()).hasSize(1); // polled again, not sent again
    for (long id : ids) {
      JsonNode x = item("durable", id);
      assertThat(x.get("state").asText()).isEqualTo("completed");
      assertThat(x.get("attempts").asInt()).isEqualTo(1);
      assertThat(x.get("history").toString()).containsOnlyOnce("HTTP 200");
    }
  }

  /**
   * A restart while a batch holds room in a held queue: the resumed batch acquires its room
   * again (the memory store lost the permit; on Redis the old one's lease runs out) and holds it
   * until the batch ends, when all of it comes back.
   */
  @Test
  void aBatchResumedAfterARestartHoldsItsRoomAgainUntilItEnds() throws Exception {
    long cap = 4_500;
    start(cap, new LimitSpec("openai-batch", List.of(), 0, 10_000, Duration.ofSeconds(1))
        .withHolds(java.util.Map.of("enqueued_tokens", cap)));
    mock.batchProcessing(Duration.ofHours(1)); // runs across the restart, until the room is seen held
    ok("POST", "/v1/buffers", buffer("durable", ", \"maxBatchItems\": 50"));
    push("durable", 0, 50, BatchBufferCases::chat);
    await().atMost(Duration.ofSeconds(20)).untilAsserted(() -> assertThat(providerBatches()).hasSize(1));
    server.close();
    server = coordinator();
    var engine = ServerTestHooks.engine(server);
    // Granted again: one grant on a fresh memory engine, the second one Redis counts.
    long grants = store == Store.REDIS ? 2 : 1;
    await().atMost(Duration.ofSeconds(20)).untilAsserted(() ->
        assertThat(engine.stats("openai-batch").join().granted()).isEqualTo(grants));
    assertThat(engine.stats("openai-batch").join().available().get("enqueued_tokens"))
        .as("the resumed batch holds its room").isLessThan((double) cap);
    mock.batchProcessing(Duration.ofMillis(200)); // now it may finish
    awaitFinished("durable", 50);
    await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> {
      var stats = engine.stats("openai-batch").join();
      assertThat(stats.available().get("enqueued_tokens")).as("all of it came back").isEqualTo((double) cap);
      assertThat(stats.inFlight()).isZero();
    });
    assertThat(providerBatches()).hasSize(1);
  }

  /**
   * The crash between "the provider created the batch" and "the store says so": the store shows
   * the batch uploaded only. After the restart the provider's batches are listed, the one tagged
   * {@code recover/1} is found and polled, and nothing is sent twice.
   */
  @Test
  void aBatchCreatedJustBeforeACrashIsFoundByItsTag() throws Exception {
    start();
    ok("POST", "/v1/buffers", buffer("recover", "").replace("\"1s\"", "\"1d\""));
    List<Long> ids = push("recover", 0, 3, BatchBufferCases::chat);
    server.close();
    // What the coordinator did before it died: the file uploaded and the batch created, tagged.
    String boundary = "b0undary";
    StringBuilder jsonl = new StringBuilder();
    for (int i = 0; i < 3; i++) {
      jsonl.append("{\"custom_id\":\"").append(ids.get(i)).append("\",\"method\":\"POST\",\"url\":")
          .append("\"/v1/chat/completions\",\"body\":").append(chat(i)).append("}\n");
    }
    String multipart = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--"
        + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n\r\n" + jsonl
        + "\r\n--" + boundary + "--\r\n";
    String fileId = JSON.readTree(http.send(HttpRequest.newBuilder(URI.create(mock.baseUrl() + "/files"))
        .header("Authorization", "Bearer sk-batch").header("Content-Type", "multipart/form-data; boundary=" + boundary)
        .POST(HttpRequest.BodyPublishers.ofString(multipart)).build(), HttpResponse.BodyHandlers.ofString()).body())
        .get("id").asText();
    http.send(HttpRequest.newBuilder(URI.create(mock.baseUrl() + "/batches")).header("Authorization", "Bearer sk")
        .POST(HttpRequest.BodyPublishers.ofString("{\"input_file_id\": \"" + fileId + "\", \"endpoint\":"
            + " \"/v1/chat/completions\", \"completion_window\": \"24h\", \"metadata\": {\"sluice_batch\":"
            + " \"recover/1\"}}")).build(), HttpResponse.BodyHandlers.ofString());
    storeBatchAsUploaded("recover", fileId);
    server = coordinator();
    awaitFinished("recover", 3);
    assertThat(providerBatches()).hasSize(1);
    for (long id : ids) {
      JsonNode x = item("recover", id);
      assertThat(x.get("state").asText()).isEqualTo("completed");
      assertThat(x.get("attempts").asInt()).isEqualTo(1);
    }
  }

  @Test
  void badSettingsAndBadItemsAreRefusedWithTheReason() throws Exception {
    start();
    assertThat(refused("POST", "/v1/buffers", buffer("x", "").replace("/v1/chat/completions", "/v1/audio/speech")))
        .contains("not served by OpenAI's Batch API").contains("/v1/chat/completions");
    assertThat(refused("POST", "/v1/buffers", buffer("x", ", \"completionWindow\": \"48h\"")))
        .contains("completionWindow 48h").contains("24h only");
    assertThat(refused("POST", "/v1/buffers", buffer("x", ", \"maxBatchItems\": 50001"))).contains("maxBatchItems");
    assertThat(refused("POST", "/v1/buffers", buffer("x", "").replace("\"delivery\": \"openai-batch\"", "\"delivery\": \"carrier-pigeon\"")))
        .contains("delivery 'carrier-pigeon' is unknown");
    assertThat(refused("POST", "/v1/buffers", "{\"name\": \"y\", \"url\": \"" + mock.baseUrl() + "\", \"resource\":"
        + " \"openai-batch\", \"flushAfter\": \"1s\"}")).contains("flushAfter applies to \"delivery\": \"openai-batch\"");

    ok("POST", "/v1/buffers", buffer("strict", ", \"maxBatchBytes\": 2048"));
    String items = "/v1/buffers/strict/items";
    assertThat(refused("POST", items, "{\"body\": \"plain text\"}")).contains("not a JSON object");
    assertThat(refused("POST", items, "{\"body\": {\"model\": \"gpt-4o-mini\"}}"))
        .contains("has no 'messages'");
    assertThat(refused("POST", items, "{\"body\": {\"model\": \"m\", \"messages\": [], \"stream\": false}}"))
        .contains("non-empty array");
    assertThat(refused("POST", items, "{\"body\": {\"model\": \"m\", \"stream\": true, \"messages\": [{\"role\":"
        + " \"user\", \"content\": \"x\"}]}}")).contains("stream");
    assertThat(refused("POST", items, "{\"body\": " + chat(1).replace("the", "x".repeat(3000)) + "}"))
        .contains("over the buffer's maxBatchBytes (2048)");
    assertThat(refused("POST", items, "{\"body\": " + chat(1) + ", \"headers\": {\"X-A\": \"b\"}}"))
        .contains("no headers of its own");
    // A refusal names the item, and nothing of that push is stored.
    assertThat(refused("POST", items, "{\"items\": [{\"body\": " + chat(1) + "}, {\"body\": 5}]}"))
        .startsWith("item 1:");
    assertThat(ok("GET", "/v1/buffers/strict", null).get("stats").get("pending").asLong()).isZero();
    JsonNode spec = ok("GET", "/v1/buffers/strict", null);
    assertThat(spec.toString()).contains("\"delivery\":\"openai-batch\"").contains("\"maxBatchItems\":50000")
        .contains("\"completionWindow\":\"PT24H\"");
  }

  /**
   * Overflow: a live buffer on a small quota (5 requests/s, under the mock's 10/s) with a 10 s
   * threshold, fed 5 000 items. The ones that would wait longer than 10 s move to the batch
   * buffer; the live endpoint answers no 429; every item completes on one route or the other,
   * a moved one under its new id in the batch buffer with its own response.
   */
  @Test
  void itemsThatWouldWaitTooLongMoveToTheBatchBufferAndAllComplete() throws Exception {
    start();
    ServerTestHooks.engine(server).setLimit(new LimitSpec("live", List.of(new RateSpec("requests", 5,
        Duration.ofSeconds(1), 1)), 0, 10_000, Duration.ofMinutes(1))).join();
    ok("POST", "/v1/buffers", buffer("nightly", ", \"maxBatchItems\": 2500"));
    ok("POST", "/v1/buffers", "{\"name\": \"orders\", \"url\": \"" + mock.baseUrl() + "/chat/completions\","
        + " \"resource\": \"live\", \"headers\": {\"Authorization\": \"Bearer sk-live\"}, \"overflowTo\":"
        + " \"nightly\", \"whenWaitExceeds\": \"4s\"}");
    List<Long> ids = new ArrayList<>();
    for (int from = 0; from < 2000; from += 1000) {
      ids.addAll(push("orders", from, from + 1000, BatchBufferCases::chat));
    }
    await().atMost(Duration.ofSeconds(120)).pollInterval(Duration.ofMillis(500)).untilAsserted(() -> {
      JsonNode live = ok("GET", "/v1/buffers/orders", null).get("stats");
      JsonNode batch = ok("GET", "/v1/buffers/nightly", null).get("stats");
      assertThat(live.get("completed").asLong() + live.get("moved").asLong()).as(live.toString()).isEqualTo(2000);
      assertThat(batch.get("completed").asLong()).as(batch.toString()).isEqualTo(live.get("moved").asLong());
    });
    JsonNode live = ok("GET", "/v1/buffers/orders", null).get("stats");
    long moved = live.get("moved").asLong();
    System.out.printf("overflow (%s): of 2000 items, %d delivered live, %d moved to the batch buffer; live 429s: %d%n",
        store, live.get("completed").asLong(), moved, mock.stats().rateLimited());
    assertThat(mock.stats().rateLimited()).as("429s at the live quota").isZero();
    assertThat(mock.stats().admitted()).isEqualTo(live.get("completed").asLong());
    // 4 s at 5/s: about 20 stay (plus what went while the pushes came in); the rest move.
    assertThat(moved).isBetween(1800L, 1990L);
    java.util.regex.Pattern newId = java.util.regex.Pattern.compile("moved to openai-batch buffer nightly as item (\\d+)");
    java.util.Set<Long> targets = new java.util.HashSet<>();
    for (int i = 0; i < 2000; i++) {
      JsonNode x = item("orders", ids.get(i));
      String state = x.get("state").asText();
      if (state.equals("completed")) {
        assertThat(x.get("lastStatus").asInt()).isEqualTo(200);
        continue;
      }
      assertThat(state).as(x.toString()).isEqualTo("moved");
      java.util.regex.Matcher m = newId.matcher(x.get("history").toString());
      assertThat(m.find()).as(x.toString()).isTrue();
      long target = Long.parseLong(m.group(1));
      assertThat(targets.add(target)).as("moved once").isTrue();
      JsonNode answer = JSON.readTree(item("nightly", target).get("responseExcerpt").asText());
      int prompt = TokenEstimator.promptTokens(List.of(new TokenEstimator.Message("user", words(i % 40 + 1))));
      assertThat(answer.get("usage").get("prompt_tokens").asInt()).as("item %d's own answer", i).isEqualTo(prompt);
    }
    assertThat(targets).hasSize((int) moved);
    assertThat(metrics()).contains("sluice_buffer_moved_total{buffer=\"orders\"} " + moved + ".0");
    assertThat(ClientProcesses.cli("127.0.0.1:" + server.port(), null, "buffer", "stats", "orders"))
        .contains("moved to nightly: " + moved);
  }

  @Test
  void badOverflowSettingsAreRefusedWithTheFix() throws Exception {
    start();
    ok("POST", "/v1/buffers", buffer("nightly", ""));
    ok("POST", "/v1/buffers", "{\"name\": \"plain\", \"url\": \"" + mock.baseUrl() + "/chat/completions\","
        + " \"rate\": {\"amount\": 1}}");
    String live = "{\"name\": \"orders\", \"url\": \"" + mock.baseUrl() + "/chat/completions\", \"rate\":"
        + " {\"amount\": 1}";
    assertThat(refused("POST", "/v1/buffers", live + ", \"overflowTo\": \"missing\", \"whenWaitExceeds\": \"5m\"}"))
        .contains("overflowTo 'missing': no such buffer").contains("--delivery openai-batch");
    assertThat(refused("POST", "/v1/buffers", live + ", \"overflowTo\": \"plain\", \"whenWaitExceeds\": \"5m\"}"))
        .contains("overflowTo 'plain' delivers over http").contains("name an openai-batch buffer");
    assertThat(refused("POST", "/v1/buffers", live + ", \"overflowTo\": \"orders\", \"whenWaitExceeds\": \"5m\"}"))
        .contains("is this buffer itself").contains("openai-batch");
    assertThat(refused("POST", "/v1/buffers", live + ", \"overflowTo\": \"nightly\"}"))
        .contains("overflowTo and whenWaitExceeds go together");
    assertThat(refused("POST", "/v1/buffers", live + ", \"overflowTo\": \"nightly\", \"whenWaitExceeds\": \"0s\"}"))
        .contains("whenWaitExceeds");
    assertThat(refused("POST", "/v1/buffers", buffer("x", ", \"overflowTo\": \"nightly\", \"whenWaitExceeds\": \"5m\"")))
        .contains("an openai-batch buffer does not overflow");
    ok("POST", "/v1/buffers", live + ", \"overflowTo\": \"nightly\", \"whenWaitExceeds\": \"5m\"}");
    // Its items may move, so each must be a request the batch buffer takes.
    assertThat(refused("POST", "/v1/buffers/orders/items", "{\"body\": \"plain text\"}"))
        .contains("overflows to openai-batch buffer 'nightly'").contains("not a JSON object");
    JsonNode spec = ok("GET", "/v1/buffers/orders", null);
    assertThat(spec.toString()).contains("\"overflowTo\":\"nightly\"").contains("\"whenWaitExceeds\":\"PT5M\"");
  }

  /**
   * Writes into the store what a coordinator killed right after its create would have left:
   * batch 1 of {@code buffer} uploaded (input file {@code fileId}) holding every item, each with
   * its attempt open.
   */
  private void storeBatchAsUploaded(String buffer, String fileId) throws Exception {
    if (store == Store.EMBEDDED) {
      try (java.sql.Connection c = java.sql.DriverManager.getConnection("jdbc:sqlite:"
              + dataDir.resolve("buffers.db"));
          java.sql.Statement st = c.createStatement()) {
        st.executeUpdate("INSERT INTO batches(buffer, seq, stage, input_file, created) VALUES ('" + buffer + "', 1,"
            + " 'uploaded', '" + fileId + "', 0)");
        st.executeUpdate("UPDATE items SET batch = 1, attempts = 1, open_attempt = 1 WHERE buffer = '" + buffer
            + "'");
      }
      return;
    }
    io.lettuce.core.RedisClient client = io.lettuce.core.RedisClient.create(redis.uri());
    try (var c = client.connect()) {
      String k = "sluice:buf:{" + buffer + "}:";
      c.sync().eval("""
          local ids = {}
          for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
            local m = cjson.decode(redis.call('HGET', KEYS[1], id))
            m.b = 1
            m.a = 1
            m.o = 1
            redis.call('HSET', KEYS[1], id, cjson.encode(m))
            ids[#ids + 1] = id
          end
          redis.call('HSET', KEYS[2], '1', cjson.encode({s = 'uploaded', f = ARGV[1], i = table.concat(ids, ','),
            c = 0}))
          redis.call('SET', KEYS[3], '1')
          return 1
          """, io.lettuce.core.ScriptOutputType.INTEGER, new String[] {k + "items", k + "batches", k + "bseq"},
          fileId);
    } finally {
      client.shutdown();
    }
  }
}
