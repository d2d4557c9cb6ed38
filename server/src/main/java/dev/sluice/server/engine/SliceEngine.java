package dev.sluice.server.engine;

import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Slice mode: an opt-in of one node for resources whose rate is too high for a store round trip
 * per permit. The node takes capacity from its store in slices, each a plain acquire that waits
 * in the store's line among every node's acquires, and grants from the slices it holds without
 * asking the store again. Works over either store, the same way.
 *
 * <p>What it trades, and the bound it keeps:
 *
 * <ul>
 *   <li><b>Order.</b> FIFO within the node: its acquires are granted in arrival order, one line
 *       for every lane. Between nodes, the order is the slices' order in the store.
 *   <li><b>Precision.</b> Tokens are taken from the store before they are granted, and a slice
 *       is dropped {@link Rule#hold()} after the store granted it, used or not. So every grant is
 *       made within {@code hold} after the store counted it: the grants of any window are among
 *       the store's grants of that window widened by {@code hold}, so they stay within the
 *       default mode's bound plus {@code rate x hold} (the longest hold of any node), however
 *       many nodes slice. One exception, stated: a slice whose round trip outlasts its hold
 *       serves only the acquire it was asked for. A node that dies loses only what it held: the
 *       limit is under-used, never passed by more.
 *   <li><b>Refunds.</b> Tokens granted here are spent: a settle below the grant refunds
 *       nothing, a settle above it charges the difference to the node's next slices, and a
 *       grant given back unused is not put back.
 *   <li><b>Scope.</b> Rate-only limits without tenants. A resource with a concurrency cap or held
 *       dimensions (each permit must be counted where every node sees it), a tenant policy or
 *       an acquire naming a tenant, and a pool, are served by the store as usual.
 * </ul>
 *
 * <p>Request ids keep their meaning within the node (a retry while waiting takes the waiter
 * over, a retry of a fresh held permit gets it again, a reuse after the permit ended is refused
 * for 60 s); local permits have no lease at the store and are forgotten a lease after their
 * grant unless renewed. Another node answers their release and renewal itself, and takes a
 * settle above the grant (which rides in the permit id) as a debt of its own.
 */
public final class SliceEngine extends ForwardingEngine {

  private static final Logger log = LoggerFactory.getLogger(SliceEngine.class);

  /** How long a slice's acquire may wait in the store's line while someone waits here for it. */
  static final long FETCH_TIMEOUT_NANOS = TimeUnit.HOURS.toNanos(1);

  /**
   * What a rule's hold may be: the grants may pass the limit by {@code rate x hold}, so it stays
   * short; below a millisecond a slice would rarely outlive its round trip.
   */
  static final Durations.Bounds HOLD = Durations.Bounds.of(Duration.ofMillis(1), Duration.ofSeconds(1), "50ms")
      .zero("a slice must be held for a while to be used; leave the resource out of --slice to take none");

  /**
   * One node-level rule: resources matching {@code glob} take capacity in slices of
   * {@code hold} worth of their rate, each dropped {@code hold} after it arrived.
   */
  public record Rule(String glob, Duration hold) {
    public Rule {
      if (hold.isNegative() || hold.isZero()) {
        throw new IllegalArgumentException("slice hold for '" + glob + "' is " + hold + ": it must be > 0, e.g. 50ms");
      }
    }

    /**
     * Reads {@code GLOB=HOLD} (e.g. {@code openai-*=50ms}), as {@code sluice serve --slice}
     * takes it.
     *
     * @throws IllegalArgumentException naming what is wrong and the fix
     */
    public static Rule parse(String text) {
      int eq = text == null ? -1 : text.lastIndexOf('=');
      if (eq <= 0 || eq == text.length() - 1) {
        throw new IllegalArgumentException("slice rule '" + Validation.shown(String.valueOf(text), 80)
            + "' is not GLOB=HOLD: write e.g. openai-*=50ms (the resources, then how long a slice is held)");
      }
      String glob = text.substring(0, eq).strip();
      for (int i = 0; i < glob.length(); i++) {
        char c = glob.charAt(i);
        boolean ok = c == '*' || c == '?' || c == '.' || c == '_' || c == ':' || c == '/' || c == '-'
            || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!ok || glob.length() > 256) {
          throw new IllegalArgumentException("slice rule '" + Validation.shown(text, 80) + "': resources '"
              + Validation.shown(glob, 60) + "' must be a resource name or glob of at most 256 characters"
              + " [A-Za-z0-9._:/-] with * and ?");
        }
      }
      if (glob.isEmpty()) {
        throw new IllegalArgumentException("slice rule '" + Validation.shown(text, 80) + "' names no resources:"
            + " write e.g. openai-*=50ms");
      }
      Duration hold = Durations.parse("slice hold of '" + Validation.shown(glob, 60) + "'",
          text.substring(eq + 1).strip(), HOLD, false);
      return new Rule(glob, hold);
    }

    boolean matches(String resource) {
      return Templates.isPattern(glob) ? Templates.matches(glob, resource) : glob.equals(resource);
    }
  }

  private final Ticker ticker;
  private final Scheduler scheduler;
  private final List<Rule> rules;
  /** How every slice permit's id starts; this node's own add its tag ({@link #idPrefix}). */
  static final String SLICE_ID = "slice-";

  private final String idPrefix = SLICE_ID + Long.toString(new SecureRandom().nextLong() & 0xffffffffffL, 36) + "-";
  private final AtomicLong permitIds = new AtomicLong();
  private final ConcurrentHashMap<String, Slices> byResource = new ConcurrentHashMap<>();
  private final AtomicLong localGrants = new AtomicLong();
  private final AtomicLong slicesTaken = new AtomicLong();

  /** How often the state of resources idle here is let go. */
  static final long SWEEP_NANOS = TimeUnit.SECONDS.toNanos(10);

  private volatile Scheduler.Cancellable sweeper;
  private volatile boolean closed;

  public SliceEngine(Engine store, List<Rule> rules, Ticker ticker, Scheduler scheduler) {
    super(store);
    this.rules = List.copyOf(rules);
    this.ticker = ticker;
    this.scheduler = scheduler;
    this.sweeper = scheduler.schedule(this::sweep, SWEEP_NANOS);
  }

  /**
   * Lets go of the state of resources that hold nothing here any more (no line, no slice, no
   * permit, no remembered request id, no debt), so a glob over many resources stays bounded.
   */
  private void sweep() {
    long now = ticker.read();
    for (Map.Entry<String, Slices> e : byResource.entrySet()) {
      Slices s = e.getValue();
      synchronized (s) {
        if (s.idle(now)) {
          s.dead = true;
          byResource.remove(e.getKey(), s);
        }
      }
    }
    if (!closed) {
      sweeper = scheduler.schedule(this::sweep, SWEEP_NANOS);
    }
  }

  /** For tests: how many resources this node keeps slice state for. */
  int resourcesHeld() {
    return byResource.size();
  }

  /** The engine under the slices. */
  public Engine store() {
    return store;
  }

  /** Permits this node granted from its slices, and slices it took from the store. */
  public long localGrants() {
    return localGrants.get();
  }

  public long slicesTaken() {
    return slicesTaken.get();
  }

  private Rule ruleFor(String resource) {
    for (Rule r : rules) {
      if (r.matches(resource)) {
        return r;
      }
    }
    return null;
  }

  /** Whether this limit can be served from slices (see the class comment's scope). */
  static boolean sliceable(LimitSpec spec) {
    return !spec.isPool() && spec.concurrency() == 0 && spec.holds().isEmpty() && !spec.rates().isEmpty()
        && spec.tenants().equals(TenantPolicy.NONE);
  }

  // ------------------------------------------------------------------------------------ acquire

  @Override
  public Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String askedId, String tenant) {
    String requestId = askedId == null || askedId.isEmpty() ? null : askedId; // proto3's unset string
    Rule rule = tenant == null && resource != null ? ruleFor(resource) : null;
    if (rule == null) {
      return store.acquire(resource, load, lane, timeoutNanos, askedId, tenant);
    }
    if (closed) {
      return LaterTicket.failed(shuttingDown());
    }
    CompletableFuture<Optional<LimitSpec>> cached = store.cachedLimit(resource);
    if (cached.isDone() && !cached.isCompletedExceptionally()) {
      return acquire(cached.join(), rule, resource, load, lane, timeoutNanos, requestId);
    }
    LaterTicket later = new LaterTicket();
    cached.whenComplete((spec, error) -> later.start(error != null
        ? store.acquire(resource, load, lane, timeoutNanos, requestId, null)
        : acquire(spec, rule, resource, load, lane, timeoutNanos, requestId)));
    return later;
  }

  private Ticket acquire(Optional<LimitSpec> spec, Rule rule, String resource, Map<String, Long> load, Lane lane,
      long timeoutNanos, String requestId) {
    if (spec.isEmpty() || !sliceable(spec.get())) {
      return store.acquire(resource, load, lane, timeoutNanos, requestId, null);
    }
    Map<String, Long> charged;
    try {
      charged = Validation.load(spec.get(), load);
      if (requestId != null) {
        Validation.requestId(requestId);
      }
    } catch (EngineException invalid) {
      // The store refuses it with the same words, and counts the refusal.
      return store.acquire(resource, load, lane, timeoutNanos, requestId, null);
    }
    List<Runnable> after = new ArrayList<>(2);
    Local w = null;
    try {
      while (w == null) {
        if (closed) {
          return LaterTicket.failed(shuttingDown());
        }
        Slices s = byResource.computeIfAbsent(resource, r -> new Slices(r, rule));
        synchronized (s) {
          if (!s.dead) {
            w = s.acquire(spec.get(), charged, lane, timeoutNanos, requestId, ticker.read(), after);
          }
        }
      }
    } catch (EngineException refused) {
      return LaterTicket.failed(refused);
    } finally {
      after.forEach(Runnable::run); // also what the limit's change refused, when this acquire is refused
    }
    return w;
  }

  /** One resource's slices, line and local permits on this node. Guarded by its own monitor. */
  private final class Slices {
    final String resource;
    final Rule rule;
    LimitSpec spec;
    String[] dims = new String[0];
    long[] tokens = new long[0];
    long[] expiresAt = new long[0];
    /** The largest slice: {@code hold} worth of the rate, at most the burst, at least 1. */
    long[] sliceSize = new long[0];
    /** What this node granted since the last slice landed, and what that slice brought. */
    long[] used = new long[0];
    long[] lastGot = new long[0];
    long landedAt;
    long[] freshAlone = new long[0];
    long[] burst = new long[0];
    /** One period's amount per dimension: the deepest a debt goes, as in the stores. */
    long[] debtFloor = new long[0];
    final ArrayDeque<Local> line = new ArrayDeque<>();
    /** The queued acquires that came with a request id. */
    final HashMap<String, Local> queuedIds = new HashMap<>();
    /** Granted permits, in grant (and so lease) order; a renewal moves one to the end. */
    final LinkedHashMap<String, Local> held = new LinkedHashMap<>();
    RequestIds<Local> ids;
    /** The slice request on its way, or null. */
    Fetch fetching;
    /** Store refusals of a slice as INVALID in a row: the first re-reads the limit, the next ends the line. */
    int invalidInARow;
    /** Let go of (idle, deleted, closed): an acquire that finds it makes a new one. */
    boolean dead;

    Slices(String resource, Rule rule) {
      this.resource = resource;
      this.rule = rule;
    }

    /**
     * Adopts the limit as it is now. Same rate names in the same order: new sizes, what is held
     * stays. Otherwise the tokens in hand are dropped and every queued acquire is checked and
     * laid out again against the new rates; one that no longer fits is refused as the store
     * would refuse it.
     */
    void adopt(LimitSpec next, List<Runnable> after) {
      if (next == spec || next.equals(spec)) {
        return;
      }
      int n = next.rates().size();
      String[] names = new String[n];
      for (int i = 0; i < n; i++) {
        names[i] = next.rates().get(i).name();
      }
      boolean sameDims = java.util.Arrays.equals(names, dims);
      spec = next;
      if (!sameDims) {
        dims = names;
        tokens = new long[n];
        expiresAt = new long[n];
        used = new long[n];
        lastGot = new long[n];
      }
      sliceSize = new long[n];
      freshAlone = new long[n];
      burst = new long[n];
      debtFloor = new long[n];
      double holdNanos = rule.hold().toNanos();
      for (int i = 0; i < n; i++) {
        RateSpec r = next.rates().get(i);
        burst[i] = r.burst();
        debtFloor[i] = -r.amount();
        double perNano = r.effectiveAmount(next.jitter()) / r.period().toNanos();
        sliceSize[i] = Math.max(1, Math.min(r.burst(), (long) Math.floor(perNano * holdNanos)));
        freshAlone[i] = (long) Math.floor(r.burst() * (r.period().toNanos() / 1000.0) / r.amount() / 2) * 1000;
      }
      for (Local w : line.toArray(new Local[0])) {
        try {
          w.vector = vector(Validation.load(next, w.load));
        } catch (EngineException refused) {
          unqueue(w);
          w.leave();
          w.state = Local.ENDED;
          after.add(() -> w.future.completeExceptionally(refused));
        }
      }
    }

    long[] vector(Map<String, Long> load) {
      long[] v = new long[dims.length];
      for (int i = 0; i < dims.length; i++) {
        v[i] = load.getOrDefault(dims[i], 0L);
      }
      return v;
    }

    Local acquire(LimitSpec limit, Map<String, Long> charged, Lane lane, long timeoutNanos, String requestId,
        long now, List<Runnable> after) {
      adopt(limit, after);
      forgetExpired(now);
      if (!line.isEmpty()) {
        grantFitting(now, after); // the change may have let the head fit, or taken it out
      }
      boolean forfeited = false;
      if (requestId != null) {
        Local queued = queuedIds.get(requestId);
        if (queued != null) {
          return takeOver(queued, timeoutNanos, now, after);
        }
        Local same = ids == null ? null : ids.held(requestId);
        if (same != null && same.state != Local.ENDED) {
          long fresh = fresh(same.vector);
          if (fresh < 0 || now - same.grantedAt <= fresh) {
            // The same permit, not charged again; a give-back of its first delivery is ignored.
            if (same.state == Local.GRANTED) {
              same.state = Local.CLAIMED;
            }
            Local again = new Local(this, same.vector, same.load, same.lane, requestId, same.arrival);
            again.state = Local.CLAIMED;
            again.future.complete(same.grant.handedOverAfter(now - same.grantedAt));
            return again;
          }
          // Too late to hand over: forfeited, its tokens stay spent; the retry waits first in line.
          held.remove(same.permitId);
          same.state = Local.ENDED;
          ids.ended(requestId, same, now, true);
          forfeited = true;
        } else {
          Long ended = ids == null ? null : ids.endedAt(requestId, now);
          if (ended != null) {
            throw EngineException.invalid(MemoryEngine.usedUp(resource, requestId, now - ended));
          }
        }
      }
      Local w = new Local(this, vector(charged), charged, lane, requestId, now);
      expire(now);
      if (line.isEmpty() && fits(w.vector)) {
        grant(w, now, after);
        return w;
      }
      if (timeoutNanos == 0) {
        w.state = Local.ENDED;
        w.future.completeExceptionally(new EngineException(
            EngineException.Reason.DEADLINE, PauseState.notGrantedInTime(resource, 0, PauseState.NONE)));
        return w;
      }
      if (!forfeited && line.size() >= spec.maxWaiting()) {
        throw roomFull();
      }
      enqueue(w, forfeited);
      w.deadline(timeoutNanos);
      fetch(now, after);
      return w;
    }

    private EngineException roomFull() {
      // The hint: the time the line's load takes at the rate, on its slowest dimension.
      double seconds = 0;
      for (int i = 0; i < dims.length; i++) {
        long queued = 0;
        for (Local q : line) {
          queued += q.vector[i];
        }
        RateSpec r = spec.rates().get(i);
        seconds = Math.max(seconds, queued / (r.effectiveAmount(spec.jitter()) / r.period().toNanos() * 1e9));
      }
      long hint = Math.max(TimeUnit.SECONDS.toNanos(1), (long) (seconds * 1e9));
      return new EngineException(EngineException.Reason.WAITING_ROOM_FULL,
          "waiting room of '" + resource + "' is full (" + line.size() + " waiting, max " + spec.maxWaiting()
              + "): retry after the hinted delay, or raise --max-waiting", hint);
    }

    /**
     * Queues {@code w}: last, or, for a retry whose grant was forfeited, at the head behind the
     * retries forfeited before it.
     */
    private void enqueue(Local w, boolean forfeited) {
      w.forfeited = forfeited;
      if (!forfeited) {
        line.addLast(w);
      } else if (line.isEmpty() || !line.peekFirst().forfeited) {
        line.addFirst(w);
      } else {
        Local[] all = line.toArray(new Local[0]);
        line.clear();
        boolean placed = false;
        for (Local x : all) {
          if (!placed && !x.forfeited) {
            line.addLast(w);
            placed = true;
          }
          line.addLast(x);
        }
        if (!placed) {
          line.addLast(w);
        }
      }
      if (w.requestId != null) {
        queuedIds.put(w.requestId, w);
      }
    }

    /** Takes {@code w} out of the line; false if it was not in it. */
    boolean unqueue(Local w) {
      if (!line.remove(w)) {
        return false;
      }
      if (w.requestId != null) {
        queuedIds.remove(w.requestId, w);
      }
      return true;
    }

    private Local pollHead() {
      Local w = line.pollFirst();
      if (w != null && w.requestId != null) {
        queuedIds.remove(w.requestId, w);
      }
      return w;
    }

    /** Ends every acquire waiting here with {@code why}. */
    void endLine(Throwable why, List<Runnable> after) {
      for (Local w = pollHead(); w != null; w = pollHead()) {
        w.leave();
        w.state = Local.ENDED;
        Local ended = w;
        after.add(() -> ended.future.completeExceptionally(why));
      }
    }

    /**
     * A retry of a waiting acquire takes the waiter over in its place in line, with its load,
     * lane and arrival, and the new timeout; the earlier ticket is cancelled. A try-once answers
     * at once instead: the waiter leaves the line, the retry times out.
     */
    private Local takeOver(Local old, long timeoutNanos, long now, List<Runnable> after) {
      Local next = new Local(this, old.vector, old.load, old.lane, old.requestId, old.arrival);
      next.forfeited = old.forfeited;
      old.leave();
      old.state = Local.ENDED;
      if (timeoutNanos == 0) {
        unqueue(old);
        next.state = Local.ENDED;
        next.future.completeExceptionally(new EngineException(
            EngineException.Reason.DEADLINE, PauseState.notGrantedInTime(resource, 0, PauseState.NONE)));
      } else {
        Local[] all = line.toArray(new Local[0]);
        line.clear();
        for (Local x : all) {
          line.addLast(x == old ? next : x);
        }
        queuedIds.put(next.requestId, next);
        next.deadline(timeoutNanos);
      }
      after.add(() -> old.future.completeExceptionally(new CancellationException(
          "taken over by a retry with the same request id")));
      if (timeoutNanos == 0) {
        drain(now, after);
      }
      return next;
    }

    long fresh(long[] vector) {
      long fresh = -1;
      for (int i = 0; i < vector.length; i++) {
        if (vector[i] > 0) {
          fresh = fresh < 0 ? freshAlone[i] : Math.min(fresh, freshAlone[i]);
        }
      }
      return fresh;
    }

    /** Drops what slices held past their hold (a debt stays). */
    void expire(long now) {
      for (int i = 0; i < tokens.length; i++) {
        if (tokens[i] > 0 && now - expiresAt[i] >= 0) {
          tokens[i] = 0;
        }
      }
    }

    boolean fits(long[] v) {
      for (int i = 0; i < v.length; i++) {
        if (v[i] > tokens[i]) {
          return false;
        }
      }
      return true;
    }

    void grant(Local w, long now, List<Runnable> after) {
      for (int i = 0; i < w.vector.length; i++) {
        tokens[i] -= w.vector[i];
        used[i] += w.vector[i];
      }
      // The grant rides in the id, so a node that did not grant it can charge a settle above it.
      StringBuilder id = new StringBuilder(idPrefix).append(Long.toString(permitIds.incrementAndGet(), 36));
      for (long v : w.vector) {
        id.append('_').append(Long.toString(v, 36));
      }
      w.permitId = id.toString();
      w.grantedAt = now;
      w.leaseUntil = now + spec.leaseTtl().toNanos();
      w.state = Local.GRANTED;
      w.grant = new Grant(w.permitId, resource, w.load, spec.leaseTtl().toNanos(), now - w.arrival, fresh(w.vector));
      held.put(w.permitId, w);
      if (w.requestId != null) {
        if (ids == null) {
          ids = new RequestIds<>();
        }
        ids.hold(w.requestId, w);
      }
      localGrants.incrementAndGet();
      Grant g = w.grant;
      after.add(() -> w.future.complete(g));
    }

    /** Grants the line's head while it fits; then asks for a slice if someone still waits. */
    void drain(long now, List<Runnable> after) {
      grantFitting(now, after);
      fetch(now, after);
    }

    private void grantFitting(long now, List<Runnable> after) {
      expire(now);
      while (!line.isEmpty() && fits(line.peekFirst().vector)) {
        Local w = pollHead();
        w.leave();
        grant(w, now, after);
      }
    }

    /**
     * Takes a slice for the line's head from the store, unless one is on its way. A slice the
     * store grants at once (the memory store with capacity) is taken in here, in a loop, not
     * from its future's callback: a long line served slice by slice never recurses.
     */
    void fetch(long now, List<Runnable> after) {
      while (true) {
        if (line.isEmpty()) {
          if (fetching != null) {
            // Nobody waits for it any more: leave the store's line (an unclaimed grant goes back;
            // one that lands all the same is taken in with its own stamps).
            Ticket t = fetching.ticket;
            fetching = null;
            t.cancel();
          }
          return;
        }
        if (fetching != null) {
          return;
        }
        Map<String, Long> ask = ask(line.peekFirst(), now);
        if (ask == null) {
          return;
        }
        Ticket t = store.acquire(resource, ask, line.peekFirst().lane, FETCH_TIMEOUT_NANOS, null, null);
        Fetch f = new Fetch(t, now);
        fetching = f;
        // Answered on another thread: taken in there. Answered here, under this monitor (at once,
        // or by a store call this node makes): the loop below takes it, without recursing.
        t.future().whenComplete((grant, error) -> {
          if (!Thread.holdsLock(Slices.this)) {
            landed(f);
          }
        });
        if (!t.future().isDone()) {
          return;
        }
        take(f, now, after);
        grantFitting(now, after);
      }
    }

    /**
     * The slice the head needs, for every dimension the head charges (one slice, one expiry):
     * at least what it lacks (a debt included); beyond it, half of what this node granted over
     * the last {@code hold} (so at a steady demand a slice is used up before it is dropped, and
     * nodes take only what they use); at most 4 times the last slice (a node's demand is learnt
     * in a few round trips, not guessed), {@code hold} worth of the rate and the burst. Null if
     * the head fits already.
     */
    private Map<String, Long> ask(Local head, long now) {
      if (fits(head.vector)) {
        return null;
      }
      Map<String, Long> ask = new LinkedHashMap<>();
      double holdNanos = rule.hold().toNanos();
      double elapsed = Math.max(now - landedAt, TimeUnit.MILLISECONDS.toNanos(1));
      for (int i = 0; i < dims.length; i++) {
        long take = 0;
        if (head.vector[i] > 0) {
          long need = head.vector[i] - Math.min(tokens[i], 0); // leftovers are dropped when it lands
          long demand = (long) Math.ceil(0.5 * used[i] * Math.min(holdNanos / elapsed, 1e6));
          long grown = lastGot[i] > 0 ? Math.min(demand, 4 * lastGot[i]) : 0;
          // A head above the hold's worth still gets all it needs; a debt beyond the burst is
          // paid over several slices.
          take = Math.min(burst[i], Math.max(need, Math.min(grown, sliceSize[i])));
        }
        ask.put(dims[i], take);
      }
      return ask;
    }

    /** A slice's answer came on the store's side (a Redis reply, a timer, another node's call). */
    private void landed(Fetch f) {
      List<Runnable> after = new ArrayList<>();
      try {
        synchronized (this) {
          long now = ticker.read();
          take(f, now, after);
          if (!dead) {
            drain(now, after);
          }
        }
      } catch (RuntimeException | Error bug) {
        log.error("slice of '{}' could not be handed out: please report it", resource, bug);
      }
      after.forEach(Runnable::run);
    }

    /**
     * Takes in the answer of the slice request {@code f} (done), once: its tokens, held from the
     * store's grant on; or the store's refusal.
     */
    private void take(Fetch f, long now, List<Runnable> after) {
      if (f.taken) {
        return;
      }
      f.taken = true;
      if (fetching == f) {
        fetching = null;
      }
      CompletableFuture<Grant> answer = f.ticket.future();
      Grant grant = answer.isCompletedExceptionally() || answer.isCancelled() ? null : answer.join();
      if (grant != null) {
        if (!f.ticket.claim()) {
          return; // cancelled before it landed: the store took it back
        }
        releaseSlice(grant);
        if (!dead) {
          landedSlice(grant, f.askedAt, now, after);
        }
        return;
      }
      Throwable why = EngineException.unwrap(answer.handle((g, e) -> e).join());
      if (why instanceof CancellationException
          || (why instanceof EngineException e && e.reason() == EngineException.Reason.DEADLINE)) {
        return;
      }
      if (why instanceof EngineException e && e.reason() == EngineException.Reason.INVALID
          && invalidInARow++ == 0) {
        // The limit changed under the slice (a lower burst, another dimension): read it again
        // and ask anew; a second refusal in a row ends the line.
        CompletableFuture<Optional<LimitSpec>> now2 = store.cachedLimit(resource);
        if (now2.isDone() && !now2.isCompletedExceptionally() && now2.join().isPresent()
            && sliceable(now2.join().get())) {
          adopt(now2.join().get(), after);
          return;
        }
      }
      // The store refused the slice (limit deleted or changed, store away): so it refuses every
      // acquire waiting here, with its own words.
      endLine(why, after);
    }

    /** Rate tokens are spent at the grant: the store's permit of a slice holds nothing more. */
    private void releaseSlice(Grant grant) {
      store.release(resource, grant.permitId(), Map.of(), false, false).whenComplete((ok, e) -> {
        if (e != null) {
          log.debug("releasing slice {} of '{}' failed (its lease ends it): {}", grant.permitId(), resource,
              e.toString());
        }
      });
    }

    private void landedSlice(Grant grant, long askedAt, long now, List<Runnable> after) {
      invalidInARow = 0;
      slicesTaken.incrementAndGet();
      // Held from the store's grant on, not from its arrival here: a slow answer shortens the
      // hold instead of stretching the bound.
      long until = askedAt + grant.waitedNanos() + rule.hold().toNanos();
      boolean late = until - now <= 0;
      for (int i = 0; i < dims.length; i++) {
        long got = grant.load().getOrDefault(dims[i], 0L);
        if (got > 0) {
          tokens[i] = Math.min(tokens[i], 0) + got;
          expiresAt[i] = until;
          lastGot[i] = got;
          used[i] = 0;
        }
      }
      landedAt = now;
      if (late) {
        // Back after its hold (a round trip longer than the hold): it still serves the acquire
        // it was asked for, and nothing more, so the line moves and the bound grows by that load.
        Local head = line.peekFirst();
        if (head != null && fits(head.vector)) {
          pollHead();
          head.leave();
          grant(head, now, after);
        }
        for (int i = 0; i < tokens.length; i++) {
          tokens[i] = Math.min(tokens[i], 0);
        }
      }
    }

    /** The permit ends: forgotten, its request id used up. */
    void end(Local w, long now) {
      held.remove(w.permitId);
      w.state = Local.ENDED;
      if (w.requestId != null && ids != null) {
        ids.ended(w.requestId, w, now, false);
        if (ids.isEmpty(now)) {
          ids = null;
        }
      }
    }

    /** Permits whose lease ran out without a release or renewal are forgotten. */
    void forgetExpired(long now) {
      Iterator<Local> it = held.values().iterator();
      while (it.hasNext()) {
        Local w = it.next();
        if (now - w.leaseUntil < 0) {
          break;
        }
        it.remove();
        w.state = Local.ENDED;
        if (w.requestId != null && ids != null) {
          ids.ended(w.requestId, w, now, false);
        }
      }
    }

    /**
     * Ends a local permit; a settle above its grant is a debt the next slices pay (no deeper
     * than one period's amount, as in the stores), one below refunds nothing.
     *
     * @throws EngineException (INVALID) for a settle the stores would refuse
     */
    boolean release(String permitId, Map<String, Long> actual, boolean settle, long now) {
      forgetExpired(now);
      expire(now); // a debt is never paid out of tokens already dropped
      Local w = held.get(permitId);
      if (w == null) {
        return false;
      }
      if (settle) {
        Validation.usage(spec, actual, "settle", false);
        for (int i = 0; i < dims.length; i++) {
          Long usedNow = actual.get(dims[i]);
          long charged = w.load.getOrDefault(dims[i], 0L);
          if (usedNow != null && usedNow > charged) {
            tokens[i] = Math.max(debtFloor[i], tokens[i] - (usedNow - charged));
          }
        }
      }
      end(w, now);
      return true;
    }

    /** A settle above a grant made on another node: a debt, as one of this node's own. */
    void owe(Map<String, Long> excess, long now) {
      expire(now);
      for (int i = 0; i < dims.length; i++) {
        long more = excess.getOrDefault(dims[i], 0L);
        if (more > 0) {
          tokens[i] = Math.max(debtFloor[i], tokens[i] - more);
        }
      }
    }

    boolean renew(String permitId, long now) {
      forgetExpired(now);
      Local w = held.remove(permitId);
      if (w == null) {
        return false;
      }
      w.leaseUntil = now + spec.leaseTtl().toNanos();
      held.put(permitId, w);
      return true;
    }

    boolean idle(long now) {
      forgetExpired(now);
      expire(now);
      if (!line.isEmpty() || fetching != null || !held.isEmpty() || (ids != null && !ids.isEmpty(now))) {
        return false;
      }
      for (long t : tokens) {
        if (t != 0) {
          return false;
        }
      }
      return true;
    }

    /** Drops what the slices hold (the upstream said it has nothing left). */
    void empty() {
      for (int i = 0; i < tokens.length; i++) {
        tokens[i] = Math.min(tokens[i], 0);
      }
    }

    /** Lets this state go (deleted, closing): nothing more is granted from it. */
    void retire(Throwable why, List<Runnable> after) {
      dead = true;
      empty();
      endLine(why, after);
      fetch(ticker.read(), after); // the line is empty: cancels a slice on its way
    }
  }

  /** One slice request: its ticket, when it was made, and whether its answer was taken in. */
  private static final class Fetch {
    final Ticket ticket;
    final long askedAt;
    boolean taken;

    Fetch(Ticket ticket, long askedAt) {
      this.ticket = ticket;
      this.askedAt = askedAt;
    }
  }

  /** An acquire on a sliced resource: waiting in the node's line, then a local permit. */
  private final class Local implements Ticket {
    static final int WAITING = 0;
    static final int GRANTED = 1;
    static final int CLAIMED = 2;
    static final int ENDED = 3;

    final Slices s;
    /** The load laid out as {@code s.dims}: laid out again when the limit's rates change. */
    long[] vector;
    final Map<String, Long> load;
    final Lane lane;
    final String requestId;
    final long arrival;
    final CompletableFuture<Grant> future = new CompletableFuture<>();
    /** Guarded by {@code s}. */
    int state = WAITING;
    Scheduler.Cancellable timer;
    /** A retry whose earlier grant was forfeited: it waits at the head of the line. */
    boolean forfeited;
    String permitId;
    long grantedAt;
    long leaseUntil;
    Grant grant;

    Local(Slices s, long[] vector, Map<String, Long> load, Lane lane, String requestId, long arrival) {
      this.s = s;
      this.vector = vector;
      this.load = load;
      this.lane = lane;
      this.requestId = requestId;
      this.arrival = arrival;
    }

    void deadline(long timeoutNanos) {
      if (timeoutNanos < FETCH_TIMEOUT_NANOS * 24 * 365) {
        timer = scheduler.schedule(() -> timedOut(timeoutNanos), timeoutNanos);
      }
    }

    /** Out of the line (granted, cancelled, taken over): its timer is no longer needed. */
    void leave() {
      if (timer != null) {
        timer.cancel();
        timer = null;
      }
    }

    private void timedOut(long timeoutNanos) {
      List<Runnable> after = new ArrayList<>(1);
      synchronized (s) {
        if (state != WAITING || !s.unqueue(this)) {
          return;
        }
        state = ENDED;
        after.add(() -> future.completeExceptionally(new EngineException(EngineException.Reason.DEADLINE,
            PauseState.notGrantedInTime(s.resource, timeoutNanos, PauseState.NONE))));
        s.drain(ticker.read(), after); // the head may have left: the next one may fit
      }
      after.forEach(Runnable::run);
    }

    @Override
    public CompletableFuture<Grant> future() {
      return future;
    }

    @Override
    public boolean claim() {
      synchronized (s) {
        if (state == GRANTED) {
          state = CLAIMED;
        }
        return state == CLAIMED;
      }
    }

    /** Takes this acquire out of the line if it still waits (under {@code s}); false if not. */
    boolean withdraw(List<Runnable> after) {
      if (state != WAITING || !s.unqueue(this)) {
        return false;
      }
      leave();
      state = ENDED;
      after.add(() -> future.cancel(false));
      s.drain(ticker.read(), after);
      return true;
    }

    @Override
    public void cancel() {
      List<Runnable> after = new ArrayList<>(1);
      synchronized (s) {
        if (!withdraw(after) && state == GRANTED) {
          // Handed to nobody: its tokens stay spent (slice mode puts nothing back), its id is free.
          s.held.remove(permitId);
          state = ENDED;
          if (requestId != null && s.ids != null) {
            s.ids.ended(requestId, this, ticker.read(), true);
          }
        }
      }
      after.forEach(Runnable::run);
    }
  }

  /** For tests: the slice acquire on its way for {@code resource}, or null. */
  Ticket fetching(String resource) {
    Slices s = byResource.get(resource);
    if (s == null) {
      return null;
    }
    synchronized (s) {
      return s.fetching == null ? null : s.fetching.ticket;
    }
  }

  /** For tests: acquires waiting in this node's line for {@code resource}. */
  int waitingHere(String resource) {
    Slices s = byResource.get(resource);
    if (s == null) {
      return 0;
    }
    synchronized (s) {
      return s.line.size();
    }
  }

  // ------------------------------------------------------------------ permits, feedback, limits

  @Override
  public CompletableFuture<Boolean> cancel(String resource, String requestId) {
    Slices s = byResource.get(resource);
    if (s != null && requestId != null) {
      List<Runnable> after = new ArrayList<>(1);
      boolean withdrawn;
      synchronized (s) {
        Local w = s.queuedIds.get(requestId);
        if (w == null) {
          withdrawn = false;
        } else {
          // Only a waiter leaves: a grant that got there first stays its caller's.
          withdrawn = w.withdraw(after);
        }
      }
      after.forEach(Runnable::run);
      if (withdrawn) {
        return CompletableFuture.completedFuture(true);
      }
    }
    return store.cancel(resource, requestId);
  }

  @Override
  public CompletableFuture<Boolean> release(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    if (permitId != null && permitId.startsWith(SLICE_ID) && !permitId.startsWith(idPrefix)) {
      return releaseForeign(resource, permitId, actual, settle && !unused);
    }
    Slices s = permitId != null && permitId.startsWith(idPrefix) ? byResource.get(resource) : null;
    if (s == null) {
      return store.release(resource, permitId, actual, settle, unused);
    }
    synchronized (s) {
      try {
        return CompletableFuture.completedFuture(s.release(permitId, actual, settle && !unused, ticker.read()));
      } catch (EngineException refused) {
        return CompletableFuture.failedFuture(refused);
      }
    }
  }

  /**
   * A permit another node granted from its slices, released here (the SDK and the HTTP API
   * release through any node). It holds nothing at the store, so there is nothing to free: a
   * well-formed id is answered as released (the node that granted it forgets it when its lease
   * runs out), any other as unknown. A settle above its grant (the grant is in the id) is
   * checked, then charged where a debt of this node's own would be: to this node's slices of
   * the resource, no deeper than one period's amount, so that ids made up to look foreign
   * cannot charge more than a real settle could; a node that does not slice the resource takes
   * the excess from the store with one try, if it is there, and queues nothing.
   */
  private CompletableFuture<Boolean> releaseForeign(
      String resource, String permitId, Map<String, Long> actual, boolean settle) {
    if (!wellFormed(permitId)) {
      return store.release(resource, permitId, actual, settle, false);
    }
    if (!settle || actual.isEmpty()) {
      return CompletableFuture.completedFuture(true);
    }
    return store.cachedLimit(resource).thenApply(spec -> {
      if (spec.isEmpty() || !sliceable(spec.get())) {
        return true;
      }
      Validation.usage(spec.get(), actual, "settle", false);
      long[] granted = grantedIn(permitId, spec.get().rates().size());
      if (granted == null) {
        return true;
      }
      Map<String, Long> excess = new LinkedHashMap<>();
      boolean any = false;
      for (int i = 0; i < granted.length; i++) {
        RateSpec r = spec.get().rates().get(i);
        Long used = actual.get(r.name());
        long more = used == null ? 0 : Math.min(r.burst(), Math.max(0, used - granted[i]));
        excess.put(r.name(), more);
        any |= more > 0;
      }
      if (!any) {
        return true;
      }
      Rule rule = ruleFor(resource);
      if (rule != null && !closed) {
        List<Runnable> after = new ArrayList<>();
        Slices s = byResource.computeIfAbsent(resource, r -> new Slices(r, rule));
        synchronized (s) {
          if (!s.dead) {
            s.adopt(spec.get(), after);
            s.owe(excess, ticker.read());
          }
        }
        after.forEach(Runnable::run);
      } else {
        Ticket debt = store.acquire(resource, excess, Lane.BATCH, 0, null, null);
        debt.future().whenComplete((g, e) -> {
          if (g != null && debt.claim()) {
            store.release(resource, g.permitId(), Map.of(), false, false);
          }
        });
      }
      return true;
    });
  }

  /** Whether {@code id} has the form of a slice permit's id: the prefix, a node, a number, and a load. */
  static boolean wellFormed(String id) {
    if (id == null || !id.startsWith(SLICE_ID) || id.length() > 200) {
      return false;
    }
    String[] parts = id.split("_", -1);
    if (parts.length < 2) {
      return false;
    }
    for (int i = 1; i < parts.length; i++) {
      if (parts[i].isEmpty() || parts[i].length() > 13 || !parts[i].chars().allMatch(
          c -> (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) {
        return false;
      }
    }
    return true;
  }

  /** The load a slice permit was granted, from its id (see {@code Slices.grant}); null if unreadable. */
  static long[] grantedIn(String permitId, int dims) {
    String[] parts = permitId.split("_", -1);
    if (parts.length != dims + 1) {
      return null;
    }
    long[] v = new long[dims];
    try {
      for (int i = 0; i < dims; i++) {
        v[i] = Long.parseLong(parts[i + 1], 36);
      }
    } catch (NumberFormatException e) {
      return null;
    }
    return v;
  }

  @Override
  public CompletableFuture<List<String>> renew(String resource, List<String> permitIds) {
    Slices s = byResource.get(resource);
    List<String> theirs = new ArrayList<>();
    List<String> lost = new ArrayList<>();
    long now = ticker.read();
    for (String id : permitIds) {
      if (id == null || !id.startsWith(SLICE_ID)) {
        theirs.add(id);
      } else if (id.startsWith(idPrefix) || !wellFormed(id)) {
        boolean renewed;
        if (s == null) {
          renewed = false;
        } else {
          synchronized (s) {
            renewed = s.renew(id, now);
          }
        }
        if (!renewed) {
          lost.add(id);
        }
      }
      // Another node's slice permit holds nothing at the store: nothing to renew here.
    }
    if (theirs.isEmpty()) {
      return CompletableFuture.completedFuture(lost);
    }
    if (lost.isEmpty() && theirs.size() == permitIds.size()) {
      return store.renew(resource, permitIds);
    }
    return store.renew(resource, theirs).thenApply(notRenewed -> {
      List<String> all = new ArrayList<>(lost);
      all.addAll(notRenewed);
      return all;
    });
  }

  @Override
  public CompletableFuture<Long> report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    emptyOnThrottle(resource, throttled);
    return store.report(resource, throttled, retryAfterNanos, remaining);
  }

  @Override
  public CompletableFuture<Learned> reportLearning(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining,
      Map<String, Long> limits, long wallMillis) {
    emptyOnThrottle(resource, throttled);
    return store.reportLearning(resource, throttled, retryAfterNanos, remaining, limits, wallMillis);
  }

  private void emptyOnThrottle(String resource, boolean throttled) {
    Slices s = byResource.get(resource);
    if (throttled && s != null) {
      synchronized (s) {
        s.empty();
      }
    }
  }

  @Override
  public CompletableFuture<Long> pause(String resource, long nanos) {
    Slices s = byResource.get(resource);
    if (s != null) {
      synchronized (s) {
        s.empty();
      }
    }
    return store.pause(resource, nanos);
  }

  @Override
  public CompletableFuture<Void> deleteLimit(String resource) {
    return store.deleteLimit(resource).thenApply(v -> {
      Slices s = byResource.remove(resource);
      if (s != null) {
        List<Runnable> after = new ArrayList<>();
        synchronized (s) {
          s.retire(EngineException.notFound(resource), after);
        }
        after.forEach(Runnable::run);
      }
      return v;
    });
  }

  @Override
  public void close() {
    failAll();
    store.close();
  }

  @Override
  public void closeStore() {
    failAll();
    store.closeStore();
  }

  private void failAll() {
    closed = true;
    Scheduler.Cancellable sweep = sweeper;
    if (sweep != null) {
      sweep.cancel();
    }
    for (Map.Entry<String, Slices> e : byResource.entrySet()) {
      Slices s = e.getValue();
      List<Runnable> after = new ArrayList<>();
      synchronized (s) {
        s.retire(shuttingDown(), after);
        byResource.remove(e.getKey(), s);
      }
      after.forEach(Runnable::run);
    }
  }

  private static EngineException shuttingDown() {
    return new EngineException(EngineException.Reason.UNAVAILABLE,
        "coordinator is shutting down: retry on another node or after it restarts");
  }
}
