package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The mock's projects (own keys and limits), its control endpoint and its Azure mode, over real HTTP. */
class MockProjectsHttpTest {

  private static final String CHAT = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  private final HttpClient http = HttpClient.newHttpClient();
  private final ObjectMapper json = new ObjectMapper();
  private final AtomicLong now = new AtomicLong();

  private MockOpenAi.Builder mock() {
    return MockOpenAi.builder().port(0).latency(Duration.ZERO, Duration.ZERO).ticker(now::get)
        .project("a", "sk-a", 300, 30_000).project("b", "sk-b", 120, 20_000);
  }

  private HttpResponse<String> chat(MockOpenAi m, String key) throws Exception {
    return http.send(HttpRequest.newBuilder(URI.create(m.baseUrl() + "/chat/completions"))
        .header("Authorization", "Bearer " + key).POST(HttpRequest.BodyPublishers.ofString(CHAT)).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private HttpResponse<String> put(MockOpenAi m, String path, String body) throws Exception {
    return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + m.port() + path))
        .PUT(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void eachProjectHasItsKeyAndLimitsAndOneCanBeChangedMidRun() throws Exception {
    try (MockOpenAi m = mock().build().start()) {
      HttpResponse<String> a = chat(m, "sk-a");
      assertThat(a.statusCode()).isEqualTo(200);
      assertThat(a.headers().firstValue("x-ratelimit-limit-requests")).hasValue("300");
      assertThat(a.headers().firstValue("x-ratelimit-limit-tokens")).hasValue("30000");
      assertThat(chat(m, "sk-b").headers().firstValue("x-ratelimit-limit-requests")).hasValue("120");
      HttpResponse<String> stranger = chat(m, "sk-nobody");
      assertThat(stranger.statusCode()).isEqualTo(401);
      assertThat(json.readTree(stranger.body()).get("error").get("code").asText()).isEqualTo("invalid_api_key");

      HttpResponse<String> cut = put(m, "/mock/projects/a/limits", "{\"rpm\": 150}");
      assertThat(cut.statusCode()).as(cut.body()).isEqualTo(200);
      assertThat(json.readTree(cut.body()).get("rpm").asLong()).isEqualTo(150);
      assertThat(chat(m, "sk-a").headers().firstValue("x-ratelimit-limit-requests")).hasValue("150");
      assertThat(chat(m, "sk-b").headers().firstValue("x-ratelimit-limit-requests")).hasValue("120");
      JsonNode listed = json.readTree(http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + m.port()
          + "/mock/projects")).build(), HttpResponse.BodyHandlers.ofString()).body());
      assertThat(listed.get("a").get("limits").get("rpm").asLong()).isEqualTo(150);
      assertThat(listed.get("b").get("key").asText()).isEqualTo("sk-b");

      assertThat(put(m, "/mock/projects/zz/limits", "{\"rpm\": 1}").statusCode()).isEqualTo(404);
      assertThat(put(m, "/mock/projects/a/limits", "{\"rpm\": -1}").statusCode()).isEqualTo(400);
      assertThat(put(m, "/mock/projects/a/limits", "[]").statusCode()).isEqualTo(400);
    }
  }

  @Test
  void statsCountEachProjectsCallsOnTheMocksClock() throws Exception {
    try (MockOpenAi m = mock().build().start()) {
      assertThat(chat(m, "sk-a").statusCode()).isEqualTo(200);
      now.addAndGet(250_000_000L); // 250 ms: the third slot
      assertThat(chat(m, "sk-b").statusCode()).isEqualTo(200);
      HttpResponse<String> refused = null;
      for (int i = 0; i < 10 && (refused == null || refused.statusCode() != 429); i++) {
        refused = chat(m, "sk-b"); // the clock stands still: b's 2-request bucket empties
      }
      assertThat(refused.statusCode()).isEqualTo(429);

      MockOpenAi.Stats s = m.stats();
      MockOpenAi.Stats.Project a = s.project("a");
      MockOpenAi.Stats.Project b = s.project("b");
      assertThat(a.admitted()).isEqualTo(1);
      assertThat(a.rateLimited()).isZero();
      assertThat(a.firstRateLimitedAtMs()).isNull();
      assertThat(a.tokensPerSlot()).hasSize(1);
      assertThat(a.tokensBetween(0, 100)).isEqualTo(a.estimatedTokens()).isPositive();
      assertThat(b.rateLimited()).isEqualTo(1);
      assertThat(b.firstRateLimitedAtMs()).isEqualTo(250);
      assertThat(b.tokensPerSlot()).hasSize(3);
      assertThat(b.tokensBetween(0, 200)).isZero();
      assertThat(b.tokensBetween(200, 300)).isEqualTo(b.estimatedTokens());
      assertThat(s.project("nobody").admitted()).isZero();
    }
  }

  @Test
  void azureModeSendsWhatRemainsAndItsPausesButNoLimit() throws Exception {
    try (MockOpenAi m = mock().azure(true).build().start()) {
      HttpResponse<String> ok = chat(m, "sk-b");
      assertThat(ok.statusCode()).isEqualTo(200);
      assertThat(ok.headers().firstValue("x-ratelimit-remaining-requests")).isPresent();
      assertThat(ok.headers().firstValue("x-ratelimit-remaining-tokens")).isPresent();
      assertThat(ok.headers().firstValue("x-ratelimit-limit-requests")).isEmpty();
      assertThat(ok.headers().firstValue("x-ratelimit-reset-requests")).isEmpty();
      HttpResponse<String> refused = null;
      for (int i = 0; i < 10 && (refused == null || refused.statusCode() != 429); i++) {
        refused = chat(m, "sk-b"); // the clock stands still: the 2-request bucket empties
      }
      assertThat(refused.statusCode()).isEqualTo(429);
      assertThat(refused.headers().firstValue("x-ms-retry-after-ms")).isPresent()
          .isEqualTo(refused.headers().firstValue("retry-after-ms"));
    }
  }
}
