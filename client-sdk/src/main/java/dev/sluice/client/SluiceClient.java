package dev.sluice.client;

import io.grpc.ClientInterceptor;
import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.TlsChannelCredentials;
import io.micrometer.core.instrument.MeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.ScheduledExecutorService;
import java.util.function.LongSupplier;
import java.util.function.UnaryOperator;

/**
 * Client of a Sluice coordinator: wrap each upstream call in a {@link Permit}.
 *
 * <pre>{@code
 * try (SluiceClient client = SluiceClient.builder().target("sluice:7420").build();
 *      Permit permit = client.acquire("openai", Load.of("requests", 1, "tokens", 1200))) {
 *   callOpenAi();
 * }
 * }</pre>
 *
 * <p>Thread-safe; share one client per process. Waiting costs no thread: a blocking acquire parks
 * its caller (virtual threads welcome) and an async acquire holds none. Plaintext only for now.
 *
 * <p><b>Several coordinators.</b> Give every node as the target ({@code h1:7420,h2:7420} or a DNS
 * name with several A records, {@code dns:///sluice.internal:7420}): calls are spread over the
 * nodes that are up (gRPC {@code round_robin}). A call that fails with UNAVAILABLE because its node
 * died or shut down is retried on another node, an acquire with the same request id (so it is
 * never granted twice) until its own timeout; releases, renewals, reports and cancels likewise
 * until their deadline. With a list target, each node also gets a health probe every second: a
 * node that goes silent (host down, network cut) is found within 2 s, stops getting calls, and
 * the calls in flight on it are cut off and retried the same way. After such a failover open
 * leases are renewed at once on the remaining nodes. When no node answers at all the client is
 * {@linkplain #isDegraded() degraded} and its {@link FailureMode} decides what an acquire does.
 */
public final class SluiceClient implements AutoCloseable {

  private final ClientRuntime runtime;

  private SluiceClient(ClientRuntime runtime) {
    this.runtime = runtime;
  }

  /** A builder; every setting has a default, so {@code builder().build()} is a working client. */
  public static Builder builder() {
    return new Builder();
  }

  /**
   * Waits for one call's worth of capacity (the coordinator's default load: 1 request) with the
   * client's default timeout and lane.
   *
   * @see #acquire(String, Load, AcquireOptions)
   */
  public Permit acquire(String resource) throws InterruptedException {
    return acquire(resource, Load.DEFAULT, AcquireOptions.defaults());
  }

  /**
   * Waits until {@code load} is granted on {@code resource}, with the client's default timeout and
   * lane.
   *
   * @see #acquire(String, Load, AcquireOptions)
   */
  public Permit acquire(String resource, Load load) throws InterruptedException {
    return acquire(resource, load, AcquireOptions.defaults());
  }

  /**
   * Waits until {@code load} is granted on {@code resource}. Close the returned permit when the call
   * is done.
   *
   * @throws AcquireTimeoutException if not granted within the timeout
   * @throws InvalidRequestException if the request can never be granted (bad name or load)
   * @throws ResourceNotFoundException if the resource has no limit
   * @throws WaitingRoomFullException if too many callers already wait; see its {@code retryAfter()}
   * @throws SluiceUnavailableException if the coordinator cannot be reached
   * @throws InterruptedException if interrupted while waiting; the wait is cancelled at the
   *     coordinator and a grant that arrives anyway is given back. As with {@code Future.get}, the
   *     thread's interrupt status is cleared when this is thrown.
   * @throws IllegalStateException if the client is closed
   */
  public Permit acquire(String resource, Load load, AcquireOptions options) throws InterruptedException {
    return runtime.acquire(resource, load, options);
  }

  /**
   * Like {@link #acquire(String, Load, AcquireOptions)} with the given timeout and the default lane,
   * but answers empty instead of throwing {@link AcquireTimeoutException} when nothing was granted
   * in time. Every other failure still throws. Zero means try once without waiting.
   */
  public Optional<Permit> tryAcquire(String resource, Load load, Duration timeout) throws InterruptedException {
    AcquireOptions options = AcquireOptions.builder().timeout(timeout).build();
    try {
      return Optional.of(acquire(resource, load, options));
    } catch (AcquireTimeoutException e) {
      return Optional.empty();
    }
  }

  /**
   * Starts an acquire and returns at once. The future completes, on the client's executor, with the
   * permit or with one of the exceptions {@link #acquire(String, Load, AcquireOptions)} throws.
   * Cancelling the future (or completing it in any other way) cancels the wait at the coordinator;
   * a grant that arrives after that is given back, never leaked.
   *
   * @throws IllegalStateException if the client is closed
   */
  public CompletableFuture<Permit> acquireAsync(String resource, Load load, AcquireOptions options) {
    return runtime.acquireAsync(resource, load, options);
  }

  /**
   * When an acquire of {@code load} made now would be granted, with the client's default lane and
   * tenant, without queueing it.
   *
   * @see #estimate(String, Load, Lane, String)
   */
  public WaitEstimate estimate(String resource, Load load) {
    return runtime.estimate(resource, load, null, null);
  }

  /**
   * When an acquire of {@code load} in {@code lane} for {@code tenant} made now would be granted,
   * as the coordinator estimates it, without queueing anything: the load the tenant has queued in
   * its lane and the lanes above, plus this one, drained at the tenant's share of the rate from
   * what the buckets hold, within the tenant's cap, after any timed pause. An estimate, not a
   * promise (aging, later arrivals of other tenants, settles and the concurrency cap are left
   * out); to act on it at acquire time, use {@link AcquireOptions.Builder#failIfLate()}. Blocks
   * until the coordinator answers, at most 10 s, retrying on another node when one fails with
   * UNAVAILABLE (an estimate changes nothing; at once while the client is degraded).
   *
   * @param lane null for the client's {@code defaultLane}
   * @param tenant null for the client's {@code defaultTenant}; with an API key bound to a tenant,
   *     the key's tenant is used, and naming another one fails with {@link PermissionDeniedException}
   * @throws InvalidRequestException if the load is bad (as for acquire)
   * @throws ResourceNotFoundException if the resource has no limit
   * @throws IllegalArgumentException if {@code tenant} is not a valid tenant name
   * @throws SluiceException (a subclass, as for acquire) for the other refusals, or if the
   *     coordinator did not answer in time; if interrupted while waiting (its interrupt status is kept)
   * @throws IllegalStateException if the client is closed
   */
  public WaitEstimate estimate(String resource, Load load, Lane lane, String tenant) {
    return runtime.estimate(resource, load, lane, tenant);
  }

  /**
   * {@link #estimate(String, Load, Lane, String)} without blocking: the future completes, on the
   * client's {@linkplain Builder#executor executor}, with the estimate or with the exception the
   * blocking form throws. Bad arguments and a closed client throw at once.
   */
  public CompletableFuture<WaitEstimate> estimateAsync(String resource, Load load, Lane lane, String tenant) {
    return runtime.estimateAsync(resource, load, lane, tenant);
  }

  /**
   * Connects now and sends one call, so that the first acquire costs about what the hundredth
   * does. Call it once after {@link Builder#build()}, where the process starts (before it takes
   * traffic, or in its readiness check); the client works without it, but then its first calls
   * pay for connecting (TCP, TLS, HTTP/2) and for loading and compiling the call path, and calls
   * made meanwhile by several threads are all held until the connection is up and then sent
   * together, as one burst.
   *
   * <p>What it does: asks the channel to connect and waits until a node is READY; opens the
   * {@linkplain Builder#session session} streams, if any; runs the acquire messages through their
   * marshallers; and sends one acquire for the empty resource name through the same code as every
   * acquire, which the coordinator refuses in its gRPC layer before its engine and store (any
   * answer, even a refusal, has warmed the path).
   *
   * <p>Why a method and not part of {@code build()}: building never waits on the network, so a
   * client can be built where the process is wired up (a constructor, a DI container) while the
   * coordinator is still starting or away, without stalling or failing that; and the caller
   * chooses how long to wait and what to do if no node answers.
   *
   * @param timeout how long to wait for a node to answer, e.g. {@code Duration.ofSeconds(5)}
   * @return true if a node answered within {@code timeout} and the channel is READY; false if
   *     none did (the client still works: calls fail or wait as they would without the warm-up)
   * @throws IllegalArgumentException if {@code timeout} is negative
   * @throws InterruptedException if interrupted while waiting
   * @throws IllegalStateException if the client is closed
   */
  public boolean warmUp(Duration timeout) throws InterruptedException {
    return runtime.warmUp(timeout);
  }

  /**
   * Tells the coordinator the upstream refused a call (HTTP 429 or equivalent), so it pauses the
   * resource for every worker and empties its view of what is left. Blocks until the coordinator
   * answers, at most 10 s (retrying on another node when one fails with UNAVAILABLE; at once
   * while the client is degraded).
   *
   * @param retryAfter how long the upstream asked to wait; null to read it from {@code headers}
   *     ({@code retry-after-ms} or Azure's {@code x-ms-retry-after-ms}, then {@code retry-after}
   *     in seconds). When none gives one the coordinator pauses for 1 s.
   * @param headers the upstream's HTTP response headers, names in any case; {@code Map.of()} for
   *     none. OpenAI's, Azure OpenAI's and Anthropic's rate-limit headers are read: what is left
   *     of each dimension, and the provider's limit (which a learning resource takes as its
   *     rate). Values that do not parse or contradict each other are skipped, with one WARN per
   *     resource every few minutes.
   * @return how long the coordinator has now paused the resource
   * @throws IllegalArgumentException if {@code retryAfter} is negative
   * @throws SluiceException (a subclass, as for acquire) if the coordinator refused the report or
   *     did not answer in time; if the calling thread is interrupted while waiting (its interrupt
   *     status is kept; the report may still be applied)
   * @throws IllegalStateException if the client is closed
   */
  public Duration reportThrottled(String resource, Duration retryAfter, Map<String, String> headers) {
    return runtime.reportThrottled(resource, retryAfter, headers);
  }

  /**
   * Tells the coordinator what the upstream's rate-limit headers say is left, after a call it
   * accepted: every remaining count (OpenAI's and Azure's {@code x-ratelimit-remaining-<dimension>},
   * Anthropic's {@code anthropic-ratelimit-<dimension>-remaining}; names in any case) lowers the
   * coordinator's view of that dimension, never raises it; the provider's limit headers let a
   * resource that learns its limit follow it. Other headers, and values that do not parse or
   * contradict each other, are skipped. Blocks as {@link #reportThrottled} does.
   *
   * @param headers the upstream's HTTP response headers; {@code Map.of()} for none
   * @return how long the resource is paused (by an earlier throttle report); zero when it is not
   * @throws SluiceException (a subclass) if the coordinator refused the report or did not answer
   * @throws IllegalStateException if the client is closed
   */
  public Duration reportHeaders(String resource, Map<String, String> headers) {
    return runtime.reportHeaders(resource, headers);
  }

  /**
   * {@link #reportThrottled} without blocking: the future completes, on the client's
   * {@linkplain Builder#executor executor}, with the pause or with the exception the blocking form
   * throws. Bad arguments and a closed client throw at once.
   */
  public CompletableFuture<Duration> reportThrottledAsync(String resource, Duration retryAfter,
      Map<String, String> headers) {
    return runtime.reportThrottledAsync(resource, retryAfter, headers);
  }

  /**
   * {@link #reportHeaders} without blocking: the future completes, on the client's
   * {@linkplain Builder#executor executor}, with the pause or with the exception the blocking form
   * throws. Bad arguments and a closed client throw at once.
   */
  public CompletableFuture<Duration> reportHeadersAsync(String resource, Map<String, String> headers) {
    return runtime.reportHeadersAsync(resource, headers);
  }

  /**
   * The boolean form of {@link #reportThrottled} and {@link #reportHeaders}, to which it delegates.
   *
   * @param headers null for none
   * @deprecated a boolean argument with two nullable ones reads badly at the call site; call
   *     {@link #reportThrottled(String, Duration, Map)} after a 429 and
   *     {@link #reportHeaders(String, Map)} after any other answer
   */
  @Deprecated(since = "0.1.0")
  public Duration report(String resource, boolean throttled, Duration retryAfter, Map<String, String> headers) {
    Map<String, String> h = headers != null ? headers : Map.of();
    return throttled ? reportThrottled(resource, retryAfter, h) : reportHeaders(resource, h);
  }

  /**
   * Whether the client is degraded: no coordinator node answers, so acquires follow the
   * {@link FailureMode} (also exported as the gauge {@code sluice.client.degraded} when a
   * {@link Builder#meterRegistry} is set).
   *
   * <p>The rule: the gRPC channel has been in TRANSIENT_FAILURE, and not READY since, for at least
   * one second. With round_robin that means every node has failed to connect or lost its
   * connection, and calls fail at once instead of waiting. A node that exits or resets its
   * connections is noticed at once; one that goes silent loses its calls within 2 s to the health
   * probes of a list target, but counts here only once keepalive drops its connection (about
   * 11 s, the smallest interval gRPC allows). While degraded, the client asks every node to
   * reconnect once a second and each acquire still tries the cluster first, so the client leaves
   * degraded mode by itself, as soon as one node is READY. Entering logs one WARN line (with the local rates in
   * LOCAL mode), leaving one INFO line.
   */
  public boolean isDegraded() {
    return runtime.isDegraded();
  }

  /**
   * Stops lease renewal and, if the client built its own channel, shuts it down (waiting up to 5 s
   * for calls in flight, such as releases). A channel passed to {@link Builder#channel} is left
   * open. Permits still open are not released: their leases run out at the coordinator.
   * Idempotent.
   */
  @Override
  public void close() {
    runtime.close();
  }

  // ---- for tests ----

  ClientRuntime runtime() {
    return runtime;
  }

  ManagedChannel channel() {
    return runtime.channel();
  }

  /** For tests: grants that reached this client later than their freshness and were confirmed. */
  long lateGrants() {
    return runtime.lateGrants();
  }

  /** Whether every node of a list target has passed a health probe; true for other targets. */
  boolean everyNodeAnswered() {
    return runtime.everyNodeAnswered();
  }

  /**
   * Builds a {@link SluiceClient}. Each setter checks its value at once and may be called only
   * once: a value set twice is a mistake, not an override.
   */
  public static final class Builder {

    String target;
    Duration defaultTimeout;
    Lane defaultLane;
    String defaultTenant;
    Executor executor;
    int sessionStreams;
    String apiKey;
    Duration deadlineMargin;
    boolean tls;
    Path tlsTrust;
    Path tlsCert;
    Path tlsKey;
    ManagedChannel channel;
    ScheduledExecutorService scheduler;
    FailureMode failureMode;
    MeterRegistry meterRegistry;
    LongSupplier ticker;
    ClientInterceptor interceptor;

    private Builder() {}

    /**
     * The coordinator node or nodes to connect to, in one of three forms:
     *
     * <ul>
     *   <li>{@code host:port}, e.g. {@code sluice:7420} ({@code [::1]:7420} for IPv6);
     *   <li>several nodes, comma-separated: {@code h1:7420,h2:7421,h3:7422};
     *   <li>a gRPC target URI, e.g. {@code dns:///sluice.internal:7420}: every A/AAAA record of the
     *       name is a node.
     * </ul>
     *
     * Calls are spread over every node that is up (gRPC {@code round_robin}) and fail over between
     * them; see {@link SluiceClient}. Default: the {@code SLUICE_TARGET} environment variable (any
     * of the forms) if set, else {@code localhost:7420}. Cannot be combined with {@link #channel}.
     *
     * @throws IllegalArgumentException if empty, if a {@code host:port} lacks a port in 1..65535,
     *     or if a list has an empty element; the message names the problem and the fix
     * @throws IllegalStateException if already set, or a channel was set
     */
    public Builder target(String hostPort) {
      Objects.requireNonNull(hostPort, "target must not be null; leave it unset for $SLUICE_TARGET or localhost:7420");
      Targets.check(hostPort, "target");
      requireUnset(target, "target");
      if (channel != null) {
        throw new IllegalStateException("a channel was already set; set either target or channel, not both");
      }
      this.target = hostPort;
      return this;
    }

    /**
     * How long an acquire may wait for a grant when its {@link AcquireOptions} set no timeout.
     * Zero means try once without waiting. Default: 30 seconds.
     *
     * @throws IllegalArgumentException if negative
     * @throws IllegalStateException if already set
     */
    public Builder defaultTimeout(Duration timeout) {
      Objects.requireNonNull(timeout, "defaultTimeout must not be null; leave it unset for 30 s");
      if (timeout.isNegative()) {
        throw new IllegalArgumentException(
            "defaultTimeout is " + HumanDurations.format(timeout) + "; it must be >= 0 (zero means try once without waiting)");
      }
      requireUnset(defaultTimeout, "defaultTimeout");
      this.defaultTimeout = timeout;
      return this;
    }

    /**
     * The lane of an acquire whose {@link AcquireOptions} set none. Default: {@link Lane#DEFAULT}.
     *
     * @throws IllegalStateException if already set
     */
    public Builder defaultLane(Lane lane) {
      Objects.requireNonNull(lane, "defaultLane must not be null; leave it unset for Lane.DEFAULT");
      requireUnset(defaultLane, "defaultLane");
      this.defaultLane = lane;
      return this;
    }

    /**
     * The tenant of an acquire whose {@link AcquireOptions} set none (see
     * {@link AcquireOptions.Builder#tenant}): 1 to 64 characters of {@code A-Z a-z 0-9 . _ : -}.
     * Default: none, which the coordinator counts as the tenant {@code default} (or the API key's
     * tenant, for a key bound to one).
     *
     * @throws IllegalArgumentException if not a valid tenant name
     * @throws IllegalStateException if already set
     */
    public Builder defaultTenant(String tenant) {
      Objects.requireNonNull(tenant, "defaultTenant must not be null; leave it unset for none");
      AcquireOptions.checkName("defaultTenant", tenant, "'search'");
      requireUnset(defaultTenant, "defaultTenant");
      this.defaultTenant = tenant;
      return this;
    }

    /**
     * Where {@link SluiceClient#acquireAsync} futures are completed, and so where their
     * non-async dependent stages run. Default: directly on the thread that received the answer
     * (no hand-off): with the client's own channel that is the network event loop, as with
     * Lettuce's futures, or, for a local grant while degraded, the client's timer thread. Stages
     * there must be short and must never block: a blocking {@code acquire}, {@code report} or
     * {@code close} made there is refused with {@link IllegalStateException} (close only skips
     * its wait). Set an executor here, or use the {@code *Async} stage methods, for work that
     * blocks or runs long. Blocking {@code acquire} does not use this executor.
     *
     * @throws IllegalStateException if already set
     */
    public Builder executor(Executor executor) {
      Objects.requireNonNull(executor, "executor must not be null; leave it unset to complete on the gRPC thread");
      requireUnset(this.executor, "executor");
      this.executor = executor;
      return this;
    }

    /**
     * The API key sent with every call ({@code authorization: Bearer <key>}); needed once the
     * coordinator has any key. Default: the environment variable {@code SLUICE_API_KEY}, else none.
     * The key is never logged.
     *
     * @throws IllegalArgumentException if blank or not printable ASCII
     * @throws IllegalStateException if already set
     */
    public Builder apiKey(String key) {
      Objects.requireNonNull(key, "apiKey must not be null; leave it unset to use SLUICE_API_KEY");
      if (this.apiKey != null) {
        throw new IllegalStateException("apiKey was already set; set it once");
      }
      String k = key.trim();
      if (k.isEmpty() || !k.chars().allMatch(c -> c > 0x20 && c < 0x7f)) {
        throw new IllegalArgumentException("apiKey must be a non-blank key of printable ASCII (slk_...); create"
            + " one with `sluice key create`");
      }
      this.apiKey = k;
      return this;
    }

    /**
     * Speak TLS to the coordinator, trusting the JVM's default CAs (use {@link #tlsTrust} for a
     * private CA). Default: plaintext. Cannot be combined with {@link #channel}.
     */
    public Builder tls() {
      this.tls = true;
      return this;
    }

    /**
     * Speak TLS and trust the CA certificates in this PEM file (instead of the JVM's defaults).
     *
     * @throws IllegalArgumentException if the file is not readable
     * @throws IllegalStateException if already set
     */
    public Builder tlsTrust(Path caCertificates) {
      requireUnset(this.tlsTrust, "tlsTrust");
      this.tlsTrust = readable(caCertificates, "tlsTrust");
      this.tls = true;
      return this;
    }

    /**
     * Present this client certificate (PEM chain, PEM PKCS#8 unencrypted key) to a coordinator
     * that requires one (mTLS). Implies {@link #tls}.
     *
     * @throws IllegalArgumentException if a file is not readable
     * @throws IllegalStateException if already set
     */
    public Builder tlsClientCertificate(Path certChain, Path privateKey) {
      requireUnset(this.tlsCert, "tlsClientCertificate");
      this.tlsCert = readable(certChain, "tlsClientCertificate certChain");
      this.tlsKey = readable(privateKey, "tlsClientCertificate privateKey");
      this.tls = true;
      return this;
    }

    private static Path readable(Path p, String what) {
      Objects.requireNonNull(p, what);
      if (!java.nio.file.Files.isReadable(p)) {
        throw new IllegalArgumentException(what + ": " + p + " is missing or unreadable; give a readable PEM file");
      }
      return p;
    }

    ChannelCredentials credentials() {
      if (!tls) {
        return InsecureChannelCredentials.create();
      }
      TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
      try {
        if (tlsTrust != null) {
          b.trustManager(tlsTrust.toFile());
        }
        if (tlsCert != null) {
          b.keyManager(tlsCert.toFile(), tlsKey.toFile());
        }
      } catch (java.io.IOException | IllegalArgumentException e) {
        throw new IllegalArgumentException("cannot use the TLS files (trust " + tlsTrust + ", certificate "
            + tlsCert + ", key " + tlsKey + "): " + e.getMessage() + "; give PEM files (key: unencrypted PKCS#8)", e);
      }
      return b.build();
    }

    /**
     * Sends acquires and releases on {@code streams} long-lived {@code Session} streams instead of
     * one unary call each: for high-rate clients (thousands of permits a second from one
     * process). Calls made at the same moment share messages, so the transport's per-message
     * cost is paid once per batch; a lone call is sent at once, as a unary one would be. Same
     * guarantees, failover and failure modes as unary calls: an acquire on a stream that breaks
     * is retried with its request id on a new stream. Differences: a release is not answered, so
     * a refused settle is applied by the coordinator as a plain release and a permit whose lease
     * had already run out is not reported; each stream stays on the node it opened on until it
     * breaks (give several streams, or use unary calls, to spread one client over several
     * nodes). Default: 0, unary calls.
     *
     * @param streams how many streams, 1 to 16; acquires are spread over them
     * @throws IllegalArgumentException if out of range
     * @throws IllegalStateException if already set
     */
    public Builder session(int streams) {
      if (streams < 1 || streams > 16) {
        throw new IllegalArgumentException("session streams must be 1 to 16, got " + streams
            + "; 1 suits one coordinator node, one per node spreads a client over several");
      }
      if (sessionStreams != 0) {
        throw new IllegalStateException("session is already set; set it once");
      }
      this.sessionStreams = streams;
      return this;
    }

    /**
     * For tests and custom transports (in-process, TLS, interceptors): use this channel instead of
     * building one from {@link #target}. The client never shuts it down; the caller owns it. Its
     * nodes get no health probes: a silent node on it is found only by the channel's own
     * keepalive, if any. Default: a plaintext channel to the target, owned and shut down by the
     * client.
     *
     * @throws IllegalStateException if already set, or a target was set
     */
    public Builder channel(ManagedChannel channel) {
      Objects.requireNonNull(channel, "channel must not be null; leave it unset to connect to the target");
      requireUnset(this.channel, "channel");
      if (target != null) {
        throw new IllegalStateException("a target was already set; set either target or channel, not both");
      }
      this.channel = channel;
      return this;
    }

    /**
     * What acquires do while the client is degraded (no coordinator node answers; see
     * {@link SluiceClient#isDegraded()}): {@link FailureMode#FAIL_CLOSED}, {@link FailureMode#FAIL_OPEN}
     * or {@link FailureMode#local(double)}. Default: {@link FailureMode#FAIL_CLOSED}, never calling
     * the upstream without a grant.
     *
     * @throws IllegalStateException if already set
     */
    public Builder failureMode(FailureMode mode) {
      Objects.requireNonNull(mode, "failureMode must not be null; leave it unset for FailureMode.FAIL_CLOSED");
      requireUnset(failureMode, "failureMode");
      this.failureMode = mode;
      return this;
    }

    /**
     * Where to register the client's meters: the gauge {@code sluice.client.degraded} (1 while
     * degraded, 0 otherwise; tag {@code mode}), removed again when the client is closed. Default:
     * none.
     *
     * @throws IllegalStateException if already set
     */
    public Builder meterRegistry(MeterRegistry registry) {
      Objects.requireNonNull(registry, "meterRegistry must not be null; leave it unset for no meters");
      requireUnset(meterRegistry, "meterRegistry");
      this.meterRegistry = registry;
      return this;
    }

    /** For tests: the client's nanosecond clock (timeouts, retries, degraded mode, local limiter). */
    /**
     * Test hook: the margin added to an acquire's timeout for its gRPC deadline (default 5 s). Tests
     * that run the server on a fake clock for longer than that in real time raise it, so a loaded
     * machine cannot turn the margin into a cancelled call.
     */
    Builder deadlineMargin(Duration margin) {
      this.deadlineMargin = Objects.requireNonNull(margin);
      return this;
    }

    Builder ticker(LongSupplier ticker) {
      Objects.requireNonNull(ticker, "ticker");
      requireUnset(this.ticker, "ticker");
      this.ticker = ticker;
      return this;
    }

    /** For tests: watches every call on the channel the client builds from its target. */
    Builder intercept(ClientInterceptor interceptor) {
      Objects.requireNonNull(interceptor, "interceptor");
      requireUnset(this.interceptor, "interceptor");
      this.interceptor = interceptor;
      return this;
    }

    /** For tests: the scheduler of lease renewals and retries; the client does not shut it down. */
    Builder scheduler(ScheduledExecutorService scheduler) {
      Objects.requireNonNull(scheduler, "scheduler");
      requireUnset(this.scheduler, "scheduler");
      this.scheduler = scheduler;
      return this;
    }

    /**
     * A new client. Building never waits on the network: the channel that carries the calls
     * connects on first use, and an unreachable coordinator shows up as
     * {@link SluiceUnavailableException} on the first call, not here. Call
     * {@link SluiceClient#warmUp} next so that the first acquire does not pay for connecting.
     *
     * @throws IllegalArgumentException if {@code SLUICE_TARGET} is used and is not a valid target
     */
    public SluiceClient build() {
      if (channel != null) {
        if (tls) {
          throw new IllegalStateException("tls settings apply to the channel the client builds from its target;"
              + " a channel passed to channel(...) brings its own credentials: set one or the other");
        }
        return new SluiceClient(new ClientRuntime(this, null));
      }
      return new SluiceClient(new ClientRuntime(this, target != null ? target : defaultTarget(System::getenv)));
    }

    static String defaultTarget(UnaryOperator<String> env) {
      String fromEnv = env.apply(ClientRuntime.TARGET_ENV);
      if (fromEnv == null || fromEnv.isBlank()) {
        return ClientRuntime.DEFAULT_TARGET;
      }
      Targets.check(fromEnv.trim(), "environment variable " + ClientRuntime.TARGET_ENV);
      return fromEnv.trim();
    }

    private static void requireUnset(Object current, String name) {
      if (current != null) {
        throw new IllegalStateException(name + " was already set to " + current + "; set it once");
      }
    }
  }
}
