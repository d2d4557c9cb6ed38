package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.http.HttpResponseFor;
import com.openai.core.http.StreamResponse;
import com.openai.errors.RateLimitException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.CompletionUsage;
import dev.sluice.examples.TokenEstimator;
import java.time.Duration;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The official {@code com.openai:openai-java} client against the mock, on a real port and the real
 * clock: the mock's answers must parse exactly as OpenAI's do. No timing is asserted.
 */
class OpenAiClientTest {

  private static final ChatCompletionCreateParams PARAMS =
      ChatCompletionCreateParams.builder()
          .model("gpt-4o-mini")
          .addUserMessage("Say hello.")
          .maxCompletionTokens(20)
          .build();

  private MockOpenAi mock;
  private OpenAIClient client;

  private void start(MockOpenAi.Builder builder) throws Exception {
    mock = builder.latency(Duration.ZERO, Duration.ofMillis(5)).build().start();
    client = OpenAIOkHttpClient.builder().baseUrl(mock.baseUrl()).apiKey("k").maxRetries(0).build();
  }

  @AfterEach
  void close() {
    if (client != null) {
      client.close();
    }
    if (mock != null) {
      mock.close();
    }
  }

  @Test
  void completionParsesWithUsage() throws Exception {
    start(MockOpenAi.builder().rpm(10_000).tpm(10_000_000));
    ChatCompletion completion = client.chat().completions().create(PARAMS);
    completion.validate();
    assertThat(completion.id()).startsWith("chatcmpl-");
    assertThat(completion.choices()).hasSize(1);
    String content = completion.choices().get(0).message().content().orElseThrow();
    CompletionUsage usage = completion.usage().orElseThrow();
    assertThat(usage.promptTokens())
        .isEqualTo(
            TokenEstimator.promptTokens(List.of(new TokenEstimator.Message("user", "Say hello."))));
    assertThat(usage.completionTokens())
        .isEqualTo(TokenEstimator.tokens(content))
        .isBetween(1L, 20L);
    assertThat(usage.totalTokens()).isEqualTo(usage.promptTokens() + usage.completionTokens());
    assertThat(mock.stats().actualTokens()).isEqualTo(usage.totalTokens());
  }

  @Test
  void streamingWithIncludeUsageEndsWithTheUsageChunk() throws Exception {
    start(MockOpenAi.builder().rpm(10_000).tpm(10_000_000));
    ChatCompletionCreateParams params =
        PARAMS.toBuilder()
            .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build())
            .build();
    List<ChatCompletionChunk> chunks;
    try (StreamResponse<ChatCompletionChunk> stream =
        client.chat().completions().createStreaming(params)) {
      chunks = stream.stream().collect(Collectors.toList());
    }
    chunks.forEach(ChatCompletionChunk::validate);
    ChatCompletionChunk last = chunks.get(chunks.size() - 1);
    assertThat(last.choices()).isEmpty();
    CompletionUsage usage = last.usage().orElseThrow();
    String content =
        chunks.stream()
            .flatMap(c -> c.choices().stream())
            .map(c -> c.delta().content().orElse(""))
            .collect(Collectors.joining());
    assertThat(usage.completionTokens()).isEqualTo(TokenEstimator.tokens(content));
    assertThat(chunks.get(chunks.size() - 2).choices().get(0).finishReason()).isPresent();
  }

  @Test
  void a429IsARateLimitExceptionWithRetryAfter() throws Exception {
    start(MockOpenAi.builder().rpm(1).tpm(10_000_000)); // one request, then a minute's wait
    client.chat().completions().create(PARAMS);
    RateLimitException e =
        catchThrowableOfType(
            RateLimitException.class, () -> client.chat().completions().create(PARAMS));
    assertThat(e.statusCode()).isEqualTo(429);
    assertThat(e.type()).contains("requests");
    assertThat(e.code()).contains("rate_limit_exceeded");
    assertThat(e.getMessage()).contains("Rate limit reached for gpt-4o-mini");
    assertThat(e.headers().values("retry-after")).hasSize(1);
    assertThat(Long.parseLong(e.headers().values("retry-after").get(0))).isPositive();
    assertThat(e.headers().values("retry-after-ms")).hasSize(1);
    assertThat(e.headers().values("x-ratelimit-remaining-requests")).containsExactly("0");
    assertThat(mock.stats().rejected()).containsEntry("requests", 1L);
  }

  @Test
  void rawResponseExposesRateLimitHeaders() throws Exception {
    start(MockOpenAi.builder().rpm(600).tpm(60_000));
    try (HttpResponseFor<ChatCompletion> raw =
        client.chat().completions().withRawResponse().create(PARAMS)) {
      assertThat(raw.statusCode()).isEqualTo(200);
      List<String> remaining = raw.headers().values("x-ratelimit-remaining-tokens");
      assertThat(remaining).hasSize(1);
      assertThat(Long.parseLong(remaining.get(0))).isBetween(0L, 60_000L);
      assertThat(raw.headers().values("x-ratelimit-reset-tokens").get(0)).matches("[0-9.]+m?s");
      assertThat(raw.parse().usage()).isPresent();
    }
  }
}
