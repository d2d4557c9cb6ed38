package dev.sluice.server.engine;

import static dev.sluice.server.engine.RedisCalls.num;
import static dev.sluice.server.engine.RedisCalls.word;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The acquires parked on this node and everything that reaches them: grants in script replies
 * and on the node's pub/sub channel, deadlines, cancellations, and one wake-up per resource (at
 * the instant the script computed, at most a heartbeat away).
 *
 * <p>Per resource, a {@link Local} holds the waiters and the wake-up. It exists while it holds
 * either: the last waiter to leave (or the wake-up that finds none) drops it, and the next
 * acquire makes a new one. Both happen under the map's lock ({@link #admit} registers inside
 * {@code compute}, {@link #freeIfIdle} checks inside {@code computeIfPresent}), so a waiter is
 * never put into a dropped one.
 *
 * <p>It runs past 700 lines because it is one state machine: parking, grants by reply and by
 * message, deadlines, cancels, resends after lost replies, leaves asked again, re-checks after a
 * reconnect and the end of waiters on data loss all move the same {@link RWaiter} status under
 * the same table, and each must see what the others did (issue 24's faults were races between
 * exactly these). Split into classes, every one of them would reach into that table.
 */
final class RedisWaiters {

  private static final Logger log = LoggerFactory.getLogger(RedisEngine.class);
  static final Duration HEARTBEAT = Duration.ofSeconds(1);
  /** Where the drain's tail starts in a LEFT reply: after the node and the pause (admin, upstream). */
  static final int LEFT_TAIL = 4;
  /** How often an unanswered leave or give-back is asked again (settleLater, giveBack). */
  static final Duration SETTLE_RETRY = Duration.ofMillis(250);
  /** How long it is asked: as long as the script remembers the request id. */
  static final long UNSETTLED_MEMORY = TimeUnit.SECONDS.toNanos(60);
  static final String CONFIG_CHANNEL = "sluice:config";

  final RedisCalls calls;
  final RedisLimits limits;
  final RedisBatches batches;
  private final Scheduler scheduler;
  private final String nodeId;
  /** Pub/sub news is handled here, off Lettuce's event loop, since handling it calls Redis. */
  final ExecutorService events =
      Executors.newSingleThreadExecutor(
          r -> {
            Thread t = new Thread(r, "sluice-redis-events");
            t.setDaemon(true);
            return t;
          });
  private final ConcurrentHashMap<String, Local> locals = new ConcurrentHashMap<>();
  /** Recent waits per resource, for stats; dropped when deleted or idle (see WaitStats#idle). */
  private final ConcurrentHashMap<String, WaitStats> waits = new ConcurrentHashMap<>();
  private final AtomicLong arrivals = new AtomicLong();
  /** Tells this run's attempt names from an earlier run's under the same node id. */
  private final String attemptPrefix =
      Long.toString(java.util.concurrent.ThreadLocalRandom.current().nextLong(1L << 40), 36) + ".";
  /** Permits handed to a local caller (or given back) lately: a second delivery is a no-op. */
  private final Cache<String, Boolean> delivered;
  volatile boolean closed;

  RedisWaiters(RedisCalls calls, RedisLimits limits, Scheduler scheduler) {
    this.calls = calls;
    this.limits = limits;
    this.scheduler = scheduler;
    this.nodeId = calls.nodeId;
    this.batches = new RedisBatches(calls, this);
    this.delivered =
        Caffeine.newBuilder()
            .ticker(calls::nanoNow)
            .expireAfterWrite(Duration.ofMinutes(2))
            .maximumSize(1_000_000)
            .build();
    // A connection opened again: the pub/sub one may have missed grant notices meanwhile.
    calls.store.onSuspectedRestart(why -> scheduler.schedule(() -> events.execute(this::recheckAll),
        SETTLE_RETRY.toNanos()));
    // Redis answers again after calls went unanswered: a wake-up, release or renew whose reply
    // was lost may have granted waiters parked here, and nobody else will tell them.
    calls.store.onReachabilityChange(() -> {
      if (calls.store.reachable()) {
        scheduler.schedule(() -> events.execute(this::recheckAll), SETTLE_RETRY.toNanos());
      }
    });
  }

  /**
   * Asks again what became of every waiter parked here, after a connection to Redis came back
   * (a reset, a reconnect) or Redis answered again after an outage: a grant notice published
   * while this node's pub/sub connection was down is lost, and so is a grant made by one of this
   * node's own calls whose reply never came; its waiter would hold its grant, and a concurrency
   * slot, unheard until its deadline (the campaign found the rate at 29-49/s two seconds after a
   * node's connections were reset). Each acquire is sent again with its request id (the same
   * call, naming no permit): the script hands over the permit it holds, which this node then
   * judges as any grant that arrives ({@link #holdBackStale}), or keeps the waiter in its place.
   */
  void recheckAll() {
    if (closed) {
      return;
    }
    locals.forEach((resource, local) -> local.waiters.values().forEach(w -> {
      RedisBatches.AcquireOp sent = w.sent;
      boolean ask;
      synchronized (w) { // a grant handed over meanwhile is not asked for
        ask = sent != null && w.status.get() == RWaiter.WAITING;
        if (ask) {
          w.unsure = sent;
        }
      }
      if (ask) {
        batches.submit(resource, sent.again());
      }
    }));
  }

  /** This node's waiters on one resource and its one wake-up. */
  private static final class Local {
    final ConcurrentHashMap<String, RWaiter> waiters = new ConcurrentHashMap<>();
    Scheduler.Cancellable wake; // guarded by this
    long wakeAt; // guarded by this

    synchronized boolean idle() {
      return waiters.isEmpty() && wake == null;
    }
  }

  /** One acquire parked on this node. */
  static final class RWaiter implements Ticket {
    static final int WAITING = 0;
    static final int GRANTED = 1;
    static final int CLAIMED = 2;
    static final int RETURNED = 3;
    static final int ENDED = 4;

    final RedisWaiters owner;
    final String resource;
    final String requestId;
    volatile Map<String, Long> load; // as charged; set again if the limit changed meanwhile
    final Lane lane;
    /** Whose share it draws on (TenantPolicy). */
    final String tenant;
    /** Arrival order on this node: ending a resource's waiters goes in line order. */
    final long arrival;
    final long timeoutNanos;
    /** Replaced by a retry of its request id on this node: its entry belongs to the retry. */
    volatile boolean takenOver;
    /**
     * Its acquire once got no answer and was sent again ({@link #resend}): the acquire to ask
     * again whenever a grant notice comes for it, since such a notice may be one held up with
     * the lost replies, for a grant the retry has forfeited since.
     */
    volatile RedisBatches.AcquireOp unsure;
    /**
     * The permit it holds back while asking about it: only the answer to that asking hands it
     * over (or forfeits it); another answer carrying it (an earlier asking's) must not.
     */
    volatile String withheld;
    /** The acquire that queued it, to ask again after a reconnect ({@link #recheckAll}). */
    volatile RedisBatches.AcquireOp sent;
    final CompletableFuture<Grant> future = new CompletableFuture<>();
    final AtomicInteger status = new AtomicInteger(WAITING);
    volatile Scheduler.Cancellable timeout;
    volatile Grant grant;

    private RWaiter(
        RedisWaiters owner, String resource, String requestId, Map<String, Long> load, Lane lane,
        String tenant, long timeoutNanos) {
      this.owner = owner;
      this.tenant = tenant;
      this.resource = resource;
      this.requestId = requestId;
      this.load = load;
      this.lane = lane;
      this.timeoutNanos = timeoutNanos;
      this.arrival = owner.arrivals.incrementAndGet();
    }

    /**
     * This call's name in its Redis entry: a retry of the request id on this node is another
     * call, and nothing this one does late (a leave) may end the retry's place in line.
     */
    String attempt() {
      return owner.attemptPrefix + arrival;
    }

    @Override
    public CompletableFuture<Grant> future() {
      return future;
    }

    @Override
    public boolean claim() {
      return status.compareAndSet(GRANTED, CLAIMED);
    }

    @Override
    public void cancel() {
      owner.cancelLocal(this);
    }
  }

  /**
   * What {@link RedisEngine#acquire} hands out: the waiter, but its {@link #cancel()} does not
   * wait for Redis. Tests reach the waiter itself (whose cancel waits) and the admission.
   */
  static final class AsyncTicket implements Ticket {
    final RedisBatches.AcquireOp op;

    AsyncTicket(RedisBatches.AcquireOp op) {
      this.op = op;
    }

    @Override
    public CompletableFuture<Grant> future() {
      return op.w.future;
    }

    @Override
    public boolean claim() {
      return op.w.claim();
    }

    @Override
    public void cancel() {
      RWaiter w = op.w;
      if (w.status.get() == RWaiter.WAITING) {
        w.owner.events.execute(w::cancel); // a round trip to leave the queue
      } else {
        w.cancel(); // gives an unclaimed grant back without waiting
      }
    }
  }

  RWaiter newWaiter(
      String resource, String requestId, Map<String, Long> load, Lane lane, String tenant, long timeoutNanos) {
    return new RWaiter(this, resource, requestId, load, lane, tenant, timeoutNanos);
  }

  /** Charges the load by the limit {@code c}, registers the waiter and queues the op. */
  void admit(RedisBatches.AcquireOp op, RedisLimits.Cfg c) {
    RWaiter w = op.w;
    Map<String, Long> charged;
    try {
      charged = Validation.load(c.spec(), op.requested);
    } catch (EngineException ex) {
      calls.countRejected(w.resource, "invalid");
      throw ex;
    }
    w.load = charged;
    op.version = c.version();
    w.sent = op;
    RWaiter[] earlier = new RWaiter[1];
    locals.compute(
        w.resource,
        (k, cur) -> {
          Local local = cur != null ? cur : new Local();
          earlier[0] = local.waiters.put(w.requestId, w);
          return local;
        });
    if (earlier[0] != null && earlier[0] != w) {
      // A retry of a request id still parked here: it takes the waiter over in its place
      // (Engine#acquire); whoever waited on the earlier ticket hears so. Its entry in Redis is
      // the retry's now: nothing of the earlier one may take it out of line.
      earlier[0].takenOver = true;
      endLocal(earlier[0], takenOver(w.resource, w.requestId));
    }
    batches.submit(w.resource, op);
  }

  /** Drops a resource's table if nothing is parked on it and no wake-up is scheduled. */
  private void freeIfIdle(String resource, Local local) {
    if (local.idle()) {
      locals.computeIfPresent(resource, (k, cur) -> cur == local && cur.idle() ? null : cur);
    }
  }

  /** Drops a waiter from this node's table (it is not waiting in Redis). */
  void forget(RWaiter w) {
    Local local = locals.get(w.resource);
    if (local != null && local.waiters.remove(w.requestId, w)) {
      freeIfIdle(w.resource, local);
    }
  }

  /** Redis queued the waiter: its deadline starts, unless it ended meanwhile. */
  void queued(RWaiter w, long timeoutNanos) {
    int status = w.status.get();
    if (status == RWaiter.WAITING) {
      Scheduler.Cancellable earlier = w.timeout; // an acquire sent again (resend) is queued again
      if (earlier != null) {
        earlier.cancel();
      }
      w.timeout = scheduler.schedule(() -> expire(w), timeoutNanos);
    } else if (status == RWaiter.ENDED && !w.takenOver) {
      // Cancelled before Redis saw it: it must not wait there for nobody.
      events.execute(() -> leaveQuietly(w));
    }
  }

  /** Takes a waiter that was cancelled before Redis queued it out of the line again. */
  private void leaveQuietly(RWaiter w) {
    try {
      List<Object> reply = calls.call(w.resource, "leave", w.requestId, "cancelled", "1", w.attempt());
      switch (word(reply)) {
        case "LEFT" -> afterDrain(w.resource, reply, LEFT_TAIL);
        case "GRANTED" -> {
          if (nodeId.equals(reply.get(5))
              && delivered.asMap().putIfAbsent(w.resource + "\t" + reply.get(1), Boolean.TRUE) == null) {
            giveBack(w.resource, (String) reply.get(1));
          }
        }
        default -> {}
      }
    } catch (EngineException e) {
      // Redis away: the waiter's deadline or our missing heartbeat takes it out.
    }
  }

  static CancellationException takenOver(String resource, String rid) {
    return new CancellationException(
        "acquire " + rid + " on '" + resource + "' was taken over by a retry with the same request id");
  }

  /** Hands a retry the permit its request id holds (delivered before, maybe on this node). */
  void grantAgain(RWaiter w, String permitId, long waitedMicros, long leaseMicros, long freshMicros) {
    Grant g = take(w, permitId, waitedMicros, leaseMicros, freshMicros);
    if (g != null) {
      w.future.complete(g);
    }
    // Else it ended while asking (a deadline, a cancel): its leave gives the permit back, which
    // the asking did not mark as kept (the script marks a permit kept for another call only).
  }

  /** The grant, set on {@code w} if it still waits; null if it ended meanwhile. */
  private static Grant take(RWaiter w, String permitId, long waitedMicros, long leaseMicros, long freshMicros) {
    Grant g = new Grant(permitId, w.resource, w.load, leaseMicros * 1000, Math.max(0, waitedMicros) * 1000,
        freshMicros < 0 ? -1 : freshMicros * 1000);
    synchronized (w) {
      if (w.status.get() != RWaiter.WAITING) {
        return null;
      }
      w.grant = g;
      w.status.set(RWaiter.GRANTED);
    }
    return g;
  }

  /**
   * Delivers a grant to a local waiter, or gives it back if the waiter has ended. A permit
   * can reach this node twice (in a reply and on the channel): the second time is ignored.
   */
  void grant(RWaiter w, String permitId, long waitedMicros, long leaseMicros, long freshMicros) {
    if (delivered.getIfPresent(w.resource + "\t" + permitId) != null) {
      return;
    }
    Grant g = take(w, permitId, waitedMicros, leaseMicros, freshMicros);
    boolean mine = g != null;
    if (mine) {
      delivered.put(w.resource + "\t" + permitId, Boolean.TRUE);
      Scheduler.Cancellable t = w.timeout;
      if (t != null) {
        t.cancel();
      }
      w.future.complete(g);
      long now = calls.nanoNow();
      waits.compute(
          w.resource,
          (k, s) -> {
            WaitStats stats = s != null ? s : new WaitStats();
            stats.record(g.waitedNanos(), now);
            return stats;
          });
    } else {
      giveBack(w.resource, permitId);
    }
  }

  /**
   * Returns a grant nobody took, in full, without waiting (it may run on Lettuce's thread). A
   * give-back whose answer is lost is sent again until Redis answers: the script gives a
   * permit back once, and a second copy finds it gone.
   */
  void giveBack(String resource, String permitId) {
    giveBack(resource, permitId, calls.nanoNow() + UNSETTLED_MEMORY);
  }

  private void giveBack(String resource, String permitId, long until) {
    RedisBatches.ReleaseOp op = new RedisBatches.ReleaseOp(permitId, "giveback", "-");
    op.result.whenComplete(
        (known, e) -> {
          if (e != null) {
            if (closed || calls.nanoNow() - until > 0) {
              log.warn("give-back of {} on {} got no answer from Redis: its lease returns its slot, its"
                  + " tokens stay spent", permitId, resource);
              return;
            }
            scheduler.schedule(() -> giveBack(resource, permitId, until), SETTLE_RETRY.toNanos());
          }
        });
    batches.submit(resource, op);
  }

  /**
   * An acquire whose call got no answer may still have run in Redis (a stall, a lost reply: the
   * call timed out, or its connection broke after it was sent; a call refused before it left is
   * failed at once, and the SDK tries another node). Sent again
   * from this node with the same request id, its effect is found, not repeated: the waiter it
   * queued is taken over in place by this same node, the permit it got is handed over. Failing
   * it instead would send the caller's retry to another node, and the two copies would race in
   * Redis once it answers: whichever ran last would own the waiter, and a grant could go to the
   * node whose caller had left while the live call waited out its deadline. So the caller keeps
   * waiting here, for as long as the other nodes keep this node's waiters in line (the node
   * timeout) and within its deadline; after that it hears UNAVAILABLE and the SDK tries another
   * node (this node alone is cut off from Redis). True if it will be sent again.
   */
  boolean resend(RedisBatches.AcquireOp op, EngineException why) {
    if (!(why.getCause() instanceof io.lettuce.core.RedisException re) || !RedisStore.isIndeterminate(re)) {
      return false;
    }
    RWaiter w = op.w;
    long now = calls.nanoNow();
    long deadline = op.firstSent + w.timeoutNanos;
    w.unsure = op;
    if (closed || w.status.get() != RWaiter.WAITING
        || now - op.firstSent > calls.nodeTimeoutMicros() * 1000
        || deadline - (now + SETTLE_RETRY.toNanos()) <= 0) {
      return false;
    }
    scheduler.schedule(() -> {
      if (!closed && w.status.get() == RWaiter.WAITING) {
        batches.submit(w.resource, op.again());
      } else {
        op.admitted.complete(null); // ended meanwhile (cancelled): its own leave cleans Redis up
      }
    }, SETTLE_RETRY.toNanos());
    return true;
  }

  /**
   * Asks Redis again, until it answers or {@code until}, what became of a waiter whose leave at
   * its deadline got no answer: still in line, it leaves; granted to this node, the grant goes
   * back in full; anything else (taken over by a retry, ended) is left as it is.
   */
  private void settleLater(String resource, String requestId, String attempt, long until) {
    scheduler.schedule(() -> events.execute(() -> settle(resource, requestId, attempt, until)),
        SETTLE_RETRY.toNanos());
  }

  private void settle(String resource, String requestId, String attempt, long until) {
    if (closed) {
      return;
    }
    List<Object> reply;
    try {
      reply = calls.call(resource, "leave", requestId, "timedout", "1", attempt);
    } catch (EngineException e) {
      if (calls.nanoNow() - until < 0) {
        settleLater(resource, requestId, attempt, until);
      }
      return;
    }
    switch (word(reply)) {
      case "GRANTED" -> {
        if (nodeId.equals(reply.get(5))) {
          giveBack(resource, (String) reply.get(1));
        }
      }
      // A grant served here goes back (deliver).
      case "LEFT" -> afterDrain(resource, reply, LEFT_TAIL);
      case "SERVED" -> afterDrain(resource, reply, 2);
      default -> { } // ended, taken over by a retry, or forgotten: nothing of ours is left
    }
  }

  /** Gives back a grant its waiter has not taken, once (cancel after the grant). */
  void returnUnclaimed(RWaiter w) {
    if (w.status.compareAndSet(RWaiter.GRANTED, RWaiter.RETURNED)) {
      calls.count(w.resource, "cancelled");
      giveBack(w.resource, w.grant.permitId());
    }
  }

  /**
   * Handles the common tail of a draining reply; {@code at} is the index of its "now": then
   * come the wake-up delay, the lease, and (request id, permit, waited) per grant for this
   * node. Schedules the wake-up.
   */
  void afterDrain(String resource, List<Object> reply, int at) {
    long answeredAt = num(reply.get(at));
    calls.sawRedisNow(answeredAt);
    long wake = num(reply.get(at + 1));
    long lease = num(reply.get(at + 2));
    int i = at + 3;
    while (i + 3 < reply.size() && !"--".equals(reply.get(i))) {
      String rid = (String) reply.get(i);
      String permit = (String) reply.get(i + 1);
      long waited = num(reply.get(i + 2));
      long fresh = num(reply.get(i + 3));
      deliver(resource, rid, permit, waited, lease, answeredAt, fresh);
      i += 4;
    }
    scheduleWake(resource, wake);
  }

  /**
   * Hands a grant that Redis made at {@code grantedAt} (its clock, us) to its waiter here, if it
   * is still fresh ({@code freshMicros} from then, -1 for ever) when it arrives.
   */
  private void deliver(
      String resource, String rid, String permit, long waitedMicros, long leaseMicros, long grantedAt,
      long freshMicros) {
    Local local = locals.get(resource);
    RWaiter suspect = local == null ? null : local.waiters.get(rid);
    if (suspect != null && suspect.sent != null) {
      if (holdBackStale(suspect, permit, grantedAt, freshMicros)) {
        batches.submit(resource, suspect.sent.again(permit));
        return;
      }
      RedisBatches.AcquireOp check;
      synchronized (suspect) {
        check = suspect.status.get() == RWaiter.WAITING ? suspect.unsure : null;
      }
      if (check != null) {
        // Not handed over as it is: the acquire asked again answers with this permit if it is
        // still held (Engine#acquire), or keeps the waiter in line.
        batches.submit(resource, check.again());
        return;
      }
    }
    RWaiter w = local == null ? null : local.waiters.remove(rid);
    if (w == null) {
      if (delivered.asMap().putIfAbsent(resource + "\t" + permit, Boolean.TRUE) == null) {
        // Its caller left between the grant and now: the permit goes back in full.
        giveBack(resource, permit);
      }
      return;
    }
    freeIfIdle(resource, local);
    grant(w, permit, waitedMicros, leaseMicros, freshLeft(grantedAt, freshMicros));
  }

  /**
   * Whether to hold back a grant of {@code permit} to {@code w} that Redis made at {@code
   * grantedAt} and that stays fresh {@code freshMicros} from then: it reached this node stale (a
   * reply or notice held up on the way, a cut, a stall) while {@code w} still waits. Then the
   * caller asks again naming the permit, and no other copy of it is handed over meanwhile.
   *
   * <p>Every stale grant is asked about, not only a waiter's first: handed over, the grants a slow
   * link held would reach the upstream together with the fresh ones the moment its delay drops
   * (the campaign saw 16 calls in ~60 ms against a bound of ~15.5 as a 300 ms delay ended). A
   * link that stays slow is not a loop for ever: Redis's clock is read from the replies of the
   * last 5 to 10 s ({@link RedisCalls#ageMicros}), so a steady delay is learned in that time, and
   * only the grants made before it was learned are forfeited.
   */
  boolean holdBackStale(RWaiter w, String permit, long grantedAt, long freshMicros) {
    if (!stale(grantedAt, freshMicros)) {
      return false;
    }
    synchronized (w) {
      if (w.status.get() != RWaiter.WAITING) {
        return false;
      }
      w.withheld = permit;
    }
    delivered.put(w.resource + "\t" + permit, Boolean.TRUE); // a second copy is not handed over
    staleGrants.incrementAndGet();
    return true;
  }

  /** Grants that reached this node stale and were asked for again ({@link #deliver}). */
  final java.util.concurrent.atomic.AtomicLong staleGrants = new java.util.concurrent.atomic.AtomicLong();

  /**
   * Whether a grant Redis made at {@code grantedAt} (its clock, us) is older than its freshness
   * ({@code freshMicros}, -1 for ever) now that it reached this node: the reply or notice that
   * carried it was held up on the way. Handed to its caller as it is, it would reach the
   * upstream in a bunch with the grants made since; asked for again with its request id, the
   * script forfeits it and keeps the waiter at the head of its lane (Engine#acquire).
   */
  boolean stale(long grantedAt, long freshMicros) {
    return freshMicros >= 0 && calls.ageMicros(grantedAt) > freshMicros;
  }

  /** What is left of a grant's freshness now, in micros; -1 for a grant never stale. */
  long freshLeft(long grantedAt, long freshMicros) {
    return freshMicros < 0 ? -1 : Math.max(0, freshMicros - calls.ageMicros(grantedAt));
  }

  private void scheduleWake(String resource, long wakeMicros) {
    Local local = locals.get(resource);
    if (local == null) {
      return;
    }
    synchronized (local) {
      if (!local.waiters.isEmpty()) {
        long delay = HEARTBEAT.toNanos();
        if (wakeMicros >= 0) {
          delay = Math.min(delay, wakeMicros * 1000);
        }
        long at = calls.nanoNow() + delay;
        if (local.wake != null) {
          if (local.wakeAt == at) {
            return;
          }
          local.wake.cancel();
        }
        local.wakeAt = at;
        local.wake = scheduler.schedule(() -> pump(resource, local), delay);
        return;
      }
      if (local.wake != null) {
        local.wake.cancel();
        local.wake = null;
      }
    }
    freeIfIdle(resource, local);
  }

  /** Runs the drain for a resource this node has waiters on (wake-up and heartbeat). */
  private void pump(String resource, Local local) {
    if (locals.get(resource) != local || closed) {
      return; // a dropped table: nothing waits on it
    }
    synchronized (local) {
      local.wake = null;
    }
    if (local.waiters.isEmpty()) {
      freeIfIdle(resource, local);
      return;
    }
    try {
      List<Object> reply = calls.call(resource, "pump");
      if (word(reply).equals("NOTFOUND")) {
        EngineException gone = limits.vanished(resource); // deleted, or Redis lost its data
        if (gone.reason() == EngineException.Reason.NOT_FOUND) {
          deleted(resource);
        } else {
          failLocal(resource, () -> gone);
        }
        return;
      }
      afterDrain(resource, reply, 2);
    } catch (EngineException e) {
      long away = calls.store.unreachableForNanos();
      if (away > calls.nodeTimeoutMicros() * 1000) {
        // The other nodes have dropped our waiters from the line by now: fail them, so their
        // clients retry elsewhere (same request id: back in line at their old place).
        failLocal(resource, () -> new EngineException(EngineException.Reason.UNAVAILABLE,
            "this node lost contact with Redis for " + Duration.ofNanos(away).toMillis()
                + " ms: retry on another node"));
        return;
      }
      // Redis away: keep beating, the waiters' deadlines still run.
      scheduleWake(resource, -1);
    }
  }

  private void expire(RWaiter w) {
    if (w.status.get() != RWaiter.WAITING) {
      return;
    }
    List<Object> reply;
    try {
      reply = calls.call(w.resource, "leave", w.requestId, "timedout", "1", w.attempt());
    } catch (EngineException e) {
      // No answer: for its caller the deadline has passed, but in Redis it may wait still, or
      // have been granted. Found out once Redis answers again (settleLater).
      if (endLocal(w, notGrantedInTime(w.resource, w.timeoutNanos, PauseState.NONE))) {
        settleLater(w.resource, w.requestId, w.attempt(), calls.nanoNow() + UNSETTLED_MEMORY);
      }
      return;
    }
    switch (word(reply)) {
      case "GRANTED" -> {
        if (!nodeId.equals(reply.get(5))) {
          // The client retried on another node, which holds the grant now.
          endLocal(w, movedTo(w, reply.get(5)));
          return;
        }
        // Granted just before the deadline and the news is still on its way: take it.
        forget(w);
        grant(w, (String) reply.get(1), num(reply.get(2)), num(reply.get(4)),
            freshLeft(num(reply.get(3)), reply.size() > 6 ? num(reply.get(6)) : -1));
      }
      case "LEFT" -> {
        endLocal(w, notGrantedInTime(w.resource, w.timeoutNanos, RedisCalls.pause(reply, 2)));
        afterDrain(w.resource, reply, LEFT_TAIL);
      }
      case "SERVED" -> {
        // Granted at its deadline instant: the grant is in the reply (ours) or on its way.
        afterDrain(w.resource, reply, 2);
        if (!nodeId.equals(reply.get(1))) {
          endLocal(w, movedTo(w, reply.get(1)));
        }
      }
      case "MOVED" -> endLocal(w, movedTo(w, reply.get(1)));
      default -> endLocal(w, notGrantedInTime(w.resource, w.timeoutNanos, PauseState.NONE));
    }
  }

  private static EngineException movedTo(RWaiter w, Object node) {
    return new EngineException(EngineException.Reason.UNAVAILABLE,
        "acquire " + w.requestId + " was taken over by node " + node);
  }

  /** Ends a local waiter that is still waiting; false if it was granted or ended meanwhile. */
  boolean endLocal(RWaiter w, Throwable why) {
    forget(w);
    boolean ended;
    synchronized (w) {
      ended = w.status.compareAndSet(RWaiter.WAITING, RWaiter.ENDED);
    }
    if (ended) {
      Scheduler.Cancellable t = w.timeout;
      if (t != null) {
        t.cancel();
      }
      w.future.completeExceptionally(why);
    }
    return ended;
  }

  void cancelLocal(RWaiter w) {
    if (w.status.get() == RWaiter.WAITING) {
      try {
        List<Object> reply = calls.call(w.resource, "leave", w.requestId, "cancelled", "1", w.attempt());
        switch (word(reply)) {
          case "LEFT" -> {
            endLocal(w, cancelled(w.resource));
            afterDrain(w.resource, reply, LEFT_TAIL);
          }
          case "GRANTED" -> {
            // Give it back only if the grant had not reached the caller meanwhile (then the
            // GRANTED -> RETURNED step below gives it back, unless the caller took it).
            if (endLocal(w, cancelled(w.resource)) && nodeId.equals(reply.get(5))) {
              // Granted to us, news not here yet: it goes back.
              delivered.put(w.resource + "\t" + reply.get(1), Boolean.TRUE);
              giveBack(w.resource, (String) reply.get(1));
            }
          }
          default -> endLocal(w, cancelled(w.resource));
        }
      } catch (EngineException e) {
        endLocal(w, cancelled(w.resource));
      }
    }
    returnUnclaimed(w);
  }

  static CancellationException cancelled(String resource) {
    return new CancellationException("acquire on '" + resource + "' was cancelled by the caller");
  }

  /** Ends a waiter that another call took out of the line (cancel by request id). */
  void left(String resource, String requestId) {
    RWaiter w = localWaiter(resource, requestId);
    if (w != null) {
      endLocal(w, cancelled(resource));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Messages from other nodes

  static String nodeChannel(String node) {
    return "sluice:node:" + node;
  }

  /** Listens on this node's channel and the config channel. */
  void subscribe() {
    calls.store.subscribe(
        (channel, message) ->
            events.execute(
                () -> {
                  try {
                    onMessage(channel, message);
                  } catch (RuntimeException e) {
                    log.warn("could not handle message on {}: {}", channel, e.toString());
                  }
                }),
        nodeChannel(nodeId),
        CONFIG_CHANNEL);
  }

  private void onMessage(String channel, String message) {
    String[] f = message.split("\t");
    if (channel.equals(CONFIG_CHANNEL)) {
      if (f.length > 2 && f[2].equals(nodeId)) {
        // Our own change, applied when it was made. Acting on it again, late, could end the
        // waiters of a limit created again since.
        return;
      }
      if (f[0].equals("T")) {
        // Another node changed a template: read them again, then bring our waiters' buckets along.
        limits.reloadTemplates(true);
        onTemplates.accept(f[1]);
        return;
      }
      // Another node changed a limit: forget our copy; a deletion ends our waiters.
      limits.forget(f[1]);
      if (f[0].equals("D")) {
        limits.deleted(f[1]);
        deleted(f[1]);
      }
      return;
    }
    switch (f[0]) {
      case "G" -> deliver(f[1], f[2], f[3], Long.parseLong(f[4]), Long.parseLong(f[5]),
          f.length > 7 ? Long.parseLong(f[6]) : 0, f.length > 7 ? Long.parseLong(f[7]) : -1);
      case "E" -> {
        RWaiter w = localWaiter(f[1], f[2]);
        // Only the call named (a message older than a retry on this node is not the retry's).
        if (w != null && (f.length < 5 || f[4].isEmpty() || f[4].equals(w.attempt()))) {
          switch (f[3]) {
            case "timedout" -> endLocal(w, notGrantedInTime(f[1], w.timeoutNanos,
                f.length > 6 ? RedisCalls.pause(List.of(f[5], f[6]), 0) : PauseState.NONE));
            case "taken" -> {
              // A retry of its request id on another node took its place in line.
              w.takenOver = true;
              endLocal(w, takenOver(f[1], f[2]));
            }
            default -> endLocal(w, cancelled(f[1]));
          }
        }
      }
      case "X" -> changed(f[1], f[2], f[3]);
      case "D" -> deleted(f[1]);
      default -> log.debug("ignoring message {}", message);
    }
  }

  private volatile java.util.function.Consumer<String> onTemplates = p -> {};

  /** Told the pattern of a template another node changed. */
  void onTemplates(java.util.function.Consumer<String> listener) {
    this.onTemplates = listener;
  }

  /** The resources this node has waiters parked on. */
  List<String> waitingOn() {
    return List.copyOf(locals.keySet());
  }

  /** Ends a waiter whose load no longer fits its changed limit. */
  void changed(String resource, String rid, Object why) {
    RWaiter w = localWaiter(resource, rid);
    if (w != null) {
      endLocal(w, EngineException.invalid("limit of '" + resource + "' changed: " + why));
    }
  }

  private RWaiter localWaiter(String resource, String rid) {
    Local local = locals.get(resource);
    return local == null ? null : local.waiters.get(rid);
  }

  /** The resource was deleted: its waiters end with NOT_FOUND and its stats go. */
  void deleted(String resource) {
    failLocal(resource, () -> EngineException.notFound(resource));
    waits.remove(resource);
  }

  /** The latest arrival number handed out: waiters registered later have higher ones. */
  long arrivalMark() {
    return arrivals.get();
  }

  /**
   * The store lost its data: every waiter registered up to {@code upTo} ({@link #arrivalMark})
   * ends, its line being gone; later ones joined the restored line.
   */
  void failAll(Supplier<EngineException> why, long upTo) {
    for (String resource : List.copyOf(locals.keySet())) {
      failLocal(resource, why, upTo);
    }
  }

  private void failLocal(String resource, Supplier<EngineException> why) {
    failLocal(resource, why, Long.MAX_VALUE);
  }

  private void failLocal(String resource, Supplier<EngineException> why, long upTo) {
    Local local = locals.get(resource);
    if (local == null) {
      return;
    }
    // In line order, highest lane first, as the memory store ends them.
    List<RWaiter> all = new ArrayList<>(local.waiters.values());
    all.removeIf(w -> w.arrival > upTo);
    all.sort(Comparator.comparingInt((RWaiter w) -> w.lane.ordinal()).thenComparingLong(w -> w.arrival));
    for (RWaiter w : all) {
      endLocal(w, why.get());
    }
    scheduleWake(resource, -1);
  }

  // ---------------------------------------------------------------------------------------
  // Stats, housekeeping, shutdown

  /** {p50, p99} of recent waits in seconds. */
  double[] percentiles(String resource) {
    WaitStats s = waits.get(resource);
    return s == null ? new double[] {0, 0} : s.percentiles(calls.nanoNow());
  }

  /** Drops the wait stats of resources nothing was granted on lately, and expired deliveries. */
  void housekeep() {
    long now = calls.nanoNow();
    for (String resource : List.copyOf(waits.keySet())) {
      waits.computeIfPresent(resource, (k, s) -> s.idle(now) ? null : s);
    }
    delivered.cleanUp();
  }

  /** For tests: resources with a table of waiters, with wait stats, with remembered deliveries. */
  int[] sizes() {
    delivered.cleanUp();
    return new int[] {locals.size(), waits.size(), (int) delivered.estimatedSize()};
  }

  /** Takes every waiter out of the line and ends it. */
  void close(Supplier<EngineException> why) {
    closed = true;
    for (Map.Entry<String, Local> e : locals.entrySet()) {
      for (RWaiter w : List.copyOf(e.getValue().waiters.values())) {
        try {
          calls.call(w.resource, "leave", w.requestId, "cancelled", "1", w.attempt());
        } catch (EngineException ex) {
          // Redis away: the others drop our waiters once our heartbeat stops.
        }
        endLocal(w, why.get());
      }
      synchronized (e.getValue()) {
        if (e.getValue().wake != null) {
          e.getValue().wake.cancel();
        }
      }
    }
  }

  /** Stops every timer without a word, as a killed process would. */
  void crash() {
    closed = true;
    for (Local local : locals.values()) {
      synchronized (local) {
        if (local.wake != null) {
          local.wake.cancel();
        }
      }
      for (RWaiter w : local.waiters.values()) {
        Scheduler.Cancellable t = w.timeout;
        if (t != null) {
          t.cancel();
        }
      }
    }
  }

  static EngineException notGrantedInTime(String resource, long timeoutNanos, PauseState pause) {
    return new EngineException(
        EngineException.Reason.DEADLINE, PauseState.notGrantedInTime(resource, timeoutNanos, pause));
  }
}
