package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.util.JsonFormat;
import dev.sluice.proto.v1.Limit;
import dev.sluice.server.SluiceServer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code limit set --share/--floor/--cap}, {@code limit get/list} showing them, and {@code key create
 * --tenant}, against a real coordinator; bad syntax refused before any call, the server's range
 * checks answered with its message.
 */
class TenantCommandsTest {

  /** Nothing listens here: a usage error must be found before any call. */
  private static final String NOWHERE = "--target=127.0.0.1:1";

  @TempDir Path dataDir;
  private SluiceServer server;
  private String target;

  @BeforeEach
  void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).build().start();
    target = "--target=127.0.0.1:" + server.port();
  }

  @AfterEach
  void stop() {
    server.close();
  }

  private CliRun sluice(String... args) {
    List<String> argv = new ArrayList<>(List.of(args));
    argv.add(target);
    return CliRun.of(argv.toArray(String[]::new));
  }

  @Test
  void sharesFloorsAndCapsAreSetShownByGetAndListAndKeptAsJson() throws Exception {
    CliRun set = sluice("limit", "set", "teams", "--rate", "requests=600/min:100", "--rate", "tokens=6000/min:1000",
        "--share", "search=3", "--share", "batch=0.5", "--floor", "search=40%", "--floor", "ads=12.5%",
        "--cap", "research=tokens=1000/min", "--cap", "batch=requests=60/min:10", "--cap", "batch=tokens=3000/min:500");
    assertThat(set.exit()).as(set.err()).isZero();
    assertThat(set.out()).startsWith("created limit teams");

    CliRun get = sluice("limit", "get", "teams");
    assertThat(get.exit()).as(get.err()).isZero();
    assertThat(get.out()).containsPattern("share +batch=0\\.5").containsPattern("share +search=3")
        .containsPattern("floor +ads=12\\.5%").containsPattern("floor +search=40%")
        .containsPattern("cap +batch=requests=60/min:10").containsPattern("cap +batch=tokens=3000/min:500")
        .containsPattern("cap +research=tokens=1000/min:16");

    CliRun json = sluice("limit", "get", "teams", "--json");
    Limit.Builder limit = Limit.newBuilder();
    JsonFormat.parser().merge(json.out(), limit);
    assertThat(limit.getSharesMap()).isEqualTo(Map.of("search", 3.0, "batch", 0.5));
    assertThat(limit.getFloorsMap()).as("floors travel as fractions").isEqualTo(Map.of("search", 0.4, "ads", 0.125));
    assertThat(limit.getCapsOrThrow("batch").getRatesCount()).isEqualTo(2);

    CliRun list = sluice("limit", "list");
    assertThat(list.out()).contains("TENANTS").contains("batch=0.5,search=3 floors 2 caps 2");

    // What `limit get` prints is what the options read: set again from it, the same limit.
    CliRun plain = sluice("limit", "set", "plain", "--rate", "tokens=10/s");
    assertThat(plain.out()).doesNotContain("share").doesNotContain("floor").doesNotContain("cap ");
    assertThat(sluice("limit", "list").out()).containsPattern("plain .* -\\R");
  }

  @ParameterizedTest
  @CsvSource(delimiter = '|', quoteCharacter = '"', value = {
      "--share|search|bad --share 'search': missing '=' after the tenant; expected TENANT=WEIGHT, e.g. search=3",
      "--share|=3|missing tenant name before '='",
      "--share|a b=3|tenant name 'a b' must be 1-64 characters",
      "--share|search=-1|weight '-1' is not a number above 0",
      "--share|search=0|the weight must be above 0 (unnamed tenants weigh 1)",
      "--share|search=lots|weight 'lots' is not a number",
      "--floor|search=40|a floor is a percent of the quota: end it with '%'; expected TENANT=PCT%, e.g. search=40%",
      "--floor|search=0.4|end it with '%'",
      "--floor|search=140%|the percent must be above 0 and at most 100",
      "--floor|search=%|missing percent",
      "--cap|research|missing '=' after the tenant; expected TENANT=DIM=AMOUNT/PERIOD[:BURST]",
      "--cap|research=tokens|bad --cap 'research=tokens' (TENANT=DIM=AMOUNT/PERIOD[:BURST]): bad rate 'tokens':"
          + " missing '=' between the dimension and the amount",
      "--cap|research=tokens=5/fortnight|unknown period 'fortnight'",
  })
  void badSyntaxExitsTwoWithOneLineNamingTheProblemAndTheForm(String option, String value, String problem) {
    CliRun run = CliRun.of("limit", "set", "teams", "--rate", "tokens=10/s", option, value, NOWHERE);
    assertThat(run.exit()).as(run.err()).isEqualTo(2);
    assertThat(run.out()).isEmpty();
    assertThat(run.err()).hasLineCount(1).startsWith("error: invalid value for " + option + ": ").contains(problem);
  }

  @Test
  void aTenantGivenTwiceIsAUsageError() {
    CliRun shares = CliRun.of("limit", "set", "t", "--rate", "tokens=10/s", "--share", "a=1", "--share", "a=2", NOWHERE);
    assertThat(shares.exit()).isEqualTo(2);
    assertThat(shares.err()).contains("--share gives tenant 'a' twice: give each tenant's weight once");
    CliRun floors = CliRun.of("limit", "set", "t", "--rate", "tokens=10/s", "--floor", "a=1%", "--floor", "a=2%",
        NOWHERE);
    assertThat(floors.err()).contains("--floor gives tenant 'a' twice");
    CliRun caps = CliRun.of("limit", "set", "t", "--rate", "tokens=10/s", "--cap", "a=tokens=1/s", "--cap",
        "a=tokens=2/s", NOWHERE);
    assertThat(caps.err()).contains("--cap gives tenant 'a' dimension 'tokens' twice");
  }

  @Test
  void theServersRangeChecksReachTheCliWithTheirMessage() {
    CliRun floors = sluice("limit", "set", "t", "--rate", "tokens=10/s", "--floor", "a=60%", "--floor", "b=50%");
    assertThat(floors.exit()).isEqualTo(1);
    assertThat(floors.err()).hasLineCount(1).startsWith("error: INVALID_ARGUMENT: ")
        .contains("the floors of 't' sum to 110.0 %", "lower some");
    CliRun cap = sluice("limit", "set", "t", "--rate", "tokens=10/s", "--cap", "a=tokens=20/s");
    assertThat(cap.exit()).isEqualTo(1);
    assertThat(cap.err()).contains("INVALID_ARGUMENT", "the cap of tenant 'a' on tokens", "above the quota itself");
    CliRun dim = sluice("limit", "set", "t", "--rate", "tokens=10/s", "--cap", "a=requests=1/s");
    assertThat(dim.err()).contains("which the limit of 't' does not have", "cap one of its dimensions (tokens)");
    CliRun huge = sluice("limit", "set", "t", "--rate", "tokens=10/s", "--share", "a=2000000");
    assertThat(huge.err()).contains("share a=2000000.0 is out of range", "at most 1000000");
    assertThat(sluice("limit", "get", "t").exit()).as("nothing was stored").isEqualTo(1);
  }

  @Test
  void keyCreateBindsAWorkerKeyToATenantShownByListAndRefusesItOnAnAdminKey() {
    CliRun adminRefused = sluice("key", "create", "--role", "admin", "--tenant", "search");
    assertThat(adminRefused.exit()).isEqualTo(1);
    assertThat(adminRefused.err()).contains("INVALID_ARGUMENT", "admin keys act in every tenant");
    String admin = sluice("key", "create", "--role", "admin").out().trim();
    CliRun worker = sluice("key", "create", "--role", "worker", "--tenant", "search", "--api-key=" + admin);
    assertThat(worker.exit()).as(worker.err()).isZero();
    assertThat(worker.err()).contains("tenant search");
    CliRun bad = sluice("key", "create", "--role", "worker", "--tenant", "a b", "--api-key=" + admin);
    assertThat(bad.err()).contains("INVALID_ARGUMENT", "tenant name 'a b' is invalid");
    CliRun list = sluice("key", "list", "--api-key=" + admin);
    assertThat(list.out()).contains("TENANT").containsPattern("worker +\\* +search");
  }

  @Test
  void keyCreateOfflineWritesTheTenantIntoTheKeyFile() throws Exception {
    server.close();
    CliRun admin = CliRun.of("key", "create", "--role", "admin", "--data-dir", dataDir.toString());
    assertThat(admin.exit()).as(admin.err()).isZero();
    CliRun worker = CliRun.of("key", "create", "--role", "worker", "--tenant", "search", "--data-dir",
        dataDir.toString());
    assertThat(worker.exit()).as(worker.err()).isZero();
    assertThat(java.nio.file.Files.readString(dataDir.resolve("keys.json"))).contains("\"tenant\" : \"search\"");
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).build().start();
  }
}
