package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;

import dev.sluice.client.AuthenticationException;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.RevokeKeyRequest;
import dev.sluice.proto.v1.Role;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.client.SluiceUnavailableException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.redis.RedisProcess;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The server on the Redis store, over Netty: two nodes, one quota; health follows Redis. */
class RedisStoreServerTest {

  private static SluiceServer node(RedisProcess redis, Path dir, String id) throws Exception {
    return SluiceServer.builder()
        .host("127.0.0.1")
        .port(0)
        .dataDir(dir.resolve(id))
        .store(redis.uri())
        .nodeId(id)
        .shutdownGrace(Duration.ofMillis(200))
        .build()
        .start();
  }

  private static SluiceServer httpNode(RedisProcess redis, Path dir, String id) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir.resolve(id))
        .store(redis.uri()).nodeId(id).shutdownGrace(Duration.ofMillis(200)).build().start();
  }

  private static java.net.http.HttpResponse<String> http(SluiceServer node, String method, String path)
      throws Exception {
    return java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
            java.net.URI.create("http://127.0.0.1:" + node.httpPort() + path))
        .method(method, java.net.http.HttpRequest.BodyPublishers.noBody()).build(),
        java.net.http.HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void overHttpAPermitTakenOnOneNodeIsReleasedOnAnotherAndEveryNodeExportsTheStoreCounters(@TempDir Path dir)
      throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer a = httpNode(redis, dir, "a");
        SluiceServer b = httpNode(redis, dir, "b")) {
      sync(a.engine()).setLimit(new LimitSpec("shared", List.of(), 1, 0, Duration.ofMinutes(1)));
      var granted = http(a, "POST", "/v1/resources/shared/acquire?timeout=10s");
      assertThat(granted.statusCode()).as(granted.body()).isEqualTo(200);
      String permit = new com.fasterxml.jackson.databind.ObjectMapper().readTree(granted.body()).get("permitId")
          .asText();
      assertThat(http(b, "POST", "/v1/resources/shared/acquire?timeout=50ms").statusCode())
          .as("the cap is shared").isEqualTo(408);
      var released = http(b, "POST", "/v1/permits/" + permit + "/release");
      assertThat(released.body()).contains("\"released\":true");
      assertThat(http(b, "POST", "/v1/resources/shared/acquire?timeout=10s").statusCode()).isEqualTo(200);

      // Counters come from the store: both nodes show the cluster's totals.
      for (SluiceServer node : List.of(a, b)) {
        await().atMost(Duration.ofSeconds(10)).until(() -> {
          String scrape = http(node, "GET", "/metrics").body();
          return Double.valueOf(2).equals(MetricsScrapeTest.value(scrape, "sluice_acquire_granted_total",
                  "resource=\"shared\""))
              && Double.valueOf(1).equals(MetricsScrapeTest.value(scrape, "sluice_acquire_timed_out_total",
                  "resource=\"shared\""));
        });
      }
      // Buffers are shared too: one created on A is listed on B (RedisBufferSharingTest has more).
      var created = java.net.http.HttpClient.newHttpClient().send(java.net.http.HttpRequest.newBuilder(
              java.net.URI.create("http://127.0.0.1:" + a.httpPort() + "/v1/buffers"))
          .POST(java.net.http.HttpRequest.BodyPublishers.ofString("{\"name\": \"hooks\", \"url\":"
              + " \"http://127.0.0.1:9/\", \"resource\": \"shared\"}")).build(),
          java.net.http.HttpResponse.BodyHandlers.ofString());
      assertThat(created.statusCode()).as(created.body()).isEqualTo(201);
      var listed = http(b, "GET", "/v1/buffers");
      assertThat(listed.statusCode()).isEqualTo(200);
      assertThat(listed.body()).contains("\"hooks\"");
      assertThat(http(a, "GET", "/readyz").statusCode()).isEqualTo(200);
      redis.kill();
      await().atMost(Duration.ofSeconds(10)).until(() -> http(a, "GET", "/readyz").statusCode() == 503);
      assertThat(http(a, "GET", "/healthz").statusCode()).as("alive, just not ready").isEqualTo(200);
      var away = http(a, "POST", "/v1/resources/shared/acquire?timeout=1s");
      assertThat(away.statusCode()).as(away.body()).isEqualTo(503);
      assertThat(away.headers().firstValue("retry-after")).hasValue("1");
    }
  }

  @Test
  void twoNodesShareOneQuotaAndHealthFollowsRedis(@TempDir Path dir) throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer a = node(redis, dir, "a");
        SluiceServer b = node(redis, dir, "b");
        SluiceClient onA = SluiceClient.builder().target("127.0.0.1:" + a.port()).build();
        SluiceClient onB = SluiceClient.builder().target("127.0.0.1:" + b.port()).build()) {
      sync(a.engine()).setLimit(new LimitSpec("shared", List.of(), 1, 0, Duration.ofMinutes(1)));
      assertThat(sync(b.engine()).getLimit("shared")).as("a limit set on a is b's too").isPresent();

      Permit held = onA.acquire("shared", Load.requests(1));
      var waiting =
          onB.acquireAsync("shared", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(30)).build());
      await().atMost(Duration.ofSeconds(10))
          .until(() -> sync(b.engine()).stats("shared").waiting().values().stream().mapToInt(Integer::intValue).sum() == 1);
      assertThat(waiting).as("the cap is shared: b's caller waits for a's permit").isNotDone();
      held.close();
      Permit second = waiting.get(10, TimeUnit.SECONDS);
      second.close();
      await().atMost(Duration.ofSeconds(5)).until(() -> sync(a.engine()).stats("shared").inFlight() == 0);

      ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", a.port()).usePlaintext().build();
      try {
        var health = HealthGrpc.newBlockingStub(ch);
        assertThat(health.check(HealthCheckRequest.getDefaultInstance()).getStatus())
            .isEqualTo(ServingStatus.SERVING);
        redis.kill();
        await().atMost(Duration.ofSeconds(10))
            .until(() -> health.check(HealthCheckRequest.getDefaultInstance()).getStatus()
                == ServingStatus.NOT_SERVING);
        assertThatThrownBy(
                () -> onA.acquire("shared", Load.requests(1),
                    AcquireOptions.builder().timeout(Duration.ofSeconds(2)).build()))
            .isInstanceOf(SluiceUnavailableException.class);
        redis.restart();
        await().atMost(Duration.ofSeconds(15))
            .until(() -> health.check(HealthCheckRequest.getDefaultInstance()).getStatus()
                == ServingStatus.SERVING);
        // Redis came back empty: the nodes restored the limit they knew.
        await().atMost(Duration.ofSeconds(5)).until(() -> sync(b.engine()).getLimit("shared").isPresent());
        try (Permit again = onB.acquire("shared", Load.requests(1))) {
          assertThat(again).isNotNull();
        }
      } finally {
        ch.shutdownNow();
      }
    }
  }

  @Test
  void apiKeysLiveInRedisSoEveryNodeKnowsThemAndARevocationReachesEveryNode(@TempDir Path dir)
      throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer a = node(redis, dir, "a");
        SluiceServer b = node(redis, dir, "b")) {
      sync(a.engine()).setLimit(new LimitSpec("shared", List.of(), 5, 0, Duration.ofMinutes(1)));
      ManagedChannel chA = ManagedChannelBuilder.forAddress("127.0.0.1", a.port()).usePlaintext().build();
      try {
        var openAdmin = AdminGrpc.newBlockingStub(chA);
        // A first key that is not admin would lock every admin call out, on every node.
        assertThatThrownBy(() -> openAdmin.createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER)
            .setResources("shared").build())).hasMessageContaining("FAILED_PRECONDITION")
            .hasMessageContaining("create an admin key first");
        assertThat(a.redisStore().sharedHash("keys").all()).isEmpty();
        String adminKey = openAdmin.createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN).build()).getKey();
        var admin = openAdmin.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(bearer(adminKey)));
        String workerKey = admin.createKey(
            CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER).setResources("shared").build()).getKey();
        try (SluiceClient keyless = SluiceClient.builder().target("127.0.0.1:" + b.port()).build();
            SluiceClient worker = SluiceClient.builder().target("127.0.0.1:" + b.port()).apiKey(workerKey).build()) {
          // b reads the keys from Redis (refreshed every second): it is no longer open.
          await().atMost(Duration.ofSeconds(5)).untilAsserted(() ->
              assertThatThrownBy(() -> keyless.acquire("shared", Load.requests(1)).close())
                  .isInstanceOf(AuthenticationException.class));
          await().atMost(Duration.ofSeconds(5)).untilAsserted(() ->
              worker.acquire("shared", Load.requests(1)).close()); // b has read the worker key too

          assertThat(admin.revokeKey(RevokeKeyRequest.newBuilder().setId(workerKey.substring(4, 16)).build())
              .getRevoked()).isTrue();
          assertThat(a.redisStore().sharedHash("keys").all())
              .as("gone from Redis").hasSize(1);

          // (A permit granted before b refreshed is closed at once: the cap is 5.)
          await().atMost(Duration.ofSeconds(5)).untilAsserted(() ->
              assertThatThrownBy(() -> worker.acquire("shared", Load.requests(1)).close())
                  .isInstanceOf(AuthenticationException.class).hasMessageContaining("unknown or revoked"));
        }
      } finally {
        chA.shutdownNow();
      }
    }
  }

  private static Metadata bearer(String key) {
    Metadata h = new Metadata();
    h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
    return h;
  }
}
