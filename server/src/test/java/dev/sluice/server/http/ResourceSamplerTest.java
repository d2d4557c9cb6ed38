package dev.sluice.server.http;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.RateSpec;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The dashboard's sample on a fake clock: rates since the previous sample (not lifetime counts),
 * each bucket's level, who holds a pause and for how long, and the upstream throttle reports
 * with their time, as /v1/events sends them.
 */
class ResourceSamplerTest {

  private static final long SEC = 1_000_000_000L;
  private static final long WALL = 1_780_000_000_000L;

  private final FakeClock clock = new FakeClock();
  private final AtomicLong wall = new AtomicLong(WALL);
  private Engine engine;
  private ResourceSampler sampler;

  @BeforeEach
  void setUp() throws Exception {
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
    sampler = new ResourceSampler(engine, 100, clock::read, wall::get);
    sync(engine).setLimit(new LimitSpec("api", List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 10),
        new RateSpec("tokens", 1000, Duration.ofSeconds(1), 1000)), 0, 100, Duration.ofSeconds(30)));
  }

  @AfterEach
  void tearDown() {
    engine.close();
  }

  private JsonNode sample() {
    sampler.sample().join();
    return Views.sample(sampler.latest(), "n1", new PoolMeters(null, 0)).get("resources").get(0);
  }

  private void advance(long nanos) {
    clock.advance(Duration.ofNanos(nanos));
    wall.addAndGet(nanos / 1_000_000);
  }

  @Test
  void ratesAreSinceThePreviousSampleNotLifetimeCounts() {
    JsonNode first = sample();
    assertThat(first.get("rates").get("grantedPerSecond").isNull()).as("nothing to compare with").isTrue();

    advance(SEC);
    for (int i = 0; i < 5; i++) {
      sync(engine).acquire("api", Map.of("tokens", 100L), Lane.DEFAULT, 0).future().join();
    }
    // Above the burst: refused at once.
    assertThatThrownBy(() -> sync(engine).acquire("api", Map.of("tokens", 5000L), Lane.DEFAULT, 0))
        .hasMessageContaining("can never fit");
    advance(SEC);
    JsonNode second = sample();
    assertThat(second.get("granted").asLong()).isEqualTo(5);
    assertThat(second.get("rates").get("grantedPerSecond").asDouble()).isEqualTo(2.5);
    assertThat(second.get("rates").get("rejectedPerSecond").asDouble()).isEqualTo(0.5);
    assertThat(second.get("rates").get("timedOutPerSecond").asDouble()).isZero();

    advance(SEC);
    JsonNode third = sample();
    assertThat(third.get("granted").asLong()).as("the lifetime count stays").isEqualTo(5);
    assertThat(third.get("rates").get("grantedPerSecond").asDouble()).as("but nothing was granted since").isZero();
  }

  @Test
  void eachBucketsLevelIsWhatItHoldsOverItsBurst() {
    advance(SEC); // both full
    sync(engine).acquire("api", Map.of("tokens", 250L), Lane.DEFAULT, 0).future().join();
    JsonNode r = sample();
    assertThat(r.get("level").get("requests").asDouble()).isEqualTo(0.9);
    assertThat(r.get("level").get("tokens").asDouble()).isEqualTo(0.75);
  }

  @Test
  void aPauseSaysWhoHoldsItAndForHowLong() {
    JsonNode none = sample();
    assertThat(none.get("pause").get("by")).isEmpty();

    sync(engine).pause("api", -1);
    JsonNode admin = sample();
    assertThat(admin.get("paused").asBoolean()).isTrue();
    assertThat(admin.get("pause").get("by").toString()).isEqualTo("[\"admin\"]");
    assertThat(admin.get("pause").get("adminSeconds").asDouble()).isEqualTo(-1);

    sync(engine).resume("api");
    sync(engine).report("api", true, 20 * SEC, Map.of());
    advance(5 * SEC);
    JsonNode upstream = sample();
    assertThat(upstream.get("pause").get("by").toString()).isEqualTo("[\"upstream\"]");
    assertThat(upstream.get("pause").get("upstreamSeconds").asDouble()).isEqualTo(15.0);
    assertThat(upstream.get("pausedForSeconds").asDouble()).isEqualTo(15.0);
  }

  @Test
  void throttleReportsComeWithTheirTime() {
    JsonNode never = sample();
    assertThat(never.get("lastThrottleSecondsAgo").isNull()).isTrue();
    assertThat(never.get("recentThrottles")).isEmpty();

    advance(SEC);
    long firstAt = wall.get();
    sync(engine).report("api", true, SEC, Map.of());
    advance(3 * SEC);
    JsonNode one = sample();
    assertThat(one.get("throttleReports").asLong()).isEqualTo(1);
    assertThat(one.get("lastThrottleSecondsAgo").asDouble()).isEqualTo(3.0);
    assertThat(one.get("recentThrottles").toString()).isEqualTo("[" + firstAt + "]");

    long secondAt = wall.get();
    sync(engine).report("api", true, SEC, Map.of());
    advance(SEC);
    JsonNode two = sample();
    assertThat(two.get("recentThrottles").toString()).as("newest first")
        .isEqualTo("[" + secondAt + "," + firstAt + "]");
    advance(SEC);
    assertThat(sample().get("recentThrottles")).as("a report is listed once").hasSize(2);
  }
}
