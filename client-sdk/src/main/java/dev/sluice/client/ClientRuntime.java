package dev.sluice.client;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.ReleaseResponse;
import dev.sluice.proto.v1.ReportRequest;
import dev.sluice.proto.v1.ReportResponse;
import io.grpc.ConnectivityState;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import dev.sluice.proto.v1.CancelRequest;
import dev.sluice.proto.v1.CancelResponse;
import dev.sluice.proto.v1.EstimateRequest;
import dev.sluice.proto.v1.EstimateResponse;
import java.util.UUID;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;
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
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What a {@link SluiceClient} does: its channel, stubs, timers, lease renewal, failover, degraded
 * mode and the calls themselves. {@link SluiceClient} is the public API over it and adds nothing
 * but argument-free overloads; everything here is package-private, so the SDK's public surface
 * stays one class and its builder. Log lines keep the logger name {@code SluiceClient}.
 */
final class ClientRuntime implements AutoCloseable {

  // Named after the public class: users configure its logger.
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
  private final String defaultTenant;
  private final Executor executor;
  private final ScheduledExecutorService scheduler;
  private final boolean ownsScheduler;
  private final LongSupplier ticker;
  /** Parses reports' headers; warns about bad ones once per resource per few minutes. */
  private final ReportHeaders reportHeaders;
  private final Retrier retrier;
  private final LeaseRenewer renewer;
  private final Fallback fallback;
  private final ClusterHealth health;
  private final NodeProber prober; // null unless the target is a list and grpc-services is present
  private final SessionLink session; // null unless Builder.session
  private final Runnable unregisterGauge; // null without a meter registry
  private final AtomicLong lastRenewAll;
  private final Transit transit = new Transit();
  /** Grants that arrived later than their freshness and were confirmed (AcquireCall). */
  private final AtomicLong lateGrants = new AtomicLong();
  private final AtomicBoolean closed = new AtomicBoolean();
  private final Duration deadlineMargin;
  /**
   * Request ids: 128 random bits per client, then a counter. As unique as a random UUID each, without
   * a SecureRandom call (a lock shared by every thread) per acquire.
   */
  private final String idPrefix = UUID.randomUUID().toString() + "-";
  private final AtomicLong ids = new AtomicLong();

  /** @param target the checked target to build a channel to; null to use the builder's channel */
  ClientRuntime(SluiceClient.Builder b, String target) {
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
    this.defaultTenant = b.defaultTenant;
    this.executor = b.executor != null ? b.executor : Runnable::run;
    this.lastRenewAll = new AtomicLong(ticker.getAsLong() - RENEW_ALL_SPACING.toNanos());
    this.retrier = new Retrier(scheduler, ticker);
    this.reportHeaders = new ReportHeaders(ticker);
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

  /** See {@link SluiceClient#acquire}. */
  Permit acquire(String resource, Load load, AcquireOptions options) throws InterruptedException {
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

  /** See {@link SluiceClient#acquireAsync}. */
  CompletableFuture<Permit> acquireAsync(String resource, Load load, AcquireOptions options) {
    return start(resource, load, options, executor).future;
  }

  /** See {@link SluiceClient#warmUp}. */
  boolean warmUp(Duration timeout) throws InterruptedException {
    Objects.requireNonNull(timeout, "timeout must not be null; e.g. Duration.ofSeconds(5)");
    if (timeout.isNegative()) {
      throw new IllegalArgumentException("warmUp timeout is " + HumanDurations.format(timeout) + "; it must be >= 0");
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
    // A grant's message through its parser, then one acquire through the same code as every
    // acquire (AcquireCall, the request message, the stub or session, the error mapping) for the
    // empty name, which a coordinator refuses in its gRPC layer before its engine and store.
    var acquire = CoordinatorGrpc.getAcquireMethod();
    acquire.parseResponse(acquire.streamResponse(AcquireResponse.getDefaultInstance()));
    AcquireOptions once = AcquireOptions.builder()
        .timeout(Duration.ofNanos(Math.max(1, deadline - ticker.getAsLong()))).build();
    AcquireCall call = start("", Load.DEFAULT, once, Runnable::run);
    try {
      call.future.get().close(); // only a coordinator that grants the empty name (a test double) gets here
    } catch (ExecutionException refused) {
      // expected: any answer has warmed the path
    }
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

  /** See {@link SluiceClient#reportThrottled}. */
  Duration reportThrottled(String resource, Duration retryAfter, Map<String, String> headers) {
    refuseBlockingInCallback("reportThrottled", resource);
    return await(sendReport(resource, true, retryAfter, headers, Runnable::run), "report", resource);
  }

  /** See {@link SluiceClient#reportHeaders}. */
  Duration reportHeaders(String resource, Map<String, String> headers) {
    refuseBlockingInCallback("reportHeaders", resource);
    return await(sendReport(resource, false, null, headers, Runnable::run), "report", resource);
  }

  /** See {@link SluiceClient#reportThrottledAsync}. */
  CompletableFuture<Duration> reportThrottledAsync(String resource, Duration retryAfter,
      Map<String, String> headers) {
    return sendReport(resource, true, retryAfter, headers, executor);
  }

  /** See {@link SluiceClient#reportHeadersAsync}. */
  CompletableFuture<Duration> reportHeadersAsync(String resource, Map<String, String> headers) {
    return sendReport(resource, false, null, headers, executor);
  }

  /** See {@link SluiceClient#isDegraded}. */
  boolean isDegraded() {
    return health.isDegraded();
  }

  /** See {@link SluiceClient#close}. */
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

  /** How long answers normally spend on the way (AcquireCall's late grants). */
  Transit transit() {
    return transit;
  }

  /** Counts a grant that reached this client late and was confirmed; returns the new count. */
  long lateGrant() {
    return lateGrants.incrementAndGet();
  }

  /** Grants that reached this client later than their freshness and were confirmed. */
  long lateGrants() {
    return lateGrants.get();
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
    return newPermit(resource, "", response);
  }

  /** @param model the model the acquire named ("" for none), sent again with the settle */
  GrpcPermit newPermit(String resource, String model, AcquireResponse response) {
    GrpcPermit permit = new GrpcPermit(this, response.getPermitId(), resource, response.getMember(),
        Load.fromServer(response.getGrantedMap()), Protos.toJava(response.getWaited()),
        Protos.toJava(response.getLeaseTtl()), model);
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

  /** Sends one report through {@link #idempotent}. */
  private CompletableFuture<Duration> sendReport(String resource, boolean throttled, Duration retryAfter,
      Map<String, String> headers, Executor delivery) {
    Objects.requireNonNull(resource, "resource");
    Objects.requireNonNull(headers, "headers must not be null; use Map.of() for none");
    if (retryAfter != null && retryAfter.isNegative()) {
      throw new IllegalArgumentException("retryAfter is " + HumanDurations.format(retryAfter) + "; it must be >= 0, or null to read the headers");
    }
    checkOpen();
    ReportHeaders.Parsed parsed = ReportHeaders.parse(headers, java.time.Instant.now());
    reportHeaders.warnOnce(resource, parsed);
    ReportRequest.Builder builder = ReportRequest.newBuilder()
        .setResource(resource)
        .setThrottled(throttled)
        .putAllRemaining(parsed.remaining())
        .putAllLimits(parsed.limits());
    if (throttled) {
      Duration pause = retryAfter != null ? retryAfter : parsed.retryAfter();
      if (pause != null) {
        builder.setRetryAfter(Protos.toProto(pause));
      }
    }
    ReportRequest request = builder.build();
    return this.<ReportResponse, Duration>idempotent("report", resource,
        (deadline, observer) -> stub.withDeadlineAfter(deadline, TimeUnit.NANOSECONDS).report(request, observer),
        response -> response == null ? Duration.ZERO : Protos.toJava(response.getPausedFor()), delivery);
  }

  /** See {@link SluiceClient#estimate(String, Load, Lane, String)}. */
  WaitEstimate estimate(String resource, Load load, Lane lane, String tenant) {
    refuseBlockingInCallback("estimate", resource);
    return await(estimateAsync(resource, load, lane, tenant, Runnable::run), "estimate", resource);
  }

  /** See {@link SluiceClient#estimateAsync}; {@code lane} and {@code tenant} null for the client's defaults. */
  CompletableFuture<WaitEstimate> estimateAsync(String resource, Load load, Lane lane, String tenant) {
    return estimateAsync(resource, load, lane, tenant, executor);
  }

  private CompletableFuture<WaitEstimate> estimateAsync(String resource, Load load, Lane lane, String tenant,
      Executor delivery) {
    Objects.requireNonNull(resource, "resource");
    Objects.requireNonNull(load, "load must not be null; use Load.requests(1) for a plain call");
    if (tenant != null) {
      AcquireOptions.checkName("tenant", tenant, "'search'");
    }
    checkOpen();
    EstimateRequest.Builder request = EstimateRequest.newBuilder()
        .setResource(resource)
        .putAllLoad(load.asMap())
        .setLane(Protos.toProto(lane != null ? lane : defaultLane));
    String who = tenant != null ? tenant : defaultTenant;
    if (who != null) {
      request.setTenant(who);
    }
    EstimateRequest built = request.build();
    return this.<EstimateResponse, WaitEstimate>idempotent("estimate", resource,
        (deadline, observer) -> stub.withDeadlineAfter(deadline, TimeUnit.NANOSECONDS).estimate(built, observer),
        WaitEstimate::of, delivery);
  }

  /**
   * Sends one idempotent unary call, retried on UNAVAILABLE (on another node) for up to {@link
   * #CALL_DEADLINE}, not retried while degraded (no node is up to take it), and completes the
   * future through {@code delivery} with {@code answer} of the response or the mapped failure.
   */
  private <R, T> CompletableFuture<T> idempotent(String operation, String resource, Retrier.Send<R> send,
      java.util.function.Function<R, T> answer, Executor delivery) {
    CompletableFuture<T> result = new CompletableFuture<>();
    Retrier.Callback<R> done = (response, failure, retries) -> deliver(delivery, failure == null
        ? () -> result.complete(answer.apply(response))
        : () -> result.completeExceptionally(Errors.map(failure, operation, resource)), operation, resource);
    if (isDegraded()) {
      retrier.once(CALL_DEADLINE.toNanos(), send, done); // no node is up: fail at once rather than retry for 10 s
    } else {
      retrier.unary(CALL_DEADLINE.toNanos(), send, this::failoverNoticed, done);
    }
    return result;
  }

  private static <T> T await(CompletableFuture<T> call, String operation, String resource) {
    try {
      return call.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new SluiceException(operation + " on resource '" + resource + "' was interrupted before the coordinator"
          + " answered" + (operation.equals("report") ? "; it may still be applied" : ""), e);
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
    String tenant = options.tenant() != null ? options.tenant() : defaultTenant;
    if (tenant != null) {
      request.setTenant(tenant); // in the request itself: every retry, failover and session carries it
    }
    // Every acquire carries an id so a cancel can withdraw exactly this waiter (see AcquireCall).
    String requestId = options.requestId() != null ? options.requestId() : idPrefix + Long.toString(ids.incrementAndGet(), 36);
    request.setRequestId(requestId);
    if (options.model() != null) {
      request.setModel(options.model());
    }
    request.setFailIfLate(options.failIfLate()); // its refusal (DEADLINE_EXCEEDED) is an answer: never retried
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

}
