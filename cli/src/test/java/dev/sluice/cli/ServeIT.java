package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.google.protobuf.util.JsonFormat;
import dev.sluice.proto.v1.GetStatsResponse;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ResourceStats;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code bin/sluice serve} as a process: restart after SIGKILL, graceful SIGTERM. */
class ServeIT {

  private static final Pattern READY = Pattern.compile("Sluice coordinator ready on port (\\d+)");
  private static final Duration START = Duration.ofSeconds(60);

  @TempDir
  Path dataDir;

  @Test
  void limitsSurviveSigkillAndBucketsRestartEmpty() throws Exception {
    Limit before;
    try (Script.Serve first = new Script.Serve(Map.of(), "--host", "127.0.0.1", "--port", "0",
        "--data-dir", dataDir.toString())) {
      Map<String, String> env = target(awaitReady(first));
      Script.Result set = Script.run(env, "limit", "set", "restart:slow",
          "--rate", "requests=60/hour:10", "--concurrency", "5", "--lease-ttl", "45s");
      assertThat(set.exit()).as(set.err()).isZero();
      assertThat(Script.run(env, "limit", "set", "restart:other", "--rate", "tokens=1000/min")
          .exit()).isZero();
      before = getLimit(env, "restart:slow");

      first.process.destroyForcibly(); // SIGKILL: no shutdown hook, no goodbye
      assertThat(first.process.waitFor(30, TimeUnit.SECONDS)).isTrue();
      assertThat(first.process.isAlive()).isFalse();
      assertThat(first.process.exitValue()).isEqualTo(128 + 9);
      assertThat(first.output()).doesNotContain("Sluice coordinator stopped");
    }

    try (Script.Serve second = new Script.Serve(Map.of(), "--host", "127.0.0.1", "--port", "0",
        "--data-dir", dataDir.toString())) {
      Map<String, String> env = target(awaitReady(second));
      assertThat(getLimit(env, "restart:slow")).isEqualTo(before);
      Script.Result list = Script.run(env, "limit", "list");
      assertThat(list.out()).contains("restart:other", "restart:slow");

      Script.Result stats = Script.run(env, "stats", "restart:slow", "--json");
      assertThat(stats.exit()).as(stats.err()).isZero();
      GetStatsResponse.Builder response = GetStatsResponse.newBuilder();
      JsonFormat.parser().merge(stats.out(), response);
      ResourceStats slow = response.getResources(0);
      // 60/hour refills one token a minute: a bucket that restarted full would show ~10.
      assertThat(slow.getAvailableMap()).containsKey("requests");
      assertThat(slow.getAvailableMap().get("requests")).isLessThan(1.0);
    }
  }

  @Test
  void sigtermDrainsLogsTheStopAndExitsZero() throws Exception {
    // Options from the environment this time.
    try (Script.Serve serve = new Script.Serve(Map.of("SLUICE_HOST", "127.0.0.1",
        "SLUICE_PORT", "0", "SLUICE_DATA_DIR", dataDir.toString(),
        "SLUICE_SHUTDOWN_GRACE", "2s"))) {
      Map<String, String> env = target(awaitReady(serve));
      assertThat(Script.run(env, "limit", "list").exit()).isZero();

      serve.process.destroy(); // SIGTERM
      assertThat(serve.process.waitFor(30, TimeUnit.SECONDS)).as(serve.output()).isTrue();
      assertThat(serve.process.exitValue()).as(serve.output()).isZero();
      await().atMost(Duration.ofSeconds(10)).untilAsserted(() ->
          assertThat(serve.output()).contains("Sluice coordinator stopped"));
      assertThat(serve.output()).doesNotContain("Exception");
    }
  }

  @Test
  void portInUseIsExitOneWithOneLine() throws Exception {
    try (Script.Serve first = new Script.Serve(Map.of(), "--host", "127.0.0.1", "--port", "0",
        "--data-dir", dataDir.toString())) {
      int port = awaitReady(first);
      Script.Result second = Script.run(Map.of(), "serve", "--host", "127.0.0.1",
          "--port", String.valueOf(port), "--data-dir", dataDir.resolve("second").toString());
      assertThat(second.exit()).isEqualTo(1);
      assertThat(second.err().lines().filter(l -> l.startsWith("error: ")).toList())
          .singleElement().asString().contains(String.valueOf(port), "--port");
      assertThat(second.err()).doesNotContain("\tat ");
    }
  }

  @Test
  void unreachableRedisIsExitOneNamingTheStore() throws Exception {
    Script.Result r = Script.run(Map.of(), "serve", "--host", "127.0.0.1", "--port", "0",
        "--data-dir", dataDir.resolve("redis").toString(), "--store", "redis://127.0.0.1:1");
    assertThat(r.exit()).isEqualTo(1);
    assertThat(r.err().lines().filter(l -> l.startsWith("error: ")).toList())
        .singleElement().asString().contains("cannot reach Redis at redis://127.0.0.1:1", "--store");
    assertThat(r.err()).doesNotContain("\tat ");
  }

  private static int awaitReady(Script.Serve serve) {
    await().atMost(START).pollInterval(Duration.ofMillis(50)).until(() ->
        READY.matcher(serve.output()).find() || !serve.process.isAlive());
    Matcher m = READY.matcher(serve.output());
    assertThat(m.find()).as("ready line in:%n%s", serve.output()).isTrue();
    return Integer.parseInt(m.group(1));
  }

  private static Map<String, String> target(int port) {
    return Map.of("SLUICE_TARGET", "127.0.0.1:" + port);
  }

  private static Limit getLimit(Map<String, String> env, String resource) throws Exception {
    Script.Result get = Script.run(env, "limit", "get", resource, "--json");
    assertThat(get.exit()).as(get.err()).isZero();
    Limit.Builder limit = Limit.newBuilder();
    JsonFormat.parser().merge(get.out(), limit);
    return limit.build();
  }
}
