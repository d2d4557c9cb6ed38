package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.examples.mock.MockOpenAi;
import dev.sluice.examples.mock.MockOpenAi.BatchStage;
import dev.sluice.server.BufferNode;
import dev.sluice.server.redis.RedisProcess;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * kill -9 of a coordinator (a JVM of its own) while a batch buffer's batch travels, at each step
 * where a crash can fall between the provider and the store: the input file uploaded but not yet
 * recorded, the batch created but not yet recorded (found again by its metadata tag), and its
 * results read but not yet recorded. The mock holds its answer at that step; the coordinator is
 * killed meanwhile, restarted on the same store, and every item ends completed with its own
 * response, recorded once, through one batch at the provider (the upload case uploads again).
 * Both stores: the embedded one and a shared Redis.
 */
class BatchBufferCrashIT {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final int ITEMS = 120;
  private static RedisProcess redis;
  private final HttpClient http = HttpClient.newHttpClient();

  @TempDir Path dataDir;

  @AfterAll
  static void stopRedis() {
    if (redis != null) {
      redis.close();
      redis = null;
    }
  }

  private String[] store(String kind) throws Exception {
    if (kind.equals("embedded")) {
      return new String[0];
    }
    if (redis == null) {
      redis = RedisProcess.start();
    }
    redis.flushAll();
    return new String[] {redis.uri(), "node-1"};
  }

  private static JsonNode call(int port, String method, String path, String body) throws Exception {
    return BufferNode.call(port, method, path, body);
  }

  private static String chat(int i) {
    return "{\"model\": \"gpt-4o-mini\", \"max_tokens\": 3, \"messages\": [{\"role\": \"user\", \"content\": \""
        + "the ".repeat(i % 30 + 1).strip() + "\"}]}";
  }

  private JsonNode providerBatches(MockOpenAi mock) throws Exception {
    return JSON.readTree(http.send(HttpRequest.newBuilder(URI.create(mock.baseUrl() + "/batches?limit=100"))
        .header("Authorization", "Bearer sk-batch").build(), HttpResponse.BodyHandlers.ofString()).body())
        .get("data");
  }

  @ParameterizedTest(name = "{0}, killed after {1}")
  @CsvSource({"embedded, UPLOAD", "embedded, CREATE", "embedded, DOWNLOAD", "redis, UPLOAD", "redis, CREATE",
      "redis, DOWNLOAD"})
  void killedAtAStepOfABatchEveryResultLandsExactlyOnce(String kind, BatchStage stage) throws Exception {
    String[] store = store(kind);
    int[] port = new int[1];
    try (MockOpenAi mock = MockOpenAi.builder().latency(Duration.ZERO, Duration.ZERO)
        .batchProcessing(Duration.ofMillis(300)).build().start()) {
      MockOpenAi.BatchHold hold = mock.batchHold(stage);
      Process node = BufferNode.start(dataDir, port, store);
      List<Long> ids = new ArrayList<>();
      try {
        call(port[0], "POST", "/v1/buffers", "{\"name\": \"crash\", \"url\": \"" + mock.baseUrl() + "\","
            + " \"rate\": {\"amount\": 10, \"period\": \"1s\"}, \"delivery\": \"openai-batch\", \"endpoint\":"
            + " \"/v1/chat/completions\", \"maxBatchItems\": " + ITEMS + ", \"flushAfter\": \"1s\","
            + " \"backoffBase\": \"100ms\", \"headers\": {\"Authorization\": \"Bearer sk-batch\"}}");
        StringBuilder items = new StringBuilder("{\"items\": [");
        for (int i = 0; i < ITEMS; i++) {
          items.append(i == 0 ? "" : ",").append("{\"body\": ").append(chat(i)).append("}");
        }
        call(port[0], "POST", "/v1/buffers/crash/items", items.append("]}").toString()).get("ids")
            .forEach(id -> ids.add(id.asLong()));
        assertThat(hold.awaitReached(Duration.ofSeconds(60))).as("the batch reached " + stage).isTrue();
      } finally {
        node.destroyForcibly(); // SIGKILL, while the mock holds its answer
        node.waitFor(30, TimeUnit.SECONDS);
        hold.release();
      }
      System.out.printf("batch crash (%s): killed after %s with %d batch(es) at the provider%n", kind, stage,
          providerBatches(mock).size());

      node = BufferNode.start(dataDir, port, store);
      try {
        await().atMost(Duration.ofSeconds(90)).pollInterval(Duration.ofMillis(250)).untilAsserted(() -> {
          JsonNode stats = call(port[0], "GET", "/v1/buffers/crash", null).get("stats");
          assertThat(stats.get("completed").asInt()).as(stats.toString()).isEqualTo(ITEMS);
        });
        for (int i = 0; i < ITEMS; i++) {
          JsonNode x = call(port[0], "GET", "/v1/buffers/crash/items/" + ids.get(i), null);
          assertThat(x.get("state").asText()).isEqualTo("completed");
          String history = x.get("history").toString();
          assertThat(history).as("item %d recorded once: %s", i, history).containsOnlyOnce("HTTP 200");
          JsonNode answer = JSON.readTree(x.get("responseExcerpt").asText());
          int prompt = TokenEstimator.promptTokens(List.of(new TokenEstimator.Message("user",
              "the ".repeat(i % 30 + 1).strip())));
          assertThat(answer.get("usage").get("prompt_tokens").asInt()).as("item %d's own answer", i)
              .isEqualTo(prompt);
          // Sent in one batch; after a crash before the upload was recorded, in the next one.
          assertThat(x.get("attempts").asInt()).isEqualTo(stage == BatchStage.UPLOAD ? 2 : 1);
        }
        JsonNode batches = providerBatches(mock);
        assertThat(batches).as("one batch ran at the provider: none created twice").hasSize(1);
        assertThat(batches.get(0).get("metadata").get("sluice_batch").asText())
            .isEqualTo(stage == BatchStage.UPLOAD ? "crash/2" : "crash/1");
        assertThat(mock.stats().admitted()).isZero(); // nothing went to the live endpoint
        System.out.printf("batch crash (%s, %s): after the restart all %d completed, each recorded once%n", kind,
            stage, ITEMS);
      } finally {
        node.destroyForcibly();
        node.waitFor(30, TimeUnit.SECONDS);
      }
    }
  }
}
