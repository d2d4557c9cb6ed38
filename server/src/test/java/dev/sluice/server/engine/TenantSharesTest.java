package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * {@link TenantShares}: recent use over the stats' window (the current and the previous minute),
 * counted from zero before the first turnover and across a counter that restarted; the binding
 * dimension; fair shares over the active tenants only. Snapshots are built by hand and the clock
 * is advanced to exact instants.
 */
class TenantSharesTest {

  private static final long SECOND = 1_000_000_000L;

  private final AtomicLong clock = new AtomicLong(5 * SECOND);
  private final TenantShares shares = new TenantShares(clock::get);

  /** requests 10/s, tokens 1 000/s; search weighs 3 with a 40 % floor, research has a cap. */
  private static final LimitSpec LIMIT = new LimitSpec("teams",
      List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 10),
          new RateSpec("tokens", 1000, Duration.ofSeconds(1), 1000)),
      0, 100, Duration.ofSeconds(30),
      new TenantPolicy(Map.of("search", 3.0), Map.of("search", 0.4),
          Map.of("research", List.of(new RateSpec("tokens", 100, Duration.ofSeconds(1), 100)))));

  private static ResourceSnapshot snapshot(LimitSpec limit, Map<String, ResourceSnapshot.TenantUse> tenants) {
    return new ResourceSnapshot(limit, Map.of(), 0, Map.of(), false, 0, new PauseState(0, 0), 0, 0, 0, 0, 0, 0,
        Map.of(), 0, 0, 0, -1, Map.of(), tenants);
  }

  /** tenant, waiting, requests used, tokens used, ... */
  private static Map<String, ResourceSnapshot.TenantUse> use(Object... rows) {
    Map<String, ResourceSnapshot.TenantUse> out = new LinkedHashMap<>();
    for (int i = 0; i < rows.length; i += 4) {
      out.put((String) rows[i], new ResourceSnapshot.TenantUse((Integer) rows[i + 1],
          Map.of("requests", ((Number) rows[i + 2]).doubleValue(), "tokens", ((Number) rows[i + 3]).doubleValue())));
    }
    return out;
  }

  private static TenantShares.Row row(TenantShares.View v, String tenant) {
    return v.rows().stream().filter(r -> r.tenant().equals(tenant)).findFirst().orElseThrow();
  }

  @Test
  void everyNamedTenantAndDefaultHaveARowAndFairSharesCountOnlyActiveTenants() {
    clock.addAndGet(10 * SECOND);
    TenantShares.View v = shares.of(snapshot(LIMIT, use("search", 0, 3, 900, "other", 2, 1, 300)));

    assertThat(v.rows()).extracting(TenantShares.Row::tenant)
        .containsExactly("default", "other", "research", "search");
    assertThat(v.windowSeconds()).as("since the first reading's zero, when the windows were made").isEqualTo(10.0);
    assertThat(v.binding()).as("1 200 of 10 000 tokens against 4 of 100 requests").isEqualTo("tokens");
    TenantShares.Row search = row(v, "search");
    assertThat(search.weight()).isEqualTo(3.0);
    assertThat(search.floor()).isEqualTo(0.4);
    assertThat(search.recentShare()).isEqualTo(0.75);
    assertThat(search.fairShare()).as("3 of search + other (1)").isEqualTo(0.75);
    TenantShares.Row other = row(v, "other");
    assertThat(other.waiting()).isEqualTo(2);
    assertThat(other.recentShare()).isEqualTo(0.25);
    assertThat(other.fairShare()).isEqualTo(0.25);
    TenantShares.Row research = row(v, "research");
    assertThat(research.cap()).hasSize(1);
    assertThat(research.recentUsed()).isEqualTo(Map.of("requests", 0.0, "tokens", 0.0));
    assertThat(research.used()).isEqualTo(Map.of("requests", 0.0, "tokens", 0.0));
    assertThat(research.fairShare()).as("idle: not entitled to a part of what others used").isZero();
    assertThat(row(v, "default").fairShare()).isZero();
  }

  @Test
  void recentIsTheCurrentAndThePreviousWindowAsTheWaitPercentilesCountIt() {
    shares.of(snapshot(LIMIT, use("search", 0, 1, 100)));
    clock.addAndGet(61 * SECOND); // the first window turns over: it started from zero
    TenantShares.View first = shares.of(snapshot(LIMIT, use("search", 0, 4, 400)));
    assertThat(row(first, "search").recentUsed()).isEqualTo(Map.of("requests", 4.0, "tokens", 400.0));
    assertThat(first.windowSeconds()).isEqualTo(61.0);

    clock.addAndGet(30 * SECOND); // within the window: still counted from zero
    assertThat(row(shares.of(snapshot(LIMIT, use("search", 0, 7, 700))), "search").recentUsed().get("tokens"))
        .isEqualTo(700.0);

    clock.addAndGet(31 * SECOND); // the second turnover: from the reading at 61 s
    TenantShares.View second = shares.of(snapshot(LIMIT, use("search", 0, 10, 1000)));
    assertThat(row(second, "search").recentUsed()).isEqualTo(Map.of("requests", 6.0, "tokens", 600.0));
    assertThat(second.windowSeconds()).isEqualTo(61.0);
    assertThat(row(second, "search").used().get("tokens")).as("the counter itself").isEqualTo(1000.0);

    clock.addAndGet(61 * SECOND); // the resource's state was let go: its counter restarted
    TenantShares.View restarted = shares.of(snapshot(LIMIT, use("search", 0, 1, 50)));
    assertThat(row(restarted, "search").recentUsed().get("tokens")).as("below the base: counted from zero")
        .isEqualTo(50.0);
  }

  @Test
  void theBindingDimensionIsTheOneWhoseUseWasTheLargestPartOfItsRate() {
    clock.addAndGet(10 * SECOND);
    // 90 of 100 requests, 1 000 of 10 000 tokens: requests binds; the shares follow requests.
    TenantShares.View v = shares.of(snapshot(LIMIT, use("search", 0, 30, 900, "default", 0, 60, 100)));
    assertThat(v.binding()).isEqualTo("requests");
    assertThat(row(v, "default").recentShare()).isCloseTo(2 / 3.0, within(1e-12));
    assertThat(row(v, "default").fairShare()).isEqualTo(0.25);

    TenantShares.View nothing = new TenantShares(clock::get).of(snapshot(LIMIT, Map.of()));
    assertThat(nothing.binding()).as("nothing used: no binding dimension").isEmpty();
    assertThat(nothing.rows()).allSatisfy(r -> assertThat(r.recentShare()).isZero());
  }

  @Test
  void aResourceWithoutTenantsHasNoneAndOneNotReadForThreeWindowsIsForgotten() {
    LimitSpec plain = new LimitSpec("plain", List.of(new RateSpec("requests", 10, Duration.ofSeconds(1), 10)), 0,
        100, Duration.ofSeconds(30));
    assertThat(TenantShares.hasTenants(snapshot(plain, Map.of()))).isFalse();
    assertThat(TenantShares.hasTenants(snapshot(plain, use("team-x", 0, 1, 0)))).as("a tenant came").isTrue();
    assertThat(TenantShares.hasTenants(snapshot(LIMIT, Map.of()))).as("a policy").isTrue();

    shares.of(snapshot(LIMIT, Map.of()));
    assertThat(shares.windows()).isEqualTo(1);
    clock.addAndGet(3 * 60 * SECOND + 1);
    shares.of(snapshot(plain, use("team-x", 0, 1, 0)));
    assertThat(shares.windows()).as("teams unread for three windows: only plain now").isEqualTo(1);
  }
}
