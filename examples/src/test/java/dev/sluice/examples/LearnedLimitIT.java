package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.examples.mock.MockOpenAi;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A limit learned from the provider, end to end: a coordinator, the strict mock with two
 * projects of their own keys and limits, and {@link OpenAiBatch} worker processes with {@code
 * --learn}. The limit starts conservative, takes the mock's real limit from the first answer's
 * headers, and follows a cut made through the mock's control endpoint mid-run.
 */
class LearnedLimitIT {

  @TempDir Path dir;
  private final ObjectMapper json = new ObjectMapper();

  private static MockOpenAi.Builder mock() {
    return MockOpenAi.builder()
        .project("a", "sk-test-shared-key", 300, 30_000)
        .project("b", "sk-other-project", 120, 20_000)
        .latency(Duration.ofMillis(20), Duration.ofMillis(60))
        .seed(11);
  }

  private JsonNode limit(QuotaFixture f) throws Exception {
    return json.readTree(f.cli("limit", "get", "openai", "--json"));
  }

  private static long perMinute(JsonNode limit, String dimension) {
    for (JsonNode r : limit.get("rates")) {
      if (r.get("name").asText().equals(dimension)) {
        assertThat(r.get("period").asText()).isEqualTo("60s");
        return r.get("amount").asLong();
      }
    }
    throw new AssertionError("no rate " + dimension + " in " + limit);
  }

  @Test
  void learnsTheProjectsLimitFromTheFirstAnswerAndFollowsACutMidRun() throws Exception {
    try (QuotaFixture f = new QuotaFixture(dir, mock())) {
      String set = f.cli("limit", "set", "openai", "--learn", "openai");
      assertThat(set).contains("no openai limit headers reported yet");

      CompletableFuture<List<JsonNode>> run = CompletableFuture.supplyAsync(() -> {
        try {
          return f.runWorkers(1, "--learn", "openai", "--duration", "8s", "--threads", "4", "--max-tokens", "50");
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
      });
      // After the first answer: project a's limits, exactly (within 1 %).
      await().atMost(Duration.ofSeconds(30)).untilAsserted(() -> {
        JsonNode l = limit(f);
        assertThat(perMinute(l, "requests")).isCloseTo(300, org.assertj.core.data.Percentage.withPercentage(1));
        assertThat(perMinute(l, "tokens")).isCloseTo(30_000, org.assertj.core.data.Percentage.withPercentage(1));
      });
      JsonNode learned = limit(f);
      assertThat(learned.get("learn").get("was").asText()).isEqualTo("requests=60/min:1 tokens=10000/min:83");

      // The provider cuts project a mid-run: the next answer's headers carry it.
      HttpResponse<String> cut = HttpClient.newHttpClient().send(
          HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + f.mock.port() + "/mock/projects/a/limits"))
              .PUT(HttpRequest.BodyPublishers.ofString("{\"rpm\": 150, \"tpm\": 12000}")).build(),
          HttpResponse.BodyHandlers.ofString());
      assertThat(cut.statusCode()).as(cut.body()).isEqualTo(200);
      await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> {
        JsonNode l = limit(f);
        assertThat(perMinute(l, "requests")).isEqualTo(150);
        assertThat(perMinute(l, "tokens")).isEqualTo(12_000);
      });
      assertThat(limit(f).get("learn").get("was").asText()).isEqualTo("requests=300/min:2 tokens=30000/min:250");
      assertThat(f.cli("limit", "get", "openai")).contains("learned from openai at");

      JsonNode summary = run.join().get(0);
      assertThat(summary.get("failed").asLong()).isZero();
      assertThat(summary.get("learned_limit").get("per_minute").get("requests").asLong()).isEqualTo(150);
      System.out.printf("learned run: %d done, %d upstream 429s (mock), %d seen by the worker%n",
          summary.get("done").asLong(), f.mock.stats().rateLimited(), summary.get("worker_429s").asLong());
    }
  }

  @Test
  void azureStatesNoLimitSoTheStartingOneStaysAndSaysSo() throws Exception {
    try (QuotaFixture f = new QuotaFixture(dir, mock().azure(true))) {
      f.cli("limit", "set", "openai", "--learn", "azure", "--rate", "requests=100/min:1", "--rate", "tokens=9000/min:75");
      JsonNode summary = f.runWorkers(1, "--learn", "azure", "--shard", "0/50", "--threads", "2", "--max-tokens", "50").get(0);
      assertThat(summary.get("done").asLong()).isEqualTo(4);
      assertThat(perMinute(limit(f), "requests")).isEqualTo(100);
      assertThat(f.cli("limit", "get", "openai"))
          .contains("from azure: no azure limit headers reported yet; the starting limit is in place");
    }
  }

  @Test
  void aWorkerRefusesToLearnFromAnotherProviderThanTheLimitDoes() throws Exception {
    try (QuotaFixture f = new QuotaFixture(dir, mock())) {
      f.cli("limit", "set", "openai", "--learn", "anthropic");
      var thrown = org.assertj.core.api.Assertions.catchThrowable(
          () -> f.runWorkers(1, "--learn", "openai", "--duration", "1s"));
      assertThat(thrown).hasMessageContaining("does not learn from openai: run `sluice limit set openai --learn openai`");
    }
  }
}
