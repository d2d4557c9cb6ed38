package dev.sluice.bench.peers;

import static com.google.common.base.Preconditions.checkArgument;
import static java.util.Objects.requireNonNull;

import com.alibaba.csp.sentinel.cluster.TokenResult;
import com.alibaba.csp.sentinel.cluster.TokenResultStatus;
import com.alibaba.csp.sentinel.cluster.client.ClientConstants;
import com.alibaba.csp.sentinel.cluster.client.DefaultClusterTokenClient;
import com.alibaba.csp.sentinel.cluster.client.config.ClusterClientAssignConfig;
import com.alibaba.csp.sentinel.cluster.client.config.ClusterClientConfig;
import com.alibaba.csp.sentinel.cluster.client.config.ClusterClientConfigManager;
import com.alibaba.csp.sentinel.cluster.flow.rule.ClusterFlowRuleManager;
import com.alibaba.csp.sentinel.cluster.registry.ConfigSupplierRegistry;
import com.alibaba.csp.sentinel.cluster.server.SentinelDefaultTokenServer;
import com.alibaba.csp.sentinel.cluster.server.config.ClusterServerConfigManager;
import com.alibaba.csp.sentinel.cluster.server.config.ServerFlowConfig;
import com.alibaba.csp.sentinel.cluster.server.config.ServerTransportConfig;
import com.alibaba.csp.sentinel.cluster.server.connection.ConnectionManager;
import com.alibaba.csp.sentinel.init.InitExecutor;
import com.alibaba.csp.sentinel.slots.block.ClusterRuleConstant;
import com.alibaba.csp.sentinel.slots.block.RuleConstant;
import com.alibaba.csp.sentinel.slots.block.flow.ClusterFlowConfig;
import com.alibaba.csp.sentinel.slots.block.flow.FlowRule;
import dev.sluice.bench.Limiter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * Alibaba Sentinel's cluster flow control: its standalone token server ({@link
 * SentinelDefaultTokenServer}, Netty) on a free port in this JVM (Sentinel binds every
 * interface; it has no host setting), and its token client ({@link DefaultClusterTokenClient},
 * Netty) talking to it over TCP on loopback. One cluster flow rule (QPS, global threshold) on one
 * resource.
 *
 * <p>{@link #acquire()} is {@code client.requestToken(flowId, 1, prioritized = true)}, the call
 * Sentinel's own {@code FlowRuleChecker} makes for {@code SphU.entryWithPriority} on a cluster
 * rule, minus the local slot chain. We call the client directly because in this JVM the server's
 * start marks the process as a token <em>server</em>, and {@code SphU.entry} would then ask the
 * embedded token service in memory, never the network.
 *
 * <p>Sentinel has no waiting queue. Its own way to wait is the prioritized request: when the
 * window is full but the bucket about to slide out frees room, the server books the permit in
 * the next bucket and answers {@code SHOULD_WAIT} with a wait (one bucket, 100 ms); the caller
 * sleeps that and goes. Otherwise it answers {@code BLOCKED}, with no hint; we count a refusal
 * ({@link #refusals()}) and retry after one bucket, the earliest the window can change. Any
 * other answer ({@code FAIL}: timeout or no connection; {@code TOO_MANY_REQUEST}: the server's
 * own per-namespace QPS guard) is thrown as an error.
 *
 * <p>Sentinel configures its server and client through static managers, so only one instance
 * may be open in a JVM at a time. Its logs go to {@code csp.sentinel.log.dir}, set here to a
 * temp directory unless already set.
 */
public final class SentinelClusterLimiter implements Limiter {

  /**
   * The client's wait for each token answer: Sentinel's own default, 20 ms. A longer one makes
   * things worse: the default client registers its response promise only after writing the
   * request, so an answer that beats that registration is dropped (alibaba/Sentinel#2852) and the
   * caller waits out the whole timeout before failing. On two shared cores that was 1 answer in
   * 10 000 on a quiet box and up to 1 in 100 on a busy one (the woken event loop preempts the
   * caller before it registers).
   */
  public static final Duration DEFAULT_REQUEST_TIMEOUT = Duration.ofMillis(20);

  private static final String NAMESPACE = "sluice-bench";
  private static final String RESOURCE = "sluice-bench-hot-key";
  private static final String WARM_UP_RESOURCE = "sluice-bench-warm-up";
  private static final String HOST = "127.0.0.1";
  private static final int WINDOW_MS = 1000;
  private static final int SAMPLE_COUNT = 10;
  private static final long RETRY_AFTER_BLOCKED_MS = WINDOW_MS / SAMPLE_COUNT;
  // The server's own guard against a flood of token requests (default 30 000/s per namespace)
  // would cap the uncontended run; the rule is what should limit.
  private static final double MAX_ALLOWED_QPS = 1e9;
  private static final Duration START_TIMEOUT = Duration.ofSeconds(10);
  private static final Duration POLL_INTERVAL = Duration.ofMillis(10);
  private static final int WARM_UP_REQUESTS = 200;
  private static final String LOG_DIR_PROPERTY = "csp.sentinel.log.dir";

  private static final AtomicBoolean OPEN = new AtomicBoolean();
  private static final AtomicLong FLOW_IDS = new AtomicLong();

  private final long permitsPerSecond;
  private final Duration requestTimeout;
  private final long flowId;
  private final int port;
  private final SentinelDefaultTokenServer server;
  private final DefaultClusterTokenClient client;
  private final LongAdder refusals = new LongAdder();
  private final LongAdder waits = new LongAdder();
  private boolean closed;

  /** Like {@link #SentinelClusterLimiter(long, Duration)} with {@link #DEFAULT_REQUEST_TIMEOUT}. */
  public SentinelClusterLimiter(long permitsPerSecond) throws InterruptedException {
    this(permitsPerSecond, DEFAULT_REQUEST_TIMEOUT);
  }

  /**
   * Starts a token server on a free port with one rule of {@code permitsPerSecond}
   * (sliding window of 1 s in 10 buckets), connects a token client to it and returns once the
   * client is connected.
   *
   * @param requestTimeout how long the client waits for each answer before failing it
   * @throws IllegalArgumentException if {@code permitsPerSecond} is not positive or {@code
   *     requestTimeout} is not a positive whole number of milliseconds
   * @throws IllegalStateException if another instance is open in this JVM, or the server or
   *     client did not come up within 10 s
   * @throws InterruptedException if interrupted while waiting for them
   */
  public SentinelClusterLimiter(long permitsPerSecond, Duration requestTimeout)
      throws InterruptedException {
    checkArgument(permitsPerSecond > 0, "permitsPerSecond must be positive: %s", permitsPerSecond);
    requireNonNull(requestTimeout, "requestTimeout");
    checkArgument(
        requestTimeout.toMillis() > 0 && requestTimeout.toMillis() <= Integer.MAX_VALUE,
        "requestTimeout must be a positive number of milliseconds: %s",
        requestTimeout);
    if (!OPEN.compareAndSet(false, true)) {
      throw new IllegalStateException(
          "a SentinelClusterLimiter is already open in this JVM; Sentinel's server and client"
              + " are configured through static managers, so close it first");
    }
    this.permitsPerSecond = permitsPerSecond;
    this.requestTimeout = requestTimeout;
    this.flowId = FLOW_IDS.incrementAndGet();
    SentinelDefaultTokenServer startedServer = null;
    DefaultClusterTokenClient startedClient = null;
    boolean started = false;
    try {
      if (System.getProperty(LOG_DIR_PROPERTY) == null) {
        System.setProperty(
            LOG_DIR_PROPERTY,
            Path.of(System.getProperty("java.io.tmpdir"), "sluice-bench-sentinel-logs").toString());
      }
      InitExecutor.doInit();
      ConfigSupplierRegistry.setNamespaceSupplier(() -> NAMESPACE);

      // Server: its flow guard, namespace, rule and port; then start and wait for the socket.
      this.port = freePort();
      ClusterServerConfigManager.loadGlobalFlowConfig(
          new ServerFlowConfig()
              .setMaxAllowedQps(MAX_ALLOWED_QPS)
              .setIntervalMs(WINDOW_MS)
              .setSampleCount(SAMPLE_COUNT));
      ClusterServerConfigManager.loadServerNamespaceSet(Set.of(NAMESPACE));
      long warmUpFlowId = FLOW_IDS.incrementAndGet();
      ClusterFlowRuleManager.loadRules(
          NAMESPACE,
          List.of(
              rule(RESOURCE, flowId, permitsPerSecond),
              rule(WARM_UP_RESOURCE, warmUpFlowId, Long.MAX_VALUE)));
      ClusterServerConfigManager.loadGlobalTransportConfig(
          new ServerTransportConfig().setPort(port));
      startedServer = new SentinelDefaultTokenServer();
      startedServer.start();
      awaitListening(port);

      // Client: point it at the server, start, wait for the connection.
      ClusterClientConfigManager.applyNewConfig(
          new ClusterClientConfig().setRequestTimeout((int) requestTimeout.toMillis()));
      ClusterClientConfigManager.applyNewAssignConfig(new ClusterClientAssignConfig(HOST, port));
      startedClient = new DefaultClusterTokenClient();
      startedClient.start();
      awaitConnected(startedClient);
      warmUp(startedClient, warmUpFlowId);
      started = true;
    } catch (InterruptedException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      // Sentinel's start() methods declare Exception.
      throw new IllegalStateException("Sentinel token server or client failed to start", e);
    } finally {
      if (!started) {
        stopQuietly(startedClient, startedServer);
        OPEN.set(false);
      }
    }
    this.server = startedServer;
    this.client = startedClient;
  }

  private static FlowRule rule(String resource, long flowId, long permitsPerSecond) {
    FlowRule rule = new FlowRule(resource);
    rule.setGrade(RuleConstant.FLOW_GRADE_QPS);
    rule.setCount(permitsPerSecond);
    rule.setClusterMode(true);
    rule.setClusterConfig(
        new ClusterFlowConfig()
            .setFlowId(flowId)
            .setThresholdType(ClusterRuleConstant.FLOW_THRESHOLD_GLOBAL)
            .setFallbackToLocalWhenFail(false)
            .setWindowIntervalMs(WINDOW_MS)
            .setSampleCount(SAMPLE_COUNT));
    return rule;
  }

  @Override
  public String name() {
    return "sentinel-cluster";
  }

  @Override
  public String notes() {
    return "Sentinel 1.8.9 cluster flow control: standalone token server (Netty) in the bench JVM"
        + " on loopback, DefaultClusterTokenClient (Netty, one connection, one blocking request"
        + " per thread, request timeout "
        + requestTimeout.toMillis()
        + " ms) calling requestToken(flowId, 1, prioritized) directly; one QPS rule, global"
        + " threshold, 1 s sliding window of 10 buckets. No waiting queue: SHOULD_WAIT (permit"
        + " booked in the next bucket) sleeps its 100 ms hint and goes; BLOCKED carries no hint,"
        + " is counted as a refusal and retried after one bucket (100 ms); FAIL (timeout, lost"
        + " response: alibaba/Sentinel#2852) is an error. Flow tokens have no release; the"
        + " concurrency ('thread grade') cluster mode does, but the default client does not"
        + " implement it (requestConcurrentToken returns null). Cannot: queue, FIFO, several"
        + " limits all-or-nothing, settle or refund, pause on feedback. The limit is a sliding"
        + " window counter, not a token bucket.";
  }

  @Override
  public Object acquire() throws InterruptedException {
    while (true) {
      TokenResult result = client.requestToken(flowId, 1, true);
      int status = result.getStatus();
      if (status == TokenResultStatus.OK) {
        return null;
      }
      if (status == TokenResultStatus.SHOULD_WAIT) {
        waits.increment();
        Thread.sleep(result.getWaitInMs());
        return null;
      }
      if (status == TokenResultStatus.BLOCKED) {
        refusals.increment();
        Thread.sleep(RETRY_AFTER_BLOCKED_MS);
        continue;
      }
      throw new IllegalStateException(
          "Sentinel token request for flow " + flowId + " answered " + statusName(status));
    }
  }

  @Override
  public void release(Object permit) {
    // Sentinel's flow (QPS) tokens are not given back.
  }

  /** BLOCKED answers so far, each retried after one window bucket. */
  public long refusals() {
    return refusals.sum();
  }

  /** SHOULD_WAIT answers so far: permits booked in the next bucket, slept for, then taken. */
  public long waits() {
    return waits.sum();
  }

  /** Clients the token server counts as connected in this limiter's namespace. */
  int connectedClients() {
    return ConnectionManager.getConnectedCount(NAMESPACE);
  }

  /** Whether the token client has a live connection to the server. */
  boolean clientConnected() {
    return client.getState() == ClientConstants.CLIENT_STATUS_STARTED;
  }

  /** Stops the token server only, so tests can see that tokens really came over the network. */
  void stopServer() throws Exception {
    server.stop();
  }

  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    try {
      stopQuietly(client, server);
      ClusterFlowRuleManager.loadRules(NAMESPACE, List.of());
    } finally {
      OPEN.set(false);
    }
  }

  @Override
  public String toString() {
    return name() + "[" + permitsPerSecond + "/s, " + HOST + ":" + port + "]";
  }

  private static void stopQuietly(DefaultClusterTokenClient client, SentinelDefaultTokenServer server) {
    // Sentinel's stop() declares Exception; a failed stop must not hide the other one's.
    if (client != null) {
      try {
        client.stop();
      } catch (Exception e) {
        // Nothing more to do for a client that will not stop.
      }
    }
    if (server != null) {
      try {
        server.stop();
      } catch (Exception e) {
        // Same for the server.
      }
    }
  }

  private static void awaitListening(int port) throws InterruptedException {
    long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
    while (true) {
      try (Socket socket = new Socket()) {
        socket.connect(new InetSocketAddress(HOST, port), (int) POLL_INTERVAL.toMillis() * 10);
        return;
      } catch (IOException e) {
        if (System.nanoTime() - deadline > 0) {
          throw new IllegalStateException(
              "Sentinel token server not listening on " + HOST + ":" + port + " after " + START_TIMEOUT,
              e);
        }
        Thread.sleep(POLL_INTERVAL.toMillis());
      }
    }
  }

  private static void awaitConnected(DefaultClusterTokenClient client) throws InterruptedException {
    long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
    while (client.getState() != ClientConstants.CLIENT_STATUS_STARTED) {
      if (System.nanoTime() - deadline > 0) {
        throw new IllegalStateException(
            "Sentinel token client not connected to " + client.currentServer() + " after " + START_TIMEOUT);
      }
      Thread.sleep(POLL_INTERVAL.toMillis());
    }
  }

  /**
   * Sends up to {@value #WARM_UP_REQUESTS} token requests on a spare rule with no effective
   * limit, so that the limiter's first acquires do not pay for class loading and compilation on
   * both sides (a fresh server answers its first requests in hundreds of milliseconds, far past
   * the client's timeout). Gives up at the start deadline; fails only if nothing was granted.
   */
  private static void warmUp(DefaultClusterTokenClient client, long warmUpFlowId)
      throws InterruptedException {
    long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
    int granted = 0;
    int lastStatus = TokenResultStatus.FAIL;
    for (int i = 0; i < WARM_UP_REQUESTS && System.nanoTime() - deadline < 0; i++) {
      lastStatus = client.requestToken(warmUpFlowId, 1, false).getStatus();
      if (lastStatus == TokenResultStatus.OK) {
        granted++;
      }
      if (Thread.interrupted()) {
        throw new InterruptedException();
      }
    }
    if (granted == 0) {
      throw new IllegalStateException(
          "Sentinel token server at " + client.currentServer() + " granted no warm-up request;"
              + " the last answer was " + statusName(lastStatus));
    }
  }

  private static int freePort() {
    try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getByName(HOST))) {
      return socket.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static String statusName(int status) {
    return switch (status) {
      case TokenResultStatus.BAD_REQUEST -> "BAD_REQUEST";
      case TokenResultStatus.TOO_MANY_REQUEST -> "TOO_MANY_REQUEST (server's namespace QPS guard)";
      case TokenResultStatus.FAIL -> "FAIL (request timeout, lost response or no connection)";
      case TokenResultStatus.NO_RULE_EXISTS -> "NO_RULE_EXISTS";
      case TokenResultStatus.NO_REF_RULE_EXISTS -> "NO_REF_RULE_EXISTS";
      case TokenResultStatus.NOT_AVAILABLE -> "NOT_AVAILABLE";
      default -> "status " + status;
    };
  }
}
