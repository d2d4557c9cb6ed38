package dev.sluice.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** {@code first} runs its child JVMs and prints a row for each kind of client; no figure is judged. */
class FirstAcquireSmokeTest {

  @Test
  void printsARowWithAndWithoutWarmUp() throws Exception {
    ByteArrayOutputStream console = new ByteArrayOutputStream();
    FirstAcquire.run(new String[] {"first", "--runs", "1", "--threads", "4"},
        new PrintStream(console, true, StandardCharsets.UTF_8));
    String printed = console.toString(StandardCharsets.UTF_8);
    assertThat(printed).contains("first: median / max", "then: p50")
        .containsPattern("build only +[0-9.]+ms")
        .containsPattern("build \\+ warmUp +[0-9.]+ms")
        .doesNotContain("failed");
  }
}
