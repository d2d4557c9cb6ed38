package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.await;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.server.redis.RedisProcess;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Limits learned from the provider's headers, on both stores: the first report with limit
 * headers sets the rates, a change up or down is followed at once, a ceiling is never passed,
 * an unchanged report writes nothing, and the settings survive a restart.
 */
@ParameterizedClass(name = "{0}")
@EnumSource(LearnedLimitTest.Store.class)
class LearnedLimitTest {

  enum Store {
    MEMORY,
    REDIS
  }

  @Parameter Store store;
  @TempDir Path dir;

  private static RedisProcess redisProcess;
  private static final Duration MIN = Duration.ofMinutes(1);
  private static final long T1 = 1_796_000_000_000L;

  private final FakeClock clock = new FakeClock();
  private Engine engine;

  @BeforeEach
  void setUp() throws Exception {
    if (store == Store.REDIS) {
      if (redisProcess == null) {
        redisProcess = RedisProcess.start();
      }
      redisProcess.flushAll();
    }
    engine = newEngine();
  }

  private Engine newEngine() throws Exception {
    if (store == Store.MEMORY) {
      return MemoryEngine.builder().ticker(clock).scheduler(clock).store(new FileLimitStore(dir)).build();
    }
    return RedisEngine.builder().uri(redisProcess.uri()).ticker(clock).scheduler(clock)
        .housekeeping(Duration.ZERO).build();
  }

  @AfterEach
  void tearDown() {
    engine.close();
    engine.closeStore();
  }

  @AfterAll
  static void stopRedis() {
    if (redisProcess != null) {
      redisProcess.close();
      redisProcess = null;
    }
  }

  private static LimitSpec learning(String provider, RateSpec... ceilings) {
    return new LimitSpec("openai", List.of(new RateSpec("requests", 60, MIN, 1), new RateSpec("tokens", 10_000, MIN, 83)),
        0, 0, null, new LearnSpec(provider, List.of(ceilings), 0, ""));
  }

  private LimitSpec stored() {
    return await(engine.getLimit("openai")).orElseThrow();
  }

  private void report(Map<String, Long> limits, long wallMillis) {
    await(engine.report("openai", false, 0, Map.of(), limits, wallMillis));
  }

  @Test
  void firstReportSetsEachDimensionAsTheProviderEnforcesIt() {
    await(engine.setLimit(learning("openai")));
    assertThat(stored().learn().learnedAtMillis()).isZero();
    assertThat(LearnSpec.describe(stored().learn())).contains("no openai limit headers reported yet");

    report(Map.of("requests", 500L, "tokens", 40_000L), T1);

    LimitSpec s = stored();
    // Per minute as the provider states it; burst half of its one-second sub-window.
    assertThat(s.rate("requests")).isEqualTo(new RateSpec("requests", 500, MIN, 4));
    assertThat(s.rate("tokens")).isEqualTo(new RateSpec("tokens", 40_000, MIN, 333));
    assertThat(s.learn().learnedAtMillis()).isEqualTo(T1);
    assertThat(s.learn().was()).isEqualTo("requests=60/min:1 tokens=10000/min:83");
    assertThat(LearnSpec.describe(s.learn()))
        .isEqualTo("(learned from openai report at 2026-11-30T00:53:20Z, was requests=60/min:1 tokens=10000/min:83)");
  }

  @Test
  void followsAChangeUpOrDownWithinOneReportAndWritesNothingWhenUnchanged() {
    await(engine.setLimit(learning("openai")));
    report(Map.of("requests", 500L), T1);
    report(Map.of("requests", 500L), T1 + 1000); // the same headers again: nothing written
    assertThat(stored().learn().learnedAtMillis()).isEqualTo(T1);

    report(Map.of("requests", 5000L), T1 + 2000);
    assertThat(stored().rate("requests").amount()).isEqualTo(5000);
    assertThat(stored().learn().was()).startsWith("requests=500/min:4 ");
    report(Map.of("requests", 120L), T1 + 3000);
    assertThat(stored().rate("requests")).isEqualTo(new RateSpec("requests", 120, MIN, 1));
    assertThat(stored().rate("tokens").amount()).isEqualTo(10_000); // never reported: as it started
  }

  @Test
  void aCeilingIsNeverPassed() {
    await(engine.setLimit(learning("openai", new RateSpec("requests", 5, Duration.ofSeconds(1), 0))));
    report(Map.of("requests", 10_000L, "tokens", 30_000L), T1);
    assertThat(stored().rate("requests")).isEqualTo(new RateSpec("requests", 300, MIN, 2));
    assertThat(stored().rate("tokens").amount()).isEqualTo(30_000);
    report(Map.of("requests", 200L), T1 + 1);
    assertThat(stored().rate("requests").amount()).isEqualTo(200);
  }

  @Test
  void unusableLimitsAndLimitsWithoutLearningChangeNothing() {
    await(engine.setLimit(learning("anthropic")));
    report(Map.of("images", 9L, "requests", 0L), T1); // a dimension the limit lacks; a limit of 0
    assertThat(stored().learn().learnedAtMillis()).isZero();
    assertThatThrownBy(() -> report(Map.of("requests", 500L, "tokens", Validation.MAX_UNITS + 1), T1))
        .isInstanceOf(EngineException.class).hasMessageContaining("limits tokens=1000000000000001 is out of range");
    assertThat(stored().learn().learnedAtMillis()).isZero(); // refused whole: requests not applied either
    assertThat(stored().rate("requests").amount()).isEqualTo(60);

    await(engine.setLimit(new LimitSpec("openai", List.of(new RateSpec("requests", 60, MIN, 1)), 0, 0, null)));
    report(Map.of("requests", 500L), T1);
    assertThat(stored().rate("requests").amount()).isEqualTo(60);
    assertThat(stored().learn()).isNull();
  }

  @Test
  void learnSettingsAndTheLearnedRatesSurviveARestart() throws Exception {
    await(engine.setLimit(learning("azure", new RateSpec("tokens", 90_000, MIN, 0))));
    report(Map.of("requests", 700L), T1);
    LimitSpec before = stored();
    engine.close();
    engine.closeStore();
    engine = newEngine();
    assertThat(stored()).isEqualTo(before);
    assertThat(stored().learn()).isEqualTo(new LearnSpec("azure", List.of(new RateSpec("tokens", 90_000, MIN, 0)),
        T1, "requests=60/min:1 tokens=10000/min:83"));
  }

  @Test
  void anotherNodeHearingTheSameHeadersWritesNothing() throws Exception {
    await(engine.setLimit(learning("openai")));
    report(Map.of("requests", 500L), T1);
    Engine other = store == Store.REDIS ? newEngine() : engine;
    try {
      await(other.report("openai", false, 0, Map.of(), Map.of("requests", 500L), T1 + 5000));
      assertThat(await(other.getLimit("openai")).orElseThrow().learn().learnedAtMillis()).isEqualTo(T1);
      assertThat(stored().learn().learnedAtMillis()).isEqualTo(T1);
    } finally {
      if (other != engine) {
        other.close();
        other.closeStore();
      }
    }
  }

  @Test
  void badLearnSettingsAreRefusedWithTheFix() {
    assertThatThrownBy(() -> await(engine.setLimit(learning("gemini"))))
        .isInstanceOf(EngineException.class)
        .hasMessageContaining("learn provider 'gemini' is unknown")
        .hasMessageContaining("--learn openai");
    assertThatThrownBy(() -> await(engine.setLimit(learning("openai", new RateSpec("input-tokens", 9, MIN, 0)))))
        .isInstanceOf(EngineException.class)
        .hasMessageContaining("learn ceiling on 'input-tokens'")
        .hasMessageContaining("add --rate input-tokens=N/min or drop that ceiling");
    assertThat(await(engine.getLimit("openai"))).isEmpty();
  }
}
