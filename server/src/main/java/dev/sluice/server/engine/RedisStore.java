package dev.sluice.server.engine;

import io.lettuce.core.AbstractRedisClient;
import io.lettuce.core.ClientOptions;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisCommandTimeoutException;
import io.lettuce.core.RedisException;
import io.lettuce.core.RedisNoScriptException;
import io.lettuce.core.RedisURI;
import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.SocketOptions;
import io.lettuce.core.TimeoutOptions;
import io.lettuce.core.api.StatefulConnection;
import io.lettuce.core.cluster.ClusterClientOptions;
import io.lettuce.core.cluster.ClusterTopologyRefreshOptions;
import io.lettuce.core.cluster.RedisClusterClient;
import io.lettuce.core.cluster.api.async.RedisClusterAsyncCommands;
import io.lettuce.core.cluster.api.sync.RedisClusterCommands;
import io.lettuce.core.cluster.models.partitions.RedisClusterNode;
import io.lettuce.core.event.connection.ConnectionActivatedEvent;
import io.lettuce.core.pubsub.RedisPubSubAdapter;
import io.lettuce.core.pubsub.StatefulRedisPubSubConnection;
import io.lettuce.core.resource.ClientResources;
import io.lettuce.core.resource.DefaultClientResources;
import io.lettuce.core.resource.Delay;
import java.io.IOException;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A node's connection to the shared Redis, standalone, Sentinel or Cluster: one client, one
 * pipelined connection for commands, one for pub/sub. The engine, the API keys ({@link
 * #sharedHash}) and the buffers share it. It also keeps the node's view of whether Redis is
 * reachable: every caller that hears from Redis or fails to tells it, and health follows it.
 */
public final class RedisStore implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(RedisStore.class);

  private final String uri;
  private final String nodeId;
  private final Ticker ticker; // null: System.nanoTime
  private final ClientResources resources;
  private final AbstractRedisClient client;
  private final StatefulConnection<String, String> connection;
  private final RedisClusterCommands<String, String> sync;
  private final RedisClusterAsyncCommands<String, String> async;
  private final StatefulRedisPubSubConnection<String, String> pubsub;
  private volatile boolean reachable = true;
  private volatile long unreachableSince;
  private final long commandTimeoutNanos;
  /** Lease grace after an outage ({@link #leaseGraceMicros}): how much, and until when. */
  private volatile long graceMicros;
  private volatile long graceUntil;
  /** How long after an outage the leases it cost keep their grace: time for holders to renew. */
  static final Duration LEASE_GRACE_WINDOW = Duration.ofSeconds(10);
  private final AtomicLong outages = new AtomicLong();
  private final AtomicLong indeterminate = new AtomicLong();
  private final List<Runnable> reachabilityWatchers = new CopyOnWriteArrayList<>();
  private final List<Consumer<String>> restartWatchers = new CopyOnWriteArrayList<>();
  private final reactor.core.Disposable events;
  private final AtomicBoolean closed = new AtomicBoolean();

  private RedisStore(Builder b) {
    this.uri = b.uri;
    this.nodeId = b.nodeId != null ? b.nodeId : newNodeId();
    this.ticker = b.ticker;
    this.topologyRefreshed.set(System.nanoTime() - CLUSTER_REFRESH.getAdaptiveRefreshTimeout().toNanos());
    Duration timeout = b.commandTimeout;
    this.commandTimeoutNanos = timeout.toNanos();
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
                .topologyRefreshOptions(CLUSTER_REFRESH)
                .nodeFilter(RedisStore::servesSlots)
                .build());
        madeClient = c;
        var conn = c.connect(BulkStringCodec.UTF8);
        this.client = c;
        this.connection = conn;
        this.sync = conn.sync();
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
        var conn = c.connect(BulkStringCodec.UTF8);
        this.client = c;
        this.connection = conn;
        this.sync = conn.sync();
        this.async = conn.async();
        this.pubsub = c.connectPubSub();
      }
      // Subscribed once connected, so only a connection opened again (or a new one) is news.
      this.events = resources.eventBus().get()
          .filter(ConnectionActivatedEvent.class::isInstance)
          .subscribe(e -> suspectRestart("a connection to Redis was opened (again)"));
    } catch (RuntimeException e) {
      if (madeClient != null) {
        madeClient.shutdown(Duration.ZERO, Duration.ofSeconds(1));
      }
      resources.shutdown();
      throw e;
    }
  }

  /**
   * How a node follows a Redis Cluster's topology (issue 24: a failover was noticed only at
   * Lettuce's next periodic refresh, 7 s after the cluster was ok again). Every adaptive
   * trigger refreshes it: a MOVED or ASK reply, a slot no known node serves, an unknown node,
   * and the first failed reconnect to a node (a killed primary). Triggers are rate-limited to
   * one refresh per 200 ms, so a failover costs a few CLUSTER NODES per node, not a storm; a
   * refresh every 10 s catches what no trigger reports (a replica added). A command that fails
   * meanwhile never ran ({@link ClientOptions.DisconnectedBehavior#REJECT_COMMANDS}); script calls retry it
   * ({@link RedisCalls}).
   */
  static final ClusterTopologyRefreshOptions CLUSTER_REFRESH =
      ClusterTopologyRefreshOptions.builder()
          .enableAllAdaptiveRefreshTriggers()
          .refreshTriggersReconnectAttempts(1)
          .adaptiveRefreshTriggersTimeout(Duration.ofMillis(200))
          .enablePeriodicRefresh(Duration.ofSeconds(10))
          .dynamicRefreshSources(true)
          .closeStaleConnections(true)
          .build();

  /** Nanos (System.nanoTime) when {@link #refreshTopology} last started a refresh. */
  private final AtomicLong topologyRefreshed = new AtomicLong();
  /** A refresh {@link #refreshTopology} started is under way. */
  private final AtomicBoolean topologyRefreshing = new AtomicBoolean();

  /**
   * Reads a Redis Cluster's topology again, because a command was refused for a stale view
   * ({@link ClusterRetry#staleRoute}); does nothing elsewhere. Lettuce has no adaptive trigger for
   * that refusal, and its refresh takes the view of a node picked at random among those that know
   * every node: right after a kill -9, one that has not yet marked the dead primary failing still
   * gives it the slot. Seen in one run in three to six of issue 24's failover row: the view came
   * back with the dead primary, no trigger fired again (a connection that never opens is not
   * reconnected), and the slot's scripts were refused until the periodic refresh, 4 s after the
   * cluster was ok. So each such refusal asks again, at most once per {@link #CLUSTER_REFRESH}'s
   * adaptive timeout and one refresh at a time, on Lettuce's worker pool (never the caller's
   * thread: it may be the event loop), until the slot's scripts run again.
   */
  void refreshTopology() {
    if (!(client instanceof RedisClusterClient c)) {
      return;
    }
    long now = System.nanoTime();
    long last = topologyRefreshed.get();
    if (now - last < CLUSTER_REFRESH.getAdaptiveRefreshTimeout().toNanos() || c.isTopologyRefreshInProgress()
        || !topologyRefreshed.compareAndSet(last, now) || !topologyRefreshing.compareAndSet(false, true)) {
      return;
    }
    try {
      resources.eventExecutorGroup().execute(() -> {
        try {
          c.refreshPartitionsAsync().whenComplete((done, e) -> {
            topologyRefreshing.set(false);
            if (e != null) {
              log.debug("cannot refresh the Redis Cluster topology: {}", e.toString());
            }
          });
        } catch (RuntimeException e) {
          topologyRefreshing.set(false);
          log.debug("cannot refresh the Redis Cluster topology: {}", e.toString());
        }
      });
    } catch (RuntimeException e) { // the pool is shutting down: this store is closing
      topologyRefreshing.set(false);
    }
  }

  /**
   * Cluster nodes this node routes to: not one the cluster marked failing (or suspects), so a
   * killed primary's slots count as unserved, and the next command refreshes the topology
   * instead of waiting on a connection that cannot come back.
   */
  static boolean servesSlots(RedisClusterNode n) {
    return !(n.is(RedisClusterNode.NodeFlag.FAIL) || n.is(RedisClusterNode.NodeFlag.EVENTUAL_FAIL)
        || n.is(RedisClusterNode.NodeFlag.NOADDR));
  }

  /** A builder with the defaults documented on each setter. */
  public static Builder builder() {
    return new Builder();
  }

  /** Configures a {@link RedisStore}. */
  public static final class Builder {
    private String uri;
    private String nodeId;
    private Ticker ticker;
    private Duration commandTimeout = Duration.ofSeconds(1);

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

    /** The clock of {@link #unreachableForNanos()}; default {@link System#nanoTime()}. */
    public Builder ticker(Ticker ticker) {
      this.ticker = Objects.requireNonNull(ticker, "ticker");
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
     * Connects.
     *
     * @throws IOException if Redis cannot be reached; the message names the URI and the fix
     */
    public RedisStore build() throws IOException {
      if (uri == null) {
        throw new IllegalStateException("uri is required: call uri(\"redis://host:port\")");
      }
      try {
        return new RedisStore(this);
      } catch (RedisException e) {
        throw cannotReach(uri, e);
      }
    }
  }

  static IOException cannotReach(String uri, RedisException e) {
    return new IOException(
        "cannot reach Redis at " + redact(uri) + " (" + rootMessage(e) + "): start Redis there"
            + " or fix --store",
        e);
  }

  private static String newNodeId() {
    return "n" + Long.toString(new SecureRandom().nextLong() & 0xffffffffffL, 36);
  }

  /** This node's id on the shared store. */
  public String nodeId() {
    return nodeId;
  }

  /** The store, without credentials, for logs. */
  public String describe() {
    return redact(uri);
  }

  /** Commands, pipelined on the shared connection, replies handled on Lettuce's event loop. */
  public RedisClusterAsyncCommands<String, String> async() {
    return async;
  }

  /** The same connection, waiting for each reply (never call from a transport thread). */
  public RedisClusterCommands<String, String> sync() {
    return sync;
  }

  /**
   * A new connection of its own, for blocking reads (XREAD BLOCK) that must not hold up the
   * shared one; the caller closes it.
   */
  public StatefulConnection<String, String> openConnection() {
    return client instanceof RedisClusterClient c ? c.connect() : ((RedisClient) client).connect();
  }

  /** True on a Redis Cluster, where one command's keys must share a hash slot. */
  public boolean isCluster() {
    return client instanceof RedisClusterClient;
  }

  /**
   * The hash {@code sluice:<name>} on this store, shared by every node (the API keys live in
   * {@code sluice:keys}).
   */
  public SharedHash sharedHash(String name) {
    String key = "sluice:" + name;
    return new SharedHash() {
      @Override
      public Map<String, String> all() {
        return sync.hgetall(key);
      }

      @Override
      public void put(String field, String value) {
        sync.hset(key, field, value);
      }

      @Override
      public boolean delete(String field) {
        return sync.hdel(key, field) > 0;
      }
    };
  }

  /** Hands every message on {@code channels} to {@code listener}, on Lettuce's event loop. */
  void subscribe(BiConsumer<String, String> listener, String... channels) {
    pubsub.addListener(
        new RedisPubSubAdapter<>() {
          @Override
          public void message(String channel, String message) {
            listener.accept(channel, message);
          }
        });
    pubsub.sync().subscribe(channels);
  }

  // ---------------------------------------------------------------------------------------
  // Reachability

  /** False from a failed call until the next answered one. */
  public boolean reachable() {
    return reachable;
  }

  /** How long Redis has been unreachable, on this store's ticker; 0 while reachable. */
  long unreachableForNanos() {
    return reachable ? 0 : now() - unreachableSince;
  }

  /**
   * Notes that scripts could not run for {@code awayNanos} (an outage, or a Cluster slot failing
   * over or moving): holders could not renew meanwhile, so for {@link #LEASE_GRACE_WINDOW} the
   * leases that ran out in it do not expire yet ({@link #leaseGraceMicros}). The outage may have
   * begun up to a command timeout before the first call failed, so that much is added.
   */
  void graceAfter(long awayNanos) {
    long grace = (awayNanos + commandTimeoutNanos) / 1000;
    long until = now() + LEASE_GRACE_WINDOW.toNanos();
    synchronized (this) {
      if (now() - graceUntil >= 0 || grace > graceMicros) {
        graceMicros = grace;
      }
      graceUntil = until;
    }
  }

  /**
   * How far behind now the scripts expire leases, in microseconds: during an outage, its length
   * so far; then its whole length for {@link #LEASE_GRACE_WINDOW} after it ended; else 0. A live holder's renewals could not
   * get through the outage; its lease must not run out before they can again. A dead holder's
   * slot is held that much longer.
   */
  long leaseGraceMicros() {
    if (!reachable) {
      // Still away: the call being made may be the first to get through, so it must already
      // spare the leases that ran out meanwhile.
      return (now() - unreachableSince + commandTimeoutNanos) / 1000;
    }
    return now() - graceUntil < 0 ? graceMicros : 0;
  }

  /** How many times Redis became unreachable since this store connected. */
  public long outages() {
    return outages.get();
  }

  /**
   * How many calls failed with an unknown effect: they timed out, or lost their connection
   * after being sent, so Redis may have run them.
   */
  public long indeterminateCommands() {
    return indeterminate.get();
  }

  /** Runs {@code watcher} (on the thread that noticed) whenever {@link #reachable()} changes. */
  public void onReachabilityChange(Runnable watcher) {
    reachabilityWatchers.add(Objects.requireNonNull(watcher, "watcher"));
  }

  /**
   * Tells {@code watcher} (on Lettuce's event loop: it must not wait for Redis) that Redis may
   * have come back as another process, perhaps without its data: a connection was opened again,
   * or Redis forgot a loaded script (NOSCRIPT). The argument says which.
   */
  void onSuspectedRestart(Consumer<String> watcher) {
    restartWatchers.add(Objects.requireNonNull(watcher, "watcher"));
  }

  private void suspectRestart(String why) {
    for (Consumer<String> w : restartWatchers) {
      try {
        w.accept(why);
      } catch (RuntimeException e) {
        log.warn("a restart watcher failed: {}", e.toString());
      }
    }
  }

  /**
   * Redis's {@code run_id} (INFO server), which changes whenever the Redis process does: a
   * restart, or a failover to another server. Null on a Cluster, whose nodes each have their own.
   */
  String runId() {
    if (isCluster()) {
      return null;
    }
    String info;
    try {
      info = sync.info("server");
      markReachable();
    } catch (RedisException e) {
      throw unavailable(e);
    }
    for (String line : info.split("\r?\n")) {
      if (line.startsWith("run_id:")) {
        return line.substring("run_id:".length()).trim();
      }
    }
    return null;
  }

  private long now() {
    return ticker == null ? System.nanoTime() : ticker.read();
  }

  /** Notes an answer from Redis; the first after an outage logs how long it lasted. */
  void markReachable() {
    if (reachable) {
      return;
    }
    long away;
    synchronized (this) {
      if (reachable) {
        return;
      }
      away = now() - unreachableSince;
      reachable = true;
    }
    log.info("Redis at {} is reachable again after {} ms away", redact(uri), TimeUnit.NANOSECONDS.toMillis(away));
    graceAfter(away);
    reachabilityWatchers.forEach(RedisStore::runQuietly);
  }

  /** Notes a failed call; returns the error to answer with (UNAVAILABLE, naming the fix). */
  EngineException unavailable(RedisException e) {
    if (isIndeterminate(e)) {
      indeterminate.incrementAndGet();
    }
    boolean lost = false;
    if (reachable) {
      synchronized (this) {
        if (reachable) {
          unreachableSince = now();
          reachable = false;
          lost = true;
        }
      }
    }
    if (lost) {
      outages.incrementAndGet();
      log.error("Redis at {} is unreachable: {}; answering UNAVAILABLE until it is back",
          redact(uri), rootMessage(e));
      reachabilityWatchers.forEach(RedisStore::runQuietly);
    }
    // The cause says whether the call may have run (isIndeterminate).
    return new EngineException(
        EngineException.Reason.UNAVAILABLE,
        "this node's Redis (" + redact(uri) + ") is unreachable (" + rootMessage(e) + "): retry on"
            + " another node or after Redis is back",
        e);
  }

  /**
   * The answer for any failure of a call: a Redis error, or the connection's own (a reset while
   * the call was in flight reaches the caller as a bare {@link IOException}), is the store's
   * UNAVAILABLE; anything else is a bug of this node, logged.
   */
  EngineException failed(Throwable t) {
    if (t instanceof RedisException re) {
      return unavailable(re);
    }
    if (t instanceof IOException io) {
      return unavailable(new RedisException(io.getMessage() == null ? io.toString() : io.getMessage(), io));
    }
    return t instanceof EngineException ee ? ee : RedisCalls.unexpected(t);
  }

  /**
   * Whether a failed call may still have run in Redis: it timed out, or its connection broke
   * after it was sent. A call refused while disconnected ("Currently not connected") never left.
   */
  static boolean isIndeterminate(RedisException e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof RedisCommandTimeoutException || t instanceof IOException) {
        return true;
      }
      String m = t.getMessage();
      if (m != null && (m.contains("Connection closed") || m.contains("Connection reset"))) {
        return true;
      }
    }
    return false;
  }

  private static void runQuietly(Runnable r) {
    try {
      r.run();
    } catch (RuntimeException e) {
      log.warn("a reachability watcher failed: {}", e.toString());
    }
  }

  static String rootMessage(Throwable e) {
    Throwable t = e;
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
    }
    return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
  }

  private static String redact(String uri) {
    return uri.replaceAll("//[^@/]*@", "//***@");
  }

  // ---------------------------------------------------------------------------------------
  // Scripts

  /** Loads a Lua script; its calls load it again, once, if Redis forgot it (restart, failover). */
  Script script(String text) {
    return new Script(text, sync.scriptLoad(text));
  }

  /** A script loaded on this store, called by its SHA. */
  final class Script {
    private final String text;
    private volatile String sha;

    private Script(String text, String sha) {
      this.text = text;
      this.sha = sha;
    }

    /** EVALSHA, waiting for the reply; throws Lettuce's exceptions. */
    List<Object> eval(String[] keys, String[] argv) {
      try {
        return sync.evalsha(sha, ScriptOutputType.MULTI, keys, argv);
      } catch (RedisNoScriptException e) {
        suspectRestart("Redis forgot a loaded script (NOSCRIPT)");
        sha = sync.scriptLoad(text);
        return sync.evalsha(sha, ScriptOutputType.MULTI, keys, argv);
      }
    }

    /** EVALSHA without waiting. */
    CompletableFuture<List<Object>> evalAsync(String[] keys, String[] argv) {
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
            suspectRestart("Redis forgot a loaded script (NOSCRIPT)");
            return async
                .scriptLoad(text)
                .toCompletableFuture()
                .thenCompose(
                    loaded -> {
                      sha = loaded;
                      return async.<List<Object>>evalsha(loaded, ScriptOutputType.MULTI, keys, argv)
                          .toCompletableFuture();
                    });
          });
    }
  }

  // ---------------------------------------------------------------------------------------

  /**
   * Closes the connections and the client; for a crash too (no goodbyes are said here). Once:
   * the engine's {@code closeStore()} and a failed start's unwinding may both call it.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    try {
      events.dispose();
      pubsub.close();
      connection.close();
    } finally {
      client.shutdown(Duration.ZERO, Duration.ofSeconds(2));
      resources.shutdown();
    }
  }
}
