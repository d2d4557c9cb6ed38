package dev.sluice.server.engine;

import dev.sluice.server.config.ServerConfigKeys.Limits;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * The coordinator's algorithm, independent of transport: token buckets, the waiting room,
 * leases and feedback for every resource. One implementation per store.
 *
 * <p><b>No method blocks.</b> Every method that may touch a store returns a {@link
 * CompletableFuture} (the embedded store's are complete on return, except limit changes, which
 * complete once written to disk on the engine's own thread); an acquire returns a {@link
 * Ticket}. So any method may be called on a network event loop, and a method added later
 * cannot block one by mistake: its signature says it cannot. Only {@link #close()}, {@link
 * #closeStore()} and {@link #storeReachable()} return plain values (lifecycle and a local flag).
 *
 * <p>A request that cannot be served fails the future with an {@link EngineException}; where
 * the future completes on another thread, callers see it wrapped in a {@link
 * java.util.concurrent.CompletionException}. No method throws one itself.
 */
public interface Engine extends AutoCloseable {

  /**
   * Asks for {@code load} on {@code resource}. Never throws and never waits for a store: every
   * refusal (unknown resource, unknown dimension, a load above a burst, a full waiting room, the
   * store away) fails the ticket's future, which otherwise completes when granted or when
   * {@code timeoutNanos} passes. The ticket's {@link Ticket#cancel()} does not wait either.
   *
   * <p>A request id is the caller's name for one acquire, and means the same on every store
   * (the differential test holds the stores to it step by step):
   *
   * <ul>
   *   <li><b>still waiting</b> (on any node): the new acquire takes the waiter over in its place
   *       in line, with its load, lane and arrival, and the new timeout; the earlier ticket ends
   *       with a {@link java.util.concurrent.CancellationException}. A try-once (timeout 0)
   *       answers at once instead: the waiter leaves the line, the new acquire times out;
   *   <li><b>granted, permit held</b>, and the grant no older than half the burst's worth of
   *       time ({@code burst / rate / 2} on the tightest rate it charges, {@link Grant#freshNanos}):
   *       the same permit, not charged again (a give-back of the first delivery, whose caller
   *       went away, is then ignored);
   *   <li><b>granted, permit held, older than that</b>: the grant is <em>forfeited</em>, never
   *       handed over, since it would reach the upstream together with the grants made since
   *       (a cut between workers and a node ends with every permit it held handed over at
   *       once). Its slot is freed, its tokens stay spent, and the new acquire waits at the head
   *       of its lane, behind retries forfeited before it, for fresh capacity (a try-once goes
   *       now if it fits with nobody waiting, as a fresh one would);
   *   <li><b>its permit released or expired</b>: refused as INVALID for 60 s after it ended (the
   *       embedded store keeps at most the last 100 000 per resource); after that it is free;
   *   <li><b>ended without a grant reaching its caller</b> (timed out, cancelled, given back):
   *       free, so the new acquire is a new arrival; on Redis, an acquire dropped because its
   *       node was lost goes back to its old place;
   *   <li>a resource deleted forgets its ids.
   * </ul>
   *
   * @param load units per dimension; {@code requests} defaults to 1 when absent
   * @param timeoutNanos how long to wait; 0 means try once
   * @param requestId caller-chosen id (see above) that {@link #cancel(String, String)} can find,
   *     or null
   * @param tenant whose share of the quota it draws on (the limit's {@link TenantPolicy}), or
   *     null for {@link TenantPolicy#DEFAULT_TENANT}. Between tenants with waiters, grants go
   *     by weighted fair queuing on what each has used of the quota; within a tenant, by lane
   *     and arrival as without tenants.
   */
  Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant);

  /** {@link #acquire(String, Map, Lane, long, String, String)} in the default tenant. */
  default Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId) {
    return acquire(resource, load, lane, timeoutNanos, requestId, null);
  }

  /** {@link #acquire(String, Map, Lane, long, String, String)} without a request id or tenant. */
  default Ticket acquire(String resource, Map<String, Long> load, Lane lane, long timeoutNanos) {
    return acquire(resource, load, lane, timeoutNanos, null, null);
  }

  /**
   * Withdraws the queued acquire with this request id. True if it was still waiting and has
   * left (its ticket fails with a cancellation); false if it was granted, ended or unknown.
   */
  CompletableFuture<Boolean> cancel(String resource, String requestId);

  /**
   * Ends a permit: frees its concurrency slot; with {@code settle}, applies actual usage
   * (refund or debt) for the dimensions in {@code actual}; with {@code unused}, gives the whole
   * grant back. Completes with false if the permit was unknown (released before, or expired).
   */
  CompletableFuture<Boolean> release(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused);

  /** Extends leases; completes with the ids that could not be renewed (released or expired). */
  CompletableFuture<List<String>> renew(String resource, List<String> permitIds);

  /**
   * Lease length for permits of this resource, in nanoseconds. A future: on Redis a node that
   * has not cached the limit reads it from the store.
   */
  CompletableFuture<Long> leaseTtlNanos(String resource);

  /**
   * Upstream feedback. {@code throttled} pauses the resource for every worker for
   * {@code retryAfterNanos} and empties the buckets (the upstream has nothing left, so they
   * refill from zero after the pause); {@code remaining} can only lower what the buckets hold.
   *
   * @return nanoseconds the resource is now paused for (0 when not paused, -1 until resumed)
   */
  CompletableFuture<Long> report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining);

  /**
   * {@link #report(String, boolean, long, Map)}, then, for a resource that learns its limit
   * ({@link LimitSpec#learn()}), the provider's per-minute {@code limits} from the same response:
   * its rates follow them (never above a ceiling) through {@link #setLimit}, so both stores
   * store, log and share the change as any other. Nothing is written when the learned rates
   * equal the stored ones, so nodes hearing the same headers converge without flapping.
   *
   * @param limits per dimension, as the provider's limit headers state them; others ignore them
   * @param wallMillis now, Unix epoch milliseconds: when the change is said to be learned
   */
  default CompletableFuture<Long> report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining,
      Map<String, Long> limits, long wallMillis) {
    return reportLearning(resource, throttled, retryAfterNanos, remaining, limits, wallMillis).thenApply(l -> {
      if (l.after() != null) {
        LearnSpec.logged(l.before(), l.after());
      }
      return l.paused();
    });
  }

  /**
   * What a report that carried the provider's limits did: how long the resource is now paused
   * for (as {@link #report(String, boolean, long, Map)} answers), and, when the learned rates
   * changed the limit, the limit before and after (else both null).
   */
  record Learned(long paused, LimitSpec before, LimitSpec after) {}

  /**
   * {@link #report(String, boolean, long, Map, Map, long)} without its log line, answering what
   * changed: for callers that log and keep the change themselves (the server's limit changes,
   * with their audit line and history).
   */
  default CompletableFuture<Learned> reportLearning(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining,
      Map<String, Long> limits, long wallMillis) {
    for (Map.Entry<String, Long> e : limits.entrySet()) {
      if (e.getValue() == null || e.getValue() < 0 || e.getValue() > Validation.MAX_UNITS) {
        return CompletableFuture.failedFuture(EngineException.invalid(
            "limits " + Validation.shown(String.valueOf(e.getKey()), 64) + "=" + e.getValue()
                + " is out of range: use 0 to " + Validation.MAX_UNITS + " (the provider's limit per minute)"));
      }
    }
    CompletableFuture<Long> paused = report(resource, throttled, retryAfterNanos, remaining);
    if (limits.isEmpty()) {
      return paused.thenApply(p -> new Learned(p, null, null));
    }
    return paused.thenCompose(
        p -> getLimit(resource).thenCompose(
            stored -> {
              LimitSpec next = stored.map(s -> LearnSpec.apply(s, limits, wallMillis)).orElse(null);
              return next == null
                  ? CompletableFuture.completedFuture(new Learned(p, null, null))
                  : setLimit(next).thenApply(created -> new Learned(p, stored.get(), next));
            }));
  }

  /** Creates or replaces a limit; completes once it is durable, with true if it was created. */
  CompletableFuture<Boolean> setLimit(LimitSpec limit);

  /**
   * {@code limit} as {@link #setLimit} would store it (defaults filled in), so a limit read back
   * can be compared with one asked for.
   *
   * @throws EngineException (INVALID) when it would be refused
   */
  default LimitSpec normalized(LimitSpec limit) {
    return Validation.limit(limit, Limits.MAX_WAITING.defaultValue(), Limits.LEASE_TTL.defaultValue());
  }

  CompletableFuture<Optional<LimitSpec>> getLimit(String resource);

  /**
   * {@link #getLimit}, or this node's cached copy when it has one (Redis nodes cache limits and
   * hear of changes): what an acquire would use, without a store round trip when cached.
   */
  default CompletableFuture<Optional<LimitSpec>> cachedLimit(String resource) {
    return getLimit(resource);
  }

  /**
   * Limits whose names start with {@code prefix}, sorted by name, as the store holds them now
   * (on Redis: read from Redis, so a change another node just made is in it).
   */
  CompletableFuture<List<LimitSpec>> listLimits(String prefix);

  /**
   * {@link #listLimits}, from this node's cached copies where it has them (Redis nodes hear of
   * changes a moment after they are made): for what reads the list over and over (the
   * dashboard's sampler, stats), where a store round trip per limit would not pay.
   */
  default CompletableFuture<List<LimitSpec>> cachedLimits(String prefix) {
    return listLimits(prefix);
  }

  /** Deletes a limit, durably; its waiters fail with NOT_FOUND. */
  CompletableFuture<Void> deleteLimit(String resource);

  /**
   * Creates or replaces a template: a limit whose {@link LimitSpec#resource()} is a glob (see
   * {@link Templates} for the syntax and which template wins). Every resource matching it that
   * has no limit of its own gets its own bucket with this limit on first use; the bucket is freed
   * when idle (full, nobody waiting, no permit held). A change applies to the live buckets at
   * once on the memory store and at their next operation on Redis (a bucket with waiters on a
   * node: at once); a template deleted ends the waiters of the names no other template matches
   * (NOT_FOUND). Completes once durable, with true if it was created.
   */
  CompletableFuture<Boolean> setTemplate(LimitSpec template);

  /** {@code template} as {@link #setTemplate} would store it (defaults filled in). */
  default LimitSpec normalizedTemplate(LimitSpec template) {
    return Templates.spec(template, Limits.MAX_WAITING.defaultValue(), Limits.LEASE_TTL.defaultValue());
  }

  /** Every template, sorted by pattern. */
  CompletableFuture<List<LimitSpec>> listTemplates();

  /** Deletes a template, durably; NOT_FOUND if there is none of that pattern. */
  CompletableFuture<Void> deleteTemplate(String pattern);

  /**
   * The template an acquire on {@code resource} would use: empty when it has a limit of its own
   * or no template matches.
   */
  CompletableFuture<Optional<LimitSpec>> templateFor(String resource);

  /**
   * Stops granting on a resource for {@code nanos}, or until {@link #resume} when negative.
   *
   * @return nanoseconds paused for, or -1 until resumed
   */
  CompletableFuture<Long> pause(String resource, long nanos);

  /** Clears every pause on the resource: admin and upstream feedback. */
  CompletableFuture<Void> resume(String resource);

  /** Live state of one resource. */
  CompletableFuture<ResourceSnapshot> stats(String resource);

  /**
   * When an acquire of {@code load} made now by {@code tenant} (null: the default) in {@code
   * lane} would be granted, in nanoseconds from now, without queueing it; -1 when only an event
   * can help (paused until resumed). An estimate, the same on every store: the load its tenant
   * has queued in its lane and the lanes above, plus its own, drains at the tenant's share of
   * the rate from what the buckets hold, within its own cap. Aging, later arrivals of other
   * tenants, settles and the concurrency cap are left out.
   */
  CompletableFuture<Long> estimate(String resource, Map<String, Long> load, Lane lane, String tenant);

  /**
   * Live state of every resource, sorted by name; a resource deleted meanwhile is left out. The
   * resources are asked for all at once.
   */
  default CompletableFuture<List<ResourceSnapshot>> stats() {
    return cachedLimits("")
        .thenCompose(
            specs -> {
              List<CompletableFuture<ResourceSnapshot>> each = new ArrayList<>(specs.size());
              for (LimitSpec spec : specs) {
                if (spec.isPool()) {
                  continue; // a pool's state is its members'
                }
                each.add(
                    stats(spec.resource())
                        .exceptionally(
                            error -> {
                              if (EngineException.unwrap(error) instanceof EngineException e
                                  && e.reason() == EngineException.Reason.NOT_FOUND) {
                                return null;
                              }
                              throw error instanceof CompletionException c ? c : new CompletionException(error);
                            }));
              }
              return CompletableFuture.allOf(each.toArray(CompletableFuture[]::new))
                  .thenApply(done -> each.stream().map(CompletableFuture::join).filter(Objects::nonNull).toList());
            });
  }

  /**
   * Stops granting: every waiter fails with UNAVAILABLE, as does every later acquire. Leases
   * stay valid so permits can still be released.
   */
  @Override
  void close();

  /**
   * Lets go of the store's connections. Called after {@link #close()} once the transport has
   * drained, so permits released during the drain still reach the store. No-op by default.
   */
  default void closeStore() {}

  /** Whether the store answers; a node whose store is away reports NOT_SERVING on health. */
  default boolean storeReachable() {
    return true;
  }
}
