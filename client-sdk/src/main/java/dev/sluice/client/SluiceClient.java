package dev.sluice.client;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.DescribeRequest;
import dev.sluice.proto.v1.DescribeResponse;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.ReleaseResponse;
import dev.sluice.proto.v1.ReportRequest;
import dev.sluice.proto.v1.ReportResponse;
import io.grpc.ClientInterceptor;
import io.grpc.ConnectivityState;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptors;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import io.micrometer.core.instrument.MeterRegistry;
import dev.sluice.proto.v1.CancelRequest;
import dev.sluice.proto.v1.CancelResponse;
import java.util.UUID;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;
import java.util.function.UnaryOperator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

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

  private static final Logger log = LoggerFactory.getLogger(SluiceClient.class);

  static final String TARGET_ENV = "SLUICE_TARGET";
  static final String API_KEY_ENV = "SLUICE_API_KEY";
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  static final String DEFAULT_TARGET = "localhost:7420";
  static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);
  /** Added to an acquire's timeout for its gRPC deadline: the server answers first, a dead one cannot hang us. */
  static final Duration DEADLINE_MARGIN = Duration.ofSeconds(5);
  /** Deadline of the short calls (release, report). */
  static final Duration CALL_DEADLINE = Duration.ofSeconds(10);
  private static final Duration SHUTDOWN_GRACE = Duration.ofSeconds(5);

  /**
   * Set while this thread completes an acquire's future: the network thread (or the timer, for a
   * local grant), where the non-async stages of {@link #acquireAsync} futures run unless an
   * {@link Builder#executor} is set. A blocking call there would stall every call of the client.
   */
  static final ThreadLocal<Boolean> IN_CALLBACK = ThreadLocal.withInitial(() -> Boolean.FALSE);

  /** Failovers noticed closer together than this renew the leases once. */
  private static final Duration RENEW_ALL_SPACING = Duration.ofMillis(500);

  private final ManagedChannel channel;
  private final boolean ownsChannel;
  private final CoordinatorGrpc.CoordinatorStub stub;
  private final Duration defaultTimeout;
  private final Lane defaultLane;
  private final Executor executor;
  private final ScheduledExecutorService scheduler;
  private final boolean ownsScheduler;
  private final LongSupplier ticker;
  private final Retrier retrier;
  private final LeaseRenewer renewer;
  private final Fallback fallback;
  private final ClusterHealth health;
  private final NodeProber prober; // null unless the target is a list and grpc-services is present
  private final SessionLink session; // null unless Builder.session
  private final Runnable unregisterGauge; // null without a meter registry
  private final AtomicLong lastRenewAll;
  private final AtomicBoolean closed = new AtomicBoolean();
  private final Duration deadlineMargin;
  /**
   * Request ids: 128 random bits per client, then a counter. As unique as a random UUID each, without
   * a SecureRandom call (a lock shared by every thread) per acquire.
   */
  private final String idPrefix = UUID.randomUUID().toString() + "-";
  private final AtomicLong ids = new AtomicLong();

  /** @param target the checked target to build a channel to; null to use the builder's channel */
  private SluiceClient(Builder b, String target) {
    ChannelCredentials credentials = b.credentials(); // first: a bad file must not leak the scheduler
    this.ownsScheduler = b.scheduler == null;
    this.scheduler = b.scheduler != null ? b.scheduler : newScheduler();
    this.ticker = b.ticker != null ? b.ticker : System::nanoTime;
    ListNodes nodes = target != null && target.contains(",")
        ? new ListNodes(Targets.parseList(target), scheduler) : null;
    this.ownsChannel = target != null;
    try {
      this.channel = target != null ? Targets.channel(target, credentials, b.interceptor, nodes) : b.channel;
    } catch (RuntimeException e) {
      if (ownsScheduler) {
        scheduler.shutdownNow();
      }
      throw e;
    }
    this.prober = nodes == null ? null : NodeProber.forList(nodes, credentials, scheduler, ticker);
    String apiKey = b.apiKey != null ? b.apiKey : blankToNull(System.getenv(API_KEY_ENV));
    Channel calls = channel;
    if (apiKey != null) {
      Metadata headers = new Metadata();
      headers.put(AUTHORIZATION, "Bearer " + apiKey);
      calls = ClientInterceptors.intercept(channel, MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    this.stub = CoordinatorGrpc.newStub(calls);
    this.defaultTimeout = b.defaultTimeout != null ? b.defaultTimeout : DEFAULT_TIMEOUT;
    this.deadlineMargin = b.deadlineMargin != null ? b.deadlineMargin : DEADLINE_MARGIN;
    this.defaultLane = b.defaultLane != null ? b.defaultLane : Lane.DEFAULT;
    this.executor = b.executor != null ? b.executor : Runnable::run;
    this.lastRenewAll = new AtomicLong(ticker.getAsLong() - RENEW_ALL_SPACING.toNanos());
    this.retrier = new Retrier(scheduler, ticker);
    this.renewer = new LeaseRenewer(stub, scheduler, retrier);
    this.session = b.sessionStreams > 0 ? new SessionLink(this, stub, b.sessionStreams, scheduler, ticker) : null;
    this.fallback = new Fallback(b.failureMode != null ? b.failureMode : FailureMode.FAIL_CLOSED, stub, scheduler,
        ticker);
    this.health = new ClusterHealth(channel, scheduler, ticker, new ClusterHealth.Listener() {
      @Override
      public void entered() {
        log.warn(fallback.enter());
      }

      @Override
      public void left(Duration degradedFor) {
        log.info(fallback.leave(degradedFor));
        renewAllNow();
      }
    });
    // Micrometer is optional: DegradedGauge, the one class that names its types, is loaded only
    // when a registry was given, and whoever gave one has Micrometer on the classpath.
    this.unregisterGauge = b.meterRegistry == null ? null
        : DegradedGauge.register(b.meterRegistry, this, fallback.mode().toString());
    health.start();
    if (prober != null) {
      prober.start();
    }
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
    if (Thread.interrupted()) {
      throw new InterruptedException("interrupted before acquiring on '" + resource + "'");
    }
    refuseBlockingInCallback("acquire", resource);
    // Completed directly on the gRPC thread: the caller is parked on the future, nothing else runs.
    AcquireCall call = start(resource, load, options, Runnable::run);
    try {
      return call.future.get();
    } catch (InterruptedException e) {
      call.abandon();
      throw e;
    } catch (ExecutionException e) {
      throw inCaller(e.getCause());
    }
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
    return start(resource, load, options, executor).future;
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
   * marshallers; and sends one {@code Describe} for the empty resource name, which the coordinator
   * refuses in its gRPC layer without touching its store (any answer, even a refusal, has
   * warmed the path).
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
    Objects.requireNonNull(timeout, "timeout must not be null; e.g. Duration.ofSeconds(5)");
    if (timeout.isNegative()) {
      throw new IllegalArgumentException("warmUp timeout is " + timeout + "; it must be >= 0");
    }
    refuseBlockingInCallback("warmUp", "");
    checkOpen();
    long deadline = ticker.getAsLong() + Protos.saturatedNanos(timeout);
    if (!awaitReady(deadline)) {
      return false;
    }
    if (session != null) {
      session.openAll();
    }
    var acquire = CoordinatorGrpc.getAcquireMethod();
    acquire.parseRequest(acquire.streamRequest(AcquireRequest.getDefaultInstance()));
    acquire.parseResponse(acquire.streamResponse(AcquireResponse.getDefaultInstance()));
    CountDownLatch answered = new CountDownLatch(1);
    stub.withDeadlineAfter(Math.max(1, deadline - ticker.getAsLong()), TimeUnit.NANOSECONDS)
        .describe(DescribeRequest.getDefaultInstance(), new StreamObserver<DescribeResponse>() {
          @Override
          public void onNext(DescribeResponse value) {}

          @Override
          public void onError(Throwable t) {
            answered.countDown();
          }

          @Override
          public void onCompleted() {
            answered.countDown();
          }
        });
    answered.await();
    return channel.getState(false) == ConnectivityState.READY;
  }

  /** Asks the channel to connect and waits, by its state changes, until it is READY or the deadline. */
  private boolean awaitReady(long deadline) throws InterruptedException {
    while (true) {
      ConnectivityState state = channel.getState(true);
      long left = deadline - ticker.getAsLong();
      if (state == ConnectivityState.READY) {
        return true;
      }
      if (state == ConnectivityState.SHUTDOWN || left <= 0) {
        return false;
      }
      CountDownLatch changed = new CountDownLatch(1);
      channel.notifyWhenStateChanged(state, changed::countDown);
      changed.await(left, TimeUnit.NANOSECONDS);
    }
  }

  /**
   * Tells the coordinator the upstream refused a call (HTTP 429 or equivalent), so it pauses the
   * resource for every worker and empties its view of what is left. Blocks until the coordinator
   * answers, at most 10 s (retrying on another node when one fails with UNAVAILABLE; at once
   * while the client is degraded).
   *
   * @param retryAfter how long the upstream asked to wait; null to read it from {@code headers}
   *     ({@code retry-after-ms}, then {@code retry-after} in seconds). When neither gives one the
   *     coordinator pauses for 1 s.
   * @param headers the upstream's HTTP response headers, names in any case; {@code Map.of()} for
   *     none. Every integer {@code x-ratelimit-remaining-<dimension>} header is reported as what is
   *     left of that dimension; values that do not parse are skipped.
   * @return how long the coordinator has now paused the resource
   * @throws IllegalArgumentException if {@code retryAfter} is negative
   * @throws SluiceException (a subclass, as for acquire) if the coordinator refused the report or
   *     did not answer in time; if the calling thread is interrupted while waiting (its interrupt
   *     status is kept; the report may still be applied)
   * @throws IllegalStateException if the client is closed
   */
  public Duration reportThrottled(String resource, Duration retryAfter, Map<String, String> headers) {
    refuseBlockingInCallback("reportThrottled", resource);
    return awaitReport(sendReport(resource, true, retryAfter, headers, Runnable::run), resource);
  }

  /**
   * Tells the coordinator what the upstream's rate-limit headers say is left, after a call it
   * accepted: every integer {@code x-ratelimit-remaining-<dimension>} header (names in any case)
   * lowers the coordinator's view of that dimension; it never raises it. Other headers, and values
   * that do not parse, are skipped. Blocks as {@link #reportThrottled} does.
   *
   * @param headers the upstream's HTTP response headers; {@code Map.of()} for none
   * @return how long the resource is paused (by an earlier throttle report); zero when it is not
   * @throws SluiceException (a subclass) if the coordinator refused the report or did not answer
   * @throws IllegalStateException if the client is closed
   */
  public Duration reportHeaders(String resource, Map<String, String> headers) {
    refuseBlockingInCallback("reportHeaders", resource);
    return awaitReport(sendReport(resource, false, null, headers, Runnable::run), resource);
  }

  /**
   * {@link #reportThrottled} without blocking: the future completes, on the client's
   * {@linkplain Builder#executor executor}, with the pause or with the exception the blocking form
   * throws. Bad arguments and a closed client throw at once.
   */
  public CompletableFuture<Duration> reportThrottledAsync(String resource, Duration retryAfter,
      Map<String, String> headers) {
    return sendReport(resource, true, retryAfter, headers, executor);
  }

  /**
   * {@link #reportHeaders} without blocking: the future completes, on the client's
   * {@linkplain Builder#executor executor}, with the pause or with the exception the blocking form
   * throws. Bad arguments and a closed client throw at once.
   */
  public CompletableFuture<Duration> reportHeadersAsync(String resource, Map<String, String> headers) {
    return sendReport(resource, false, null, headers, executor);
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
    return health.isDegraded();
  }

  /**
   * Stops lease renewal and, if the client built its own channel, shuts it down (waiting up to 5 s
   * for calls in flight, such as releases). A channel passed to {@link Builder#channel} is left
   * open. Permits still open are not released: their leases run out at the coordinator.
   * Idempotent.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    health.close();
    if (session != null) {
      session.close();
    }
    if (prober != null) {
      prober.close();
    }
    fallback.close();
    renewer.close();
    if (unregisterGauge != null) {
      unregisterGauge.run();
    }
    if (ownsScheduler) {
      scheduler.shutdownNow();
    }
    if (!ownsChannel) {
      return;
    }
    channel.shutdown();
    if (IN_CALLBACK.get()) {
      return; // on the network thread: waiting here would hold up the very calls we wait for
    }
    try {
      if (!channel.awaitTermination(SHUTDOWN_GRACE.toNanos(), TimeUnit.NANOSECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  // ---- package-private plumbing ----

  ManagedChannel channel() {
    return channel;
  }

  CoordinatorGrpc.CoordinatorStub stub() {
    return stub;
  }

  ScheduledExecutorService scheduler() {
    return scheduler;
  }

  /** Added to an acquire's timeout for its gRPC deadline. */
  Duration deadlineMargin() {
    return deadlineMargin;
  }

  /** The session streams acquires and releases ride, or null for unary calls. */
  SessionLink session() {
    return session;
  }

  LongSupplier ticker() {
    return ticker;
  }

  Fallback fallback() {
    return fallback;
  }

  /** For tests: whether every node of a list target has passed a health probe; true for other targets. */
  boolean everyNodeAnswered() {
    return prober == null || prober.everyNodeAnswered();
  }

  /**
   * A call failed with UNAVAILABLE: a node was lost. Renew every open lease at once on the nodes
   * left (at most once per 500 ms), in case the last renewal went to the lost node.
   */
  void failoverNoticed() {
    long now = ticker.getAsLong();
    long last = lastRenewAll.get();
    if (now - last >= RENEW_ALL_SPACING.toNanos() && lastRenewAll.compareAndSet(last, now)) {
      renewAllNow();
    }
  }

  private void renewAllNow() {
    try {
      scheduler.execute(renewer::renewAllNow);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // closing
    }
  }

  GrpcPermit newPermit(String resource, AcquireResponse response) {
    GrpcPermit permit = new GrpcPermit(this, response.getPermitId(), resource,
        Load.fromServer(response.getGrantedMap()), Protos.toJava(response.getWaited()),
        Protos.toJava(response.getLeaseTtl()));
    // Registered before the caller can see the permit, so a quick close() always finds it.
    if (permit.leaseTtl().compareTo(Duration.ZERO) > 0) {
      renewer.register(permit);
    }
    return permit;
  }

  /**
   * Asks the coordinator to withdraw a waiting acquire; {@code onFailure} runs if it could not
   * be asked (then the caller falls back to cancelling the call).
   */
  void cancelWaiter(String resource, String requestId, Runnable onFailure) {
    CancelRequest request = CancelRequest.newBuilder().setResource(resource).setRequestId(requestId).build();
    // While degraded no node is up to withdraw the waiter from: one attempt, then cancel the call.
    long budget = isDegraded() ? 0 : CALL_DEADLINE.toNanos();
    retrier.<CancelResponse>unary(budget,
        (deadline, observer) -> stub.withDeadlineAfter(deadline, TimeUnit.NANOSECONDS).cancel(request, observer),
        this::failoverNoticed,
        (response, failure, retries) -> {
          if (failure != null) {
            log.debug("cancel of acquire {} on '{}' failed: {}", requestId, resource, failure.toString());
            onFailure.run();
          }
        });
  }

  /**
   * Sends a release without waiting for it; failures are logged, never thrown. Retried on
   * UNAVAILABLE (a node whose store is away answers so) in the background until the permit's
   * lease would have run out anyway, and at least {@link #CALL_DEADLINE}: a store outage shorter
   * than that still frees the slot, and a retried release the coordinator no longer knows was
   * done by the attempt that was cut off.
   */
  void release(GrpcPermit permit, ReleaseRequest request) {
    renewer.unregister(permit.resource(), permit.id());
    if (session != null && session.release(request)) {
      return;
    }
    long budget = Math.max(CALL_DEADLINE.toNanos(), permit.leaseTtl().toNanos());
    retrier.<ReleaseResponse>unary(budget,
        (deadline, observer) -> stub.withDeadlineAfter(deadline, TimeUnit.NANOSECONDS).release(request, observer),
        this::failoverNoticed,
        (response, failure, retries) -> {
          if (failure == null) {
            released(permit, request, response, retries);
          } else {
            releaseFailed(permit, request, failure);
          }
        });
  }

  private void released(GrpcPermit permit, ReleaseRequest request, ReleaseResponse response, int retries) {
    if (response == null || response.getReleased()) {
      return;
    }
    if (request.getSettle() && !request.getUnused() && retries == 0) {
      // Its lease ran out before the release: the settle had nothing to apply to.
      log.warn("permit {} on '{}' had already expired at the coordinator; its settle {} was"
              + " not applied. Keep permits shorter than their lease, or renew them",
          permit.id(), permit.resource(), request.getActualMap());
    } else {
      log.debug("permit {} on '{}' was already gone at the coordinator (released{}, or lease expired)",
          permit.id(), permit.resource(), retries > 0 ? " by an attempt cut off by a failover" : "");
    }
  }

  private void releaseFailed(GrpcPermit permit, ReleaseRequest request, Throwable t) {
    SluiceException failure = Errors.map(t, "release", permit.resource());
    if (failure instanceof InvalidRequestException && request.getSettle()) {
      // The settle was refused (say, a dimension the limit lacks). Never hold the slot
      // hostage to it: release without settling, and say why.
      log.warn("settle of permit {} on '{}' was refused, releasing without it: {}",
          permit.id(), permit.resource(), failure.getMessage());
      release(permit, request.toBuilder().clearActual().setSettle(false).build());
      return;
    }
    log.warn("releasing permit {} on '{}' failed; its lease, if any, will expire on its own: {}",
        permit.id(), permit.resource(), failure.getMessage());
  }

  /**
   * Sends one report, retried on UNAVAILABLE for up to {@link #CALL_DEADLINE} (not retried while
   * degraded: no node is up to take it), and completes the future through {@code delivery}.
   */
  private CompletableFuture<Duration> sendReport(String resource, boolean throttled, Duration retryAfter,
      Map<String, String> headers, Executor delivery) {
    Objects.requireNonNull(resource, "resource");
    Objects.requireNonNull(headers, "headers must not be null; use Map.of() for none");
    if (retryAfter != null && retryAfter.isNegative()) {
      throw new IllegalArgumentException("retryAfter is " + retryAfter + "; it must be >= 0, or null to read the headers");
    }
    checkOpen();
    ReportRequest.Builder builder = ReportRequest.newBuilder()
        .setResource(resource)
        .setThrottled(throttled)
        .putAllRemaining(ReportHeaders.remaining(headers));
    if (throttled) {
      Duration pause = retryAfter != null ? retryAfter : ReportHeaders.retryAfter(headers);
      if (pause != null) {
        builder.setRetryAfter(Protos.toProto(pause));
      }
    }
    ReportRequest request = builder.build();
    CompletableFuture<Duration> result = new CompletableFuture<>();
    Retrier.Send<ReportResponse> send =
        (deadline, observer) -> stub.withDeadlineAfter(deadline, TimeUnit.NANOSECONDS).report(request, observer);
    Retrier.Callback<ReportResponse> done = (response, failure, retries) -> deliver(delivery, failure == null
        ? () -> result.complete(response == null ? Duration.ZERO : Protos.toJava(response.getPausedFor()))
        : () -> result.completeExceptionally(Errors.map(failure, "report", resource)), "report", resource);
    if (isDegraded()) {
      retrier.once(CALL_DEADLINE.toNanos(), send, done); // no node is up: fail at once rather than retry for 10 s
    } else {
      retrier.unary(CALL_DEADLINE.toNanos(), send, this::failoverNoticed, done);
    }
    return result;
  }

  private static Duration awaitReport(CompletableFuture<Duration> report, String resource) {
    try {
      return report.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new SluiceException("report on resource '" + resource + "' was interrupted before the coordinator"
          + " answered; it may still be applied", e);
    } catch (ExecutionException e) {
      throw inCaller(e.getCause());
    }
  }

  /**
   * Completes a future through {@code delivery}, marked {@link #IN_CALLBACK} so that a blocking
   * call made in one of its stages is refused rather than stalling the network thread.
   */
  static void deliver(Executor delivery, Runnable completion, String operation, String resource) {
    boolean outer = !IN_CALLBACK.get();
    IN_CALLBACK.set(Boolean.TRUE);
    try {
      delivery.execute(completion);
    } catch (RuntimeException e) {
      // A rejecting executor must not leave the caller without an answer (or leak a grant):
      // complete here, on the gRPC thread, instead.
      log.warn("the client's executor refused to run the completion of a {} on '{}'; running it inline",
          operation, resource, e);
      completion.run();
    } finally {
      if (outer) {
        IN_CALLBACK.set(Boolean.FALSE);
      }
    }
  }

  private AcquireCall start(String resource, Load load, AcquireOptions options, Executor delivery) {
    Objects.requireNonNull(resource, "resource");
    Objects.requireNonNull(load, "load must not be null; use Load.requests(1) for a plain call");
    Objects.requireNonNull(options, "options must not be null; use AcquireOptions.defaults()");
    checkOpen();
    Duration timeout = options.timeout() != null ? options.timeout() : defaultTimeout;
    Lane lane = options.lane() != null ? options.lane() : defaultLane;
    AcquireRequest.Builder request = AcquireRequest.newBuilder()
        .setResource(resource)
        .putAllLoad(load.asMap())
        .setLane(Protos.toProto(lane))
        .setTimeout(Protos.toProto(timeout));
    // Every acquire carries an id so a cancel can withdraw exactly this waiter (see AcquireCall).
    String requestId = options.requestId() != null ? options.requestId() : idPrefix + Long.toString(ids.incrementAndGet(), 36);
    request.setRequestId(requestId);
    AcquireCall call = new AcquireCall(this, resource, load, requestId, delivery, Protos.saturatedNanos(timeout));
    call.start(request.build());
    return call;
  }

  private static void refuseBlockingInCallback(String operation, String resource) {
    if (IN_CALLBACK.get()) {
      throw new IllegalStateException("blocking SluiceClient." + operation + "('" + resource + "') was called"
          + " inside a stage of an acquireAsync future, which runs on the client's network thread: waiting"
          + " there would stall every call of this client. Use acquireAsync, a *Async stage method"
          + " (thenApplyAsync, thenComposeAsync ...), or set SluiceClient.Builder.executor(...)");
    }
  }

  private static String blankToNull(String s) {
    return s == null || s.isBlank() ? null : s.trim();
  }

  private void checkOpen() {
    if (closed.get()) {
      throw new IllegalStateException("this SluiceClient is closed; build a new one");
    }
  }

  /**
   * The failure was built on a gRPC thread; give it the blocking caller's stack trace, which is the
   * one worth reading. The gRPC side stays in the cause. Safe: this future was never shared.
   */
  private static RuntimeException inCaller(Throwable failure) {
    if (failure instanceof RuntimeException e) {
      e.fillInStackTrace();
      return e;
    }
    if (failure instanceof Error e) {
      throw e;
    }
    return new SluiceException("acquire failed unexpectedly: " + failure, failure);
  }

  /** Lease renewals, retries and the degraded-mode timers: one daemon thread, never blocked. */
  private static ScheduledExecutorService newScheduler() {
    AtomicInteger count = new AtomicInteger();
    ScheduledThreadPoolExecutor scheduler = new ScheduledThreadPoolExecutor(1, task -> {
      Thread t = new Thread(task, "sluice-client-timer-" + count.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    // Cancelled ticks (closed permits) must not pile up in the queue until their due time.
    scheduler.setRemoveOnCancelPolicy(true);
    return scheduler;
  }

  /**
   * Builds a {@link SluiceClient}. Each setter checks its value at once and may be called only
   * once: a value set twice is a mistake, not an override.
   */
  public static final class Builder {

    private String target;
    private Duration defaultTimeout;
    private Lane defaultLane;
    private Executor executor;
    private int sessionStreams;
    private String apiKey;
    private Duration deadlineMargin;
    private boolean tls;
    private Path tlsTrust;
    private Path tlsCert;
    private Path tlsKey;
    private ManagedChannel channel;
    private ScheduledExecutorService scheduler;
    private FailureMode failureMode;
    private MeterRegistry meterRegistry;
    private LongSupplier ticker;
    private ClientInterceptor interceptor;

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
            "defaultTimeout is " + timeout + "; it must be >= 0 (zero means try once without waiting)");
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
        return new SluiceClient(this, null);
      }
      return new SluiceClient(this, target != null ? target : defaultTarget(System::getenv));
    }

    static String defaultTarget(UnaryOperator<String> env) {
      String fromEnv = env.apply(TARGET_ENV);
      if (fromEnv == null || fromEnv.isBlank()) {
        return DEFAULT_TARGET;
      }
      Targets.check(fromEnv.trim(), "environment variable " + TARGET_ENV);
      return fromEnv.trim();
    }

    private static void requireUnset(Object current, String name) {
      if (current != null) {
        throw new IllegalStateException(name + " was already set to " + current + "; set it once");
      }
    }
  }
}
