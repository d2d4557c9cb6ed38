package dev.sluice.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Keeps the harness working: the load generator in a tiny mode (a fraction of a second per
 * scenario, small scale) writes the report and both charts with every expected section. No
 * assertion on any figure: timings belong to the benchmark, never to a test.
 */
class LoadGenSmokeTest {

  @Test
  void tinyRunWritesTheReportAndCharts(@TempDir Path out) throws Exception {
    ByteArrayOutputStream console = new ByteArrayOutputStream();
    Options options = Options.parse(new String[] {
        "--only", "ceiling,memory,contended,scale",
        "--jvm-warmup", "0s", "--warmup", "200ms", "--duration", "600ms", "--rounds", "3",
        "--workers", "8", "--waiters", "200", "--contended-rate", "500",
        "--scale-resources", "2000", "--scale-waiters", "2000", "--scale-waiter-resources", "20",
        "--noise-retries", "0",
        "--out", out.toString(), "--jmh-json", out.resolve("no-jmh.json").toString()});

    Path report = LoadGen.run(options, new PrintStream(console, true, StandardCharsets.UTF_8));

    assertThat(report).isEqualTo(out.resolve("BENCHMARKS.md"));
    String md = Files.readString(report);
    assertThat(md).startsWith("# Sluice benchmarks")
        .contains("Generated file.", "**Machine:**", "## Targets", "| target | measured | result |",
            "## 1. The ceiling", "## 2. Sluice, memory store, uncontended", "## 3. Sluice, memory store, contended",
            "## 6. Scale", "## 7. Engine micro-benchmarks (JMH)", "## How to run",
            "docs/bench/throughput.svg", "docs/bench/latency.svg",
            "uncontended acquire p50", "accuracy", "per waiter",
            "echo unary, client directExecutor, again at the end", "echo bidi stream, batched as the SDK's session",
            "warm-up: echo unary calls/s at 8 in flight")
        // A scenario may end with no operation in its tiny windows on a loaded CI box; any other
        // failure is the harness breaking.
        .doesNotContainPattern("failed: (?!no operation completed)");
    for (String chart : new String[] {"throughput.svg", "latency.svg"}) {
      String svg = Files.readString(out.resolve("docs/bench").resolve(chart));
      assertThat(svg).startsWith("<svg").contains("echo unary", "Sluice memory").endsWith("</svg>\n");
    }
    assertThat(console.toString(StandardCharsets.UTF_8)).contains("[ 1/", "Targets (ratios within this run):")
        .doesNotContainPattern("FAILED: (?!no operation completed)");
  }

  /**
   * The keys and HTTP groups in a tiny run: each keyed or HTTP row beside its baseline, with the
   * ratio line, in the report and on the console; the JVM warm-up prints its laps.
   */
  @Test
  void keysAndHttpRowsComeWithTheirBaselineAndRatio(@TempDir Path out) throws Exception {
    ByteArrayOutputStream console = new ByteArrayOutputStream();
    Options options = Options.parse(new String[] {
        "--only", "keys,http", "--jvm-warmup", "2s", "--jvm-warmup-max", "2s", "--warmup", "200ms", "--duration", "600ms", "--rounds", "3",
        "--workers", "8", "--noise-retries", "0",
        "--out", out.toString(), "--jmh-json", out.resolve("no-jmh.json").toString()});

    String md = Files.readString(LoadGen.run(options, new PrintStream(console, true, StandardCharsets.UTF_8)));

    assertThat(md).contains("## 4a. The cost of API keys", "Sluice memory, open (no API keys)",
            "Sluice memory, worker key (role + resource glob)", "Sluice memory, open again (keys revoked)",
            "- worker key vs open: ", "## 4b. HTTP API against GET /healthz", "HTTP GET /healthz",
            "- HTTP acquire+release vs GET /healthz: ", "counting both requests of a permit",
            "| coordinator |", "| same JVM |", "**Coordinators:** coordinators in the load generator's JVM",
            "**Warm-up.** Before the first scenario, at least 2.0 s and at most 2.0 s of laps")
        .doesNotContainPattern("failed: (?!no operation completed)");
    assertThat(console.toString(StandardCharsets.UTF_8)).contains("lap  1: echo ", "same JVM",
        "worker key vs open: ", "HTTP acquire+release vs GET /healthz: ");
  }

  @Test
  void optionsRefuseNonsense() {
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> Options.parse(new String[] {"--only", "nope"}))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("unknown group 'nope'");
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> Options.parse(new String[] {"--warmup", "3 parsecs"}))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("not like 500ms");
    assertThat(Options.parse(new String[] {"--quick"}).round().toMillis()).isEqualTo(400);
    assertThat(Options.parse(new String[] {"--noise-retries", "0"}).noiseRetries()).isZero();
  }
}
