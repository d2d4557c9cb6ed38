package dev.sluice.examples;

import static dev.sluice.examples.ClientProcesses.cli;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.examples.mock.MockOpenAi;
import dev.sluice.server.GrantSampler;
import dev.sluice.server.ServerTestHooks;
import dev.sluice.server.SluiceServer;
import dev.sluice.server.engine.RateSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Python demo ({@code examples/python/openai_demo.py}, which {@code examples/run-python-demo.sh}
 * runs for a minute a phase) in a short version: 4 processes × 16 asyncio tasks on the strict mock
 * upstream, 6 s without Sluice, then 6 s through {@code sluice.openai.transport} on a real
 * coordinator.
 *
 * <p>As in {@link OpenAiQuotaIT}, what is asserted is what cannot depend on the machine's load:
 * the coordinator's grants, read every 10 ms ({@link GrantSampler}), never exceed burst + rate ×
 * time, and without Sluice the mock says 429. The upstream's 429s with Sluice and the share of the
 * TPM used are measured where the calls arrive, after a hop through Python processes on shared
 * cores: they are printed, and the README states the figures of a full run.
 */
class PythonDemoIT {

  private static final Path DEMO =
      Path.of(System.getProperty("sluice.python.demo", "python/openai_demo.py")).toAbsolutePath().normalize();
  private static final RateSpec REQUESTS = new RateSpec("requests", 600, Duration.ofMinutes(1), 5);
  private static final RateSpec TOKENS = new RateSpec("tokens", 40_000, Duration.ofMinutes(1), 333);

  @TempDir Path dir;

  @Test
  void pythonWorkersShareOneQuotaThroughTheTransportAndWithoutItTheUpstreamSays429() throws Exception {
    String python = ClientProcesses.python("PythonDemoIT", false);
    try (SluiceServer sluice = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0)
            .shutdownGrace(Duration.ZERO).dataDir(dir.resolve("sluice-data")).build().start();
        MockOpenAi mock = MockOpenAi.builder().rpm(600).tpm(40_000).burstSeconds(1.0).build().start()) {
      // As run-python-demo.sh: Sluice's bursts half the mock's one-second sub-window.
      cli("127.0.0.1:" + sluice.port(), null, "limit", "set", "openai", "--rate", "requests=600/min:5",
          "--rate", "tokens=40000/min:333");
      Path summary = dir.resolve("demo.json");
      List<GrantSampler.Sample> samples;
      ClientProcesses.Ran ran;
      try (GrantSampler sampler = GrantSampler.start(ServerTestHooks.engine(sluice), "openai")) {
        ran = ClientProcesses.run("python-demo", DEMO.getParent(), Duration.ofMinutes(2), Map.of(),
            python, DEMO.toString(), "--mock", "http://127.0.0.1:" + mock.port(),
            "--sluice", "http://127.0.0.1:" + sluice.httpPort(), "--tpm", "40000", "--procs", "4", "--tasks", "16",
            "--duration", "6", "--summary", summary.toString());
        samples = sampler.stop();
      }
      assertThat(ran.exit()).as("the demo's exit: see its output above").isZero();
      GrantSampler.Densest req = GrantSampler.assertWithinLimit(samples, REQUESTS, s -> s.used("requests"), s -> 0);
      GrantSampler.Densest tok =
          GrantSampler.assertWithinLimit(samples, TOKENS, s -> s.used("tokens"), s -> s.debt("tokens"));
      System.out.printf("[PythonDemoIT] coordinator, densest stretch of at most 1 s: %s requests, %s tokens;"
          + " %d reads%n", req, tok, samples.size());

      JsonNode phases = new ObjectMapper().readTree(summary.toFile());
      JsonNode without = phases.get(0);
      JsonNode with = phases.get(1);
      assertThat(without.get("sluice").asBoolean()).isFalse();
      assertThat(with.get("sluice").asBoolean()).isTrue();
      assertThat(without.get("upstream_429s").asLong()).as("the mock is strict: no coordination gets 429s")
          .isPositive();
      assertThat(with.get("done").asLong()).as("calls done through the transport").isPositive();
    }
  }
}
