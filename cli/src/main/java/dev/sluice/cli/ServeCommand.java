package dev.sluice.cli;

import dev.sluice.server.GrpcLimits;
import dev.sluice.server.SluiceServer;
import dev.sluice.server.config.ServerConfigKeys.Buffer;
import dev.sluice.server.config.ServerConfigKeys.Grpc;
import dev.sluice.server.config.ServerConfigKeys.Http;
import dev.sluice.server.config.ServerConfigKeys.Limits;
import dev.sluice.server.config.ServerConfigKeys.Store;
import dev.sluice.server.http.HttpApi;
import java.io.IOException;
import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code sluice serve}: one coordinator node in the foreground, until SIGTERM or Ctrl-C. */
@Command(name = "serve", mixinStandardHelpOptions = true,
    description = {
        "Runs a coordinator node in the foreground.",
        "SIGTERM or Ctrl-C stops it gracefully: it stops accepting, fails waiters with"
            + " UNAVAILABLE so clients fail over, drains and exits 0. A second signal stops it"
            + " at once. Every option can also come from its environment variable."})
final class ServeCommand implements Callable<Integer> {
  private static final Logger log = LoggerFactory.getLogger(ServeCommand.class);

  @Spec
  private CommandSpec spec;

  @Option(names = {"--bind", "--host"}, paramLabel = "ADDR", defaultValue = "${env:SLUICE_HOST}",
      description = "Address to bind (env SLUICE_HOST). Default: 0.0.0.0 (all interfaces) once any API key"
          + " exists, else 127.0.0.1: a coordinator without keys is open, so it stays on loopback unless"
          + " you say otherwise.")
  private String host;

  @Option(names = "--port", paramLabel = "PORT", defaultValue = "${env:SLUICE_PORT:-" + Grpc.PORT_DEFAULT + "}",
      description = "gRPC port, 0 for any free one (env SLUICE_PORT, default ${DEFAULT-VALUE}).")
  private int port;

  @Option(names = "--http-port", paramLabel = "PORT", defaultValue = "${env:SLUICE_HTTP_PORT:-" + Http.PORT_DEFAULT + "}",
      description = "HTTP port: Prometheus /metrics, /healthz, /readyz, the dashboard at / and the HTTP/JSON"
          + " API; 0 for any free one, -1 for none (env SLUICE_HTTP_PORT, default ${DEFAULT-VALUE}).")
  private int httpPort;

  @Option(names = "--http-bind", paramLabel = "ADDR", defaultValue = "${env:SLUICE_HTTP_HOST}",
      description = "Address the HTTP port binds (env SLUICE_HTTP_HOST). Default: the same as --bind.")
  private String httpHost;

  @Option(names = "--http-max-connections", paramLabel = "N", defaultValue = "${env:SLUICE_HTTP_MAX_CONNECTIONS}",
      description = "Open HTTP connections at most; at the cap the one waiting longest without a request is closed"
          + " to make room (env SLUICE_HTTP_MAX_CONNECTIONS, default 1024 or half the open-file limit if lower).")
  private Integer httpMaxConnections;

  @Option(names = "--http-idle-timeout", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_HTTP_IDLE_TIMEOUT:-" + Http.IDLE_TIMEOUT_DEFAULT + "}", description = "Closes an HTTP connection with no"
          + " request, long poll or event stream open after this long (env SLUICE_HTTP_IDLE_TIMEOUT, default"
          + " ${DEFAULT-VALUE}).")
  private Duration httpIdleTimeout;

  @Option(names = "--http-read-timeout", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_HTTP_READ_TIMEOUT:-" + Http.READ_TIMEOUT_DEFAULT + "}", description = "An HTTP request must arrive whole within"
          + " this long of its first byte, else 408 (env SLUICE_HTTP_READ_TIMEOUT, default ${DEFAULT-VALUE}).")
  private Duration httpReadTimeout;

  @Option(names = "--http-max-pipelined", paramLabel = "N", defaultValue = "${env:SLUICE_HTTP_MAX_PIPELINED:-" + Http.MAX_PIPELINED_DEFAULT + "}",
      description = "Requests one HTTP connection may queue behind the one being answered; then it is not read"
          + " until they are (env SLUICE_HTTP_MAX_PIPELINED, default ${DEFAULT-VALUE}).")
  private int httpMaxPipelined;

  enum Fsync { always, crash }

  @Option(names = "--buffer-fsync", paramLabel = "POLICY", defaultValue = "${env:SLUICE_BUFFER_FSYNC:-always}",
      description = "Buffers' durability: always (default: every group commit is fsynced, items survive power"
          + " loss) or crash (items survive a process crash; the last commits may be lost on power loss; faster)"
          + " (env SLUICE_BUFFER_FSYNC).")
  private Fsync bufferFsync;

  @Option(names = "--data-dir", paramLabel = "DIR",
      defaultValue = "${env:SLUICE_DATA_DIR:-" + Store.DATA_DIR_DEFAULT + "}",
      description = "Where limits are stored (env SLUICE_DATA_DIR, default ${DEFAULT-VALUE}).")
  private Path dataDir;

  @Option(names = "--limits-file", paramLabel = "FILE", defaultValue = "${env:SLUICE_LIMITS_FILE}",
      description = "A limits file (docs/limits-file.md) applied at start and again when it changes or on"
          + " SIGHUP; a file that does not parse or apply leaves the running limits, and the error is logged"
          + " with its line (env SLUICE_LIMITS_FILE, default none).")
  private Path limitsFile;

  @Option(names = "--store", paramLabel = "URI", defaultValue = "${env:SLUICE_STORE:-" + Store.STORE_DEFAULT + "}",
      description = "Where state lives: memory (this node alone) or a Redis shared by several"
          + " nodes: redis://host:port, rediss://host:port, redis-sentinel://host:26379#master,"
          + " redis-cluster://host:7000,host:7001 (env SLUICE_STORE, default ${DEFAULT-VALUE}).")
  String store;

  @Option(names = "--node-id", paramLabel = "ID", defaultValue = "${env:SLUICE_NODE_ID}",
      description = "This node's id on a shared store, for logs (env SLUICE_NODE_ID, default"
          + " random).")
  String nodeId;

  @Option(names = "--max-waiting", paramLabel = "N",
      defaultValue = "${env:SLUICE_MAX_WAITING:-" + Limits.MAX_WAITING_DEFAULT + "}",
      description = "Default waiting-room size per resource"
          + " (env SLUICE_MAX_WAITING, default ${DEFAULT-VALUE}).")
  private int maxWaiting;

  @Option(names = "--max-waiting-per-connection", paramLabel = "N",
      defaultValue = "${env:SLUICE_MAX_WAITING_PER_CONNECTION:-" + Grpc.MAX_WAITING_PER_CONNECTION_DEFAULT + "}",
      description = "Most acquires one client connection may have parked at once, over every resource"
          + " (env SLUICE_MAX_WAITING_PER_CONNECTION, default ${DEFAULT-VALUE}).")
  private int maxWaitingPerConnection;

  @Option(names = "--lease-ttl", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_LEASE_TTL:-" + Limits.LEASE_TTL_DEFAULT + "}",
      description = "Default lease of a concurrency slot"
          + " (env SLUICE_LEASE_TTL, default ${DEFAULT-VALUE}).")
  private Duration leaseTtl;

  @Option(names = "--max-wait", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_MAX_WAIT:-" + Limits.MAX_WAIT_DEFAULT + "}",
      description = "Longest an acquire may wait (env SLUICE_MAX_WAIT, default ${DEFAULT-VALUE}).")
  private Duration maxWait;

  @Option(names = "--aging", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_AGING:-" + Limits.AGING_DEFAULT + "}",
      description = "Wait after which a lower-lane waiter gets every other grant"
          + " (env SLUICE_AGING, default ${DEFAULT-VALUE}).")
  private Duration aging;

  @Option(names = "--metrics-max-resources", paramLabel = "N",
      defaultValue = "${env:SLUICE_METRICS_MAX_RESOURCES:-" + Limits.METRICS_MAX_RESOURCES_DEFAULT + "}",
      description = "Resources metered under their own resource tag (the rest share"
          + " resource=_other, `sluice stats` stays exact for each), and how many the dashboard and the"
          + " per-resource gauges show, first by name (env SLUICE_METRICS_MAX_RESOURCES, default"
          + " ${DEFAULT-VALUE}).")
  private int metricsMaxResources;

  @Option(names = "--metrics-wait-buckets", paramLabel = "DURATION,...", hideParamSyntax = true, split = ",",
      converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_METRICS_WAIT_BUCKETS:-" + Limits.METRICS_WAIT_BUCKETS_DEFAULT + "}",
      description = "Upper bounds of the buckets of the wait histogram (sluice_acquire_wait_seconds), increasing,"
          + " 1 to 20: each is one series per metered resource (env SLUICE_METRICS_WAIT_BUCKETS, default"
          + " ${DEFAULT-VALUE}).")
  private List<Duration> metricsWaitBuckets;

  @Option(names = "--shutdown-grace", paramLabel = "DURATION",
      converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_SHUTDOWN_GRACE:-" + Grpc.SHUTDOWN_GRACE_DEFAULT + "}",
      description = "How long a stop may drain in-flight calls"
          + " (env SLUICE_SHUTDOWN_GRACE, default ${DEFAULT-VALUE}).")
  private Duration shutdownGrace;

  @Option(names = "--buffer-lease", paramLabel = "DURATION",
      converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_BUFFER_LEASE:-" + Buffer.LEASE_DEFAULT + "}",
      description = "On a shared store: how long a node's right to deliver a buffer lasts unless renewed (every"
          + " second); a dead node's buffers move to another node within it (env SLUICE_BUFFER_LEASE,"
          + " default ${DEFAULT-VALUE}; 2s to 10m).")
  private Duration bufferLease;

  @Option(names = "--slice", paramLabel = "GLOB=HOLD", split = ",", defaultValue = "${env:SLUICE_SLICE}",
      description = "Slice mode for very high-rate resources, e.g. openai-*=50ms (repeat or separate with commas;"
          + " env SLUICE_SLICE): this node takes their capacity from the store in slices of HOLD worth of their"
          + " rate and grants from them without a store round trip. Order is FIFO within this node only, and the"
          + " grants may pass the limit by rate x HOLD (1ms to 1s). Rate-only limits without tenants; others are"
          + " served as usual. Default: none.")
  List<String> slice;

  @Option(names = "--buffer-allow", paramLabel = "CIDR", split = ",", defaultValue = "${env:SLUICE_BUFFER_ALLOW}",
      description = "The only networks buffers may deliver to, e.g. 10.0.0.0/8,fd00::/8 (repeat or separate with"
          + " commas; env SLUICE_BUFFER_ALLOW). Checked when a buffer is created and before every attempt. Default:"
          + " any address but link-local ones and this coordinator's own ports.")
  List<String> bufferAllow;

  @Option(names = "--buffer-deny", paramLabel = "CIDR", split = ",", defaultValue = "${env:SLUICE_BUFFER_DENY}",
      description = "Networks buffers may not deliver to, on top of link-local (169.254.0.0/16, fe80::/10) and this"
          + " coordinator's own ports, e.g. 127.0.0.0/8,10.0.0.0/8 (env SLUICE_BUFFER_DENY). Default: none.")
  List<String> bufferDeny;

  @Option(names = "--tls-cert", paramLabel = "FILE", defaultValue = "${env:SLUICE_TLS_CERT}",
      description = "Serve TLS with this PEM certificate chain; needs --tls-key (env SLUICE_TLS_CERT)."
          + " Default: plaintext.")
  Path tlsCert;

  @Option(names = "--tls-key", paramLabel = "FILE", defaultValue = "${env:SLUICE_TLS_KEY}",
      description = "The PEM (PKCS#8, unencrypted) private key of --tls-cert (env SLUICE_TLS_KEY).")
  Path tlsKey;

  @Option(names = "--tls-client-ca", paramLabel = "FILE", defaultValue = "${env:SLUICE_TLS_CLIENT_CA}",
      description = "Require client certificates signed by a CA in this PEM file (mTLS); needs"
          + " --tls-cert (env SLUICE_TLS_CLIENT_CA).")
  Path tlsClientCa;

  // --- gRPC port limits (issue 26): what one client may hold; see SECURITY.md, "Limits". ---
  @Option(names = "--max-connections", paramLabel = "N", defaultValue = "${env:SLUICE_MAX_CONNECTIONS}",
      description = "Most connections open on the gRPC port; more are closed at once, but " + GrpcLimits.LOOPBACK_RESERVE
          + " more are kept for loopback (env SLUICE_MAX_CONNECTIONS, default half the file descriptors, at most"
          + " 10000).")
  private Integer maxConnections;

  @Option(names = "--grpc-handshake-timeout", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_GRPC_HANDSHAKE_TIMEOUT:-" + Grpc.HANDSHAKE_TIMEOUT_DEFAULT + "}",
      description = "Time a new connection has for TLS and the HTTP/2 preface (env SLUICE_GRPC_HANDSHAKE_TIMEOUT,"
          + " default ${DEFAULT-VALUE}).")
  private Duration grpcHandshakeTimeout;

  @Option(names = "--max-connection-idle", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_MAX_CONNECTION_IDLE:-" + Grpc.MAX_CONNECTION_IDLE_DEFAULT + "}",
      description = "A connection with no call open this long is closed (env SLUICE_MAX_CONNECTION_IDLE, default"
          + " ${DEFAULT-VALUE}).")
  private Duration maxConnectionIdle;

  @Option(names = "--max-connection-age", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_MAX_CONNECTION_AGE:-" + Grpc.MAX_CONNECTION_AGE_DEFAULT + "}",
      description = "A connection this old is asked to reconnect (env SLUICE_MAX_CONNECTION_AGE, default"
          + " ${DEFAULT-VALUE}).")
  private Duration maxConnectionAge;

  @Option(names = "--max-connection-age-grace", paramLabel = "DURATION", converter = Durations.Converter.class,
      defaultValue = "${env:SLUICE_MAX_CONNECTION_AGE_GRACE:-" + Grpc.MAX_CONNECTION_AGE_GRACE_DEFAULT + "}",
      description = "Time calls on an aged connection get to finish before it is cut"
          + " (env SLUICE_MAX_CONNECTION_AGE_GRACE, default ${DEFAULT-VALUE}).")
  private Duration maxConnectionAgeGrace;

  @Option(names = "--max-calls-per-connection", paramLabel = "N",
      defaultValue = "${env:SLUICE_MAX_CALLS_PER_CONNECTION:-" + Grpc.MAX_CALLS_PER_CONNECTION_DEFAULT + "}",
      description = "Calls open at once on one connection (env SLUICE_MAX_CALLS_PER_CONNECTION, default"
          + " ${DEFAULT-VALUE}).")
  private int maxCallsPerConnection;

  @Option(names = "--max-resets-per-10s", paramLabel = "N", defaultValue = "${env:SLUICE_MAX_RESETS_PER_10S:-" + Grpc.MAX_RESETS_PER_10S_DEFAULT + "}",
      description = "Stream resets one connection may send per 10 s before it is closed"
          + " (env SLUICE_MAX_RESETS_PER_10S, default ${DEFAULT-VALUE}).")
  private int maxResetsPer10s;

  @Option(names = "--max-health-watches", paramLabel = "N", defaultValue = "${env:SLUICE_MAX_HEALTH_WATCHES:-" + Grpc.MAX_HEALTH_WATCHES_DEFAULT + "}",
      description = "Health Watch streams open at once (" + GrpcLimits.HEALTH_WATCHES_PER_CONNECTION + " per connection);"
          + " Check is not limited (env SLUICE_MAX_HEALTH_WATCHES, default ${DEFAULT-VALUE}).")
  private int maxHealthWatches;

  private GrpcLimits grpcLimits() {
    GrpcLimits.Builder b = GrpcLimits.builder()
        .handshakeTimeout(grpcHandshakeTimeout)
        .maxConnectionIdle(maxConnectionIdle)
        .maxConnectionAge(maxConnectionAge)
        .maxConnectionAgeGrace(maxConnectionAgeGrace)
        .maxCallsPerConnection(maxCallsPerConnection)
        .maxResetsPer10s(maxResetsPer10s)
        .maxHealthWatches(maxHealthWatches);
    if (maxConnections != null) {
      b.maxConnections(maxConnections);
    }
    return b.build();
  }

  @Override
  public Integer call() throws InterruptedException {
    SluiceServer server;
    try {
      SluiceServer.Builder builder = SluiceServer.builder()
          .port(port)
          .dataDir(dataDir)
          .maxWaiting(maxWaiting)
          .maxWaitingPerConnection(maxWaitingPerConnection)
          .leaseTtl(leaseTtl)
          .maxWait(maxWait)
          .aging(aging)
          .metricsMaxResources(metricsMaxResources)
          .metricsWaitBuckets(metricsWaitBuckets)
          .shutdownGrace(shutdownGrace)
          .bufferFsync(bufferFsync == Fsync.always)
          .bufferLease(bufferLease)
          .grpcLimits(grpcLimits())
          .store(store);
      if (nodeId != null && !nodeId.isBlank()) {
        builder.nodeId(nodeId);
      }
      if (limitsFile != null && !limitsFile.toString().isBlank()) {
        builder.limitsFile(limitsFile);
      }
      if (slice != null && !slice.isEmpty()) {
        List<dev.sluice.server.engine.SliceEngine.Rule> rules = new java.util.ArrayList<>();
        for (String r : slice) {
          if (!r.isBlank()) {
            rules.add(dev.sluice.server.engine.SliceEngine.Rule.parse(r.strip()));
          }
        }
        builder.slices(rules);
      }
      if (bufferAllow != null && !bufferAllow.isEmpty()) {
        builder.bufferAllow(bufferAllow);
      }
      if (bufferDeny != null && !bufferDeny.isEmpty()) {
        builder.bufferDeny(bufferDeny);
      }
      if (host != null) {
        builder.host(host);
      }
      if (httpPort != -1 && Http.PORT.problem(httpPort) != null) {
        throw new IllegalArgumentException(Http.PORT.problem(httpPort) + ", or -1 for no HTTP port");
      }
      if (httpPort >= 0) {
        builder.httpPort(httpPort);
      }
      builder.httpLimits(new HttpApi.Limits(httpMaxConnections != null ? httpMaxConnections
          : HttpApi.Limits.defaultMaxConnections(), httpIdleTimeout, httpReadTimeout, httpMaxPipelined));
      if (httpHost != null && !httpHost.isBlank()) {
        if (httpPort < 0) {
          throw new IllegalArgumentException("--http-bind needs the HTTP port: drop --http-port -1 or --http-bind");
        }
        builder.httpHost(httpHost);
      }
      if ((tlsCert == null) != (tlsKey == null)) {
        throw new IllegalArgumentException("--tls-cert and --tls-key go together: give both (the certificate"
            + " chain and its private key) or neither");
      }
      if (tlsCert != null) {
        builder.tls(tlsCert, tlsKey);
      }
      if (tlsClientCa != null) {
        builder.tlsClientCa(tlsClientCa);
      }
      server = builder.build();
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw new ParameterException(spec.commandLine(), CliFailure.oneLine(e.getMessage()), e);
    }
    try {
      server.start();
    } catch (IOException e) {
      // The server's message already says what went wrong and what to do.
      throw new CliFailure(e.getMessage() != null ? e.getMessage() : rootMessage(e), e);
    }
    Stopper stopper = new Stopper(server);
    Runtime.getRuntime().addShutdownHook(new Thread(stopper::stop, "sluice-shutdown"));
    // With only the hook, SIGTERM would end the JVM with status 143; handling the signal
    // ourselves lets a requested, clean stop exit 0.
    Stopper.onSignals(stopper::signalled, "TERM", "INT");
    if (limitsFile != null && !limitsFile.toString().isBlank()) {
      SluiceServer reloading = server;
      // Off the signal thread: an apply waits for the store.
      Stopper.onSignals(() -> new Thread(reloading::reloadLimitsFile, "sluice-limits-reload").start(), "HUP");
    }
    server.awaitTermination();
    stopper.stop(); // waits for a stop begun by a signal to finish draining
    return 0;
  }

  private static String rootMessage(Throwable e) {
    Throwable t = e;
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
    }
    return t.getMessage() != null ? t.getMessage() : t.getClass().getSimpleName();
  }

  /** Closes the server once; later callers wait until that close has finished. */
  static final class Stopper {
    private final AutoCloseable server;
    private boolean stopping;
    private boolean stopped;

    Stopper(AutoCloseable server) {
      this.server = server;
    }

    void signalled() {
      synchronized (this) {
        if (stopping && !stopped) {
          log.warn("Second stop signal while draining: stopping now");
          Runtime.getRuntime().halt(1);
        }
      }
      stop();
    }

    synchronized void stop() {
      if (stopping) {
        return;
      }
      stopping = true;
      try {
        server.close();
      } catch (Exception e) {
        log.warn("Graceful stop failed: {}", e.toString());
      } finally {
        stopped = true;
      }
    }

    /**
     * Runs {@code action} on each named signal, through {@code sun.misc.Signal} reached
     * reflectively: it is the only JDK hook for signals, and a direct reference draws an
     * unsuppressible compiler warning. Without it the shutdown hook still stops gracefully.
     */
    static boolean onSignals(Runnable action, String... names) {
      try {
        Class<?> signalClass = Class.forName("sun.misc.Signal");
        Class<?> handlerClass = Class.forName("sun.misc.SignalHandler");
        Constructor<?> newSignal = signalClass.getConstructor(String.class);
        Method handle = signalClass.getMethod("handle", signalClass, handlerClass);
        Object handler = Proxy.newProxyInstance(Stopper.class.getClassLoader(),
            new Class<?>[] {handlerClass}, (proxy, method, args) -> switch (method.getName()) {
              case "handle" -> {
                action.run();
                yield null;
              }
              case "hashCode" -> System.identityHashCode(proxy);
              case "equals" -> proxy == args[0];
              case "toString" -> "sluice graceful stop";
              default -> throw new UnsupportedOperationException(method.getName());
            });
        for (String name : names) {
          handle.invoke(null, newSignal.newInstance(name), handler);
        }
        return true;
      } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
        log.debug("No signal handling, relying on the shutdown hook: {}", e.toString());
        return false;
      }
    }
  }
}
