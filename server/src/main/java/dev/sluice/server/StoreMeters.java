package dev.sluice.server;

import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.PoolEngine;
import dev.sluice.server.engine.RedisEngine;
import dev.sluice.server.engine.RedisStore;
import dev.sluice.server.engine.SliceEngine;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.function.ToDoubleFunction;

/**
 * The store's health as metrics: whether it is reachable, how often it went away, how many
 * calls to it ended with an unknown effect, and how often it came back without its data. A
 * node on the memory store exports them too (reachable, all counts zero), so dashboards and
 * alert rules work on either store.
 */
final class StoreMeters {

  private StoreMeters() {}

  static void register(MeterRegistry registry, Engine engine, RedisStore store) {
    Gauge.builder("sluice.store.reachable", engine, e -> e.storeReachable() ? 1 : 0)
        .description("1 while this node reaches its store (always 1 on the memory store)")
        .register(registry);
    counter(registry, "sluice.store.outages", store, RedisStore::outages,
        "Times this node lost its store (the first failed call after a reachable one)");
    counter(registry, "sluice.store.commands.indeterminate", store, RedisStore::indeterminateCommands,
        "Store calls whose effect is unknown: they timed out or lost their connection after being sent");
    FunctionCounter.builder("sluice.store.data.losses", engine,
            e -> PoolEngine.unwrap(e) instanceof RedisEngine r ? r.storeLosses() : 0)
        .description("Times this node found the store had lost its data (restart without persistence,"
            + " FLUSHALL, failover to an empty replica) and restored the limits it knew")
        .register(registry);
    FunctionCounter.builder("sluice.store.grants.stale", engine,
            e -> PoolEngine.unwrap(e) instanceof RedisEngine r ? r.staleGrants() : 0)
        .description("Grants that reached this node later than they stay fresh (a reply or notice held"
            + " up on the way) and were asked for again instead of handed over")
        .register(registry);
    // Held by the slice engine, or by the registry when this node slices nothing (a meter whose
    // object is null reads NaN, not 0).
    SliceEngine sliced = PoolEngine.sliced(engine);
    Object slices = sliced != null ? sliced : registry;
    FunctionCounter.builder("sluice.slice.grants", slices, s -> s instanceof SliceEngine e ? e.localGrants() : 0)
        .description("Permits this node granted from slices it held (slice mode, serve --slice); 0 without it")
        .register(registry);
    FunctionCounter.builder("sluice.slice.slices", slices, s -> s instanceof SliceEngine e ? e.slicesTaken() : 0)
        .description("Slices this node took from its store (slice mode): with sluice_slice_grants_total, the"
            + " permits per store call")
        .register(registry);
  }

  private static void counter(MeterRegistry registry, String name, RedisStore store,
      ToDoubleFunction<RedisStore> count, String help) {
    if (store == null) {
      FunctionCounter.builder(name, registry, r -> 0).description(help).register(registry);
    } else {
      FunctionCounter.builder(name, store, count).description(help).register(registry);
    }
  }
}
