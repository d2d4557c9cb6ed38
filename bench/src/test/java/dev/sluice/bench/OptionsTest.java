package dev.sluice.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The load generator's options for the warm-up, the coordinator's placement and the new groups. */
class OptionsTest {

  @Test
  void defaultsWarmUpLongEnoughAndKeepCoordinatorsInTheJvm() {
    Options o = Options.parse(new String[0]);
    assertThat(o.jvmWarmup()).isEqualTo(Options.DEFAULT_JVM_WARMUP);
    assertThat(o.warmup()).isEqualTo(Options.DEFAULT_WARMUP);
    assertThat(o.placement()).isEqualTo(SluiceRig.Placement.JVM);
    assertThat(o.placement().label()).isEqualTo("same JVM");
    assertThat(o.groups()).contains("keys", "http");
    assertThat(Options.USAGE).contains("--coordinator WHERE", "--sluice-bin FILE",
        "(default " + Options.DEFAULT_JVM_WARMUP.toSeconds() + "s;", "(default " + Options.DEFAULT_WARMUP.toSeconds()
            + "s;", "within 10 % say");
  }

  @Test
  void processPlacementNeedsAnExecutableLauncher(@TempDir Path dir) throws Exception {
    Path missing = dir.resolve("sluice");
    assertThatThrownBy(() -> Options.parse(new String[] {"--coordinator", "process", "--sluice-bin",
        missing.toString()}))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(missing + " is not an executable file")
        .hasMessageContaining("./mvnw -q -DskipTests package");

    Files.writeString(missing, "#!/bin/sh\n");
    Files.setPosixFilePermissions(missing, PosixFilePermissions.fromString("rwx------"));
    Options o = Options.parse(new String[] {"--coordinator", "process", "--sluice-bin", missing.toString()});
    assertThat(o.placement().process()).isTrue();
    assertThat(o.placement().sluiceBin()).isEqualTo(missing);
    assertThat(o.placement().label()).isEqualTo("own process");
    assertThat(o.placement().describe()).contains(missing + " serve --port 0");
  }

  @Test
  void placementOptionsRefuseNonsense() {
    assertThatThrownBy(() -> Options.parse(new String[] {"--coordinator", "docker"}))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("unknown placement 'docker'")
        .hasMessageContaining("use jvm");
    assertThatThrownBy(() -> Options.parse(new String[] {"--sluice-bin", "bin/sluice"}))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("--sluice-bin is used only with --coordinator process");
    assertThatThrownBy(() -> Options.parse(new String[] {"--coordinator"}))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("--coordinator needs a value");
  }

  @Test
  void theProcessCommandLineIsSluiceServeOnFreeLoopbackPorts() {
    List<String> c = SluiceRig.command(Path.of("bin/sluice"), Path.of("/d/node0"), false, "redis://127.0.0.1:1");
    assertThat(c).containsExactly("bin/sluice", "serve", "--bind", "127.0.0.1", "--port", "0", "--http-port", "-1",
        "--data-dir", "/d/node0", "--shutdown-grace", "2s", "--store", "redis://127.0.0.1:1");
    assertThat(SluiceRig.command(Path.of("bin/sluice"), Path.of("/d"), true, null))
        .containsSubsequence("--http-port", "0").doesNotContain("--store");
  }

  @Test
  void theJvmWarmUpIsLapsOfEchoThenSluice() {
    assertThat(LoadGen.laps(Duration.ofSeconds(20))).isEqualTo(10);
    assertThat(LoadGen.laps(Duration.ofMillis(500))).isEqualTo(1);
  }

  @Test
  void theJvmWarmUpGoesOnUntilThreeQuietEchoLapsAgreeWithinTenPercent() {
    assertThat(LoadGen.plateau(laps(0.0, 1_000, 30_000, 60_000))).isFalse();
    assertThat(LoadGen.plateau(laps(0.0, 1_000, 60_000, 100_000, 105_000, 109_000))).isTrue();
    assertThat(LoadGen.plateau(laps(0.0, 100_000, 105_000, 112_000))).isFalse();
    assertThat(LoadGen.plateau(laps(0.0, 100_000, 105_000))).as("fewer than 3 laps").isFalse();
    assertThat(LoadGen.plateau(laps(0.5, 1_245, 1_250, 1_164)))
        .as("flat only because other processes starve it (half the machine)").isFalse();
  }

  /** Warm-up laps {echo/s, Sluice/s, others' share} with the same others' share. */
  private static List<double[]> laps(double others, double... echo) {
    return java.util.Arrays.stream(echo).mapToObj(e -> new double[] {e, e / 2, others}).toList();
  }

  @Test
  void theWarmUpMaximumIsAtLeastTheMinimum() {
    assertThat(Options.parse(new String[0]).jvmWarmupMax()).isEqualTo(Options.DEFAULT_JVM_WARMUP_MAX);
    assertThat(Options.parse(new String[] {"--jvm-warmup", "90s"}).jvmWarmupMax()).isEqualTo(Duration.ofSeconds(90));
    assertThat(Options.parse(new String[] {"--quick"}).jvmWarmupMax()).isEqualTo(Duration.ofSeconds(1));
    assertThatThrownBy(() -> Options.parse(new String[] {"--jvm-warmup", "30s", "--jvm-warmup-max", "10s"}))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("--jvm-warmup-max 10000ms is shorter than --jvm-warmup 30000ms");
  }
}
