package dev.sluice.buffers;

import io.micrometer.core.instrument.Meter;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * One buffer as this node holds it: its spec and, while this node delivers it, its unfinished
 * items in id order. Every field but the spec is guarded by the buffer's own monitor.
 */
final class Buffer {

  /** An unfinished item, as delivery needs it. */
  static final class Item {
    final long id;
    final String key;
    final long created;
    long nextAt;
    int retries;
    boolean running;

    Item(long id, String key, long created, long nextAt) {
      this.id = id;
      this.key = key;
      this.created = created;
      this.nextAt = nextAt;
    }
  }

  final BufferSpec spec;
  final TreeMap<Long, Item> open = new TreeMap<>();
  final Throughput throughput = new Throughput();
  final List<Meter> meters = new ArrayList<>();
  /** openai-batch: a batch is being prepared (one at a time); its open batches, number to provider id. */
  boolean preparing;
  final java.util.Map<Long, String> batches = new java.util.HashMap<>();
  /** openai-batch: this node's batches not yet ended, number to stage and item count (the gauges). */
  private final java.util.Map<Long, Travel> travelling = new java.util.HashMap<>();

  /** Where a batch is and how many items it holds. */
  private record Travel(String stage, int items) {}
  int running;
  /** This node delivers it: always alone; in shared mode while it holds the lease. */
  boolean owned;
  /** Bumped when ownership changes: outcomes of an earlier ownership leave local state alone. */
  int epoch;
  /** Shared mode: the last item id read from the stream. */
  long lastId;
  /** When this node learned of it (clock nanos). */
  final long learned;
  /** When this node last paused or resumed it (clock nanos), so a stale sync cannot undo it. */
  long pausedChanged;
  long delivered;
  boolean paused;
  boolean deleted;
  /** The timer armed for the earliest retry not yet due, and when it fires (clock millis). */
  BufferClock.Timer timer;
  long timerAt = Long.MAX_VALUE;
  boolean warnedMissingResource;
  /** Overflow: a check runs; another was asked for meanwhile; the missing target was reported. */
  boolean overflowChecking;
  boolean overflowAgain;
  volatile boolean warnedOverflow;
  /** The clean-up armed for when the oldest finished item's retention passes, and when (clock millis). */
  BufferClock.Timer expiry;
  long expiryAt = Long.MAX_VALUE;

  Buffer(BufferSpec spec, boolean paused, long learnedNanos) {
    this.spec = spec;
    this.paused = paused;
    this.learned = learnedNanos;
    this.pausedChanged = learnedNanos - TimeUnit.DAYS.toNanos(1);
  }

  /** True while a delivery begun in {@code epoch} still counts: the node has not lost the buffer since. */
  synchronized boolean current(int epoch) {
    return this.epoch == epoch && !deleted;
  }

  /** Makes this node the buffer's deliverer with the store's unfinished items. */
  synchronized void start(BufferBackend.Takeover t) {
    epoch++;
    open.clear();
    running = 0;
    preparing = false;
    batches.clear();
    travelling.clear();
    for (BufferBackend.OpenItem o : t.items()) {
      Item it = new Item(o.id(), o.key(), o.created(), o.nextAt());
      it.retries = o.retries();
      open.put(it.id, it);
    }
    lastId = t.lastId();
    owned = true;
  }

  /** Shared mode: this node no longer delivers the buffer; attempts in flight are let go. */
  synchronized void stop() {
    epoch++;
    owned = false;
    open.clear();
    running = 0;
    batches.clear();
    travelling.clear();
    cancelTimers();
  }

  /** Calls off the retry timer and the clean-up. */
  synchronized void cancelTimers() {
    if (timer != null) {
      timer.cancel();
      timer = null;
      timerAt = Long.MAX_VALUE;
    }
    if (expiry != null) {
      expiry.cancel();
      expiry = null;
      expiryAt = Long.MAX_VALUE;
    }
  }

  /** openai-batch: batch {@code seq} reached {@code stage} holding {@code items} items. */
  synchronized void batchAt(long seq, String stage, int items) {
    travelling.put(seq, new Travel(stage, items));
  }

  synchronized void batchEnded(long seq) {
    travelling.remove(seq);
  }

  /** This node's batches of the buffer at {@code stage}. */
  synchronized double batchesAt(String stage) {
    return travelling.values().stream().filter(t -> t.stage.equals(stage)).count();
  }

  /** Items in this node's batches of the buffer. */
  synchronized double itemsInBatches() {
    return travelling.values().stream().mapToInt(Travel::items).sum();
  }

  synchronized double oldestAgeSeconds(long now) {
    for (Item i : open.values()) {
      if (!i.running) {
        return Math.max(0, now - i.created) / 1000.0;
      }
    }
    return 0;
  }

  /** This node's share: zero where another node delivers it (sum the series over nodes). */
  synchronized double count(boolean inFlight) {
    return inFlight ? running : open.size() - running;
  }

  /** Deliveries per second over the last 10 whole seconds. */
  static final class Throughput {
    private final long[] counts = new long[16];
    private final long[] seconds = new long[16];

    void add(long nowMillis) {
      long s = nowMillis / 1000;
      int i = (int) (s % 16);
      if (seconds[i] != s) {
        seconds[i] = s;
        counts[i] = 0;
      }
      counts[i]++;
    }

    double perSecond(long nowMillis) {
      long s = nowMillis / 1000;
      long n = 0;
      for (long k = s - 10; k < s; k++) {
        int i = (int) (k % 16);
        if (seconds[i] == k) {
          n += counts[i];
        }
      }
      return n / 10.0;
    }
  }
}
