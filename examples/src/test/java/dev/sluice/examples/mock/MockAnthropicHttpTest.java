package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.examples.TokenEstimator;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** Anthropic's {@code POST /v1/messages} on the mock, on a real port with a fake clock and no latency. */
class MockAnthropicHttpTest {

  /** 3 tokens of framing for the one message, and its content's. */
  private static final int HELLO_INPUT = 3 + TokenEstimator.tokens("hello");

  private final ObjectMapper json = new ObjectMapper();
  private final AtomicLong now = new AtomicLong(7_000_000_000_000L);
  private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
  private MockOpenAi mock;

  private void start(UnaryOperator<MockOpenAi.Builder> config) throws IOException {
    mock = config.apply(MockOpenAi.builder().latency(Duration.ZERO, Duration.ZERO).ticker(now::get))
        .build().start();
  }

  @AfterEach
  void close() {
    if (mock != null) {
      mock.close();
    }
  }

  private static String hello(int maxTokens, boolean stream) {
    return "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":" + maxTokens + (stream ? ",\"stream\":true" : "")
        + ",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
  }

  /** As Anthropic's Python package sends it: key and version headers, a JSON body. */
  private HttpResponse<String> messages(String body, String... drop) throws Exception {
    List<String> headers = new ArrayList<>(List.of("content-type", "application/json", "x-api-key", "sk-ant-test",
        "anthropic-version", "2023-06-01"));
    for (String d : drop) {
      int i = headers.indexOf(d);
      headers.remove(i + 1);
      headers.remove(i);
    }
    HttpRequest request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + mock.port() + "/v1/messages"))
        .POST(HttpRequest.BodyPublishers.ofString(body)).headers(headers.toArray(String[]::new)).build();
    return http.send(request, HttpResponse.BodyHandlers.ofString());
  }

  private static String header(HttpResponse<?> response, String name) {
    return response.headers().firstValue(name).orElse(null);
  }

  private JsonNode error(HttpResponse<String> response, String type) throws IOException {
    JsonNode root = json.readTree(response.body());
    assertThat(root.get("type").asText()).isEqualTo("error");
    assertThat(root.get("error").get("type").asText()).isEqualTo(type);
    assertThat(root.get("request_id").asText()).isEqualTo(header(response, "request-id")).startsWith("req_");
    return root.get("error");
  }

  @Test
  void messageHasAnthropicShapeUsageAndHeaders() throws Exception {
    start(b -> b.anthropic(600, 60_000, 6_000)); // buckets of 10 requests, 1,000 input, 100 output tokens
    HttpResponse<String> response = messages(hello(50, false));

    assertThat(response.statusCode()).isEqualTo(200);
    JsonNode m = json.readTree(response.body());
    assertThat(m.get("id").asText()).startsWith("msg_");
    assertThat(m.get("type").asText()).isEqualTo("message");
    assertThat(m.get("role").asText()).isEqualTo("assistant");
    assertThat(m.get("model").asText()).isEqualTo("claude-sonnet-4-5");
    JsonNode content = m.get("content").get(0);
    assertThat(content.get("type").asText()).isEqualTo("text");
    int output = m.get("usage").get("output_tokens").asInt();
    assertThat(output).isBetween(1, 50);
    assertThat(TokenEstimator.tokens(content.get("text").asText())).isEqualTo(output);
    assertThat(m.get("stop_reason").asText()).isEqualTo(output == 50 ? "max_tokens" : "end_turn");
    assertThat(m.get("usage").get("input_tokens").asInt()).isEqualTo(HELLO_INPUT);
    assertThat(m.get("usage").get("cache_read_input_tokens").asInt()).isZero();

    assertThat(header(response, "request-id")).startsWith("req_");
    assertThat(header(response, "anthropic-ratelimit-requests-limit")).isEqualTo("600");
    assertThat(header(response, "anthropic-ratelimit-requests-remaining")).isEqualTo("540");
    assertThat(header(response, "anthropic-ratelimit-input-tokens-limit")).isEqualTo("60000");
    assertThat(header(response, "anthropic-ratelimit-input-tokens-remaining"))
        .isEqualTo(Long.toString((1000 - HELLO_INPUT) * 60));
    assertThat(header(response, "anthropic-ratelimit-output-tokens-limit")).isEqualTo("6000");
    // At admission the whole budget of 50 is taken from the bucket of 100.
    assertThat(header(response, "anthropic-ratelimit-output-tokens-remaining")).isEqualTo("3000");
    // Output has less left than input, so it is what tokens-* describes.
    assertThat(header(response, "anthropic-ratelimit-tokens-remaining")).isEqualTo("3000");
    Instant reset = Instant.parse(header(response, "anthropic-ratelimit-output-tokens-reset"));
    assertThat(reset).isAfter(Instant.now().minusSeconds(1)).isBefore(Instant.now().plusSeconds(5));

    MockOpenAi.Stats stats = mock.stats();
    assertThat(stats.admitted()).isEqualTo(1);
    assertThat(stats.estimatedTokens()).isEqualTo(HELLO_INPUT + 50);
    assertThat(stats.actualTokens()).isEqualTo(HELLO_INPUT + output);
  }

  @Test
  void unusedOutputBudgetGoesBackWhenTheCallEnds() throws Exception {
    start(b -> b.anthropic(600, 60_000, 6_000)); // an output bucket of 100 tokens, the clock stopped
    int output = json.readTree(messages(hello(60, false)).body()).get("usage").get("output_tokens").asInt();
    // 60 taken, 60 - output given back: 100 - output left. Without the refund 40 would be.
    HttpResponse<String> tooMuch = messages(hello(100 - output + 1, false));
    assertThat(tooMuch.statusCode()).isEqualTo(429);
    assertThat(error(tooMuch, "rate_limit_error").get("message").asText())
        .contains("of 6,000 output tokens per minute");
    assertThat(messages(hello(100 - output, false)).statusCode()).isEqualTo(200);
    assertThat(mock.stats().rejected()).containsEntry("output_tokens", 1L);
  }

  @Test
  void rateLimitedHasRetryAfterUntilTheBucketsAdmitIt() throws Exception {
    start(b -> b.anthropic(60, 60_000, 6_000)); // one request a second, a bucket of one
    assertThat(messages(hello(10, false)).statusCode()).isEqualTo(200);
    now.addAndGet(Duration.ofMillis(400).toNanos());

    HttpResponse<String> refused = messages(hello(10, false));
    assertThat(refused.statusCode()).isEqualTo(429);
    assertThat(error(refused, "rate_limit_error").get("message").asText())
        .startsWith("This request would exceed the rate limit for your organization (org-mock) of 60 requests"
            + " per minute.");
    assertThat(header(refused, "retry-after")).isEqualTo("1"); // 600 ms, rounded up to whole seconds
    assertThat(header(refused, "anthropic-ratelimit-requests-remaining")).isEqualTo("24");
    assertThat(mock.stats().rejected()).containsEntry("requests", 1L);
    assertThat(mock.stats().rateLimited()).isEqualTo(1);

    now.addAndGet(Duration.ofMillis(600).toNanos()); // a refusal took nothing: the wait said is enough
    assertThat(messages(hello(10, false)).statusCode()).isEqualTo(200);
  }

  @Test
  void aCallThatCanNeverFitHasNoRetryAfter() throws Exception {
    start(b -> b.anthropic(600, 60_000, 6_000));
    HttpResponse<String> refused = messages(hello(6_001, false));
    assertThat(refused.statusCode()).isEqualTo(429);
    assertThat(error(refused, "rate_limit_error").get("message").asText()).contains("can never fit");
    assertThat(header(refused, "retry-after")).isNull();
    assertThat(mock.stats().rejected()).containsEntry("too_large", 1L);
  }

  @Test
  void streamHasAnthropicEventsWithUsageAtStartAndEnd() throws Exception {
    start(b -> b.anthropic(600, 60_000, 6_000));
    HttpResponse<String> response = messages(hello(40, true));
    assertThat(response.statusCode()).isEqualTo(200);
    assertThat(header(response, "content-type")).startsWith("text/event-stream");
    assertThat(header(response, "anthropic-ratelimit-output-tokens-remaining")).isEqualTo("3600");

    List<String> names = new ArrayList<>();
    List<JsonNode> events = new ArrayList<>();
    for (String block : response.body().split("\n\n")) {
      String[] lines = block.split("\n");
      assertThat(lines[0]).startsWith("event: ");
      assertThat(lines[1]).startsWith("data: ");
      JsonNode data = json.readTree(lines[1].substring(6));
      assertThat(data.get("type").asText()).isEqualTo(lines[0].substring(7));
      names.add(lines[0].substring(7));
      events.add(data);
    }
    int deltas = names.size() - 6;
    assertThat(deltas).isBetween(1, 40);
    List<String> expected = new ArrayList<>(List.of("message_start", "content_block_start", "ping"));
    for (int i = 0; i < deltas; i++) {
      expected.add("content_block_delta");
    }
    expected.addAll(List.of("content_block_stop", "message_delta", "message_stop"));
    assertThat(names).isEqualTo(expected);
    JsonNode start = events.get(0).get("message");
    assertThat(start.get("usage").get("input_tokens").asInt()).isEqualTo(HELLO_INPUT);
    assertThat(start.get("usage").get("output_tokens").asInt()).isEqualTo(1);
    assertThat(start.get("content")).isEmpty();
    assertThat(events.get(3).get("delta").get("type").asText()).isEqualTo("text_delta");
    JsonNode end = events.get(names.size() - 2);
    assertThat(end.get("usage").get("output_tokens").asInt()).isEqualTo(deltas);
    assertThat(end.get("delta").get("stop_reason").asText()).isEqualTo(deltas == 40 ? "max_tokens" : "end_turn");
    assertThat(mock.stats().actualTokens()).isEqualTo(HELLO_INPUT + deltas);
  }

  @Test
  void refusesWithoutKeyOrVersionAndNamesTheBadField() throws Exception {
    start(b -> b);
    HttpResponse<String> noKey = messages(hello(10, false), "x-api-key");
    assertThat(noKey.statusCode()).isEqualTo(401);
    assertThat(error(noKey, "authentication_error").get("message").asText()).isEqualTo("x-api-key header is required");

    HttpResponse<String> noVersion = messages(hello(10, false), "anthropic-version");
    assertThat(noVersion.statusCode()).isEqualTo(400);
    assertThat(error(noVersion, "invalid_request_error").get("message").asText())
        .isEqualTo("anthropic-version: header is required");

    HttpResponse<String> noBudget = messages("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    assertThat(error(noBudget, "invalid_request_error").get("message").asText()).isEqualTo("max_tokens: Field required");
    HttpResponse<String> badRole = messages("{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\","
        + "\"content\":\"x\"}]}");
    assertThat(error(badRole, "invalid_request_error").get("message").asText())
        .isEqualTo("messages.0.role: Input should be 'user' or 'assistant'");
    HttpResponse<String> notJson = messages("{\"model\":");
    assertThat(notJson.statusCode()).isEqualTo(400);
    assertThat(error(notJson, "invalid_request_error").get("message").asText()).contains("not valid JSON");

    assertThat(mock.stats().rejected()).containsEntry("unauthorized", 1L).containsEntry("bad_request", 4L);
    assertThat(mock.stats().admitted()).isZero();
  }
}
