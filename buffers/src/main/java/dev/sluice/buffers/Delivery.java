package dev.sluice.buffers;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Delivery scheduling: which items of a buffer may go now, their permits, the durable record of
 * each attempt and its outcome, and the clean-up of finished items after their retention.
 *
 * <p>Nothing here polls. A buffer is pumped when something happens to it (a push, an outcome, a
 * resume, a takeover) or when the one timer armed for its earliest retry fires; with nothing due
 * no timer is armed, so an idle buffer costs no wake-up at all. A waiting delivery is a permit
 * request to the engine, never a parked thread. With {@code inFlight = 1} only the oldest
 * unfinished item may be sent (strict order: a failing item holds its place); with N, up to N at
 * once, one per order key.
 *
 * <p>At-least-once: an attempt is recorded durably before its request leaves, and its outcome is
 * queued before the next item's attempt, so after a crash the store never shows item k+1 sent
 * and item k unfinished.
 */
final class Delivery {

  private static final Logger log = LoggerFactory.getLogger(Delivery.class);
  private static final Duration ACQUIRE_TIMEOUT = Duration.ofSeconds(60);
  /** How long a buffer whose resource cannot be acquired waits before asking again. */
  private static final long ACQUIRE_RETRY_MILLIS = 5_000;
  /** Clean-ups of one buffer's finished items are at least this far apart. */
  private static final long EXPIRE_MIN_GAP_MILLIS = 60_000;

  private final BufferPermits permits;
  private final BufferBackend backend;
  private final Dispatch dispatch;
  private final BufferClock clock;
  private final Known known;
  /** openai-batch buffers: delivered as batches, not item by item. */
  private final BatchDelivery batches;
  /** Times a buffer's retry timer fired: what an idle buffer set must not do. */
  private final AtomicLong wakeups = new AtomicLong();
  private volatile boolean closed;

  /** Moves items that would wait too long to their overflow buffer. */
  private final Overflow overflow;

  Delivery(BufferPermits permits, BufferBackend backend, Dispatch dispatch, BufferClock clock, Known known,
      Overflow overflow) {
    this.overflow = overflow;
    this.permits = permits;
    this.backend = backend;
    this.dispatch = dispatch;
    this.clock = clock;
    this.known = known;
    this.batches = new BatchDelivery(permits, backend, dispatch, clock, known);
    batches.onFinished((b, now) -> expireAt(b, now + b.spec.retention().toMillis() + 1));
  }

  /** The sender of openai-batch buffers. */
  BatchDelivery batches() {
    return batches;
  }

  /** Starts every delivery the buffer's order and in-flight cap allow now; arms a timer for later ones. */
  void pump(Buffer b) {
    if (b.spec.batch() != null) {
      batches.pump(b);
      return;
    }
    overflow.check(b);
    List<Buffer.Item> start = new ArrayList<>();
    int epoch;
    synchronized (b) {
      if (b.paused || b.deleted || closed || !b.owned) {
        return;
      }
      long now = clock.millis();
      long earliest = Long.MAX_VALUE;
      Set<String> taken = new HashSet<>();
      int scanned = 0;
      for (Iterator<Buffer.Item> it = b.open.values().iterator(); it.hasNext() && b.running < b.spec.inFlight(); ) {
        Buffer.Item i = it.next();
        if (++scanned > 10_000) {
          break;
        }
        // One key per in-flight slot: with inFlight 1 every item shares one key (strict order).
        String key = b.spec.inFlight() == 1 ? "" : i.key != null ? i.key : "#" + i.id;
        if (!taken.add(key) || i.running) {
          continue;
        }
        if (i.nextAt > now) {
          earliest = Math.min(earliest, i.nextAt);
          continue;
        }
        i.running = true;
        b.running++;
        start.add(i);
      }
      if (earliest != Long.MAX_VALUE && earliest < b.timerAt) {
        if (b.timer != null) {
          b.timer.cancel();
        }
        b.timerAt = earliest;
        b.timer = clock.schedule(() -> wake(b), Math.max(1, earliest - now));
      }
      epoch = b.epoch;
    }
    for (Buffer.Item i : start) {
      acquire(b, i, epoch);
    }
  }

  private void wake(Buffer b) {
    wakeups.incrementAndGet();
    synchronized (b) {
      b.timerAt = Long.MAX_VALUE;
      b.timer = null;
    }
    pump(b);
  }

  /** Times a retry timer fired since start. */
  long wakeups() {
    return wakeups.get();
  }

  private void acquire(Buffer b, Buffer.Item i, int epoch) {
    if (closed || !b.current(epoch)) {
      return;
    }
    String resource = b.spec.pacingResource();
    // Unique per acquire, and within the engine's 64 characters whatever the buffer's name.
    String requestId = "buffer-" + i.id + "-"
        + Long.toString(ThreadLocalRandom.current().nextLong(Long.MAX_VALUE), 36);
    permits.acquire(resource, ACQUIRE_TIMEOUT, requestId).whenComplete((permit, error) -> {
      if (error == null && permit.isPresent()) {
        if (!b.current(epoch)) {
          permits.release(resource, permit.get(), true);
          return;
        }
        attempt(b, i, permit.get(), epoch);
        return;
      }
      if (closed || !b.current(epoch)) {
        return;
      }
      if (error == null) {
        acquire(b, i, epoch); // not granted within the timeout (a long pause): ask again
        return;
      }
      if (!b.warnedMissingResource) {
        b.warnedMissingResource = true;
        log.warn("buffer {} cannot acquire on {}: {}; retrying every 5 s", b.spec.name(), resource,
            cause(error).getMessage());
      }
      clock.schedule(() -> acquire(b, i, epoch), ACQUIRE_RETRY_MILLIS);
    });
  }

  /** Records the attempt durably, sends it, then records the outcome. */
  private void attempt(Buffer b, Buffer.Item i, String permit, int epoch) {
    String name = b.spec.name();
    String resource = b.spec.pacingResource();
    long started = clock.millis();
    backend.startAttempt(name, i.id).whenComplete((send, error) -> {
      if (error != null || send == null || !b.current(epoch) || closed) {
        permits.release(resource, permit, true);
        if (closed) {
          return;
        }
        if (error != null) {
          log.warn("buffer {} item {}: recording the attempt failed: {}", name, i.id, error.getMessage());
          finishLater(b, i, epoch);
        } else if (send == null) {
          // Gone (the buffer was deleted) or, shared, this node lost the lease: the sync lets it go.
          synchronized (b) {
            if (b.epoch == epoch && b.open.remove(i.id) != null) {
              b.running--;
            }
          }
        }
        return;
      }
      dispatch.send(b.spec, send).whenComplete((outcome, failure) -> {
        if (failure != null || closed) {
          // Closing: the attempt stays open in the store, so it is sent again (flagged) after the restart.
          permits.release(resource, permit, true);
          return;
        }
        permits.release(resource, permit, !outcome.sent());
        recordQuietly(b, i, send.attempt(), started, outcome, epoch);
      });
    });
  }

  /** {@link #record} from a callback, where an exception would vanish and leave the item running. */
  private void recordQuietly(Buffer b, Buffer.Item i, int attempt, long started, Outcome o, int epoch) {
    try {
      record(b, i, attempt, started, o, epoch);
    } catch (RuntimeException e) {
      log.error("buffer {} item {}: recording attempt {} failed ({}); trying it again in a second", b.spec.name(),
          i.id, attempt, e.toString());
      finishLater(b, i, epoch);
    }
  }

  private void finishLater(Buffer b, Buffer.Item i, int epoch) {
    synchronized (b) {
      if (b.epoch != epoch) {
        return;
      }
      i.running = false;
      b.running--;
      i.nextAt = clock.millis() + 1000;
    }
    pump(b);
  }

  /**
   * Applies what an attempt came to in memory and lets the next delivery start at once, and
   * queues the durable record. The record is committed before (or with) any later write of this
   * buffer, in particular the next item's attempt.
   */
  private void record(Buffer b, Buffer.Item i, int attempt, long started, Outcome o, int epoch) {
    long now = clock.millis();
    String name = b.spec.name();
    Outcome.Verdict v;
    synchronized (b) {
      v = o.judge(b.spec, i.retries, now, ThreadLocalRandom.current()::nextDouble);
      if (b.epoch == epoch) {
        i.retries = v.retries();
        i.running = false;
        b.running--;
        if (v.pending()) {
          i.nextAt = v.nextAt();
        } else {
          b.open.remove(i.id);
        }
      }
      if (v.state().equals("completed")) {
        b.delivered++;
        b.throughput.add(now);
      }
      known.counted(b, v.verdict());
    }
    if (o.status() == 429) {
      // Upstream feedback, as a worker's report: the shared resource pauses for everyone.
      permits.throttled(b.spec.pacingResource(), Duration.ofMillis(o.retryAfterMillis()))
          .whenComplete((paused, error) -> {
            if (error != null) {
              log.debug("buffer {}: reporting the 429 failed: {}", name, cause(error).getMessage());
            }
          });
    }
    String line = Instant.ofEpochMilli(now) + " attempt " + attempt + ": "
        + (o.error() != null ? o.error() : "HTTP " + o.status()) + " after " + (now - started) + " ms" + v.note()
        + "\n";
    if (o.error() != null) {
      log.warn("buffer {} item {} attempt {}: {}{}", name, i.id, attempt, o.error(), v.note());
    }
    boolean finished = !v.pending();
    backend.finishAttempt(name, i.id, new BufferBackend.Result(v.state(), v.retries(), v.nextAt(), o.status(),
        o.excerpt(), line, finished ? now : 0)).whenComplete((r, error) -> {
          if (error != null && !closed) {
            log.error("buffer {} item {}: recording the outcome failed ({}); it may be sent again after a restart",
                name, i.id, error.getMessage());
          }
        });
    if (finished) {
      expireAt(b, now + b.spec.retention().toMillis() + 1); // kept while not older than its retention
    }
    pump(b);
  }

  // ---------------------------------------------------------------------------------------
  // Retention: each buffer's clean-up is armed for when its oldest finished item's retention
  // passes, and not at all while it holds no finished item.

  /** This node starts delivering {@code b} (load or takeover): finished items of before may be due. */
  void started(Buffer b) {
    expireAt(b, clock.millis() + 1000);
    if (b.spec.batch() != null) {
      batches.started(b);
    }
  }

  /** Arms the buffer's clean-up for {@code at} (clock millis), unless it is armed for earlier. */
  private void expireAt(Buffer b, long at) {
    synchronized (b) {
      if (closed || b.deleted || !b.owned || at >= b.expiryAt) {
        return;
      }
      if (b.expiry != null) {
        b.expiry.cancel();
      }
      b.expiryAt = at;
      b.expiry = clock.schedule(() -> expire(b), Math.max(1, at - clock.millis()));
    }
  }

  /** Drops the buffer's completed and failed items older than its retention; arms the next clean-up. */
  private void expire(Buffer b) {
    synchronized (b) {
      b.expiry = null;
      b.expiryAt = Long.MAX_VALUE;
      if (closed || b.deleted || !b.owned) {
        return; // the deliverer expires, once for every node
      }
    }
    long now = clock.millis();
    long retention = b.spec.retention().toMillis();
    try {
      backend.expire(b.spec.name(), now - retention);
      long oldest = backend.oldestFinished(b.spec.name());
      if (oldest > 0) {
        expireAt(b, Math.max(oldest + retention + 1, now + EXPIRE_MIN_GAP_MILLIS));
      }
    } catch (RuntimeException e) {
      log.warn("buffer {}: removing items past their retention failed: {}", b.spec.name(), e.getMessage());
      expireAt(b, now + EXPIRE_MIN_GAP_MILLIS);
    }
  }

  /** Stops starting deliveries; attempts in flight are abandoned (sent again, flagged, after a restart). */
  void close() {
    closed = true;
    batches.close();
    overflow.close();
  }

  boolean closed() {
    return closed;
  }

  /** What a future failed with, without the wrappers a completion on another thread adds. */
  static Throwable cause(Throwable t) {
    while ((t instanceof java.util.concurrent.CompletionException
            || t instanceof java.util.concurrent.ExecutionException)
        && t.getCause() != null) {
      t = t.getCause();
    }
    return t;
  }
}
