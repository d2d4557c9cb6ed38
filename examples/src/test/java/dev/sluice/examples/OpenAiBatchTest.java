package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.openai.core.http.Headers;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** The worker's own parsing and its error paths; the end-to-end behaviour is in OpenAiQuotaIT. */
class OpenAiBatchTest {

  @TempDir Path dir;

  @Test
  void loadsJsonlAndCsvPrompts() throws IOException {
    Path jsonl = dir.resolve("p.jsonl");
    Files.writeString(jsonl, "{\"id\":\"a\",\"prompt\":\"hello\"}\n\n{\"prompt\":\"no id\"}\n");
    assertThat(Prompts.load(jsonl))
        .containsExactly(new Prompts.Prompt("a", "hello"), new Prompts.Prompt("line-3", "no id"));
    Path csv = dir.resolve("p.csv");
    Files.writeString(csv, "id,prompt\n1,plain text\n2,\"quoted, with \"\"quotes\"\"\"\n");
    assertThat(Prompts.load(csv))
        .containsExactly(new Prompts.Prompt("1", "plain text"), new Prompts.Prompt("2", "quoted, with \"quotes\""));
  }

  @Test
  void badPromptFilesNameTheLine() throws IOException {
    Path notJson = dir.resolve("bad.jsonl");
    Files.writeString(notJson, "{\"prompt\":\"ok\"}\nnot json\n");
    assertThatThrownBy(() -> Prompts.load(notJson)).hasMessageContaining("line 2 is not JSON");
    Path noPrompt = dir.resolve("noprompt.jsonl");
    Files.writeString(noPrompt, "{\"text\":\"x\"}\n");
    assertThatThrownBy(() -> Prompts.load(noPrompt)).hasMessageContaining("line 1 has no \"prompt\"");
    Path noComma = dir.resolve("bad.csv");
    Files.writeString(noComma, "just-one-field\n");
    assertThatThrownBy(() -> Prompts.load(noComma)).hasMessageContaining("expected id,prompt");
    Path empty = dir.resolve("empty.jsonl");
    Files.writeString(empty, "\n");
    assertThatThrownBy(() -> Prompts.load(empty)).hasMessageContaining("holds no prompts");
  }

  @Test
  void retryAfterPrefersMillisecondsThenSecondsThenOneSecond() {
    assertThat(OpenAiBatch.retryAfter(Headers.builder().put("retry-after-ms", "1146").put("retry-after", "2").build()))
        .isEqualTo(Duration.ofMillis(1146));
    assertThat(OpenAiBatch.retryAfter(Headers.builder().put("Retry-After", "1.5").build()))
        .isEqualTo(Duration.ofMillis(1500));
    assertThat(OpenAiBatch.retryAfter(Headers.builder().put("retry-after", "soon").build()))
        .isEqualTo(Duration.ofSeconds(1));
    assertThat(OpenAiBatch.retryAfter(Headers.builder().build())).isEqualTo(Duration.ofSeconds(1));
  }

  @Test
  void flattenKeepsTheFirstValueOfEachHeader() {
    Headers h = Headers.builder().put("x-ratelimit-remaining-tokens", List.of("40", "41")).put("x", "y").build();
    assertThat(OpenAiBatch.flatten(h)).containsEntry("x-ratelimit-remaining-tokens", "40").containsEntry("x", "y");
  }

  @Test
  void durationsParseOrSayWhatIsExpected() {
    assertThat(OpenAiBatch.parseDuration("500ms")).isEqualTo(Duration.ofMillis(500));
    assertThat(OpenAiBatch.parseDuration("20s")).isEqualTo(Duration.ofSeconds(20));
    assertThat(OpenAiBatch.parseDuration("1.5s")).isEqualTo(Duration.ofMillis(1500));
    assertThat(OpenAiBatch.parseDuration("2m")).isEqualTo(Duration.ofMinutes(2));
    assertThatThrownBy(() -> OpenAiBatch.parseDuration("soon")).hasMessageContaining("use e.g. 500ms");
  }

  private int run(StringWriter err, String... args) {
    CommandLine cmd = new CommandLine(new OpenAiBatch()).setCaseInsensitiveEnumValuesAllowed(true);
    cmd.setErr(new PrintWriter(err, true));
    return cmd.execute(args);
  }

  @Test
  void usageErrorsExitTwoWithTheReason() throws IOException {
    Path prompts = dir.resolve("p.jsonl");
    Files.writeString(prompts, "{\"prompt\":\"x\"}\n");
    StringWriter err = new StringWriter();
    assertThat(run(err, "--input", prompts.toString(), "--api-key", "")).isEqualTo(2);
    assertThat(err.toString()).contains("no API key");
    err = new StringWriter();
    assertThat(run(err, "--input", prompts.toString(), "--api-key", "k", "--shard", "4/4")).isEqualTo(2);
    assertThat(err.toString()).contains("0 <= K < N");
    err = new StringWriter();
    assertThat(run(err, "--input", prompts.toString(), "--api-key", "k", "--duration", "1s", "--time-limit", "1s"))
        .isEqualTo(2);
    assertThat(err.toString()).contains("pick one");
    err = new StringWriter();
    assertThat(run(err, "--input", prompts.toString(), "--api-key", "k", "--tenant", "team a")).isEqualTo(2);
    assertThat(err.toString()).contains("--tenant team a: tenant");
    err = new StringWriter();
    assertThat(run(err, "--api-key", "k")).isEqualTo(2);
    assertThat(err.toString()).contains("--input");
  }

  @Test
  void poolUsageErrorsNameTheFix() throws IOException {
    Path prompts = dir.resolve("p.jsonl");
    Files.writeString(prompts, "{\"prompt\":\"x\"}\n");
    String in = prompts.toString();
    StringWriter err = new StringWriter();
    assertThat(run(err, "--input", in, "--pool", "p", "--api-key", "")).isEqualTo(2);
    assertThat(err.toString()).contains("--pool p without keys").contains("--member-key MEMBER=KEY");
    err = new StringWriter();
    assertThat(run(err, "--input", in, "--api-key", "k", "--member-key", "a=sk-a")).isEqualTo(2);
    assertThat(err.toString()).contains("without --pool");
    err = new StringWriter();
    assertThat(run(err, "--input", in, "--pool", "p", "--member-key", "a=sk-a", "--mode", "local")).isEqualTo(2);
    assertThat(err.toString()).contains("--pool needs --mode sluice");
    Path keys = dir.resolve("keys");
    Files.writeString(keys, "# members\na=sk-a\nno key here\n");
    err = new StringWriter();
    assertThat(run(err, "--input", in, "--pool", "p", "--member-keys", keys.toString())).isEqualTo(2);
    assertThat(err.toString()).contains("line 3: not MEMBER=KEY");
    err = new StringWriter();
    assertThat(run(err, "--input", in, "--pool", "p", "--member-key", "a=sk-a", "--learn", "openai")).isEqualTo(2);
    assertThat(err.toString()).contains("set `--learn openai` on each member's limit");
  }
}
