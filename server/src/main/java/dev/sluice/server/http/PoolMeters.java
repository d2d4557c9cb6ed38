package dev.sluice.server.http;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code sluice.pool.grants{pool,member}} ({@code sluice_pool_grants_total}): acquires on a pool
 * that this node handed over, by the member that granted them. Counted where the gRPC port (unary
 * and session) and the HTTP port hand a grant to its caller, so a grant given back because the
 * caller had gone is not counted. Every node counts its own: sum over nodes.
 *
 * <p>Bounded like the memory engine's resource tag: the first {@code maxSeries} (pool, member)
 * pairs get a series of their own, the rest share {@code pool="_other",member="_other"} (one
 * warning says so); summed over the tags the counter still adds up to every pool grant. Series
 * stay once made (a counter that vanished would read as a reset), so the bound is over the
 * process's life. The dashboard reads the same figures ({@link #granted}).
 */
public final class PoolMeters {

  /** The tag value of every pair beyond the cap. */
  static final String OTHER = "_other";

  private static final Logger log = LoggerFactory.getLogger(PoolMeters.class);

  private final MeterRegistry registry;
  private final int maxSeries;
  private final ConcurrentMap<Pair, Counter> counters = new ConcurrentHashMap<>();
  private final AtomicBoolean warned = new AtomicBoolean();

  private record Pair(String pool, String member) {}

  /**
   * @param registry where the counters go; null counts nothing (a service built without metrics)
   * @param maxSeries (pool, member) pairs with a series of their own, e.g. {@code
   *     --metrics-max-resources}
   */
  public PoolMeters(MeterRegistry registry, int maxSeries) {
    this.registry = registry;
    this.maxSeries = maxSeries;
  }

  /**
   * A grant on {@code asked} handed to its caller, granted by {@code member}: counted when they
   * differ (an acquire on a pool), at no cost otherwise.
   */
  public void handedOver(String asked, String member) {
    if (registry == null || asked.equals(member)) {
      return;
    }
    Pair pair = new Pair(asked, member);
    Counter c = counters.get(pair);
    if (c == null) {
      if (counters.size() >= maxSeries) {
        if (warned.compareAndSet(false, true)) {
          log.warn("more than {} pool members granted: the rest are counted as pool=\"{}\" in sluice_pool_grants_total"
              + " (--metrics-max-resources)", maxSeries, OTHER);
        }
        pair = new Pair(OTHER, OTHER);
      }
      c = counters.computeIfAbsent(pair, p -> Counter.builder("sluice.pool.grants")
          .description("Acquires on a pool handed over by this node, per member that granted")
          .tag("pool", p.pool()).tag("member", p.member()).register(registry));
    }
    c.increment();
  }

  /** Grants of {@code pool} by {@code member} handed over by this node (0 when beyond the cap or none). */
  public long granted(String pool, String member) {
    Counter c = counters.get(new Pair(pool, member));
    return c == null ? 0 : (long) c.count();
  }
}
