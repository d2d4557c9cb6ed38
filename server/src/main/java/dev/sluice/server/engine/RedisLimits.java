package dev.sluice.server.engine;

import io.lettuce.core.RedisException;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.function.BiFunction;
import java.util.function.Consumer;
import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;

/**
 * A node's cache of the limits in Redis: read on first use, forgotten when a node announces a
 * change on {@code sluice:config}, refreshed in full every 30 s by housekeeping. It also keeps
 * every limit the node has seen and not seen deleted: what it restores if Redis loses its data.
 */
final class RedisLimits {

  static final String LIMITS_KEY = "sluice:limits";
  /** Templates: field pattern, value its limit's fields and its creation (encodeTemplate). */
  static final String TEMPLATES_KEY = "sluice:templates";

  /** A limit as this node last saw it, with the version the script checks. */
  record Cfg(LimitSpec spec, String version) {}

  private final RedisCalls calls;
  private final RedisStore store;
  private final ConcurrentHashMap<String, Cfg> limits = new ConcurrentHashMap<>();
  /** Every limit this node has seen and not seen deleted: what it restores after data loss. */
  private final ConcurrentHashMap<String, LimitSpec> lastKnown = new ConcurrentHashMap<>();
  private final SecureRandom random = new SecureRandom();
  private long lastFullReload; // guarded by the housekeeping thread
  private volatile Consumer<String> onVanished = r -> {};
  /** This node's view of the templates: read at start, on news of a change, every 30 s. */
  private volatile Templates templates = Templates.NONE;
  /**
   * Names whose bucket this node saw made from a template, with that template's version. Small
   * and short-lived on purpose: a name's keys in Redis outlive an entry (they live for the idle
   * grace, at least a minute, after the last operation), so a hit never names keys gone.
   */
  private final Cache<String, Cfg> born;
  private volatile BiFunction<String, Templates.Template, CompletableFuture<Cfg>> materializer;

  RedisLimits(RedisCalls calls) {
    this.calls = calls;
    this.store = calls.store;
    this.born = Caffeine.newBuilder()
        .ticker(calls::nanoNow)
        .expireAfterWrite(Duration.ofSeconds(20))
        .maximumSize(10_000)
        .build();
  }

  /** How a name's bucket is made (or brought up to date) from its template in Redis. */
  void materializer(BiFunction<String, Templates.Template, CompletableFuture<Cfg>> m) {
    this.materializer = m;
  }

  Templates templates() {
    return templates;
  }

  void templates(Templates ts) {
    templates = ts;
    born.invalidateAll();
  }

  /** Notes a name's bucket made from {@code version} of its template. */
  void born(String resource, Cfg c) {
    born.put(resource, c);
  }

  /** Whether this node saw the name's bucket made from a template lately. */
  boolean bornLately(String resource) {
    return born.getIfPresent(resource) != null;
  }

  /** Reads the templates from Redis into this node's view. */
  void reloadTemplates() {
    reloadTemplates(false);
  }

  /**
   * {@link #reloadTemplates()}; {@code changed}: a node said it changed them, so none left is
   * believed (else none, while limits exist, may be a store that lost its data).
   */
  void reloadTemplates(boolean changed) {
    Map<String, String> raw;
    try {
      raw = store.sync().hgetall(TEMPLATES_KEY);
      store.markReachable();
    } catch (RedisException e) {
      throw store.unavailable(e);
    }
    if (!changed && raw.isEmpty() && !lastKnown.isEmpty() && !templates.isEmpty()) {
      return; // maybe a store that lost its data: keep the view for the restore (StoreLoss)
    }
    templates(decodeTemplates(raw));
  }

  /**
   * Writes back every template of this node's view that Redis lacks (it lost its data), as
   * created now: their buckets start empty, as every restored bucket does.
   *
   * @return how many were written
   */
  int restoreTemplates() {
    if (templates.isEmpty()) {
      return 0;
    }
    int n = 0;
    long now = calls.scriptMicros();
    for (Templates.Template t : templates.all()) {
      if (store.sync().hsetnx(TEMPLATES_KEY, t.pattern(), encodeTemplate(t.spec(), t.version(), now))) {
        n++;
      }
    }
    reloadTemplates();
    return n;
  }

  static Templates decodeTemplates(Map<String, String> raw) {
    List<Templates.Template> out = new ArrayList<>();
    raw.forEach((pattern, value) -> out.add(decodeTemplate(pattern, value)));
    return Templates.of(out);
  }

  /** A template as stored: its limit's fields (as {@link #encode}) and {@code created} (us), tab-separated. */
  static String encodeTemplate(LimitSpec spec, String version, long createdMicros) {
    StringBuilder b = new StringBuilder("created\t").append(createdMicros);
    encode(spec, version).forEach((k, v) -> b.append('\t').append(k).append('\t').append(v));
    return b.toString();
  }

  static Templates.Template decodeTemplate(String pattern, String value) {
    String[] f = value.split("\t", -1);
    Map<String, String> fields = new LinkedHashMap<>();
    for (int i = 0; i + 1 < f.length; i += 2) {
      fields.put(f[i], f[i + 1]);
    }
    long created = Long.parseLong(fields.remove("created"));
    Cfg c = decode(pattern, fields);
    return new Templates.Template(c.spec(), created * 1000, c.version());
  }

  /** The cached limit, or null. */
  Cfg cached(String resource) {
    return limits.get(resource);
  }

  /** The limit of a resource, read from Redis if not cached; NOT_FOUND if there is none. */
  Cfg cfg(String resource) {
    Validation.resource(resource);
    Cfg c = limits.get(resource);
    if (c == null) {
      c = fetch(resource);
      if (c == null) {
        throw vanished(resource);
      }
    }
    return c;
  }

  /** {@link #cfg} without waiting: a cached limit at once, else read from Redis. */
  CompletableFuture<Cfg> cfgAsync(String resource) {
    try {
      Validation.resource(resource);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    Cfg c = limits.get(resource);
    if (c != null) {
      return CompletableFuture.completedFuture(c);
    }
    Templates.Template t = templates.isEmpty() ? null : templates.match(resource);
    if (t != null) {
      Cfg b = born.getIfPresent(resource);
      if (b != null && b.version().equals(t.version())) {
        return CompletableFuture.completedFuture(b);
      }
      // Made (or brought up to its template's version) in Redis; a limit of its own found
      // there instead wins, and is cached as any other.
      return materializer.apply(resource, t);
    }
    return fetchAsync(resource)
        .thenApply(
            f -> {
              if (f == null) {
                throw vanished(resource);
              }
              return f;
            });
  }

  /** Reads a limit from Redis into the cache; null if there is none. */
  Cfg fetch(String resource) {
    Map<String, String> raw;
    try {
      raw = store.sync().hgetall(RedisCalls.keys(resource)[0]);
      store.markReachable();
    } catch (RedisException e) {
      throw store.unavailable(e);
    }
    return cache(resource, raw);
  }

  /** {@link #fetch} without waiting. */
  CompletableFuture<Cfg> fetchAsync(String resource) {
    return calls.reached(store.async().hgetall(RedisCalls.keys(resource)[0])).thenApply(raw -> cache(resource, raw));
  }

  private Cfg cache(String resource, Map<String, String> raw) {
    if (raw == null || raw.isEmpty() || raw.containsKey("tpl")) {
      // A template's bucket is no limit of its own (cfgAsync finds it through its template).
      limits.remove(resource);
      return null;
    }
    Cfg c = decode(resource, raw);
    limits.put(resource, c);
    lastKnown.put(resource, c.spec);
    return c;
  }

  /** Caches a limit this node just wrote. */
  void remember(LimitSpec spec, String version) {
    born.invalidate(spec.resource());
    limits.put(spec.resource(), new Cfg(spec, version));
    lastKnown.put(spec.resource(), spec);
  }

  /** Told the name of a limit this node knew that Redis no longer has ({@link #vanished}). */
  void onVanished(Consumer<String> watcher) {
    this.onVanished = watcher;
  }

  /**
   * The answer for a resource Redis has no limit for. NOT_FOUND, unless this node knew a limit
   * there and heard of no deletion: then either another node deleted it a moment ago, or Redis
   * lost its data. The store check ({@link StoreLoss}) tells which; until then the answer is
   * UNAVAILABLE, which clients retry, rather than a NOT_FOUND that would be wrong after a loss.
   */
  EngineException vanished(String resource) {
    limits.remove(resource);
    born.invalidate(resource);
    if (!lastKnown.containsKey(resource)) {
      return EngineException.notFound(resource);
    }
    onVanished.accept(resource);
    return new EngineException(EngineException.Reason.UNAVAILABLE,
        "the limit of '" + resource + "' is gone from Redis, with no deletion this node heard of:"
            + " checking whether Redis lost its data (then it is restored); retry");
  }

  /** Drops the cached copy (changed elsewhere, or gone): the next use reads it again. */
  void forget(String resource) {
    limits.remove(resource);
    born.invalidate(resource);
  }

  /** Forgets a deleted limit entirely. */
  void deleted(String resource) {
    limits.remove(resource);
    born.invalidate(resource);
    lastKnown.remove(resource);
  }

  /** Every limit this node last knew, for a restore. */
  Map<String, LimitSpec> lastKnown() {
    return new HashMap<>(lastKnown);
  }

  /** The waiting room of a cached limit, for messages. */
  String maxWaitingOf(String resource) {
    Cfg c = limits.get(resource);
    return c == null ? "?" : Integer.toString(c.spec.maxWaiting());
  }

  String newVersion() {
    return Long.toHexString(random.nextLong() & Long.MAX_VALUE);
  }

  static Map<String, String> encode(LimitSpec s, String version) {
    Map<String, String> f = new LinkedHashMap<>();
    f.put("ver", version);
    f.put("dims", String.join(",", s.rates().stream().map(RateSpec::name).toList()));
    for (RateSpec r : s.rates()) {
      f.put("a:" + r.name(), Long.toString(r.amount()));
      f.put("p:" + r.name(), Long.toString(r.period().toNanos()));
      f.put("b:" + r.name(), Long.toString(r.burst()));
    }
    f.put("conc", Long.toString(s.concurrency()));
    if (!s.holds().isEmpty()) {
      // Absent means none (limits stored before held dimensions existed); the script reads it.
      f.put("hold", String.join(",", s.holds().entrySet().stream().map(e -> e.getKey() + "=" + e.getValue()).toList()));
    }
    f.put("lease", Long.toString(s.leaseTtl().toNanos() / 1000));
    f.put("maxw", Integer.toString(s.maxWaiting()));
    if (s.jitterNanos() > 0) {
      // Absent means 0: limits stored before jitter existed, and the script reads it so too.
      f.put("jit", Long.toString(s.jitterNanos()));
    }
    // Tenant policy: the script reads these too (loadCfg). Doubles as Java prints them, which
    // Lua's tonumber reads back to the same value.
    s.tenants().weights().forEach((t, w) -> f.put("tw:" + t, Double.toString(w)));
    s.tenants().floors().forEach((t, v) -> f.put("tf:" + t, Double.toString(v)));
    s.tenants().caps().forEach((t, rates) -> f.put("tc:" + t, String.join(";", rates.stream()
        .map(r -> r.name() + ":" + r.amount() + ":" + r.period().toNanos() + ":" + r.burst()).toList())));
    if (s.learn() != null) {
      encodeLearn(s.learn(), f);
    }
    if (s.isPool()) {
      // The script never grants on a pool (PoolEngine routes to the members); it sees no dims.
      f.put("members", String.join(",", s.members()));
    }
    if (s.owner() != null) {
      // The script never reads these: they say which limits file manages the limit.
      f.put("own:file", s.owner().file());
      f.put("own:sha", s.owner().sha256());
      if (s.owner().overridden()) {
        f.put("own:hand", "1");
      }
    }
    return f;
  }

  private static TenantPolicy decodeTenants(Map<String, String> f) {
    Map<String, Double> weights = new java.util.TreeMap<>();
    Map<String, Double> floors = new java.util.TreeMap<>();
    Map<String, List<RateSpec>> caps = new java.util.TreeMap<>();
    for (Map.Entry<String, String> e : f.entrySet()) {
      String k = e.getKey();
      if (k.startsWith("tw:")) {
        weights.put(k.substring(3), Double.parseDouble(e.getValue()));
      } else if (k.startsWith("tf:")) {
        floors.put(k.substring(3), Double.parseDouble(e.getValue()));
      } else if (k.startsWith("tc:")) {
        List<RateSpec> rates = new ArrayList<>();
        for (String r : e.getValue().split(";")) {
          String[] p = r.split(":");
          rates.add(new RateSpec(p[0], Long.parseLong(p[1]), Duration.ofNanos(Long.parseLong(p[2])), Long.parseLong(p[3])));
        }
        caps.put(k.substring(3), rates);
      }
    }
    return weights.isEmpty() && floors.isEmpty() && caps.isEmpty()
        ? TenantPolicy.NONE : new TenantPolicy(weights, floors, caps);
  }

  /** A learned limit's settings, as fields beside the limit's: absent for a limit set by hand. */
  private static void encodeLearn(LearnSpec l, Map<String, String> f) {
    f.put("learn", l.provider());
    f.put("learn:ceil", String.join(",", l.ceilings().stream()
        .map(c -> c.name() + "=" + c.amount() + "/" + c.period().toNanos()).toList()));
    f.put("learn:at", Long.toString(l.learnedAtMillis()));
    f.put("learn:was", l.was());
  }

  private static LearnSpec decodeLearn(Map<String, String> f) {
    String provider = f.get("learn");
    if (provider == null) {
      return null;
    }
    List<RateSpec> ceilings = new ArrayList<>();
    String ceil = f.getOrDefault("learn:ceil", "");
    if (!ceil.isEmpty()) {
      for (String c : ceil.split(",")) {
        int eq = c.indexOf('=');
        int slash = c.indexOf('/', eq);
        ceilings.add(new RateSpec(c.substring(0, eq), Long.parseLong(c.substring(eq + 1, slash)),
            Duration.ofNanos(Long.parseLong(c.substring(slash + 1))), 0));
      }
    }
    return new LearnSpec(provider, ceilings, Long.parseLong(f.getOrDefault("learn:at", "0")),
        f.getOrDefault("learn:was", ""));
  }

  static Cfg decode(String resource, Map<String, String> f) {
    List<RateSpec> rates = new ArrayList<>();
    String dims = f.getOrDefault("dims", "");
    if (!dims.isEmpty()) {
      for (String d : dims.split(",")) {
        rates.add(
            new RateSpec(
                d,
                Long.parseLong(f.get("a:" + d)),
                Duration.ofNanos(Long.parseLong(f.get("p:" + d))),
                Long.parseLong(f.get("b:" + d))));
      }
    }
    LimitSpec spec =
        new LimitSpec(
            resource,
            rates,
            Long.parseLong(f.get("conc")),
            Integer.parseInt(f.get("maxw")),
            Duration.ofNanos(Long.parseLong(f.get("lease")) * 1000),
            Duration.ofNanos(f.containsKey("jit") ? Long.parseLong(f.get("jit")) : 0),
            decodeTenants(f),
            decodeLearn(f),
            f.containsKey("members") ? List.of(f.get("members").split(",")) : List.of(),
            f.containsKey("own:file")
                ? new LimitOwner(f.get("own:file"), f.getOrDefault("own:sha", ""), f.containsKey("own:hand"))
                : null);
    String hold = f.getOrDefault("hold", "");
    if (!hold.isEmpty()) {
      Map<String, Long> holds = new LinkedHashMap<>();
      for (String kv : hold.split(",")) {
        int eq = kv.indexOf('=');
        holds.put(kv.substring(0, eq), Long.parseLong(kv.substring(eq + 1)));
      }
      spec = spec.withHolds(holds);
    }
    return new Cfg(spec, f.get("ver"));
  }

  /** The names of every limit in Redis. */
  Set<String> names() {
    try {
      return store.sync().smembers(LIMITS_KEY);
    } catch (RedisException e) {
      throw store.unavailable(e);
    }
  }

  /**
   * The limits whose names start with {@code prefix}, sorted by name, without waiting: each read
   * from Redis when {@code fresh}, else from the cache where it holds one.
   */
  CompletableFuture<List<LimitSpec>> list(String prefix, boolean fresh) {
    String p = prefix == null ? "" : prefix;
    return calls.reached(store.async().smembers(LIMITS_KEY))
        .thenCompose(
            names -> {
              List<CompletableFuture<Cfg>> each = new ArrayList<>();
              for (String name : names) {
                if (name.startsWith(p)) {
                  Cfg c = fresh ? null : limits.get(name);
                  each.add(c != null ? CompletableFuture.completedFuture(c) : fetchAsync(name));
                }
              }
              return CompletableFuture.allOf(each.toArray(CompletableFuture[]::new))
                  .thenApply(
                      done -> {
                        List<LimitSpec> out = new ArrayList<>();
                        for (CompletableFuture<Cfg> f : each) {
                          Cfg c = f.join();
                          if (c != null) {
                            out.add(c.spec);
                          }
                        }
                        out.sort(Comparator.comparing(LimitSpec::resource));
                        return out;
                      });
            });
  }

  /** Reloads every limit from Redis: the node's "last known config". */
  void reload() {
    Set<String> names = names();
    for (String name : names) {
      if (fetch(name) == null) {
        store.sync().srem(LIMITS_KEY, name); // deleted halfway: finish the job
      }
    }
    limits.keySet().removeIf(k -> !names.contains(k));
    if (!names.isEmpty() || lastKnown.isEmpty()) {
      // An empty set may be a store that lost its data: keep what we knew for the restore.
      lastKnown.keySet().removeIf(k -> !names.contains(k));
    }
  }

  /** Housekeeping's part: a full reload every 30 s. */
  void refresh(long nowNanos) {
    if (nowNanos - lastFullReload > TimeUnit.SECONDS.toNanos(30)) {
      lastFullReload = nowNanos;
      reload();
      reloadTemplates();
    }
  }

  /** For tests: {cached limits, last known ones}. */
  int[] sizes() {
    return new int[] {limits.size(), lastKnown.size()};
  }
}
