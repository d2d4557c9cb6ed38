package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A limit's jitter: the effective rate it costs ({@link RateSpec}), the values refused, the
 * default for a newly set limit, and 0 for a limit stored before jitter existed, on both stores.
 * The engines' schedules with jitter are in {@link EngineContractTest} and the differential test.
 */
class JitterTest {

  private static final Duration MS_20 = Duration.ofMillis(20);

  @TempDir Path dir;

  private static RateSpec perMinute(String dim, long amount, long burst) {
    return new RateSpec(dim, amount, Duration.ofMinutes(1), burst);
  }

  private static LimitSpec limit(Duration jitter, RateSpec... rates) {
    return new LimitSpec("tier", List.of(rates), 0, 0, null, jitter);
  }

  private static LimitSpec checked(Duration jitter, RateSpec... rates) {
    return Validation.limit(limit(jitter, rates), 100, Duration.ofSeconds(30));
  }

  @Test
  void burstOneLosesOneJitterPerGrant() {
    assertThat(perMinute("requests", 60, 1).effectiveAmount(MS_20)).isCloseTo(60 / 1.02, within(1e-9));
    assertThat(perMinute("requests", 60, 1).effectiveAmount(MS_20)).isCloseTo(58.82, within(0.01));
    assertThat(perMinute("requests", 3, 1).effectiveAmount(MS_20)).isCloseTo(3 / 1.001, within(1e-9));
  }

  @Test
  void aLargerBurstAbsorbsJitterUpToItsSpareUnits() {
    // 500/min:4 has (4 - 1) / rate = 360 ms of spare room: 20 ms costs nothing, 400 ms does.
    RateSpec r = perMinute("requests", 500, 4);
    assertThat(r.effectiveAmount(MS_20)).isEqualTo(500.0);
    assertThat(r.effectiveAmount(Duration.ofMillis(360))).isCloseTo(500.0, within(1e-9));
    assertThat(r.effectiveAmount(Duration.ofMillis(400))).isCloseTo(4 / (0.12 + 0.4) * 60, within(1e-9));
    // Tokens: 30 000/min:250 have 498 ms of spare room.
    assertThat(perMinute("tokens", 30_000, 250).effectiveAmount(MS_20)).isEqualTo(30_000.0);
  }

  @Test
  void zeroJitterIsTheConfiguredRateBitForBit() {
    for (RateSpec r : List.of(perMinute("requests", 7, 1), perMinute("tokens", 200_000, 4000),
        new RateSpec("requests", 3, Duration.ofMillis(1700), 2))) {
      assertThat(r.perMicro(0)).isEqualTo(r.perMicro());
      assertThat(r.effectiveAmount(Duration.ZERO)).isEqualTo((double) r.amount());
    }
  }

  @Test
  void theMarginNeverHalvesTheRate() {
    // The largest jitter accepted is just under burst / rate: r' >= r·b/(b + 1).
    for (long burst : List.of(1L, 2L, 5L)) {
      RateSpec r = perMinute("requests", 60, burst);
      Duration most = r.burstRefill().minusNanos(1);
      checked(most, r);
      assertThat(r.effectiveAmount(most)).isGreaterThanOrEqualTo(60.0 * burst / (burst + 1) - 1e-9);
    }
  }

  @Test
  void negativeJitterIsRefusedWithTheFix() {
    assertThatThrownBy(() -> checked(Duration.ofMillis(-5), perMinute("requests", 60, 1)))
        .isInstanceOf(EngineException.class)
        .hasMessageContaining("jitter -5ms is negative")
        .hasMessageContaining("use 0 for no allowance");
  }

  @Test
  void jitterAsLongAsTheSubWindowIsRefusedNamingTheDimensionAndTheBound() {
    assertThatThrownBy(() -> checked(Duration.ofSeconds(1), perMinute("tokens", 6000, 500), perMinute("requests", 60, 1)))
        .isInstanceOf(EngineException.class)
        .hasMessageContaining("jitter 1s is not shorter than the time the requests burst takes to refill (1s at requests=60/min:1)")
        .hasMessageContaining("use a jitter under 1s, or raise the burst");
    // Just under is accepted.
    assertThat(checked(Duration.ofMillis(999), perMinute("requests", 60, 1)).jitter()).isEqualTo(Duration.ofMillis(999));
  }

  @Test
  void jitterAboveAMinuteIsRefusedWhateverTheRates() {
    assertThatThrownBy(() -> checked(Duration.ofMinutes(2), perMinute("requests", 1, 10)))
        .hasMessageContaining("jitter 2m is more than 1m")
        .hasMessageContaining("use at most 1m");
  }

  @Test
  void unsetJitterIsTheDefaultOrHalfTheShortestRefillSoNoValidLimitBecomesInvalid() {
    assertThat(checked(null, perMinute("requests", 60, 1)).jitter()).isEqualTo(Validation.DEFAULT_JITTER);
    // 100/s:1 refills in 10 ms: 20 ms would be refused, the default is 5 ms.
    assertThat(checked(null, new RateSpec("requests", 100, Duration.ofSeconds(1), 1)).jitter())
        .isEqualTo(Duration.ofMillis(5));
    // Zero given stays zero (no allowance); a concurrency-only limit gets the default too.
    assertThat(checked(Duration.ZERO, perMinute("requests", 60, 1)).jitter()).isZero();
    assertThat(Validation.limit(new LimitSpec("c", List.of(), 3, 0, null, (Duration) null), 100, Duration.ofSeconds(30)).jitter())
        .isEqualTo(Validation.DEFAULT_JITTER);
  }

  @Test
  void aLimitBuiltWithoutJitterHasNone() {
    assertThat(new LimitSpec("tier", List.of(perMinute("requests", 60, 1)), 0, 0, null).jitter()).isZero();
  }

  // ------------------------------------------------------------------ stored: absence is 0

  @Test
  void aLimitsFileWrittenBeforeJitterLoadsWithoutJitter() throws IOException {
    FileLimitStore store = new FileLimitStore(dir);
    Files.writeString(store.file(),
        "{\"version\":1,\"limits\":[{\"resource\":\"tier\",\"rates\":[{\"name\":\"requests\",\"amount\":60,"
            + "\"periodMillis\":60000,\"burst\":1}],\"concurrency\":0,\"maxWaiting\":10,\"leaseTtlMillis\":30000}]}");
    assertThat(store.load()).singleElement().satisfies(l -> assertThat(l.jitter()).isZero());
  }

  @Test
  void theLimitsFileKeepsJitterToTheNanosecondAndWritesNothingForNone() throws IOException {
    FileLimitStore store = new FileLimitStore(dir);
    LimitSpec with = checked(Duration.ofNanos(20_000_123), perMinute("requests", 60, 1));
    LimitSpec without = Validation.limit(
        new LimitSpec("old", List.of(perMinute("requests", 60, 1)), 0, 0, null), 100, Duration.ofSeconds(30));
    store.save(List.of(with, without));
    assertThat(new FileLimitStore(dir).load()).containsExactly(without, with);
    String text = Files.readString(store.file());
    assertThat(text).containsOnlyOnce("jitterNanos").contains("\"jitterNanos\" : 20000123");
  }

  @Test
  void aRedisLimitWrittenBeforeJitterReadsWithoutJitter() {
    LimitSpec old = Validation.limit(
        new LimitSpec("tier", List.of(perMinute("requests", 60, 1)), 0, 0, null), 100, Duration.ofSeconds(30));
    Map<String, String> fields = RedisLimits.encode(old, "v1");
    assertThat(fields).as("the hash an older server wrote, field for field").doesNotContainKey("jit");
    assertThat(RedisLimits.decode("tier", fields).spec()).isEqualTo(old);

    LimitSpec with = checked(Duration.ofNanos(20_000_123), perMinute("requests", 60, 1));
    Map<String, String> jittered = RedisLimits.encode(with, "v2");
    assertThat(jittered).containsEntry("jit", "20000123");
    assertThat(RedisLimits.decode("tier", jittered).spec()).isEqualTo(with);
  }
}
