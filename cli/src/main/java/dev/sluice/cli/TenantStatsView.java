package dev.sluice.cli;

import dev.sluice.client.HumanDurations;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.TenantStats;
import java.io.PrintWriter;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * {@code sluice stats NAME --by tenant}: one row per tenant of a resource shared between tenants,
 * and the one-line summary {@code stats NAME} adds under its table. The figures are the
 * coordinator's ({@code ResourceStats.tenants}): recent shares, fair shares and wait estimates
 * are computed there, so every client reads the same.
 */
final class TenantStatsView {

  /** The one value {@code --by} takes. */
  static final String BY_TENANT = "tenant";

  static final String[] LANES = {"interactive", "default", "batch"};

  /** What the columns of the tenant table hold. */
  static final String LEGEND = "SHARE: the tenant's part of the binding dimension's use (the one whose recent use"
      + " was the largest part of its rate) over the window in the title line: the current and the previous"
      + " minute, as WAIT P50/P99. FAIR SHARE: its weight over the weights of the tenants that used the resource"
      + " in that window or wait now (other counts as one tenant of weight 1). FLOOR: held while it has demand."
      + " CAP: its own ceiling inside the quota. USED: units per dimension, usd in dollars (RECENTLY: in the"
      + " window; SINCE START: since the resource's counters started). EST. WAIT: when an acquire of one unit of"
      + " each dimension made now by the tenant would be granted, per lane, its own queued load in that lane and"
      + " above first (the coordinator's estimate; other: a new unnamed tenant; - when every resource was"
      + " read: name the resource for estimates).";

  private TenantStatsView() {}

  /** Whether tenants share {@code s}: the coordinator sent tenant rows for it. */
  static boolean shared(ResourceStats s) {
    return s.getTenantsCount() > 0;
  }

  /** The tenant table of one resource, with its title line. */
  static void print(PrintWriter out, ResourceStats s) {
    out.println("tenants of " + s.getResource() + " · " + measured(s));
    Table t = new Table("TENANT", "WEIGHT", "FLOOR", "CAP", "SHARE", "FAIR SHARE", "WAITING", "USED RECENTLY",
        "USED SINCE START", "EST. WAIT " + String.join("/", LANES));
    for (TenantStats r : s.getTenantsList()) {
      t.row(r.getTenant(), Output.number(r.getWeight()), r.getFloor() > 0 ? percent(r.getFloor()) : "-",
          r.getCapCount() == 0 ? "-" : r.getCapList().stream().map(Rates::format).collect(Collectors.joining(" ")),
          s.getBindingDimension().isEmpty() ? "-" : percent(r.getRecentShare()),
          s.getBindingDimension().isEmpty() ? "-" : percent(r.getFairShare()),
          r.getWaiting(), amounts(s, r.getRecentUsedMap()), amounts(s, r.getUsedMap()), estimates(r));
    }
    t.print(out);
  }

  /** {@code shares of tokens (the binding dimension) over the last 1m 30s}, or why there are none. */
  private static String measured(ResourceStats s) {
    String window = HumanDurations.format(Duration.ofMillis(Math.round(s.getTenantWindowSeconds() * 1000)));
    return s.getBindingDimension().isEmpty()
        ? "nothing used over the last " + window
        : "shares of " + s.getBindingDimension() + " (the binding dimension) over the last " + window;
  }

  /**
   * The line {@code stats NAME} prints for a resource with tenants: {@code tenants of openai:
   * search 75 % (fair 75 %), batch 25 % (fair 25 %) of tokens over the last 1m; 2 waiting;
   * --by tenant for each tenant's weight, floor, cap, use and wait}.
   */
  static String summary(ResourceStats s) {
    long waiting = s.getTenantsList().stream().mapToLong(TenantStats::getWaiting).sum();
    String window = HumanDurations.format(Duration.ofMillis(Math.round(s.getTenantWindowSeconds() * 1000)));
    String shares;
    if (s.getBindingDimension().isEmpty()) {
      shares = s.getTenantsCount() + " (" + s.getTenantsList().stream().map(TenantStats::getTenant)
          .collect(Collectors.joining(", ")) + "), none used it over the last " + window;
    } else {
      List<String> each = new ArrayList<>();
      for (TenantStats r : s.getTenantsList()) {
        if (r.getRecentShare() > 0 || r.getFairShare() > 0) {
          each.add(r.getTenant() + " " + percent(r.getRecentShare()) + " (fair " + percent(r.getFairShare()) + ")");
        }
      }
      shares = String.join(", ", each) + " of " + s.getBindingDimension() + " over the last " + window;
    }
    return "tenants of " + s.getResource() + ": " + shares + "; " + waiting + " waiting; `sluice stats "
        + s.getResource() + " --by tenant` for each tenant's weight, floor, cap, use and wait";
  }

  /** {@code requests=10 tokens=1500 usd=$0.0045}, in the limit's order; {@code -} without rates. */
  private static String amounts(ResourceStats s, Map<String, Double> used) {
    if (s.getLimit().getRatesCount() == 0) {
      return "-";
    }
    List<String> parts = new ArrayList<>();
    for (RateDimension d : s.getLimit().getRatesList()) {
      parts.add(d.getName() + "=" + Rates.amount(d.getName(), used.getOrDefault(d.getName(), 0.0)));
    }
    return String.join(" ", parts);
  }

  /** {@code 0 s/0 s/1.2 s} by lane; {@code until resumed} when only an event can help. */
  private static String estimates(TenantStats r) {
    List<String> parts = new ArrayList<>();
    for (String lane : LANES) {
      Double s = r.getEstimatedWaitSecondsMap().get(lane);
      parts.add(s == null ? "-" : s < 0 ? "until resumed" : Output.seconds(s));
    }
    return String.join("/", parts);
  }

  /** 0.4 as {@code 40 %}, 0.6667 as {@code 66.7 %}. */
  static String percent(double fraction) {
    return BigDecimal.valueOf(fraction * 100).setScale(1, RoundingMode.HALF_EVEN).stripTrailingZeros()
        .toPlainString() + " %";
  }
}
