package dev.sluice.buffers;

import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;
import java.util.function.BiFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Overflow of an http buffer into an openai-batch buffer ({@link BufferSpec.Overflow}): items
 * whose estimated wait at the buffer's quota passes {@code whenWaitExceeds} move to the batch
 * buffer instead of waiting.
 *
 * <p>The estimate: the first item in line waits what the coordinator estimates for one request
 * acquired now (the queue of live workers on the same resource included), and each item behind
 * it one more request's share of the rate ({@link BufferPermits#waitEstimate}). So the first
 * {@code (threshold - first) / perItem + 1} items stay; the ones behind them move.
 *
 * <p>A check runs when the buffer is pumped (a push, an outcome, a takeover), one at a time per
 * buffer: a pump during a check asks for one more after it. Moving takes the items out of the
 * buffer's line in memory first, so delivery cannot start them meanwhile; then pushes them to
 * the batch buffer with the idempotency key {@code overflow:NAME:ID} and marks them {@code moved}
 * with their new id. A crash between the two leaves the item pending here and stored there: the
 * next check moves it again and the key makes that the same item there (if by then it no longer
 * waits too long, it is delivered live as well: at least once, as every delivery).
 */
final class Overflow {

  private static final Logger log = LoggerFactory.getLogger(Overflow.class);
  /** Items moved per round at most: one push, one store write. */
  private static final int MAX_MOVE = 2_000;

  private final BufferPermits permits;
  private final BufferBackend backend;
  private final BufferClock clock;
  private final Known known;
  private final BiFunction<String, List<NewItem>, CompletableFuture<List<Long>>> push;
  /** Where bodies are read and pushed: off the store's and the engine's callback threads. */
  private final ExecutorService work = Threads.pool("sluice-buffer-overflow", 1);

  Overflow(BufferPermits permits, BufferBackend backend, BufferClock clock, Known known,
      BiFunction<String, List<NewItem>, CompletableFuture<List<Long>>> push) {
    this.permits = permits;
    this.backend = backend;
    this.clock = clock;
    this.known = known;
    this.push = push;
  }

  /** Moves the items of {@code b} that would wait too long, if it overflows; at most one check at a time. */
  void check(Buffer b) {
    if (b.spec.overflow() == null) {
      return;
    }
    synchronized (b) {
      if (!b.owned || b.paused || b.deleted) {
        return;
      }
      if (b.overflowChecking) {
        b.overflowAgain = true;
        return;
      }
      b.overflowChecking = true;
      b.overflowAgain = false;
    }
    permits.waitEstimate(b.spec.pacingResource()).whenComplete((wait, error) -> {
      try {
        work.execute(() -> {
          try {
            decide(b, wait, error);
          } catch (RuntimeException e) {
            log.error("buffer {}: an overflow check failed unexpectedly", b.spec.name(), e);
            done(b);
          }
        });
      } catch (RejectedExecutionException e) {
        // closing
      }
    });
  }

  private void done(Buffer b) {
    boolean again;
    synchronized (b) {
      b.overflowChecking = false;
      again = b.overflowAgain;
      b.overflowAgain = false;
    }
    if (again) {
      check(b);
    }
  }

  private void decide(Buffer b, BufferPermits.Wait wait, Throwable error) {
    if (error != null) {
      log.debug("buffer {}: no wait estimate on {} ({}); items stay", b.spec.name(), b.spec.pacingResource(),
          Delivery.cause(error).getMessage());
      done(b);
      return;
    }
    long keep = kept(wait, b.spec.overflow().whenWaitExceeds().toNanos());
    List<Buffer.Item> take = new ArrayList<>();
    int epoch;
    synchronized (b) {
      epoch = b.epoch;
      long position = 0;
      for (Buffer.Item i : b.open.values()) {
        if (position++ < keep || i.running) {
          continue;
        }
        take.add(i);
        if (take.size() == MAX_MOVE) {
          break;
        }
      }
      for (Buffer.Item i : take) {
        b.open.remove(i.id); // out of line: delivery cannot start it while it moves
      }
    }
    if (take.isEmpty()) {
      done(b);
      return;
    }
    move(b, epoch, take);
  }

  /** How many items from the head of the line wait no longer than {@code threshold} nanoseconds. */
  static long kept(BufferPermits.Wait wait, long threshold) {
    if (wait.firstNanos() < 0 || wait.firstNanos() > threshold) {
      return 0; // paused until resumed, or already the first waits too long
    }
    if (wait.perItemNanos() <= 0) {
      return Long.MAX_VALUE;
    }
    return (threshold - wait.firstNanos()) / wait.perItemNanos() + 1;
  }

  private void move(Buffer b, int epoch, List<Buffer.Item> take) {
    String name = b.spec.name();
    String to = b.spec.overflow().to();
    Buffer target = known.get(to);
    if (target == null || target.spec.batch() == null || target.deleted) {
      if (!b.warnedOverflow) {
        b.warnedOverflow = true;
        log.warn("buffer {}: its overflow buffer '{}' is {}; items wait here instead (create it again with `sluice"
            + " buffer create {} --delivery openai-batch ...`)", name, to, target == null ? "gone" : "not an"
            + " openai-batch buffer", to);
      }
      putBack(b, epoch, take);
      done(b);
      return;
    }
    List<Long> ids = take.stream().map(i -> i.id).toList();
    Map<Long, byte[]> bodies = backend.bodies(name, ids);
    List<Long> order = new ArrayList<>();
    List<NewItem> items = new ArrayList<>();
    for (long id : ids) {
      byte[] body = bodies.get(id);
      if (body != null) {
        order.add(id);
        items.add(new NewItem(body, "application/json", Map.of(), "overflow:" + name + ":" + id, null));
      }
    }
    if (items.isEmpty()) {
      done(b);
      return;
    }
    push.apply(to, items).thenCompose(newIds -> {
      long now = clock.millis();
      Map<Long, String> lines = new LinkedHashMap<>();
      for (int i = 0; i < order.size(); i++) {
        lines.put(order.get(i), Instant.ofEpochMilli(now) + " moved to openai-batch buffer " + to + " as item "
            + newIds.get(i) + ": its estimated wait here passed " + b.spec.overflow().whenWaitExceeds() + "\n");
      }
      return backend.moved(name, lines, now);
    }).whenComplete((x, error) -> {
      if (error != null) {
        log.warn("buffer {}: moving {} items to {} failed ({}); they wait here and are tried again at the next check",
            name, items.size(), to, Delivery.cause(error).getMessage());
        putBack(b, epoch, take);
      } else {
        b.warnedOverflow = false;
        known.moved(b, items.size());
        log.debug("buffer {}: {} items moved to {}", name, items.size(), to);
      }
      done(b);
    });
  }

  /** Items that did not move after all: back in line (unless the buffer went elsewhere meanwhile). */
  private static void putBack(Buffer b, int epoch, List<Buffer.Item> take) {
    synchronized (b) {
      if (b.epoch == epoch && !b.deleted) {
        for (Buffer.Item i : take) {
          b.open.putIfAbsent(i.id, i);
        }
      }
    }
  }

  void close() {
    Threads.stop(work);
  }
}
