package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The SDK's upstream-feedback calls ({@code reportThrottled}, {@code reportHeaders}, their async
 * forms and the deprecated boolean bridge) and {@code warmUp}, through a real coordinator over
 * Netty on loopback, its time on a {@link FakeClock}.
 */
class SdkReportTest {

  @TempDir Path dataDir;

  private final FakeClock clock = new FakeClock();
  private final List<AutoCloseable> closeables = new ArrayList<>();
  private SluiceServer server;

  @BeforeEach
  void setUp() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).shutdownGrace(Duration.ofSeconds(2))
        .clock(clock, clock).build().start();
    closeables.add(server);
    sync(server.engine()).setLimit(new LimitSpec("openai", List.of(
        new RateSpec("requests", 100, Duration.ofSeconds(1), 100),
        new RateSpec("tokens", 1000, Duration.ofSeconds(1), 1000)), 0, 0, null));
    clock.advance(Duration.ofSeconds(1)); // full buckets
  }

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private SluiceClient client(SluiceClient.Builder b) {
    SluiceClient c = b.target("127.0.0.1:" + server.port()).build();
    closeables.add(c);
    return c;
  }

  private SluiceClient client() {
    return client(SluiceClient.builder());
  }

  private double tokens() {
    return sync(server.engine()).stats("openai").available().get("tokens");
  }

  @Test
  void reportHeadersLowersWhatIsLeftAndNeverRaisesIt() throws Exception {
    SluiceClient c = client();
    assertThat(c.reportHeaders("openai", Map.of("X-RateLimit-Remaining-Tokens", "400"))).isZero();
    assertThat(tokens()).isEqualTo(400.0);
    assertThat(c.reportHeadersAsync("openai", Map.of("x-ratelimit-remaining-tokens", "900")).get(10, TimeUnit.SECONDS))
        .isZero();
    assertThat(tokens()).as("never raised").isEqualTo(400.0);
    assertThat(c.reportHeadersAsync("openai", Map.of("x-ratelimit-remaining-tokens", "100")).get(10, TimeUnit.SECONDS))
        .isZero();
    assertThat(tokens()).isEqualTo(100.0);
  }

  @Test
  void reportThrottledPausesEveryWorkerForRetryAfter() throws Exception {
    SluiceClient a = client();
    SluiceClient b = client();
    Duration paused = a.reportThrottled("openai", null, Map.of("Retry-After", "3"));
    assertThat(paused).isEqualTo(Duration.ofSeconds(3));
    assertThat(tokens()).as("a 429 empties the view").isEqualTo(0.0);

    CompletableFuture<Permit> other = b.acquireAsync("openai", Load.of("tokens", 10),
        AcquireOptions.builder().timeout(Duration.ofMinutes(1)).build());
    await().until(() -> sync(server.engine()).stats("openai").waiting().values().stream()
        .mapToInt(Integer::intValue).sum() == 1);
    clock.advance(Duration.ofMillis(2999));
    assertThat(other).isNotDone();
    clock.advance(Duration.ofMillis(1));
    other.get(10, TimeUnit.SECONDS).close();
  }

  @Test
  void reportThrottledAsyncTakesTheExplicitPauseOverTheHeaders() throws Exception {
    SluiceClient c = client();
    Duration paused = c.reportThrottledAsync("openai", Duration.ofSeconds(5), Map.of("retry-after", "1"))
        .get(10, TimeUnit.SECONDS);
    assertThat(paused).isEqualTo(Duration.ofSeconds(5));
    clock.advance(Duration.ofSeconds(4));
    assertThat(c.reportHeaders("openai", Map.of())).as("still paused").isEqualTo(Duration.ofSeconds(1));
  }

  @Test
  @SuppressWarnings("deprecation")
  void deprecatedBooleanReportStillWorks() {
    SluiceClient c = client();
    assertThat(c.report("openai", false, null, Map.of("x-ratelimit-remaining-tokens", "300"))).isZero();
    assertThat(tokens()).isEqualTo(300.0);
    assertThat(c.report("openai", true, Duration.ofSeconds(2), null)).isEqualTo(Duration.ofSeconds(2));
  }

  @Test
  void warmUpOfASessionClientLeavesItReadyToAcquire() throws Exception {
    SluiceClient c = client(SluiceClient.builder().session(2));
    assertThat(c.warmUp(Duration.ofSeconds(30))).isTrue();
    try (Permit p = c.acquire("openai", Load.of("tokens", 1))) {
      assertThat(p.granted().get("tokens")).isEqualTo(1L);
    }
  }
}
