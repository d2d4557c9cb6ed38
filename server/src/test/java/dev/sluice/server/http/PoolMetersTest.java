package dev.sluice.server.http;

import static org.assertj.core.api.Assertions.assertThat;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import org.junit.jupiter.api.Test;

/** {@code sluice.pool.grants{pool,member}}: pool grants only, and at most the cap's pairs of tags. */
class PoolMetersTest {

  private final SimpleMeterRegistry registry = new SimpleMeterRegistry();

  private double count(String pool, String member) {
    var c = registry.find("sluice.pool.grants").tag("pool", pool).tag("member", member).counter();
    return c == null ? 0 : c.count();
  }

  @Test
  void aGrantOfTheResourceAskedForIsNoPoolGrant() {
    PoolMeters m = new PoolMeters(registry, 10);
    m.handedOver("a", "a");
    m.handedOver("pool", "a");
    m.handedOver("pool", "a");
    m.handedOver("pool", "b");
    assertThat(registry.find("sluice.pool.grants").counters()).hasSize(2);
    assertThat(count("pool", "a")).isEqualTo(2);
    assertThat(count("pool", "b")).isEqualTo(1);
    assertThat(m.granted("pool", "a")).isEqualTo(2);
    assertThat(m.granted("pool", "c")).isZero();
  }

  @Test
  void pairsBeyondTheCapShareOneSeriesAndTheSumStillCountsEveryGrant() {
    PoolMeters m = new PoolMeters(registry, 2);
    m.handedOver("p", "a");
    m.handedOver("p", "b");
    m.handedOver("q", "a");
    m.handedOver("q", "b");
    m.handedOver("p", "a");
    assertThat(count("p", "a")).isEqualTo(2);
    assertThat(count("p", "b")).isEqualTo(1);
    assertThat(count("q", "a")).isZero();
    assertThat(count(PoolMeters.OTHER, PoolMeters.OTHER)).isEqualTo(2);
    assertThat(registry.find("sluice.pool.grants").counters().stream().mapToDouble(c -> c.count()).sum())
        .isEqualTo(5);
  }

  @Test
  void withoutARegistryNothingIsCounted() {
    PoolMeters m = new PoolMeters(null, 10);
    m.handedOver("p", "a");
    assertThat(m.granted("p", "a")).isZero();
  }
}
