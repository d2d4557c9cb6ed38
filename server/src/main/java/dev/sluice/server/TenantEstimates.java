package dev.sluice.server;

import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.TenantShares;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * The wait estimate of each tenant row of {@code stats}, per lane, from {@link Engine#estimate}.
 *
 * <p>The load estimated is the smallest call that charges every dimension: one unit of each of
 * the limit's dimensions ({@code requests=1} on a limit without rates). A tenant's real head
 * waiter may ask for more, but the engine does not expose it; what dominates a waiting tenant's
 * estimate is the load it already queued in that lane and above, which the engine counts first.
 * {@code other} stands for every unnamed tenant: it is estimated as one new unnamed tenant (it
 * weighs 1 and has nothing queued of its own), the tenant {@code other} itself when one is
 * literally called so.
 */
final class TenantEstimates {

  private TenantEstimates() {}

  /** One unit of each of the limit's dimensions; {@code requests=1} when it has none. */
  static Map<String, Long> load(LimitSpec limit) {
    Map<String, Long> load = new LinkedHashMap<>();
    for (RateSpec r : limit.rates()) {
      load.put(r.name(), 1L);
    }
    if (load.isEmpty()) {
      load.put("requests", 1L);
    }
    return load;
  }

  /**
   * Tenant to lane to nanoseconds from now, -1 when only an event can help (paused until
   * resumed). A lane whose estimate failed (the resource was deleted meanwhile) is left out.
   */
  static CompletableFuture<Map<String, Map<Lane, Long>>> of(Engine engine, LimitSpec limit, TenantShares.View view) {
    Map<String, Long> load = load(limit);
    List<String> tenants = new ArrayList<>();
    List<Lane> lanes = new ArrayList<>();
    List<CompletableFuture<Long>> each = new ArrayList<>();
    for (TenantShares.Row row : view.rows()) {
      for (Lane lane : Lane.values()) {
        tenants.add(row.tenant());
        lanes.add(lane);
        CompletableFuture<Long> f;
        try {
          f = engine.estimate(limit.resource(), load, lane, row.tenant());
        } catch (RuntimeException e) {
          f = CompletableFuture.failedFuture(e);
        }
        each.add(f.exceptionally(error -> {
          if (EngineException.unwrap(error) instanceof EngineException) {
            return null; // deleted meanwhile, or the load no longer fits a changed limit
          }
          throw error instanceof RuntimeException r ? r : new java.util.concurrent.CompletionException(error);
        }));
      }
    }
    return CompletableFuture.allOf(each.toArray(CompletableFuture[]::new)).thenApply(done -> {
      Map<String, Map<Lane, Long>> out = new LinkedHashMap<>();
      for (int i = 0; i < each.size(); i++) {
        Long nanos = each.get(i).join();
        Map<Lane, Long> perLane = out.computeIfAbsent(tenants.get(i), k -> new EnumMap<>(Lane.class));
        if (nanos != null) {
          perLane.put(lanes.get(i), nanos);
        }
      }
      return out;
    });
  }
}
