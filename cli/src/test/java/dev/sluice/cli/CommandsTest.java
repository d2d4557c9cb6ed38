package dev.sluice.cli;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;
import static org.awaitility.Awaitility.await;

import com.google.protobuf.util.JsonFormat;
import dev.sluice.proto.v1.GetStatsResponse;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ListLimitsResponse;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.SetLimitResponse;
import dev.sluice.server.SluiceServer;
import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.client.SluiceClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every client command, in process, against a real coordinator on loopback. */
class CommandsTest {

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
  void setPrintsTheStoredLimitThenReplaces() {
    CliRun created = sluice("limit", "set", "set-test", "--rate", "requests=500/min",
        "--rate", "tokens=200000/min:4000", "--concurrency", "50", "--lease-ttl", "45s");
    assertThat(created.exit()).as(created.err()).isZero();
    assertThat(created.err()).isEmpty();
    assertThat(created.out()).startsWith("created limit set-test")
        .containsPattern("resource +set-test")
        .containsPattern("rate +requests=500/min:\\d+")
        .contains("tokens=200000/min:4000")
        .containsPattern("concurrency +50")
        .containsPattern("lease ttl +45s");

    CliRun replaced = sluice("limit", "set", "set-test", "--rate", "requests=10/s:5");
    assertThat(replaced.exit()).isZero();
    assertThat(replaced.out()).startsWith("replaced limit set-test").contains("requests=10/s:5")
        .doesNotContain("tokens");
  }

  @Test
  void aHeldDimensionIsSetAndGetShowsWhatIsHeld() throws Exception {
    CliRun set = sluice("limit", "set", "held-test", "--hold", "enqueued_tokens=2000000", "--lease-ttl", "10m");
    assertThat(set.exit()).as(set.err()).isZero();
    assertThat(set.out()).containsPattern("held +enqueued_tokens at most 2000000 at once");
    CliRun get = sluice("limit", "get", "held-test");
    assertThat(get.exit()).as(get.err()).isZero();
    assertThat(get.out()).containsPattern("held +enqueued_tokens at most 2000000 at once, held now 0 \\(2000000 free\\)");
    CliRun json = sluice("limit", "get", "held-test", "--json");
    Limit.Builder limit = Limit.newBuilder();
    JsonFormat.parser().merge(json.out(), limit);
    assertThat(limit.getHoldsMap()).containsEntry("enqueued_tokens", 2_000_000L);

    CliRun bad = sluice("limit", "set", "held-test", "--hold", "enqueued_tokens");
    assertThat(bad.exit()).isEqualTo(2);
    assertThat(bad.err()).contains("--hold takes DIM=AMOUNT");
    CliRun twice = sluice("limit", "set", "held-test", "--rate", "t=1/s", "--hold", "t=5");
    assertThat(twice.exit()).isEqualTo(2);
    assertThat(twice.err()).contains("dimension 't' is given twice (--rate or --hold)");
    CliRun zero = sluice("limit", "set", "held-test", "--hold", "t=0");
    assertThat(zero.exit()).isNotZero();
    assertThat(zero.err()).contains("held t=0 on 'held-test' is out of range: use 1 to");
  }

  @Test
  void setJsonIsTheSetLimitResponse() throws Exception {
    CliRun run = sluice("limit", "set", "json-set", "--rate", "requests=60/h:10", "--json");
    assertThat(run.exit()).as(run.err()).isZero();
    SetLimitResponse.Builder response = SetLimitResponse.newBuilder();
    JsonFormat.parser().merge(run.out(), response);
    assertThat(response.getCreated()).isTrue();
    assertThat(response.getLimit().getRates(0).getBurst()).isEqualTo(10);
    assertThat(response.getLimit().getRates(0).getPeriod().getSeconds()).isEqualTo(3600);
  }

  @Test
  void getShowsOneLimitAsTextOrJson() throws Exception {
    sluice("limit", "set", "get-test", "--rate", "requests=100/10s:7", "--max-waiting", "20");

    CliRun text = sluice("limit", "get", "get-test");
    assertThat(text.exit()).isZero();
    assertThat(text.out()).containsPattern("resource +get-test")
        .containsPattern("rate +requests=100/10s:7")
        .containsPattern("concurrency +no cap")
        .containsPattern("max waiting +20");

    CliRun json = sluice("limit", "get", "get-test", "--json");
    assertThat(json.exit()).isZero();
    Limit.Builder limit = Limit.newBuilder();
    JsonFormat.parser().merge(json.out(), limit);
    assertThat(limit.getResource()).isEqualTo("get-test");
    assertThat(limit.getRates(0).getAmount()).isEqualTo(100);
    assertThat(limit.getMaxWaiting()).isEqualTo(20);
    assertThat(json.out()).contains("\"concurrency\": \"0\""); // defaults are printed too
  }

  @Test
  void jitterShowsTheEffectiveRateItCosts() throws Exception {
    CliRun set = sluice("limit", "set", "jitter-test", "--rate", "requests=60/min:1", "--rate", "tokens=30000/min:250",
        "--jitter", "20ms");
    assertThat(set.exit()).as(set.err()).isZero();
    CliRun get = sluice("limit", "get", "jitter-test");
    assertThat(get.out())
        .containsPattern("rate +requests=60/min:1  effective 58.8/min for jitter 20 ms")
        .contains("tokens=30000/min:250  effective 30000/min for jitter 20 ms")
        .containsPattern("jitter +20 ms");
    Limit.Builder limit = Limit.newBuilder();
    JsonFormat.parser().merge(sluice("limit", "get", "jitter-test", "--json").out(), limit);
    assertThat(limit.getJitter().getNanos()).isEqualTo(20_000_000);
    assertThat(limit.getRates(0).getEffectiveAmount()).isCloseTo(60 / 1.02, within(1e-9));
    assertThat(limit.getRates(1).getEffectiveAmount()).isEqualTo(30000.0);
  }

  @Test
  void unsetJitterIsTheDefaultAndZeroTurnsItOff() {
    assertThat(sluice("limit", "set", "jitter-default", "--rate", "requests=60/min:1").out())
        .contains("effective 58.8/min for jitter 20 ms");
    CliRun off = sluice("limit", "set", "jitter-off", "--rate", "requests=60/min:1", "--jitter", "0");
    assertThat(off.out()).containsPattern("rate +requests=60/min:1").doesNotContain("effective")
        .containsPattern("jitter +0 \\(rates scheduled as set\\)");
  }

  @Test
  void jitterAsLongAsTheSubWindowOrNegativeIsRefusedWithTheFix() {
    CliRun tooLong = sluice("limit", "set", "jitter-bad", "--rate", "requests=60/min:1", "--jitter", "1s");
    assertThat(tooLong.exit()).isEqualTo(1);
    assertThat(tooLong.err()).hasLineCount(1).startsWith("error: INVALID_ARGUMENT: jitter 1s is not shorter than")
        .contains("use a jitter under 1s, or raise the burst");
    CliRun negative = sluice("limit", "set", "jitter-bad", "--rate", "requests=60/min:1", "--jitter", "-5ms");
    assertThat(negative.exit()).isEqualTo(2);
    assertThat(negative.err()).contains("-5ms").contains("negative");
    assertThat(sluice("limit", "get", "jitter-bad").exit()).as("nothing was set").isEqualTo(1);
  }

  @Test
  void getOfAnUnknownResourceExitsOneWithTheServerMessage() {
    CliRun run = sluice("limit", "get", "no-such-resource");
    assertThat(run.exit()).isEqualTo(1);
    assertThat(run.out()).isEmpty();
    assertThat(run.err()).hasLineCount(1).startsWith("error: NOT_FOUND: ").contains("no-such-resource");
  }

  @Test
  void aBadNameIsTheServersInvalidArgument() {
    CliRun run = sluice("limit", "set", "bad name!", "--rate", "requests=1/s");
    assertThat(run.exit()).isEqualTo(1);
    assertThat(run.err()).hasLineCount(1).startsWith("error: INVALID_ARGUMENT: ");
  }

  @Test
  void listIsSortedAndFilteredByPrefix() throws Exception {
    sluice("limit", "set", "list:b", "--rate", "requests=2/s");
    sluice("limit", "set", "list:a", "--rate", "requests=1/s", "--concurrency", "3");
    sluice("limit", "set", "other", "--rate", "requests=1/s");

    CliRun text = sluice("limit", "list", "--prefix", "list:");
    assertThat(text.exit()).isZero();
    assertThat(text.out().lines().toList())
        .hasSize(3)
        .satisfies(lines -> {
          assertThat(lines.get(0)).startsWith("RESOURCE").contains("RATES", "CONCURRENCY");
          assertThat(lines.get(1)).startsWith("list:a").contains("requests=1/s", " 3 ");
          assertThat(lines.get(2)).startsWith("list:b").contains("requests=2/s");
        });
    // Columns line up: RATES starts at the same offset on every line.
    List<String> lines = text.out().lines().toList();
    int column = lines.get(0).indexOf("RATES");
    assertThat(lines.get(1).indexOf("requests")).isEqualTo(column);
    assertThat(lines.get(2).indexOf("requests")).isEqualTo(column);

    CliRun json = sluice("limit", "list", "--prefix", "list:", "--json");
    ListLimitsResponse.Builder response = ListLimitsResponse.newBuilder();
    JsonFormat.parser().merge(json.out(), response);
    assertThat(response.getLimitsList()).extracting(Limit::getResource)
        .containsExactly("list:a", "list:b");

    CliRun none = sluice("limit", "list", "--prefix", "zzz");
    assertThat(none.exit()).isZero();
    assertThat(none.out()).isEqualTo("no limits with prefix 'zzz'" + System.lineSeparator());
  }

  @Test
  void deleteRemovesTheLimitAndTwiceIsNotFound() {
    sluice("limit", "set", "delete-test", "--rate", "requests=1/s");
    CliRun deleted = sluice("limit", "delete", "delete-test");
    assertThat(deleted.exit()).isZero();
    assertThat(deleted.out()).isEqualTo("deleted limit delete-test" + System.lineSeparator());

    assertThat(sluice("limit", "get", "delete-test").exit()).isEqualTo(1);
    CliRun again = sluice("limit", "delete", "delete-test");
    assertThat(again.exit()).isEqualTo(1);
    assertThat(again.err()).startsWith("error: NOT_FOUND: ");
  }

  @Test
  void pauseAndResumeShowInStats() throws Exception {
    sluice("limit", "set", "pause-test", "--rate", "requests=1/s");

    CliRun forAWhile = sluice("pause", "pause-test", "--for", "5m");
    assertThat(forAWhile.exit()).as(forAWhile.err()).isZero();
    assertThat(forAWhile.out()).matches("paused pause-test for (5m|4m [0-9]+s)\\R");
    assertThat(stats("pause-test").getPaused()).isTrue();
    assertThat(sluice("stats", "pause-test").out()).containsPattern("for (5m|4m \\d+s)");

    CliRun resumed = sluice("resume", "pause-test");
    assertThat(resumed.exit()).isZero();
    assertThat(resumed.out()).isEqualTo("resumed pause-test" + System.lineSeparator());
    assertThat(stats("pause-test").getPaused()).isFalse();

    CliRun untilResume = sluice("pause", "pause-test");
    assertThat(untilResume.exit()).isZero();
    assertThat(untilResume.out()).contains("paused pause-test until `sluice resume pause-test`");
    assertThat(stats("pause-test").getPaused()).isTrue();
    assertThat(stats("pause-test").hasPausedFor()).isFalse();
    assertThat(sluice("stats", "pause-test").out()).contains("until resume");
    sluice("resume", "pause-test");

    assertThat(sluice("pause", "no-such-resource").exit()).isEqualTo(1);
  }

  /** Issue 14: `--for 0s` paused until resume; now every bad pause duration is refused at once, nothing paused. */
  @Test
  void pauseForRefusesZeroNegativeAndOverlongDurations() throws Exception {
    sluice("limit", "set", "pause-bounds", "--rate", "requests=1/s");
    for (String bad : List.of("0s", "PT-5S", "PT2562047H", "99999999999999999999s")) {
      CliRun run = sluice("pause", "pause-bounds", "--for", bad);
      assertThat(run.exit()).as(bad).isEqualTo(2);
      assertThat(run.err()).as(bad).startsWith("error: invalid value for --for: '" + bad + "' is")
          .contains("give a duration from 1ms to 1d, e.g. 30s").hasLineCount(1);
      assertThat(stats("pause-bounds").getPaused()).as(bad).isFalse();
    }
  }

  @Test
  void statsTableHasOneRowPerResource() {
    sluice("limit", "set", "stats-test", "--rate", "requests=60/min:10", "--rate", "tokens=1000/min");
    CliRun run = sluice("stats", "stats-test");
    assertThat(run.exit()).as(run.err()).isZero();
    List<String> lines = run.out().lines().toList();
    assertThat(lines).hasSize(3);
    assertThat(lines.get(0)).contains("RESOURCE", "AVAILABLE NOW", "IN FLIGHT", "WAITING",
        "GRANTED", "TIMED OUT", "CANCELLED", "REJECTED", "WAIT P50", "WAIT P99", "PAUSED")
        .doesNotContain("I/D/B");
    assertThat(lines.get(1)).startsWith("stats-test").contains("requests=", "tokens=", "0 s").endsWith("no");
    assertThat(lines.get(2)).as("a legend spells the columns out")
        .contains("AVAILABLE NOW: tokens in each bucket (below 0: debt from a settle)", "WAITING: callers in line");

    CliRun all = sluice("stats");
    assertThat(all.exit()).isZero();
    assertThat(all.out()).contains("stats-test");
  }

  @Test
  void statsSpellsTheWaitingLanesOut() {
    assertThat(StatsCommand.waiting(ResourceStats.getDefaultInstance())).isEqualTo("0");
    assertThat(StatsCommand.waiting(ResourceStats.newBuilder().putWaiting("interactive", 2)
        .putWaiting("default", 0).putWaiting("batch", 3).build())).isEqualTo("5 (interactive 2, batch 3)");
  }

  @Test
  void statsJsonParsesBack() throws Exception {
    sluice("limit", "set", "stats-json", "--rate", "requests=60/h:10");
    ResourceStats s = stats("stats-json");
    assertThat(s.getLimit().getRates(0).getBurst()).isEqualTo(10);
    assertThat(s.getAvailableMap()).containsKey("requests");
    assertThat(s.getInFlight()).isZero();
  }

  @Test
  void statsWatchRefreshesEverySecondWithRatesAsOneJsonLinePerRefresh() throws Exception {
    sluice("limit", "set", "watch-test", "--rate", "requests=100/s:100");
    AtomicLong now = new AtomicLong(1_000_000_000L);
    List<Long> sleeps = new ArrayList<>();
    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      // The fake sleeper is the clock: each refresh waits 1 s of it, and during wait i the test
      // takes i permits, so refresh i+1 must show i grants/s and i % of the rate used.
      StatsCommand.clock = now::get;
      StatsCommand.sleeper = millis -> {
        sleeps.add(millis);
        if (sleeps.size() > 3) {
          throw new InterruptedException(); // what Ctrl-C does to the loop
        }
        for (int i = 0; i < sleeps.size(); i++) {
          client.acquire("watch-test").close();
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> stats("watch-test").getInFlight() == 0);
        now.addAndGet(millis * 1_000_000L);
      };
      CliRun run = sluice("stats", "watch-test", "--watch", "--json");
      assertThat(run.exit()).as(run.err()).isZero();
      assertThat(sleeps).as("one refresh a second by default").containsExactly(1000L, 1000L, 1000L, 1000L);
      List<String> lines = run.out().lines().toList();
      assertThat(lines).hasSize(4);
      ObjectMapper json = new ObjectMapper();
      for (int i = 0; i < lines.size(); i++) {
        JsonNode line = json.readTree(lines.get(i));
        assertThat(line.get("intervalSeconds").asDouble()).isEqualTo(1.0);
        assertThat(line.get("time").asText()).isNotEmpty();
        JsonNode stats = line.get("stats").get("resources").get(0);
        assertThat(stats.get("resource").asText()).isEqualTo("watch-test");
        assertThat(stats.get("granted").asLong()).as("grants so far").isEqualTo((long) i * (i + 1) / 2);
        JsonNode rates = line.get("rates").get("watch-test");
        if (i == 0) {
          assertThat(rates.get("grantedPerSecond").isNull()).as("nothing to compare the first with").isTrue();
          continue;
        }
        assertThat(rates.get("grantedPerSecond").asDouble()).isEqualTo(i);
        assertThat(rates.get("rejectedPerSecond").asDouble()).isZero();
        assertThat(rates.get("utilization").get("requests").asDouble()).isCloseTo(i / 100.0, within(1e-9));
      }
    } finally {
      StatsCommand.clock = System::nanoTime;
      StatsCommand.sleeper = Thread::sleep;
    }
  }

  @Test
  void statsWatchOnATerminalRedrawsInPlace() {
    sluice("limit", "set", "watch-view", "--rate", "requests=5/s");
    AtomicInteger refreshes = new AtomicInteger();
    try {
      StatsCommand.terminal = true;
      StatsCommand.sleeper = millis -> {
        if (refreshes.incrementAndGet() == 2) {
          throw new InterruptedException();
        }
      };
      CliRun run = sluice("stats", "watch-view", "--watch", "--interval", "250ms");
      assertThat(run.exit()).as(run.err()).isZero();
      assertThat(run.out()).startsWith("\033[H\033[2J");
      assertThat(run.out().split("\033\\[H\033\\[2J", -1)).as("two frames").hasSize(3);
      assertThat(run.out()).contains("sluice stats watch-view", "every 250ms", "Ctrl-C to stop", "GRANTED/S",
          "UTILIZATION", "watch-view");
      assertThat(run.out()).as("why utilization can pass 100 %")
          .contains("above 100 % the burst saved up while idle was spent, or a settle charged more than was"
              + " estimated (debt)");
    } finally {
      StatsCommand.terminal = null;
      StatsCommand.sleeper = Thread::sleep;
    }
  }

  @Test
  void statsWatchRefusesATooShortIntervalAndAnUnreachableCoordinator() {
    CliRun fast = sluice("stats", "--watch", "--interval", "50ms");
    assertThat(fast.exit()).isEqualTo(2);
    assertThat(fast.err()).contains("--interval must be at least 100ms");
    CliRun away = CliRun.of("stats", "--watch", "--target", "127.0.0.1:1");
    assertThat(away.exit()).isEqualTo(1);
    assertThat(away.err()).contains("127.0.0.1:1");
  }

  private static ResourceStats stats(String resource) throws Exception {
    CliRun run = sluice("stats", resource, "--json");
    assertThat(run.exit()).as(run.err()).isZero();
    GetStatsResponse.Builder response = GetStatsResponse.newBuilder();
    JsonFormat.parser().merge(run.out(), response);
    assertThat(response.getResourcesCount()).isEqualTo(1);
    return response.getResources(0);
  }
}
