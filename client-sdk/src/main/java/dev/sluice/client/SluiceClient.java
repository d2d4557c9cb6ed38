package dev.sluice.client;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.ReleaseResponse;
import dev.sluice.proto.v1.ReportRequest;
import dev.sluice.proto.v1.ReportResponse;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import dev.sluice.proto.v1.CancelRequest;
import dev.sluice.proto.v1.CancelResponse;
import java.util.UUID;
import java.time.Duration;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.UnaryOperator;
import java.util.regex.Pattern;
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
 */
public final class SluiceClient implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(SluiceClient.class);

  static final String TARGET_ENV = "SLUICE_TARGET";
  static final String DEFAULT_TARGET = "localhost:7420";
  static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);
  /** Added to an acquire's timeout for its gRPC deadline: the server answers first, a dead one cannot hang us. */
  static final Duration DEADLINE_MARGIN = Duration.ofSeconds(5);
  /** Deadline of the short calls (release, report). */
  static final Duration CALL_DEADLINE = Duration.ofSeconds(10);
  private static final Duration SHUTDOWN_GRACE = Duration.ofSeconds(5);

  private final ManagedChannel channel;
  private final boolean ownsChannel;
  private final CoordinatorGrpc.CoordinatorStub stub;
  private final CoordinatorGrpc.CoordinatorBlockingStub blockingStub;
  private final Duration defaultTimeout;
  private final Lane defaultLane;
  private final Executor executor;
  private final LeaseRenewer renewer;
  private final AtomicBoolean closed = new AtomicBoolean();

  private SluiceClient(Builder b, ManagedChannel channel, boolean ownsChannel) {
    this.channel = channel;
    this.ownsChannel = ownsChannel;
    this.stub = CoordinatorGrpc.newStub(channel);
    this.blockingStub = CoordinatorGrpc.newBlockingStub(channel);
    this.defaultTimeout = b.defaultTimeout != null ? b.defaultTimeout : DEFAULT_TIMEOUT;
    this.defaultLane = b.defaultLane != null ? b.defaultLane : Lane.DEFAULT;
    this.executor = b.executor != null ? b.executor : Runnable::run;
    this.renewer = b.scheduler != null
        ? new LeaseRenewer(stub, b.scheduler, false)
        : new LeaseRenewer(stub, newRenewalScheduler(), true);
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
   * Tells the coordinator what the upstream answered, so it can pause the resource for every
   * worker after a 429 and lower its view of what is left.
   *
   * @param throttled whether the upstream refused the call (HTTP 429 or equivalent)
   * @param retryAfter how long the upstream asked to wait; null to read it from {@code headers}
   *     ({@code retry-after-ms}, then {@code retry-after} in seconds); when neither gives one the
   *     coordinator pauses for 1 s. Ignored unless {@code throttled}.
   * @param headers the upstream's HTTP response headers, names in any case; null for none. Every
   *     integer {@code x-ratelimit-remaining-<dimension>} header is reported as what is left of
   *     that dimension; values that do not parse are skipped.
   * @return how long the coordinator has now paused the resource; zero when it is not paused
   * @throws IllegalArgumentException if {@code retryAfter} is negative
   * @throws SluiceException (a subclass, as for acquire) if the coordinator refused the report or
   *     did not answer; this call blocks until it answers, at most 10 s
   * @throws IllegalStateException if the client is closed
   */
  public Duration report(String resource, boolean throttled, Duration retryAfter, Map<String, String> headers) {
    Objects.requireNonNull(resource, "resource");
    if (retryAfter != null && retryAfter.isNegative()) {
      throw new IllegalArgumentException("retryAfter is " + retryAfter + "; it must be >= 0, or null to read the headers");
    }
    checkOpen();
    Map<String, String> h = headers != null ? headers : Map.of();
    ReportRequest.Builder request = ReportRequest.newBuilder()
        .setResource(resource)
        .setThrottled(throttled)
        .putAllRemaining(ReportHeaders.remaining(h));
    if (throttled) {
      Duration pause = retryAfter != null ? retryAfter : ReportHeaders.retryAfter(h);
      if (pause != null) {
        request.setRetryAfter(Protos.toProto(pause));
      }
    }
    try {
      ReportResponse response = blockingStub
          .withDeadlineAfter(CALL_DEADLINE.toNanos(), TimeUnit.NANOSECONDS)
          .report(request.build());
      return Protos.toJava(response.getPausedFor());
    } catch (StatusRuntimeException e) {
      throw Errors.map(e, "report", resource);
    }
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
    renewer.close();
    if (!ownsChannel) {
      return;
    }
    channel.shutdown();
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
    stub.withDeadlineAfter(CALL_DEADLINE.toNanos(), TimeUnit.NANOSECONDS)
        .cancel(
            CancelRequest.newBuilder().setResource(resource).setRequestId(requestId).build(),
            new StreamObserver<CancelResponse>() {
              @Override
              public void onNext(CancelResponse response) {}

              @Override
              public void onError(Throwable t) {
                log.debug("cancel of acquire {} on '{}' failed: {}", requestId, resource, t.toString());
                onFailure.run();
              }

              @Override
              public void onCompleted() {}
            });
  }

  /** Sends a release without waiting for it; failures are logged. */
  void release(GrpcPermit permit, ReleaseRequest request) {
    renewer.unregister(permit.resource(), permit.id());
    stub.withDeadlineAfter(CALL_DEADLINE.toNanos(), TimeUnit.NANOSECONDS)
        .release(request, new StreamObserver<ReleaseResponse>() {
          @Override
          public void onNext(ReleaseResponse response) {
            if (!response.getReleased()) {
              if (request.getSettle() && !request.getUnused()) {
                // Its lease ran out before the release: the settle had nothing to apply to.
                log.warn("permit {} on '{}' had already expired at the coordinator; its settle {} was"
                        + " not applied. Keep permits shorter than their lease, or renew them",
                    permit.id(), permit.resource(), request.getActualMap());
              } else {
                log.debug("permit {} on '{}' was already gone at the coordinator (released or lease expired)",
                    permit.id(), permit.resource());
              }
            }
          }

          @Override
          public void onError(Throwable t) {
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

          @Override
          public void onCompleted() {}
        });
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
    String requestId = options.requestId() != null ? options.requestId() : UUID.randomUUID().toString();
    request.setRequestId(requestId);
    // The server owns the timeout and answers DEADLINE_EXCEEDED itself; the margin only ends a
    // call to a coordinator that died or hangs.
    long timeoutNanos = Protos.saturatedNanos(timeout);
    long marginNanos = DEADLINE_MARGIN.toNanos();
    long deadlineNanos = timeoutNanos > Long.MAX_VALUE - marginNanos ? Long.MAX_VALUE : timeoutNanos + marginNanos;
    AcquireCall call = new AcquireCall(this, resource, requestId, delivery, timeoutNanos);
    call.start(stub.withDeadlineAfter(deadlineNanos, TimeUnit.NANOSECONDS), request.build());
    return call;
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

  private static ScheduledExecutorService newRenewalScheduler() {
    AtomicInteger count = new AtomicInteger();
    ScheduledThreadPoolExecutor scheduler = new ScheduledThreadPoolExecutor(1, task -> {
      Thread t = new Thread(task, "sluice-lease-renewer-" + count.incrementAndGet());
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

    // host:port, [v6]:port; gRPC URIs (dns:///h:p, unix:/path) are passed through as they are.
    private static final Pattern HOST_PORT = Pattern.compile("(\\[[^\\]]+\\]|[^:\\[\\]]+):(\\d{1,5})");

    private String target;
    private Duration defaultTimeout;
    private Lane defaultLane;
    private Executor executor;
    private ManagedChannel channel;
    private ScheduledExecutorService scheduler;

    private Builder() {}

    /**
     * The coordinator to connect to, as {@code host:port} (or a gRPC target URI such as
     * {@code dns:///sluice:7420}). Default: the {@code SLUICE_TARGET} environment variable if set,
     * else {@code localhost:7420}. Cannot be combined with {@link #channel}.
     *
     * @throws IllegalArgumentException if not {@code host:port} with a port in 1..65535
     * @throws IllegalStateException if already set, or a channel was set
     */
    public Builder target(String hostPort) {
      Objects.requireNonNull(hostPort, "target must not be null; leave it unset for $SLUICE_TARGET or localhost:7420");
      checkTarget(hostPort, "target");
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
     * non-async dependent stages run. Default: directly on the gRPC thread that received the
     * answer (no hand-off; with the client's own channel that is gRPC's callback pool, never the
     * network event loop). Keep such stages short, or set an executor here or use the
     * {@code *Async} stage methods, when they block or run long. Blocking {@code acquire} does
     * not use this executor.
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
     * For tests and custom transports (in-process, TLS, interceptors): use this channel instead of
     * building one from {@link #target}. The client never shuts it down; the caller owns it.
     * Default: a plaintext channel to the target, owned and shut down by the client.
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

    /** For tests: the scheduler of lease renewals; the client does not shut it down. */
    Builder scheduler(ScheduledExecutorService scheduler) {
      Objects.requireNonNull(scheduler, "scheduler");
      requireUnset(this.scheduler, "scheduler");
      this.scheduler = scheduler;
      return this;
    }

    /**
     * A new client. Connecting is lazy: an unreachable coordinator shows up as
     * {@link SluiceUnavailableException} on the first call, not here.
     *
     * @throws IllegalArgumentException if {@code SLUICE_TARGET} is used and is not {@code host:port}
     */
    public SluiceClient build() {
      if (channel != null) {
        return new SluiceClient(this, channel, false);
      }
      String resolved = target != null ? target : defaultTarget(System::getenv);
      return new SluiceClient(this, ManagedChannelBuilder.forTarget(resolved).usePlaintext().build(), true);
    }

    static String defaultTarget(UnaryOperator<String> env) {
      String fromEnv = env.apply(TARGET_ENV);
      if (fromEnv == null || fromEnv.isBlank()) {
        return DEFAULT_TARGET;
      }
      checkTarget(fromEnv.trim(), "environment variable " + TARGET_ENV);
      return fromEnv.trim();
    }

    static void checkTarget(String target, String source) {
      if (target.isBlank() || target.chars().anyMatch(Character::isWhitespace)) {
        throw new IllegalArgumentException(
            source + " '" + target + "' is empty or has spaces; give host:port, e.g. localhost:7420");
      }
      if (target.contains(":/")) {
        return; // a gRPC target URI; its name resolver validates it
      }
      var m = HOST_PORT.matcher(target);
      int port = m.matches() ? Integer.parseInt(m.group(2)) : -1;
      if (port < 1 || port > 65_535) {
        throw new IllegalArgumentException(
            source + " '" + target + "' is not host:port with a port in 1..65535; give e.g. localhost:7420");
      }
    }

    private static void requireUnset(Object current, String name) {
      if (current != null) {
        throw new IllegalStateException(name + " was already set to " + current + "; set it once");
      }
    }
  }
}
