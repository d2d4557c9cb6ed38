package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Micrometer and grpc-services are optional dependencies of the SDK: a client works in a JVM
 * whose classpath lacks them. Runs {@link OptionalDependenciesMain} in a child JVM on this test's
 * classpath minus those jars.
 */
class OptionalDependenciesTest {

  @Test
  void clientWorksWithoutMicrometerAndGrpcServices() throws Exception {
    List<String> full = Arrays.asList(testClassPath().split(File.pathSeparator));
    List<String> without = full.stream().filter(entry -> !optional(entry)).toList();
    assertThat(full.size() - without.size()).as("the optional jars were on the test classpath, and are left out")
        .isGreaterThanOrEqualTo(2);

    Process child = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", String.join(File.pathSeparator, without), OptionalDependenciesMain.class.getName())
        .redirectErrorStream(true)
        .start();
    String output = new String(child.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(child.waitFor(60, TimeUnit.SECONDS)).isTrue();

    assertThat(child.exitValue()).as(output).isZero();
    // Two acquires: the warm-up's (for the empty name) and the worker's.
    assertThat(output).contains("OK acquires=2 reports=2 paused=PT2S");
    assertThat(output).as("says what is missing and what it costs")
        .contains("io.grpc:grpc-services is not on the classpath");
  }

  @Test
  void withGrpcServicesTheNodesOfAListAreProbed() {
    assertThat(NodeProber.HEALTH_STUBS).isTrue();
  }

  private static boolean optional(String entry) {
    String name = Path.of(entry).getFileName().toString();
    return name.startsWith("micrometer-") || name.startsWith("grpc-services-");
  }

  /** Surefire may start the test JVM from a manifest-only jar; it then gives the real path here. */
  private static String testClassPath() {
    String surefire = System.getProperty("surefire.test.class.path");
    return surefire != null && !surefire.isBlank() ? surefire : System.getProperty("java.class.path");
  }
}
