package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.redis.RedisProcess;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 24's observability of store outages: a node counts each outage and each call whose
 * effect is unknown, says how long the outage lasted when the store is back, counts a data loss
 * it recovered from, and its health follows the store at once.
 */
class StoreOutageMetricsTest {

  private static final Pattern BACK = Pattern.compile("Redis at redis://\\S+ is reachable again after (\\d+) ms away");

  private static java.net.http.HttpResponse<String> get(SluiceServer node, String path) throws Exception {
    return java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
            java.net.URI.create("http://127.0.0.1:" + node.httpPort() + path)).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString());
  }

  private static Double metric(SluiceServer node, String name) throws Exception {
    return MetricsScrapeTest.value(get(node, "/metrics").body(), name);
  }

  @Test
  void anOutageIsCountedLoggedWithItsLengthAndAnEmptyRestartCountsALoss(@TempDir Path dir) throws Exception {
    try (LogCapture logs = new LogCapture();
        RedisProcess redis = RedisProcess.start();
        SluiceServer node = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir)
            .store(redis.uri()).nodeId("a").shutdownGrace(Duration.ofMillis(200)).build().start()) {
      dev.sluice.server.engine.SyncEngine.sync(node.engine()).setLimit(
          new LimitSpec("r", List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 10)), 0, 0, null));
      assertThat(metric(node, "sluice_store_reachable")).isEqualTo(1.0);
      assertThat(metric(node, "sluice_store_outages_total")).isZero();
      assertThat(metric(node, "sluice_store_data_losses_total")).isZero();
      assertThat(metric(node, "sluice_store_grants_stale_total")).isZero(); // counted: LostNoticeTest
      assertThat(metric(node, "sluice_slice_grants_total")).as("no --slice: zero, not NaN").isZero();
      assertThat(metric(node, "sluice_slice_slices_total")).isZero();

      // A stall longer than the command timeout (1 s): the acquire's script may have run, or not.
      redis.pause(Duration.ofMillis(2_500));
      try {
        node.engine().acquire("r", Map.of(), Lane.DEFAULT, 0, null).future().join();
      } catch (CompletionException e) {
        assertThat(e.getCause()).isInstanceOf(EngineException.class);
      }
      assertThat(metric(node, "sluice_store_commands_indeterminate_total")).isGreaterThanOrEqualTo(1.0);
      assertThat(metric(node, "sluice_store_outages_total")).isEqualTo(1.0);
      await().atMost(Duration.ofSeconds(10)).until(() -> metric(node, "sluice_store_reachable") == 1.0);

      redis.kill();
      try {
        node.engine().acquire("r", Map.of(), Lane.DEFAULT, 0, null).future().join();
      } catch (CompletionException e) {
        assertThat(e.getCause()).isInstanceOf(EngineException.class);
      }
      await().atMost(Duration.ofSeconds(10)).until(() -> metric(node, "sluice_store_reachable") == 0.0);
      assertThat(metric(node, "sluice_store_outages_total")).isEqualTo(2.0);

      redis.restart(); // empty
      await().atMost(Duration.ofSeconds(10)).until(() -> metric(node, "sluice_store_reachable") == 1.0);
      await().atMost(Duration.ofSeconds(10)).until(() -> metric(node, "sluice_store_data_losses_total") == 1.0);
      assertThat(metric(node, "sluice_store_outages_total")).as("two outages").isEqualTo(2.0);
      Matcher back = BACK.matcher(logs.text());
      assertThat(back.find()).as(logs.text()).isTrue();
      assertThat(Long.parseLong(back.group(1))).isPositive();
      assertThat(logs.text()).contains("REDIS LOST ITS DATA");
      assertThat(dev.sluice.server.engine.SyncEngine.sync(node.engine()).getLimit("r")).isPresent();
    }
  }
}
