package dev.sluice.server;

import dev.sluice.server.config.ServerConfigKeys.Grpc;
import java.time.Duration;

/**
 * What one client may hold on the gRPC port: connections, calls per connection, how long an idle
 * or half-open connection lives, resets per window, health watches. Each setter checks its value
 * and states its default; {@code sluice serve} exposes each as a flag. Immutable once built.
 *
 * <pre>{@code
 * SluiceServer.builder().grpcLimits(GrpcLimits.builder().maxConnections(2_000).build())
 * }</pre>
 */
public final class GrpcLimits {

  /** Connections beyond the cap that only loopback peers (operators on the host) may open. */
  public static final int LOOPBACK_RESERVE = 16;
  /** Health {@code Watch} streams one connection may hold (grpc-java's client-side checks use one). */
  public static final int HEALTH_WATCHES_PER_CONNECTION = 4;
  /** The window of {@link Builder#maxResetsPer10s}. */
  static final int RESET_WINDOW_SECONDS = 10;

  final Integer maxConnections;
  final Duration handshakeTimeout;
  final Duration maxConnectionIdle;
  final Duration maxConnectionAge;
  final Duration maxConnectionAgeGrace;
  final int maxCallsPerConnection;
  final int maxResetsPer10s;
  final int maxHealthWatches;

  private GrpcLimits(Builder b) {
    maxConnections = b.maxConnections;
    handshakeTimeout = Grpc.HANDSHAKE_TIMEOUT.orDefault(b.handshakeTimeout);
    maxConnectionIdle = Grpc.MAX_CONNECTION_IDLE.orDefault(b.maxConnectionIdle);
    maxConnectionAge = Grpc.MAX_CONNECTION_AGE.orDefault(b.maxConnectionAge);
    maxConnectionAgeGrace = Grpc.MAX_CONNECTION_AGE_GRACE.orDefault(b.maxConnectionAgeGrace);
    maxCallsPerConnection = Grpc.MAX_CALLS_PER_CONNECTION.orDefault(b.maxCallsPerConnection);
    maxResetsPer10s = Grpc.MAX_RESETS_PER_10S.orDefault(b.maxResetsPer10s);
    maxHealthWatches = Grpc.MAX_HEALTH_WATCHES.orDefault(b.maxHealthWatches);
  }

  /** The defaults, as documented on each setter. */
  public static GrpcLimits defaults() {
    return builder().build();
  }

  public static Builder builder() {
    return new Builder();
  }

  /**
   * The connection cap in force for a process allowed {@code maxFiles} descriptors (-1 if
   * unknown): as set, else half the descriptors, at most 10 000 (the other half is left for
   * the data files, Redis, the HTTP port and the loopback reserve).
   *
   * @throws IllegalArgumentException if the cap set leaves too few descriptors, naming the fix
   */
  int connectionCap(long maxFiles) {
    if (maxConnections == null) {
      return maxFiles <= 0 ? 10_000 : (int) Math.max(16, Math.min(10_000, maxFiles / 2));
    }
    long needed = (long) maxConnections + LOOPBACK_RESERVE + 128;
    if (maxFiles > 0 && needed > maxFiles) {
      throw new IllegalArgumentException("max connections " + maxConnections + " does not fit this process's "
          + maxFiles + " file descriptors (it needs " + needed + " with the loopback reserve and files):"
          + " lower --max-connections or raise the limit (ulimit -n, LimitNOFILE=)");
    }
    return maxConnections;
  }

  /** Puts these limits on {@code b}, which then listens through {@code cap}. */
  io.grpc.netty.NettyServerBuilder applyTo(io.grpc.netty.NettyServerBuilder b, ConnectionCap cap) {
    return b.channelFactory(cap.channelFactory())
        .bossEventLoopGroup(cap.boss)
        .workerEventLoopGroup(cap.workers)
        .handshakeTimeout(handshakeTimeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)
        .maxConnectionIdle(maxConnectionIdle.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)
        .maxConnectionAge(maxConnectionAge.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)
        .maxConnectionAgeGrace(maxConnectionAgeGrace.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)
        .maxConcurrentCallsPerConnection(maxCallsPerConnection)
        .maxRstFramesPerWindow(maxResetsPer10s, RESET_WINDOW_SECONDS)
        // Find dead peers in minutes, not grpc-java's 2 hours, so their descriptors come back.
        .keepAliveTime(1, java.util.concurrent.TimeUnit.MINUTES)
        .keepAliveTimeout(20, java.util.concurrent.TimeUnit.SECONDS)
        .maxInboundMetadataSize(8 << 10);
  }

  /** One line for the start log. */
  String describe(int cap) {
    return "at most " + cap + " connections (+" + LOOPBACK_RESERVE + " from loopback), " + maxCallsPerConnection
        + " calls each, handshake " + handshakeTimeout.toMillis() + " ms, idle " + maxConnectionIdle.toSeconds()
        + " s, age " + maxConnectionAge.toSeconds() + " s";
  }

  /** Settings for {@link SluiceServer.Builder#grpcLimits}; each may be set once. */
  public static final class Builder {
    private Integer maxConnections;
    private Duration handshakeTimeout;
    private Duration maxConnectionIdle;
    private Duration maxConnectionAge;
    private Duration maxConnectionAgeGrace;
    private Integer maxCallsPerConnection;
    private Integer maxResetsPer10s;
    private Integer maxHealthWatches;

    private Builder() {}

    private static void once(Object current, String what) {
      if (current != null) {
        throw new IllegalStateException(what + " was already set");
      }
    }

    private static int within(int n, int min, int max, String what, String flag) {
      if (n < min || n > max) {
        throw new IllegalArgumentException(what + " " + n + " is out of range: use " + min + " to " + max + " ("
            + flag + ")");
      }
      return n;
    }

    /**
     * Most client connections open at once. Default: half the process's file descriptors, at
     * most 10 000. A connection beyond it is closed as soon as it is accepted, before any
     * HTTP/2 work; {@value #LOOPBACK_RESERVE} more are kept for loopback peers, so an operator
     * on the host ({@code sluice limit list}, {@code kubectl exec}) still gets in.
     */
    public Builder maxConnections(int n) {
      once(maxConnections, "max connections");
      maxConnections = within(n, 1, 1_000_000, "max connections", "--max-connections");
      return this;
    }

    /**
     * How long a new connection has to finish its TLS handshake and send the HTTP/2 preface and
     * settings; default 10 s (grpc-java's own is 120 s).
     */
    public Builder handshakeTimeout(Duration d) {
      once(handshakeTimeout, "handshake timeout");
      handshakeTimeout = Grpc.HANDSHAKE_TIMEOUT.check(d);
      return this;
    }

    /**
     * A connection with no call open for this long is closed gracefully (GOAWAY; clients
     * reconnect on their next call); default 2 minutes. The SDK's health probes keep its
     * connections busy, so this only reaps abandoned ones and ones that never call.
     */
    public Builder maxConnectionIdle(Duration d) {
      once(maxConnectionIdle, "max connection idle");
      maxConnectionIdle = Grpc.MAX_CONNECTION_IDLE.check(d);
      return this;
    }

    /**
     * A connection older than this is asked to go (GOAWAY; clients reconnect, spreading over the
     * nodes again); default 1 hour.
     */
    public Builder maxConnectionAge(Duration d) {
      once(maxConnectionAge, "max connection age");
      maxConnectionAge = Grpc.MAX_CONNECTION_AGE.check(d);
      return this;
    }

    /**
     * How long calls open on an aged connection may still finish before it is cut; default 5
     * minutes (the default {@code --max-wait}, so a parked acquire ends on its own terms).
     */
    public Builder maxConnectionAgeGrace(Duration d) {
      once(maxConnectionAgeGrace, "max connection age grace");
      maxConnectionAgeGrace = Grpc.MAX_CONNECTION_AGE_GRACE.check(d);
      return this;
    }

    /**
     * Calls open at once on one connection (HTTP/2 MAX_CONCURRENT_STREAMS); default 10 000: each
     * parked unary acquire is a call, and one worker process may park thousands on its connection.
     * grpc-java and grpc-js clients queue calls beyond it on their side; a stream opened anyway
     * is refused (REFUSED_STREAM). Sessions carry many acquires on one call.
     */
    public Builder maxCallsPerConnection(int n) {
      once(maxCallsPerConnection, "max calls per connection");
      maxCallsPerConnection = Grpc.MAX_CALLS_PER_CONNECTION.check(n);
      return this;
    }

    /**
     * Stream resets (RST_STREAM) one connection may send per 10 seconds before it is closed, the
     * answer to the HTTP/2 rapid-reset pattern; default 10 000. A client that cancels its waits
     * sends one each: a worker dropping thousands of parked acquires at once is legitimate, an
     * attacker's open-and-reset loop runs at a hundred thousand a second.
     */
    public Builder maxResetsPer10s(int n) {
      once(maxResetsPer10s, "max resets per 10s");
      maxResetsPer10s = Grpc.MAX_RESETS_PER_10S.check(n);
      return this;
    }

    /**
     * Health {@code Watch} streams open at once over the whole port (each connection may hold
     * {@value #HEALTH_WATCHES_PER_CONNECTION}); default 1 000. Beyond it a Watch fails with
     * RESOURCE_EXHAUSTED; {@code Check}, what load balancers and the SDK call, is not limited.
     */
    public Builder maxHealthWatches(int n) {
      once(maxHealthWatches, "max health watches");
      maxHealthWatches = Grpc.MAX_HEALTH_WATCHES.check(n);
      return this;
    }

    public GrpcLimits build() {
      return new GrpcLimits(this);
    }
  }
}
