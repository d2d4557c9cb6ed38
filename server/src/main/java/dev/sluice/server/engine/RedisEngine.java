package dev.sluice.server.engine;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import io.lettuce.core.AbstractRedisClient;
import io.lettuce.core.ClientOptions;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisException;
import io.lettuce.core.RedisNoScriptException;
import io.lettuce.core.RedisURI;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.SocketOptions;
import io.lettuce.core.TimeoutOptions;
import io.lettuce.core.api.StatefulConnection;
import io.lettuce.core.cluster.ClusterClientOptions;
import io.lettuce.core.cluster.RedisClusterClient;
import io.lettuce.core.cluster.api.async.RedisClusterAsyncCommands;
import io.lettuce.core.cluster.api.sync.RedisClusterCommands;
import io.lettuce.core.pubsub.RedisPubSubAdapter;
import io.lettuce.core.pubsub.StatefulRedisPubSubConnection;
import io.lettuce.core.resource.ClientResources;
import io.lettuce.core.resource.DefaultClientResources;
import io.lettuce.core.resource.Delay;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The distributed engine: every resource's state in Redis, shared by any number of nodes.
 *
 * <p>Each read-modify-write of a resource is one call of {@code redis-engine.lua} (EVALSHA),
 * which Redis runs atomically, so the algorithm is the memory engine's with Redis as the
 * monitor; see that script and {@code docs/ARCHITECTURE.md}. The keys of one resource share
 * the hash tag {@code {resource}}, so everything works on Redis Cluster; time comes from Redis
 * ({@code TIME}), so node clocks do not matter.
 *
 * <p>Waiters stay parked on the node that received them. The queue itself lives in Redis (one
 * sorted set per lane, ordered by arrival at Redis), so any node's operation can grant anyone:
 * grants for its own waiters come back in the script's reply, grants for another node's
 * waiters go to that node on its pub/sub channel. A node with waiters on a resource schedules
 * one wake-up, at the instant the script computed (at most {@link #HEARTBEAT} away, which is
 * also how the others know it is alive); waiters of a node that stopped beating are dropped.
 *
 * <p>Redis calls are synchronous with a short command timeout: a node whose Redis is away
 * answers UNAVAILABLE within that timeout and recovers by itself (Lettuce reconnects).
 */
public final class RedisEngine implements Engine {

  private static final Logger log = LoggerFactory.getLogger(RedisEngine.class);
  static final Duration HEARTBEAT = Duration.ofSeconds(1);
  private static final String LIMITS_KEY = "sluice:limits";
  private static final String META_KEY = "sluice:meta";
  private static final String CONFIG_CHANNEL = "sluice:config";
  private static final long NEVER = -1;
  private static final long MAX_RETRY_AFTER = TimeUnit.HOURS.toNanos(1);

  private final String uri;
  private final String nodeId;
  private final Ticker ticker; // null: Redis time
  private final Scheduler scheduler;
  private final int defaultMaxWaiting;
  private final Duration defaultLease;
  private final long agingMicros;
  private final long nodeTimeoutMicros;
  private final long housekeepingNanos;

  private final ClientResources resources;
  private final AbstractRedisClient client;
  private final StatefulConnection<String, String> connection;
  private final RedisClusterCommands<String, String> redis;
  /** The same connection, for calls whose reply is handled on Lettuce's event loop. */
  private final RedisClusterAsyncCommands<String, String> async;
  private final StatefulRedisPubSubConnection<String, String> pubsub;
  private final String script;
  private volatile String sha;

  private final ConcurrentHashMap<String, Cfg> limits = new ConcurrentHashMap<>();
  /** Every limit this node has seen and not seen deleted: what it restores after data loss. */
  private final ConcurrentHashMap<String, LimitSpec> lastKnown = new ConcurrentHashMap<>();
  /** Pub/sub news is handled here, off Lettuce's event loop, since handling it calls Redis. */
  private final java.util.concurrent.ExecutorService events =
      java.util.concurrent.Executors.newSingleThreadExecutor(
          r -> {
            Thread t = new Thread(r, "sluice-redis-events");
            t.setDaemon(true);
            return t;
          });
  private final ConcurrentHashMap<String, Local> locals = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<String, Batcher> batchers = new ConcurrentHashMap<>();
  /** Operations handed to a batcher whose reply has not been handled yet. */
  private final AtomicInteger unanswered = new AtomicInteger();
  private final ConcurrentHashMap<String, WaitStats> waits = new ConcurrentHashMap<>();
  private final AtomicLong arrivals = new AtomicLong();
  private final AtomicLong ids = new AtomicLong();
  /** Permits handed to a local caller (or given back) lately: a second delivery is a no-op. */
  private final Cache<String, Boolean> delivered =
      Caffeine.newBuilder().expireAfterWrite(Duration.ofMinutes(2)).maximumSize(1_000_000).build();
  private final SecureRandom random = new SecureRandom();
  private volatile boolean closed;
  private volatile boolean holdBatches; // test hook
  private volatile boolean metaSeen;
  private volatile boolean reachable = true;
  private volatile long unreachableSince;
  private volatile Scheduler.Cancellable housekeeping;
  private long lastFullReload;

  /** A limit as this node last saw it, with the version the script checks. */
  private record Cfg(LimitSpec spec, String version) {}

  /** This node's waiters on one resource and its one wake-up. */
  private static final class Local {
    final ConcurrentHashMap<String, RWaiter> waiters = new ConcurrentHashMap<>();
    Scheduler.Cancellable wake; // guarded by this
    long wakeAt; // guarded by this
  }

  private RedisEngine(Builder b) {
    this.uri = b.uri;
    this.nodeId = b.nodeId != null ? b.nodeId : newNodeId();
    this.ticker = b.ticker;
    this.scheduler = b.scheduler;
    this.defaultMaxWaiting = b.defaultMaxWaiting;
    this.defaultLease = b.defaultLease;
    this.agingMicros = b.aging.toNanos() / 1000;
    this.nodeTimeoutMicros = b.nodeTimeout.toNanos() / 1000;
    this.housekeepingNanos = b.housekeeping.toNanos();
    this.script = loadScript();
    Duration timeout = b.commandTimeout;
    SocketOptions socket = SocketOptions.builder().connectTimeout(timeout).build();
    // Reconnect soon after Redis is back (the default backs off to 30 s).
    this.resources =
        DefaultClientResources.builder()
            .reconnectDelay(Delay.exponential(Duration.ofMillis(50), Duration.ofSeconds(1), 2, TimeUnit.MILLISECONDS))
            .build();
    TimeoutOptions timeouts = TimeoutOptions.enabled(timeout);
    AbstractRedisClient madeClient = null;
    try {
    if (uri.startsWith("redis-cluster://") || uri.startsWith("rediss-cluster://")) {
      boolean tls = uri.startsWith("rediss");
      List<RedisURI> seeds = new ArrayList<>();
      for (String hostPort : uri.substring(uri.indexOf("://") + 3).split(",")) {
        seeds.add(RedisURI.create((tls ? "rediss://" : "redis://") + hostPort.trim()));
      }
      RedisClusterClient c = RedisClusterClient.create(resources, seeds);
      c.setOptions(
          ClusterClientOptions.builder()
              .autoReconnect(true)
              .disconnectedBehavior(ClientOptions.DisconnectedBehavior.REJECT_COMMANDS)
              .socketOptions(socket)
              .timeoutOptions(timeouts)
              .build());
      madeClient = c;
      var conn = c.connect();
      this.client = c;
      this.connection = conn;
      this.redis = conn.sync();
      this.async = conn.async();
      this.pubsub = c.connectPubSub();
    } else {
      RedisURI parsed = RedisURI.create(uri);
      parsed.setTimeout(timeout);
      RedisClient c = RedisClient.create(resources, parsed);
      c.setOptions(
          ClientOptions.builder()
              .autoReconnect(true)
              .disconnectedBehavior(ClientOptions.DisconnectedBehavior.REJECT_COMMANDS)
              .socketOptions(socket)
              .timeoutOptions(timeouts)
              .build());
      madeClient = c;
      var conn = c.connect();
      this.client = c;
      this.connection = conn;
      this.redis = conn.sync();
      this.async = conn.async();
      this.pubsub = c.connectPubSub();
    }
    pubsub.addListener(
        new RedisPubSubAdapter<>() {
          @Override
          public void message(String channel, String message) {
            events.execute(
                () -> {
                  try {
                    onMessage(channel, message);
                  } catch (RuntimeException e) {
                    log.warn("could not handle message on {}: {}", channel, e.toString());
                  }
                });
          }
        });
    pubsub.sync().subscribe(nodeChannel(nodeId), CONFIG_CHANNEL);
    this.sha = redis.scriptLoad(script);
    this.metaSeen = true;
    redis.setnx(META_KEY, "sluice store, created by node " + nodeId + " at " + System.currentTimeMillis());
    reloadLimits();
    } catch (RuntimeException e) {
      if (madeClient != null) {
        madeClient.shutdown(Duration.ZERO, Duration.ofSeconds(1));
      }
      resources.shutdown();
      throw e;
    }
    if (housekeepingNanos > 0) {
      housekeeping = scheduler.schedule(this::housekeepAndReschedule, housekeepingNanos);
    }
  }

  /** A builder with the defaults documented on each setter. */
  public static Builder builder() {
    return new Builder();
  }

  /** Configures a {@link RedisEngine}. */
  public static final class Builder {
    private String uri;
    private String nodeId;
    private Ticker ticker;
    private Scheduler scheduler;
    private int defaultMaxWaiting = 10_000;
    private Duration defaultLease = Duration.ofSeconds(30);
    private Duration aging = Duration.ofSeconds(10);
    private Duration nodeTimeout = Duration.ofSeconds(3);
    private Duration commandTimeout = Duration.ofSeconds(1);
    private Duration housekeeping = HEARTBEAT;

    private Builder() {}

    /**
     * Where Redis is: {@code redis://host:port}, {@code rediss://} for TLS, {@code
     * redis-sentinel://host:26379,host2:26379#mymaster} (as Lettuce spells them), or {@code
     * redis-cluster://host:7000,host:7001} for Redis Cluster seed nodes.
     */
    public Builder uri(String uri) {
      if (uri == null || !(uri.startsWith("redis://") || uri.startsWith("rediss://")
          || uri.startsWith("redis-sentinel://") || uri.startsWith("rediss-sentinel://")
          || uri.startsWith("redis-cluster://") || uri.startsWith("rediss-cluster://")
          || uri.startsWith("redis-socket://"))) {
        throw new IllegalArgumentException(
            "store '" + uri + "' is not a Redis URI: use redis://host:port, rediss://host:port,"
                + " redis-sentinel://host:26379#master or redis-cluster://host:7000,host:7001");
      }
      this.uri = uri;
      return this;
    }

    /** This node's id on the shared store; default a random one. */
    public Builder nodeId(String id) {
      if (id == null || !id.matches("[A-Za-z0-9._:-]{1,64}")) {
        throw new IllegalArgumentException(
            "node id '" + id + "' is invalid: use 1-64 characters of A-Z a-z 0-9 . _ : -, e.g."
                + " node-1");
      }
      this.nodeId = id;
      return this;
    }

    /**
     * A test clock: time passed to the scripts instead of Redis {@code TIME}. Production nodes
     * leave it unset so that every node uses the one clock Redis has.
     */
    public Builder ticker(Ticker ticker) {
      this.ticker = Objects.requireNonNull(ticker, "ticker");
      return this;
    }

    /** Runs wake-ups, deadlines and housekeeping; required. */
    public Builder scheduler(Scheduler scheduler) {
      this.scheduler = Objects.requireNonNull(scheduler, "scheduler");
      return this;
    }

    /** Waiting room size for limits that do not set one; default 10 000. */
    public Builder defaultMaxWaiting(int n) {
      if (n < 1 || n > Validation.MAX_WAITING_CAP) {
        throw new IllegalArgumentException(
            "max waiting " + n + " is out of range: use 1 to " + Validation.MAX_WAITING_CAP);
      }
      this.defaultMaxWaiting = n;
      return this;
    }

    /** Lease length for limits that do not set one; default 30 s. */
    public Builder defaultLease(Duration d) {
      if (d.compareTo(Validation.MIN_LEASE) < 0 || d.compareTo(Validation.MAX_LEASE) > 0) {
        throw new IllegalArgumentException("lease TTL " + d + " is out of range: use 1s to 1h");
      }
      this.defaultLease = d;
      return this;
    }

    /** Lane aging threshold; default 10 s (see {@link MemoryEngine.Builder#aging}). */
    public Builder aging(Duration d) {
      if (d.isNegative() || d.compareTo(Duration.ofHours(1)) > 0) {
        throw new IllegalArgumentException("aging " + d + " is out of range: use 0s to 1h");
      }
      this.aging = d;
      return this;
    }

    /**
     * How long a node may go unheard before the others drop its waiters; default 3 s. Nodes
     * with waiters are heard at least every second.
     */
    public Builder nodeTimeout(Duration d) {
      if (d.compareTo(HEARTBEAT.multipliedBy(2)) < 0) {
        throw new IllegalArgumentException(
            "node timeout " + d + " is too short: use at least 2 heartbeats (2s)");
      }
      this.nodeTimeout = d;
      return this;
    }

    /** Longest wait for one Redis call before answering UNAVAILABLE; default 1 s. */
    public Builder commandTimeout(Duration d) {
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException("command timeout must be positive, e.g. 1s");
      }
      this.commandTimeout = d;
      return this;
    }

    /**
     * How often the node checks that Redis still holds its data and refreshes its view of the
     * limits; default 1 s; zero turns it off (tests call {@link RedisEngine#housekeep()}).
     */
    public Builder housekeeping(Duration d) {
      this.housekeeping = Objects.requireNonNull(d, "housekeeping");
      return this;
    }

    /**
     * Connects, loads the script and the limits.
     *
     * @throws IOException if Redis cannot be reached; the message names the URI and the fix
     */
    public RedisEngine build() throws IOException {
      if (uri == null) {
        throw new IllegalStateException("uri is required: call uri(\"redis://host:port\")");
      }
      if (scheduler == null) {
        throw new IllegalStateException("scheduler is required: call scheduler(...)");
      }
      try {
        return new RedisEngine(this);
      } catch (RedisException e) {
        throw new IOException(
            "cannot reach Redis at " + redact(uri) + " (" + rootMessage(e) + "): start Redis there"
                + " or fix --store",
            e);
      }
    }
  }

  @Override
  public boolean storeReachable() {
    return reachable;
  }

  /**
   * The hash {@code sluice:<name>} on this store, shared by every node (the API keys live in
   * {@code sluice:keys}).
   */
  public SharedHash sharedHash(String name) {
    String key = "sluice:" + name;
    return new SharedHash() {
      @Override
      public java.util.Map<String, String> all() {
        return redis.hgetall(key);
      }

      @Override
      public void put(String field, String value) {
        redis.hset(key, field, value);
      }

      @Override
      public boolean delete(String field) {
        return redis.hdel(key, field) > 0;
      }
    };
  }

  /**
   * The engine's connection to the shared store, for other shared records (buffers): commands
   * are pipelined with the engine's, replies handled on Lettuce's event loop.
   */
  public RedisClusterAsyncCommands<String, String> storeAsync() {
    return async;
  }

  /** The same connection, waiting for each reply (never call from a transport thread). */
  public RedisClusterCommands<String, String> storeSync() {
    return redis;
  }

  /**
   * A new connection of its own to the store, for blocking reads (XREAD BLOCK) that must not
   * hold up the engine's commands; the caller closes it.
   */
  public StatefulConnection<String, String> openStoreConnection() {
    return client instanceof RedisClusterClient c ? c.connect() : ((RedisClient) client).connect();
  }

  /** True on a Redis Cluster, where one command's keys must share a hash slot. */
  public boolean storeIsCluster() {
    return client instanceof RedisClusterClient;
  }

  /** This node's id on the shared store. */
  public String nodeId() {
    return nodeId;
  }

  /** The store, without credentials, for logs. */
  public String describeStore() {
    return redact(uri);
  }

  // ---------------------------------------------------------------------------------------
  // Script calls

  private static String loadScript() {
    try (InputStream in = RedisEngine.class.getResourceAsStream("redis-engine.lua")) {
      return new String(Objects.requireNonNull(in, "redis-engine.lua").readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new IllegalStateException("cannot read the bundled redis-engine.lua", e);
    }
  }

  private static String[] keys(String resource) {
    String p = "sluice:{" + resource + "}:";
    return new String[] {
      p + "cfg", p + "st", p + "leases", p + "pl", p + "q0", p + "q1", p + "q2", p + "w",
      p + "nodes", p + "done"
    };
  }

  private long nanoNow() {
    return ticker == null ? System.nanoTime() : ticker.read();
  }

  private String now() {
    return ticker == null ? "" : Long.toString(ticker.read() / 1000);
  }

  /** Runs one operation of the script on a resource's keys. */
  private List<Object> call(String resource, String op, String... args) {
    String[] argv = new String[6 + args.length];
    argv[0] = op;
    argv[1] = now();
    argv[2] = nodeId;
    argv[3] = resource;
    argv[4] = Long.toString(agingMicros);
    argv[5] = Long.toString(nodeTimeoutMicros);
    System.arraycopy(args, 0, argv, 6, args.length);
    String[] keys = keys(resource);
    try {
      List<Object> out;
      try {
        out = redis.evalsha(sha, ScriptOutputType.MULTI, keys, argv);
      } catch (RedisNoScriptException e) {
        // Redis restarted (or failed over) and forgot the script: load it again.
        sha = redis.scriptLoad(script);
        out = redis.evalsha(sha, ScriptOutputType.MULTI, keys, argv);
      }
      markReachable();
      return out;
    } catch (RedisException e) {
      throw unavailable(e);
    }
  }

  private EngineException unavailable(RedisException e) {
    if (reachable) {
      unreachableSince = nanoNow();
      reachable = false;
      log.error("Redis at {} is unreachable: {}; answering UNAVAILABLE until it is back",
          redact(uri), rootMessage(e));
    }
    return new EngineException(
        EngineException.Reason.UNAVAILABLE,
        "this node's Redis (" + redact(uri) + ") is unreachable (" + rootMessage(e) + "): retry on"
            + " another node or after Redis is back");
  }

  private void markReachable() {
    if (!reachable) {
      reachable = true;
      log.info("Redis at {} is reachable again", redact(uri));
    }
  }

  private static String rootMessage(Throwable e) {
    Throwable t = e;
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
    }
    return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
  }

  private static String redact(String uri) {
    return uri.replaceAll("//[^@/]*@", "//***@");
  }

  private static String word(List<Object> reply) {
    return (String) reply.get(0);
  }

  private static long num(Object o) {
    return o instanceof Long l ? l : Long.parseLong((String) o);
  }

  // ---------------------------------------------------------------------------------------
  // Limits

  private Cfg cfg(String resource) {
    Validation.resource(resource);
    Cfg c = limits.get(resource);
    if (c == null) {
      c = fetch(resource);
      if (c == null) {
        throw EngineException.notFound(resource);
      }
    }
    return c;
  }

  /** Reads a limit from Redis into the cache; null if there is none. */
  private Cfg fetch(String resource) {
    Map<String, String> raw;
    try {
      raw = redis.hgetall(keys(resource)[0]);
      markReachable();
    } catch (RedisException e) {
      throw unavailable(e);
    }
    if (raw == null || raw.isEmpty()) {
      limits.remove(resource);
      return null;
    }
    Cfg c = decode(resource, raw);
    limits.put(resource, c);
    lastKnown.put(resource, c.spec);
    return c;
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
    f.put("lease", Long.toString(s.leaseTtl().toNanos() / 1000));
    f.put("maxw", Integer.toString(s.maxWaiting()));
    return f;
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
            Duration.ofNanos(Long.parseLong(f.get("lease")) * 1000));
    return new Cfg(spec, f.get("ver"));
  }

  private String newVersion() {
    return Long.toHexString(random.nextLong() & Long.MAX_VALUE);
  }

  private static String newNodeId() {
    return "n" + Long.toString(new SecureRandom().nextLong() & 0xffffffffffL, 36);
  }

  /** Reloads every limit from Redis: the node's "last known config". */
  private void reloadLimits() {
    java.util.Set<String> names;
    try {
      names = redis.smembers(LIMITS_KEY);
    } catch (RedisException e) {
      throw unavailable(e);
    }
    for (String name : names) {
      if (fetch(name) == null) {
        redis.srem(LIMITS_KEY, name); // deleted halfway: finish the job
      }
    }
    limits.keySet().removeIf(k -> !names.contains(k));
    if (!names.isEmpty() || lastKnown.isEmpty()) {
      // An empty set may be a store that lost its data: keep what we knew for the restore.
      lastKnown.keySet().removeIf(k -> !names.contains(k));
    }
  }

  @Override
  public boolean setLimit(LimitSpec limit) {
    LimitSpec spec = Validation.limit(limit, defaultMaxWaiting, defaultLease);
    boolean created = writeLimit(spec, false);
    log.info("limit {} {}: {}", created ? "created" : "changed", spec.resource(), MemoryEngine.describe(spec));
    return created;
  }

  /** Writes a limit; with {@code onlyIfAbsent}, a restore that leaves an existing one alone. */
  private boolean writeLimit(LimitSpec spec, boolean onlyIfAbsent) {
    String version = newVersion();
    Map<String, String> fields = encode(spec, version);
    String[] args = new String[1 + fields.size() * 2];
    args[0] = onlyIfAbsent ? "1" : "0";
    int i = 1;
    for (Map.Entry<String, String> e : fields.entrySet()) {
      args[i++] = e.getKey();
      args[i++] = e.getValue();
    }
    List<Object> reply = call(spec.resource(), "setlimit", args);
    String w = word(reply);
    if (w.equals("EXISTS")) {
      return false;
    }
    try {
      redis.sadd(LIMITS_KEY, spec.resource());
      redis.publish(CONFIG_CHANNEL, "S\t" + spec.resource() + "\t" + nodeId);
    } catch (RedisException e) {
      throw unavailable(e);
    }
    limits.put(spec.resource(), new Cfg(spec, version));
    lastKnown.put(spec.resource(), spec);
    int sep = reply.indexOf("--");
    for (int m = sep + 1; sep > 0 && m + 1 < reply.size(); m += 2) {
      RWaiter misfit = localWaiter(spec.resource(), (String) reply.get(m));
      if (misfit != null) {
        endLocal(misfit, EngineException.invalid(
            "limit of '" + spec.resource() + "' changed: " + reply.get(m + 1)));
      }
    }
    afterDrain(spec.resource(), reply, 1);
    return w.equals("CREATED");
  }

  @Override
  public Optional<LimitSpec> getLimit(String resource) {
    Validation.resource(resource);
    Cfg c = fetch(resource);
    return c == null ? Optional.empty() : Optional.of(c.spec);
  }

  @Override
  public List<LimitSpec> listLimits(String prefix) {
    String p = prefix == null ? "" : prefix;
    java.util.Set<String> names;
    try {
      names = redis.smembers(LIMITS_KEY);
    } catch (RedisException e) {
      throw unavailable(e);
    }
    List<LimitSpec> out = new ArrayList<>();
    for (String name : names) {
      if (name.startsWith(p)) {
        Cfg c = limits.get(name);
        if (c == null) {
          c = fetch(name);
        }
        if (c != null) {
          out.add(c.spec);
        }
      }
    }
    out.sort(Comparator.comparing(LimitSpec::resource));
    return out;
  }

  @Override
  public void deleteLimit(String resource) {
    Validation.resource(resource);
    List<Object> reply = call(resource, "dellimit");
    if (word(reply).equals("NOTFOUND")) {
      limits.remove(resource);
      throw EngineException.notFound(resource);
    }
    try {
      redis.srem(LIMITS_KEY, resource);
      redis.publish(CONFIG_CHANNEL, "D\t" + resource + "\t" + nodeId);
    } catch (RedisException e) {
      throw unavailable(e);
    }
    limits.remove(resource);
    lastKnown.remove(resource);
    failLocal(resource, () -> EngineException.notFound(resource), "deleted");
    log.info("limit deleted {}", resource);
  }

  // ---------------------------------------------------------------------------------------
  // Worker operations

  /** One acquire parked on this node. */
  private final class RWaiter implements Ticket {
    static final int WAITING = 0;
    static final int GRANTED = 1;
    static final int CLAIMED = 2;
    static final int RETURNED = 3;
    static final int ENDED = 4;

    final String resource;
    final String requestId;
    volatile Map<String, Long> load; // as charged; set again if the limit changed meanwhile
    final Lane lane;
    /** Arrival order on this node: ending a resource's waiters goes in line order. */
    final long arrival = arrivals.incrementAndGet();
    final long timeoutNanos;
    /** Replaced by a retry of its request id on this node: its entry belongs to the retry. */
    volatile boolean takenOver;
    final CompletableFuture<Grant> future = new CompletableFuture<>();
    final AtomicInteger status = new AtomicInteger(WAITING);
    volatile Scheduler.Cancellable timeout;
    volatile Grant grant;

    RWaiter(String resource, String requestId, Map<String, Long> load, Lane lane, long timeoutNanos) {
      this.resource = resource;
      this.requestId = requestId;
      this.load = load;
      this.lane = lane;
      this.timeoutNanos = timeoutNanos;
    }

    @Override
    public CompletableFuture<Grant> future() {
      return future;
    }

    @Override
    public boolean claim() {
      return status.compareAndSet(GRANTED, CLAIMED);
    }

    @Override
    public void cancel() {
      cancelLocal(this);
    }
  }

  @Override
  public Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId) {
    AcquireOp op = startAcquire(resource, load, lane, timeoutNanos, requestId, true);
    try {
      op.admitted.join();
    } catch (CompletionException e) {
      throw rethrow(e.getCause());
    }
    return op.w;
  }

  /**
   * Never waits for Redis: the acquire joins its resource's next batch and the ticket completes
   * from the reply, on Lettuce's event loop. A refusal from Redis (full waiting room, limit gone,
   * Redis away) fails the ticket's future. Its {@link Ticket#cancel()} does not wait either: a
   * waiter leaves the queue from another thread.
   */
  @Override
  public Ticket acquireAsync(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId) {
    RWaiter w = startAcquire(resource, load, lane, timeoutNanos, requestId, false).w;
    return new Ticket() {
      @Override
      public CompletableFuture<Grant> future() {
        return w.future;
      }

      @Override
      public boolean claim() {
        return w.claim();
      }

      @Override
      public void cancel() {
        if (w.status.get() == RWaiter.WAITING) {
          events.execute(() -> cancelLocal(w)); // a round trip to leave the queue
        } else {
          cancelLocal(w); // gives an unclaimed grant back without waiting
        }
      }
    };
  }

  /**
   * Checks what can be checked here and hands the acquire to its resource's batcher. With
   * {@code mayBlock}, a limit this node has not cached is read here (and refusals are thrown);
   * without, that read happens on another thread and refusals fail the ticket.
   */
  private AcquireOp startAcquire(
      String resource,
      Map<String, Long> load,
      Lane lane,
      long timeoutNanos,
      String requestId,
      boolean mayBlock) {
    Objects.requireNonNull(lane, "lane");
    String rid =
        requestId == null || requestId.isEmpty()
            ? nodeId + "." + Long.toString(ids.incrementAndGet(), 36)
            : Validation.requestId(requestId);
    if (closed) {
      throw shuttingDown();
    }
    if (timeoutNanos < 0) {
      throw EngineException.invalid("timeout " + timeoutNanos + "ns is negative: use 0 or more");
    }
    Validation.resource(resource);
    RWaiter w = new RWaiter(resource, rid, load, lane, timeoutNanos);
    AcquireOp op = new AcquireOp(w, load, lane);
    Cfg c = limits.get(resource);
    if (c == null && !mayBlock) {
      events.execute(
          () -> {
            try {
              admit(op, cfg(resource));
            } catch (RuntimeException e) {
              op.refuse(e instanceof EngineException ee ? ee : unexpected(e));
            }
          });
      return op;
    }
    admit(op, c != null ? c : cfg(resource));
    return op;
  }

  /** Charges the load by the limit {@code c}, registers the waiter and queues the op. */
  private void admit(AcquireOp op, Cfg c) {
    RWaiter w = op.w;
    Map<String, Long> charged;
    try {
      charged = Validation.load(c.spec, op.requested);
    } catch (EngineException ex) {
      countRejected(w.resource, "invalid");
      throw ex;
    }
    w.load = charged;
    op.version = c.version;
    Local local = locals.computeIfAbsent(w.resource, k -> new Local());
    RWaiter earlier = local.waiters.put(w.requestId, w);
    if (earlier != null && earlier != w) {
      // A retry of a request id still parked here: it takes the waiter over in its place
      // (Engine#acquire); whoever waited on the earlier ticket hears so. Its entry in Redis is
      // the retry's now: nothing of the earlier one may take it out of line.
      earlier.takenOver = true;
      endLocal(earlier, takenOver(w.resource, w.requestId));
    }
    batcher(w.resource).submit(op);
  }

  private static RuntimeException rethrow(Throwable t) {
    if (t instanceof RuntimeException r) {
      return r;
    }
    if (t instanceof Error e) {
      throw e;
    }
    return new IllegalStateException(t);
  }

  private EngineException unexpected(Throwable t) {
    log.error("unexpected failure on a Redis call", t);
    return new EngineException(
        EngineException.Reason.UNAVAILABLE, "internal error on this node (" + t + "): retry");
  }

  // ---------------------------------------------------------------------------------------
  // Batches: a node's acquires and releases of one resource share script calls

  /**
   * Most ops in one script call: a script blocks Redis while it runs, so one call stays well
   * under a millisecond.
   */
  private static final int MAX_BATCH = 64;

  /**
   * Script calls per resource a node has on the wire at once. Ops that arrive meanwhile wait
   * and go together in the next call: under load a hot key costs Redis one script run per
   * batch, not one per op (the fixed part of a run, loading the limit and the state and saving
   * it, is most of its cost); when idle, an op goes at once.
   */
  private static final int MAX_CALLS_IN_FLIGHT = 1;

  /** An acquire or a release on its way to Redis in a batch. */
  private abstract static class Op {
    /** Appends its arguments for the script's batch op. */
    abstract void args(List<String> argv);

    /** Takes its reply; runs before the grants of the batch's drain are delivered. */
    abstract void reply(List<Object> r);

    /** Runs after the grants are delivered: completes what its caller waits for. */
    abstract void settle();

    /** The whole batch failed (Redis away, limit deleted). */
    abstract void fail(EngineException e);
  }

  private final class AcquireOp extends Op {
    final RWaiter w;
    final Map<String, Long> requested;
    final Lane lane;
    /** Completes once Redis answered; exceptionally when it refused the acquire. */
    final CompletableFuture<Void> admitted = new CompletableFuture<>();
    String version;
    int attempt;
    private boolean stale;

    AcquireOp(RWaiter w, Map<String, Long> requested, Lane lane) {
      this.w = w;
      this.requested = requested;
      this.lane = lane;
    }

    @Override
    void args(List<String> argv) {
      argv.add("a");
      argv.add(version);
      argv.add(w.requestId);
      argv.add(Integer.toString(lane.ordinal() + 1));
      argv.add(encodeLoad(w.load));
      argv.add(Long.toString(w.timeoutNanos / 1000));
    }

    @Override
    void reply(List<Object> r) {
      switch (word(r)) {
        case "GRANTED" -> {
          forget(w);
          if (r.size() > 5 && "again".equals(r.get(5))) {
            // A retry of an id whose permit is held: the same permit, as it was charged.
            w.load = decodeLoad((String) r.get(6));
            grantAgain(w, (String) r.get(1), num(r.get(2)), num(r.get(4)));
          } else {
            grant(w, (String) r.get(1), num(r.get(2)), num(r.get(4)));
          }
        }
        case "QUEUED" -> {
          if (r.size() > 2 && "taken".equals(r.get(1))) {
            w.load = decodeLoad((String) r.get(2)); // the waiter taken over keeps its load
          }
          int status = w.status.get();
          if (status == RWaiter.WAITING) {
            w.timeout = scheduler.schedule(() -> expire(w), w.timeoutNanos);
          } else if (status == RWaiter.ENDED && !w.takenOver) {
            // Cancelled before Redis saw it: it must not wait there for nobody.
            events.execute(() -> leaveQuietly(w));
          }
        }
        case "TIMEOUT" -> endLocal(w, notGrantedInTime(w.resource, 0));
        case "FULL" -> {
          long hint = Math.max(TimeUnit.SECONDS.toNanos(1), num(r.get(2)) * 1000);
          refuse(
              new EngineException(
                  EngineException.Reason.WAITING_ROOM_FULL,
                  "waiting room of '" + w.resource + "' is full (" + num(r.get(1))
                      + " waiting, max " + limitOf(w.resource) + "): retry after the hinted"
                      + " delay, or raise --max-waiting",
                  hint));
        }
        case "STALE" -> {
          forget(w);
          stale = true;
        }
        case "USED" -> {
          forget(w);
          countRejected(w.resource, "invalid");
          refuse(EngineException.invalid(MemoryEngine.usedUp(w.resource, w.requestId, num(r.get(1)) * 1000)));
        }
        default -> refuse(unexpected(new IllegalStateException("unexpected reply " + r)));
      }
    }

    @Override
    void settle() {
      if (stale) {
        events.execute(this::retryStale); // reads the changed limit: a round trip
        return;
      }
      admitted.complete(null);
    }

    @Override
    void fail(EngineException e) {
      if (e.reason() == EngineException.Reason.NOT_FOUND) {
        limits.remove(w.resource);
      }
      refuse(e);
    }

    void refuse(EngineException e) {
      endLocal(w, e);
      admitted.completeExceptionally(e);
    }

    /** The limit changed since this node cached it: read it and try again, a few times. */
    private void retryStale() {
      try {
        Cfg c = fetch(w.resource);
        if (c == null) {
          throw EngineException.notFound(w.resource);
        }
        if (++attempt > 3) {
          throw new EngineException(
              EngineException.Reason.UNAVAILABLE,
              "limit of '" + w.resource + "' keeps changing: retry");
        }
        stale = false;
        admit(this, c);
      } catch (RuntimeException e) {
        refuse(e instanceof EngineException ee ? ee : unexpected(e));
      }
    }
  }

  private String limitOf(String resource) {
    Cfg c = limits.get(resource);
    return c == null ? "?" : Integer.toString(c.spec.maxWaiting());
  }

  /** Drops a waiter from this node's table (it is not waiting in Redis). */
  private void forget(RWaiter w) {
    Local local = locals.get(w.resource);
    if (local != null) {
      local.waiters.remove(w.requestId, w);
    }
  }

  private final class ReleaseOp extends Op {
    final String permitId;
    final String mode;
    final String usage;
    final CompletableFuture<Boolean> result = new CompletableFuture<>();
    private boolean known;

    ReleaseOp(String permitId, String mode, String usage) {
      this.permitId = permitId;
      this.mode = mode;
      this.usage = usage;
    }

    @Override
    void args(List<String> argv) {
      argv.add("r");
      argv.add(permitId);
      argv.add(mode);
      argv.add(usage);
    }

    @Override
    void reply(List<Object> r) {
      known = !word(r).equals("UNKNOWN");
    }

    @Override
    void settle() {
      result.complete(known);
    }

    @Override
    void fail(EngineException e) {
      result.completeExceptionally(e);
    }
  }

  /**
   * For tests that compare stores step by step: returns once every call this node started on
   * the store (batched acquires, releases, give-backs, waiters leaving) has been answered and
   * handled.
   */
  void awaitQuiet() {
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (true) {
      CompletableFuture.runAsync(() -> {}, events).join();
      if (unanswered.get() == 0) {
        CompletableFuture.runAsync(() -> {}, events).join();
        if (unanswered.get() == 0) {
          return;
        }
      }
      if (System.nanoTime() - until > 0) {
        throw new IllegalStateException(unanswered.get() + " store calls still unanswered after 10 s");
      }
      Thread.onSpinWait();
    }
  }

  private Batcher batcher(String resource) {
    return batchers.computeIfAbsent(resource, Batcher::new);
  }

  /** A node's queue of ops for one resource; see {@link #MAX_CALLS_IN_FLIGHT}. */
  private final class Batcher {
    final String resource;
    final String[] keys;
    private final ArrayDeque<Op> pending = new ArrayDeque<>(); // guarded by this
    private int calls; // guarded by this

    Batcher(String resource) {
      this.resource = resource;
      this.keys = keys(resource);
    }

    void submit(Op op) {
      List<Op> batch;
      unanswered.incrementAndGet();
      synchronized (this) {
        pending.add(op);
        if (calls >= MAX_CALLS_IN_FLIGHT || holdBatches) {
          return;
        }
        calls++;
        batch = next();
      }
      send(batch);
    }

    /** Sends what waits, if no call is on the wire. */
    void kick() {
      List<Op> batch;
      synchronized (this) {
        if (calls >= MAX_CALLS_IN_FLIGHT || pending.isEmpty()) {
          return;
        }
        calls++;
        batch = next();
      }
      send(batch);
    }

    private List<Op> next() { // guarded by this
      int n = Math.min(pending.size(), MAX_BATCH);
      List<Op> batch = new ArrayList<>(n);
      for (int i = 0; i < n; i++) {
        batch.add(pending.poll());
      }
      return batch;
    }

    private void send(List<Op> batch) {
      List<String> argv = new ArrayList<>(6 + 6 * batch.size());
      argv.add("batch");
      argv.add(now());
      argv.add(nodeId);
      argv.add(resource);
      argv.add(Long.toString(agingMicros));
      argv.add(Long.toString(nodeTimeoutMicros));
      for (Op op : batch) {
        op.args(argv);
      }
      evalAsync(keys, argv.toArray(String[]::new))
          .whenComplete(
              (reply, error) -> {
                // The next batch goes first: Redis works on it while this reply is handled.
                List<Op> more;
                synchronized (this) {
                  more = pending.isEmpty() ? null : next();
                  if (more == null) {
                    calls--;
                  }
                }
                if (more != null) {
                  send(more);
                }
                try {
                  done(batch, reply, error);
                } catch (RuntimeException e) {
                  log.error("could not handle a batch reply on {}", resource, e);
                } finally {
                  unanswered.addAndGet(-batch.size());
                }
              });
    }

    private void done(List<Op> batch, List<Object> reply, Throwable error) {
      if (error != null) {
        Throwable t = error instanceof CompletionException && error.getCause() != null ? error.getCause() : error;
        EngineException e = t instanceof RedisException re ? unavailable(re) : unexpected(t);
        for (Op op : batch) {
          op.fail(e);
        }
        return;
      }
      markReachable();
      if (word(reply).equals("NOTFOUND")) {
        EngineException e = EngineException.notFound(resource);
        for (Op op : batch) {
          op.fail(e);
        }
        return;
      }
      for (int i = 0; i < batch.size(); i++) {
        @SuppressWarnings("unchecked")
        List<Object> r = (List<Object>) reply.get(1 + i);
        batch.get(i).reply(r);
      }
      afterDrain(resource, reply, 1 + batch.size());
      for (Op op : batch) {
        op.settle();
      }
    }
  }

  /** EVALSHA without waiting; loads the script again if Redis forgot it. */
  private CompletableFuture<List<Object>> evalAsync(String[] keys, String[] argv) {
    CompletableFuture<List<Object>> first;
    try {
      first = async.<List<Object>>evalsha(sha, ScriptOutputType.MULTI, keys, argv).toCompletableFuture();
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
    return first.exceptionallyCompose(
        error -> {
          Throwable t = error instanceof CompletionException && error.getCause() != null ? error.getCause() : error;
          if (!(t instanceof RedisNoScriptException)) {
            return CompletableFuture.failedFuture(t);
          }
          return async
              .scriptLoad(script)
              .toCompletableFuture()
              .thenCompose(
                  loaded -> {
                    sha = loaded;
                    return async.<List<Object>>evalsha(loaded, ScriptOutputType.MULTI, keys, argv)
                        .toCompletableFuture();
                  });
        });
  }

  /** Takes a waiter that was cancelled before Redis queued it out of the line again. */
  private void leaveQuietly(RWaiter w) {
    try {
      List<Object> reply = call(w.resource, "leave", w.requestId, "cancelled", "1");
      switch (word(reply)) {
        case "LEFT" -> afterDrain(w.resource, reply, 2);
        case "GRANTED" -> {
          if (nodeId.equals(reply.get(5))
              && delivered.asMap().putIfAbsent(w.resource + "\t" + reply.get(1), Boolean.TRUE) == null) {
            giveBack(w.resource, (String) reply.get(1));
          }
        }
        default -> {}
      }
    } catch (EngineException e) {
      // Redis away: the waiter's deadline or our missing heartbeat takes it out.
    }
  }

  private static CancellationException takenOver(String resource, String rid) {
    return new CancellationException(
        "acquire " + rid + " on '" + resource + "' was taken over by a retry with the same request id");
  }

  /** Decodes {@link #encodeLoad}. */
  static Map<String, Long> decodeLoad(String s) {
    Map<String, Long> load = new LinkedHashMap<>();
    if (!s.equals("-")) {
      for (String part : s.split(",")) {
        int eq = part.indexOf('=');
        load.put(part.substring(0, eq), Long.parseLong(part.substring(eq + 1)));
      }
    }
    return load;
  }

  static String encodeLoad(Map<String, Long> load) {
    if (load.isEmpty()) {
      return "-";
    }
    StringBuilder b = new StringBuilder();
    for (Map.Entry<String, Long> e : load.entrySet()) {
      if (b.length() > 0) {
        b.append(',');
      }
      b.append(e.getKey()).append('=').append(e.getValue());
    }
    return b.toString();
  }

  private void countRejected(String resource, String reason) {
    countCounter(resource, "rej:" + reason);
  }

  /**
   * Delivers a grant to a local waiter, or gives it back if the waiter has ended. A permit
   * can reach this node twice (in a reply and on the channel): the second time is ignored.
   */
  /** Hands a retry the permit its request id holds (delivered before, maybe on this node). */
  private void grantAgain(RWaiter w, String permitId, long waitedMicros, long leaseMicros) {
    Grant g = new Grant(permitId, w.resource, w.load, leaseMicros * 1000, Math.max(0, waitedMicros) * 1000);
    boolean mine;
    synchronized (w) {
      mine = w.status.get() == RWaiter.WAITING;
      if (mine) {
        w.grant = g;
        w.status.set(RWaiter.GRANTED);
      }
    }
    if (mine) {
      w.future.complete(g);
    }
  }

  private void grant(RWaiter w, String permitId, long waitedMicros, long leaseMicros) {
    if (delivered.getIfPresent(w.resource + "\t" + permitId) != null) {
      return;
    }
    Grant g = new Grant(permitId, w.resource, w.load, leaseMicros * 1000, Math.max(0, waitedMicros) * 1000);
    boolean mine;
    synchronized (w) {
      mine = w.status.get() == RWaiter.WAITING;
      if (mine) {
        w.grant = g;
        w.status.set(RWaiter.GRANTED);
      }
    }
    if (mine) {
      delivered.put(w.resource + "\t" + permitId, Boolean.TRUE);
      Scheduler.Cancellable t = w.timeout;
      if (t != null) {
        t.cancel();
      }
      w.future.complete(g);
      waits.computeIfAbsent(w.resource, k -> new WaitStats()).record(g.waitedNanos(), nanoNow());
    } else {
      giveBack(w.resource, permitId);
    }
  }

  /** Returns a grant nobody took, in full, without waiting (it may run on Lettuce's thread). */
  private void giveBack(String resource, String permitId) {
    ReleaseOp op = new ReleaseOp(permitId, "giveback", "-");
    op.result.whenComplete(
        (known, e) -> {
          if (e != null) {
            log.debug("give-back of {} on {} failed: {}", permitId, resource, e.getMessage());
          }
        });
    batcher(resource).submit(op);
  }

  /**
   * Handles the common tail of a draining reply; {@code at} is the index of its "now": then
   * come the wake-up delay, the lease, and (request id, permit, waited) per grant for this
   * node. Schedules the wake-up.
   */
  private void afterDrain(String resource, List<Object> reply, int at) {
    long wake = num(reply.get(at + 1));
    long lease = num(reply.get(at + 2));
    int i = at + 3;
    while (i + 2 < reply.size() + 0 && !"--".equals(reply.get(i))) {
      String rid = (String) reply.get(i);
      String permit = (String) reply.get(i + 1);
      long waited = num(reply.get(i + 2));
      deliver(resource, rid, permit, waited, lease);
      i += 3;
    }
    scheduleWake(resource, wake);
  }

  private void deliver(String resource, String rid, String permit, long waitedMicros, long leaseMicros) {
    Local local = locals.get(resource);
    RWaiter w = local == null ? null : local.waiters.remove(rid);
    if (w == null) {
      if (delivered.asMap().putIfAbsent(resource + "\t" + permit, Boolean.TRUE) == null) {
        // Its caller left between the grant and now: the permit goes back in full.
        giveBack(resource, permit);
      }
      return;
    }
    grant(w, permit, waitedMicros, leaseMicros);
  }

  private void scheduleWake(String resource, long wakeMicros) {
    Local local = locals.get(resource);
    if (local == null) {
      return;
    }
    synchronized (local) {
      if (local.waiters.isEmpty()) {
        if (local.wake != null) {
          local.wake.cancel();
          local.wake = null;
        }
        return;
      }
      long delay = HEARTBEAT.toNanos();
      if (wakeMicros >= 0) {
        delay = Math.min(delay, wakeMicros * 1000);
      }
      long at = (ticker == null ? System.nanoTime() : ticker.read()) + delay;
      if (local.wake != null) {
        if (local.wakeAt == at) {
          return;
        }
        local.wake.cancel();
      }
      local.wakeAt = at;
      local.wake = scheduler.schedule(() -> pump(resource), delay);
    }
  }

  /** Runs the drain for a resource this node has waiters on (wake-up and heartbeat). */
  private void pump(String resource) {
    Local local = locals.get(resource);
    if (local == null || closed) {
      return;
    }
    synchronized (local) {
      local.wake = null;
    }
    if (local.waiters.isEmpty()) {
      return;
    }
    try {
      List<Object> reply = call(resource, "pump");
      if (word(reply).equals("NOTFOUND")) {
        failLocal(resource, () -> EngineException.notFound(resource), "deleted");
        return;
      }
      afterDrain(resource, reply, 2);
    } catch (EngineException e) {
      long away = nanoNow() - unreachableSince;
      if (!reachable && away > nodeTimeoutMicros * 1000) {
        // The other nodes have dropped our waiters from the line by now: fail them, so their
        // clients retry elsewhere (same request id: back in line at their old place).
        failLocal(resource, () -> new EngineException(EngineException.Reason.UNAVAILABLE,
            "this node lost contact with Redis for " + Duration.ofNanos(away).toMillis()
                + " ms: retry on another node"), "lost");
        return;
      }
      // Redis away: keep beating, the waiters' deadlines still run.
      scheduleWake(resource, -1);
    }
  }

  private void expire(RWaiter w) {
    if (w.status.get() != RWaiter.WAITING) {
      return;
    }
    List<Object> reply;
    try {
      reply = call(w.resource, "leave", w.requestId, "timedout", "1");
    } catch (EngineException e) {
      endLocal(w, notGrantedInTime(w.resource, w.timeoutNanos));
      return;
    }
    switch (word(reply)) {
      case "GRANTED" -> {
        if (!nodeId.equals(reply.get(5))) {
          // The client retried on another node, which holds the grant now.
          endLocal(w, new EngineException(EngineException.Reason.UNAVAILABLE,
              "acquire " + w.requestId + " was taken over by node " + reply.get(5)));
          return;
        }
        // Granted just before the deadline and the news is still on its way: take it.
        Local local = locals.get(w.resource);
        if (local != null) {
          local.waiters.remove(w.requestId, w);
        }
        grant(w, (String) reply.get(1), num(reply.get(2)), num(reply.get(4)));
      }
      case "LEFT" -> {
        endLocal(w, notGrantedInTime(w.resource, w.timeoutNanos));
        afterDrain(w.resource, reply, 2);
      }
      case "SERVED" -> {
        // Granted at its deadline instant: the grant is in the reply (ours) or on its way.
        afterDrain(w.resource, reply, 2);
        if (!nodeId.equals(reply.get(1))) {
          endLocal(w, new EngineException(EngineException.Reason.UNAVAILABLE,
              "acquire " + w.requestId + " was taken over by node " + reply.get(1)));
        }
      }
      case "MOVED" -> endLocal(
          w, new EngineException(EngineException.Reason.UNAVAILABLE,
              "acquire " + w.requestId + " was taken over by node " + reply.get(1)));
      default -> endLocal(w, notGrantedInTime(w.resource, w.timeoutNanos));
    }
  }

  /** Ends a local waiter that is still waiting; false if it was granted or ended meanwhile. */
  private boolean endLocal(RWaiter w, Throwable why) {
    Local local = locals.get(w.resource);
    if (local != null) {
      local.waiters.remove(w.requestId, w);
    }
    boolean ended;
    synchronized (w) {
      ended = w.status.compareAndSet(RWaiter.WAITING, RWaiter.ENDED);
    }
    if (ended) {
      Scheduler.Cancellable t = w.timeout;
      if (t != null) {
        t.cancel();
      }
      w.future.completeExceptionally(why);
    }
    return ended;
  }

  private void cancelLocal(RWaiter w) {
    if (w.status.get() == RWaiter.WAITING) {
      try {
        List<Object> reply = call(w.resource, "leave", w.requestId, "cancelled", "1");
        switch (word(reply)) {
          case "LEFT" -> {
            endLocal(w, cancelled(w.resource));
            afterDrain(w.resource, reply, 2);
          }
          case "GRANTED" -> {
            // Give it back only if the grant had not reached the caller meanwhile (then the
            // GRANTED -> RETURNED step below gives it back, unless the caller took it).
            if (endLocal(w, cancelled(w.resource)) && nodeId.equals(reply.get(5))) {
              // Granted to us, news not here yet: it goes back.
              delivered.put(w.resource + "\t" + reply.get(1), Boolean.TRUE);
              giveBack(w.resource, (String) reply.get(1));
            }
          }
          default -> endLocal(w, cancelled(w.resource));
        }
      } catch (EngineException e) {
        endLocal(w, cancelled(w.resource));
      }
    }
    if (w.status.compareAndSet(RWaiter.GRANTED, RWaiter.RETURNED)) {
      countCounter(w.resource, "cancelled");
      giveBack(w.resource, w.grant.permitId());
    }
  }

  /** Counts without waiting: a counter is not worth a round trip, nor failing an answer for. */
  private void countCounter(String resource, String field) {
    try {
      async.hincrby(keys(resource)[1], field, 1);
    } catch (RuntimeException e) {
      // Only a counter.
    }
  }

  private static CancellationException cancelled(String resource) {
    return new CancellationException("acquire on '" + resource + "' was cancelled by the caller");
  }

  @Override
  public boolean cancel(String resource, String requestId) {
    Validation.requestId(requestId);
    cfg(resource);
    List<Object> reply = call(resource, "leave", requestId, "cancelled", "0");
    if (!word(reply).equals("LEFT")) {
      return false;
    }
    Local local = locals.get(resource);
    RWaiter w = local == null ? null : local.waiters.get(requestId);
    if (w != null) {
      endLocal(w, cancelled(resource));
    }
    afterDrain(resource, reply, 2);
    return true;
  }

  @Override
  public boolean release(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    try {
      return startRelease(resource, permitId, actual, settle, unused, true).join();
    } catch (CompletionException e) {
      throw rethrow(e.getCause());
    }
  }

  /** Never waits for Redis: the release joins its resource's next batch. */
  @Override
  public CompletableFuture<Boolean> releaseAsync(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    try {
      return startRelease(resource, permitId, actual, settle, unused, false);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  private CompletableFuture<Boolean> startRelease(
      String resource,
      String permitId,
      Map<String, Long> actual,
      boolean settle,
      boolean unused,
      boolean mayBlock) {
    Objects.requireNonNull(permitId, "permitId");
    Validation.resource(resource);
    Cfg cached = limits.get(resource);
    if (cached == null && !mayBlock) {
      return CompletableFuture.supplyAsync(() -> cfg(resource), events)
          .thenCompose(c -> startRelease(c, resource, permitId, actual, settle, unused));
    }
    return startRelease(cached != null ? cached : cfg(resource), resource, permitId, actual, settle, unused);
  }

  private CompletableFuture<Boolean> startRelease(
      Cfg c, String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    if (settle && !unused) {
      Validation.usage(c.spec, actual, "settle", false);
    }
    String mode = unused ? "unused" : settle ? "settle" : "plain";
    ReleaseOp op = new ReleaseOp(permitId, mode, settle && !unused ? encodeLoad(actual) : "-");
    batcher(resource).submit(op);
    return op.result;
  }

  @Override
  public List<String> renew(String resource, List<String> permitIds) {
    cfg(resource);
    List<Object> reply = call(resource, "renew", permitIds.toArray(String[]::new));
    if (word(reply).equals("NOTFOUND")) {
      throw EngineException.notFound(resource);
    }
    afterDrain(resource, reply, 1);
    List<String> expired = new ArrayList<>();
    boolean after = false;
    for (Object o : reply) {
      if (after) {
        expired.add((String) o);
      } else if ("--".equals(o)) {
        after = true;
      }
    }
    return expired;
  }

  @Override
  public long leaseTtlNanos(String resource) {
    return cfg(resource).spec.leaseTtl().toNanos();
  }

  @Override
  public long report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    Cfg c = cfg(resource);
    Validation.usage(c.spec, remaining, "remaining", true);
    if (retryAfterNanos < 0 || retryAfterNanos > MAX_RETRY_AFTER) {
      throw EngineException.invalid(
          "retry-after " + Duration.ofNanos(retryAfterNanos) + " is out of range: use 0 to 1h");
    }
    List<Object> reply =
        call(resource, "report", throttled ? "1" : "0", Long.toString(retryAfterNanos / 1000),
            encodeLoad(remaining));
    if (word(reply).equals("NOTFOUND")) {
      throw EngineException.notFound(resource);
    }
    if (throttled) {
      log.info("upstream throttled {}: pausing grants for {} ms", resource,
          TimeUnit.NANOSECONDS.toMillis(retryAfterNanos));
    }
    long left = num(reply.get(1));
    afterDrain(resource, reply, 2);
    return left < 0 ? -1 : left * 1000;
  }

  @Override
  public long pause(String resource, long nanos) {
    cfg(resource);
    List<Object> reply = call(resource, "pause", Long.toString(nanos < 0 ? -1 : nanos / 1000));
    if (word(reply).equals("NOTFOUND")) {
      throw EngineException.notFound(resource);
    }
    long left = num(reply.get(1));
    afterDrain(resource, reply, 2);
    long out = left < 0 ? -1 : left * 1000;
    log.info("paused {} {}", resource, out < 0 ? "until resumed" : "for " + Duration.ofNanos(out));
    return out;
  }

  @Override
  public void resume(String resource) {
    cfg(resource);
    List<Object> reply = call(resource, "resume");
    if (word(reply).equals("NOTFOUND")) {
      throw EngineException.notFound(resource);
    }
    afterDrain(resource, reply, 1);
    log.info("resumed {}", resource);
  }

  @Override
  public ResourceSnapshot stats(String resource) {
    Cfg c = cfg(resource);
    List<Object> r = call(resource, "stats");
    if (word(r).equals("NOTFOUND")) {
      limits.remove(resource);
      throw EngineException.notFound(resource);
    }
    if (!c.version.equals(r.get(1))) {
      c = fetch(resource);
      if (c == null) {
        throw EngineException.notFound(resource);
      }
    }
    Map<Lane, Integer> waiting = new EnumMap<>(Lane.class);
    waiting.put(Lane.INTERACTIVE, (int) num(r.get(3)));
    waiting.put(Lane.DEFAULT, (int) num(r.get(4)));
    waiting.put(Lane.BATCH, (int) num(r.get(5)));
    long paused = num(r.get(6));
    long granted = num(r.get(7));
    long timedOut = num(r.get(8));
    long cancelledCount = num(r.get(9));
    long throttled = num(r.get(10));
    Map<String, Double> available = new LinkedHashMap<>();
    int i = 11;
    for (; i < r.size() && !"--".equals(r.get(i)); i += 2) {
      available.put((String) r.get(i), Double.parseDouble((String) r.get(i + 1)));
    }
    Map<String, Long> rejected = new TreeMap<>();
    Map<String, Double> used = new LinkedHashMap<>();
    for (String d : available.keySet()) {
      used.put(d, 0.0);
    }
    for (i = i + 1; i + 1 < r.size(); i += 2) {
      String key = (String) r.get(i);
      if (key.startsWith("u:")) {
        String dim = key.substring(2);
        if (used.containsKey(dim)) { // a dimension the limit no longer has keeps its old count
          used.put(dim, Double.parseDouble((String) r.get(i + 1)));
        }
      } else {
        rejected.put(key, num(r.get(i + 1)));
      }
    }
    double[] p =
        waits.computeIfAbsent(resource, k -> new WaitStats())
            .percentiles(ticker == null ? System.nanoTime() : ticker.read());
    return new ResourceSnapshot(
        c.spec,
        available,
        num(r.get(2)),
        waiting,
        paused != 0,
        paused < 0 ? -1 : paused * 1000,
        granted,
        timedOut,
        cancelledCount,
        rejected,
        p[0],
        p[1],
        throttled,
        used);
  }

  @Override
  public List<ResourceSnapshot> stats() {
    List<ResourceSnapshot> out = new ArrayList<>();
    for (LimitSpec spec : listLimits("")) {
      try {
        out.add(stats(spec.resource()));
      } catch (EngineException ex) {
        if (ex.reason() != EngineException.Reason.NOT_FOUND) {
          throw ex;
        }
      }
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // Messages from other nodes

  private static String nodeChannel(String node) {
    return "sluice:node:" + node;
  }

  private void onMessage(String channel, String message) {
    String[] f = message.split("\t");
    if (channel.equals(CONFIG_CHANNEL)) {
      if (f.length > 2 && f[2].equals(nodeId)) {
        // Our own change, applied when it was made. Acting on it again, late, could end the
        // waiters of a limit created again since.
        return;
      }
      // Another node changed a limit: forget our copy; a deletion ends our waiters.
      limits.remove(f[1]);
      if (f[0].equals("D")) {
        lastKnown.remove(f[1]);
        failLocal(f[1], () -> EngineException.notFound(f[1]), "deleted");
      }
      return;
    }
    switch (f[0]) {
      case "G" -> deliver(f[1], f[2], f[3], Long.parseLong(f[4]), Long.parseLong(f[5]));
      case "E" -> {
        RWaiter w = localWaiter(f[1], f[2]);
        if (w != null) {
          endLocal(w, f[3].equals("timedout") ? notGrantedInTime(f[1], w.timeoutNanos) : cancelled(f[1]));
        }
      }
      case "X" -> {
        RWaiter w = localWaiter(f[1], f[2]);
        if (w != null) {
          endLocal(w, EngineException.invalid("limit of '" + f[1] + "' changed: " + f[3]));
        }
      }
      case "D" -> failLocal(f[1], () -> EngineException.notFound(f[1]), "deleted");
      default -> log.debug("ignoring message {}", message);
    }
  }

  private RWaiter localWaiter(String resource, String rid) {
    Local local = locals.get(resource);
    return local == null ? null : local.waiters.get(rid);
  }

  private void failLocal(String resource, java.util.function.Supplier<EngineException> why, String reason) {
    Local local = locals.get(resource);
    if (local == null) {
      return;
    }
    // In line order, highest lane first, as the memory store ends them.
    List<RWaiter> all = new ArrayList<>(local.waiters.values());
    all.sort(Comparator.comparingInt((RWaiter w) -> w.lane.ordinal()).thenComparingLong(w -> w.arrival));
    for (RWaiter w : all) {
      endLocal(w, why.get());
    }
    scheduleWake(resource, -1);
  }

  // ---------------------------------------------------------------------------------------
  // Housekeeping: data loss, limits view

  private void housekeepAndReschedule() {
    if (closed) {
      return;
    }
    try {
      housekeep();
    } catch (RuntimeException e) {
      log.debug("housekeeping failed: {}", e.toString());
    } finally {
      if (!closed) {
        housekeeping = scheduler.schedule(this::housekeepAndReschedule, housekeepingNanos);
      }
    }
  }

  /**
   * Checks that Redis still holds the store and refreshes this node's view of the limits.
   * When Redis lost its data (restart without persistence, failover to an empty replica,
   * FLUSHALL), this node restores every limit it last knew; buckets start empty, exactly as
   * after a restart of a single node. Logged loudly: the operator should check the limits.
   */
  public void housekeep() {
    String meta;
    try {
      meta = redis.get(META_KEY);
      markReachable();
    } catch (RedisException e) {
      throw unavailable(e);
    }
    if (meta == null && metaSeen) {
      Map<String, LimitSpec> known = new HashMap<>(lastKnown);
      log.error(
          "REDIS LOST ITS DATA (marker {} is gone): restoring the {} limits this node last knew;"
              + " buckets start empty, waiters parked elsewhere are lost. Check them with"
              + " `sluice limit list`",
          META_KEY, known.size());
      int restored = 0;
      for (LimitSpec spec : known.values()) {
        if (writeLimit(spec, true)) {
          restored++;
        }
      }
      redis.setnx(META_KEY, "sluice store, restored by node " + nodeId + " at " + System.currentTimeMillis());
      log.error("restored {} limits into the empty Redis (others were restored by other nodes)", restored);
      for (String resource : List.copyOf(locals.keySet())) {
        failLocal(resource, () -> new EngineException(EngineException.Reason.UNAVAILABLE,
            "the store lost its data while this acquire waited: retry"), "lost");
      }
    }
    long nowNanos = ticker == null ? System.nanoTime() : ticker.read();
    if (nowNanos - lastFullReload > TimeUnit.SECONDS.toNanos(30)) {
      lastFullReload = nowNanos;
      reloadLimits();
    }
  }

  // ---------------------------------------------------------------------------------------

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    Scheduler.Cancellable h = housekeeping;
    if (h != null) {
      h.cancel();
    }
    for (Map.Entry<String, Local> e : locals.entrySet()) {
      for (RWaiter w : List.copyOf(e.getValue().waiters.values())) {
        try {
          call(w.resource, "leave", w.requestId, "cancelled", "1");
        } catch (EngineException ex) {
          // Redis away: the others drop our waiters once our heartbeat stops.
        }
        endLocal(w, shuttingDown());
      }
      synchronized (e.getValue()) {
        if (e.getValue().wake != null) {
          e.getValue().wake.cancel();
        }
      }
    }
  }

  /** Test hook: while held, acquires and releases wait; let go, they leave in batches. */
  void holdBatches(boolean hold) {
    holdBatches = hold;
    if (!hold) {
      for (Batcher b : batchers.values()) {
        b.kick();
      }
    }
  }

  /** Test hook: dies like a killed process would: no goodbyes, timers and connections cut. */
  void crash() {
    closed = true;
    Scheduler.Cancellable h = housekeeping;
    if (h != null) {
      h.cancel();
    }
    for (Local local : locals.values()) {
      synchronized (local) {
        if (local.wake != null) {
          local.wake.cancel();
        }
      }
      for (RWaiter w : local.waiters.values()) {
        Scheduler.Cancellable t = w.timeout;
        if (t != null) {
          t.cancel();
        }
      }
    }
    pubsub.close();
    connection.close();
    client.shutdown(Duration.ZERO, Duration.ofSeconds(2));
    resources.shutdown();
    events.shutdown();
  }

  @Override
  public void closeStore() {
    close();
    try {
      pubsub.close();
      connection.close();
    } finally {
      client.shutdown(Duration.ZERO, Duration.ofSeconds(2));
      resources.shutdown();
      events.shutdown();
    }
  }

  private static EngineException shuttingDown() {
    return new EngineException(
        EngineException.Reason.UNAVAILABLE,
        "coordinator is shutting down: retry on another node or after it restarts");
  }

  private static EngineException notGrantedInTime(String resource, long timeoutNanos) {
    return new EngineException(
        EngineException.Reason.DEADLINE,
        "not granted on '" + resource + "' within " + Duration.ofNanos(timeoutNanos)
            + ": the resource is saturated; wait longer, lower the load or raise the limit");
  }
}
