package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.PauseRequest;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.ResumeRequest;
import dev.sluice.proto.v1.TenantStats;
import dev.sluice.server.auth.FileKeyStore;
import dev.sluice.server.auth.KeyAdmin;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.TenantPolicy;
import dev.sluice.server.engine.TenantShares;
import dev.sluice.server.redis.RedisProcess;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Server;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The tenant rows of GetStats: what the engine keeps per tenant plus the recent shares and, per
 * tenant and lane, {@code Engine#estimate} of a one-unit acquire. In process on a fake clock for
 * exact figures; on Redis across two nodes for the shared store's path.
 */
class TenantStatsTest {

  @TempDir Path dir;

  private static TenantStats tenant(ResourceStats s, String name) {
    return s.getTenantsList().stream().filter(t -> t.getTenant().equals(name)).findFirst().orElseThrow();
  }

  @Test
  void eachTenantsEstimateIsTheEnginesForOneUnitInEachLaneItsQueuedLoadFirst() throws Exception {
    FakeClock clock = new FakeClock();
    try (MemoryEngine engine = MemoryEngine.builder().ticker(clock).scheduler(clock).build()) {
      // 10 tokens a second, no jitter: the bucket starts empty, so one token is 100 ms away.
      sync(engine).setLimit(new LimitSpec("teams", List.of(new RateSpec("tokens", 10, Duration.ofSeconds(1), 10)),
          0, 100, Duration.ofSeconds(30), Duration.ZERO, new TenantPolicy(Map.of("search", 3.0), Map.of(), Map.of())));
      String name = InProcessServerBuilder.generateName();
      Server server = InProcessServerBuilder.forName(name).directExecutor()
          .addService(new AdminService(engine, Runnable::run,
              new KeyAdmin(new FileKeyStore(Files.createTempDirectory(dir, "keys")), System::currentTimeMillis), null,
              null, new TenantShares(clock::read)))
          .build().start();
      ManagedChannel channel = InProcessChannelBuilder.forName(name).directExecutor().build();
      try {
        var admin = AdminGrpc.newBlockingStub(channel);
        ResourceStats idle = admin.getStats(GetStatsRequest.newBuilder().setResource("teams").build()).getResources(0);
        assertThat(idle.getTenantsList()).extracting(TenantStats::getTenant).containsExactly("default", "search");
        assertThat(tenant(idle, "search").getEstimatedWaitSecondsMap())
            .isEqualTo(Map.of("interactive", 0.1, "default", 0.1, "batch", 0.1));
        assertThat(idle.getBindingDimension()).as("nothing used yet").isEmpty();

        // search queues 5 tokens in the default lane: its interactive lane is not behind them,
        // its default and batch lanes are (6 tokens: 600 ms). default has nothing queued.
        sync(engine).acquire("teams", Map.of("tokens", 5L), Lane.DEFAULT, TimeUnit.MINUTES.toNanos(1), null, "search");
        ResourceStats queued = admin.getStats(GetStatsRequest.newBuilder().setResource("teams").build()).getResources(0);
        TenantStats search = tenant(queued, "search");
        assertThat(search.getWaiting()).isEqualTo(1);
        assertThat(search.getEstimatedWaitSecondsMap())
            .isEqualTo(Map.of("interactive", 0.1, "default", 0.6, "batch", 0.6));
        assertThat(search.getEstimatedWaitSecondsMap().get("batch") * 1e9).as("the engine's own figure")
            .isEqualTo((double) sync(engine).estimate("teams", Map.of("tokens", 1L), Lane.BATCH, "search"));
        assertThat(tenant(queued, "default").getEstimatedWaitSecondsMap().get("default")).isEqualTo(0.1);
        assertThat(search.getFairShare()).as("the only active tenant").isEqualTo(1.0);

        sync(engine).pause("teams", -1);
        ResourceStats paused = admin.getStats(GetStatsRequest.newBuilder().setResource("teams").build()).getResources(0);
        assertThat(tenant(paused, "default").getEstimatedWaitSecondsMap())
            .as("paused until resumed: only an event helps").isEqualTo(Map.of("interactive", -1.0, "default", -1.0,
                "batch", -1.0));

        // Resumed and granted at 500 ms: search used 5 tokens, all of the binding dimension.
        sync(engine).resume("teams");
        clock.advance(Duration.ofMillis(500));
        ResourceStats used = admin.getStats(GetStatsRequest.newBuilder().build()).getResources(0);
        assertThat(used.getBindingDimension()).isEqualTo("tokens");
        assertThat(used.getTenantWindowSeconds()).isEqualTo(0.5);
        assertThat(tenant(used, "search").getRecentShare()).isEqualTo(1.0);
        assertThat(tenant(used, "search").getUsedMap()).isEqualTo(Map.of("tokens", 5.0));
        assertThat(tenant(used, "search").getEstimatedWaitSecondsMap()).as("every resource read: no estimates")
            .isEmpty();
      } finally {
        channel.shutdownNow();
        server.shutdownNow();
      }
    }
  }

  @Test
  void onRedisOneNodeShowsTheTenantsOfAcquiresMadeOnAnother() throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        SluiceServer a = node(redis, "a");
        SluiceServer b = node(redis, "b");
        SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + a.port()).build()) {
      ManagedChannel channel = ManagedChannelBuilder.forAddress("127.0.0.1", b.port()).usePlaintext().build();
      try {
        var admin = AdminGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
        sync(a.engine()).setLimit(new LimitSpec("shared", List.of(new RateSpec("tokens", 60_000, Duration.ofMinutes(1),
            1000)), 0, 100, Duration.ofSeconds(30), new TenantPolicy(Map.of("search", 3.0), Map.of(), Map.of())));
        for (String tenant : new String[] {"search", "search", "search", "team-x"}) {
          client.acquire("shared", Load.of("tokens", 100), AcquireOptions.builder().tenant(tenant).build()).close();
        }
        admin.pause(PauseRequest.newBuilder().setResource("shared").build());
        CompletableFuture<Permit> waiting = client.acquireAsync("shared", Load.of("tokens", 10),
            AcquireOptions.builder().tenant("search").timeout(Duration.ofSeconds(30)).build());
        ResourceStats s = await().atMost(Duration.ofSeconds(10)).until(
            () -> AdminGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
                .getStats(GetStatsRequest.newBuilder().setResource("shared").build()).getResources(0),
            x -> x.getTenantsCount() == 3 && tenant(x, "search").getWaiting() == 1);
        assertThat(s.getTenantsList()).extracting(TenantStats::getTenant).containsExactly("default", "other", "search");
        assertThat(s.getBindingDimension()).isEqualTo("tokens");
        assertThat(tenant(s, "search").getRecentShare()).isEqualTo(0.75);
        assertThat(tenant(s, "search").getFairShare()).isEqualTo(0.75);
        assertThat(tenant(s, "other").getRecentShare()).isEqualTo(0.25);
        assertThat(tenant(s, "search").getEstimatedWaitSecondsMap()).isEqualTo(Map.of("interactive", -1.0,
            "default", -1.0, "batch", -1.0));

        admin.resume(ResumeRequest.newBuilder().setResource("shared").build());
        waiting.get(10, TimeUnit.SECONDS).close();
        ResourceStats after = admin.getStats(GetStatsRequest.newBuilder().setResource("shared").build())
            .getResources(0);
        assertThat(tenant(after, "search").getEstimatedWaitSecondsMap()).containsOnlyKeys("interactive", "default",
            "batch").allSatisfy((lane, seconds) -> assertThat(seconds).isBetween(0.0, 1.0));
        assertThat(tenant(after, "search").getUsedMap()).isEqualTo(Map.of("tokens", 310.0));
      } finally {
        channel.shutdownNow();
      }
    }
  }

  private SluiceServer node(RedisProcess redis, String id) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve(id)).store(redis.uri()).nodeId(id)
        .shutdownGrace(Duration.ZERO).build().start();
  }
}
