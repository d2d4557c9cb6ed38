package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.SliceEngine;
import dev.sluice.server.redis.RedisProcess;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Slice mode through the real server: two nodes on one Redis, started with a slice rule for
 * {@code fast-*}, and the SDK over Netty on both. The matching resource is served from slices
 * (the store makes far fewer grants than the workers get); another resource, and a limit the
 * mode does not take (a concurrency cap), are served as always.
 */
class SliceModeServerTest {

  private static SluiceServer node(RedisProcess redis, Path dir, String id) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir.resolve(id)).store(redis.uri())
        .nodeId(id)
        .slices(List.of(SliceEngine.Rule.parse("fast-*=20ms"))).shutdownGrace(Duration.ofMillis(200)).build()
        .start();
  }

  private static double metric(SluiceServer node, String name) throws Exception {
    String scrape = java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
            java.net.URI.create("http://127.0.0.1:" + node.httpPort() + "/metrics")).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString()).body();
    Double v = MetricsScrapeTest.value(scrape, name);
    assertThat(v).as("%s in the scrape", name).isNotNull();
    return v;
  }

  @Test
  void twoNodesServeASlicedResourceFromSlicesAndTheRestAsAlways(@TempDir Path dir) throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer a = node(redis, dir, "a");
        SluiceServer b = node(redis, dir, "b");
        SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + a.port() + ",127.0.0.1:" + b.port())
            .session(2).build()) {
      // 10 000/s: far above what the test asks (buckets start empty: the first waits are short).
      RateSpec rate = new RateSpec("requests", 10_000, Duration.ofSeconds(1), 10_000);
      sync(a.engine()).setLimit(new LimitSpec("fast-1", List.of(rate), 0, 0, null));
      sync(a.engine()).setLimit(new LimitSpec("plain", List.of(rate), 0, 0, null));
      sync(a.engine()).setLimit(new LimitSpec("fast-capped", List.of(rate), 4, 0, null));
      // 8 threads x 50 permits, each held while the next ones are asked for.
      Set<String> sliced = java.util.concurrent.ConcurrentHashMap.newKeySet();
      var pool = java.util.concurrent.Executors.newFixedThreadPool(8);
      try {
        List<java.util.concurrent.Future<?>> runs = new ArrayList<>();
        for (int t = 0; t < 8; t++) {
          runs.add(pool.submit(() -> {
            for (int i = 0; i < 50; i++) {
              try (Permit p = client.acquire("fast-1", Load.requests(1))) {
                sliced.add(p.id());
              }
            }
            return null;
          }));
        }
        for (var r : runs) {
          r.get();
        }
      } finally {
        pool.shutdownNow();
      }
      assertThat(sliced).hasSize(400).allMatch(id -> id.startsWith("slice-"));
      // The store granted slices, not permits: several permits to a slice (Redis counts the
      // grants of every node; either node reads the same count).
      long storeGrants = sync(a.engine()).stats("fast-1").granted();
      System.out.printf("slice mode over Netty: 400 permits from %d store grants%n", storeGrants);
      assertThat(storeGrants).as("grants the store made (slices)").isBetween(1L, 199L);
      // The same, as each node's meters say it.
      double local = metric(a, "sluice_slice_grants_total") + metric(b, "sluice_slice_grants_total");
      double slices = metric(a, "sluice_slice_slices_total") + metric(b, "sluice_slice_slices_total");
      assertThat(local).isEqualTo(400.0);
      assertThat(slices).isEqualTo((double) storeGrants);

      try (Permit p = client.acquire("plain", Load.requests(1))) {
        assertThat(p.id()).as("a resource no rule names").doesNotStartWith("slice-");
      }
      try (Permit p = client.acquire("fast-capped", Load.requests(1))) {
        assertThat(p.id()).as("a limit with a concurrency cap").doesNotStartWith("slice-");
      }
    }
  }
}
