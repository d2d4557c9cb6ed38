package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

class MockOpenAiMainTest {

  @Test
  void parsesLatencyRanges() {
    assertThat(MockOpenAiMain.parseLatency("50..200"))
        .containsExactly(Duration.ofMillis(50), Duration.ofMillis(200));
    assertThat(MockOpenAiMain.parseLatency("0")).containsExactly(Duration.ZERO, Duration.ZERO);
    assertThatThrownBy(() -> MockOpenAiMain.parseLatency("fast"))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void parsesAnthropicLimitsAndNamesTheFormatOtherwise() {
    assertThat(MockOpenAiMain.parseAnthropic("600, 60000,1200")).containsExactly(600, 60_000, 1_200);
    assertThatThrownBy(() -> MockOpenAiMain.parseAnthropic("600,60000"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("RPM,ITPM,OTPM");
    assertThatThrownBy(() -> MockOpenAiMain.parseAnthropic("a,b,c"))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void printsOneLineServesAndStops() throws Exception {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    MockOpenAiMain main = new MockOpenAiMain(new PrintStream(bytes, true, StandardCharsets.UTF_8));
    CommandLine cli = new CommandLine(main);
    CompletableFuture<Integer> run =
        CompletableFuture.supplyAsync(
            () ->
                cli.execute(
                    "--rpm", "120", "--tpm", "9000", "--latency-ms", "0..0", "--quantized",
                    "--anthropic", "60,6000,1200"));
    Pattern line =
        Pattern.compile(
            "mock-openai listening on (http://127\\.0\\.0\\.1:\\d+/v1) \\(rpm=120, tpm=9000,"
                + " rpd=off, tpd=off, .*quantized.*, anthropic rpm=60 itpm=6000 otpm=1200\\)\\R");
    await().atMost(Duration.ofSeconds(10)).until(() -> line.matcher(out(bytes)).matches());
    Matcher m = line.matcher(out(bytes));
    assertThat(m.matches()).isTrue();
    String base = m.group(1).replace("/v1", "");
    HttpResponse<String> stats =
        HttpClient.newHttpClient()
            .send(
                HttpRequest.newBuilder(URI.create(base + "/mock/stats")).build(),
                HttpResponse.BodyHandlers.ofString());
    assertThat(stats.body()).contains("\"tpm\":9000").contains("\"quantized\":true");

    main.stop();
    assertThat(run.get(10, TimeUnit.SECONDS)).isZero();
  }

  private static String out(ByteArrayOutputStream bytes) {
    return bytes.toString(StandardCharsets.UTF_8);
  }
}
