package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.engine.RedisStore;
import dev.sluice.server.limits.LimitHistory;
import dev.sluice.server.limits.RedisLimitHistory;
import dev.sluice.server.redis.RedisProcess;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The limit history on a real 3-master Redis Cluster: each resource's list lives in its own slot
 * and the index in another, so every command names one key; the caps still hold.
 */
class RedisClusterLimitHistoryTest {

  @Test
  void historiesInEverySlotKeepTheirCapsAndTheOldestResourcesGo() throws Exception {
    List<RedisProcess> masters = new ArrayList<>();
    try {
      for (int i = 0; i < 3; i++) {
        masters.add(RedisProcess.start("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"));
      }
      RedisProcess.formCluster(masters);
      String uri = "redis-cluster://" + String.join(",", masters.stream().map(m -> "127.0.0.1:" + m.port()).toList());
      try (RedisStore store = RedisStore.builder().uri(uri).build()) {
        // The cluster's slots reach the client a moment after it forms: wait until every key answers.
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).ignoreExceptions().until(() -> {
          for (int r = 0; r < 12; r++) {
            store.async().get("sluice:history:{res-" + r + "}").toCompletableFuture().join();
          }
          return true;
        });
        LimitHistory history = new RedisLimitHistory(store, 3, 10);
        for (int r = 0; r < 12; r++) {
          for (int i = 0; i < 5; i++) {
            history.add("res-" + r, new LimitHistory.Entry(1000L * r + i, "local", "changed",
                List.of("concurrency " + i + " → " + (i + 1)))).join();
          }
        }
        assertThat(history.recent("res-11", 50).join()).extracting(e -> e.changes().get(0))
            .containsExactly("concurrency 4 → 5", "concurrency 3 → 4", "concurrency 2 → 3");
        assertThat(history.recent("res-0", 50).join()).as("changed longest ago: dropped").isEmpty();
        assertThat(history.recent("res-1", 50).join()).isEmpty();
        assertThat(history.recent("res-2", 50).join()).hasSize(3);
        assertThat(history.recent("res-5", 1).join()).hasSize(1);
      }
    } finally {
      for (RedisProcess m : masters) {
        m.close();
      }
    }
  }
}
