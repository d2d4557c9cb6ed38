package dev.sluice.server;

import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.server.auth.AuthInterceptor;
import dev.sluice.server.auth.KeyAdmin;
import dev.sluice.server.auth.KeyStore;
import dev.sluice.server.config.ServerConfigKeys;
import dev.sluice.server.config.ServerConfigKeys.Grpc;
import dev.sluice.server.config.ServerConfigKeys.Http;
import dev.sluice.server.config.ServerConfigKeys.Limits;
import dev.sluice.server.config.ServerConfigKeys.Store;
import dev.sluice.server.engine.DataFiles;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.RedisStore;
import dev.sluice.server.engine.Scheduler;
import dev.sluice.server.engine.Ticker;
import dev.sluice.server.http.HttpApi;
import dev.sluice.server.http.ResourceMeters;
import dev.sluice.server.http.ResourceSampler;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.binder.grpc.MetricCollectingServerInterceptor;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.grpc.Server;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionService;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Sluice coordinator: the worker and admin gRPC services on Netty, over the embedded
 * memory engine with limits stored in the data directory, or over the Redis engine shared by
 * several nodes ({@link Builder#store}).
 *
 * <pre>{@code
 * try (SluiceServer server = SluiceServer.builder().port(7420).build().start()) {
 *   server.awaitTermination();
 * }
 * }</pre>
 *
 * <p>Lifecycle follows grpc-java's examples: on {@link #close()} health goes NOT_SERVING, the
 * server stops taking calls, every parked acquire fails with UNAVAILABLE (clients retry on
 * another node), in-flight calls drain within the grace period, then the rest is cut.
 * Everything {@link #start()} opens is pushed on a {@link CloseStack} as it opens, so a start
 * that fails at any step, and a stop, close it in reverse; the store's resources come from
 * {@link StoreFactory}, every default and range from {@link ServerConfigKeys}.
 *
 * <p>It runs past 700 lines for its {@link Builder}: the public API of a server built in code,
 * every setter documenting its default and checking its value at once.
 */
public final class SluiceServer implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(SluiceServer.class);

  private final Builder config;
  private final CountDownLatch terminated = new CountDownLatch(1);
  private final Object lifecycle = new Object();
  private Server server;
  private Engine engine;
  /** The shared Redis (engine, API keys, buffers) when the store is not memory. */
  private RedisStore redisStore;
  private HealthStatusManager health;
  private ScheduledThreadPoolExecutor timers;
  private ExecutorService adminExecutor;
  private KeyStore keys;
  private dev.sluice.server.price.Prices prices;
  private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  /** Pool grants per member, counted by both ports where they hand a grant over. */
  private dev.sluice.server.http.PoolMeters poolMeters;
  /** Everything opened so far, closed in reverse by a failed start or by {@link #close()}. */
  private final CloseStack resources = new CloseStack();
  private CloseStack.Entry closeBuffers;
  private GrpcLimits grpcLimits;
  private Path dataDir;
  private static final Duration LIMITS_FILE_POLL = Duration.ofSeconds(2);
  private volatile dev.sluice.server.limits.LimitsFileWatcher limitsFile;
  /** Where every limit change by a caller or a file goes: ownership, audit line, history. */
  private dev.sluice.server.limits.LimitChanges limitChanges;
  private HttpApi http;
  private dev.sluice.buffers.Buffers buffers;
  private volatile String boundHost;
  private boolean started;
  private volatile boolean closed;
  private volatile boolean drainedInGrace;
  private Refusals refusals;
  private ConnectionCap connectionCap;
  private volatile long drainNanos;
  /** Tenants' recent shares: one set of windows for the Admin API and the dashboard alike. */
  private final dev.sluice.server.engine.TenantShares tenantShares;

  private SluiceServer(Builder config) {
    this.config = config;
    this.tenantShares = new dev.sluice.server.engine.TenantShares(
        config.ticker == null ? System::nanoTime : config.ticker::read);
  }

  /** A builder with the defaults documented on each setter. */
  public static Builder builder() {
    return new Builder();
  }

  /** Server settings; each setter checks its value at once and may be called only once. */
  public static final class Builder {
    private String host;
    private Integer port;
    private Path dataDir;
    private Path limitsFile;
    private Duration limitsFilePoll;
    private Integer maxWaiting;
    private Duration leaseTtl;
    private Duration maxWait;
    private Duration aging;
    private Integer metricsMaxResources;
    private List<Duration> metricsWaitBuckets;
    private Duration shutdownGrace;
    private Ticker ticker;
    private Scheduler scheduler;
    private String store;
    private String nodeId;
    private Tls tls;
    private Integer maxWaitingPerConnection;
    private Integer httpPort;
    private String httpHost;
    private HttpApi.Limits httpLimits;
    private Boolean bufferFsync;
    private Duration bufferLease;
    private List<dev.sluice.server.engine.SliceEngine.Rule> slices;
    private List<String> bufferAllow;
    private List<String> bufferDeny;
    private GrpcLimits grpcLimits;

    private Builder() {}

    private static void once(Object current, String what) {
      if (current != null) {
        throw new IllegalStateException(what + " was already set");
      }
    }

    /**
     * Address to bind. Default: {@code 0.0.0.0} (all interfaces) once any API key exists, else
     * {@code 127.0.0.1}: a coordinator without keys is open to anyone who reaches it.
     */
    public Builder host(String host) {
      once(this.host, "host");
      if (host == null || host.isBlank()) {
        throw new IllegalArgumentException("host is empty: give an address such as 127.0.0.1");
      }
      this.host = host;
      return this;
    }

    /** gRPC port; default 7420; 0 picks a free port (see {@link SluiceServer#port()}). */
    public Builder port(int port) {
      once(this.port, "port");
      this.port = Grpc.PORT.check(port);
      return this;
    }

    /**
     * Serve the HTTP port here: Prometheus {@code /metrics}, {@code /healthz}, {@code /readyz},
     * the dashboard at {@code /} and the HTTP/JSON API. 0 picks a free port. Default: no HTTP
     * port (the {@code sluice serve} command defaults to 7421).
     */
    public Builder httpPort(int port) {
      once(this.httpPort, "http port");
      this.httpPort = Http.PORT.check(port);
      return this;
    }

    /**
     * Buffers' fsync policy: true (default) fsyncs every group commit, so a pushed item survives
     * power loss; false (SQLite {@code synchronous=NORMAL} in WAL mode) survives a process crash
     * (kill -9) but may lose the last commits on power loss, for more pushes per second.
     */
    public Builder bufferFsync(boolean everyCommit) {
      once(this.bufferFsync, "buffer fsync");
      this.bufferFsync = everyCommit;
      return this;
    }

    /**
     * Slice mode for the resources each rule matches (see {@link
     * dev.sluice.server.engine.SliceEngine}): this node takes their capacity from the store in
     * slices of {@code hold} worth of their rate and grants from them locally, in FIFO order
     * within the node; the grants may pass the limit by {@code rate x hold}. Default: none.
     */
    public Builder slices(List<dev.sluice.server.engine.SliceEngine.Rule> rules) {
      once(this.slices, "slices");
      this.slices = List.copyOf(rules);
      return this;
    }

    /**
     * On a shared store, how long a node's right to deliver a buffer lasts unless renewed (every
     * second): after a node dies its buffers move within this time. Default 10 s.
     */
    public Builder bufferLease(Duration lease) {
      once(this.bufferLease, "buffer lease");
      this.bufferLease = ServerConfigKeys.Buffer.LEASE.check(lease);
      return this;
    }

    /**
     * The only networks buffers may deliver to (CIDRs such as {@code 10.0.0.0/8}, or single
     * addresses), checked when a buffer is created and before every attempt. Default: any
     * address but link-local ones and this coordinator's own ports (SECURITY.md, "Buffers").
     */
    public Builder bufferAllow(List<String> networks) {
      once(this.bufferAllow, "buffer allow");
      this.bufferAllow = List.copyOf(networks);
      dev.sluice.buffers.TargetPolicy.of(bufferAllow, List.of()); // checks, names the flag
      return this;
    }

    /** Networks buffers may not deliver to, on top of the defaults; default none. */
    public Builder bufferDeny(List<String> networks) {
      once(this.bufferDeny, "buffer deny");
      this.bufferDeny = List.copyOf(networks);
      dev.sluice.buffers.TargetPolicy.of(List.of(), bufferDeny); // checks, names the flag
      return this;
    }

    /** Test hook: how buffers resolve host names (DNS rebinding tests). */
    Builder bufferResolver(dev.sluice.buffers.TargetPolicy.Resolver resolver) {
      this.resolver = Objects.requireNonNull(resolver);
      return this;
    }

    private dev.sluice.buffers.TargetPolicy.Resolver resolver;

    /** What clients may hold on the HTTP port; default {@link HttpApi.Limits#defaults()}. */
    public Builder httpLimits(HttpApi.Limits limits) {
      once(this.httpLimits, "http limits");
      this.httpLimits = Objects.requireNonNull(limits, "limits");
      return this;
    }

    /** Address the HTTP port binds; default the gRPC port's (see {@link #host}). */
    public Builder httpHost(String host) {
      once(this.httpHost, "http host");
      if (host == null || host.isBlank()) {
        throw new IllegalArgumentException("http host is empty: give an address such as 127.0.0.1");
      }
      this.httpHost = host;
      return this;
    }

    /**
     * A limits file (docs/limits-file.md) applied at start and again when its content changes or
     * {@link SluiceServer#reloadLimitsFile} is called; a bad file leaves the running limits.
     */
    public Builder limitsFile(Path file) {
      once(this.limitsFile, "limits file");
      this.limitsFile = Objects.requireNonNull(file, "limitsFile");
      return this;
    }

    /** How often the limits file is checked for changes; default 2 s. */
    public Builder limitsFilePoll(Duration every) {
      once(this.limitsFilePoll, "limits file poll");
      if (every.isNegative() || every.isZero() || every.compareTo(Duration.ofHours(1)) > 0) {
        throw new IllegalArgumentException("limits file poll " + every + " is out of range: use 1ms to 1h");
      }
      this.limitsFilePoll = every;
      return this;
    }

    /** Where limits are stored; default {@code ./sluice-data}. Created if missing. */
    public Builder dataDir(Path dir) {
      once(this.dataDir, "data dir");
      this.dataDir = Objects.requireNonNull(dir, "dataDir");
      return this;
    }

    /**
     * Where state lives: {@code memory} (default: this node alone, limits in the data dir) or a
     * Redis URI shared by every node ({@code redis://host:port}, {@code rediss://...}, {@code
     * redis-sentinel://host:26379#master}, {@code redis-cluster://host:7000,host:7001}).
     */
    public Builder store(String store) {
      once(this.store, "store");
      if (store == null || store.isBlank()) {
        throw new IllegalArgumentException("store is empty: use memory or redis://host:port");
      }
      if (!store.equals("memory")) {
        RedisStore.builder().uri(store); // checks the form, names the fix
      }
      this.store = store;
      return this;
    }

    /** This node's id on a shared store (logs, waiter ownership); default a random one. */
    public Builder nodeId(String id) {
      once(this.nodeId, "node id");
      RedisStore.builder().nodeId(id); // checks the form, names the fix
      this.nodeId = id;
      return this;
    }

    /** Waiting-room size for limits that do not set one; default 10 000. */
    public Builder maxWaiting(int n) {
      once(this.maxWaiting, "max waiting");
      this.maxWaiting = Limits.MAX_WAITING.check(n);
      return this;
    }

    /**
     * Most acquires one client connection may have parked at once, over every resource; default
     * 100 000. Beyond it an acquire that would wait fails with RESOURCE_EXHAUSTED.
     */
    public Builder maxWaitingPerConnection(int n) {
      once(this.maxWaitingPerConnection, "max waiting per connection");
      this.maxWaitingPerConnection = Grpc.MAX_WAITING_PER_CONNECTION.check(n);
      return this;
    }

    /** Lease length for limits that do not set one; default 30 s. */
    public Builder leaseTtl(Duration d) {
      once(this.leaseTtl, "lease TTL");
      this.leaseTtl = Limits.LEASE_TTL.check(d);
      return this;
    }

    /** Longest an acquire may wait, whatever the caller asks; default 5 minutes. */
    public Builder maxWait(Duration d) {
      once(this.maxWait, "max wait");
      this.maxWait = Limits.MAX_WAIT.check(d);
      return this;
    }

    /** Lane aging step (docs/guarantees.md, "Lanes"); default 10 s. */
    public Builder aging(Duration d) {
      once(this.aging, "aging");
      this.aging = Limits.AGING.check(d);
      return this;
    }

    /**
     * How many resources get Micrometer meters tagged with their own name; default 1 000. The
     * resources used beyond share meters tagged {@code resource="_other"}; {@code stats} stays
     * exact for each. Memory store only: the Redis store keeps no per-resource meters.
     */
    public Builder metricsMaxResources(int n) {
      once(this.metricsMaxResources, "metrics max resources");
      this.metricsMaxResources = Limits.METRICS_MAX_RESOURCES.check(n);
      return this;
    }

    /**
     * The upper bounds of the {@code sluice_acquire_wait_seconds} histogram's buckets, increasing,
     * 1 to 20 of them; default 10 ms, 100 ms, 1 s, 10 s, 1 min. Each resource with meters of its
     * own exports one series per bound plus four ({@code +Inf}, {@code _sum}, {@code _count},
     * {@code _max}).
     */
    public Builder metricsWaitBuckets(List<Duration> bounds) {
      once(this.metricsWaitBuckets, "metrics wait buckets");
      this.metricsWaitBuckets = Limits.checkWaitBuckets(bounds);
      return this;
    }

    /** How long calls may drain on shutdown before they are cut; default 10 s. */
    public Builder shutdownGrace(Duration d) {
      once(this.shutdownGrace, "shutdown grace");
      this.shutdownGrace = Grpc.SHUTDOWN_GRACE.check(d);
      return this;
    }

    /**
     * Serve TLS with this PEM certificate chain and PEM (PKCS#8, unencrypted) private key;
     * default plaintext. The files are read at {@link SluiceServer#start()}.
     */
    public Builder tls(Path certChain, Path privateKey) {
      once(this.tls, "tls");
      this.tls = new Tls(Objects.requireNonNull(certChain, "certChain"), Objects.requireNonNull(privateKey,
          "privateKey"), null);
      return this;
    }

    /**
     * Require every client to present a certificate signed by one of the CAs in this PEM file
     * (mTLS). Needs {@link #tls}.
     *
     * @throws IllegalStateException if TLS is not set
     */
    public Builder tlsClientCa(Path caCertificates) {
      if (tls == null) {
        throw new IllegalStateException("a client CA needs TLS: set tls(cert, key) (--tls-cert, --tls-key) too");
      }
      if (tls.clientCa() != null) {
        throw new IllegalStateException("tls client CA was already set");
      }
      tls = new Tls(tls.certChain(), tls.privateKey(), Objects.requireNonNull(caCertificates, "caCertificates"));
      return this;
    }

    /**
     * Limits on what clients may hold on the gRPC port (connections, calls per connection,
     * handshake, idle and age timeouts, resets, health watches); default {@link
     * GrpcLimits#defaults()}.
     */
    public Builder grpcLimits(GrpcLimits limits) {
      once(this.grpcLimits, "gRPC limits");
      this.grpcLimits = Objects.requireNonNull(limits, "limits");
      return this;
    }

    /** Test hook: a fake clock and the scheduler that goes with it. */
    Builder clock(Ticker ticker, Scheduler scheduler) {
      once(this.ticker, "clock");
      this.ticker = Objects.requireNonNull(ticker);
      this.scheduler = Objects.requireNonNull(scheduler);
      return this;
    }

    /** A server with these settings; nothing is bound until {@link SluiceServer#start()}. */
    public SluiceServer build() {
      return new SluiceServer(this);
    }
  }

  /**
   * Loads the limits, binds the port and starts serving. Logs one ready line. If a step fails,
   * what the earlier steps opened is closed again (last first) before the error is thrown: no
   * thread, connection or port is left behind.
   *
   * @throws IOException if a port cannot be bound, a data or TLS file cannot be read, or the
   *     store cannot be reached; the message is one line naming the problem and the fix
   */
  public SluiceServer start() throws IOException {
    synchronized (lifecycle) {
      if (started) {
        throw new IllegalStateException("server already started");
      }
      started = true;
    }
    try {
      open();
    } catch (IOException | RuntimeException | Error e) {
      resources.closeAfter(e);
      synchronized (lifecycle) {
        closed = true;
      }
      terminated.countDown();
      throw e;
    }
    if (redisStore != null) {
      // Health follows the store: load balancers and probes stop sending to a node whose
      // Redis is away (it would answer UNAVAILABLE anyway) and come back when it returns.
      timers.scheduleWithFixedDelay(this::updateHealth, 1, 1, TimeUnit.SECONDS);
      // ... and at once when the store's reachability changes (off Lettuce's event loop).
      redisStore.onReachabilityChange(() -> {
        try {
          timers.execute(this::updateHealth);
        } catch (java.util.concurrent.RejectedExecutionException closing) {
          // shutting down: health is NOT_SERVING already
        }
      });
    }
    boolean open = keys.isEmpty();
    if (open) {
      log.warn("NO API KEYS: this coordinator is OPEN. Anyone who reaches {}:{} can acquire, change limits and"
          + " create keys. {} Create an admin key with `sluice key create --role admin`; once a key exists every"
          + " call needs one.", boundHost, server.getPort(), config.host == null
              ? "It listens on loopback only; after creating keys, restart it (it then binds all interfaces) or"
                  + " give --bind."
              : "It listens on " + boundHost + " because --bind/--host says so.");
    }
    log.info(
        "Sluice coordinator ready on port {} (bind {}, {}, {}, {}), {}, data dir {}, store {}, {} limits loaded",
        server.getPort(),
        boundHost,
        grpcLimits.describe(connectionCap.cap()),
        (config.tls == null ? Tls.NONE : config.tls).describe(),
        open ? "open: no API keys" : keys.all().size() + " API keys in " + keys.describe(),
        http == null ? "no HTTP port" : "HTTP (metrics, dashboard, JSON API) on http://"
            + (config.httpHost != null ? config.httpHost : boundHost) + ":" + http.port() + "/ ("
            + http.describeLimits() + ")",
        dataDir,
        redisStore != null
            ? redisStore.describe() + " as node " + redisStore.nodeId()
            : "memory",
        engine.listLimits("").join().size()); // at start-up, on the caller's thread
    return this;
  }

  /**
   * The steps of {@link #start()}, in order; each pushes what it opens on {@link #resources}
   * at once, so that whichever step fails, the ones before it are undone.
   */
  private void open() throws IOException {
    int port = Grpc.PORT.orDefault(config.port);
    dataDir = (config.dataDir == null ? Path.of(Store.DATA_DIR_DEFAULT) : config.dataDir).toAbsolutePath().normalize();
    Duration maxWait = Limits.MAX_WAIT.orDefault(config.maxWait);
    try {
      DataFiles.createDir(dataDir);
    } catch (IOException e) {
      throw new IOException(
          "cannot create data dir " + dataDir + " (" + e + "): choose a writable --data-dir", e);
    }
    PrometheusConventions.install(registry,
        config.metricsWaitBuckets != null ? config.metricsWaitBuckets : Limits.defaultWaitBuckets());
    openExecutors();
    poolMeters = new dev.sluice.server.http.PoolMeters(registry,
        Limits.METRICS_MAX_RESOURCES.orDefault(config.metricsMaxResources));
    io.grpc.ServerCredentials credentials = (config.tls == null ? Tls.NONE : config.tls).credentials();
    openStore(port);
    String host = config.host != null ? config.host : keys.isEmpty() ? "127.0.0.1" : "0.0.0.0";
    boundHost = host;
    AuthInterceptor auth = new AuthInterceptor(keys);
    openGrpcPort(host, port, credentials, maxWait, auth);
    if (config.httpPort != null) {
      startHttp(host, maxWait, auth, redisStore != null);
      buffers.targets().ownPort(http.port());
    }
    log.info("buffer targets: {}", buffers.targets().describe());
  }

  private void openExecutors() {
    timers = new ScheduledThreadPoolExecutor(1, daemon("sluice-timer"));
    timers.setRemoveOnCancelPolicy(true);
    resources.push("the timers", timers::shutdownNow);
    adminExecutor = Executors.newSingleThreadExecutor(daemon("sluice-admin"));
    resources.push("the admin executor", () -> {
      adminExecutor.shutdown();
      adminExecutor.awaitTermination(5, TimeUnit.SECONDS);
    });
  }

  /** The engine, the key store and the buffers, on the configured store. */
  private void openStore(int port) throws IOException {
    StoreFactory.Opened store = StoreFactory.open(new StoreFactory.Settings(
        config.store == null ? Store.STORE_DEFAULT : config.store,
        dataDir,
        config.nodeId,
        config.ticker,
        config.scheduler,
        Limits.MAX_WAITING.orDefault(config.maxWaiting),
        Limits.LEASE_TTL.orDefault(config.leaseTtl),
        Limits.AGING.orDefault(config.aging),
        Limits.METRICS_MAX_RESOURCES.orDefault(config.metricsMaxResources),
        config.bufferFsync == null ? ServerConfigKeys.Buffer.FSYNC_DEFAULT : config.bufferFsync,
        ServerConfigKeys.Buffer.LEASE.orDefault(config.bufferLease),
        config.slices == null ? List.of() : config.slices), timers, registry, resources);
    engine = store.engine();
    keys = store.keys();
    prices = store.prices();
    limitChanges = new dev.sluice.server.limits.LimitChanges(engine, store.history(), System::currentTimeMillis);
    redisStore = store.redis();
    dev.sluice.buffers.TargetPolicy targets = dev.sluice.buffers.TargetPolicy.of(
        config.bufferAllow == null ? List.of() : config.bufferAllow,
        config.bufferDeny == null ? List.of() : config.bufferDeny);
    if (config.resolver != null) {
      targets = targets.withResolver(config.resolver);
    }
    targets.ownPort(port);
    if (config.httpPort != null) {
      targets.ownPort(config.httpPort);
    }
    buffers = store.buffers().open(registry, targets, limitChanges);
    closeBuffers = resources.push("the buffers", buffers::close);
    if (config.limitsFile != null) {
      // Applied before the port opens, so the file's resources are there for the first call.
      limitsFile = new dev.sluice.server.limits.LimitsFileWatcher(config.limitsFile, limitChanges,
          redisStore != null ? "node " + redisStore.nodeId() : "this node");
      resources.push("the limits file watcher", limitsFile::close);
      limitsFile.start(config.limitsFilePoll != null ? config.limitsFilePoll : LIMITS_FILE_POLL);
    }
  }

  /** Binds the gRPC port and reports SERVING on it. */
  private void openGrpcPort(String host, int port, io.grpc.ServerCredentials credentials, Duration maxWait,
      AuthInterceptor auth) throws IOException {
    ConnectionWaiters connectionWaiters =
        new ConnectionWaiters(Grpc.MAX_WAITING_PER_CONNECTION.orDefault(config.maxWaitingPerConnection));
    health = new HealthStatusManager();
    NettyServerBuilder grpc = NettyServerBuilder.forAddress(new InetSocketAddress(host, port), credentials);
    grpcLimits = config.grpcLimits == null ? GrpcLimits.defaults() : config.grpcLimits;
    refusals = new Refusals(registry, System::nanoTime);
    try {
      connectionCap = new ConnectionCap(grpcLimits.connectionCap(maxFileDescriptors()), refusals);
    } catch (IllegalArgumentException e) {
      throw new IOException(e.getMessage(), e);
    }
    resources.push("the gRPC event loops", connectionCap::shutdown);
    grpcLimits.applyTo(grpc, connectionCap).addTransportFilter(connectionWaiters);
    HealthWatches healthWatches = new HealthWatches(grpcLimits.maxHealthWatches, refusals);
    grpc.addTransportFilter(healthWatches).intercept(healthWatches);
    refusals.listen();
    resources.push("the refusal log", refusals::stopListening);
    io.micrometer.core.instrument.Gauge.builder("sluice.grpc.connections", connectionCap::open)
        .description("connections open on the gRPC port, before or after HTTP/2 set-up").register(registry);
    if (config.httpPort != null) {
      // Per-method call counts and latencies for /metrics (grpc.server.processing.duration ...).
      grpc.intercept(new MetricCollectingServerInterceptor(registry));
    }
    try {
      server =
          // Calls run on the transport threads (a thread hop costs more than the work): no engine
          // call blocks (see Engine); buffer and key writes go to the admin executor.
          grpc.directExecutor()
              .maxInboundMessageSize(1 << 20)
              // Let clients' keepalive pings through (the SDK pings every 10 s, grpc-java's floor;
              // its health probes of every node each second are ordinary calls).
              .permitKeepAliveTime(500, TimeUnit.MILLISECONDS)
              .permitKeepAliveWithoutCalls(true)
              .addService(new CoordinatorService(engine, maxWait.toNanos(), connectionWaiters,
                  new dev.sluice.server.price.Costs(engine, prices), poolMeters, limitChanges))
              .addService(new AdminService(engine, adminExecutor, new KeyAdmin(keys, System::currentTimeMillis), buffers,
                  prices, tenantShares, limitChanges))
              .intercept(connectionWaiters)
              .intercept(auth)
              .addService(health.getHealthService())
              .addService(ProtoReflectionServiceV1.newInstance())
              // Older grpcurl and tools speak only the v1alpha reflection protocol.
              .addService(ProtoReflectionService.newInstance())
              .build()
              .start();
    } catch (IOException e) {
      throw new IOException(
          "cannot listen on " + host + ":" + port + " (" + e.getMessage() + "): is another"
              + " server using it? choose another --port",
          e);
    }
    resources.push("the gRPC server", () -> {
      server.shutdownNow();
      server.awaitTermination(5, TimeUnit.SECONDS);
    });
    buffers.targets().ownPort(server.getPort());
    health.setStatus("", ServingStatus.SERVING);
    health.setStatus(CoordinatorGrpc.SERVICE_NAME, ServingStatus.SERVING);
    health.setStatus(AdminGrpc.SERVICE_NAME, ServingStatus.SERVING);
  }

  private void startHttp(String grpcHost, Duration maxWait, AuthInterceptor auth, boolean shared) throws IOException {
    new ClassLoaderMetrics().bindTo(registry);
    new JvmMemoryMetrics().bindTo(registry);
    JvmGcMetrics gcMetrics = new JvmGcMetrics();
    gcMetrics.bindTo(registry);
    resources.push("the GC metrics", gcMetrics::close);
    new JvmThreadMetrics().bindTo(registry);
    new ProcessorMetrics().bindTo(registry);
    PrometheusConventions.bindProcessCpuSeconds(registry);
    new UptimeMetrics().bindTo(registry);
    new FileDescriptorMetrics().bindTo(registry);
    io.micrometer.core.instrument.Gauge.builder("sluice.ready", () -> !closed && engine.storeReachable() ? 1 : 0)
        .description("1 while /readyz answers 200: serving, store reachable").register(registry);
    StoreMeters.register(registry, engine, redisStore);
    int cap = Limits.METRICS_MAX_RESOURCES.orDefault(config.metricsMaxResources);
    ResourceSampler sampler = new ResourceSampler(engine, cap,
        config.ticker == null ? System::nanoTime : config.ticker::read, System::currentTimeMillis, tenantShares);
    sampler.onSample(new ResourceMeters(registry, shared)::update);
    String node = shared ? redisStore.nodeId() : "standalone";
    http = new HttpApi(new HttpApi.Options(
        config.httpHost != null ? config.httpHost : grpcHost,
        config.httpPort,
        engine,
        keys,
        auth,
        registry,
        sampler,
        () -> !closed && engine.storeReachable(),
        maxWait.toNanos(),
        node,
        buffers,
        config.httpLimits == null ? HttpApi.Limits.defaults() : config.httpLimits,
        prices,
        poolMeters,
        limitChanges)).start();
    resources.push("the HTTP port", http::close);
    sampler.sample();
    timers.scheduleWithFixedDelay(sampler::sample, 1, 1, TimeUnit.SECONDS);
  }

  private void updateHealth() {
    synchronized (lifecycle) {
      if (closed) {
        return;
      }
      ServingStatus status = engine.storeReachable() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
      health.setStatus("", status);
      health.setStatus(CoordinatorGrpc.SERVICE_NAME, status);
      health.setStatus(AdminGrpc.SERVICE_NAME, status);
    }
  }

  /** The address bound: as configured, else loopback while open (no API key), else all interfaces. */
  public String boundHost() {
    if (server == null) {
      throw new IllegalStateException("server not started: call start() first");
    }
    return boundHost;
  }

  /** The bound HTTP port. */
  public int httpPort() {
    if (http == null) {
      throw new IllegalStateException(server == null ? "server not started: call start() first"
          : "no HTTP port: set one with httpPort(n) (--http-port)");
    }
    return http.port();
  }

  /** The registry {@code /metrics} serves: the engine's meters, JVM and gRPC server metrics. */
  public MeterRegistry meterRegistry() {
    return registry;
  }

  /** The bound port. */
  public int port() {
    if (server == null) {
      throw new IllegalStateException("server not started: call start() first");
    }
    return server.getPort();
  }

  /** Blocks until the server has stopped. */
  public void awaitTermination() throws InterruptedException {
    terminated.await();
  }

  /** Graceful stop; idempotent. See the class comment for the order. */
  @Override
  public void close() {
    synchronized (lifecycle) {
      if (closed || server == null) {
        closed = true;
        terminated.countDown();
        return;
      }
      closed = true;
    }
    Duration grace = Grpc.SHUTDOWN_GRACE.orDefault(config.shutdownGrace);
    log.info("Sluice coordinator stopping: draining calls for up to {} s", grace.toSeconds());
    health.enterTerminalState();
    server.shutdown();
    closeBuffers.close(); // deliveries in flight are abandoned: sent again, flagged, after a restart
    engine.close(); // parked acquires fail with UNAVAILABLE
    long stopping = System.nanoTime();
    try {
      drainedInGrace = server.awaitTermination(grace.toMillis(), TimeUnit.MILLISECONDS);
      if (!drainedInGrace) {
        server.shutdownNow();
        server.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      server.shutdownNow();
      Thread.currentThread().interrupt();
    }
    drainNanos = System.nanoTime() - stopping;
    // The rest, last opened first: HTTP port, gRPC event loops, the store's connections, executors.
    resources.close();
    log.info("Sluice coordinator stopped: gRPC port drained in {} ms{}", TimeUnit.NANOSECONDS.toMillis(drainNanos),
        drainedInGrace ? "" : ", calls still open after the grace period were cut");
    terminated.countDown();
  }

  /** The descriptors this process may open, or -1 where the JVM cannot tell. */
  private static long maxFileDescriptors() {
    return java.lang.management.ManagementFactory.getOperatingSystemMXBean()
        instanceof com.sun.management.UnixOperatingSystemMXBean unix ? unix.getMaxFileDescriptorCount() : -1;
  }

  /**
   * Reads the limits file again and applies it (SIGHUP does this); null without {@code
   * --limits-file}.
   */
  public dev.sluice.server.limits.LimitsFileWatcher.Outcome reloadLimitsFile() {
    return limitsFile == null ? null : limitsFile.reload("reload");
  }

  /** Connections open on the gRPC port now; for tests. */
  int grpcConnections() {
    return connectionCap.open();
  }

  /** The gRPC server, for in-JVM tests that count its transports. */
  Server grpcServer() {
    return server;
  }

  /** Whether the last stop drained every gRPC transport within the grace period; for tests. */
  boolean drainedInGrace() {
    return drainedInGrace;
  }

  /** For tests: the shared store, or null on memory. */
  RedisStore redisStore() {
    return redisStore;
  }

  /** The engine, for in-JVM tests that look at state directly. */
  Engine engine() {
    return engine;
  }

  /** The buffers, for in-JVM tests that store what an earlier version would have. */
  dev.sluice.buffers.Buffers buffers() {
    return buffers;
  }

  private static ThreadFactory daemon(String name) {
    AtomicInteger n = new AtomicInteger();
    return r -> {
      Thread t = new Thread(r, name + "-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    };
  }
}
