package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import com.google.protobuf.util.JsonFormat;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.InvalidRequestException;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.GetStatsResponse;
import dev.sluice.proto.v1.Limit;
import dev.sluice.server.SluiceServer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code sluice price} and budgets in money, against a real coordinator on loopback. */
class PriceCommandsTest {

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
  void setListAndDeleteAPrice() {
    CliRun set = sluice("price", "set", "gpt-4o-mini", "--input", "0.15/M", "--output", "0.60/M",
        "--cached-input", "0.075/M");
    assertThat(set.exit()).as(set.err()).isZero();
    assertThat(set.out()).isEqualTo("price of gpt-4o-mini: input $0.15/M, output $0.6/M, cached input $0.075/M\n");

    CliRun noCached = sluice("price", "set", "list-me", "--input", "$2.50", "--output", "10/M");
    assertThat(noCached.out()).as("cached input defaults to the input price").contains("cached input $2.5/M");

    CliRun list = sluice("price", "list");
    assertThat(list.exit()).isZero();
    assertThat(list.out()).containsPattern("MODEL +INPUT \\$/M +OUTPUT \\$/M +CACHED INPUT \\$/M")
        .containsPattern("gpt-4o-mini +0.15 +0.6 +0.075").containsPattern("list-me +2.5 +10 +2.5");

    CliRun deleted = sluice("price", "delete", "list-me");
    assertThat(deleted.exit()).as(deleted.err()).isZero();
    assertThat(deleted.out()).isEqualTo("deleted price of list-me\n");
    assertThat(sluice("price", "list").out()).doesNotContain("list-me");

    CliRun again = sluice("price", "delete", "list-me");
    assertThat(again.exit()).isEqualTo(1);
    assertThat(again.err()).startsWith("error: NOT_FOUND: ").contains("list-me").contains("sluice price list");
  }

  @Test
  void badPricesAreRefusedNamingTheFix() {
    CliRun negative = sluice("price", "set", "m", "--input", "-0.15/M", "--output", "1/M");
    assertThat(negative.exit()).isEqualTo(1);
    assertThat(negative.err()).hasLineCount(1).startsWith("error: INVALID_ARGUMENT: ")
        .contains("input price of model 'm' is negative").contains("0.15/M");

    CliRun garbage = sluice("price", "set", "m", "--input", "0.15", "--output", "cheap");
    assertThat(garbage.exit()).isEqualTo(1);
    assertThat(garbage.err()).contains("output price of model 'm' is 'cheap', not a price")
        .contains("DOLLARS/M, e.g. 0.15/M");

    CliRun perThousand = sluice("price", "set", "m", "--input", "0.15/K", "--output", "1/M");
    assertThat(perThousand.err()).contains("not a price");

    CliRun badName = sluice("price", "set", "bad model!", "--input", "1/M", "--output", "1/M");
    assertThat(badName.err()).contains("model name 'bad model!' must be 1-200 characters");

    CliRun missing = sluice("price", "set", "m", "--input", "1/M");
    assertThat(missing.exit()).isEqualTo(2);
    assertThat(missing.err()).contains("--output");
    assertThat(sluice("price", "list").out()).doesNotContainPattern("(?m)^m ");
  }

  @Test
  void usdIsTypedAndShownInDollars() throws Exception {
    CliRun set = sluice("limit", "set", "dollars", "--rate", "usd=50/day", "--rate", "requests=10/s");
    assertThat(set.exit()).as(set.err()).isZero();
    assertThat(set.out()).containsPattern("rate +usd=50/d:0\\.000578").contains("requests=10/s");
    assertThat(set.err()).isEqualTo("note: usd=50/d has the default burst, $0.000578 (one second's worth): a call"
        + " costing more can never fit; give the most one call may cost, e.g. usd=50/d:1\n");

    Limit.Builder stored = Limit.newBuilder();
    JsonFormat.parser().merge(sluice("limit", "get", "dollars", "--json").out(), stored);
    assertThat(stored.getRates(0).getName()).isEqualTo("usd");
    assertThat(stored.getRates(0).getAmount()).as("micro-dollars").isEqualTo(50_000_000L);

    CliRun burst = sluice("limit", "set", "dollars", "--rate", "usd=0.25/min:0.05");
    assertThat(burst.out()).contains("usd=0.25/min:0.05");
    assertThat(burst.err()).isEmpty();
    JsonFormat.parser().merge(sluice("limit", "get", "dollars", "--json").out(), stored.clear());
    assertThat(stored.getRates(0).getAmount()).isEqualTo(250_000L);
    assertThat(stored.getRates(0).getBurst()).isEqualTo(50_000L);
  }

  @Test
  void anAcquireForAModelIsChargedItsCostAndSettledFromTheActualTokens() throws Exception {
    assertThat(sluice("price", "set", "priced", "--input", "0.15/M", "--output", "0.60/M").exit()).isZero();
    assertThat(sluice("limit", "set", "budget", "--rate", "usd=1/min:1").exit()).isZero();
    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      Permit permit = client.acquire("budget", Load.tokens(1000, 500),
          AcquireOptions.builder().model("priced").build());
      // 1000 × 0.15 + 500 × 0.60 micro-dollars; the token counts are priced, not limited.
      assertThat(permit.granted().asMap()).isEqualTo(Map.of("usd", 450L));
      assertThat(used("budget")).isEqualTo(450);
      CliRun stats = sluice("stats", "budget");
      assertThat(stats.out()).contains("spent on budget: $0.00045 ").containsPattern("budget +usd=\\$0\\.\\d+ ");

      permit.settle(Load.tokens(1000, 101)); // 150 + 60.6, rounded up
      permit.close();
      await().atMost(Duration.ofSeconds(10)).until(() -> used("budget") == 211);

      Permit explicit = client.acquire("budget", Load.of(Map.of("usd", 7L, "input_tokens", 1_000_000L)),
          AcquireOptions.builder().model("priced").build());
      assertThat(explicit.granted().asMap()).as("a load that gives usd itself is not priced again")
          .isEqualTo(Map.of("usd", 7L));
      explicit.close();
    }
  }

  @Test
  void aSessionStreamPricesAcquiresAndSettlesAlike() throws Exception {
    assertThat(sluice("price", "set", "streamed", "--input", "1/M", "--output", "2/M").exit()).isZero();
    assertThat(sluice("limit", "set", "session-budget", "--rate", "usd=1/min:1").exit()).isZero();
    try (SluiceClient client = SluiceClient.builder().target(target).session(1).build()) {
      Permit permit = client.acquire("session-budget", Load.tokens(100, 50),
          AcquireOptions.builder().model("streamed").build());
      assertThat(permit.granted().asMap()).isEqualTo(Map.of("usd", 200L));
      permit.settle(Load.tokens(100, 10));
      permit.close();
      await().atMost(Duration.ofSeconds(10)).until(() -> used("session-budget") == 120);
    }
  }

  @Test
  void aCallThatCannotBePricedIsRefusedNamingTheFix() throws Exception {
    assertThat(sluice("limit", "set", "refusing", "--rate", "usd=1/min:1", "--rate", "requests=100/s").exit())
        .isZero();
    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      assertThatThrownBy(() -> client.acquire("refusing", Load.tokens(10, 10),
          AcquireOptions.builder().model("no-such-model").build()))
          .isInstanceOf(InvalidRequestException.class)
          .hasMessageContaining("model 'no-such-model' has no price")
          .hasMessageContaining("sluice price set no-such-model --input 0.15/M --output 0.60/M");
      assertThatThrownBy(() -> client.acquire("refusing", Load.tokens(10, 10)))
          .isInstanceOf(InvalidRequestException.class)
          .hasMessageContaining("gives token counts (input_tokens, output_tokens) but no model")
          .hasMessageContaining("AcquireOptions.model");
      assertThat(used("refusing")).as("nothing was charged").isZero();

      // Without usd in the limit a model is not needed, and its tokens are only dropped.
      assertThat(sluice("limit", "set", "no-usd", "--rate", "requests=100/s").exit()).isZero();
      try (Permit p = client.acquire("no-usd", Load.tokens(10, 10), AcquireOptions.builder().model("unpriced")
          .build())) {
        assertThat(p.granted().asMap()).isEqualTo(Map.of("requests", 1L));
      }
      assertThatThrownBy(() -> client.acquire("no-usd", Load.tokens(10, 10)))
          .as("without a model the engine judges token dimensions as any other")
          .isInstanceOf(InvalidRequestException.class).hasMessageContaining("add it to the limit");
    }
  }

  @Test
  void pricesSurviveARestart(@TempDir Path dir) throws Exception {
    try (SluiceServer first = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir).build().start()) {
      String to = "127.0.0.1:" + first.port();
      assertThat(CliRun.at(to, "price", "set", "kept", "--input", "3/M", "--output", "15/M").exit()).isZero();
    }
    Path file = dir.resolve("prices.json");
    assertThat(Files.getPosixFilePermissions(file)).isEqualTo(PosixFilePermissions.fromString("rw-------"));
    try (SluiceServer second = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir).build().start()) {
      CliRun list = CliRun.at("127.0.0.1:" + second.port(), "price", "list");
      assertThat(list.out()).containsPattern("kept +3 +15 +3");
    }
  }

  private static long used(String resource) throws Exception {
    GetStatsResponse.Builder stats = GetStatsResponse.newBuilder();
    JsonFormat.parser().merge(sluice("stats", resource, "--json").out(), stats);
    return Math.round(stats.getResources(0).getUsedOrDefault("usd", 0));
  }
}
