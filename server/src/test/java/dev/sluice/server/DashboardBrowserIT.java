package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.client.SluiceException;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.Role;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.TenantPolicy;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The dashboard end to end, in real headless Chromium (Debian's, driven by Playwright's
 * playwright-core): a coordinator with API keys under load from SDK workers; the page must go
 * live, show grants/s and refusals/s (rates) and totals moving, fill its chart with a percentage
 * scale and time ticks, show each bucket's level, offer only the action that applies, offer sort
 * and filter with more than 10 resources, show a resource paused by an upstream 429 report with
 * the time left and the report's time, refuse a pause without a key, then pause the resource with
 * the admin key (the badge names the admin), after which the workers' acquires stop being
 * granted. A resource shared between tenants shows its tenant panel: shares against fair shares,
 * weights, floors, caps and waiters. A pool shows in the pools table with each member's pause and
 * grants through the pool. The screenshot is kept as server/target/dashboard.png (docs/operations.md shows a copy,
 * docs/dashboard.png).
 */
class DashboardBrowserIT {

  private static final String RESOURCE = "openai";
  private static final String TEAMS = "teams";

  @TempDir Path dataDir;

  @Test
  void thePageShowsTheLoadMovingAndItsPauseButtonStopsTheWorkers() throws Exception {
    NodeTool.require("node", "sudo apt-get install -y nodejs");
    if (System.getenv("CHROMIUM") == null && !Files.isExecutable(Path.of("/usr/bin/chromium"))) {
      NodeTool.require("chromium", "sudo apt-get install -y chromium");
    }
    Path browserDir = NodeTool.testDir("browser");
    NodeTool.npmCi(browserDir);

    try (SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).build().start()) {
      String adminKey;
      String workerKey;
      ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
      try {
        adminKey = AdminGrpc.newBlockingStub(ch).createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN)
            .build()).getKey();
        Metadata h = new Metadata();
        h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + adminKey);
        workerKey = AdminGrpc.newBlockingStub(ch).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h))
            .createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER).setResources(RESOURCE + ",shop-api").build())
            .getKey();
      } finally {
        ch.shutdownNow();
      }
      sync(server.engine()).setLimit(new LimitSpec(RESOURCE, List.of(
          new RateSpec("requests", 40, Duration.ofSeconds(1), 4),
          new RateSpec("tokens", 240_000, Duration.ofMinutes(1), 4_000)), 8, 1_000, Duration.ofSeconds(30)));
      // A second quota, oversubscribed: its queue shows on the page (and in the screenshot).
      sync(server.engine()).setLimit(new LimitSpec("shop-api", List.of(new RateSpec("requests", 5, Duration.ofSeconds(1), 1)),
          0, 1_000, Duration.ofSeconds(30)));
      // A quota shared between tenants: search (weight 3, floor 40 %) took 900 tokens, batch 300;
      // batch's next call waits on its own cap; research (a cap, no traffic) and default are idle.
      sync(server.engine()).setLimit(new LimitSpec(TEAMS, List.of(
          new RateSpec("requests", 600, Duration.ofMinutes(1), 100),
          new RateSpec("tokens", 60_000, Duration.ofMinutes(1), 5_000)), 0, 1_000, Duration.ofSeconds(30),
          new TenantPolicy(Map.of("search", 3.0, "batch", 1.0), Map.of("search", 0.4), Map.of(
              "batch", List.of(new RateSpec("requests", 1, Duration.ofHours(1), 1)),
              "research", List.of(new RateSpec("tokens", 1_000, Duration.ofMinutes(1), 16))))));
      for (String tenant : new String[] {"search", "search", "search", "batch"}) {
        String p = sync(server.engine()).acquire(TEAMS, Map.of("requests", 1L, "tokens", 300L), Lane.DEFAULT,
            10_000_000_000L, null, tenant).future().join().permitId();
        sync(server.engine()).release(TEAMS, p, Map.of("requests", 1L, "tokens", 300L), true, false);
      }
      sync(server.engine()).acquire(TEAMS, Map.of("requests", 1L, "tokens", 1L), Lane.DEFAULT, 600_000_000_000L, null,
          "batch");
      // A pool of two keys, one paused: the pools table lists both, with their grants through the pool.
      for (String key : new String[] {"key-a", "key-b"}) {
        sync(server.engine()).setLimit(new LimitSpec(key, List.of(), 1, 100, Duration.ofSeconds(30)));
      }
      sync(server.engine()).setLimit(LimitSpec.pool("keys", List.of("key-a", "key-b")));
      sync(server.engine()).pause("key-b", -1);
      // Ten idle quotas more: past 10 resources the page offers sort and filter.
      for (int i = 1; i <= 10; i++) {
        sync(server.engine()).setLimit(new LimitSpec(String.format("idle-%02d", i),
            List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 10)), 0, 100, Duration.ofSeconds(30)));
      }

      AtomicLong grants = new AtomicLong();
      AtomicBoolean stop = new AtomicBoolean();
      List<Thread> workers = new ArrayList<>();
      try (SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.port()).apiKey(workerKey)
          .build()) {
        for (int i = 0; i < 6; i++) {
          String resource = i < 4 ? RESOURCE : "shop-api";
          Thread t = new Thread(() -> {
            while (!stop.get()) {
              Load load = resource.equals(RESOURCE) ? Load.of("requests", 1, "tokens", 150) : Load.requests(1);
              try (Permit p = client.acquire(resource, load,
                  AcquireOptions.builder().timeout(Duration.ofSeconds(60)).build())) {
                if (resource.equals(RESOURCE)) {
                  grants.incrementAndGet();
                  Thread.sleep(20); // the "call"
                  p.settle(Load.of("tokens", 100));
                }
              } catch (InterruptedException e) {
                return;
              } catch (SluiceException e) {
                // the end of the test closes the client under waiting acquires
              }
            }
          }, "dashboard-worker-" + i);
          t.setDaemon(true);
          t.start();
          workers.add(t);
        }

        // A paused buffer holding 3 items: the page lists it under Buffers.
        java.net.http.HttpClient web = java.net.http.HttpClient.newHttpClient();
        String http = "http://127.0.0.1:" + server.httpPort();
        for (String[] call : new String[][] {
            {"/v1/buffers", "{\"name\": \"outbox\", \"url\": \"http://127.0.0.1:9/hook\", \"resource\": \"shop-api\"}"},
            {"/v1/buffers/outbox/pause", ""},
            {"/v1/buffers/outbox/items", "{\"items\": [{\"body\": \"1\"}, {\"body\": \"2\"}, {\"body\": \"3\"}]}"},
            // One grant of the pool, handed over by the HTTP port: key-b is paused, so key-a grants it.
            {"/v1/resources/keys/acquire", "{\"timeout\": \"5s\"}"},
            // A worker's 429 on shop-api: paused for every worker until its retry-after passes.
            {"/v1/resources/shop-api/report", "{\"throttled\": true, \"retryAfter\": 600}"}}) {
          var r = web.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(http + call[0]))
              .header("Authorization", "Bearer " + adminKey)
              .POST(java.net.http.HttpRequest.BodyPublishers.ofString(call[1])).build(),
              java.net.http.HttpResponse.BodyHandlers.ofString());
          assertThat(r.statusCode()).as(call[0] + ": " + r.body()).isBetween(200, 202);
        }
        Path shot = Path.of("target", "dashboard.png").toAbsolutePath();
        Files.createDirectories(shot.getParent());
        NodeTool.Run run = NodeTool.run(browserDir, Duration.ofMinutes(2), Map.of("EXPECT_BUFFER", "outbox:3", "THROTTLED", "shop-api", "TENANTS", TEAMS, "POOL", "keys"), "node",
            "dashboard-check.mjs",
            "http://127.0.0.1:" + server.httpPort() + "/", RESOURCE, adminKey, shot.toString());
        assertThat(run.exit()).as("dashboard-check.mjs failed:\n" + run.log()).isZero();
        JsonNode seen = new ObjectMapper().readTree(run.lastLine());
        assertThat(seen.get("second").asLong()).as("the granted count moved on the page")
            .isGreaterThan(seen.get("first").asLong());
        assertThat(seen.get("first").asLong()).isPositive();
        assertThat(seen.get("points").asInt()).as("chart points").isGreaterThanOrEqualTo(3);
        assertThat(seen.get("limits").asText()).contains("requests 40/s (burst 4)", "at most 8 in flight");
        assertThat(seen.get("refused").asText()).contains("401", "requires an API key");
        assertThat(seen.get("badge").asText()).isEqualTo("paused by an admin until resumed");
        assertThat(seen.get("rate").asText()).as("grants/s, a rate").endsWith("/s");
        assertThat(seen.get("refusals").asText()).as("refusals/s, a rate").endsWith("/s");
        // The chart's percentage scale: top, middle, 0 %; the top is 100 % or, when the burst was
        // drawn on, the next 50 % step above the highest point.
        JsonNode scale = seen.get("scale");
        assertThat(scale).hasSize(3);
        assertThat(scale.get(2).asText()).isEqualTo("0 %");
        assertThat(scale.get(0).asText()).matches("\\d+ %");
        int top = Integer.parseInt(scale.get(0).asText().replace(" %", ""));
        assertThat(top).isGreaterThanOrEqualTo(100).matches(t -> t % 50 == 0, "a 50 % step");
        assertThat(scale.get(1).asText()).isEqualTo(top / 2 + " %");
        assertThat(seen.get("axis")).as("time ticks under the chart").hasSize(4);
        assertThat(seen.get("axis").get(0).asText()).as("15 minutes ago, clock time").matches("\\d\\d:\\d\\d");
        assertThat(seen.get("axis").get(2).asText()).as("5 minutes ago").matches("\\d\\d:\\d\\d");
        assertThat(seen.get("axis").get(3).asText()).isEqualTo("now");
        assertThat(seen.get("level").asText()).as("the tokens bucket's level").matches("bucket -?\\d+ %");
        JsonNode actions = seen.get("actions");
        assertThat(actions.get("pauseShownUnpaused").asBoolean()).as("Pause offered while running").isTrue();
        assertThat(actions.get("resumeShownUnpaused").asBoolean()).as("Resume not offered while running").isFalse();
        assertThat(actions.get("pauseShownPaused").asBoolean()).as("Pause not offered while paused").isFalse();
        assertThat(actions.get("resumeShownPaused").asBoolean()).as("Resume offered while paused").isTrue();
        JsonNode throttled = seen.get("throttled");
        assertThat(throttled.get("badge").asText()).as("paused by the 429 report, with the time left")
            .matches("paused after an upstream 429 · (9m \\d+s|10m) left");
        assertThat(throttled.get("reports").asText()).as("the report, with its time")
            .matches("upstream 429 reports: 1 · last .+ ago · at \\d\\d:\\d\\d:\\d\\d");
        assertThat(throttled.get("pauseShown").asBoolean()).isFalse();
        assertThat(throttled.get("resumeShown").asBoolean()).isTrue();
        // The tenant panel: each tenant's share of tokens (the binding dimension) against the fair
        // share its weight gives it among the active tenants, floor, cap and waiters.
        JsonNode tenants = seen.get("tenants");
        assertThat(tenants.get("title").asText()).startsWith("tenants · share of tokens over the last ");
        JsonNode rows = tenants.get("rows");
        assertThat(rows.fieldNames()).toIterable().containsExactly("batch", "default", "research", "search");
        assertThat(rows.get("search").toString()).isEqualTo("{\"share\":\"75 %\",\"fair\":\"75 %\",\"weight\":\"3\","
            + "\"floor\":\"40 %\",\"cap\":\"–\",\"waiting\":\"0\"}");
        assertThat(rows.get("batch").toString()).isEqualTo("{\"share\":\"25 %\",\"fair\":\"25 %\",\"weight\":\"1\","
            + "\"floor\":\"–\",\"cap\":\"requests 1/h\",\"waiting\":\"1\"}");
        assertThat(rows.get("research").toString()).isEqualTo("{\"share\":\"0 %\",\"fair\":\"0 %\",\"weight\":\"1\","
            + "\"floor\":\"–\",\"cap\":\"tokens 1,000/min\",\"waiting\":\"0\"}");
        assertThat(rows.get("default").get("share").asText()).isEqualTo("0 %");
        // The pools table: each member, its pause, and the grants it made through the pool.
        JsonNode pool = seen.get("pool");
        assertThat(pool.fieldNames()).toIterable().containsExactly("key-a", "key-b");
        assertThat(pool.get("key-a").toString()).isEqualTo("{\"state\":\"granting\",\"poolGrants\":\"1\","
            + "\"pausedRow\":false}");
        assertThat(pool.get("key-b").toString()).isEqualTo("{\"state\":\"paused until resumed\",\"poolGrants\":\"0\","
            + "\"pausedRow\":true}");
        assertThat(seen.get("toolbar").asBoolean()).as("sort and filter with 13 resources").isTrue();
        assertThat(seen.get("filtered").get("resourceShown").asBoolean()).as("filtered out").isFalse();
        assertThat(seen.get("filtered").get("idleShown").asInt()).isEqualTo(10);
        assertThat(seen.get("filtered").get("shown").asText()).isEqualTo("10 shown");
        assertThat(seen.get("firstByUtilization").asText()).as("the busiest first").isEqualTo(RESOURCE);
        assertThat(seen.get("buffer").asText()).contains("outbox", "shop-api", "paused");
        assertThat(Files.size(shot)).as("screenshot").isGreaterThan(10_000);
        // The documented way to take one by hand (docs/operations.md): a timed wait, as the
        // event stream never lets the network go idle.
        Path timed = Path.of("target", "dashboard-timed.png").toAbsolutePath();
        NodeTool.Run byHand = NodeTool.run(browserDir, Duration.ofMinutes(1), Map.of(), "node", "screenshot.mjs",
            "http://127.0.0.1:" + server.httpPort() + "/", timed.toString(), "1");
        assertThat(byHand.exit()).as("screenshot.mjs failed:\n" + byHand.log()).isZero();
        assertThat(Files.size(timed)).as("timed screenshot").isGreaterThan(10_000);

        // The page's pause reached the engine, and the workers' acquires stop being granted.
        assertThat(sync(server.engine()).stats(RESOURCE).paused()).isTrue();
        await().atMost(Duration.ofSeconds(10)).until(() -> waiting(sync(server.engine()).stats(RESOURCE)) >= 4);
        long grantedAtPause = sync(server.engine()).stats(RESOURCE).granted();
        long workerGrants = grants.get();
        await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(5)).until(() ->
            sync(server.engine()).stats(RESOURCE).granted() == grantedAtPause && grants.get() == workerGrants);

        sync(server.engine()).resume(RESOURCE);
        await().atMost(Duration.ofSeconds(10)).until(() -> grants.get() > workerGrants);
        stop.set(true);
      } finally {
        stop.set(true);
        for (Thread t : workers) {
          t.interrupt();
        }
      }
      Path docs = Path.of("..", "docs", "dashboard.png");
      if (Boolean.getBoolean("sluice.refreshScreenshot") && Files.isDirectory(docs.getParent())) {
        Files.copy(Path.of("target", "dashboard.png"), docs, StandardCopyOption.REPLACE_EXISTING);
      }
    }
  }

  private static int waiting(ResourceSnapshot s) {
    return s.waiting().values().stream().mapToInt(Integer::intValue).sum();
  }
}
