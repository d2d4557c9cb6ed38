package dev.sluice.buffers;

import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Shared mode: which node delivers each buffer.
 *
 * <p>Every second on the clock, a sync round ({@code sluice-buffer-sync}) reads the buffer list,
 * learns of buffers created, paused, resumed or deleted on other nodes, and claims, keeps or
 * gives up each buffer's delivery lease. A follower thread ({@code sluice-buffer-follower})
 * reads the items pushed on any node from the streams of the buffers this node delivers; while
 * it delivers none, the follower waits without a timeout until a sync round takes one over.
 */
final class Ownership implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(Ownership.class);
  /** How often a shared node renews its leases and reads the buffer list. */
  static final long SYNC_MILLIS = 1000;
  /** How long one read of the streams waits for news. */
  private static final long FOLLOW_BLOCK_MILLIS = 250;

  private final BufferBackend backend;
  private final Known known;
  private final Delivery delivery;
  private final BufferClock clock;
  /** One thread: rounds never overlap, and their store calls hold up no timer. */
  private final ExecutorService sync = Threads.pool("sluice-buffer-sync", 1);
  private final Thread follower = Threads.thread(this::follow, "sluice-buffer-follower");
  private final ReentrantLock lock = new ReentrantLock();
  /** Signalled when this node may have started delivering a buffer, and at close. */
  private final Condition delivering = lock.newCondition();
  /** Reads of the streams, for tests: none while this node delivers nothing. */
  private final AtomicLong reads = new AtomicLong();
  private volatile boolean closed;
  private BufferClock.Timer next; // guarded by lock

  Ownership(BufferBackend backend, Known known, Delivery delivery, BufferClock clock) {
    this.backend = backend;
    this.known = known;
    this.delivery = delivery;
    this.clock = clock;
  }

  /** Runs the first round now, then one every second; starts the follower. */
  void start() {
    follower.start();
    runRound(true);
  }

  /** A round now, beside the regular ones (a buffer was just created here: claim it at once). */
  void syncSoon() {
    runRound(false);
  }

  private void runRound(boolean regular) {
    try {
      sync.execute(() -> round(regular));
    } catch (RejectedExecutionException e) {
      // closing
    }
  }

  private void round(boolean regular) {
    try {
      syncOnce();
    } catch (RuntimeException e) {
      if (!closed) {
        log.warn("buffers: reading the shared store failed ({}); retrying every second", e.getMessage());
      }
    } finally {
      if (regular) {
        lock.lock();
        try {
          if (!closed) {
            next = clock.schedule(() -> runRound(true), SYNC_MILLIS);
          }
        } finally {
          lock.unlock();
        }
      }
    }
  }

  /**
   * One round: learns of buffers created, deleted, paused or resumed on other nodes, and takes,
   * keeps or gives up the lease of each.
   */
  private void syncOnce() {
    if (closed) {
      return;
    }
    long readAt = clock.nanos();
    List<BufferBackend.StoredBuffer> stored = backend.buffers();
    Set<String> names = new HashSet<>();
    for (BufferBackend.StoredBuffer row : stored) {
      names.add(row.name());
      Buffer b = known.learn(row);
      if (b == null) {
        continue;
      }
      boolean resumed = false;
      synchronized (b) {
        if (b.pausedChanged - readAt < 0 && b.paused != row.paused()) {
          b.paused = row.paused();
          resumed = !b.paused;
        }
      }
      if (resumed) {
        delivery.pump(b);
      }
    }
    boolean started = false;
    for (Buffer b : List.copyOf(known.all())) {
      if (!names.contains(b.spec.name()) && b.learned - readAt < 0) {
        // Deleted on another node.
        synchronized (b) {
          b.deleted = true;
        }
        b.stop();
        known.forget(b);
        continue;
      }
      if (b.deleted) {
        continue;
      }
      BufferBackend.Claim claim = backend.claim(b.spec.name());
      boolean mine = claim != BufferBackend.Claim.LOST;
      if (claim == BufferBackend.Claim.TAKEN && owned(b)) {
        // Our own lease lapsed (a pause longer than it) and nobody took it: outcomes recorded
        // meanwhile were refused by the fence, so start again from the store.
        b.stop();
        log.warn("buffer {}: this node's delivery lease had lapsed; reloading the buffer from the store",
            b.spec.name());
      }
      if (mine && !owned(b)) {
        BufferBackend.Takeover t = backend.takeOver(b.spec.name(), clock.millis());
        if (t != null) {
          b.start(t);
          started = true;
          log.info("buffer {}: this node delivers it now ({} items to deliver{})", b.spec.name(), t.items().size(),
              t.reopened() > 0 ? ", " + t.reopened() + " attempts left open by the last deliverer re-sent, flagged"
                  + " as possible duplicates" : "");
          delivery.started(b);
          delivery.pump(b);
        }
      } else if (!mine && owned(b)) {
        b.stop();
        log.warn("buffer {}: this node lost its delivery lease (a pause or a partition longer than the lease);"
            + " another node delivers it now", b.spec.name());
      }
    }
    if (started) {
      wakeFollower();
    }
  }

  private static boolean owned(Buffer b) {
    synchronized (b) {
      return b.owned;
    }
  }

  private void wakeFollower() {
    lock.lock();
    try {
      delivering.signalAll();
    } finally {
      lock.unlock();
    }
  }

  /** Reads items pushed on any node from the streams of the buffers this node delivers. */
  private void follow() {
    while (!closed) {
      Map<String, Long> after = new LinkedHashMap<>();
      Map<String, Integer> epochs = new HashMap<>();
      lock.lock();
      try {
        for (Buffer b : known.all()) {
          synchronized (b) {
            if (b.owned && !b.deleted) {
              after.put(b.spec.name(), b.lastId);
              epochs.put(b.spec.name(), b.epoch);
            }
          }
        }
        if (after.isEmpty()) {
          // Delivering nothing: sleep until a round takes a buffer over (it signals under this
          // lock, after the takeover, so the wake-up cannot fall between the look and the wait).
          delivering.await();
          continue;
        }
      } catch (InterruptedException e) {
        return;
      } finally {
        lock.unlock();
      }
      reads.incrementAndGet();
      try {
        for (var e : backend.follow(after, FOLLOW_BLOCK_MILLIS).entrySet()) {
          Buffer b = known.get(e.getKey());
          if (b == null) {
            continue;
          }
          synchronized (b) {
            if (b.epoch != epochs.get(e.getKey()) || !b.owned) {
              continue; // taken over again meanwhile: the takeover read the store afresh
            }
            for (BufferBackend.OpenItem o : e.getValue()) {
              if (o.id() > b.lastId) {
                b.open.put(o.id(), new Buffer.Item(o.id(), o.key(), o.created(), o.nextAt()));
                b.lastId = o.id();
              }
            }
          }
          delivery.pump(b);
        }
      } catch (RuntimeException e) {
        if (closed) {
          return;
        }
        log.warn("buffers: reading new items from the shared store failed ({}); retrying", e.getMessage());
        try {
          Thread.sleep(1000);
        } catch (InterruptedException ie) {
          return;
        }
      }
    }
  }

  /** Reads of the streams since start. */
  long reads() {
    return reads.get();
  }

  /** Stops the rounds and the follower; gives up this node's leases so another node takes over at once. */
  @Override
  public void close() {
    lock.lock();
    try {
      closed = true;
      if (next != null) {
        next.cancel();
      }
      delivering.signalAll();
    } finally {
      lock.unlock();
    }
    Threads.stop(sync);
    for (Buffer b : known.all()) {
      if (owned(b)) {
        try {
          backend.disown(b.spec.name()); // a clean stop: another node takes over at once
        } catch (RuntimeException e) {
          // the lease lapses on its own
        }
      }
    }
    Threads.stop(follower);
  }
}
