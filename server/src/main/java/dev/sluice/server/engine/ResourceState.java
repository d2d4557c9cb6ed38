package dev.sluice.server.engine;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Live state of one resource: buckets, waiting room, leases, pauses. A self-contained state
 * machine with no reference to its engine: {@link #drain} returns the grants and the next
 * wake-up, the engine keeps the locks and the timers. (A little over 700 lines: the waiting
 * room's aging and the lease bookkeeping are one algorithm with the buckets.) Every field is
 * guarded by this object's monitor; nothing here blocks, does I/O or completes a future
 * (completions are collected and run by the caller after the monitor is released).
 *
 * <h2>Buckets</h2>
 * One token bucket per rate dimension, refilled continuously: {@code level += elapsed * rate},
 * capped at the burst. A grant takes the whole load from every dimension at once or takes
 * nothing (multi-dimension atomicity). A level may go below zero through settle (debt) so the
 * next grants wait until the debt is paid off; debt is floored at one period's amount.
 *
 * <h2>Waiting room</h2>
 * Three FIFO lanes, served in strict priority: the next waiter is the head of the highest
 * non-empty lane. Aging bounds starvation: a lower-lane head that has waited at least
 * {@code aging} is <em>aged</em>, and while one exists, grants alternate between the priority
 * pick and the oldest aged head. So a lower lane gets at least every other grant once its head
 * has waited {@code aging}, and a higher-lane arrival waits at most for one aged grant plus its
 * own load to refill. The chosen waiter is served strictly first: loads behind it never
 * overtake it (no bypass, so a big load is never starved by small ones). When it cannot be
 * served, the exact instant it can is computed from the deficit and the refill rate, the pause
 * end or the next lease expiry, and one wake-up is scheduled for it; releases, resumes and
 * limit changes re-run the same drain.
 *
 * <h2>Leases</h2>
 * Every permit has a lease (insertion-ordered map; a renewal moves it to the end, so with one
 * TTL per resource the map stays sorted by expiry). Permits hold a concurrency slot when the
 * limit has a cap; expired leases are dropped lazily at the start of every operation.
 *
 * <h2>Held dimensions</h2>
 * A limit's {@link LimitSpec#holds} cap the sum of a dimension over the live permits (a
 * weighted semaphore, e.g. a provider's batch queue in enqueued tokens): a permit holds its
 * load on such a dimension from its grant until it ends (release or lease expiry) and nothing
 * refills with time. {@link #held} is that sum, kept at every grant and end and counted afresh
 * from the permits when the limit changes; a permit adopted after a restart holds nothing (its
 * load is unknown). A waiter whose load does not fit waits, as for the concurrency cap, until
 * the next lease expiry or an event (a release); one that no longer fits a lowered cap at all
 * waits for an event.
 */
final class ResourceState {

  static final long NEVER = Long.MAX_VALUE;

  final String name;
  final LimitEntry entry;

  LimitSpec spec;
  long leaseTtl;
  String[] dims;
  /** Refill rate per microsecond (see {@link RateSpec#perMicro}). */
  double[] perMicro;
  long[] burst;
  /** {@link #freshMicros} of a load on each dimension alone (aligned with {@link #dims}). */
  private long[] freshAlone;
  double[] level;
  /** Tokens taken per dimension since this state was created, net of refunds (utilization). */
  double[] used;
  long lastRefill;
  /** Held dimensions ({@link LimitSpec#holds}): names, caps, and what the live permits hold. */
  String[] heldDims = NO_DIMS;
  long[] heldCap = NO_LONGS;
  long[] held = NO_LONGS;
  private static final String[] NO_DIMS = new String[0];
  private static final long[] NO_LONGS = new long[0];

  /** Null until somebody first waits: most resources never make anybody wait. */
  private Room room;
  int waiting;
  /** Fair queuing between tenants ({@link Fair}); null until a tenant other than the default came. */
  private Fair fair;
  /** Units each tenant used, by {@link TenantPolicy#statsKey}; null until tenants came. */
  HashMap<String, double[]> tenantUsed;
  /** The tenants' own buckets ({@link TenantPolicy#caps}); null until a capped tenant came. */
  private HashMap<String, Fair.CapState> caps;
  /** Whether the limit gives any tenant a cap of its own (asked on every pick and grant). */
  private boolean tenantCaps;
  // Sized for one: a million live states must fit in a small heap; it doubles as it fills.
  final LinkedHashMap<String, PermitRecord> permits = new LinkedHashMap<>(2);
  /**
   * The most permits held at once since this state was created, taken at every grant (tests:
   * the concurrency cap as the engine kept it, not as a client saw it).
   */
  int peakPermits;
  /** Latest lease expiry ever handed out (only grows): bounds when the state is idle. */
  long maxLeaseExpiry;
  /** Set after the lease TTL shrank: until {@link #mixedUntil}, permits are not in expiry order. */
  boolean mixedLeases;
  long mixedUntil;

  boolean adminPaused;
  long adminPausedUntil; // valid when adminPaused; NEVER means until resume
  boolean feedbackPaused;
  long feedbackPausedUntil;

  /** The engine's timer for the next wake-up {@link #drain} asked for, and its instant. */
  Scheduler.Cancellable wake;
  long wakeAt;

  // Refund caps (guarantee 1): see RefundHistory.
  /** Counts level changes that matter to refund caps. */
  long events;
  /** Permits granted at or before this event get no refund (limit changed, upstream emptied). */
  long refundFloor;
  /** Null until a refund could ask about a level. */
  private RefundHistory history;

  /** Set (by the cache's eviction) when this object no longer represents the resource. */
  volatile boolean retired;

  /**
   * The waiting room: ~250 bytes that a live state only pays once somebody waits on it, and
   * then keeps (a resource that was contended once tends to be again).
   */
  private static final class Room {
    /** The default tenant's lanes: a resource without tenants has only these (others: {@link Fair#room}). */
    final Fair.TRoom def = new Fair.TRoom(TenantPolicy.DEFAULT_TENANT);
    /** Queued waiters that came with a request id, for Cancel. */
    final HashMap<String, Waiter> byRequestId = new HashMap<>();
    /** Sum of the queued loads, aligned with {@link ResourceState#dims}. */
    long[] queuedLoad;

    Room(int dims) {
      queuedLoad = new long[dims];
    }
  }

  /** Every tenant's part of the room that has waiters (the default's first). */
  private List<Fair.TRoom> rooms() {
    if (room == null) {
      return List.of();
    }
    List<Fair.TRoom> all = new ArrayList<>();
    all.add(room.def);
    if (fair != null) {
      fair.others().stream()
          .filter(r -> r.waiting > 0) // not the idle ones it remembers
          .sorted(java.util.Comparator.comparing((Fair.TRoom r) -> r.name))
          .forEach(all::add);
    }
    return all;
  }

  /** A copy of every queued waiter, by tenant (the default first, then by name) and lane. */
  List<Waiter> allWaiters() {
    List<Waiter> all = new ArrayList<>(waiting);
    for (Fair.TRoom r : rooms()) {
      for (ArrayDeque<Waiter> lane : r.lanes) {
        all.addAll(lane);
      }
    }
    return all;
  }

  /** How many wait in {@code lane}, in every tenant. */
  int queued(Lane lane) {
    int n = 0;
    for (Fair.TRoom r : rooms()) {
      n += r.lanes[lane.ordinal()].size();
    }
    return n;
  }

  /** Takes every waiter out of the room, in lane order. */
  List<Waiter> removeAll() {
    List<Waiter> all = allWaiters();
    for (Waiter w : all) {
      remove(w, lastRefill); // the resource is going away: its tenants' times go with it
    }
    waiting = 0;
    return all;
  }

  /** The part of the room of {@code tenant}; created (and the tenant made waiting) when asked to. */
  private Fair.TRoom roomOf(String tenant, boolean create) {
    if (fair == null) { // only the default has lanes before the first other tenant came (fairFor)
      return TenantPolicy.DEFAULT_TENANT.equals(tenant) ? room.def : null;
    }
    return fair.room(tenant, create);
  }

  /** Fair queuing starts with the first tenant other than the default (see {@link Fair}). */
  private Fair fairFor(String tenant, long now) {
    if (fair == null && !TenantPolicy.DEFAULT_TENANT.equals(tenant)) {
      if (room == null) {
        room = new Room(dims.length); // the tenants' parts (idle ones too) go beside the default's
      }
      fair = new Fair(room.def);
      if (room.def.waiting > 0) {
        fair.activate(room.def, spec.tenants().weight(room.def.name), micros(now));
      }
    }
    return fair;
  }

  /** The engine's clock in whole microseconds, as the Redis store's script counts time. */
  static long micros(long nanos) {
    return Math.floorDiv(nanos, 1000);
  }

  /** A held permit: what it was charged and when its lease runs out. */
  static final class PermitRecord {
    final String id;
    final Map<String, Long> load;
    long expiresAt;
    /** {@link #events} right after this permit's grant: its refunds look at what came later. */
    long grantedAt;
    /** The acquire it was granted to; its request id names the permit to retries. */
    final Waiter origin;
    /** Handed to a retry of its request id: a give-back of the first delivery is ignored. */
    boolean kept;
    /** When it was granted, on the engine's clock: a retry that comes too late forfeits it. */
    long grantedAtNanos;
    /** The weight its grant was charged to its tenant's virtual time with; 0 when not ({@link Fair}). */
    double fairWeight;

    PermitRecord(String id, Waiter origin, long expiresAt) {
      this.id = id;
      this.origin = origin;
      this.load = origin.load;
      this.expiresAt = expiresAt;
    }

    /** A permit granted before a restart, adopted on its holder's renew ({@link #renew}). */
    PermitRecord(String id, long expiresAt) {
      this.id = id;
      this.origin = null;
      this.load = Map.of();
      this.expiresAt = expiresAt;
    }

    /** Adopted after a restart: its load is unknown, so releasing it frees its slot only. */
    boolean adopted() {
      return origin == null;
    }
  }

  /** Held and ended request ids; null until a permit came with one. */
  private RequestIds<PermitRecord> ids;

  /** The permit held under this request id, or null. */
  PermitRecord heldBy(String requestId) {
    return ids == null ? null : ids.held(requestId);
  }

  /** When the permit of this request id ended, if that is remembered still; else null. */
  Long endedAt(String requestId, long now) {
    return ids == null ? null : ids.endedAt(requestId, now);
  }

  /** Ends a permit by its id: null if unknown (released before, or expired). */
  PermitRecord endPermit(String permitId, long now, boolean givenBack) {
    PermitRecord r = permits.remove(permitId);
    if (r != null) {
      unhold(r);
      ended(r, now, givenBack);
    }
    return r;
  }

  /** What {@code r} held on the held dimensions comes back. */
  private void unhold(PermitRecord r) {
    for (int i = 0; i < heldDims.length; i++) {
      held[i] -= r.load.getOrDefault(heldDims[i], 0L);
    }
  }

  private void ended(PermitRecord r, long at, boolean givenBack) {
    if (r.origin != null && r.origin.requestId != null && ids != null) {
      ids.ended(r.origin.requestId, r, at, givenBack);
      if (ids.isEmpty(at)) {
        ids = null;
      }
    }
  }

  /**
   * Whether a retry of {@code r}'s request id at {@code now} comes too late to be handed {@code
   * r}: its grant is older than {@link #freshMicros}. Handed over now, it would reach the
   * upstream together with the grants made since and could pass the limit there; so the retry
   * forfeits it (its tokens stay spent) and waits at the head of its lane for fresh capacity
   * ({@link #enqueueForfeited}). A permit that charges no rate is never late.
   */
  boolean late(PermitRecord r, long now) {
    long fresh = freshMicros(r.load);
    return fresh >= 0 && now - r.grantedAtNanos > fresh * 1_000;
  }

  /**
   * How long a grant of {@code load} stays fresh: half the burst's worth of time ({@code burst /
   * rate / 2}, in whole microseconds as the Redis store computes it) on the tightest rate it
   * charges; -1 when it charges no rate. Handed over within it, a grant reaches the upstream at
   * most that late, so a late hand-over plus ordinary network jitter stays within half a burst
   * more than the limit allows.
   */
  long freshMicros(Map<String, Long> load) {
    return freshMicros(vector(load));
  }

  /**
   * The same from a load's {@link #vector}: a grant reads its waiter's vector, not its load map
   * (the fair order visits waiters out of arrival order, where each map is a cache miss).
   */
  long freshMicros(long[] vector) {
    long fresh = -1;
    for (int i = 0; i < vector.length; i++) {
      if (vector[i] > 0) {
        long t = freshAlone[i];
        fresh = fresh < 0 ? t : Math.min(fresh, t);
      }
    }
    return fresh;
  }

  private static long freshAlone(RateSpec rate) {
    return (long) Math.floor(rate.burst() * (rate.period().toNanos() / 1000.0) / rate.amount() / 2);
  }

  /**
   * Queues the retry of a forfeited grant ({@link #late}) at the head of its lane, behind the
   * retries of grants forfeited before it: it was served once already, and waits only for the
   * capacity its first grant wasted.
   */
  void enqueueForfeited(Waiter w, long now) {
    w.forfeited = true;
    enqueue(w, now);
    ArrayDeque<Waiter> lane = roomOf(w.tenant, false).lanes[w.lane.ordinal()];
    Waiter[] line = lane.toArray(new Waiter[0]);
    lane.clear();
    boolean placed = false;
    for (Waiter x : line) {
      if (x == w) {
        continue;
      }
      if (!placed && !x.forfeited) {
        lane.addLast(w);
        placed = true;
      }
      lane.addLast(x);
    }
    if (!placed) {
      lane.addLast(w);
    }
  }

  /** Puts {@code next} in {@code old}'s place in line: a retry of the same request id. */
  void replace(Waiter old, Waiter next) {
    ArrayDeque<Waiter> lane = roomOf(old.tenant, false).lanes[old.lane.ordinal()];
    Waiter[] line = lane.toArray(new Waiter[0]);
    lane.clear();
    for (Waiter x : line) {
      lane.addLast(x == old ? next : x);
    }
    next.part = old.part;
    old.part = null;
    room.byRequestId.put(old.requestId, next);
  }

  ResourceState(LimitEntry entry, LimitSpec spec, long now, boolean startFull) {
    this.name = spec.resource();
    this.entry = entry;
    this.lastRefill = now;
    configure(spec, now);
    if (startFull) {
      for (int i = 0; i < dims.length; i++) {
        level[i] = burst[i];
      }
    }
  }

  /**
   * Applies a (new) limit. Levels of kept dimensions are kept, clipped to the new burst; new
   * dimensions start empty, so a limit change never hands out a fresh burst.
   */
  void configure(LimitSpec next, long now) {
    refill(now);
    Map<String, Double> old = new HashMap<>();
    Map<String, Double> oldUsed = new HashMap<>();
    if (dims != null) {
      for (int i = 0; i < dims.length; i++) {
        old.put(dims[i], level[i]);
        oldUsed.put(dims[i], used[i]);
      }
    }
    int n = next.rates().size();
    String[] d = new String[n];
    double[] p = new double[n];
    long[] b = new long[n];
    long[] f = new long[n];
    double[] l = new double[n];
    double[] u = new double[n];
    for (int i = 0; i < n; i++) {
      RateSpec r = next.rates().get(i);
      u[i] = oldUsed.getOrDefault(r.name(), 0.0);
      d[i] = r.name();
      p[i] = r.perMicro(next.jitterNanos());
      b[i] = r.burst();
      f[i] = freshAlone(r);
      l[i] = Math.min(b[i], old.getOrDefault(r.name(), 0.0));
    }
    long oldTtl = leaseTtl;
    forgetRefundHistory();
    this.spec = next;
    this.tenantCaps = !next.tenants().caps().isEmpty();
    this.dims = d;
    this.perMicro = p;
    this.burst = b;
    this.freshAlone = f;
    this.level = l;
    this.used = u;
    this.leaseTtl = next.leaseTtl().toNanos();
    int h = next.holds().size();
    // Most limits hold nothing: shared empty arrays, not three of their own per live resource.
    heldDims = h == 0 ? NO_DIMS : next.holds().keySet().toArray(new String[0]);
    heldCap = h == 0 ? NO_LONGS : new long[h];
    held = h == 0 ? NO_LONGS : new long[h];
    for (int i = 0; i < h; i++) {
      heldCap[i] = next.holds().get(heldDims[i]);
      for (PermitRecord r : permits.values()) {
        held[i] += r.load.getOrDefault(heldDims[i], 0L);
      }
    }
    if (room != null) {
      room.queuedLoad = new long[n];
      for (Fair.TRoom r : rooms()) {
        r.queuedLoad = null;
      }
      for (Waiter w : allWaiters()) {
        w.vector = vector(w.load);
        add(room.queuedLoad, w.vector, 1);
        roomOf(w.tenant, false).addQueued(w.lane.ordinal(), w.vector, 1, n);
      }
    }
    // Caps follow the new policy: a tenant whose cap changed starts its own buckets full again.
    caps = null;
    if (fair != null) {
      fair.reweigh(next.tenants());
    }
    if (oldTtl != 0 && leaseTtl < oldTtl && !permits.isEmpty()) {
      // New leases now end sooner than some old ones: insertion order is no longer expiry
      // order until the last of the old leases has run out. Scan until then.
      for (PermitRecord r : permits.values()) {
        if (!mixedLeases || r.expiresAt - mixedUntil > 0) {
          mixedUntil = r.expiresAt;
        }
        mixedLeases = true;
      }
    }
  }

  /** The load as an array aligned with {@link #dims}; dimensions not limited count 0. */
  long[] vector(Map<String, Long> load) {
    long[] v = new long[dims.length];
    for (int i = 0; i < dims.length; i++) {
      Long x = load.get(dims[i]);
      v[i] = x == null ? 0 : x;
    }
    return v;
  }

  int index(String dim) {
    for (int i = 0; i < dims.length; i++) {
      if (dims[i].equals(dim)) {
        return i;
      }
    }
    return -1;
  }

  private static void add(long[] into, long[] v, int sign) {
    for (int i = 0; i < into.length && i < v.length; i++) {
      into[i] += sign * v[i];
    }
  }

  void refill(long now) {
    if (fair != null && fair.spent(micros(now))) {
      fair = null;
    }
    long elapsed = now - lastRefill;
    if (elapsed <= 0) {
      return;
    }
    lastRefill = now;
    for (int i = 0; i < level.length; i++) {
      if (level[i] < burst[i]) {
        level[i] = Math.min(burst[i], level[i] + (elapsed / 1000.0) * perMicro[i]);
      }
    }
    if (caps != null) {
      for (Map.Entry<String, Fair.CapState> e : caps.entrySet()) {
        refillCap(e.getValue(), spec.tenants().cap(e.getKey()), now);
      }
    }
  }

  private static void refillCap(Fair.CapState c, List<RateSpec> cap, long now) {
    long elapsed = now - c.lastRefill;
    if (elapsed <= 0) {
      return;
    }
    c.lastRefill = now;
    for (int i = 0; i < c.level.length; i++) {
      RateSpec r = cap.get(i);
      if (c.level[i] < r.burst()) {
        c.level[i] = Math.min(r.burst(), c.level[i] + (elapsed / 1000.0) * r.perMicro());
      }
    }
  }

  void expireLeases(long now) {
    if (mixedLeases && now - mixedUntil >= 0) {
      mixedLeases = false;
    }
    Iterator<PermitRecord> it = permits.values().iterator();
    while (it.hasNext()) {
      PermitRecord r = it.next();
      if (r.expiresAt - now > 0) {
        if (!mixedLeases) {
          break; // in expiry order: nothing later has expired either
        }
        continue;
      }
      it.remove();
      unhold(r);
      ended(r, r.expiresAt, false);
      entry.add(Outcome.LEASE_EXPIRED);
    }
  }

  /** The earliest lease expiry (permits must not be empty). */
  long firstExpiry() {
    if (!mixedLeases) {
      return permits.values().iterator().next().expiresAt;
    }
    long first = 0;
    boolean any = false;
    for (PermitRecord r : permits.values()) {
      if (!any || r.expiresAt - first < 0) {
        first = r.expiresAt;
        any = true;
      }
    }
    return first;
  }

  void enqueue(Waiter w, long now) {
    if (room == null) {
      room = new Room(dims.length);
    }
    if (w.requestId != null) {
      room.byRequestId.put(w.requestId, w);
    }
    Fair f = fairFor(w.tenant, now);
    Fair.TRoom r = roomOf(w.tenant, true);
    r.lane(w.lane.ordinal()).addLast(w);
    w.part = r;
    r.addQueued(w.lane.ordinal(), w.vector, 1, dims.length);
    if (r.waiting++ == 0 && f != null) {
      f.activate(r, r.weight(spec.tenants()), micros(now));
    }
    waiting++;
    add(room.queuedLoad, w.vector, 1);
  }

  /** Bookkeeping once {@code w} left its tenant's lane. */
  private void left(Waiter w, Fair.TRoom r, long now) {
    w.part = null;
    r.addQueued(w.lane.ordinal(), w.vector, -1, dims.length);
    if (w.requestId != null) {
      room.byRequestId.remove(w.requestId, w);
    }
    waiting--;
    add(room.queuedLoad, w.vector, -1);
    if (--r.waiting == 0) {
      if (fair != null) { // then remembered idle, or forgotten and kept spare (Fair#deactivate)
        fair.deactivate(r, r.weight(spec.tenants()), micros(now));
      }
    }
  }

  /** The queued waiter that came with this request id, or null. */
  Waiter queued(String requestId) {
    return room == null ? null : room.byRequestId.get(requestId);
  }

  /** Removes a waiter that is still queued, at {@code now}. */
  void remove(Waiter w, long now) {
    Fair.TRoom r = room == null ? null : roomOf(w.tenant, false);
    if (r != null && r.lanes[w.lane.ordinal()].remove(w)) {
      left(w, r, now);
    }
  }

  /**
   * The waiter to serve next: the tenant with the lowest virtual time whose own cap lets its
   * head go ({@link Fair}), then within it by lane and aging (see the class comment, "Waiting
   * room"). Null when nobody waits or every waiting tenant's cap holds its head; then {@link
   * #capWait} says for how long (else it is the shortest wait of a tenant passed over).
   */
  Waiter head(long now, long agingNanos) {
    capWait = NEVER;
    if (room == null || waiting == 0) {
      return null;
    }
    if (fair == null) {
      return capped(room.def, now, agingNanos);
    }
    Fair.TRoom first = fair.active.first();
    Waiter h = first == null ? null : capped(first, now, agingNanos);
    if (h != null || fair.active.size() <= 1) {
      return h; // the usual case: the first tenant's head goes, no walk
    }
    for (Fair.TRoom r : fair.active) { // past tenants whose cap holds their head, in order
      if (r != first) {
        h = capped(r, now, agingNanos);
        if (h != null) {
          return h;
        }
      }
    }
    return null;
  }

  /** Set by {@link #head}: how long until a tenant passed over for its cap can go, or NEVER. */
  private long capWait = NEVER;

  /** The head of {@code r}, or null when its cap holds it (then noted in {@link #capWait}). */
  private Waiter capped(Fair.TRoom r, long now, long agingNanos) {
    Waiter h = headOf(r, now, agingNanos);
    if (h == null) {
      return null;
    }
    long wait = capWaitFor(h.tenant, h.vector, now);
    if (wait == 0) {
      return h;
    }
    capWait = Math.min(capWait, wait);
    return null;
  }

  /** The head of one tenant's lanes: the priority pick or the oldest aged lower-lane head. */
  private static Waiter headOf(Fair.TRoom r, long now, long agingNanos) {
    ArrayDeque<Waiter>[] lanes = r.lanes;
    Waiter top = null;
    int topLane = -1;
    for (int l = 0; l < lanes.length; l++) {
      Waiter h = lanes[l].peekFirst();
      if (h != null) {
        top = h;
        topLane = l;
        break;
      }
    }
    if (top == null || !r.promoteNext) {
      return top;
    }
    Waiter aged = null;
    for (int l = topLane + 1; l < lanes.length; l++) {
      Waiter h = lanes[l].peekFirst();
      if (h != null
          && now - h.arrival >= agingNanos
          && (aged == null || h.arrival - aged.arrival < 0)) {
        aged = h;
      }
    }
    return aged != null ? aged : top;
  }

  /**
   * When the head that {@link #head} would pick next in {@code r} can change by aging alone:
   * the earliest instant a lower-lane head not aged yet reaches {@code agingNanos}, or {@link
   * #NEVER}. Only while a promotion is due ({@link Fair.TRoom#promoteNext}); otherwise the
   * priority pick goes next whoever has aged.
   */
  private static long nextAging(Fair.TRoom r, long now, long agingNanos) {
    if (!r.promoteNext) {
      return NEVER;
    }
    ArrayDeque<Waiter>[] lanes = r.lanes;
    int topLane = -1;
    for (int l = 0; l < lanes.length && topLane < 0; l++) {
      if (!lanes[l].isEmpty()) {
        topLane = l;
      }
    }
    long next = NEVER;
    for (int l = topLane + 1; l < lanes.length; l++) {
      Waiter h = lanes[l].peekFirst();
      if (h != null && now - h.arrival < agingNanos) {
        next = Math.min(next, h.arrival + agingNanos);
      }
    }
    return next;
  }

  private static boolean isPriorityPick(Fair.TRoom r, Waiter w) {
    for (ArrayDeque<Waiter> lane : r.lanes) {
      Waiter h = lane.peekFirst();
      if (h != null) {
        return h == w;
      }
    }
    return true;
  }

  boolean pausedIndefinitely() {
    return adminPaused && adminPausedUntil == NEVER;
  }

  /** Nanoseconds the resource stays paused: 0 if not, {@link #NEVER} until resumed. */
  long pausedFor(long now) {
    long left = 0;
    if (adminPaused) {
      if (adminPausedUntil == NEVER) {
        return NEVER;
      }
      left = Math.max(left, adminPausedUntil - now);
    }
    if (feedbackPaused) {
      left = Math.max(left, feedbackPausedUntil - now);
    }
    if (left <= 0) {
      adminPaused &= adminPausedUntil == NEVER;
      feedbackPaused = false;
    }
    return Math.max(0, left);
  }

  /** Who holds the pause now and for how long (see {@link PauseState}). */
  PauseState pauseState(long now) {
    if (pausedFor(now) == 0) {
      return PauseState.NONE;
    }
    long admin = !adminPaused ? 0 : adminPausedUntil == NEVER ? -1 : Math.max(0, adminPausedUntil - now);
    long upstream = feedbackPaused ? Math.max(0, feedbackPausedUntil - now) : 0;
    return new PauseState(admin, upstream);
  }

  /**
   * How long until {@code vector} could be granted: 0 means now, {@link #NEVER} means only an
   * event (release, resume, limit change) can help.
   */
  long waitFor(long[] vector, long now) {
    long wait = pausedFor(now);
    if (wait == NEVER) {
      return NEVER;
    }
    long cap = spec.concurrency();
    if (cap > 0 && permits.size() >= cap) {
      wait = Math.max(wait, Math.max(1, firstExpiry() - now));
    }
    return Math.max(wait, rateWait(vector));
  }

  /**
   * {@link #waitFor(long[], long)} for a waiter, whose held dimensions count too: the next lease
   * expiry may free room, a load above the cap (lowered since it came) only an event.
   */
  long waitFor(long[] vector, Map<String, Long> load, long now) {
    long wait = waitFor(vector, now);
    if (wait == NEVER) {
      return NEVER;
    }
    for (int i = 0; i < heldDims.length; i++) {
      long x = load.getOrDefault(heldDims[i], 0L);
      if (x > 0 && held[i] + x > heldCap[i]) {
        if (x > heldCap[i] || permits.isEmpty()) {
          return NEVER;
        }
        wait = Math.max(wait, Math.max(1, firstExpiry() - now));
      }
    }
    return wait;
  }

  private long rateWait(long[] vector) {
    long wait = 0;
    for (int i = 0; i < vector.length; i++) {
      double deficit = vector[i] - level[i];
      if (deficit > 1e-6) {
        // Whole microseconds, rounded up, as the Redis store computes it (its clock is in us);
        // an instant that is whole but for rounding noise is not pushed to the next one.
        double nanos = Math.ceil(deficit / perMicro[i] - 1e-6) * 1_000;
        wait = Math.max(wait, nanos >= NEVER ? NEVER - 1 : Math.max(1_000, (long) nanos));
      }
    }
    return wait;
  }

  /** How long until {@code w} could be granted: the shared buckets and its tenant's own. */
  long waitFor(Waiter w, long now) {
    long wait = waitFor(w.vector, w.load, now);
    return wait == NEVER ? NEVER : Math.max(wait, capWaitFor(w.tenant, w.vector, now));
  }

  /**
   * A grant's cost for fair queuing: the microseconds of quota its load takes on its binding
   * dimension, {@code max(load / rate)}; 1 when it charges no rate.
   */
  double cost(long[] vector) {
    double c = -1;
    for (int i = 0; i < vector.length; i++) {
      if (vector[i] > 0) {
        c = Math.max(c, vector[i] / perMicro[i]);
      }
    }
    return c < 0 ? 1 : c;
  }

  /** The own buckets of {@code tenant} (refilled with the shared ones); null when it has no cap. */
  private Fair.CapState capState(String tenant, long now) {
    if (!tenantCaps) {
      return null;
    }
    List<RateSpec> cap = spec.tenants().cap(tenant);
    if (cap.isEmpty()) {
      return null;
    }
    if (caps == null) {
      caps = new HashMap<>();
    }
    Fair.CapState c = caps.get(tenant);
    if (c == null) {
      c = new Fair.CapState(cap, now); // full when first used
      caps.put(tenant, c);
    }
    return c;
  }

  /** How long until {@code tenant}'s own cap lets {@code vector} go: 0 now (or no cap). */
  long capWaitFor(String tenant, long[] vector, long now) {
    Fair.CapState c = capState(tenant, now);
    if (c == null) {
      return 0;
    }
    List<RateSpec> cap = spec.tenants().cap(tenant);
    long wait = 0;
    for (int i = 0; i < c.level.length; i++) {
      RateSpec r = cap.get(i);
      int d = index(r.name());
      double deficit = (d < 0 ? 0 : vector[d]) - c.level[i];
      if (deficit > 1e-6) {
        double nanos = Math.ceil(deficit / r.perMicro() - 1e-6) * 1_000;
        wait = Math.max(wait, nanos >= NEVER ? NEVER - 1 : Math.max(1_000, (long) nanos));
      }
    }
    return wait;
  }

  /** Changes {@code tenant}'s own levels by {@code delta} (aligned with {@link #dims}); capped at the burst, debt at one period. */
  private void capAdd(String tenant, long[] delta, long now) {
    Fair.CapState c = capState(tenant, now);
    if (c == null) {
      return;
    }
    List<RateSpec> cap = spec.tenants().cap(tenant);
    for (int i = 0; i < c.level.length; i++) {
      RateSpec r = cap.get(i);
      int d = index(r.name());
      if (d >= 0 && delta[d] != 0) {
        c.level[i] = Math.max(-r.amount(), Math.min(r.burst(), c.level[i] + delta[d]));
      }
    }
  }

  /** The tenant part of a grant: its own buckets and its virtual time (charged while it still waits). */
  private void chargeTenant(Waiter w, PermitRecord rec, long now) {
    if (tenantCaps && !spec.tenants().cap(w.tenant).isEmpty()) { // no array to build for a tenant without a cap
      long[] minus = new long[w.vector.length];
      for (int i = 0; i < minus.length; i++) {
        minus[i] = -w.vector[i];
      }
      capAdd(w.tenant, minus, now);
    }
    Fair f = fairFor(w.tenant, now);
    if (f != null) {
      Fair.TRoom r = w.part != null ? w.part : roomOf(w.tenant, false); // fairFor made the room
      TenantPolicy p = spec.tenants();
      double weight = r == null ? f.effectiveWeight(p, w.tenant, false)
          : f.effectiveWeight(r.weight(p), r.floor(p), r.waiting > 0);
      f.charge(w.tenant, r, cost(w.vector), weight, micros(now));
      rec.fairWeight = weight;
      countUse(w.tenant, r, w.vector, 1);
    }
  }

  /** A settle or give-back of {@code r}: from {@code granted} to {@code actual} on its tenant. */
  private void settleTenant(PermitRecord r, long[] granted, long[] actual, long now) {
    String tenant = r.origin.tenant;
    long[] delta = new long[granted.length];
    for (int i = 0; i < delta.length; i++) {
      delta[i] = granted[i] - actual[i];
    }
    capAdd(tenant, delta, now);
    if (r.fairWeight > 0) {
      countUse(tenant, null, delta, -1);
    }
    if (fair != null && r.fairWeight > 0) {
      double was = cost(granted);
      double is = isZero(actual) ? 0 : cost(actual);
      if (is != was) {
        Fair.TRoom room = this.room == null ? null : roomOf(tenant, false);
        fair.adjust(tenant, room, (is - was) / r.fairWeight, micros(now));
      }
    }
  }

  /** Counts {@code vector} to {@code tenant}'s stats key ({@code part}: its part of the room, or null). */
  private void countUse(String tenant, Fair.TRoom part, long[] vector, int sign) {
    if (isZero(vector)) {
      return; // nothing on a limited dimension: not a use to count (the script writes nothing either)
    }
    if (tenantUsed == null) {
      tenantUsed = new HashMap<>();
    }
    String key = part != null ? part.statsKey(spec.tenants()) : spec.tenants().statsKey(tenant);
    double[] u = tenantUsed.get(key); // not computeIfAbsent: its lambda captures (an allocation a grant)
    if (u == null) {
      u = new double[dims.length];
      tenantUsed.put(key, u);
    }
    for (int i = 0; i < u.length && i < vector.length; i++) {
      u[i] += sign * vector[i];
    }
  }

  /** Stats per tenant ({@link ResourceSnapshot#tenants}); empty before tenants came. */
  Map<String, ResourceSnapshot.TenantUse> tenantStats() {
    if (tenantUsed == null && fair == null) {
      return Map.of();
    }
    Map<String, Integer> waitingBy = new java.util.TreeMap<>();
    for (Fair.TRoom r : fair == null ? List.<Fair.TRoom>of() : rooms()) { // per tenant while tenants wait
      if (r.waiting > 0) {
        waitingBy.merge(spec.tenants().statsKey(r.name), r.waiting, Integer::sum);
      }
    }
    java.util.TreeSet<String> keys = new java.util.TreeSet<>(waitingBy.keySet());
    if (tenantUsed != null) {
      keys.addAll(tenantUsed.keySet());
    }
    Map<String, ResourceSnapshot.TenantUse> out = new java.util.TreeMap<>();
    for (String k : keys) {
      Map<String, Double> used = new java.util.LinkedHashMap<>();
      double[] u = tenantUsed == null ? null : tenantUsed.get(k);
      for (int i = 0; i < dims.length; i++) {
        used.put(dims[i], u == null || i >= u.length ? 0.0 : u[i]);
      }
      out.put(k, new ResourceSnapshot.TenantUse(waitingBy.getOrDefault(k, 0), used));
    }
    return out;
  }

  private static boolean isZero(long[] v) {
    for (long x : v) {
      if (x != 0) {
        return false;
      }
    }
    return true;
  }

  PermitRecord take(Waiter w, long now, String permitId) {
    for (int i = 0; i < w.vector.length; i++) {
      if (w.vector[i] > 0) {
        observe(i); // the level just before it drops: the highest since the last event
      }
      level[i] -= w.vector[i];
      used[i] += w.vector[i];
    }
    PermitRecord r = new PermitRecord(permitId, w, now + leaseTtl);
    for (int i = 0; i < heldDims.length; i++) {
      held[i] += w.load.getOrDefault(heldDims[i], 0L);
    }
    r.grantedAt = events;
    r.grantedAtNanos = now;
    chargeTenant(w, r, now);
    permits.put(permitId, r);
    peakPermits = Math.max(peakPermits, permits.size());
    if (w.requestId != null) {
      if (ids == null) {
        ids = new RequestIds<>();
      }
      ids.hold(w.requestId, r);
    }
    noteLease(r.expiresAt);
    return r;
  }

  void noteLease(long expiresAt) {
    if (expiresAt - maxLeaseExpiry > 0) {
      maxLeaseExpiry = expiresAt;
    }
  }

  /** Gives a permit's whole load back (the call was never made), within its refund cap. */
  void giveBack(PermitRecord r, long now) {
    for (Map.Entry<String, Long> e : r.load.entrySet()) {
      int i = index(e.getKey());
      if (i >= 0) {
        refund(i, r, e.getValue());
      }
    }
    if (!r.adopted()) {
      settleTenant(r, vector(r.load), new long[dims.length], now);
    }
  }

  /** Adds back up to {@code amount} on dimension {@code i} for permit {@code r}: see the caps above. */
  private void refund(int i, PermitRecord r, double amount) {
    if (amount <= 0 || r.grantedAt <= refundFloor) {
      return;
    }
    double cap = burst[i] - level[i]; // the deficit now
    if (history != null) {
      cap = history.cap(i, r.grantedAt, cap);
    }
    double given = Math.min(amount, Math.max(0, cap));
    if (given > 0) {
      used[i] -= given;
      level[i] = Math.min(burst[i], level[i] + given);
      observe(i); // a level that went up: later refunds of older permits must see it
    }
  }

  /** Records the current deficit of dimension {@code i} as a new event. */
  private void observe(int i) {
    events++;
    if (permits.isEmpty()) {
      // No open permit was granted before this event, so no refund will ever ask about it, and
      // what was recorded before is stale: forget it (a resource used one call at a time never
      // allocates a history). This dimension's only: a permit being given back has left the
      // map already, and its refunds on the other dimensions still need theirs.
      if (history != null) {
        history.clear(i);
      }
      return;
    }
    if (history == null) {
      history = new RefundHistory(dims.length);
    }
    history.record(i, events, burst[i] - level[i]);
  }

  /** After a limit change or an upstream report lowered the levels: older permits refund nothing. */
  void forgetRefundHistory() {
    events++;
    refundFloor = events;
    history = null;
  }

  /** Settles actual usage: refund what was over-estimated, charge what was under-estimated. */
  void settle(PermitRecord r, Map<String, Long> actual, long now) {
    long[] grantedVector = vector(r.load);
    long[] actualVector = grantedVector.clone();
    for (Map.Entry<String, Long> e : actual.entrySet()) {
      int i = index(e.getKey());
      if (i >= 0) {
        actualVector[i] = e.getValue();
      }
    }
    settleTenant(r, grantedVector, actualVector, now);
    for (Map.Entry<String, Long> e : actual.entrySet()) {
      int i = index(e.getKey());
      if (i < 0) {
        continue;
      }
      long granted = r.load.getOrDefault(e.getKey(), 0L);
      long over = granted - e.getValue();
      if (over == 0) {
        continue;
      }
      if (over > 0) {
        refund(i, r, over);
        continue;
      }
      observe(i); // a charge lowers the level, like a grant
      // Debt floor: one period's amount (read from the spec: settle is rare, the array was not).
      double charged = Math.max(-spec.rates().get(i).amount(), level[i] + over);
      used[i] += level[i] - charged;
      level[i] = charged;
    }
  }

  /**
   * Grants every waiter that can go now, in order, into {@code out} (each with a permit id from
   * {@code permitIds}). Returns the instant the first that cannot go will be able to, or {@link
   * #NEVER} when nobody waits or only an event (a release, a resume, a limit change) can help:
   * the caller keeps one wake-up at that instant. Completes nothing: the caller completes the
   * grants once it let go of this state's monitor.
   */
  long drain(long now, long agingNanos, Supplier<String> permitIds, List<Waiter> out) {
    expireLeases(now);
    refill(now);
    while (true) {
      Waiter w = head(now, agingNanos);
      long capped = capWait == NEVER ? NEVER : now + capWait; // a tenant passed over for its cap
      if (w == null) {
        return capped;
      }
      Fair.TRoom r = w.part;
      long wait = waitFor(w.vector, w.load, now);
      if (wait != 0) {
        // Wake at the head's instant, or sooner when a lower lane's head ages into a promotion.
        return Math.min(Math.min(wait == NEVER ? NEVER : now + wait, capped), nextAging(r, now, agingNanos));
      }
      // A promotion hands the next turn back to the priority lane, and vice versa.
      r.promoteNext = isPriorityPick(r, w);
      grant(w, now, permitIds.get()); // charged to its tenant while it still waits
      r.lanes[w.lane.ordinal()].pollFirst();
      left(w, r, now);
      out.add(w);
    }
  }

  /** Gives {@code w} its load now under permit {@code id}; its future is completed later. */
  void grant(Waiter w, long now, String id) {
    take(w, now, id);
    long waited = Math.max(0, now - w.arrival);
    long fresh = freshMicros(w.vector);
    w.grant = new Grant(id, name, w.load, leaseTtl, waited, fresh < 0 ? -1 : fresh * 1_000);
    w.status(Waiter.GRANTED);
    entry.add(Outcome.GRANTED);
  }

  /**
   * Upstream feedback (Engine#report): {@code throttled} empties the buckets and pauses grants
   * until {@code now + retryAfterNanos}; {@code remaining} can only lower a level. Returns the
   * time paused for, {@link #NEVER} until resumed, 0 when not paused.
   */
  long report(long now, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    refill(now);
    if (throttled) {
      entry.add(Outcome.THROTTLE_REPORTED);
      entry.lastThrottleAt = now;
      // The upstream just said it has nothing left: our view must not say otherwise, or the
      // grants made right after the pause would be refused again.
      for (int i = 0; i < level.length; i++) {
        level[i] = Math.min(level[i], 0);
      }
      forgetRefundHistory(); // refunds of earlier grants would refill what the upstream says is gone
      long until = now + retryAfterNanos;
      if (!feedbackPaused || until - feedbackPausedUntil > 0) {
        feedbackPaused = true;
        feedbackPausedUntil = until;
      }
    }
    for (Map.Entry<String, Long> r : remaining.entrySet()) {
      int i = index(r.getKey());
      if (i >= 0 && r.getValue() < level[i]) {
        level[i] = r.getValue();
        forgetRefundHistory();
      }
    }
    return pausedFor(now);
  }

  /** An admin pause for {@code nanos}, or until resumed when negative; returns {@link #pausedFor}. */
  long pause(long now, long nanos) {
    adminPaused = true;
    adminPausedUntil = nanos < 0 ? NEVER : now + nanos;
    return pausedFor(now);
  }

  /**
   * Ends a permit (Engine#release): frees its slot; with {@code unused} gives its load back,
   * with {@code settle} applies {@code actual} (refund or debt). False if it was unknown.
   */
  boolean release(long now, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    expireLeases(now);
    refill(now);
    PermitRecord r = endPermit(permitId, now, false);
    if ((r == null || r.adopted()) && adopting(now)) {
      // Released before its holder's renew adopted it, or after: a renew still on its way
      // must not adopt it (again), to hold a slot for nobody.
      if (releasedUnadopted == null) {
        releasedUnadopted = new java.util.HashSet<>();
      }
      releasedUnadopted.add(permitId);
    }
    if (r == null) {
      return false;
    }
    if (r.adopted()) {
      return true; // what it charged went with the restart
    }
    if (unused) {
      giveBack(r, now);
    } else if (settle) {
      settle(r, actual, now);
    }
    return true;
  }

  /**
   * Extends leases by a full TTL; returns the ids that were unknown (released or expired). For
   * one lease after a restart ({@link LimitEntry#restored}), a permit of the engine before it
   * ({@code earlier}) is adopted instead: its holder still has it, and without it the
   * concurrency cap would count from zero. It is released as usual, but its load is unknown, so
   * a settle of it charges nothing. The Redis store does the same after it lost its data.
   */
  List<String> renew(long now, List<String> permitIds, java.util.function.Predicate<String> earlier) {
    expireLeases(now);
    List<String> expired = new ArrayList<>();
    boolean adopting = adopting(now);
    if (!adopting) {
      releasedUnadopted = null;
    }
    for (String id : permitIds) {
      PermitRecord r = permits.remove(id);
      if (r == null && adopting && earlier.test(id)
          && (releasedUnadopted == null || !releasedUnadopted.contains(id))) {
        r = new PermitRecord(id, now);
      }
      if (r == null) {
        expired.add(id);
      } else {
        r.expiresAt = now + leaseTtl;
        permits.put(id, r); // to the end: the map stays in expiry order
        noteLease(r.expiresAt);
      }
    }
    return expired;
  }

  /** Permits released while unknown during the adoption window: never adopted after. */
  private java.util.Set<String> releasedUnadopted;

  /** Within one lease after a restart ({@link LimitEntry#restored}): renews adopt permits. */
  private boolean adopting(long now) {
    return entry.restored && now - entry.createdAt <= leaseTtl;
  }

  /** Clears every pause: admin and upstream feedback. */
  void resume() {
    adminPaused = false;
    feedbackPaused = false;
  }

  void cancelWake() {
    if (wake != null) {
      wake.cancel();
      wake = null;
    }
  }

  /**
   * When an acquire of {@code vector} made now by {@code tenant} in {@code lane} would be
   * granted, in nanoseconds from now; {@link #NEVER} when only an event can help (paused until
   * resumed). An estimate, the same on both stores: the load its tenant has queued in its lane
   * and the lanes above, plus its own, drains at the tenant's share of the rate (its weight,
   * raised by its floor, against the other tenants waiting) from what the buckets hold (its
   * share of it, when others wait too), and within its own cap. Aging, other tenants' future
   * arrivals, settles and the concurrency cap are left out.
   */
  long estimate(long[] vector, Lane lane, String tenant, long now) {
    long paused = pausedFor(now);
    if (paused == NEVER) {
      return NEVER;
    }
    long[] ahead = new long[dims.length];
    Fair.TRoom r = room == null ? null : roomOf(tenant, false);
    if (r != null) {
      r.queuedUpTo(lane.ordinal(), ahead);
    }
    double share = 1;
    if (fair != null && r != null && r.waiting > 0) {
      // A tenant that waits already goes at its share; one that does not starts from the
      // system's virtual time, the lowest, and its first grant comes next.
      double w = fair.effectiveWeight(spec.tenants(), tenant, true);
      double others = fair.activeWeight - spec.tenants().weight(tenant);
      if (others > 0) {
        share = w / (others + w);
      }
    }
    double wait = 0; // microseconds
    for (int i = 0; i < dims.length; i++) {
      double deficit = ahead[i] + vector[i] - level[i] * share;
      if (deficit > 0) {
        wait = Math.max(wait, deficit / (perMicro[i] * share));
      }
    }
    List<RateSpec> cap = spec.tenants().cap(tenant);
    if (!cap.isEmpty()) {
      Fair.CapState c = caps == null ? null : caps.get(tenant);
      for (int i = 0; i < cap.size(); i++) {
        int d = index(cap.get(i).name());
        double capLevel = c == null ? cap.get(i).burst() : c.level[i];
        double deficit = ahead[d] + vector[d] - capLevel;
        if (deficit > 0) {
          wait = Math.max(wait, deficit / cap.get(i).perMicro());
        }
      }
    }
    // Whole microseconds, as waitFor: a wait whole but for rounding noise is not pushed to the next.
    return Math.max(paused, (long) Math.max(0, Math.ceil(wait - 1e-6)) * 1_000);
  }

  /** Retry hint for a full waiting room: time for the queued load to drain at the rate. */
  long drainEstimate(long now) {
    long est = 0;
    for (int i = 0; i < dims.length; i++) {
      double deficit = (room == null ? 0 : room.queuedLoad[i]) - level[i];
      if (deficit > 0) {
        est = Math.max(est, (long) Math.ceil(deficit / perMicro[i] * 1_000));
      }
    }
    long paused = pausedFor(now);
    if (paused == NEVER) {
      return 60_000_000_000L;
    }
    return Math.max(est, paused);
  }

  /**
   * How long this state may sit untouched before the cache drops it: forever while anybody
   * waits or it is paused until resumed; otherwise until every lease has run out, every pause
   * has ended and every bucket is full again, plus {@code grace}. Dropped state is recreated
   * full, which is exactly what it would hold by then.
   */
  long idleExpiry(long now, long grace) {
    if (waiting > 0 || pausedIndefinitely()) {
      return NEVER;
    }
    // O(1) on every operation: the latest lease bound, not a scan of the permits.
    long busy = permits.isEmpty() ? 0 : Math.max(0, maxLeaseExpiry - now);
    busy = Math.max(busy, pausedFor(now));
    for (int i = 0; i < dims.length; i++) {
      double missing = burst[i] - level[i];
      if (missing > 0) {
        busy = Math.max(busy, (long) Math.ceil(missing / perMicro[i] * 1_000));
      }
    }
    if (ids != null) {
      busy = Math.max(busy, ids.rememberedUntil() - now);
    }
    if (fair != null) {
      // Until every idle tenant fell behind (Fair#spent): dropped before, the state would forget
      // what the Redis store's script still counts.
      busy = Math.max(busy, fair.spentIn(micros(now)) * 1_000);
    }
    if (caps != null) {
      for (Map.Entry<String, Fair.CapState> e : caps.entrySet()) {
        List<RateSpec> cap = spec.tenants().cap(e.getKey());
        for (int i = 0; i < cap.size(); i++) {
          double missing = cap.get(i).burst() - e.getValue().level[i];
          if (missing > 0) {
            busy = Math.max(busy, (long) Math.ceil(missing / cap.get(i).perMicro() * 1_000));
          }
        }
      }
    }
    long total = busy + grace;
    return total < 0 ? NEVER : total;
  }

  boolean isFull(long now) {
    refill(now);
    for (int i = 0; i < dims.length; i++) {
      if (level[i] < burst[i]) {
        return false;
      }
    }
    return true;
  }
}
