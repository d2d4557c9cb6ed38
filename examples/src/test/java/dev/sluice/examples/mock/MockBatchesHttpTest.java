package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The Files and Batch APIs on a real port, with a fake clock for the processing time. */
class MockBatchesHttpTest {

  private final ObjectMapper json = new ObjectMapper();
  private final AtomicLong now = new AtomicLong(7_000_000_000_000L);
  private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
  private MockOpenAi mock;

  private void start(UnaryOperator<MockOpenAi.Builder> config) throws Exception {
    mock = config.apply(MockOpenAi.builder().latency(Duration.ZERO, Duration.ZERO).ticker(now::get)
        .batchProcessing(Duration.ofMinutes(10))).build().start();
  }

  @AfterEach
  void close() {
    if (mock != null) {
      mock.close();
    }
  }

  private static String line(String id, String content) {
    return "{\"custom_id\":\"" + id + "\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":"
        + "{\"model\":\"gpt-4o-mini\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"" + content
        + "\"}]}}";
  }

  private HttpResponse<String> send(String method, String path, String contentType, byte[] body,
      boolean auth) throws Exception {
    HttpRequest.Builder r = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + mock.port() + path))
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody()
            : HttpRequest.BodyPublishers.ofByteArray(body));
    if (contentType != null) {
      r.header("Content-Type", contentType);
    }
    if (auth) {
      r.header("Authorization", "Bearer k");
    }
    return http.send(r.build(), HttpResponse.BodyHandlers.ofString());
  }

  private JsonNode ok(HttpResponse<String> r) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return json.readTree(r.body());
  }

  private HttpResponse<String> upload(String purpose, String filename, String content) throws Exception {
    String boundary = "sluiceboundary42";
    StringBuilder b = new StringBuilder();
    if (purpose != null) {
      b.append("--").append(boundary).append("\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n")
          .append(purpose).append("\r\n");
    }
    if (content != null) {
      b.append("--").append(boundary).append("\r\nContent-Disposition: form-data; name=\"file\"; filename=\"")
          .append(filename).append("\"\r\nContent-Type: application/jsonl\r\n\r\n").append(content).append("\r\n");
    }
    b.append("--").append(boundary).append("--\r\n");
    return send("POST", "/v1/files", "multipart/form-data; boundary=" + boundary,
        b.toString().getBytes(StandardCharsets.UTF_8), true);
  }

  private String uploadLines(List<String> lines) throws Exception {
    return ok(upload("batch", "in.jsonl", String.join("\n", lines) + "\n")).get("id").asText();
  }

  private JsonNode createBatch(String fileId, String endpoint) throws Exception {
    return ok(createRaw(fileId, endpoint));
  }

  private HttpResponse<String> createRaw(String fileId, String endpoint) throws Exception {
    String body = "{\"input_file_id\":\"" + fileId + "\",\"endpoint\":\"" + endpoint
        + "\",\"completion_window\":\"24h\",\"metadata\":{\"sluice_buffer\":\"nightly\"}}";
    return send("POST", "/v1/batches", "application/json", body.getBytes(StandardCharsets.UTF_8), true);
  }

  private JsonNode get(String path) throws Exception {
    return ok(send("GET", path, null, null, true));
  }

  private List<JsonNode> content(String fileId) throws Exception {
    List<JsonNode> out = new ArrayList<>();
    for (String l : ok0(send("GET", "/v1/files/" + fileId + "/content", null, null, true)).split("\n")) {
      if (!l.isBlank()) {
        out.add(json.readTree(l));
      }
    }
    return out;
  }

  private static String ok0(HttpResponse<String> r) {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return r.body();
  }

  @Test
  void aBatchRunsForItsProcessingTimeThenAnswersEveryLineByCustomId() throws Exception {
    start(b -> b);
    JsonNode file = ok(upload("batch", "in.jsonl", line("a", "hello") + "\n" + line("b", "world") + "\n"));
    assertThat(file.get("purpose").asText()).isEqualTo("batch");
    assertThat(file.get("id").asText()).startsWith("file-");
    JsonNode created = createBatch(file.get("id").asText(), "/v1/chat/completions");
    assertThat(created.get("status").asText()).isEqualTo("validating");
    assertThat(created.get("metadata").get("sluice_buffer").asText()).isEqualTo("nightly");
    String id = created.get("id").asText();

    now.addAndGet(Duration.ofMinutes(9).toNanos());
    JsonNode running = get("/v1/batches/" + id);
    assertThat(running.get("status").asText()).isEqualTo("in_progress");
    assertThat(running.get("output_file_id").isNull()).isTrue();

    now.addAndGet(Duration.ofMinutes(1).toNanos());
    JsonNode done = get("/v1/batches/" + id);
    assertThat(done.get("status").asText()).isEqualTo("completed");
    assertThat(done.get("request_counts").get("completed").asInt()).isEqualTo(2);
    assertThat(done.get("error_file_id").isNull()).isTrue();
    List<JsonNode> out = content(done.get("output_file_id").asText());
    assertThat(out).extracting(l -> l.get("custom_id").asText()).containsExactly("a", "b");
    assertThat(out.get(0).get("response").get("status_code").asInt()).isEqualTo(200);
    assertThat(out.get(0).get("response").get("body").get("object").asText()).isEqualTo("chat.completion");
    // The input file is there to read back too.
    assertThat(ok0(send("GET", "/v1/files/" + file.get("id").asText() + "/content", null, null, true)))
        .contains("\"custom_id\":\"a\"");
  }

  @Test
  void aBodyTheEndpointRefusesAndEveryKthLineEndInTheErrorFile() throws Exception {
    start(b -> b);
    mock.batchLineErrorEvery(3);
    String bad = "{\"custom_id\":\"bad\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":"
        + "{\"model\":\"gpt-4o-mini\"}}";
    String fileId = uploadLines(List.of(line("1", "x"), bad, line("3", "y"), line("4", "z")));
    String id = createBatch(fileId, "/v1/chat/completions").get("id").asText();
    now.addAndGet(Duration.ofMinutes(10).toNanos());
    JsonNode done = get("/v1/batches/" + id);
    assertThat(done.get("status").asText()).isEqualTo("completed");
    assertThat(done.get("request_counts").get("failed").asInt()).isEqualTo(2);
    List<JsonNode> errors = content(done.get("error_file_id").asText());
    assertThat(errors).extracting(l -> l.get("custom_id").asText()).containsExactly("bad", "3");
    assertThat(errors.get(0).get("response").get("status_code").asInt()).isEqualTo(400);
    assertThat(errors.get(0).get("response").get("body").get("error").get("message").asText())
        .contains("messages");
    assertThat(errors.get(1).get("response").get("status_code").asInt()).isEqualTo(500);
    assertThat(content(done.get("output_file_id").asText())).extracting(l -> l.get("custom_id").asText())
        .containsExactly("1", "4");
  }

  @Test
  void aBatchSlowerThanItsWindowExpiresWithTheUnfinishedLinesInTheErrorFile() throws Exception {
    start(b -> b);
    mock.batchProcessing(Duration.ofHours(4));
    mock.batchExpiry(Duration.ofHours(1));
    String id = createBatch(uploadLines(List.of(line("1", "a"), line("2", "b"), line("3", "c"), line("4", "d"))),
        "/v1/chat/completions").get("id").asText();
    now.addAndGet(Duration.ofHours(1).toNanos());
    JsonNode expired = get("/v1/batches/" + id);
    assertThat(expired.get("status").asText()).isEqualTo("expired");
    assertThat(content(expired.get("output_file_id").asText())).extracting(l -> l.get("custom_id").asText())
        .containsExactly("1");
    List<JsonNode> errors = content(expired.get("error_file_id").asText());
    assertThat(errors).extracting(l -> l.get("custom_id").asText()).containsExactly("2", "3", "4");
    assertThat(errors.get(0).get("error").get("code").asText()).isEqualTo("batch_expired");
  }

  @Test
  void aBatchOverTheEnqueuedTokenLimitFailsLikeOpenAisUntilRoomIsFreed() throws Exception {
    long perLine = dev.sluice.examples.TokenEstimator.promptTokens(
        List.of(new dev.sluice.examples.TokenEstimator.Message("user", "a")));
    long limit = 3 * perLine; // room for three one-letter lines
    start(b -> b.batchQueueTokens(limit));
    String first = createBatch(uploadLines(List.of(line("1", "a"), line("2", "b"))), "/v1/chat/completions")
        .get("id").asText();
    long queued = mock.batchEnqueuedTokens("gpt-4o-mini");
    assertThat(queued).isEqualTo(2 * perLine);
    String second = createBatch(uploadLines(List.of(line("3", "c"), line("4", "d"))), "/v1/chat/completions")
        .get("id").asText();
    JsonNode refused = get("/v1/batches/" + second);
    assertThat(refused.get("status").asText()).isEqualTo("failed");
    JsonNode error = refused.get("errors").get("data").get(0);
    assertThat(error.get("code").asText()).isEqualTo("token_limit_exceeded");
    assertThat(error.get("message").asText()).startsWith("Enqueued token limit reached for gpt-4o-mini")
        .contains("Limit: " + limit + " enqueued tokens");
    assertThat(mock.batchEnqueuedTokens("gpt-4o-mini")).isEqualTo(queued); // a failed batch holds nothing

    now.addAndGet(Duration.ofMinutes(10).toNanos());
    assertThat(get("/v1/batches/" + first).get("status").asText()).isEqualTo("completed");
    String third = createBatch(uploadLines(List.of(line("5", "e"))), "/v1/chat/completions").get("id").asText();
    assertThat(get("/v1/batches/" + third).get("status").asText()).isEqualTo("in_progress");
  }

  @Test
  void cancelAnswersWhatRanAndListsNewestFirstWithMetadata() throws Exception {
    start(b -> b);
    String a = createBatch(uploadLines(List.of(line("1", "a"), line("2", "b"))), "/v1/chat/completions")
        .get("id").asText();
    String b = createBatch(uploadLines(List.of(line("3", "c"))), "/v1/chat/completions").get("id").asText();
    now.addAndGet(Duration.ofMinutes(5).toNanos());
    JsonNode cancelling = ok(send("POST", "/v1/batches/" + a + "/cancel", null, null, true));
    assertThat(cancelling.get("status").asText()).isEqualTo("cancelling");
    JsonNode cancelled = get("/v1/batches/" + a);
    assertThat(cancelled.get("status").asText()).isEqualTo("cancelled");
    assertThat(content(cancelled.get("output_file_id").asText())).hasSize(1);
    assertThat(content(cancelled.get("error_file_id").asText()).get(0).get("error").get("code").asText())
        .isEqualTo("batch_cancelled");
    assertThat(send("POST", "/v1/batches/" + a + "/cancel", null, null, true).statusCode()).isEqualTo(409);

    JsonNode page = get("/v1/batches?limit=1");
    assertThat(page.get("data").get(0).get("id").asText()).isEqualTo(b);
    assertThat(page.get("has_more").asBoolean()).isTrue();
    JsonNode next = get("/v1/batches?limit=1&after=" + b);
    assertThat(next.get("data").get(0).get("id").asText()).isEqualTo(a);
    assertThat(next.get("data").get(0).get("metadata").get("sluice_buffer").asText()).isEqualTo("nightly");
    assertThat(next.get("has_more").asBoolean()).isFalse();
  }

  @Test
  void badUploadsAndBatchesAreRefusedWithOpenAisErrors() throws Exception {
    start(b -> b);
    assertThat(upload(null, "in.jsonl", line("1", "a")).body()).contains("Missing required parameter: 'purpose'");
    assertThat(upload("batch", "in.jsonl", null).body()).contains("Missing required parameter: 'file'");
    assertThat(upload("batch", "in.csv", line("1", "a")).body()).contains("Must be .jsonl");
    assertThat(send("POST", "/v1/files", "application/json", "{}".getBytes(StandardCharsets.UTF_8), true).body())
        .contains("multipart/form-data");
    assertThat(send("GET", "/v1/batches", null, null, false).statusCode()).isEqualTo(401);

    String fileId = uploadLines(List.of(line("1", "a")));
    HttpResponse<String> endpoint = createRaw(fileId, "/v1/audio/speech");
    assertThat(endpoint.statusCode()).isEqualTo(400);
    assertThat(json.readTree(endpoint.body()).get("error").get("param").asText()).isEqualTo("endpoint");
    assertThat(createRaw("file-nope", "/v1/chat/completions").statusCode()).isEqualTo(404);
    assertThat(send("GET", "/v1/batches/batch_nope", null, null, true).statusCode()).isEqualTo(404);

    // A file whose lines are wrong fails at validation, one error per line.
    String wrong = uploadLines(List.of(line("1", "a"), line("1", "b"),
        line("3", "c").replace("/v1/chat/completions", "/v1/embeddings"), "not json"));
    JsonNode failed = get("/v1/batches/" + createBatch(wrong, "/v1/chat/completions").get("id").asText());
    assertThat(failed.get("status").asText()).isEqualTo("failed");
    assertThat(failed.get("errors").get("data")).extracting(e -> e.get("code").asText() + "@" + e.get("line"))
        .containsExactly("duplicate_custom_id@2", "mismatched_endpoint@3", "invalid_json_line@4");
  }
}
