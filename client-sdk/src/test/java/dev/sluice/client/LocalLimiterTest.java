package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The degraded-mode local limiter, on a fake clock: no sleeps. */
class LocalLimiterTest {

  private long now = 1_000_000_000L;

  private static RateDimension rate(String name, long amount, Duration period, long burst) {
    return RateDimension.newBuilder().setName(name).setAmount(amount).setPeriod(Protos.toProto(period))
        .setBurst(burst).build();
  }

  private LocalLimiter limiter(double share, long concurrency, RateDimension... rates) {
    Limit.Builder limit = Limit.newBuilder().setResource("openai").setConcurrency(concurrency);
    for (RateDimension r : rates) {
      limit.addRates(r);
    }
    return new LocalLimiter(limit.build(), share, () -> now);
  }

  private void advance(Duration d) {
    now += d.toNanos();
  }

  @Test
  void grantsTheShareOfTheRateStartingEmpty() {
    LocalLimiter l = limiter(0.5, 0, rate("requests", 10, Duration.ofSeconds(1), 10));
    assertThat(l.reserve(Map.of(), 0)).as("starts empty").isEqualTo(-1);

    for (int second = 0; second < 3; second++) {
      advance(Duration.ofSeconds(1));
      int granted = 0;
      while (l.reserve(Map.of("requests", 1L), 0) == 0) {
        granted++;
      }
      assertThat(granted).as("second %d: half of 10/s", second).isEqualTo(5);
    }
  }

  @Test
  void refillIsCappedAtTheShareOfTheBurst() {
    LocalLimiter l = limiter(0.25, 0, rate("requests", 100, Duration.ofSeconds(1), 40));
    advance(Duration.ofMinutes(1));
    int granted = 0;
    while (l.reserve(Map.of("requests", 1L), 0) == 0) {
      granted++;
    }
    assertThat(granted).isEqualTo(10);
  }

  @Test
  void reservationReturnsTheWaitAndQueuesLaterCallers() {
    LocalLimiter l = limiter(0.5, 0, rate("requests", 10, Duration.ofSeconds(1), 10));
    assertThat(l.reserve(Map.of("requests", 1L), Duration.ofSeconds(1).toNanos())).isEqualTo(200_000_000L);
    assertThat(l.reserve(Map.of("requests", 1L), Duration.ofSeconds(1).toNanos())).isEqualTo(400_000_000L);
    assertThat(l.reserve(Map.of("requests", 1L), Duration.ofMillis(500).toNanos())).as("too late: nothing taken")
        .isEqualTo(-1);
    advance(Duration.ofMillis(400));
    assertThat(l.reserve(Map.of("requests", 1L), 0)).isEqualTo(-1);
    advance(Duration.ofMillis(200));
    assertThat(l.reserve(Map.of("requests", 1L), 0)).isZero();
  }

  @Test
  void allOrNothingAcrossDimensions() {
    LocalLimiter l = limiter(0.5, 0,
        rate("requests", 10, Duration.ofSeconds(1), 10), rate("tokens", 1000, Duration.ofSeconds(1), 2000));
    advance(Duration.ofSeconds(1)); // 5 requests, 500 tokens
    assertThat(l.reserve(Map.of("requests", 1L, "tokens", 600L), 0)).as("tokens short").isEqualTo(-1);
    assertThat(l.reserve(Map.of("tokens", 500L), 0)).as("requests were not charged by the refusal, and"
        + " count 1 by default").isZero();
    for (int i = 0; i < 4; i++) {
      assertThat(l.reserve(Map.of("requests", 1L), 0)).isZero();
    }
    assertThat(l.reserve(Map.of("requests", 1L), 0)).isEqualTo(-1);
  }

  @Test
  void loadAboveTheLocalBurstWaitsForAFullBucketThenGoesIntoDebt() {
    LocalLimiter l = limiter(0.5, 0, rate("tokens", 1000, Duration.ofSeconds(1), 1000));
    long wait = l.reserve(Map.of("tokens", 800L), Duration.ofSeconds(10).toNanos());
    assertThat(wait).as("until the 500-token local bucket is full").isEqualTo(1_000_000_000L);
    advance(Duration.ofSeconds(1));
    assertThat(l.reserve(Map.of("tokens", 1L), Duration.ofSeconds(10).toNanos()))
        .as("pays the 300 debt first").isEqualTo(602_000_000L);
  }

  @Test
  void concurrencyIsTheShareRoundedDownAtLeastOne() {
    LocalLimiter five = limiter(0.5, 5);
    assertThat(five.tryTakeSlot()).isTrue();
    assertThat(five.tryTakeSlot()).isTrue();
    assertThat(five.tryTakeSlot()).as("floor(5 x 0.5) = 2").isFalse();
    five.releaseSlot();
    assertThat(five.tryTakeSlot()).isTrue();

    LocalLimiter one = limiter(0.1, 3);
    assertThat(one.tryTakeSlot()).isTrue();
    assertThat(one.tryTakeSlot()).as("at least 1").isFalse();

    LocalLimiter uncapped = limiter(0.1, 0, rate("requests", 1, Duration.ofSeconds(1), 1));
    for (int i = 0; i < 100; i++) {
      assertThat(uncapped.tryTakeSlot()).isTrue();
    }
  }

  @Test
  void settleRefundsAndChargesTheLocalBuckets() {
    LocalLimiter l = limiter(1, 0, rate("tokens", 1000, Duration.ofSeconds(1), 1000));
    advance(Duration.ofSeconds(1));
    assertThat(l.reserve(Map.of("tokens", 1000L), 0)).isZero();
    LocalPermit permit = new LocalPermit("local-1", "openai", Load.of("tokens", 1000), Duration.ZERO, l);
    l.tryTakeSlot();
    permit.settle(Load.of("tokens", 400));
    permit.close();
    assertThat(l.slotsHeld()).isZero();
    assertThat(l.reserve(Map.of("tokens", 600L), 0)).as("600 refunded").isZero();
    assertThat(l.reserve(Map.of("tokens", 1L), 0)).isEqualTo(-1);
  }

  @Test
  void describesTheLocalRatesExplicitly() {
    LocalLimiter l = limiter(0.25, 50,
        rate("requests", 300, Duration.ofSeconds(1), 300), rate("tokens", 200_000, Duration.ofMinutes(1), 4000));
    assertThat(l.describe()).isEqualTo(
        "openai: requests 300/s x 0.25 = 75/s, tokens 200000/min x 0.25 = 50000/min, concurrency 50 x 0.25 = 12");
  }
}
