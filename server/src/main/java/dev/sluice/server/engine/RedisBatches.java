package dev.sluice.server.engine;

import static dev.sluice.server.engine.RedisCalls.decodeLoad;
import static dev.sluice.server.engine.RedisCalls.num;
import static dev.sluice.server.engine.RedisCalls.word;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Batches: a node's acquires and releases of one resource share script calls. Each resource
 * with ops on their way has a {@link Batcher}; it is dropped again once it has nothing pending
 * and no call on the wire, and a new one is made by the next op (both under the map's lock, so
 * an op never lands in a dropped batcher).
 */
final class RedisBatches {

  private static final Logger log = LoggerFactory.getLogger(RedisEngine.class);

  /**
   * Most ops in one script call: a script blocks Redis while it runs, so one call stays well
   * under a millisecond.
   */
  private static final int MAX_BATCH = 64;

  /**
   * Script calls per resource a node has on the wire at once. Ops that arrive meanwhile wait
   * and go together in the next call: under load a hot key costs Redis one script run per
   * batch, not one per op (the fixed part of a run, loading the limit and the state and saving
   * it, is most of its cost); when idle, an op goes at once.
   */
  private static final int MAX_CALLS_IN_FLIGHT = 1;

  private final RedisCalls calls;
  private final RedisWaiters waiters;
  private final ConcurrentHashMap<String, Batcher> batchers = new ConcurrentHashMap<>();
  /** Operations handed to a batcher whose reply has not been handled yet. */
  private final AtomicInteger unanswered = new AtomicInteger();
  private volatile boolean hold; // test hook

  RedisBatches(RedisCalls calls, RedisWaiters waiters) {
    this.calls = calls;
    this.waiters = waiters;
  }

  /** Queues an op for its resource's next script call; sends it at once if none is out. */
  void submit(String resource, Op op) {
    unanswered.incrementAndGet();
    Batcher b =
        batchers.compute(
            resource,
            (k, cur) -> {
              Batcher x = cur != null ? cur : new Batcher(k);
              x.add(op);
              return x;
            });
    b.kick(true);
  }

  /** Releases a permit in the resource's next batch; completes false if Redis did not know it. */
  CompletableFuture<Boolean> release(String resource, String permitId, String mode, String usage) {
    ReleaseOp op = new ReleaseOp(permitId, mode, usage);
    submit(resource, op);
    return op.result;
  }

  /** Test hook: while held, acquires and releases wait; let go, they leave in batches. */
  void hold(boolean hold) {
    this.hold = hold;
    if (!hold) {
      for (Batcher b : batchers.values()) {
        b.kick(false);
      }
    }
  }

  /** Resources with a batcher (for tests: idle ones hold none). */
  int size() {
    return batchers.size();
  }

  /**
   * For tests that compare stores step by step: returns once every call this node started on
   * the store (batched acquires, releases, give-backs, waiters leaving) has been answered and
   * handled.
   */
  void awaitQuiet() {
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (true) {
      CompletableFuture.runAsync(() -> {}, waiters.events).join();
      if (unanswered.get() == 0) {
        CompletableFuture.runAsync(() -> {}, waiters.events).join();
        if (unanswered.get() == 0) {
          return;
        }
      }
      if (System.nanoTime() - until > 0) {
        throw new IllegalStateException(unanswered.get() + " store calls still unanswered after 10 s");
      }
      Thread.onSpinWait();
    }
  }

  /**
   * Until when a batch refused by a Redis Cluster before it ran (slot migration, failover) is
   * sent again: its shortest acquire timeout from now, so each waiter still hears by its
   * deadline (and its client retries); a batch of releases only, {@link ClusterRetry#BUDGET}.
   */
  static long retryDeadline(List<Op> batch) {
    long shortest = ClusterRetry.BUDGET.toNanos();
    for (Op op : batch) {
      if (op instanceof AcquireOp a) {
        shortest = Math.min(shortest, a.w.timeoutNanos);
      }
    }
    return System.nanoTime() + shortest;
  }

  /** An acquire or a release on its way to Redis in a batch. */
  abstract static class Op {
    /**
     * Appends its line of the script's batch op: its fields separated by spaces. No field can
     * hold a space or a line break: names, request ids and tenants are validated before they get
     * here, loads are {@code dim=n,...} of validated dimensions, and a permit id that is not one
     * this store could have made is sent as {@code x}, which is no permit either.
     */
    abstract void args(StringBuilder line);

    /** Takes its reply; runs before the grants of the batch's drain are delivered. */
    abstract void reply(List<Object> r);

    /** Runs after the grants are delivered: completes what its caller waits for. */
    abstract void settle();

    /** The whole batch failed (Redis away, limit deleted). */
    abstract void fail(EngineException e);
  }

  /** A node's queue of ops for one resource; see {@link #MAX_CALLS_IN_FLIGHT}. */
  private final class Batcher {
    final String resource;
    final String[] keys;
    private final ArrayDeque<Op> pending = new ArrayDeque<>(); // guarded by this
    private int inFlight; // guarded by this

    Batcher(String resource) {
      this.resource = resource;
      this.keys = RedisCalls.keys(resource);
    }

    synchronized void add(Op op) {
      pending.add(op);
    }

    synchronized boolean idle() {
      return inFlight == 0 && pending.isEmpty();
    }

    /** Sends what waits, if no call is on the wire (and, with {@code obeyHold}, not held). */
    void kick(boolean obeyHold) {
      List<Op> batch;
      synchronized (this) {
        if (inFlight >= MAX_CALLS_IN_FLIGHT || pending.isEmpty() || (obeyHold && hold)) {
          return;
        }
        inFlight++;
        batch = next();
      }
      send(batch);
    }

    private List<Op> next() { // guarded by this
      int n = Math.min(pending.size(), MAX_BATCH);
      List<Op> batch = new ArrayList<>(n);
      for (int i = 0; i < n; i++) {
        batch.add(pending.poll());
      }
      return batch;
    }

    private void send(List<Op> batch) {
      // One argument for the whole batch, not nine per op: the client encodes each argument
      // into a buffer of its own, and that cost more than the script's work on the op.
      List<String> argv = new ArrayList<>(7);
      calls.header(argv, "batch", resource);
      StringBuilder ops = new StringBuilder(48 * batch.size());
      for (Op op : batch) {
        if (ops.length() > 0) {
          ops.append('\n');
        }
        op.args(ops);
      }
      argv.add(ops.toString());
      calls.callAsync(keys, argv.toArray(String[]::new), retryDeadline(batch))
          .whenComplete(
              (reply, error) -> {
                // The next batch goes first: Redis works on it while this reply is handled.
                List<Op> more;
                boolean idle;
                synchronized (this) {
                  more = pending.isEmpty() ? null : next();
                  if (more == null) {
                    inFlight--;
                  }
                  idle = inFlight == 0 && pending.isEmpty();
                }
                if (more != null) {
                  send(more);
                } else if (idle) {
                  batchers.computeIfPresent(resource, (k, cur) -> cur == this && cur.idle() ? null : cur);
                }
                try {
                  done(batch, reply, error);
                } catch (RuntimeException e) {
                  log.error("could not handle a batch reply on {}", resource, e);
                } finally {
                  unanswered.addAndGet(-batch.size());
                }
              });
    }

    private void done(List<Op> batch, List<Object> reply, Throwable error) {
      if (error != null) {
        Throwable t = error instanceof CompletionException && error.getCause() != null ? error.getCause() : error;
        EngineException e = calls.failed(t); // a connection reset is the store's too
        for (Op op : batch) {
          op.fail(e);
        }
        return;
      }
      calls.store.markReachable();
      if (word(reply).equals("NOTFOUND")) {
        EngineException e = waiters.limits.vanished(resource); // deleted, or Redis lost its data
        for (Op op : batch) {
          op.fail(e);
        }
        return;
      }
      for (int i = 0; i < batch.size(); i++) {
        @SuppressWarnings("unchecked")
        List<Object> r = (List<Object>) reply.get(1 + i);
        batch.get(i).reply(r);
      }
      waiters.afterDrain(resource, reply, 1 + batch.size());
      for (Op op : batch) {
        op.settle();
      }
    }
  }

  /** An acquire: its waiter is registered on this node before it is sent. */
  static final class AcquireOp extends Op {
    final RedisWaiters waiters;
    final RedisWaiters.RWaiter w;
    final Map<String, Long> requested;
    final Lane lane;
    /** Completes once Redis answered; exceptionally when it refused the acquire. */
    final CompletableFuture<Void> admitted = new CompletableFuture<>();
    String version;
    int attempt;
    private boolean stale;
    /** When it was first sent: see {@link RedisWaiters#resend}. */
    final long firstSent;

    AcquireOp(RedisWaiters waiters, RedisWaiters.RWaiter w, Map<String, Long> requested, Lane lane) {
      this(waiters, w, requested, lane, waiters.calls.nanoNow());
    }

    private AcquireOp(
        RedisWaiters waiters, RedisWaiters.RWaiter w, Map<String, Long> requested, Lane lane, long firstSent) {
      this.waiters = waiters;
      this.w = w;
      this.requested = requested;
      this.lane = lane;
      this.firstSent = firstSent;
    }

    /** The permit this acquire found stale and held back: the script forfeits it if late. */
    private String stalePermit = "";

    /**
     * The same acquire, to send again; its answer answers this one. It names the permit this
     * one named ({@link #again(String)}): resent after a lost reply, an asking about a held-back
     * permit must still decide it, or nobody would.
     */
    AcquireOp again() {
      return again(stalePermit);
    }

    /**
     * The same acquire, sent again about a grant it found stale and held back ({@code
     * stalePermit}, "" for none): the script forfeits that permit if it is late. Without one,
     * the same call asking again never forfeits: it may hold the grant already.
     */
    AcquireOp again(String stalePermit) {
      AcquireOp next = new AcquireOp(waiters, w, requested, lane, firstSent);
      next.stalePermit = stalePermit;
      next.version = version;
      next.admitted.whenComplete((v, e) -> {
        if (e == null) {
          admitted.complete(null);
        } else {
          admitted.completeExceptionally(e);
        }
      });
      return next;
    }

    @Override
    void args(StringBuilder line) {
      line.append("a ").append(version).append(' ').append(w.requestId).append(' ').append(lane.ordinal() + 1)
          .append(' ').append(RedisCalls.encodeLoad(w.load)).append(' ').append(remainingNanos() / 1000)
          .append(' ').append(w.attempt()).append(' ').append(stalePermit).append(' ').append(w.tenant);
    }

    /** What is left of the caller's timeout: all of it, unless this acquire is sent again. */
    long remainingNanos() {
      long left = firstSent + w.timeoutNanos - waiters.calls.nanoNow();
      return w.timeoutNanos == 0 ? 0 : Math.max(1_000_000, Math.min(w.timeoutNanos, left));
    }

    @Override
    void reply(List<Object> r) {
      switch (word(r)) {
        case "GRANTED" -> {
          long answeredAt = num(r.get(3));
          String permit = (String) r.get(1);
          boolean again = r.size() > 5 && "again".equals(r.get(5));
          long fresh = again ? (r.size() > 7 ? num(r.get(7)) : -1) : (r.size() > 5 ? num(r.get(5)) : -1);
          if (permit.equals(w.withheld) && !permit.equals(stalePermit)) {
            return; // held back while this waiter asks about it: that asking's answer decides
          }
          if (waiters.holdBackStale(w, permit, answeredAt, fresh)) {
            // Held up on the way: asked again naming the permit, which the script hands over if
            // it is still fresh, or forfeits (RedisWaiters#deliver).
            waiters.batches.submit(w.resource, again(permit));
            return;
          }
          waiters.forget(w);
          if (again) {
            // A retry of an id whose permit is held: the same permit, as it was charged.
            w.load = decodeLoad((String) r.get(6));
            waiters.grantAgain(w, permit, num(r.get(2)), num(r.get(4)), waiters.freshLeft(answeredAt, fresh));
          } else {
            waiters.grant(w, permit, num(r.get(2)), num(r.get(4)), waiters.freshLeft(answeredAt, fresh));
          }
        }
        case "QUEUED" -> {
          if (r.size() > 2 && "taken".equals(r.get(1))) {
            w.load = decodeLoad((String) r.get(2)); // the waiter taken over keeps its load
          }
          waiters.queued(w, remainingNanos());
        }
        case "TIMEOUT" -> waiters.endLocal(w, RedisWaiters.notGrantedInTime(w.resource, 0, RedisCalls.pause(r, 1)));
        case "FULL" -> {
          long hint = Math.max(TimeUnit.SECONDS.toNanos(1), num(r.get(2)) * 1000);
          refuse(
              new EngineException(
                  EngineException.Reason.WAITING_ROOM_FULL,
                  "waiting room of '" + w.resource + "' is full (" + num(r.get(1))
                      + " waiting, max " + waiters.limits.maxWaitingOf(w.resource) + "): retry after the"
                      + " hinted delay, or raise --max-waiting",
                  hint));
        }
        case "STALE" -> {
          waiters.forget(w);
          stale = true;
        }
        case "USED" -> {
          waiters.forget(w);
          waiters.calls.countRejected(w.resource, "invalid");
          refuse(EngineException.invalid(MemoryEngine.usedUp(w.resource, w.requestId, num(r.get(1)) * 1000)));
        }
        default -> refuse(RedisCalls.unexpected(new IllegalStateException("unexpected reply " + r)));
      }
    }

    @Override
    void settle() {
      if (stale) {
        waiters.events.execute(this::retryStale); // reads the changed limit: a round trip
        return;
      }
      admitted.complete(null);
    }

    @Override
    void fail(EngineException e) {
      if (e.reason() == EngineException.Reason.NOT_FOUND) {
        waiters.limits.forget(w.resource);
      }
      if (e.reason() == EngineException.Reason.UNAVAILABLE && waiters.resend(this, e)) {
        return;
      }
      refuse(e);
    }

    void refuse(EngineException e) {
      waiters.endLocal(w, e);
      admitted.completeExceptionally(e);
    }

    /** The limit changed since this node cached it: read it and try again, a few times. */
    private void retryStale() {
      try {
        RedisLimits.Cfg c = waiters.limits.fetch(w.resource);
        if (c == null) {
          throw EngineException.notFound(w.resource);
        }
        if (++attempt > 3) {
          throw new EngineException(
              EngineException.Reason.UNAVAILABLE,
              "limit of '" + w.resource + "' keeps changing: retry");
        }
        stale = false;
        waiters.admit(this, c);
      } catch (RuntimeException e) {
        refuse(e instanceof EngineException ee ? ee : RedisCalls.unexpected(e));
      }
    }
  }

  /** A release, settle or give-back of a permit. */
  static final class ReleaseOp extends Op {
    final String permitId;
    final String mode;
    final String usage;
    final CompletableFuture<Boolean> result = new CompletableFuture<>();
    private boolean known;

    ReleaseOp(String permitId, String mode, String usage) {
      this.permitId = permitId;
      this.mode = mode;
      this.usage = usage;
    }

    @Override
    void args(StringBuilder line) {
      line.append("r ").append(madeHere(permitId) ? permitId : "x").append(' ').append(mode).append(' ')
          .append(usage);
    }

    /** Whether {@code id} could be a permit of this store: digits, a dot, digits (the script's). */
    static boolean madeHere(String id) {
      int dot = id.indexOf('.');
      if (dot <= 0 || dot == id.length() - 1 || id.length() > 40) {
        return false;
      }
      for (int i = 0; i < id.length(); i++) {
        char c = id.charAt(i);
        if ((c < '0' || c > '9') && i != dot) {
          return false;
        }
      }
      return true;
    }

    @Override
    void reply(List<Object> r) {
      known = !word(r).equals("UNKNOWN");
    }

    @Override
    void settle() {
      result.complete(known);
    }

    @Override
    void fail(EngineException e) {
      result.completeExceptionally(e);
    }
  }
}
