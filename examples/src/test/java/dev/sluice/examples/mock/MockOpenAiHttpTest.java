package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.examples.TokenEstimator;
import dev.sluice.examples.mock.MockOpenAi.Stats;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The HTTP surface, on a real port with a fake clock and no latency. */
class MockOpenAiHttpTest {

  private static final String HELLO =
      "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]";
  private static final int HELLO_PROMPT =
      TokenEstimator.promptTokens(List.of(new TokenEstimator.Message("user", "hello")));
  private static final String LIMITS_URL =
      "Visit https://platform.openai.com/account/rate-limits to learn more.";

  private final ObjectMapper json = new ObjectMapper();
  private final AtomicLong now = new AtomicLong(5_000_000_000_000L);
  private final HttpClient http =
      HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
  private MockOpenAi mock;

  private MockOpenAi start(UnaryOperator<MockOpenAi.Builder> config) throws IOException {
    mock =
        config
            .apply(MockOpenAi.builder().latency(Duration.ZERO, Duration.ZERO).ticker(now::get))
            .build()
            .start();
    return mock;
  }

  @AfterEach
  void close() {
    if (mock != null) {
      mock.close();
    }
  }

  private HttpResponse<String> send(String method, String path, String body, String... headers)
      throws Exception {
    String base = "http://127.0.0.1:" + mock.port();
    HttpRequest.Builder request =
        HttpRequest.newBuilder(URI.create(base + path))
            .method(
                method,
                body == null
                    ? HttpRequest.BodyPublishers.noBody()
                    : HttpRequest.BodyPublishers.ofString(body));
    if (headers.length > 0) {
      request.headers(headers);
    }
    return http.send(request.build(), HttpResponse.BodyHandlers.ofString());
  }

  private HttpResponse<String> chat(String key, String body, String... headers) throws Exception {
    List<String> all = new ArrayList<>(List.of("Content-Type", "application/json"));
    if (key != null) {
      all.addAll(List.of("Authorization", "Bearer " + key));
    }
    all.addAll(List.of(headers));
    return send("POST", "/v1/chat/completions", body, all.toArray(String[]::new));
  }

  private JsonNode error(HttpResponse<String> response) throws IOException {
    JsonNode root = json.readTree(response.body());
    assertThat(fieldNames(root)).containsExactly("error");
    JsonNode error = root.get("error");
    assertThat(fieldNames(error)).containsExactly("message", "type", "param", "code");
    return error;
  }

  private static List<String> fieldNames(JsonNode node) {
    List<String> names = new ArrayList<>();
    node.fieldNames().forEachRemaining(names::add);
    return names;
  }

  private static String header(HttpResponse<?> response, String name) {
    return response.headers().firstValue(name).orElse(null);
  }

  @Test
  void completionHasOpenAiShapeUsageAndHeaders() throws Exception {
    start(b -> b.rpm(600).tpm(60_000)); // 10 requests and 1,000 tokens a bucket; 1 token/ms
    HttpResponse<String> response = chat("k", HELLO + ",\"max_tokens\":100,\"n\":2}");
    assertThat(response.statusCode()).isEqualTo(200);
    long charge = HELLO_PROMPT + 2 * 100;
    assertThat(header(response, "content-type")).startsWith("application/json");
    assertThat(header(response, "x-ratelimit-limit-requests")).isEqualTo("600");
    assertThat(header(response, "x-ratelimit-limit-tokens")).isEqualTo("60000");
    assertThat(header(response, "x-ratelimit-remaining-requests")).isEqualTo("540");
    assertThat(header(response, "x-ratelimit-remaining-tokens"))
        .isEqualTo(Long.toString(60_000 - 60 * charge));
    assertThat(header(response, "x-ratelimit-reset-requests")).isEqualTo("100ms");
    assertThat(header(response, "x-ratelimit-reset-tokens")).isEqualTo(charge + "ms");
    assertThat(header(response, "x-request-id")).startsWith("req_");
    assertThat(header(response, "openai-processing-ms")).isEqualTo("0");

    JsonNode body = json.readTree(response.body());
    assertThat(body.get("id").asText()).startsWith("chatcmpl-");
    assertThat(body.get("object").asText()).isEqualTo("chat.completion");
    assertThat(body.get("model").asText()).isEqualTo("gpt-4o-mini");
    assertThat(body.get("created").isIntegralNumber()).isTrue();
    assertThat(body.get("choices")).hasSize(2);
    int completion = 0;
    for (int i = 0; i < 2; i++) {
      JsonNode choice = body.get("choices").get(i);
      assertThat(choice.get("index").asInt()).isEqualTo(i);
      assertThat(choice.at("/message/role").asText()).isEqualTo("assistant");
      String content = choice.at("/message/content").asText();
      int tokens = TokenEstimator.tokens(content);
      assertThat(tokens).isBetween(1, 100);
      assertThat(choice.get("finish_reason").asText()).isEqualTo(tokens == 100 ? "length" : "stop");
      completion += tokens;
    }
    JsonNode usage = body.get("usage");
    assertThat(usage.get("prompt_tokens").asInt()).isEqualTo(HELLO_PROMPT);
    assertThat(usage.get("completion_tokens").asInt()).isEqualTo(completion);
    assertThat(usage.get("total_tokens").asInt()).isEqualTo(HELLO_PROMPT + completion);

    Stats stats = mock.stats();
    assertThat(stats.admitted()).isEqualTo(1);
    assertThat(stats.estimatedTokens()).isEqualTo(charge);
    assertThat(stats.actualTokens()).isEqualTo(HELLO_PROMPT + completion);
    assertThat(stats.inFlight()).isZero();
  }

  @Test
  void defaultsAndTextPartsCountLikeStrings() throws Exception {
    start(b -> b.rpm(600).tpm(1_000_000));
    String parts =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
            + "[{\"type\":\"text\",\"text\":\"hel\"},{\"type\":\"text\",\"text\":\"lo\"}]}]}";
    HttpResponse<String> response = chat("k", parts);
    assertThat(response.statusCode()).isEqualTo(200);
    assertThat(json.readTree(response.body()).at("/usage/prompt_tokens").asInt())
        .isEqualTo(HELLO_PROMPT);
    assertThat(mock.stats().estimatedTokens()).isEqualTo(HELLO_PROMPT + 256); // default budget
  }

  @Test
  void overRpmIsA429WithOpenAisExactError() throws Exception {
    start(b -> b.rpm(60).tpm(1_000_000)); // one request, one a second
    assertThat(chat("k", HELLO + "}").statusCode()).isEqualTo(200);
    HttpResponse<String> response = chat("k", HELLO + "}");
    assertThat(response.statusCode()).isEqualTo(429);
    JsonNode error = error(response);
    assertThat(error.get("message").asText())
        .isEqualTo(
            "Rate limit reached for gpt-4o-mini in organization org-mock on requests per min"
                + " (RPM): Limit 60, Used 60, Requested 1. Please try again in 2s. "
                + LIMITS_URL);
    assertThat(error.get("type").asText()).isEqualTo("requests");
    assertThat(error.get("param").isNull()).isTrue();
    assertThat(error.get("code").asText()).isEqualTo("rate_limit_exceeded");
    // The rejection itself took a request: from 0 to -1, so 2 s at one a second.
    assertThat(header(response, "retry-after")).isEqualTo("2");
    assertThat(header(response, "retry-after-ms")).isEqualTo("2000");
    assertThat(header(response, "x-ratelimit-limit-requests")).isEqualTo("60");
    assertThat(header(response, "x-ratelimit-remaining-requests")).isEqualTo("0");
    assertThat(header(response, "x-ratelimit-reset-requests")).isEqualTo("2s");
    assertThat(header(response, "x-ratelimit-remaining-tokens")).isNotNull();
    assertThat(header(response, "x-ratelimit-reset-tokens")).isNotNull();
    assertThat(mock.stats().rejected()).containsEntry("requests", 1L);

    now.addAndGet(1_999_000_000L);
    assertThat(chat("k", HELLO + "}").statusCode()).isEqualTo(429);
    now.addAndGet(3_000_000_000L);
    assertThat(chat("k", HELLO + "}").statusCode()).isEqualTo(200);
  }

  @Test
  void overTpmIsA429OfTypeTokens() throws Exception {
    start(b -> b.rpm(6_000).tpm(6_000)); // 100 tokens, 100 a second
    long charge = HELLO_PROMPT + 60;
    String body = HELLO + ",\"max_completion_tokens\":60}";
    assertThat(chat("k", body).statusCode()).isEqualTo(200);
    HttpResponse<String> response = chat("k", body);
    assertThat(response.statusCode()).isEqualTo(429);
    JsonNode error = error(response);
    long waitMs = (charge - (100 - charge)) * 10;
    assertThat(error.get("message").asText())
        .isEqualTo(
            "Rate limit reached for gpt-4o-mini in organization org-mock on tokens per min (TPM):"
                + " Limit 6000, Used "
                + 60 * charge
                + ", Requested "
                + charge
                + ". Please try again in "
                + waitMs
                + "ms. "
                + LIMITS_URL);
    assertThat(error.get("type").asText()).isEqualTo("tokens");
    assertThat(error.get("code").asText()).isEqualTo("rate_limit_exceeded");
    assertThat(header(response, "retry-after-ms")).isEqualTo(Long.toString(waitMs));
    assertThat(header(response, "retry-after")).isEqualTo("1");
    assertThat(header(response, "x-ratelimit-remaining-tokens"))
        .isEqualTo(Long.toString(6_000 - 60 * charge));
    assertThat(mock.stats().rejected()).containsEntry("tokens", 1L);
  }

  @Test
  void chargeAboveTheLimitIsRequestTooLarge() throws Exception {
    start(b -> b.rpm(600).tpm(6_000));
    HttpResponse<String> response = chat("k", HELLO + ",\"max_tokens\":7000}");
    assertThat(response.statusCode()).isEqualTo(429);
    JsonNode error = error(response);
    assertThat(error.get("message").asText())
        .isEqualTo(
            "Request too large for gpt-4o-mini in organization org-mock on tokens per min (TPM):"
                + " Limit 6000, Requested "
                + (HELLO_PROMPT + 7_000)
                + ". The input or output"
                + " tokens must be reduced in order to run successfully. "
                + LIMITS_URL);
    assertThat(error.get("type").asText()).isEqualTo("tokens");
    assertThat(error.get("code").asText()).isEqualTo("rate_limit_exceeded");
    assertThat(header(response, "retry-after")).isNull(); // waiting cannot help
    assertThat(header(response, "x-ratelimit-remaining-requests")).isEqualTo("540");
    assertThat(mock.stats().rejected()).containsEntry("too_large", 1L);
  }

  @Test
  void insufficientQuotaIsOpenAisBody() throws Exception {
    start(b -> b.insufficientQuota(true));
    HttpResponse<String> response = chat("k", HELLO + "}");
    assertThat(response.statusCode()).isEqualTo(429);
    assertThat(json.readTree(response.body()))
        .isEqualTo(
            json.readTree(
                "{\"error\":{\"message\":\"You exceeded your current quota, please check your"
                    + " plan and billing details. For more information on this error, read the"
                    + " docs: https://platform.openai.com/docs/guides/error-codes/api-errors.\","
                    + "\"type\":\"insufficient_quota\",\"param\":null,"
                    + "\"code\":\"insufficient_quota\"}}"));
    assertThat(mock.stats().rejected()).containsEntry("insufficient_quota", 1L);
  }

  @Test
  void noKeyIs401() throws Exception {
    start(b -> b);
    HttpResponse<String> none = chat(null, HELLO + "}");
    assertThat(none.statusCode()).isEqualTo(401);
    JsonNode error = error(none);
    assertThat(error.get("type").asText()).isEqualTo("invalid_request_error");
    assertThat(error.get("code").asText()).isEqualTo("invalid_api_key");
    assertThat(chat(" ", HELLO + "}").statusCode()).isEqualTo(401);
    assertThat(send("GET", "/v1/models", null).statusCode()).isEqualTo(401);
    assertThat(mock.stats().rejected()).containsEntry("unauthorized", 3L);
    assertThat(mock.stats().admitted()).isZero();
  }

  @Test
  void badRequestsAre400() throws Exception {
    start(b -> b);
    HttpResponse<String> notJson = chat("k", "{not json");
    assertThat(notJson.statusCode()).isEqualTo(400);
    JsonNode error = error(notJson);
    assertThat(error.get("type").asText()).isEqualTo("invalid_request_error");
    assertThat(error.get("message").asText()).startsWith("We could not parse the JSON body");

    HttpResponse<String> noMessages = chat("k", "{\"model\":\"gpt-4o-mini\"}");
    assertThat(noMessages.statusCode()).isEqualTo(400);
    assertThat(error(noMessages).get("param").asText()).isEqualTo("messages");
    assertThat(chat("k", HELLO + ",\"max_tokens\":0}").statusCode()).isEqualTo(400);
    assertThat(chat("k", HELLO + ",\"n\":\"2\"}").statusCode()).isEqualTo(400);
    assertThat(chat("k", HELLO + ",\"stream_options\":{\"include_usage\":true}}").statusCode())
        .isEqualTo(400);
    assertThat(
            chat("k", "{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}")
                .statusCode())
        .isEqualTo(400);
    assertThat(mock.stats().rejected()).containsEntry("bad_request", 6L);
    assertThat(mock.stats().admitted()).isZero();
  }

  @Test
  void callsAreCountedPerEndUserBySafetyIdentifierElseUser() throws Exception {
    start(b -> b.rpm(120).tpm(1_000_000)); // a bucket of 2 requests
    assertThat(chat("k", HELLO + ",\"max_tokens\":10,\"safety_identifier\":\"a\"}").statusCode()).isEqualTo(200);
    // The newer field wins over the older one.
    assertThat(chat("k", HELLO + ",\"max_tokens\":20,\"safety_identifier\":\"a\",\"user\":\"b\"}").statusCode())
        .isEqualTo(200);
    assertThat(chat("k", HELLO + ",\"max_tokens\":30,\"user\":\"b\"}").statusCode()).isEqualTo(429);
    now.addAndGet(1_000_000_000L);
    assertThat(chat("k", HELLO + ",\"max_tokens\":30,\"user\":\"b\"}").statusCode()).isEqualTo(200);
    now.addAndGet(1_000_000_000L);
    assertThat(chat("k", HELLO + ",\"max_tokens\":40}").statusCode()).isEqualTo(200); // names nobody

    Stats stats = mock.stats();
    assertThat(stats.byUser()).containsOnlyKeys("a", "b");
    assertThat(stats.user("a")).isEqualTo(new Stats.User(2, 2 * HELLO_PROMPT + 30, 0));
    assertThat(stats.user("b")).isEqualTo(new Stats.User(1, HELLO_PROMPT + 30, 1));
    assertThat(stats.user("c")).isEqualTo(new Stats.User(0, 0, 0));
    assertThat(stats.admitted()).isEqualTo(4);
    JsonNode overHttp = json.readTree(send("GET", "/mock/stats", null).body());
    assertThat(overHttp.at("/by_user/b/estimated_tokens").asLong()).isEqualTo(HELLO_PROMPT + 30);
    assertThat(overHttp.at("/by_user/b/rate_limited").asLong()).isEqualTo(1);

    HttpResponse<String> notString = chat("k", HELLO + ",\"safety_identifier\":7}");
    assertThat(notString.statusCode()).isEqualTo(400);
    assertThat(error(notString).get("message").asText())
        .isEqualTo("Invalid type for 'safety_identifier': expected a string, but got an integer instead.");
    HttpResponse<String> tooLong = chat("k", HELLO + ",\"safety_identifier\":\"" + "x".repeat(65) + "\"}");
    assertThat(tooLong.statusCode()).isEqualTo(400);
    assertThat(error(tooLong).get("code").asText()).isEqualTo("string_above_max_length");
    assertThat(chat("k", HELLO + ",\"user\":[]}").statusCode()).isEqualTo(400);

    assertThat(send("POST", "/mock/reset", null).statusCode()).isEqualTo(200);
    assertThat(mock.stats().byUser()).isEmpty();
  }

  @Test
  void limitsArePerProjectKeyOrProjectHeader() throws Exception {
    start(b -> b.rpm(60).tpm(1_000_000));
    assertThat(chat("a", HELLO + "}").statusCode()).isEqualTo(200);
    assertThat(chat("a", HELLO + "}").statusCode()).isEqualTo(429);
    assertThat(chat("b", HELLO + "}").statusCode()).isEqualTo(200);
    // Two keys of one project share its quota.
    assertThat(chat("c", HELLO + "}", "OpenAI-Project", "proj_1").statusCode()).isEqualTo(200);
    assertThat(chat("d", HELLO + "}", "OpenAI-Project", "proj_1").statusCode()).isEqualTo(429);
  }

  @Test
  void streamingSendsChunksUsageAndDone() throws Exception {
    start(b -> b.rpm(600).tpm(1_000_000));
    HttpResponse<String> response =
        chat(
            "k",
            HELLO
                + ",\"max_tokens\":20,\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assertThat(response.statusCode()).isEqualTo(200);
    assertThat(header(response, "content-type")).startsWith("text/event-stream");
    assertThat(header(response, "x-ratelimit-remaining-tokens")).isNotNull();
    assertThat(response.body()).endsWith("data: [DONE]\n\n");
    String[] events = response.body().split("\n\n");
    List<JsonNode> chunks = new ArrayList<>();
    for (int i = 0; i < events.length - 1; i++) {
      assertThat(events[i]).startsWith("data: ");
      chunks.add(json.readTree(events[i].substring("data: ".length())));
    }
    String id = chunks.get(0).get("id").asText();
    assertThat(id).startsWith("chatcmpl-");
    for (JsonNode chunk : chunks) {
      assertThat(chunk.get("object").asText()).isEqualTo("chat.completion.chunk");
      assertThat(chunk.get("id").asText()).isEqualTo(id);
    }
    assertThat(chunks.get(0).at("/choices/0/delta/role").asText()).isEqualTo("assistant");
    StringBuilder content = new StringBuilder();
    for (JsonNode chunk : chunks.subList(1, chunks.size() - 2)) {
      assertThat(chunk.at("/choices/0/finish_reason").isNull()).isTrue();
      assertThat(chunk.get("usage").isNull()).isTrue();
      content.append(chunk.at("/choices/0/delta/content").asText());
    }
    JsonNode finish = chunks.get(chunks.size() - 2);
    assertThat(finish.at("/choices/0/finish_reason").asText()).isIn("stop", "length");
    JsonNode usage = chunks.get(chunks.size() - 1);
    assertThat(usage.get("choices")).isEmpty();
    int completion = TokenEstimator.tokens(content.toString());
    assertThat(usage.at("/usage/completion_tokens").asInt()).isEqualTo(completion);
    assertThat(usage.at("/usage/prompt_tokens").asInt()).isEqualTo(HELLO_PROMPT);
    assertThat(usage.at("/usage/total_tokens").asInt()).isEqualTo(HELLO_PROMPT + completion);

    HttpResponse<String> plain = chat("k", HELLO + ",\"stream\":true}");
    assertThat(plain.body()).doesNotContain("usage").endsWith("data: [DONE]\n\n");
  }

  @Test
  void modelsAreListed() throws Exception {
    start(b -> b);
    HttpResponse<String> response = send("GET", "/v1/models", null, "Authorization", "Bearer k");
    assertThat(response.statusCode()).isEqualTo(200);
    JsonNode body = json.readTree(response.body());
    assertThat(body.get("object").asText()).isEqualTo("list");
    JsonNode first = body.get("data").get(0);
    assertThat(first.get("id").asText()).isEqualTo("gpt-4o-mini");
    assertThat(first.get("object").asText()).isEqualTo("model");
    assertThat(first.get("created").isIntegralNumber()).isTrue();
    assertThat(first.has("owned_by")).isTrue();
  }

  @Test
  void statsResetAndLimitsOverHttp() throws Exception {
    start(b -> b.rpm(60).tpm(1_000_000));
    chat("k", HELLO + "}");
    chat("k", HELLO + "}");
    HttpResponse<String> statsResponse = send("GET", "/mock/stats", null);
    assertThat(statsResponse.statusCode()).isEqualTo(200);
    JsonNode stats = json.readTree(statsResponse.body());
    assertThat(fieldNames(stats))
        .containsExactly(
            "admitted",
            "rejected",
            "estimated_tokens",
            "actual_tokens",
            "in_flight",
            "peak_in_flight",
            "peak_tokens_60s",
            "peak_requests_60s",
            "first_admitted_at_ms",
            "last_admitted_at_ms",
            "limits",
            "by_user",
            "by_project");
    assertThat(json.treeToValue(stats, Stats.class)).isEqualTo(mock.stats());
    assertThat(stats.at("/rejected/requests").asLong()).isEqualTo(1);
    assertThat(stats.at("/limits/rpm").asLong()).isEqualTo(60);

    assertThat(send("POST", "/mock/reset", null).statusCode()).isEqualTo(200);
    assertThat(mock.stats().admitted()).isZero();
    assertThat(mock.stats().rateLimited()).isZero();
    assertThat(chat("k", HELLO + "}").statusCode()).isEqualTo(200); // refilled

    HttpResponse<String> put = send("PUT", "/mock/limits", "{\"rpm\":120,\"burst_seconds\":2.0}");
    assertThat(put.statusCode()).isEqualTo(200);
    assertThat(json.readTree(put.body()).get("rpm").asLong()).isEqualTo(120);
    assertThat(mock.stats().limits().rpm()).isEqualTo(120);
    assertThat(mock.stats().limits().burstSeconds()).isEqualTo(2.0);
    // Not refilled: the bucket was empty (0 of 1) and stays empty (0 of 4).
    assertThat(chat("k", HELLO + "}").statusCode()).isEqualTo(429);
    assertThat(send("PUT", "/mock/limits", "{\"rpm\":0}").statusCode()).isEqualTo(400);
    assertThat(send("PUT", "/mock/limits", "{\"rpx\":1}").statusCode()).isEqualTo(400);
    assertThat(send("PUT", "/mock/limits", "{\"quantized\":\"yes\"}").statusCode()).isEqualTo(400);
    assertThat(send("GET", "/mock/limits", null).body()).contains("\"rpm\":120");
    assertThat(send("GET", "/v1/nothing", null).statusCode()).isEqualTo(404);
  }

  @Test
  void builderValidatesAndRefusesRepeats() {
    assertThatThrownBy(() -> MockOpenAi.builder().rpm(0))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> MockOpenAi.builder().tpd(-1))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> MockOpenAi.builder().burstSeconds(0))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(
            () -> MockOpenAi.builder().latency(Duration.ofMillis(2), Duration.ofMillis(1)))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> MockOpenAi.builder().rpm(1).rpm(2))
        .isInstanceOf(IllegalStateException.class);
  }

  @Test
  void closeIsIdempotentAndPortIsReleased() throws Exception {
    start(b -> b);
    int port = mock.port();
    assertThat(mock.baseUrl()).isEqualTo("http://127.0.0.1:" + port + "/v1");
    mock.close();
    mock.close();
    try (MockOpenAi again = MockOpenAi.builder().port(port).build().start()) {
      assertThat(again.port()).isEqualTo(port);
    }
  }
}
