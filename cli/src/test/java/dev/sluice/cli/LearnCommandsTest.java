package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.client.SluiceClient;
import dev.sluice.server.SluiceServer;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code limit set --learn} against a real coordinator: the conservative start, the limit a
 * worker's report of the provider's headers sets (through the SDK and the Report RPC), what
 * {@code limit get} says, and bad input refused with the fix.
 */
class LearnCommandsTest {

  @TempDir
  static Path dataDir;
  static SluiceServer server;
  static String target;

  @BeforeAll
  static void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).build().start();
    target = "127.0.0.1:" + server.port();
  }

  @AfterAll
  static void stop() {
    server.close();
  }

  private static CliRun sluice(String... args) {
    return CliRun.at(target, args);
  }

  @Test
  void startsConservativeThenTakesTheLimitFromTheFirstReport() {
    CliRun set = sluice("limit", "set", "learn-openai", "--learn", "openai", "--learn-ceiling", "tokens=150000/min");
    assertThat(set.exit()).as(set.err()).isZero();
    assertThat(set.out()).contains("requests=60/min:1").contains("tokens=10000/min:83")
        .containsPattern("rates +from openai: no openai limit headers reported yet; the starting limit is in place")
        .containsPattern("learn ceiling +tokens=150000/min");

    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      client.reportHeaders("learn-openai", Map.of(
          "x-ratelimit-limit-requests", "500", "x-ratelimit-remaining-requests", "499",
          "x-ratelimit-limit-tokens", "200000", "x-ratelimit-reset-tokens", "6m0s"));
    }
    CliRun get = sluice("limit", "get", "learn-openai");
    assertThat(get.exit()).as(get.err()).isZero();
    assertThat(get.out()).contains("requests=500/min:4").contains("tokens=150000/min:1250")
        .containsPattern("rates +learned from openai at 20\\d\\d-\\d\\d-\\d\\dT[0-9:.]+Z, was requests=60/min:1 tokens=10000/min:83");
  }

  @Test
  void aGivenStartingLimitIsKeptUntilHeadersCome() {
    CliRun set = sluice("limit", "set", "learn-azure", "--learn", "azure", "--rate", "requests=300/min:2");
    assertThat(set.exit()).as(set.err()).isZero();
    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      // Azure states what remains, not the limit: nothing to learn from.
      client.reportHeaders("learn-azure", Map.of("x-ratelimit-remaining-requests", "250"));
    }
    assertThat(sluice("limit", "get", "learn-azure").out()).contains("requests=300/min:2")
        .contains("no azure limit headers reported yet; the starting limit is in place");
  }

  @Test
  void anthropicStartsWithEveryDimensionItsHeadersName() {
    CliRun set = sluice("limit", "set", "learn-anthropic", "--learn", "anthropic");
    assertThat(set.exit()).as(set.err()).isZero();
    assertThat(set.out()).contains("requests=50/min:1", "tokens=24000/min:200", "input-tokens=20000/min:166",
        "output-tokens=4000/min:33");
  }

  @Test
  void anUnknownProviderIsRefusedWithTheChoices() {
    CliRun run = sluice("limit", "set", "learn-bad", "--learn", "gemini");
    assertThat(run.exit()).isNotZero();
    assertThat(run.err()).contains("--learn gemini is not a provider Sluice reads: use --learn openai,"
        + " --learn azure or --learn anthropic");
  }

  @Test
  void aCeilingOnADimensionTheLimitLacksIsRefusedWithTheFix() {
    CliRun run = sluice("limit", "set", "learn-bad", "--learn", "openai", "--rate", "requests=60/min",
        "--learn-ceiling", "input-tokens=9000/min");
    assertThat(run.exit()).isNotZero();
    assertThat(run.err()).contains("--learn-ceiling input-tokens names no rate of this limit (its rates: requests):"
        + " add --rate input-tokens=N/min or drop that ceiling");
    CliRun noLearn = sluice("limit", "set", "learn-bad", "--rate", "requests=60/min", "--learn-ceiling", "requests=90/min");
    assertThat(noLearn.exit()).isNotZero();
    assertThat(noLearn.err()).contains("--learn-ceiling limits a learned limit: add --learn openai");
  }
}
