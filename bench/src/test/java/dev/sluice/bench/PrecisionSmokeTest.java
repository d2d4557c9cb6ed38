package dev.sluice.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** {@code precision} runs its worker JVM and prints the coordinator's and the workers' figures; none is judged. */
class PrecisionSmokeTest {

  @Test
  void printsTheCoordinatorsAndTheWorkersFigures() throws Exception {
    ByteArrayOutputStream console = new ByteArrayOutputStream();
    Precision.run(new String[] {"precision", "--processes", "1", "--threads", "2", "--seconds", "2", "--lead", "4"},
        new PrintStream(console, true, StandardCharsets.UTF_8));
    String printed = console.toString(StandardCharsets.UTF_8);
    assertThat(printed).contains("precision: 1 processes x 2 threads")
        .containsPattern("coordinator: [0-9]+ grants in [0-9.]+ s of the run")
        .containsPattern("window bound between every two of [0-9]+ reads: held")
        .containsPattern("workers, on receipt: [0-9]+ grants in the run")
        .doesNotContain("failed");
  }
}
