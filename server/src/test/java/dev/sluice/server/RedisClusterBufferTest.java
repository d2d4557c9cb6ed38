package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.redis.RedisProcess;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Buffers on a real 3-master Redis Cluster: each buffer's keys share its {name} slot, so its
 * scripts run wherever the slot lives; one node delivering several buffers follows their streams
 * one read per buffer (a cluster XREAD cannot span slots), every buffer in its own order.
 */
class RedisClusterBufferTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path dir;

  @Test
  void buffersOnEveryMasterAreDeliveredInOrder() throws Exception {
    List<RedisProcess> masters = new ArrayList<>();
    SluiceServer node = null;
    try (Upstream up = new Upstream(10_000, 10_000)) {
      for (int i = 0; i < 3; i++) {
        masters.add(RedisProcess.start("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"));
      }
      RedisProcess.formCluster(masters);
      String uri = "redis-cluster://" + String.join(",", masters.stream().map(m -> "127.0.0.1:" + m.port()).toList());
      node = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir).store(uri).nodeId("a")
          .shutdownGrace(Duration.ZERO).build().start();
      HttpClient http = HttpClient.newHttpClient();
      String base = "http://127.0.0.1:" + node.httpPort();
      List<String> names = List.of("alpha", "bravo", "charlie", "delta", "echo", "foxtrot");
      for (String name : names) {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/buffers"))
            .POST(HttpRequest.BodyPublishers.ofString("{\"name\": \"" + name + "\", \"url\": \"" + up.url("/" + name)
                + "\", \"rate\": {\"amount\": 100, \"period\": \"1s\", \"burst\": 1}}")).build(),
            HttpResponse.BodyHandlers.ofString());
        assertThat(r.statusCode()).as(r.body()).isEqualTo(201);
      }
      for (String name : names) {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/buffers/" + name + "/items"))
            .POST(HttpRequest.BodyPublishers.ofString(BufferTest.items(0, 30))).build(),
            HttpResponse.BodyHandlers.ofString());
        assertThat(r.statusCode()).as(r.body()).isEqualTo(202);
      }
      await().atMost(Duration.ofSeconds(30)).until(() -> up.arrivals().size() >= names.size() * 30);
      Map<String, List<Integer>> byBuffer = new HashMap<>();
      for (Upstream.Arrival a : up.arrivals()) {
        byBuffer.computeIfAbsent(a.path(), p -> new ArrayList<>()).add(JSON.readTree(a.body()).get("n").asInt());
      }
      assertThat(byBuffer).hasSize(names.size());
      for (var e : byBuffer.entrySet()) {
        assertThat(e.getValue()).as("buffer %s", e.getKey()).hasSize(30).isSorted().doesNotHaveDuplicates();
      }
    } finally {
      if (node != null) {
        node.close();
      }
      for (RedisProcess m : masters) {
        m.close();
      }
    }
  }
}
