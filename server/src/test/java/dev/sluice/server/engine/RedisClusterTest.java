package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The Redis engine on a real 3-master Redis Cluster: every script touches keys of one hash
 * slot only (the {resource} tag), so operations on resources spread over all three masters work,
 * and a grant made on one node reaches a waiter parked on another through cluster pub/sub.
 */
class RedisClusterTest {

  private static final long SEC = 1_000_000_000L;

  @Test
  void resourcesOnEveryMasterAndCrossNodeGrants() throws Exception {
    List<RedisProcess> masters = new ArrayList<>();
    FakeClock clock = new FakeClock();
    List<RedisEngine> nodes = new ArrayList<>();
    try {
      for (int i = 0; i < 3; i++) {
        masters.add(RedisProcess.start("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"));
      }
      RedisProcess.formCluster(masters);
      String uri =
          "redis-cluster://"
              + String.join(",", masters.stream().map(m -> "127.0.0.1:" + m.port()).toList());
      for (String id : List.of("a", "b")) {
        nodes.add(
            RedisEngine.builder()
                .uri(uri)
                .nodeId(id)
                .ticker(clock)
                .scheduler(clock)
                .housekeeping(Duration.ZERO)
                .build());
      }
      RedisEngine a = nodes.get(0);
      RedisEngine b = nodes.get(1);
      // 30 resources land on all three masters' slots.
      for (int i = 0; i < 30; i++) {
        sync(a).setLimit(new LimitSpec("res-" + i, List.of(), 1, 0, Duration.ofMinutes(1)));
      }
      assertThat(sync(b).listLimits("res-")).hasSize(30);
      for (int i = 0; i < 30; i++) {
        String r = "res-" + i;
        Grant held = sync(a).acquire(r, Map.of(), Lane.DEFAULT, 60 * SEC, "h-" + i).future().join();
        // In a tenant: its lanes are keys the script derives from the resource's, in the same slot.
        Ticket waiting = sync(b).acquire(r, Map.of(), Lane.DEFAULT, 60 * SEC, "w-" + i, "team-" + i % 3);
        assertThat(waiting.future()).isNotDone();
        assertThat(sync(a).release(r, held.permitId(), Map.of(), false, false)).isTrue();
        await().atMost(Duration.ofSeconds(10)).until(() -> waiting.future().isDone());
        assertThat(sync(b).stats(r).inFlight()).isEqualTo(1);
      }
    } finally {
      for (RedisEngine n : nodes) {
        n.closeStore();
      }
      for (RedisProcess m : masters) {
        m.close();
      }
    }
  }
}
