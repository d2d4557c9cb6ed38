package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.fail;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.AcquireTimeoutException;
import dev.sluice.client.InvalidRequestException;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.redis.RedisProcess;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What Prometheus users run on what we ship: {@code promtool check metrics} on a live scrape of a
 * real coordinator that has granted, refused, timed out and queued acquires, and {@code promtool
 * check rules} / {@code promtool test rules} on deploy/prometheus (the unit tests there page
 * "coordinator down" for the coordinator's job only, not for a worker target).
 *
 * <p>Needs {@code promtool} on the PATH: Debian's {@code prometheus} package ships it as
 * /usr/bin/promtool, and {@code .ci/run} installs it when missing.
 */
class PromtoolIT {

  private static final Path RULES = Path.of("..", "deploy", "prometheus");

  @TempDir Path dir;

  @Test
  void aLiveScrapeOfACoordinatorThatServedAcquiresPassesCheckMetrics() throws Exception {
    try (SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0)
        .dataDir(dir.resolve("data")).shutdownGrace(Duration.ZERO).build().start()) {
      serveAndCheck(server, "sluice_acquire_wait_seconds_bucket");
    }
  }

  @Test
  void aLiveScrapeOfANodeOnARedisStorePassesCheckMetrics() throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0)
            .dataDir(dir.resolve("data")).store(redis.uri()).nodeId("a").shutdownGrace(Duration.ZERO).build().start()) {
      serveAndCheck(server, "sluice_store_reachable");
    }
  }

  /** Grants, refuses, times out and queues acquires on {@code server}, then lints its scrape. */
  private void serveAndCheck(SluiceServer server, String expected) throws Exception {
    try (SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.port()).build()) {
      sync(server.engine()).setLimit(new LimitSpec("llm", List.of(
          new RateSpec("requests", 1000, Duration.ofSeconds(1), 1000),
          new RateSpec("tokens", 1_000_000, Duration.ofSeconds(1), 1_000_000)), 1, 100, Duration.ofSeconds(30)));
      for (int i = 0; i < 5; i++) {
        client.acquire("llm", Load.of("requests", 1, "tokens", 10)).close();
      }
      assertThatThrownBy(() -> client.acquire("llm", Load.of("images", 1))).isInstanceOf(InvalidRequestException.class);
      Permit holding = client.acquire("llm");
      assertThatThrownBy(() -> client.acquire("llm", Load.requests(1),
          AcquireOptions.builder().timeout(Duration.ofMillis(20)).build())).isInstanceOf(AcquireTimeoutException.class);
      CompletableFuture<Permit> queued = client.acquireAsync("llm", Load.requests(1),
          AcquireOptions.builder().timeout(Duration.ofSeconds(30)).build());
      holding.close();
      queued.get(10, TimeUnit.SECONDS).close();
      client.reportThrottled("llm", Duration.ofMillis(1), Map.of());
      // A limit that counts dollars, shared between tenants: the per-tenant series are linted too.
      sync(server.engine()).setLimit(new LimitSpec("budget", List.of(new RateSpec("usd", 1_000_000, Duration.ofMinutes(1),
          10_000)), 0, 100, Duration.ofSeconds(30), new dev.sluice.server.engine.TenantPolicy(Map.of("ads", 2.0),
          Map.of(), Map.of())));
      client.acquire("budget", Load.of("usd", 450), AcquireOptions.builder().tenant("ads").build()).close();
      client.acquire("budget", Load.of("usd", 450), AcquireOptions.builder().tenant("zed").build()).close();
      // A pool of two keys: its grants are counted per member.
      for (String key : List.of("key-a", "key-b")) {
        sync(server.engine()).setLimit(new LimitSpec(key, List.of(new RateSpec("requests", 100, Duration.ofSeconds(1),
            100)), 0, 100, Duration.ofSeconds(30)));
      }
      sync(server.engine()).setLimit(LimitSpec.pool("keys", List.of("key-a", "key-b")));
      client.acquire("keys").close();
      // The per-resource gauges (and a shared store's counters) follow a sample taken once a second.
      String scrape = await().atMost(Duration.ofSeconds(10)).until(() -> scrape(server),
          s -> s.contains("sluice_upstream_throttled_total{resource=\"llm\"} 1.0")
              && s.contains("sluice_permits_in_flight{resource=\"llm\"} 0.0")
              && s.contains("sluice_tenant_spend_dollars_total{resource=\"budget\",tenant=\"other\"}"));
      assertThat(scrape).contains("sluice_acquire_granted_total", "sluice_acquire_wait_p99_seconds",
          "grpc_server_processing_duration_seconds", "sluice_tenant_tokens_used_total", "sluice_tenant_waiting",
          expected);
      // Either key may grant it (both refill from empty; on Redis their answers race).
      assertThat(scrape).containsPattern("sluice_pool_grants_total\\{member=\"key-[ab]\",pool=\"keys\"\\} 1\\.0");
      Path file = dir.resolve("metrics.txt");
      Files.writeString(file, scrape);
      Result r = promtool(file, "check", "metrics");
      assertThat(r.output).as("promtool check metrics on a live scrape: no problem in any series").isEmpty();
      assertThat(r.exit).as("promtool check metrics exit code; it said:%n%s", r.output).isZero();
    }
  }

  @Test
  void theAlertRulesPassCheckRules() throws Exception {
    Result r = promtool(null, "check", "rules", RULES.resolve("sluice-alerts.yml").toString());
    assertThat(r.exit).as("promtool check rules: %s", r.output).isZero();
    assertThat(r.output).contains("SUCCESS");
  }

  @Test
  void theAlertRulesPassTheirUnitTestsAWorkerDownDoesNotPageAsTheCoordinator() throws Exception {
    Path tests = RULES.resolve("sluice-alerts.test.yml");
    assertThat(Files.readString(tests)).contains("sluice-workers", "SluiceCoordinatorDown");
    Result r = promtool(null, "test", "rules", tests.toString());
    assertThat(r.exit).as("promtool test rules: %s", r.output).isZero();
    assertThat(r.output).contains("SUCCESS");
  }

  private static String scrape(SluiceServer server) throws Exception {
    return HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.httpPort() + "/metrics")).build(),
        HttpResponse.BodyHandlers.ofString()).body();
  }

  private record Result(int exit, String output) {}

  /** Runs promtool with {@code stdin} (or nothing) as its input; fails with the fix if it is not installed. */
  private static Result promtool(Path stdin, String... args) throws Exception {
    List<String> command = new ArrayList<>(List.of("promtool"));
    command.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
    if (stdin != null) {
      pb.redirectInput(stdin.toFile());
    }
    Process p;
    try {
      p = pb.start();
    } catch (IOException e) {
      return fail("promtool is not on the PATH (" + e.getMessage() + "): install Debian's prometheus package"
          + " (`apt-get install -y prometheus`, it ships /usr/bin/promtool) or run `bash .ci/run`, which does");
    }
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
    assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("promtool %s finished", String.join(" ", args)).isTrue();
    return new Result(p.exitValue(), out);
  }
}
