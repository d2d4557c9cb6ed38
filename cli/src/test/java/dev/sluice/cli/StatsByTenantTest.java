package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.google.protobuf.util.JsonFormat;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.GetStatsResponse;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.TenantStats;
import dev.sluice.server.SluiceServer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code sluice stats NAME --by tenant} against a real coordinator on the memory store: the
 * policy's weights, floors and caps, recent shares against fair shares, use (dollars on a limit
 * that counts usd), waiters and wait estimates, a tenant without traffic, the summary line of
 * plain {@code stats}, {@code --json}, and the refusals.
 */
class StatsByTenantTest {

  @TempDir static Path dataDir;
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

  private static AcquireOptions as(String tenant) {
    return AcquireOptions.builder().tenant(tenant).timeout(Duration.ofSeconds(30)).build();
  }

  @Test
  void oneRowPerTenantWithItsPolicyShareUseWaitersAndEstimates() throws Exception {
    CliRun set = sluice("limit", "set", "teams", "--rate", "requests=600/min:100", "--rate", "tokens=60000/min:5000",
        "--share", "search=3", "--share", "batch=1", "--floor", "search=40%", "--cap", "research=tokens=1000/min");
    assertThat(set.exit()).as(set.err()).isZero();
    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      // search takes 900 tokens, batch 300: tokens is the binding dimension (1 200 of 1 000/s
      // against 4 of 10/s requests), and their shares are 75 % and 25 %, as their weights 3:1.
      for (int i = 0; i < 3; i++) {
        client.acquire("teams", Load.of("requests", 1, "tokens", 300), as("search")).close();
      }
      client.acquire("teams", Load.of("requests", 1, "tokens", 300), as("batch")).close();

      CliRun by = sluice("stats", "teams", "--by", "tenant");
      assertThat(by.exit()).as(by.err()).isZero();
      assertThat(by.out()).containsPattern("tenants of teams · shares of tokens \\(the binding dimension\\) over the"
          + " last \\S+")
          .containsPattern("TENANT +WEIGHT +FLOOR +CAP +SHARE +FAIR SHARE +WAITING +USED RECENTLY +USED SINCE START"
              + " +EST\\. WAIT interactive/default/batch")
          .containsPattern("(?m)^batch +1 +- +- +25 % +25 % +0 +requests=1 tokens=300 +requests=1 tokens=300 +0 s/0 s/0 s")
          .containsPattern("(?m)^search +3 +40 % +- +75 % +75 % +0 +requests=3 tokens=900 +requests=3 tokens=900"
              + " +0 s/0 s/0 s")
          // Named with a cap, never used: a row of its own, no share, no fair share while idle.
          .containsPattern("(?m)^research +1 +- +tokens=1000/min:16 +0 % +0 % +0 +requests=0 tokens=0 +requests=0"
              + " tokens=0 +0 s/0 s/0 s")
          .containsPattern("(?m)^default +1 +- +- +0 % +0 % +0 ")
          .contains(TenantStatsView.LEGEND);
      assertThat(by.out()).as("no unnamed tenant came: no other row").doesNotContainPattern("(?m)^other ");

      CliRun plain = sluice("stats", "teams");
      assertThat(plain.exit()).as(plain.err()).isZero();
      assertThat(plain.out()).as("the table as before, plus one line on the tenants")
          .contains("RESOURCE", "AVAILABLE NOW")
          .containsPattern("tenants of teams: batch 25 % \\(fair 25 %\\), search 75 % \\(fair 75 %\\) of tokens over"
              + " the last [^;]+; 0 waiting; `sluice stats teams --by tenant` for each tenant's weight, floor, cap,"
              + " use and wait");

      // Paused until resumed: batch's acquire waits, and every estimate says only a resume helps.
      assertThat(sluice("pause", "teams").exit()).isZero();
      CompletableFuture<Permit> waiting = client.acquireAsync("teams", Load.of("requests", 1, "tokens", 10),
          as("batch"));
      await().atMost(Duration.ofSeconds(10)).until(() -> tenant(stats("teams"), "batch").getWaiting() == 1);
      CliRun paused = sluice("stats", "teams", "--by", "tenant");
      assertThat(paused.out())
          .containsPattern("(?m)^batch +1 +- +- +25 % +25 % +1 .* until resumed/until resumed/until resumed\\R");
      assertThat(sluice("stats", "teams").out()).contains("; 1 waiting; ");
      assertThat(sluice("resume", "teams").exit()).isZero();
      waiting.get().close();

      ResourceStats json = stats("teams");
      assertThat(json.getBindingDimension()).isEqualTo("tokens");
      assertThat(json.getTenantWindowSeconds()).isPositive();
      assertThat(json.getTenantsList()).extracting(TenantStats::getTenant)
          .containsExactly("batch", "default", "research", "search");
      TenantStats search = tenant(json, "search");
      assertThat(search.getWeight()).isEqualTo(3.0);
      assertThat(search.getFloor()).isEqualTo(0.4);
      assertThat(search.getUsedMap()).isEqualTo(Map.of("requests", 3.0, "tokens", 900.0));
      assertThat(search.getEstimatedWaitSecondsMap()).isEqualTo(Map.of("interactive", 0.0, "default", 0.0,
          "batch", 0.0));
      assertThat(tenant(json, "research").getCap(0).getAmount()).isEqualTo(1000);
      assertThat(tenant(json, "batch").getRecentUsedMap()).isEqualTo(Map.of("requests", 2.0, "tokens", 310.0));
    }
  }

  @Test
  void aLimitThatCountsDollarsShowsEachTenantsSpendAndUnnamedTenantsAsOther() throws Exception {
    assertThat(sluice("price", "set", "tenant-priced", "--input", "0.15/M", "--output", "0.60/M").exit()).isZero();
    assertThat(sluice("limit", "set", "budget-by-team", "--rate", "usd=1/min:1", "--share", "ads=2").exit()).isZero();
    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      // 1000 × 0.15 + 500 × 0.60 = 450 micro-dollars each; zed is not named: counted as other.
      client.acquire("budget-by-team", Load.tokens(1000, 500),
          AcquireOptions.builder().model("tenant-priced").tenant("ads").build()).close();
      client.acquire("budget-by-team", Load.tokens(1000, 500),
          AcquireOptions.builder().model("tenant-priced").tenant("ads").build()).close();
      client.acquire("budget-by-team", Load.tokens(1000, 500),
          AcquireOptions.builder().model("tenant-priced").tenant("zed").build()).close();
    }
    CliRun by = sluice("stats", "budget-by-team", "--by", "tenant");
    assertThat(by.exit()).as(by.err()).isZero();
    // ads weighs 2 and other 1: fair shares 2/3 and 1/3, which is what they used.
    assertThat(by.out()).contains("shares of usd (the binding dimension)")
        .containsPattern("(?m)^ads +2 +- +- +66\\.7 % +66\\.7 % +0 +usd=\\$0\\.0009 +usd=\\$0\\.0009 +0 s/0 s/0 s")
        .containsPattern("(?m)^other +1 +- +- +33\\.3 % +33\\.3 % +0 +usd=\\$0\\.00045 +usd=\\$0\\.00045 ");

    CliRun all = sluice("stats", "--by", "tenant");
    assertThat(all.exit()).as(all.err()).isZero();
    assertThat(all.out()).as("every resource with tenants; estimates only for a named one")
        .contains("tenants of budget-by-team · ").containsPattern("(?m)^ads +2 .* -/-/-$")
        .doesNotContain("tenants of solo");

    CliRun json = sluice("stats", "budget-by-team", "--by", "tenant", "--json");
    assertThat(json.exit()).as(json.err()).isZero();
    GetStatsResponse.Builder parsed = GetStatsResponse.newBuilder();
    JsonFormat.parser().merge(json.out(), parsed);
    ResourceStats s = parsed.getResources(0);
    assertThat(tenant(s, "ads").getUsedMap()).as("micro-dollars on the wire").isEqualTo(Map.of("usd", 900.0));
    assertThat(tenant(s, "other").getRecentShare()).isCloseTo(1 / 3.0, org.assertj.core.data.Offset.offset(1e-9));
    assertThat(json.out()).contains("\"estimatedWaitSeconds\"", "\"fairShare\"", "\"bindingDimension\": \"usd\"");
  }

  @Test
  void watchingByTenantRedrawsTheTenantTableEachRefresh() {
    assertThat(sluice("limit", "set", "watched-teams", "--rate", "requests=5/s", "--share", "ads=2").exit()).isZero();
    java.util.concurrent.atomic.AtomicInteger refreshes = new java.util.concurrent.atomic.AtomicInteger();
    try {
      StatsCommand.terminal = true;
      StatsCommand.sleeper = millis -> {
        if (refreshes.incrementAndGet() == 2) {
          throw new InterruptedException();
        }
      };
      CliRun run = sluice("stats", "watched-teams", "--by", "tenant", "--watch", "--interval", "250ms");
      assertThat(run.exit()).as(run.err()).isZero();
      String[] frames = run.out().split("\033\\[H\033\\[2J", -1);
      assertThat(frames).as("two frames").hasSize(3);
      assertThat(frames[2]).contains("sluice stats watched-teams", "tenants of watched-teams · nothing used over the"
          + " last ").containsPattern("(?m)^ads +2 +- +- +- +- +0 ").doesNotContain("GRANTED/S");
    } finally {
      StatsCommand.terminal = null;
      StatsCommand.sleeper = Thread::sleep;
    }
  }

  @Test
  void byTakesOnlyTenantAndNeedsAResourceWithTenants() {
    CliRun bad = sluice("stats", "teams", "--by", "lane");
    assertThat(bad.exit()).isEqualTo(2);
    assertThat(bad.err()).contains("--by 'lane' is not a way to split stats: the one accepted value is 'tenant'"
        + " (sluice stats NAME --by tenant)");

    assertThat(sluice("limit", "set", "solo", "--rate", "requests=10/s").exit()).isZero();
    CliRun none = sluice("stats", "solo", "--by", "tenant");
    assertThat(none.exit()).isEqualTo(1);
    assertThat(none.err()).contains("resource 'solo' has no tenants: its limit names none (--share, --floor, --cap)"
        + " and no acquire named one; `sluice stats solo` shows it whole");
    assertThat(sluice("stats", "solo").out()).as("no tenant line without tenants").doesNotContain("tenants of");
  }

  private static ResourceStats stats(String resource) throws Exception {
    GetStatsResponse.Builder b = GetStatsResponse.newBuilder();
    JsonFormat.parser().merge(sluice("stats", resource, "--json").out(), b);
    return b.getResources(0);
  }

  private static TenantStats tenant(ResourceStats s, String name) {
    Map<String, TenantStats> by = s.getTenantsList().stream()
        .collect(Collectors.toMap(TenantStats::getTenant, Function.identity()));
    assertThat(by).containsKey(name);
    return by.get(name);
  }
}
