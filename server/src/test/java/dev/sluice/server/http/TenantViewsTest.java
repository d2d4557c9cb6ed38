package dev.sluice.server.http;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.TenantShares;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The tenants object of the dashboard's reads: its fields, and at most 20 rows, the busiest. */
class TenantViewsTest {

  private static TenantShares.Row row(String tenant, double share, int waiting) {
    return new TenantShares.Row(tenant, 1, 0, List.of(), waiting, Map.of("tokens", 10.0), Map.of("tokens", 5.0), share,
        0.04);
  }

  @Test
  void aPolicyWithManyTenantsSendsTheTwentyBusiestInNameOrderAndHowManyAreLeftOut() {
    List<TenantShares.Row> rows = new ArrayList<>();
    for (int i = 0; i < 25; i++) {
      // t00..t24: shares grow with the number, except t01 which has no share but waiters.
      rows.add(row(String.format("t%02d", i), i == 1 ? 0 : i / 300.0, i == 1 ? 3 : 0));
    }
    ObjectNode o = Views.tenants(new TenantShares.View(rows, "tokens", 61.0));
    assertThat(o.get("binding").asText()).isEqualTo("tokens");
    assertThat(o.get("windowSeconds").asDouble()).isEqualTo(61.0);
    assertThat(o.get("more").asInt()).isEqualTo(5);
    List<String> names = new ArrayList<>();
    o.get("rows").forEach(r -> names.add(r.get("tenant").asText()));
    assertThat(names).as("waiters first (t01: no share, 3 waiting), then the largest shares, in name order")
        .containsExactly("t01", "t06", "t07", "t08", "t09", "t10", "t11", "t12", "t13", "t14", "t15",
            "t16", "t17", "t18", "t19", "t20", "t21", "t22", "t23", "t24")
        .hasSize(20);
    JsonNode first = o.get("rows").get(0);
    assertThat(first.get("waiting").asInt()).isEqualTo(3);
    assertThat(first.get("recentUsed").get("tokens").asDouble()).isEqualTo(5.0);
    assertThat(first.get("fairShare").asDouble()).isEqualTo(0.04);

    ObjectNode few = Views.tenants(new TenantShares.View(rows.subList(0, 3), "tokens", 5.0));
    assertThat(few.get("more").asInt()).isZero();
    assertThat(few.get("rows")).hasSize(3);
  }
}
