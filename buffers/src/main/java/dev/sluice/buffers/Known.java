package dev.sluice.buffers;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import java.io.IOException;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The buffers this node knows, by name, each with its meters: every buffer of its own store, or
 * on a shared store those read from it so far.
 */
final class Known {

  private static final Logger log = LoggerFactory.getLogger(Known.class);

  private final Map<String, Buffer> byName = new ConcurrentHashMap<>();
  private final MeterRegistry registry;
  private final BufferClock clock;
  private final BufferSyntax syntax;

  Known(MeterRegistry registry, BufferClock clock, BufferSyntax syntax) {
    this.registry = registry;
    this.clock = clock;
    this.syntax = syntax;
  }

  Buffer get(String name) {
    return byName.get(name);
  }

  Collection<Buffer> all() {
    return byName.values();
  }

  List<String> names() {
    return byName.keySet().stream().sorted().toList();
  }

  /** Adds a buffer made here; false (nothing added) when one of that name is known. */
  boolean add(Buffer b) {
    if (byName.putIfAbsent(b.spec.name(), b) != null) {
      return false;
    }
    meter(b);
    return true;
  }

  /**
   * The buffer a stored row describes: the one known by that name, or one read from the row and
   * added; null when the row cannot be read (logged).
   */
  Buffer learn(BufferBackend.StoredBuffer row) {
    Buffer b = byName.get(row.name());
    if (b != null) {
      return b;
    }
    Buffer made;
    try {
      made = new Buffer(BufferSpec.parse(BufferSpec.JSON.readTree(row.spec()), syntax), row.paused(), clock.nanos());
    } catch (IOException | RuntimeException e) {
      log.error("buffer {} in the store cannot be read ({}): left out", row.name(), e.getMessage());
      return null;
    }
    return add(made) ? made : byName.get(row.name());
  }

  /** Forgets a buffer (deleted here or elsewhere) and removes its meters. */
  void forget(Buffer b) {
    if (byName.remove(b.spec.name(), b)) {
      for (Meter m : b.meters) {
        registry.remove(m);
      }
      for (String outcome : List.of("delivered", "throttled", "retried", "failed")) {
        registry.find("sluice.buffer.attempts").tags("buffer", b.spec.name(), "outcome", outcome).meters()
            .forEach(registry::remove);
      }
    }
  }

  /** How an openai-batch batch can end at the provider: the values of {@code status} on its counter. */
  static final List<String> BATCH_ENDS = List.of("completed", "expired", "cancelled", "failed");
  /** Where an openai-batch batch can be: the values of {@code stage} on its gauge. */
  static final List<String> BATCH_STAGES = List.of("preparing", "uploaded", "created");

  /** Counts items moved to the buffer's overflow buffer. */
  void moved(Buffer b, int n) {
    registry.counter("sluice.buffer.moved", "buffer", b.spec.name()).increment(n);
  }

  /** Counts a batch the provider ended: completed, expired, cancelled or failed. */
  void batchEnded(Buffer b, String status) {
    if (BATCH_ENDS.contains(status)) {
      registry.counter("sluice.buffer.batches.ended", "buffer", b.spec.name(), "status", status).increment();
    }
  }

  /** Counts one attempt's outcome: delivered, throttled, retried or failed. */
  void counted(Buffer b, String outcome) {
    registry.counter("sluice.buffer.attempts", "buffer", b.spec.name(), "outcome", outcome).increment();
    if (outcome.equals("delivered")) {
      registry.counter("sluice.buffer.delivered", "buffer", b.spec.name()).increment();
    }
  }

  private void meter(Buffer b) {
    Tags t = Tags.of("buffer", b.spec.name());
    b.meters.add(Gauge.builder("sluice.buffer.items", b, x -> x.count(false)).tags(t.and("state", "pending"))
        .description("Items of the buffer by state").register(registry));
    b.meters.add(Gauge.builder("sluice.buffer.items", b, x -> x.count(true)).tags(t.and("state", "running"))
        .register(registry));
    b.meters.add(Gauge.builder("sluice.buffer.oldest.pending.age", b, x -> x.oldestAgeSeconds(clock.millis()))
        .tags(t).baseUnit("seconds").description("Age of the oldest item not yet delivered").register(registry));
    b.meters.add(Counter.builder("sluice.buffer.delivered").tags(t).description("Items delivered (2xx)")
        .register(registry));
    if (b.spec.overflow() != null) {
      b.meters.add(Counter.builder("sluice.buffer.moved").tags(t)
          .description("Items moved to the overflow (openai-batch) buffer: their wait here passed the threshold")
          .register(registry));
    }
    if (b.spec.batch() != null) {
      // Bounded: three stages and four ends per batch buffer, whatever the number of batches.
      for (String stage : BATCH_STAGES) {
        b.meters.add(Gauge.builder("sluice.buffer.batches", b, x -> x.batchesAt(stage)).tags(t.and("stage", stage))
            .description("openai-batch batches this node moves along, by stage (created: at the provider)")
            .register(registry));
      }
      b.meters.add(Gauge.builder("sluice.buffer.batch.items", b, Buffer::itemsInBatches).tags(t)
          .description("Items in this node's openai-batch batches not yet ended").register(registry));
      for (String status : BATCH_ENDS) {
        b.meters.add(Counter.builder("sluice.buffer.batches.ended").tags(t.and("status", status))
            .description("openai-batch batches the provider ended, by status").register(registry));
      }
    }
  }
}
