package dev.sluice.server.http;

import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import dev.sluice.server.engine.TenantShares;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads the live state of the watched resources once a second for the dashboard, its 15-minute
 * utilization history and the per-resource gauges of {@code /metrics}.
 *
 * <p>Watched: the first {@code maxResources} resources by name (the list is read again every
 * second while there are no more than that, every 10 s beyond), so a coordinator holding a
 * million limits spends a bounded time here. Utilization of a
 * dimension is the tokens taken in the last interval (net of refunds) over what the limit's rate
 * allows in that interval: 1.0 means the quota was fully used, above 1.0 the burst was drawn on.
 */
public final class ResourceSampler {

  /** History points kept per dimension: 15 minutes at one point a second. */
  public static final int HISTORY = 900;

  private static final Logger log = LoggerFactory.getLogger(ResourceSampler.class);
  private static final long NAMES_EVERY_NANOS = 10_000_000_000L;

  private final Engine engine;
  private final int maxResources;
  private final LongSupplier nanos;
  private final LongSupplier millis;
  private final List<Consumer<Sample>> listeners = new CopyOnWriteArrayList<>();
  private final Map<String, History> history = new HashMap<>();
  private List<String> names;
  private List<LimitSpec> pools = List.of();
  private int total;
  private int resourcesTotal;
  private long namesAt;
  private volatile Sample latest = new Sample(0, List.of(), Map.of(), 0, Map.of(), Map.of(), List.of());
  private final TenantShares tenantShares;
  private boolean warned;
  private final AtomicBoolean sampling = new AtomicBoolean();

  /**
   * One reading of the watched resources.
   *
   * @param timeMillis wall-clock time of the reading
   * @param resources their snapshots, sorted by name
   * @param utilization per resource, per dimension: the fraction of the rate used since the
   *     previous reading
   * @param total how many resources the coordinator holds (more than shown when over the cap), pools
   *     not counted
   * @param activity per resource: its rates since the previous reading and its recent upstream
   *     throttle reports
   * @param tenants per resource shared between tenants: each tenant's recent share against its
   *     fair share ({@link TenantShares})
   * @param pools the pools among the first {@code maxResources} limits by name, sorted by name:
   *     a pool has no state of its own (its members' snapshots are in {@code resources})
   */
  public record Sample(
      long timeMillis,
      List<ResourceSnapshot> resources,
      Map<String, Map<String, Double>> utilization,
      int total,
      Map<String, Activity> activity,
      Map<String, TenantShares.View> tenants,
      List<LimitSpec> pools) {}

  /** At most this many throttle report times are kept per resource. */
  static final int RECENT_THROTTLES = 5;

  /**
   * What a resource did since the previous reading (the dashboard's grants/s and refusals/s,
   * rather than lifetime counts), and when its latest upstream throttle reports came.
   *
   * @param grantedPerSecond grants a second; NaN on a resource's first reading (nothing to compare with)
   * @param rejectedPerSecond refusals at once (any reason) a second; NaN on the first reading
   * @param timedOutPerSecond acquires that reached their timeout a second; NaN on the first reading
   * @param throttledAtMillis wall-clock times of the latest throttle reports, newest first (at most
   *     {@link #RECENT_THROTTLES}; reports within one reading count once, at the latest's time)
   */
  public record Activity(
      double grantedPerSecond, double rejectedPerSecond, double timedOutPerSecond, List<Long> throttledAtMillis) {}

  /**
   * @param maxResources how many resources (first by name) to watch
   * @param nanos a monotonic clock (tests pass a fake one)
   * @param millis the wall clock shown on the page
   */
  public ResourceSampler(Engine engine, int maxResources, LongSupplier nanos, LongSupplier millis) {
    this(engine, maxResources, nanos, millis, new TenantShares(nanos));
  }

  /** @param tenantShares the tenants' recent shares, shared with the Admin API's stats */
  public ResourceSampler(
      Engine engine, int maxResources, LongSupplier nanos, LongSupplier millis, TenantShares tenantShares) {
    this.tenantShares = tenantShares;
    this.engine = engine;
    this.maxResources = maxResources;
    this.nanos = nanos;
    this.millis = millis;
  }

  /** Called with every new sample, on the sampling thread. */
  public void onSample(Consumer<Sample> listener) {
    listeners.add(listener);
  }

  /** The latest sample; empty before the first. */
  public Sample latest() {
    return latest;
  }

  /**
   * Takes a sample. Called once a second by the server; never waits for the store: the sample
   * is taken when the engine's answers arrive, and a call while one is still being taken does
   * nothing. A failure is logged, not thrown. The future completes once the sample is taken.
   */
  public CompletableFuture<Void> sample() {
    if (!sampling.compareAndSet(false, true)) {
      return CompletableFuture.completedFuture(null);
    }
    CompletableFuture<Sample> next;
    try {
      next = read();
    } catch (RuntimeException e) {
      next = CompletableFuture.failedFuture(e);
    }
    return next.handle(
        (s, error) -> {
          sampling.set(false);
          if (error != null) {
            // The store may be away (Redis): keep the last sample, try again next second.
            log.debug("sampling resources failed: {}", EngineException.unwrap(error).toString());
            return null;
          }
          latest = s;
          for (Consumer<Sample> l : listeners) {
            try {
              l.accept(s);
            } catch (RuntimeException e) {
              log.warn("a sample listener failed", e);
            }
          }
          return null;
        });
  }

  private CompletableFuture<Sample> read() {
    long now = nanos.getAsLong();
    // Under the cap the list is cheap to read: every second, so a new resource shows at once.
    // Over it (say a million limits), every 10 s.
    boolean again;
    synchronized (this) {
      again = names == null || total <= maxResources || now - namesAt >= NAMES_EVERY_NANOS;
    }
    CompletableFuture<List<String>> watched =
        again ? engine.cachedLimits("").thenApply(all -> names(all, now)) : CompletableFuture.completedFuture(watched());
    return watched.thenCompose(
        list -> {
          List<CompletableFuture<ResourceSnapshot>> each = new ArrayList<>(list.size());
          for (String name : list) {
            each.add(
                engine
                    .stats(name)
                    .exceptionally(
                        error -> {
                          if (EngineException.unwrap(error) instanceof EngineException e
                              && e.reason() == EngineException.Reason.NOT_FOUND) {
                            return null; // deleted: read the names again next time
                          }
                          throw error instanceof CompletionException c ? c : new CompletionException(error);
                        }));
          }
          return CompletableFuture.allOf(each.toArray(CompletableFuture[]::new))
              .thenApply(done -> collect(list, each, now));
        });
  }

  private synchronized List<String> names(List<LimitSpec> all, long now) {
    total = all.size();
    names = new ArrayList<>(Math.min(all.size(), maxResources));
    List<LimitSpec> p = new ArrayList<>();
    for (int i = 0; i < all.size() && i < maxResources; i++) {
      // A pool has no state of its own (the engine refuses its stats): it is shown as its members.
      if (all.get(i).isPool()) {
        p.add(all.get(i));
      } else {
        names.add(all.get(i).resource());
      }
    }
    pools = List.copyOf(p);
    resourcesTotal = (int) all.stream().filter(l -> !l.isPool()).count();
    namesAt = now;
    if (total > maxResources && !warned) {
      warned = true;
      log.warn("{} resources: the dashboard and the per-resource gauges show the first {} by name"
          + " (--metrics-max-resources)", total, maxResources);
    }
    return List.copyOf(names);
  }

  private synchronized Sample collect(
      List<String> list, List<CompletableFuture<ResourceSnapshot>> each, long now) {
    List<ResourceSnapshot> snapshots = new ArrayList<>(list.size());
    Map<String, Map<String, Double>> utilization = new LinkedHashMap<>();
    Map<String, Activity> activity = new LinkedHashMap<>();
    Map<String, TenantShares.View> tenants = new LinkedHashMap<>();
    long wall = millis.getAsLong();
    Set<String> seen = new HashSet<>();
    for (int i = 0; i < list.size(); i++) {
      String name = list.get(i);
      ResourceSnapshot snap = each.get(i).join();
      if (snap == null) {
        namesAt = now - NAMES_EVERY_NANOS; // deleted: read the names again next time
        continue;
      }
      snapshots.add(snap);
      seen.add(name);
      History h = history.computeIfAbsent(name, k -> new History());
      activity.put(name, h.activity(snap, now, wall));
      utilization.put(name, h.add(snap, now));
      if (TenantShares.hasTenants(snap)) {
        tenants.put(name, tenantShares.of(snap));
      }
    }
    history.keySet().retainAll(seen);
    return new Sample(wall, List.copyOf(snapshots), utilization, resourcesTotal, activity, tenants, pools);
  }

  /** Utilization history of one resource, per dimension, oldest first (at most {@link #HISTORY}). */
  public synchronized Map<String, double[]> history(String resource) {
    History h = history.get(resource);
    return h == null ? Map.of() : h.series();
  }

  /** The names whose history is kept now. */
  public synchronized List<String> watched() {
    return names == null ? List.of() : List.copyOf(names);
  }

  /** Per-dimension ring buffers of utilization, and the last reading they are measured from. */
  private static final class History {
    private final Map<String, float[]> rings = new LinkedHashMap<>();
    private final Map<String, Double> lastUsed = new HashMap<>();
    private long lastAt;
    private int count;
    private int head;
    private ResourceSnapshot last;
    private final ArrayDeque<Long> throttledAt = new ArrayDeque<>();

    /** Rates since the previous reading, and the throttle reports seen; before {@link #add}. */
    Activity activity(ResourceSnapshot snap, long now, long wallMillis) {
      long reportsBefore = last == null ? 0 : last.throttleReports();
      if (snap.throttleReports() > reportsBefore && snap.lastThrottleAgoNanos() >= 0) {
        throttledAt.addFirst(wallMillis - snap.lastThrottleAgoNanos() / 1_000_000);
        while (throttledAt.size() > RECENT_THROTTLES) {
          throttledAt.removeLast();
        }
      }
      double seconds = (now - lastAt) / 1e9;
      ResourceSnapshot p = last;
      last = snap;
      if (p == null || seconds <= 0) {
        return new Activity(Double.NaN, Double.NaN, Double.NaN, List.copyOf(throttledAt));
      }
      return new Activity(
          delta(snap.granted(), p.granted()) / seconds,
          delta(rejected(snap), rejected(p)) / seconds,
          delta(snap.timedOut(), p.timedOut()) / seconds,
          List.copyOf(throttledAt));
    }

    private static double delta(long now, long before) {
      return now >= before ? now - before : now; // below: the counter restarted
    }

    private static long rejected(ResourceSnapshot s) {
      return s.rejected().values().stream().mapToLong(Long::longValue).sum();
    }

    Map<String, Double> add(ResourceSnapshot snap, long now) {
      LimitSpec limit = snap.limit();
      if (!rings.keySet().equals(dimensions(limit))) {
        rings.clear(); // the limit's dimensions changed: start the chart over
        lastUsed.clear();
        for (RateSpec r : limit.rates()) {
          rings.put(r.name(), new float[HISTORY]);
        }
        count = 0;
        head = 0;
      }
      Map<String, Double> out = new LinkedHashMap<>();
      double seconds = (now - lastAt) / 1e9;
      for (RateSpec r : limit.rates()) {
        double used = snap.used().getOrDefault(r.name(), 0.0);
        Double before = lastUsed.put(r.name(), used);
        double u = 0;
        if (before != null && seconds > 0) {
          double taken = used >= before ? used - before : used; // below: the counter restarted
          double allowed = perSecond(r) * seconds;
          u = allowed > 0 ? Math.max(0, taken / allowed) : 0;
        }
        out.put(r.name(), u);
        rings.get(r.name())[head] = (float) u;
      }
      head = (head + 1) % HISTORY;
      count = Math.min(HISTORY, count + 1);
      lastAt = now;
      return out;
    }

    Map<String, double[]> series() {
      Map<String, double[]> out = new LinkedHashMap<>();
      for (Map.Entry<String, float[]> e : rings.entrySet()) {
        double[] s = new double[count];
        int start = (head - count + HISTORY) % HISTORY;
        for (int i = 0; i < count; i++) {
          s[i] = e.getValue()[(start + i) % HISTORY];
        }
        out.put(e.getKey(), s);
      }
      return out;
    }

    private static Set<String> dimensions(LimitSpec limit) {
      Set<String> d = new HashSet<>();
      for (RateSpec r : limit.rates()) {
        d.add(r.name());
      }
      return d;
    }
  }

  /** The limit's rate of one dimension in tokens per second. */
  public static double perSecond(RateSpec r) {
    return r.amount() * 1e9 / r.period().toNanos();
  }
}
