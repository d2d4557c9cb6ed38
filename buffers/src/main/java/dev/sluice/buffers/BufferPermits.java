package dev.sluice.buffers;

import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * What buffers need of the coordinator's engine: the permits that pace delivery (acquired in the
 * default lane, in line with live workers, so a buffer and workers share one quota), the 429
 * feedback, and the limit an inline rate creates. The server adapts its engine to this
 * ({@code BufferWiring}); tests pass a fake.
 *
 * <p>No method blocks: each returns at once and answers through its future. A failed future
 * carries the engine's own exception, which the transport maps as it maps any engine refusal.
 */
public interface BufferPermits {

  /**
   * Acquires one request on {@code resource}. Completes with the permit's id, or empty when
   * {@code timeout} passed first (nothing is held: the caller asks again); fails when the
   * resource cannot be acquired at all (no limit, the store away).
   *
   * @param requestId the caller's name for this acquire, unique per attempt
   */
  CompletableFuture<Optional<String>> acquire(String resource, Duration timeout, String requestId);

  /**
   * Acquires {@code load} (units per dimension) on {@code resource}, as {@link #acquire(String,
   * Duration, String)} does one request: an openai-batch buffer acquires room for a batch's input
   * tokens. Default: one request, for engines without dimensions.
   */
  default CompletableFuture<Optional<String>> acquire(String resource, java.util.Map<String, Long> load,
      Duration timeout, String requestId) {
    return acquire(resource, timeout, requestId);
  }

  /**
   * How long the items of a buffer would wait on {@code resource}: the first, {@code firstNanos}
   * (the coordinator's estimate for one request acquired now, -1 when only an event can help),
   * and each one behind it {@code perItemNanos} more (the period of its {@code requests} rate
   * over its amount; 0 when the limit has no requests rate).
   */
  record Wait(long firstNanos, long perItemNanos) {}

  /** The wait items would have on {@code resource}, for overflow. Default: none at all. */
  default CompletableFuture<Wait> waitEstimate(String resource) {
    return CompletableFuture.completedFuture(new Wait(0, 0));
  }

  /** Whether {@code resource}'s limit has {@code dimension}, as a rate or held. Default: false. */
  default CompletableFuture<Boolean> hasDimension(String resource, String dimension) {
    return CompletableFuture.completedFuture(false);
  }

  /**
   * Whether {@code resource}'s limit holds {@code dimension} (a cap on the sum over the permits
   * alive at once, which comes back when a permit ends). Default: false.
   */
  default CompletableFuture<Boolean> holdsDimension(String resource, String dimension) {
    return CompletableFuture.completedFuture(false);
  }

  /**
   * Ends a permit; {@code unused} gives the whole grant back (nothing reached the endpoint).
   * Fire and forget: a permit already ended is no error.
   */
  void release(String resource, String permitId, boolean unused);

  /**
   * Renews a permit's lease: completes with the lease it now runs for, or empty when the permit
   * is gone (released, or its lease ran out). An openai-batch buffer holds its room in the
   * provider's queue for the whole batch this way. Default: a lease of an hour (engines without
   * leases).
   */
  default CompletableFuture<Optional<Duration>> renew(String resource, String permitId) {
    return CompletableFuture.completedFuture(Optional.of(Duration.ofHours(1)));
  }

  /** Upstream feedback: the endpoint answered 429, so the resource pauses for every worker. */
  CompletableFuture<?> throttled(String resource, Duration retryAfter);

  /** Whether {@code resource} has a limit. */
  CompletableFuture<Boolean> hasLimit(String resource);

  /**
   * Creates or replaces the limit of a buffer's inline rate: {@code rate.amount()} requests per
   * {@code rate.period()}, bursts of {@code rate.burst()}, permits leased for {@code lease}.
   */
  CompletableFuture<?> setRate(String resource, BufferSpec.Rate rate, Duration lease);

  /** Deletes a limit (a buffer's inline rate, with the buffer). */
  CompletableFuture<?> deleteLimit(String resource);
}
