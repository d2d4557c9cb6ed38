package dev.sluice.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The soak command in a tiny run, so it cannot rot: it runs, counts, and writes its section. No timing assertion. */
class SoakTest {

  @TempDir Path dir;

  @Test
  void aShortSoakWritesItsSectionAndKeepsTheRestOfTheReport() throws Exception {
    Path report = dir.resolve("BENCHMARKS.md");
    Files.writeString(report, "# Sluice benchmarks\n\nthe full run's figures\n");
    ByteArrayOutputStream console = new ByteArrayOutputStream();

    Soak.run(new String[] {"soak", "--duration", "2s", "--rate", "200", "--out", dir.toString()},
        new PrintStream(console, true, StandardCharsets.UTF_8));
    Soak.run(new String[] {"soak", "--duration", "1s", "--rate", "100", "--out", dir.toString()},
        new PrintStream(console, true, StandardCharsets.UTF_8));

    String md = Files.readString(report);
    assertThat(md).startsWith("# Sluice benchmarks\n\nthe full run's figures\n")
        .contains("## Soak", "| minute | permits |", " 0 errors")
        .containsOnlyOnce(Soak.BEGIN);
    assertThat(md).as("the second run replaced the first").contains("100 permits/s offered");
    assertThat(Soak.existingSection(report)).startsWith(Soak.BEGIN).contains(Soak.END);
    assertThat(console.toString(StandardCharsets.UTF_8)).contains("soak: PASS");
  }
}
