package dev.sluice.server.engine;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.Expiry;
import com.github.benmanes.caffeine.cache.RemovalCause;
import dev.sluice.client.HumanDurations;
import dev.sluice.server.config.ServerConfigKeys.Limits;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The embedded, single-node engine: every resource's state in memory, limits in a
 * {@link LimitStore}. See {@link ResourceState} for the algorithm.
 *
 * <p>Concurrency: one monitor per resource, held only for in-memory work; futures complete after
 * it is released, so a grant's network write never runs under a lock. Limits live in a map that
 * survives idle eviction of the live state, which Caffeine drops when nothing is going on.
 *
 * <p>What is here: the locks, the timers (deadlines, wake-ups), the Caffeine cache of live
 * states, durable limits and the races between a grant and a cancel; the algorithm itself is
 * {@link ResourceState}'s, with {@link RefundHistory} and {@link RequestIds}. It runs past 700
 * lines for its {@link Builder} (every default documented on its setter) and because the
 * acquire / leave / cancel / give-back races read best side by side.
 */
public final class MemoryEngine extends ImmediateEngine {

  private static final Logger log = LoggerFactory.getLogger(MemoryEngine.class);
  private static final long MIN_READ_GRACE = TimeUnit.MINUTES.toNanos(1);
  private static final long MAX_RETRY_AFTER = TimeUnit.HOURS.toNanos(1);

  final Ticker ticker;
  final Scheduler scheduler;
  private final LimitStore store;
  private final int defaultMaxWaiting;
  private final Duration defaultLease;
  final long agingNanos;
  private final long idleGraceNanos;
  private final Metering metering;

  private final ConcurrentHashMap<String, LimitEntry> limits = new ConcurrentHashMap<>();
  /** Replaced whole on every change, under {@link #storeLock}. */
  private volatile Templates templates = Templates.NONE;
  private final AtomicLong templateVersions = new AtomicLong();
  private final Cache<String, ResourceState> states;
  private final Object storeLock = new Object();
  private final String idPrefix = Long.toString(System.nanoTime() & 0xffffffL, 36) + "-";
  private final AtomicLong ids = new AtomicLong();
  private volatile boolean closed;
  /** Writes limits.json (and syncs it) off the callers' threads, one change at a time. */
  private final ExecutorService writer =
      Executors.newSingleThreadExecutor(
          r -> {
            Thread t = new Thread(r, "sluice-limits-writer");
            t.setDaemon(true);
            return t;
          });


  private MemoryEngine(Builder b) throws IOException {
    this.ticker = b.ticker;
    this.scheduler = b.scheduler;
    this.store = b.store;
    this.defaultMaxWaiting = b.defaultMaxWaiting;
    this.defaultLease = b.defaultLease;
    this.agingNanos = b.aging.toNanos();
    this.idleGraceNanos = b.idleGrace.toNanos();
    this.metering = new Metering(b.registry, b.metricsMaxResources);
    this.states =
        Caffeine.newBuilder()
            .ticker(ticker::read)
            .executor(Runnable::run)
            .expireAfter(
                new Expiry<String, ResourceState>() {
                  @Override
                  public long expireAfterCreate(String key, ResourceState s, long now) {
                    return idleGraceNanos;
                  }

                  @Override
                  public long expireAfterUpdate(String key, ResourceState s, long now, long current) {
                    return current;
                  }

                  @Override
                  public long expireAfterRead(String key, ResourceState s, long now, long current) {
                    // An operation is about to run on s; it sets the real expiry when done.
                    return Math.max(current, MIN_READ_GRACE);
                  }
                })
            .evictionListener(
                (String key, ResourceState s, RemovalCause cause) -> {
                  if (s != null) {
                    s.retired = true;
                    if (cause == RemovalCause.EXPIRED) {
                      // Let go when idle: leases that ran out meanwhile end here, and count.
                      s.expireLeases(ticker.read());
                      s.entry.startFull = true;
                      s.entry.idle(ticker.read());
                    }
                    if (s.entry.template != null) {
                      // A template's bucket goes with its state: nothing of the name is kept.
                      s.entry.delete();
                    }
                  }
                })
            .build();
    List<Templates.Template> loaded = new ArrayList<>();
    for (LimitSpec spec : store.load()) {
      if (Templates.isPattern(spec.resource())) {
        // Created now: its names' buckets start empty after a restart, as every bucket does.
        loaded.add(new Templates.Template(spec, ticker.read(), nextTemplateVersion()));
        continue;
      }
      LimitEntry e = new LimitEntry(spec, metering, ticker.read());
      e.restored = true;
      limits.put(spec.resource(), e);
    }
    templates = Templates.of(loaded);
  }

  private String nextTemplateVersion() {
    return Long.toString(templateVersions.incrementAndGet(), 36);
  }

  /** A builder with the defaults documented on each setter. */
  public static Builder builder() {
    return new Builder();
  }

  /** Configures a {@link MemoryEngine}; every value is checked when set. */
  public static final class Builder {
    private Ticker ticker = Ticker.system();
    private Scheduler scheduler;
    private LimitStore store = LimitStore.none();
    private int defaultMaxWaiting = Limits.MAX_WAITING.defaultValue();
    private Duration defaultLease = Limits.LEASE_TTL.defaultValue();
    private Duration aging = Limits.AGING.defaultValue();
    private Duration idleGrace = Duration.ofMinutes(10);
    private MeterRegistry registry = new SimpleMeterRegistry();
    private int metricsMaxResources = Limits.METRICS_MAX_RESOURCES.defaultValue();

    private Builder() {}

    /** Time source; default {@link Ticker#system()}. Must match the scheduler's clock. */
    public Builder ticker(Ticker ticker) {
      this.ticker = Objects.requireNonNull(ticker, "ticker");
      return this;
    }

    /** Runs computed wake-ups and deadlines; required. */
    public Builder scheduler(Scheduler scheduler) {
      this.scheduler = Objects.requireNonNull(scheduler, "scheduler");
      return this;
    }

    /** Durable home of limits; default {@link LimitStore#none()} (nothing survives). */
    public Builder store(LimitStore store) {
      this.store = Objects.requireNonNull(store, "store");
      return this;
    }

    /** Waiting room size for limits that do not set one; default 10 000. */
    public Builder defaultMaxWaiting(int n) {
      this.defaultMaxWaiting = Limits.MAX_WAITING.check(n);
      return this;
    }

    /** Lease length for limits that do not set one; default 30 s. */
    public Builder defaultLease(Duration d) {
      this.defaultLease = Limits.LEASE_TTL.check(d);
      return this;
    }

    /**
     * Lane aging threshold; default 10 s. A lower-lane waiter that has waited this long gets
     * every other grant until served, however busy the higher lanes are (zero: lanes alternate).
     */
    public Builder aging(Duration d) {
      this.aging = Limits.AGING.check(d);
      return this;
    }

    /** How long an idle, full resource's live state is kept; default 10 min. */
    public Builder idleGrace(Duration d) {
      if (d.toNanos() < MIN_READ_GRACE) {
        // Shorter than the grace a read grants, an eviction could race an operation in flight.
        throw new IllegalArgumentException("idle grace " + d + " is too short: use at least 1 minute");
      }
      this.idleGrace = d;
      return this;
    }

    /** Where counters and wait timers go; default a private {@link SimpleMeterRegistry}. */
    public Builder meterRegistry(MeterRegistry registry) {
      this.registry = Objects.requireNonNull(registry, "registry");
      return this;
    }

    /**
     * How many resources get meters tagged with their own name; default 1 000. Resources used
     * beyond that share meters tagged {@code resource="_other"} (one warning says so), so the
     * registry and the monitoring system hold a bounded number of series however many
     * resources there are; a deleted resource's slot goes to the next one. {@code stats} stays
     * exact for every resource. 0 puts every resource under {@code _other}.
     */
    public Builder metricsMaxResources(int n) {
      this.metricsMaxResources = Limits.METRICS_MAX_RESOURCES.check(n);
      return this;
    }

    /**
     * Builds the engine and loads the stored limits.
     *
     * @throws IOException if the store cannot be read; the message names the file and the fix
     */
    public MemoryEngine build() throws IOException {
      if (scheduler == null) {
        throw new IllegalStateException("scheduler is required: call scheduler(...)");
      }
      return new MemoryEngine(this);
    }
  }

  // ---------------------------------------------------------------------------------------
  // State access

  /**
   * The entry of a resource: its own limit's, else its live template bucket's, else a new one
   * for the template that matches it (kept only if a live state is made for it).
   */
  private LimitEntry entry(String resource) {
    Validation.resource(resource);
    LimitEntry e = limits.get(resource);
    if (e != null) {
      return e;
    }
    Templates ts = templates;
    ResourceState live = ts.isEmpty() ? null : states.getIfPresent(resource);
    if (live != null && live.entry.template != null && live.entry.resolvedIn == ts) {
      return live.entry;
    }
    Templates.Template t = ts.match(resource);
    if (t == null) {
      throw EngineException.notFound(resource);
    }
    if (live != null && live.entry.template != null) {
      return live.entry; // brought up to date under its monitor (current)
    }
    return bornEntry(resource, t, ts);
  }

  private LimitEntry bornEntry(String resource, Templates.Template t, Templates ts) {
    // Created when the template was: the bucket holds what a limit set then would hold now.
    LimitEntry e = new LimitEntry(t.specFor(resource), metering, t.createdAt());
    e.template = t;
    e.resolvedIn = ts;
    return e;
  }

  /**
   * Whether a live state still serves {@code resource}, under its monitor. A template bucket
   * follows its template's changes here: the next operation on it applies the new limit.
   */
  private boolean current(String resource, ResourceState s) {
    LimitEntry own = limits.get(resource);
    if (own != null) {
      return own == s.entry;
    }
    LimitEntry e = s.entry;
    if (e.template == null) {
      return false; // its own limit was deleted
    }
    Templates ts = templates;
    if (e.resolvedIn != ts) {
      Templates.Template t = ts.match(resource);
      if (t == null) {
        return false; // its template was deleted
      }
      if (t != e.template) {
        e.template = t;
        e.spec = t.specFor(resource);
      }
      e.resolvedIn = ts;
    }
    return true;
  }

  /** Runs {@code op} on the live state under its monitor, then completes whoever it granted. */
  private <T> T withState(String resource, StateOp<T> op) {
    List<Waiter> granted = new ArrayList<>(2);
    List<Waiter> misfits = new ArrayList<>(0);
    List<EngineException> why = new ArrayList<>(0);
    T result;
    while (true) {
      LimitEntry e = entry(resource);
      // Keyed by the limit's own name, not the caller's copy: one string per resource.
      ResourceState s =
          states.get(
              e.spec.resource(),
              k -> {
                ResourceState fresh = new ResourceState(e, e.spec, e.createdAt, e.startFull);
                fresh.refill(ticker.read());
                return fresh;
              });
      boolean orphan = false;
      synchronized (s) {
        if (s.retired) {
          continue;
        }
        if (!current(resource, s)) {
          // Built for a limit deleted (or deleted and set again) meanwhile: never serve from it.
          s.retired = true;
          orphan = true;
        } else {
          long now = ticker.read();
          reconcile(s, now, misfits, why);
          result = op.apply(s, now, granted);
          touch(s, now);
          break;
        }
      }
      if (orphan) {
        states.asMap().remove(resource, s);
      }
    }
    fail(misfits, why);
    complete(granted);
    return result;
  }

  /**
   * Brings a live state up to its entry's current limit. Limit changes land here, under the
   * state's monitor, so a state can never keep serving an older limit than the one stored.
   */
  private void reconcile(ResourceState s, long now, List<Waiter> misfits, List<EngineException> why) {
    LimitSpec spec = s.entry.spec;
    if (s.spec == spec) {
      return;
    }
    s.configure(spec, now);
    // Waiters whose load can no longer fit fail now instead of waiting for ever.
    for (Waiter w : s.allWaiters()) {
      try {
        Validation.load(spec, w.load);
      } catch (EngineException ex) {
        s.remove(w, now);
        w.status(Waiter.ENDED);
        s.entry.add(Outcome.REJECTED_INVALID);
        misfits.add(w);
        why.add(ex);
      }
    }
  }

  private void fail(List<Waiter> misfits, List<EngineException> why) {
    for (int i = 0; i < misfits.size(); i++) {
      Waiter w = misfits.get(i);
      cancelTimeout(w);
      w.future.completeExceptionally(
          EngineException.invalid(
              "limit of '" + w.state.name + "' changed: " + why.get(i).getMessage()));
    }
  }

  @FunctionalInterface
  private interface StateOp<T> {
    T apply(ResourceState s, long now, List<Waiter> granted);
  }

  private void touch(ResourceState s, long now) {
    long expiry = s.idleExpiry(now, idleGraceNanos);
    states
        .policy()
        .expireVariably()
        .ifPresent(p -> p.setExpiresAfter(s.name, expiry, TimeUnit.NANOSECONDS));
  }

  private void complete(List<Waiter> granted) {
    for (Waiter w : granted) {
      w.future.complete(w.grant);
    }
    // Bookkeeping after every grant is on its way: a percentile histogram meeting a new
    // magnitude can take milliseconds, which must not delay the next caller's answer.
    for (Waiter w : granted) {
      Scheduler.Cancellable t = w.timeout;
      if (t != null) {
        t.cancel();
      }
      w.state.entry.recordWait(w.grant.waitedNanos(), w.arrival + w.grant.waitedNanos());
    }
  }

  private String nextPermitId() {
    return idPrefix + Long.toString(ids.incrementAndGet(), 36);
  }

  /**
   * Runs the state's drain (under its monitor) and keeps one wake-up at the instant it asks
   * for: the state decides, this engine owns the timers.
   */
  private void drain(ResourceState s, long now, List<Waiter> granted) {
    long at = s.drain(now, agingNanos, this::nextPermitId, granted);
    if (at == ResourceState.NEVER) {
      s.cancelWake();
      return;
    }
    if (s.wake != null) {
      if (s.wakeAt == at) {
        return;
      }
      s.wake.cancel();
    }
    s.wakeAt = at;
    s.wake = scheduler.schedule(() -> onWake(s), at - now);
  }

  void onWake(ResourceState s) {
    List<Waiter> granted = new ArrayList<>();
    List<Waiter> misfits = new ArrayList<>(0);
    List<EngineException> why = new ArrayList<>(0);
    synchronized (s) {
      if (s.retired) {
        return;
      }
      s.wake = null;
      long now = ticker.read();
      reconcile(s, now, misfits, why);
      drain(s, now, granted);
      touch(s, now);
    }
    fail(misfits, why);
    complete(granted);
  }

  // ---------------------------------------------------------------------------------------
  // Worker operations

  @Override
  Ticket acquireNow(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant) {
    Objects.requireNonNull(lane, "lane");
    String who = tenant == null || tenant.isEmpty() ? TenantPolicy.DEFAULT_TENANT : Validation.tenant(tenant);
    String rid = requestId == null || requestId.isEmpty() ? null : Validation.requestId(requestId);
    if (closed) {
      throw shuttingDown();
    }
    LimitEntry e = entry(resource);
    final Map<String, Long> charged;
    try {
      charged = Validation.load(e.spec, load);
    } catch (EngineException ex) {
      if (e.template == null) {
        e.add(Outcome.REJECTED_INVALID); // a template's name is counted once it has a bucket
      }
      throw ex;
    }
    if (timeoutNanos < 0) {
      throw EngineException.invalid("timeout " + timeoutNanos + "ns is negative: use 0 or more");
    }
    Waiter ticket = withState(
        resource,
        (s, now, granted) -> {
          if (closed) {
            throw shuttingDown();
          }
          // The limit may have changed since validation: check against what the state holds.
          Map<String, Long> fit = s.spec == e.spec ? charged : Validation.load(s.spec, load);
          s.expireLeases(now);
          s.refill(now);
          boolean[] forfeited = {false};
          if (rid != null) {
            Waiter again = retry(s, rid, timeoutNanos, now, granted, forfeited);
            if (again != null) {
              return again;
            }
          }
          Waiter w = new Waiter(this, s, fit, lane, who, rid, now);
          if (s.waiting == 0 && s.waitFor(w, now) == 0) {
            // Nobody ahead and it fits: the fast path, no queueing, no timer.
            s.grant(w, now, nextPermitId());
            granted.add(w);
            return w;
          }
          if (timeoutNanos == 0) {
            w.status(Waiter.ENDED);
            s.entry.add(Outcome.TIMED_OUT);
            w.future.completeExceptionally(notGrantedInTime(resource, 0, s.pauseState(now)));
            if (forfeited[0]) {
              drain(s, now, granted); // the slot the forfeited permit held may let a waiter go
            }
            return w;
          }
          if (s.waiting >= s.spec.maxWaiting()) {
            s.entry.add(Outcome.REJECTED_WAITING_ROOM_FULL);
            long hint = Math.max(TimeUnit.SECONDS.toNanos(1), s.drainEstimate(now));
            throw new EngineException(
                EngineException.Reason.WAITING_ROOM_FULL,
                "waiting room of '" + resource + "' is full (" + s.waiting + " waiting, max "
                    + s.spec.maxWaiting() + "): retry after the hinted delay, or raise"
                    + " --max-waiting",
                hint);
          }
          s.enqueue(w, now);
          w.timeout = scheduler.schedule(() -> expire(w, timeoutNanos), timeoutNanos);
          drain(s, now, granted);
          return w;
        });
    Waiter old = ticket.replaced;
    if (old != null) {
      ticket.replaced = null;
      old.future.completeExceptionally(new CancellationException("acquire " + rid + " on '" + resource
          + "' was taken over by a retry with the same request id"));
    }
    return ticket;
  }

  /**
   * An acquire whose request id is known on this resource (see {@link Engine#acquire}): takes a
   * waiter over in its place, or answers with the permit held under the id, or refuses an id
   * whose permit has ended. Null when the id is free: a new acquire ({@code forfeited[0]} set
   * when a try-once forfeited a late grant: the caller drains after answering it).
   */
  private Waiter retry(
      ResourceState s, String rid, long timeoutNanos, long now, List<Waiter> granted, boolean[] forfeited) {
    Waiter queued = s.queued(rid);
    if (queued != null) {
      Waiter next = new Waiter(this, s, queued.load, queued.lane, queued.tenant, rid, queued.arrival);
      next.vector = queued.vector;
      queued.status(Waiter.ENDED);
      cancelTimeout(queued);
      next.replaced = queued; // told once the lock is released (see acquire)
      if (timeoutNanos == 0) {
        // A try-once retry of a waiting id is answered now: the waiter leaves the line (a fresh
        // try-once would not wait either); the caller of the one it took over hears so.
        s.remove(queued, now);
        next.status(Waiter.ENDED);
        s.entry.add(Outcome.TIMED_OUT);
        next.future.completeExceptionally(notGrantedInTime(s.name, 0, s.pauseState(now)));
        drain(s, now, granted);
        return next;
      }
      next.forfeited = queued.forfeited;
      s.replace(queued, next);
      next.timeout = scheduler.schedule(() -> expire(next, timeoutNanos), timeoutNanos);
      return next;
    }
    ResourceState.PermitRecord held = s.heldBy(rid);
    if (held != null && s.late(held, now)) {
      // Its grant waited too long for this caller (ResourceState#late): forfeited, its tokens
      // stay spent, and the retry waits at the head of its lane for fresh capacity.
      s.endPermit(held.id, now, true);
      s.entry.add(Outcome.FORFEITED);
      if (timeoutNanos == 0) {
        forfeited[0] = true;
        return null; // a try-once: goes now if it fits with nobody waiting, as a fresh one would
      }
      Waiter next = new Waiter(this, s, held.load, held.origin.lane, held.origin.tenant, rid, held.origin.arrival);
      s.enqueueForfeited(next, now);
      next.timeout = scheduler.schedule(() -> expire(next, timeoutNanos), timeoutNanos);
      drain(s, now, granted);
      return next;
    }
    if (held != null) {
      // The same permit, not charged again; a give-back of its first delivery is ignored.
      held.kept = true;
      Waiter same = new Waiter(this, s, held.load, held.origin.lane, held.origin.tenant, rid, held.origin.arrival);
      same.grant = held.origin.grant.handedOverAfter(now - held.grantedAtNanos);
      same.status(Waiter.GRANTED);
      same.future.complete(same.grant);
      return same;
    }
    Long ended = s.endedAt(rid, now);
    if (ended != null) {
      s.entry.add(Outcome.REJECTED_INVALID);
      throw EngineException.invalid(usedUp(s.name, rid, now - ended));
    }
    return null;
  }

  static String usedUp(String resource, String rid, long agoNanos) {
    return "request id '" + rid + "' already got a permit on '" + resource + "' that ended "
        + Math.max(0, TimeUnit.NANOSECONDS.toMillis(agoNanos)) + " ms ago (released or expired):"
        + " a request id names one acquire, give the next one its own (e.g. a fresh UUID)";
  }

  private void expire(Waiter w, long timeoutNanos) {
    leave(w, Outcome.TIMED_OUT,
        pause -> w.future.completeExceptionally(notGrantedInTime(w.state.name, timeoutNanos, pause)));
  }

  /**
   * Takes a still-queued waiter out of the line, counting it on {@code outcome}, and grants
   * whoever can go next. False if the waiter had already left the queue (granted or ended).
   * {@code ending} (the waiter's own failure) runs before the grants its leaving allowed, so
   * callers hear of one instant's events in the order they happened, as on every store. It is
   * given the pause as it stood when the waiter left (a timeout's message names it).
   */
  private boolean leave(Waiter w, Outcome outcome, Consumer<PauseState> ending) {
    ResourceState s = w.state;
    List<Waiter> granted = new ArrayList<>();
    boolean left = false;
    PauseState pause = PauseState.NONE;
    synchronized (s) {
      long now = ticker.read();
      if (w.status() == Waiter.WAITING && outcome == Outcome.TIMED_OUT) {
        // A deadline is inclusive: what can be granted at its instant is, to this waiter too.
        drain(s, now, granted);
      }
      if (w.status() == Waiter.WAITING) {
        s.remove(w, now);
        w.status(Waiter.ENDED);
        s.entry.add(outcome);
        left = true;
        pause = s.pauseState(now);
        drain(s, now, granted);
        touch(s, now);
      }
    }
    if (left) {
      ending.accept(pause);
    }
    complete(granted);
    return left;
  }

  @Override
  boolean cancelNow(String resource, String requestId) {
    Validation.requestId(requestId);
    entry(resource);
    Waiter w = withState(resource, (s, now, granted) -> s.queued(requestId));
    return w != null && cancel(w);
  }

  /** Withdraws a waiter (true), or gives back its unclaimed grant (false). */
  boolean cancel(Waiter w) {
    ResourceState s = w.state;
    boolean ended = leave(w, Outcome.CANCELLED, pause -> {
      cancelTimeout(w);
      w.future.completeExceptionally(
          new CancellationException("acquire on '" + s.name + "' was cancelled by the caller"));
    });
    if (w.compareAndSetStatus(Waiter.GRANTED, Waiter.RETURNED)) {
      // The grant raced with the cancel and nobody took it: give it back in full.
      s.entry.add(Outcome.CANCELLED);
      try {
        giveBack(s.name, w.grant.permitId());
      } catch (EngineException ex) {
        log.debug("give-back of {} on {} found nothing to return: {}", w.grant.permitId(), s.name, ex.getMessage());
      }
    }
    return ended;
  }

  /**
   * Returns a grant that never reached its caller, in full. Its request id is free again; a
   * permit a retry of that id took meanwhile is kept.
   */
  private void giveBack(String resource, String permitId) {
    withState(
        resource,
        (s, now, granted) -> {
          s.expireLeases(now);
          s.refill(now);
          ResourceState.PermitRecord r = s.permits.get(permitId);
          if (r == null || r.kept) {
            return null;
          }
          s.endPermit(permitId, now, true);
          s.giveBack(r, now);
          s.entry.add(Outcome.GIVEN_BACK);
          drain(s, now, granted);
          return null;
        });
  }

  @Override
  boolean releaseNow(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    Objects.requireNonNull(permitId, "permitId");
    LimitEntry e = entry(resource);
    if (settle && !unused) {
      // Checked before anything changes, so a bad settle never loses the permit.
      Validation.usage(e.spec, actual, "settle", false);
    }
    return withState(
        resource,
        (s, now, granted) -> {
          if (settle && !unused) {
            Validation.usage(s.spec, actual, "settle", false);
          }
          boolean known = s.release(now, permitId, actual, settle, unused);
          drain(s, now, granted);
          return known;
        });
  }

  @Override
  List<String> renewNow(String resource, List<String> permitIds) {
    entry(resource);
    return withState(
        resource,
        (s, now, granted) -> {
          List<String> expired = s.renew(now, permitIds, id -> !id.startsWith(idPrefix));
          drain(s, now, granted);
          return expired;
        });
  }

  @Override
  long leaseTtlNanosNow(String resource) {
    return entry(resource).spec.leaseTtl().toNanos();
  }

  @Override
  long reportNow(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    LimitEntry e = entry(resource);
    Validation.usage(e.spec, remaining, "remaining", true);
    if (retryAfterNanos < 0 || retryAfterNanos > MAX_RETRY_AFTER) {
      throw EngineException.invalid(
          "retry-after " + HumanDurations.formatNanos(retryAfterNanos) + " is out of range: use 0 to 1h");
    }
    return withState(
        resource,
        (s, now, granted) -> {
          long left = s.report(now, throttled, retryAfterNanos, remaining);
          if (throttled) {
            log.info("upstream throttled {}: pausing grants for {}", resource,
                HumanDurations.formatNanos(retryAfterNanos));
          }
          drain(s, now, granted);
          return left == ResourceState.NEVER ? -1 : left;
        });
  }

  // ---------------------------------------------------------------------------------------
  // Admin operations

  @Override
  public LimitSpec normalized(LimitSpec limit) {
    return Validation.limit(limit, defaultMaxWaiting, defaultLease);
  }

  @Override
  boolean setLimitNow(LimitSpec limit) {
    LimitSpec spec = Validation.limit(limit, defaultMaxWaiting, defaultLease);
    boolean created;
    synchronized (storeLock) {
      created = !limits.containsKey(spec.resource());
      if (store.durable()) {
        // Stored first, applied after: a limit that could not be stored is not served.
        Map<String, LimitSpec> next = new TreeMap<>();
        limits.forEach((k, v) -> next.put(k, v.spec));
        next.put(spec.resource(), spec);
        persist(next, templates);
      }
      LimitEntry e = limits.get(spec.resource());
      if (e == null) {
        ResourceState live = states.getIfPresent(spec.resource());
        LimitEntry adopted = null;
        if (live != null) {
          synchronized (live) {
            if (!live.retired && live.entry.template != null) {
              // A template's live bucket becomes the limit's own: its state carries on under the
              // new limit (as on Redis, where the bucket's keys are the same).
              adopted = live.entry;
              adopted.template = null;
              adopted.spec = spec;
            }
          }
        }
        limits.put(spec.resource(), adopted != null ? adopted : new LimitEntry(spec, metering, ticker.read()));
      } else {
        e.spec = spec;
      }
    }
    if (states.getIfPresent(spec.resource()) != null) {
      // The live state picks the new limit up under its monitor (see reconcile) and drains.
      withState(spec.resource(), (st, now, granted) -> {
        drain(st, now, granted);
        return null;
      });
    }
    // The audit line, with who and before → after, is LimitChanges's (one line per change).
    log.debug("limit {} {}: {}", created ? "created" : "changed", spec.resource(), describe(spec));
    return created;
  }

  private void persist(Map<String, LimitSpec> all, Templates ts) {
    try {
      List<LimitSpec> out = new ArrayList<>(all.values());
      for (Templates.Template t : ts.all()) {
        out.add(t.spec()); // a pattern never collides with a name: stored side by side
      }
      store.save(out);
    } catch (IOException ex) {
      log.error("could not store limits: {}", ex.toString());
      throw new EngineException(
          EngineException.Reason.UNAVAILABLE,
          "could not store the limit durably (" + ex.getMessage() + "): check the data"
              + " directory's disk space and permissions, then retry");
    }
  }

  private static void cancelTimeout(Waiter w) {
    if (w.timeout != null) {
      w.timeout.cancel();
    }
  }

  /** A limit in the command-line form, for logs. */
  public static String describe(LimitSpec spec) {
    if (spec.isPool()) {
      return PoolEngine.describe(spec);
    }
    StringBuilder b = new StringBuilder();
    for (RateSpec r : spec.rates()) {
      b.append(r.name()).append('=').append(r.amount()).append('/').append(r.period()).append(':')
          .append(r.burst()).append(' ');
    }
    if (spec.concurrency() > 0) {
      b.append("concurrency=").append(spec.concurrency()).append(' ');
    }
    spec.holds().forEach((d, cap) -> b.append("hold ").append(d).append('=').append(cap).append(' '));
    b.append("max-waiting=").append(spec.maxWaiting()).append(" lease=").append(spec.leaseTtl());
    if (spec.jitterNanos() > 0) {
      b.append(" jitter=").append(Durations.format(spec.jitter()));
    }
    if (spec.learn() != null) {
      b.append(' ').append(LearnSpec.describe(spec.learn()));
    }
    return b.toString();
  }

  // ---------------------------------------------------------------------------------------
  // Templates

  @Override
  public LimitSpec normalizedTemplate(LimitSpec template) {
    return Templates.spec(template, defaultMaxWaiting, defaultLease);
  }

  @Override
  boolean setTemplateNow(LimitSpec template) {
    LimitSpec spec = Templates.spec(template, defaultMaxWaiting, defaultLease);
    boolean created;
    Templates next;
    synchronized (storeLock) {
      Templates ts = templates;
      Templates.checkRoom(ts, spec.resource());
      Templates.Template old = ts.get(spec.resource());
      created = old == null;
      // A change keeps the template's creation: its buckets keep what they hold.
      next = ts.with(new Templates.Template(spec, created ? ticker.read() : old.createdAt(), nextTemplateVersion()));
      persistTemplates(next);
      templates = next;
    }
    applyToLive(spec.resource());
    log.debug("template {} {}: {}", created ? "created" : "changed", spec.resource(), describe(spec));
    return created;
  }

  /**
   * Brings the live buckets a template change touches up to date now, so waiters see a larger
   * limit at once, as a resource's own limit change does. Each state does it under its monitor
   * ({@link #current}); those that no template matches any more end their waiters (NOT_FOUND).
   */
  private void applyToLive(String pattern) {
    for (ResourceState s : List.copyOf(states.asMap().values())) {
      LimitEntry e = s.entry;
      if (e.template == null || !Templates.matches(pattern, s.name) || limits.containsKey(s.name)) {
        continue;
      }
      boolean gone;
      synchronized (s) {
        gone = !s.retired && !current(s.name, s);
      }
      if (gone) {
        if (states.asMap().remove(s.name, s)) {
          failAll(s, Outcome.REJECTED_DELETED, () -> EngineException.notFound(s.name));
          e.delete();
        }
      } else {
        try {
          withState(s.name, (st, now, granted) -> {
            drain(st, now, granted);
            return null;
          });
        } catch (EngineException ex) {
          log.debug("template bucket {} went meanwhile: {}", s.name, ex.getMessage());
        }
      }
    }
  }

  /** Stores the limits with {@code next} as the templates, under {@link #storeLock}. */
  private void persistTemplates(Templates next) {
    if (store.durable()) {
      Map<String, LimitSpec> all = new TreeMap<>();
      limits.forEach((k, v) -> all.put(k, v.spec));
      persist(all, next);
    }
  }

  @Override
  List<LimitSpec> listTemplatesNow() {
    return templates.all().stream().map(Templates.Template::spec).toList();
  }

  @Override
  void deleteTemplateNow(String pattern) {
    Templates.pattern(pattern);
    synchronized (storeLock) {
      Templates ts = templates;
      if (ts.get(pattern) == null) {
        throw templateNotFound(pattern);
      }
      Templates next = ts.without(pattern);
      persistTemplates(next);
      templates = next;
    }
    applyToLive(pattern);
    log.debug("template deleted {}", pattern);
  }

  static EngineException templateNotFound(String pattern) {
    return new EngineException(EngineException.Reason.NOT_FOUND,
        "no template '" + Validation.shown(pattern, 60) + "': list them with `sluice limit list`");
  }

  @Override
  Optional<LimitSpec> templateForNow(String resource) {
    Validation.resource(resource);
    if (limits.containsKey(resource)) {
      return Optional.empty();
    }
    Templates.Template t = templates.match(resource);
    return t == null ? Optional.empty() : Optional.of(t.spec());
  }

  @Override
  Optional<LimitSpec> getLimitNow(String resource) {
    Validation.resource(resource);
    LimitEntry e = limits.get(resource);
    return e == null ? Optional.empty() : Optional.of(e.spec);
  }

  @Override
  List<LimitSpec> listLimitsNow(String prefix) {
    String p = prefix == null ? "" : prefix;
    return limits.values().stream()
        .map(e -> e.spec)
        .filter(s -> s.resource().startsWith(p))
        .sorted(Comparator.comparing(LimitSpec::resource))
        .toList();
  }

  @Override
  void deleteLimitNow(String resource) {
    Validation.resource(resource);
    LimitEntry gone;
    synchronized (storeLock) {
      if (!limits.containsKey(resource)) {
        throw EngineException.notFound(resource);
      }
      if (store.durable()) {
        Map<String, LimitSpec> next = new TreeMap<>();
        limits.forEach((k, v) -> next.put(k, v.spec));
        next.remove(resource);
        persist(next, templates);
      }
      gone = limits.remove(resource);
    }
    ResourceState live = states.asMap().remove(resource);
    if (live != null) {
      failAll(live, Outcome.REJECTED_DELETED, () -> EngineException.notFound(resource));
    }
    gone.delete();
    log.debug("limit deleted {}", resource);
  }

  private void failAll(ResourceState s, Outcome reason, java.util.function.Supplier<EngineException> why) {
    List<Waiter> failed;
    synchronized (s) {
      s.retired = true;
      s.cancelWake();
      failed = s.removeAll();
      for (Waiter w : failed) {
        w.status(Waiter.ENDED);
        s.entry.add(reason);
      }
    }
    for (Waiter w : failed) {
      cancelTimeout(w);
      w.future.completeExceptionally(why.get());
    }
  }

  @Override
  long pauseNow(String resource, long nanos) {
    entry(resource);
    long left =
        withState(
            resource,
            (s, now, granted) -> {
              long l = s.pause(now, nanos);
              drain(s, now, granted);
              return l == ResourceState.NEVER ? -1 : l;
            });
    log.info(
        "paused {} {}", resource, left < 0 ? "until resumed" : "for " + HumanDurations.formatNanos(left));
    return left;
  }

  @Override
  void resumeNow(String resource) {
    entry(resource);
    withState(
        resource,
        (s, now, granted) -> {
          s.resume();
          drain(s, now, granted);
          return null;
        });
    log.info("resumed {}", resource);
  }

  @Override
  ResourceSnapshot statsNow(String resource) {
    entry(resource);
    return withState(resource, (s, now, granted) -> snapshot(s.entry, s, now));
  }

  @Override
  long estimateNow(String resource, Map<String, Long> load, Lane lane, String tenant) {
    Objects.requireNonNull(lane, "lane");
    String who = tenant == null || tenant.isEmpty() ? TenantPolicy.DEFAULT_TENANT : Validation.tenant(tenant);
    LimitEntry e = entry(resource);
    Validation.load(e.spec, load);
    return withState(resource, (s, now, granted) -> {
      s.expireLeases(now);
      s.refill(now);
      long est = s.estimate(s.vector(Validation.load(s.spec, load)), lane, who, now);
      return est == ResourceState.NEVER ? -1L : est;
    });
  }



  /**
   * On the writer thread when the store is durable: a limit change writes and syncs a file, and
   * its future completes once that is done.
   */
  @Override
  <T> CompletableFuture<T> write(Supplier<T> change) {
    if (!store.durable()) {
      return now(change);
    }
    try {
      return CompletableFuture.supplyAsync(change, writer);
    } catch (RejectedExecutionException e) {
      return CompletableFuture.failedFuture(shuttingDown());
    }
  }

  private static ResourceSnapshot snapshot(LimitEntry e, ResourceState s, long now) {
    s.expireLeases(now);
    s.refill(now);
    Map<String, Double> available = new LinkedHashMap<>();
    Map<String, Double> used = new LinkedHashMap<>();
    for (int i = 0; i < s.dims.length; i++) {
      available.put(s.dims[i], s.level[i]);
      used.put(s.dims[i], s.used[i]);
    }
    for (int i = 0; i < s.heldDims.length; i++) {
      available.put(s.heldDims[i], (double) (s.heldCap[i] - s.held[i]));
    }
    Map<Lane, Integer> waiting = new EnumMap<>(Lane.class);
    for (Lane lane : Lane.values()) {
      waiting.put(lane, s.queued(lane));
    }
    Map<String, Long> rejected = new TreeMap<>();
    for (Outcome o : Outcome.ALL) {
      long n = o.reason == null ? 0 : e.count(o);
      if (n > 0) {
        rejected.put(o.reason, n);
      }
    }
    double[] p = e.waitPercentiles(now);
    long paused = s.pausedFor(now);
    return new ResourceSnapshot(
        s.spec,
        available,
        s.permits.size(),
        waiting,
        paused != 0,
        paused == ResourceState.NEVER ? -1 : paused,
        s.pauseState(now),
        e.count(Outcome.GRANTED),
        e.count(Outcome.TIMED_OUT),
        e.count(Outcome.CANCELLED),
        e.count(Outcome.GIVEN_BACK),
        e.count(Outcome.FORFEITED),
        e.count(Outcome.LEASE_EXPIRED),
        rejected,
        p[0],
        p[1],
        e.count(Outcome.THROTTLE_REPORTED),
        e.count(Outcome.THROTTLE_REPORTED) == 0 ? -1 : Math.max(0, now - e.lastThrottleAt),
        used,
        s.tenantStats());
  }

  /**
   * The most permits the resource's live state has held at once, taken at every grant (tests: a
   * concurrency cap broken for an instant shows here, whatever the callers saw).
   */
  int peakInFlight(String resource) {
    entry(resource);
    return withState(resource, (s, now, granted) -> s.peakPermits);
  }

  /** Whether a live state is held for the resource now, after due evictions (tests). */
  boolean holdsState(String resource) {
    states.cleanUp();
    return states.asMap().containsKey(resource);
  }

  /** Whether the resource holds a wait histogram now (tests: only waits should create one). */
  boolean holdsWaitHistogram(String resource) {
    return entry(resource).holdsWaitHistogram();
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    writer.shutdown(); // a change already taken is written; later ones are refused
    try {
      if (!writer.awaitTermination(10, TimeUnit.SECONDS)) {
        log.error("a limit change was still being written after 10 s: check the data directory's disk");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    for (ResourceState s : List.copyOf(states.asMap().values())) {
      List<Waiter> failed;
      synchronized (s) {
        s.cancelWake();
        failed = s.removeAll();
        for (Waiter w : failed) {
          w.status(Waiter.ENDED);
          s.entry.add(Outcome.REJECTED_SHUTDOWN);
        }
      }
      for (Waiter w : failed) {
        cancelTimeout(w);
        w.future.completeExceptionally(shuttingDown());
      }
    }
  }

  private static EngineException shuttingDown() {
    return new EngineException(
        EngineException.Reason.UNAVAILABLE,
        "coordinator is shutting down: retry on another node or after it restarts");
  }

  private static EngineException notGrantedInTime(String resource, long timeoutNanos, PauseState pause) {
    return new EngineException(
        EngineException.Reason.DEADLINE, PauseState.notGrantedInTime(resource, timeoutNanos, pause));
  }
}
