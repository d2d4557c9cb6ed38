package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.AcquireTimeoutException;
import dev.sluice.client.InvalidRequestException;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Scrapes {@code /metrics} of a real coordinator while the test drives load through the SDK,
 * and checks the figures against what the test did.
 */
class MetricsScrapeTest {

  private static final Pattern SAMPLE = Pattern.compile("^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[^}]*})?\\s+(\\S+)");

  @TempDir Path dataDir;

  private static void limit(SluiceServer server, String resource, long concurrency) {
    sync(server.engine()).setLimit(new LimitSpec(resource, List.of(new RateSpec("requests", 1000, Duration.ofSeconds(1),
        1000), new RateSpec("tokens", 1_000_000, Duration.ofSeconds(1), 1_000_000)), concurrency, 100,
        Duration.ofSeconds(30)));
  }

  private static String scrape(SluiceServer server) throws Exception {
    HttpResponse<String> r = HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.httpPort() + "/metrics")).build(),
        HttpResponse.BodyHandlers.ofString());
    assertThat(r.statusCode()).isEqualTo(200);
    assertThat(r.headers().firstValue("content-type").orElse("")).startsWith("text/plain");
    return r.body();
  }

  /** The value of the series {@code name} whose labels include every {@code label="value"} given; null if none. */
  static Double value(String scrape, String name, String... labels) {
    for (String line : scrape.split("\n")) {
      Matcher m = SAMPLE.matcher(line);
      if (!m.find() || !m.group(1).equals(name)) {
        continue;
      }
      String l = m.group(2) == null ? "" : m.group(2);
      boolean all = true;
      for (String want : labels) {
        all &= l.contains(want);
      }
      if (all) {
        return Double.parseDouble(m.group(3));
      }
    }
    return null;
  }

  @Test
  void theCountersMatchWhatTheTestDidAndTheGaugesFollowTheQueue() throws Exception {
    try (SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
            .shutdownGrace(Duration.ZERO).build().start();
        SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.port()).build()) {
      limit(server, "fast", 0);
      limit(server, "scarce", 1); // one permit at a time
      limit(server, "held", 0);

      for (int i = 0; i < 40; i++) {
        try (Permit p = client.acquire("fast", Load.of("requests", 1, "tokens", 10))) {
          assertThat(p).isNotNull();
        }
      }
      assertThatThrownBy(() -> client.acquire("fast", Load.of("images", 1)))
          .isInstanceOf(InvalidRequestException.class);
      Permit holding = client.acquire("scarce");
      for (int i = 0; i < 3; i++) {
        assertThatThrownBy(() -> client.acquire("scarce", Load.requests(1),
            AcquireOptions.builder().timeout(Duration.ofMillis(30)).build()))
            .isInstanceOf(AcquireTimeoutException.class);
      }
      sync(server.engine()).pause("held", -1);
      List<CompletableFuture<Permit>> parked = new ArrayList<>();
      for (int i = 0; i < 2; i++) {
        parked.add(client.acquireAsync("held", Load.requests(1),
            AcquireOptions.builder().timeout(Duration.ofSeconds(60)).build()));
      }

      await().atMost(Duration.ofSeconds(10)).until(() ->
          Double.valueOf(2).equals(value(scrape(server), "sluice_waiting", "resource=\"held\"", "lane=\"default\"")));
      String s = scrape(server);
      assertThat(value(s, "sluice_acquire_granted_total", "resource=\"fast\"")).isEqualTo(40.0);
      assertThat(value(s, "sluice_acquire_granted_total", "resource=\"scarce\"")).isEqualTo(1.0);
      assertThat(value(s, "sluice_acquire_timed_out_total", "resource=\"scarce\"")).isEqualTo(3.0);
      assertThat(value(s, "sluice_acquire_rejected_total", "resource=\"fast\"", "reason=\"invalid\"")).isEqualTo(1.0);
      assertThat(value(s, "sluice_acquire_wait_seconds_count", "resource=\"fast\"")).isEqualTo(40.0);
      assertThat(value(s, "sluice_acquire_wait_seconds_bucket", "resource=\"fast\"", "le=\"+Inf\"")).isEqualTo(40.0);
      // The default buckets: 10 ms, 100 ms, 1 s, 10 s, 1 min and +Inf, nothing else.
      assertThat(labels(s, "sluice_acquire_wait_seconds_bucket", "resource=\"fast\"", "le"))
          .containsExactly("0.01", "0.1", "1.0", "10.0", "60.0", "+Inf");
      assertThat(value(s, "sluice_acquire_wait_p99_seconds", "resource=\"fast\"")).isNotNull();
      assertThat(value(s, "sluice_acquire_wait_p50_seconds", "resource=\"fast\"")).isNotNull();
      assertThat(value(s, "sluice_resource_paused", "resource=\"held\"")).isEqualTo(1.0);
      assertThat(value(s, "sluice_resource_paused", "resource=\"fast\"")).isEqualTo(0.0);
      assertThat(value(s, "sluice_permits_in_flight", "resource=\"fast\"")).isEqualTo(0.0);
      assertThat(value(s, "sluice_limit_rate_per_second", "resource=\"fast\"", "dimension=\"requests\""))
          .isEqualTo(1000.0);
      assertThat(value(s, "sluice_tokens_used_total", "resource=\"fast\"", "dimension=\"tokens\"")).isEqualTo(400.0);
      assertThat(value(s, "sluice_permits_in_flight", "resource=\"scarce\"")).isEqualTo(1.0);
      assertThat(value(s, "sluice_tokens_available", "resource=\"fast\"", "dimension=\"requests\""))
          .isBetween(0.0, 1000.0);
      holding.close();
      assertThat(value(s, "sluice_ready")).isEqualTo(1.0);
      // Tenants: an unnamed tenant is counted as "other", whose waiters show per tenant.
      var engine = sync(server.engine());
      String permit = engine.acquire("fast", java.util.Map.of("tokens", 7L), dev.sluice.server.engine.Lane.DEFAULT,
          0, null, "team-x").future().join().permitId();
      engine.release("fast", permit, java.util.Map.of("tokens", 5L), true, false);
      var other = engine.acquire("held", java.util.Map.of(), dev.sluice.server.engine.Lane.DEFAULT, 60_000_000_000L,
          null, "team-y");
      await().atMost(Duration.ofSeconds(10)).until(() -> Double.valueOf(1).equals(
          value(scrape(server), "sluice_tenant_waiting", "resource=\"held\"", "tenant=\"other\"")));
      assertThat(value(scrape(server), "sluice_tenant_tokens_used_total", "resource=\"fast\"", "tenant=\"other\"",
          "dimension=\"tokens\"")).as("granted 7, settled 5").isEqualTo(5.0);
      other.cancel();
      // Spend per tenant, in dollars, on a limit that counts usd (micro-dollars in the engine):
      // tenants the limit names, and every unnamed one together as "other".
      engine.setLimit(new LimitSpec("dollars", List.of(new RateSpec("usd", 1_000_000, Duration.ofMinutes(1), 10_000)),
          0, 100, Duration.ofSeconds(30), new dev.sluice.server.engine.TenantPolicy(Map.of("ads", 2.0), Map.of(),
              Map.of())));
      for (String tenant : new String[] {"ads", "ads", "zed", "yan"}) {
        String p = engine.acquire("dollars", Map.of("usd", 450L), dev.sluice.server.engine.Lane.DEFAULT, 10_000_000_000L, null, tenant)
            .future().join().permitId();
        engine.release("dollars", p, Map.of("usd", tenant.equals("yan") ? 50L : 450L), true, false);
      }
      String spent = await().atMost(Duration.ofSeconds(10)).until(() -> scrape(server),
          x -> value(x, "sluice_tenant_spend_dollars_total", "resource=\"dollars\"", "tenant=\"other\"") != null);
      assertThat(value(spent, "sluice_tenant_spend_dollars_total", "resource=\"dollars\"", "tenant=\"ads\""))
          .isCloseTo(0.0009, org.assertj.core.data.Offset.offset(1e-12));
      assertThat(value(spent, "sluice_tenant_spend_dollars_total", "resource=\"dollars\"", "tenant=\"other\""))
          .as("zed 450 and yan settled to 50 micro-dollars").isCloseTo(0.0005, org.assertj.core.data.Offset.offset(1e-12));
      assertThat(spent).as("bounded: only the named tenant and other").containsPattern("tenant=\"ads\"")
          .doesNotContain("tenant=\"zed\"", "tenant=\"yan\"");
      assertThat(value(spent, "sluice_tenant_spend_dollars_total", "resource=\"fast\"")).as("no usd, no spend").isNull();
      // JVM and gRPC server metrics ride along.
      // (some heap pool holds something; any one of them, Eden right after a GC, may hold nothing)
      assertThat(s).containsPattern("jvm_memory_used_bytes\\{area=\"heap\"[^}]*} [1-9]");
      // ... with snake_case labels (Micrometer's gRPC binder says statusCode and methodType).
      assertThat(value(s, "grpc_server_processing_duration_seconds_count", "method=\"Acquire\"",
          "status_code=\"OK\"", "method_type=\"UNARY\"")).isGreaterThanOrEqualTo(41.0);
      assertThat(s).doesNotContain("statusCode", "methodType");

      sync(server.engine()).resume("held");
      for (CompletableFuture<Permit> p : parked) {
        p.get().close();
      }
      await().atMost(Duration.ofSeconds(10)).until(() ->
          Double.valueOf(0).equals(value(scrape(server), "sluice_waiting", "resource=\"held\"", "lane=\"default\"")));
      assertThat(value(scrape(server), "sluice_acquire_granted_total", "resource=\"held\"")).isEqualTo(2.0);
    }
  }

  /** The values of label {@code label} on the series {@code name} whose labels include {@code having}. */
  static List<String> labels(String scrape, String name, String having, String label) {
    Pattern value = Pattern.compile("\\b" + label + "=\"([^\"]*)\"");
    List<String> out = new ArrayList<>();
    for (String line : scrape.split("\n")) {
      Matcher m = SAMPLE.matcher(line);
      if (m.find() && m.group(1).equals(name) && m.group(2) != null && m.group(2).contains(having)) {
        Matcher v = value.matcher(m.group(2));
        if (v.find()) {
          out.add(v.group(1));
        }
      }
    }
    return out;
  }

  @Test
  void theWaitHistogramHasTheConfiguredBucketsOnly() throws Exception {
    try (SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
            .metricsWaitBuckets(List.of(Duration.ofMillis(5), Duration.ofMillis(2500)))
            .shutdownGrace(Duration.ZERO).build().start();
        SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.port()).build()) {
      limit(server, "a", 0);
      client.acquire("a").close();
      String s = scrape(server);
      assertThat(labels(s, "sluice_acquire_wait_seconds_bucket", "resource=\"a\"", "le"))
          .containsExactly("0.005", "2.5", "+Inf");
      assertThat(value(s, "sluice_acquire_wait_seconds_bucket", "resource=\"a\"", "le=\"+Inf\"")).isEqualTo(1.0);
      assertThat(value(s, "sluice_acquire_wait_seconds_count", "resource=\"a\"")).isEqualTo(1.0);
    }
  }

  @Test
  void resourcesBeyondTheCapAreMeteredTogetherUnderOther() throws Exception {
    try (SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
            .metricsMaxResources(1).shutdownGrace(Duration.ZERO).build().start();
        SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.port()).build()) {
      for (String r : List.of("a", "b", "c")) {
        limit(server, r, 0);
      }
      Map<String, Integer> grants = Map.of("a", 2, "b", 3, "c", 4);
      for (String r : List.of("a", "b", "c")) {
        for (int i = 0; i < grants.get(r); i++) {
          client.acquire(r).close();
        }
      }
      String s = scrape(server);
      assertThat(value(s, "sluice_acquire_granted_total", "resource=\"a\"")).isEqualTo(2.0);
      assertThat(value(s, "sluice_acquire_granted_total", "resource=\"b\"")).isNull();
      assertThat(value(s, "sluice_acquire_granted_total", "resource=\"_other\"")).isEqualTo(7.0);
      // The gauges and the dashboard follow the first resource by name only.
      await().atMost(Duration.ofSeconds(10)).until(() ->
          value(scrape(server), "sluice_resource_paused", "resource=\"a\"") != null);
      assertThat(value(scrape(server), "sluice_resource_paused", "resource=\"b\"")).isNull();
    }
  }
}
