package dev.sluice.buffers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Buffers: durable queues in front of one endpoint each, delivered at the pace of a Sluice
 * resource (docs/buffers.md). This is the admin and push surface; the work is done by {@link
 * NewItem} and {@link BufferSpec} (what a request says), {@link Delivery} (what goes when),
 * {@link Dispatch} and {@link Outcome} (sending, and what an answer means), {@link Ownership}
 * (which node delivers a shared buffer) and a {@link BufferBackend} (the records).
 *
 * <p>Delivery acquires from the coordinator's engine ({@link BufferPermits}), in the default
 * lane, so a buffer and workers share one quota in FIFO order.
 *
 * <p>At-least-once: an attempt is recorded durably before its request leaves. An item whose
 * attempt was open when the coordinator died is sent again after the restart and flagged as a
 * possible duplicate in its history; every request carries the item's {@code Idempotency-Key}.
 */
public final class Buffers implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(Buffers.class);
  /** History line of an attempt found open when delivery (re)starts. */
  static final String REOPENED = "restart: the last attempt was open when the coordinator stopped and may have"
      + " reached the endpoint; sending again (possible duplicate)";

  private final BufferPermits permits;
  private final BufferSyntax syntax;
  private final BufferBackend backend;
  private final BufferClock clock;
  /** The clock's timer thread when the buffers brought their own clock; stopped with them. */
  private final SystemClock ownClock;
  private final TargetPolicy targets;
  private final Known known;
  private final Dispatch dispatch;
  private final Delivery delivery;
  /** Shared mode only. */
  private final Ownership ownership;
  private volatile boolean closed;

  /**
   * Starts building buffers on the coordinator's engine and rules.
   *
   * @param permits the engine's permits, which pace delivery
   * @param syntax the coordinator's resource names and duration syntax, which specs follow
   */
  public static Builder builder(BufferPermits permits, BufferSyntax syntax) {
    return new Builder(permits, syntax);
  }

  /** Where the buffers live, and what they run on. One of {@link #sqlite} and {@link #shared} is required. */
  public static final class Builder {
    private final BufferPermits permits;
    private final BufferSyntax syntax;
    private MeterRegistry registry;
    private BufferClock clock;
    private TargetPolicy targets;
    private Path file;
    private boolean fsyncEveryCommit;
    private SharedRedis redis;
    private Duration lease;
    private BufferBackend backend;

    private Builder(BufferPermits permits, BufferSyntax syntax) {
      this.permits = Objects.requireNonNull(permits, "permits");
      this.syntax = Objects.requireNonNull(syntax, "syntax");
    }

    /** Where the {@code sluice.buffer.*} meters go. Default: a registry of their own, read by no one. */
    public Builder registry(MeterRegistry registry) {
      once(this.registry, "registry");
      this.registry = Objects.requireNonNull(registry, "registry");
      return this;
    }

    /**
     * All time: item schedules, histories, retention, sync rounds. Default: the system clock,
     * with a timer thread of its own.
     */
    public Builder clock(BufferClock clock) {
      once(this.clock, "clock");
      this.clock = Objects.requireNonNull(clock, "clock");
      return this;
    }

    /**
     * Where buffers may deliver, checked at create and before every attempt. Default: {@link
     * TargetPolicy#defaults()}.
     */
    public Builder targets(TargetPolicy targets) {
      once(this.targets, "targets");
      this.targets = Objects.requireNonNull(targets, "targets");
      return this;
    }

    /**
     * Buffers of this coordinator alone, in the SQLite database {@code file} (created if missing;
     * give it its permissions first, its {@code -wal} and {@code -shm} files take its mode).
     *
     * @param fsyncEveryCommit synchronous=FULL (power-loss safe) rather than NORMAL (crash safe)
     */
    public Builder sqlite(Path file, boolean fsyncEveryCommit) {
      store();
      this.file = Objects.requireNonNull(file, "file");
      this.fsyncEveryCommit = fsyncEveryCommit;
      return this;
    }

    /**
     * Buffers on the Redis every node shares: any node accepts pushes and answers reads; one at a
     * time delivers each buffer, holding a lease of {@code lease} renewed every second.
     */
    public Builder shared(SharedRedis redis, Duration lease) {
      store();
      if (lease.compareTo(Duration.ofSeconds(2)) < 0) {
        throw new IllegalArgumentException("a buffer lease of " + lease + " is shorter than two sync rounds (1 s"
            + " each): give at least 2s");
      }
      this.redis = Objects.requireNonNull(redis, "redis");
      this.lease = lease;
      return this;
    }

    /** Tests: a backend of their own. */
    Builder backend(BufferBackend backend) {
      store();
      this.backend = Objects.requireNonNull(backend, "backend");
      return this;
    }

    private void store() {
      if (file != null || redis != null || backend != null) {
        throw new IllegalStateException("the buffers' store is set already: call sqlite() or shared() once");
      }
    }

    private static void once(Object current, String what) {
      if (current != null) {
        throw new IllegalStateException("the buffers' " + what + " is set already: set it once");
      }
    }

    /**
     * Opens the store and resumes every buffer's delivery.
     *
     * @throws IOException when the SQLite file cannot be opened (the message names it and the fix)
     */
    public Buffers open() throws IOException {
      if (file == null && redis == null && backend == null) {
        throw new IllegalStateException("say where the buffers live: sqlite(file, fsync) or shared(redis, lease)");
      }
      return new Buffers(this, backend != null ? backend
          : file != null ? new SqliteBackend(file, fsyncEveryCommit) : new RedisBackend(redis, lease));
    }
  }

  private Buffers(Builder b, BufferBackend backend) {
    this.permits = b.permits;
    this.syntax = b.syntax;
    this.backend = backend;
    this.ownClock = b.clock == null ? new SystemClock() : null;
    this.clock = b.clock != null ? b.clock : ownClock;
    this.targets = b.targets != null ? b.targets : TargetPolicy.defaults();
    this.known = new Known(b.registry != null ? b.registry : new SimpleMeterRegistry(), clock, syntax);
    this.dispatch = new Dispatch(targets, clock);
    this.delivery = new Delivery(permits, backend, dispatch, clock, known,
        new Overflow(permits, backend, clock, known, this::push));
    this.ownership = backend.shared() ? new Ownership(backend, known, delivery, clock) : null;
    try {
      load();
      if (ownership != null) {
        ownership.start();
      }
    } catch (RuntimeException e) {
      close(); // the threads started so far end with the failed start
      throw e;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Admin

  /** Where buffers may deliver; the server adds its own ports once bound. */
  public TargetPolicy targets() {
    return targets;
  }

  /**
   * Creates a buffer; its pacing resource must exist (or an inline rate creates its own), and its
   * URL must lead where {@link TargetPolicy} allows. Blocks on the store: call it off any event loop.
   */
  public BufferSpec create(JsonNode body) {
    open();
    BufferSpec spec = BufferSpec.parse(body, syntax);
    targets.check(spec.url());
    if (spec.overflow() != null) {
      String to = spec.overflow().to();
      Buffer target = known.get(to);
      if (target == null && backend.shared()) {
        names(); // created on another node a moment ago
        target = known.get(to);
      }
      if (target == null) {
        throw BufferSpec.invalid("overflowTo '" + to + "': no such buffer: create it first (`sluice buffer create " + to
            + " --delivery openai-batch --url https://api.openai.com/v1 --endpoint /v1/chat/completions ...`)");
      }
      if (target.spec.batch() == null) {
        throw BufferSpec.invalid("overflowTo '" + to + "' delivers over http, one request per item: name an"
            + " openai-batch buffer (created with --delivery openai-batch)");
      }
    }
    if (spec.resource() != null && !await(permits.hasLimit(spec.resource()))) {
      throw BufferSpec.invalid("resource '" + spec.resource() + "' has no limit: create it first (`sluice limit set "
          + spec.resource() + " --rate requests=N/min`), or give the buffer its own rate");
    }
    synchronized (known) {
      if (known.get(spec.name()) != null) {
        throw BufferSpec.invalid("buffer '" + spec.name() + "' exists already: delete it first, or choose another"
            + " name");
      }
      if (spec.rate() != null) {
        long lease = Math.min(3600, Math.max(30, spec.timeout().toSeconds() + 10));
        await(permits.setRate(spec.pacingResource(), spec.rate(), Duration.ofSeconds(lease)));
      }
      if (!backend.create(spec.name(), spec.toStoredJson().toString(), clock.millis())) {
        throw BufferSpec.invalid("buffer '" + spec.name() + "' exists already (created on another node): delete it"
            + " first, or choose another name");
      }
      Buffer b = new Buffer(spec, false, clock.nanos());
      if (!backend.shared()) {
        b.owned = true;
      }
      known.add(b);
    }
    if (ownership != null) {
      ownership.syncSoon(); // claim it now rather than within the second
    }
    log.info("buffer {} created: {} {} paced by {}{}", spec.name(), spec.method(), spec.shownUrl(),
        spec.pacingResource(), (spec.batch() == null ? "" : ", delivered as openai-batch batches of "
            + spec.batch().endpoint()) + (spec.overflow() == null ? "" : ", overflowing to " + spec.overflow().to()
            + " when the wait passes " + spec.overflow().whenWaitExceeds()));
    return spec;
  }

  /** Waits for an engine answer: only admin calls do, which write the store synchronously anyway. */
  private static <T> T await(CompletableFuture<T> answer) {
    try {
      return answer.join();
    } catch (CompletionException e) {
      throw Delivery.cause(e) instanceof RuntimeException r ? r : e;
    }
  }

  public Optional<BufferSpec> get(String name) {
    Buffer b = known(name);
    return b == null ? Optional.empty() : Optional.of(b.spec);
  }

  /** Every buffer's name; shared, read from the store, so one created on another node a moment ago is listed. */
  public List<String> names() {
    if (backend.shared() && !closed) {
      List<String> names = new ArrayList<>();
      for (BufferBackend.StoredBuffer row : backend.buffers()) {
        if (known.learn(row) != null) {
          names.add(row.name());
        }
      }
      return names;
    }
    return known.names();
  }

  /** Deletes a buffer with its items; an inline rate's resource goes too. */
  public void delete(String name) {
    Buffer b = buffer(name);
    synchronized (b) {
      b.deleted = true;
    }
    b.cancelTimers();
    if (b.spec.batch() != null) {
      delivery.batches().cancelAll(b);
    }
    known.forget(b);
    backend.delete(name);
    if (b.spec.rate() != null) {
      try {
        await(permits.deleteLimit(b.spec.pacingResource()));
      } catch (RuntimeException e) {
        log.warn("buffer {}: its own rate's limit {} could not be deleted ({}); delete it with `sluice limit delete`",
            name, b.spec.pacingResource(), e.getMessage());
      }
    }
    log.info("buffer {} deleted", name);
  }

  public void pause(String name) {
    setPaused(buffer(name), true);
    log.info("buffer {} paused", name);
  }

  public void resume(String name) {
    Buffer b = buffer(name);
    setPaused(b, false);
    log.info("buffer {} resumed", name);
    delivery.pump(b);
  }

  private void setPaused(Buffer b, boolean paused) {
    backend.setPaused(b.spec.name(), paused);
    synchronized (b) {
      b.paused = paused;
      b.pausedChanged = clock.nanos();
    }
  }

  /**
   * Counts and rates of one buffer. Counts come from the store, so every node answers the same;
   * running items and the oldest pending age are the delivering node's when it is this one.
   */
  public ObjectNode stats(String name) {
    Buffer b = buffer(name);
    long now = clock.millis();
    BufferBackend.Counts c = backend.counts(name, now);
    // openai-batch: its batches as the store has them, so every node shows the same.
    List<BufferBackend.BatchRecord> batches = b.spec.batch() == null ? List.of() : backend.openBatches(name);
    ObjectNode o = BufferSpec.JSON.createObjectNode();
    synchronized (b) {
      long running = b.owned ? b.running : 0;
      o.put("pending", Math.max(0, c.open() - running));
      o.put("running", running);
      o.put("completed", c.completed());
      o.put("failed", c.failed());
      o.put("paused", b.paused);
      o.put("deliveredPerSecond", b.owned && !backend.shared() ? b.throughput.perSecond(now)
          : c.completedLast10s() / 10.0);
      o.put("oldestPendingAgeSeconds", b.owned ? b.oldestAgeSeconds(now)
          : c.oldestOpenCreated() == 0 ? 0 : Math.max(0, now - c.oldestOpenCreated()) / 1000.0);
      o.put("delivered", b.owned && !backend.shared() ? b.delivered : c.completed());
      if (backend.shared()) {
        o.put("deliveredHere", b.owned);
      }
      if (b.spec.overflow() != null || c.moved() > 0) {
        o.put("moved", c.moved());
      }
      if (b.spec.batch() != null) {
        o.put("openBatches", batches.stream().filter(r -> r.stage().equals("created")).count());
        o.put("batchesUploaded", batches.stream().filter(r -> r.stage().equals("uploaded")).count());
        o.put("batchesPreparing", batches.stream().filter(r -> r.stage().equals("preparing")).count());
        o.put("itemsInBatches", batches.stream().mapToLong(r -> r.items().size()).sum());
      }
    }
    return o;
  }

  // ---------------------------------------------------------------------------------------
  // Items

  /**
   * Stores items durably, in order, and schedules their delivery. Completes with their ids once
   * committed; an item whose idempotency key was pushed before gets the earlier item's id.
   */
  public CompletableFuture<List<Long>> push(String name, List<NewItem> items) {
    Buffer b = buffer(name);
    long now = clock.millis();
    if (b.deleted) {
      throw BufferException.notFound("buffer '" + name + "' was deleted");
    }
    Buffer overflowTo = b.spec.overflow() == null ? null : known.get(b.spec.overflow().to());
    if (b.spec.overflow() != null && overflowTo == null && backend.shared()) {
      names(); // created on another node: learn it, so its checks apply here too
      overflowTo = known.get(b.spec.overflow().to());
    }
    for (int i = 0; i < items.size(); i++) {
      NewItem it = items.get(i);
      if (b.spec.batch() != null) {
        b.spec.batch().checkItem(it, i);
      }
      if (overflowTo != null && overflowTo.spec.batch() != null) {
        // An item may move there: it must be a line that buffer takes.
        try {
          overflowTo.spec.batch().checkItem(it, i);
        } catch (BufferException e) {
          throw BufferSpec.invalid("buffer '" + name + "' overflows to openai-batch buffer '" + overflowTo.spec.name()
              + "', so its items must be Batch API requests: " + e.getMessage());
        }
      }
      for (String h : it.headers().keySet()) {
        if (b.spec.headers().keySet().stream().anyMatch(h::equalsIgnoreCase)) {
          throw BufferSpec.invalid("item headers: header " + h + " is set by buffer '" + name + "' itself, and the"
              + " buffer's value is always sent: leave it out of the item");
        }
      }
    }
    return backend.push(name, items, now).thenApply(ids -> {
      if (!backend.shared()) {
        // Shared: the delivering node (maybe this one) reads new items from the stream.
        synchronized (b) {
          for (int i = 0; i < ids.size(); i++) {
            long id = ids.get(i);
            if (!b.deleted && id >= 0 && !b.open.containsKey(id)) {
              b.open.put(id, new Buffer.Item(id, items.get(i).key(), now, now));
            }
          }
        }
        delivery.pump(b);
      }
      return ids.stream().map(Math::abs).toList();
    });
  }

  /** An item's status, attempts, last status code, response excerpt and history, as an admin reads it. */
  public ObjectNode item(String name, long id) {
    return item(name, id, true);
  }

  /**
   * An item as a caller reads it: with the endpoint's response excerpt only for {@code
   * withExcerpt} (admins, or workers where the buffer's {@code excerptsVisibleToWorkers} is set).
   */
  public ObjectNode item(String name, long id, boolean withExcerpt) {
    buffer(name);
    BufferBackend.ItemRecord r = backend.item(name, id);
    if (r == null) {
      throw BufferException.notFound("buffer '" + name + "' has no item " + id
          + " (or it was removed after its retention): check the id the push answered");
    }
    ObjectNode x = BufferSpec.JSON.createObjectNode();
    x.put("id", id);
    x.put("buffer", name);
    x.put("state", r.state().equals("pending") && r.open() ? "running" : r.state());
    x.put("attempts", r.attempts());
    x.put("retriesUsed", r.retries());
    if (r.state().equals("pending")) {
      x.put("nextAttemptAt", Instant.ofEpochMilli(r.nextAt()).toString());
    }
    if (r.status() != 0) {
      x.put("lastStatus", r.status());
    }
    if (withExcerpt) {
      x.put("responseExcerpt", r.excerpt());
    }
    x.put("possibleDuplicate", r.duplicate());
    x.put("idempotencyKey", r.idem());
    x.put("key", r.key());
    x.put("created", Instant.ofEpochMilli(r.created()).toString());
    if (r.finished() != 0) {
      x.put("finished", Instant.ofEpochMilli(r.finished()).toString());
    }
    ArrayNode history = x.putArray("history");
    for (String line : r.history().split("\n")) {
      if (!line.isBlank()) {
        history.add(line);
      }
    }
    return x;
  }

  // ---------------------------------------------------------------------------------------
  // Start and stop

  /** Reads every stored buffer; on this node's own store, takes each over and resumes its delivery. */
  private void load() {
    long now = clock.millis();
    for (BufferBackend.StoredBuffer row : backend.buffers()) {
      Buffer b = known.learn(row);
      if (b == null || backend.shared()) {
        continue; // shared: a sync round claims it
      }
      BufferBackend.Takeover t = backend.takeOver(b.spec.name(), now);
      b.start(t);
      delivery.started(b);
      log.info("buffer {} loaded: {} items to deliver{}{}", b.spec.name(), t.items().size(),
          t.reopened() > 0 ? ", " + t.reopened() + " re-sent after a crash (flagged as possible duplicates)" : "",
          b.paused ? ", paused" : "");
    }
    for (Buffer b : known.all()) {
      delivery.pump(b);
    }
  }

  /** A buffer by name; shared, one created on another node within the second is read at once. */
  private Buffer known(String name) {
    Buffer b = known.get(name);
    if (b == null && backend.shared() && !closed) {
      for (BufferBackend.StoredBuffer row : backend.buffers()) {
        if (row.name().equals(name)) {
          return known.learn(row);
        }
      }
    }
    return b;
  }

  private Buffer buffer(String name) {
    open();
    Buffer b = known(name);
    if (b == null) {
      throw BufferException.notFound("no buffer '" + name + "': create it with `sluice buffer create " + name
          + " --url ... --resource ...` or check the name");
    }
    return b;
  }

  private void open() {
    if (closed) {
      throw BufferException.unavailable("the coordinator is stopping: retry on another node or after the restart");
    }
  }

  /** Times a buffer's retry timer woke delivery since start (tests: an idle buffer set wakes nothing). */
  long deliveryWakeups() {
    return delivery.wakeups();
  }

  /** Shared mode: reads of the item streams since start (tests: none while this node delivers nothing). */
  long streamReads() {
    return ownership == null ? 0 : ownership.reads();
  }

  /**
   * Stops delivering and ends every thread the buffers started. Attempts in flight are
   * abandoned: after a restart they are sent again, flagged.
   */
  @Override
  public void close() {
    closed = true;
    delivery.close();
    for (Buffer b : known.all()) {
      b.cancelTimers();
    }
    if (ownership != null) {
      ownership.close();
    }
    if (ownClock != null) {
      ownClock.close();
    }
    dispatch.close();
    backend.close();
  }
}
