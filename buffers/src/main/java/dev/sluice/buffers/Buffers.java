package dev.sluice.buffers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.RedisStore;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import java.io.IOException;
import java.io.InputStream;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Buffers: durable queues in front of one endpoint each, delivered at the pace of a Sluice
 * resource (README, "Buffers").
 *
 * <p>Delivery acquires from the same {@link Engine} as live workers, in the default lane, so a
 * buffer and workers share one quota in FIFO order; a waiting delivery is an engine ticket, never
 * a parked thread. With {@code inFlight = 1} only the oldest unfinished item may be sent (strict
 * order: a failing item holds its place); with N, up to N at once, one per order key.
 *
 * <p>At-least-once: an attempt is recorded durably before its request leaves. An item whose
 * attempt was open when the coordinator died is sent again after the restart and flagged as a
 * possible duplicate in its history; every request carries the item's {@code Idempotency-Key}.
 */
public final class Buffers implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(Buffers.class);
  /** Bytes of a response body kept with the item. */
  static final int EXCERPT = 1024;
  /** Bytes of one item's body at most. */
  static final int MAX_BODY = 512 * 1024;
  private static final Duration ACQUIRE_TIMEOUT = Duration.ofSeconds(60);

  private final Engine engine;
  private final BufferBackend backend;
  private final MeterRegistry registry;
  private final LongSupplier millis;
  private final HttpClient http;
  private final TargetPolicy targets;
  /** Checks where a URL leads (a name lookup may block) before each attempt, off the store's threads. */
  private final java.util.concurrent.ExecutorService checks;
  private final ScheduledExecutorService timers;
  private final Map<String, Buffer> buffers = new ConcurrentHashMap<>();
  /** Shared mode: claims leases, learns of buffers created, deleted, paused on other nodes. */
  private final ScheduledExecutorService sync;
  /** How often a shared node renews its leases and reads the buffer list. */
  static final long SYNC_MILLIS = 1000;
  /** History line of an attempt found open when delivery (re)starts. */
  static final String REOPENED = "restart: the last attempt was open when the coordinator stopped and may have"
      + " reached the endpoint; sending again (possible duplicate)";
  private volatile boolean closed;
  /** Shared mode: the thread that follows the streams of the buffers this node delivers. */
  private final Thread follower;

  /**
   * Opens {@code buffers.db} in the data dir and resumes every buffer's delivery.
   *
   * @param fsyncEveryCommit synchronous=FULL (power-loss safe) rather than NORMAL (crash safe)
   * @param millis the wall clock of schedules and histories (tests pass a fake one)
   * @param targets where buffers may deliver, checked at create and before every attempt
   */
  public Buffers(Engine engine, Path dataDir, MeterRegistry registry, LongSupplier millis, boolean fsyncEveryCommit,
      TargetPolicy targets) throws IOException {
    this(engine, new SqliteBackend(dataDir, fsyncEveryCommit), registry, millis, targets);
  }

  /**
   * Buffers on the Redis every node shares: any node accepts pushes and answers reads; one at a
   * time delivers each buffer, holding a lease of {@code lease} renewed every second.
   */
  public static Buffers shared(Engine engine, RedisStore store, MeterRegistry registry, LongSupplier millis,
      Duration lease, TargetPolicy targets) {
    return new Buffers(engine, new RedisBackend(store, lease), registry, millis, targets);
  }

  private Buffers(Engine engine, BufferBackend backend, MeterRegistry registry, LongSupplier millis,
      TargetPolicy targets) {
    this.engine = engine;
    this.targets = targets;
    this.checks = Executors.newFixedThreadPool(2, r -> {
      Thread t = new Thread(r, "sluice-buffer-check");
      t.setDaemon(true);
      return t;
    });
    this.registry = registry;
    this.millis = millis;
    this.backend = backend;
    this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10))
        .followRedirects(HttpClient.Redirect.NEVER).build();
    this.timers = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "sluice-buffer-timer");
      t.setDaemon(true);
      return t;
    });
    load();
    timers.scheduleWithFixedDelay(this::expire, 1, 60, TimeUnit.SECONDS);
    if (backend.shared()) {
      this.sync = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "sluice-buffer-sync");
        t.setDaemon(true);
        return t;
      });
      sync.scheduleWithFixedDelay(this::syncQuietly, 0, SYNC_MILLIS, TimeUnit.MILLISECONDS);
      this.follower = new Thread(this::follow, "sluice-buffer-follower");
      follower.setDaemon(true);
      follower.start();
    } else {
      this.sync = null;
      this.follower = null;
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
   * URL must lead where {@link TargetPolicy} allows.
   */
  public BufferSpec create(JsonNode body) {
    open();
    BufferSpec spec = BufferSpec.parse(body);
    targets.check(spec.url());
    if (spec.resource() != null && await(engine.getLimit(spec.resource())).isEmpty()) {
      throw BufferSpec.invalid("resource '" + spec.resource() + "' has no limit: create it first (`sluice limit set "
          + spec.resource() + " --rate requests=N/min`), or give the buffer its own rate");
    }
    synchronized (buffers) {
      if (buffers.containsKey(spec.name())) {
        throw new EngineException(EngineException.Reason.INVALID, "buffer '" + spec.name() + "' exists already:"
            + " delete it first, or choose another name");
      }
      if (spec.rate() != null) {
        BufferSpec.Rate r = spec.rate();
        long lease = Math.min(3600, Math.max(30, spec.timeout().toSeconds() + 10));
        await(engine.setLimit(new LimitSpec(spec.pacingResource(), List.of(new RateSpec("requests", r.amount(),
            r.period(), r.burst())), 0, 100_000, Duration.ofSeconds(lease))));
      }
      long now = millis.getAsLong();
      if (!backend.create(spec.name(), spec.toStoredJson().toString(), now)) {
        throw new EngineException(EngineException.Reason.INVALID, "buffer '" + spec.name() + "' exists already"
            + " (created on another node): delete it first, or choose another name");
      }
      Buffer b = new Buffer(spec, false);
      buffers.put(spec.name(), b);
      b.meter();
      if (!backend.shared()) {
        b.owned = true;
      }
    }
    if (backend.shared()) {
      sync.execute(this::syncQuietly); // claim it now rather than within the second
    }
    log.info("buffer {} created: {} {} paced by {}", spec.name(), spec.method(), spec.shownUrl(),
        spec.pacingResource());
    return spec;
  }

  /**
   * Waits for an engine answer. Only {@link #create} and {@link #delete} do: they write the
   * buffer backend synchronously anyway, so they run on an admin executor, never an event loop.
   */
  private static <T> T await(java.util.concurrent.CompletableFuture<T> answer) {
    try {
      return answer.join();
    } catch (java.util.concurrent.CompletionException e) {
      throw EngineException.unwrap(e) instanceof RuntimeException r ? r : e;
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
        if (buffers.get(row.name()) == null) {
          Buffer made = fromStore(row);
          if (made == null) {
            continue;
          }
          if (buffers.putIfAbsent(row.name(), made) == null) {
            made.meter();
          }
        }
        names.add(row.name());
      }
      return names;
    }
    return buffers.keySet().stream().sorted().toList();
  }

  /** Deletes a buffer with its items; an inline rate's resource goes too. */
  public void delete(String name) {
    Buffer b = buffer(name);
    synchronized (b) {
      b.deleted = true;
      if (b.timer != null) {
        b.timer.cancel(false);
      }
    }
    buffers.remove(name);
    b.unmeter();
    backend.delete(name);
    if (b.spec.rate() != null) {
      try {
        await(engine.deleteLimit(b.spec.pacingResource()));
      } catch (EngineException e) {
        // already gone
      }
    }
    log.info("buffer {} deleted", name);
  }

  public void pause(String name) {
    Buffer b = buffer(name);
    setPaused(b, true);
    log.info("buffer {} paused", name);
  }

  public void resume(String name) {
    Buffer b = buffer(name);
    setPaused(b, false);
    log.info("buffer {} resumed", name);
    pump(b);
  }

  private void setPaused(Buffer b, boolean paused) {
    backend.setPaused(b.spec.name(), paused);
    synchronized (b) {
      b.paused = paused;
      b.pausedChanged = System.nanoTime();
    }
  }

  /**
   * Counts and rates of one buffer. Counts come from the store, so every node answers the same;
   * running items and the oldest pending age are the delivering node's when it is this one.
   */
  public ObjectNode stats(String name) {
    Buffer b = buffer(name);
    long now = millis.getAsLong();
    BufferBackend.Counts c = backend.counts(name, now);
    ObjectNode o = BufferSpec.JSON.createObjectNode();
    synchronized (b) {
      long running = b.owned ? b.running : 0;
      o.put("pending", Math.max(0, c.open() - running));
      o.put("running", running);
      o.put("completed", c.completed());
      o.put("failed", c.failed());
      o.put("paused", b.paused);
      o.put("deliveredPerSecond", b.owned && !backend.shared() ? b.rate.perSecond(now) : c.completedLast10s() / 10.0);
      o.put("oldestPendingAgeSeconds", b.owned ? b.oldestAgeSeconds(now)
          : c.oldestOpenCreated() == 0 ? 0 : Math.max(0, now - c.oldestOpenCreated()) / 1000.0);
      o.put("delivered", b.owned && !backend.shared() ? b.delivered : c.completed());
      if (backend.shared()) {
        o.put("deliveredHere", b.owned);
      }
    }
    return o;
  }

  // ---------------------------------------------------------------------------------------
  // Items

  /** One item to push, checked. */
  public record NewItem(byte[] body, String contentType, Map<String, String> headers, String idempotencyKey, String key) {}

  /**
   * Parses a push: one item ({@code {"body": ..., "headers": {...}, "idempotencyKey": ..., "key":
   * ...}}) or many ({@code {"items": [...]}}).
   */
  public static List<NewItem> parsePush(JsonNode body) {
    if (body == null || !body.isObject()) {
      throw BufferSpec.invalid("push a JSON object: {\"body\": ...} or {\"items\": [{\"body\": ...}, ...]}");
    }
    List<NewItem> out = new ArrayList<>();
    if (body.has("items")) {
      BufferSpec.known(body, "items");
      JsonNode items = body.get("items");
      if (!items.isArray() || items.isEmpty() || items.size() > 10_000) {
        throw BufferSpec.invalid("items must be an array of 1 to 10000 items");
      }
      for (JsonNode i : items) {
        out.add(item(i));
      }
    } else {
      out.add(item(body));
    }
    return out;
  }

  private static NewItem item(JsonNode i) {
    if (!i.isObject()) {
      throw BufferSpec.invalid("an item is an object: {\"body\": ..., \"headers\": {...}, \"idempotencyKey\": ...}");
    }
    BufferSpec.known(i, "body", "headers", "idempotencyKey", "key");
    JsonNode b = i.get("body");
    if (b == null) {
      throw BufferSpec.invalid("an item needs a body: a string (sent as is) or JSON (sent as application/json)");
    }
    byte[] bytes = b.isTextual() ? b.asText().getBytes(StandardCharsets.UTF_8)
        : b.toString().getBytes(StandardCharsets.UTF_8);
    return newItem(bytes, b.isTextual() ? null : "application/json", i.get("headers"),
        optionalText(i, "idempotencyKey"), optionalText(i, "key"));
  }

  /** One item from its parts (the gRPC push), checked as the HTTP push checks it. */
  public static NewItem newItem(byte[] body, String contentType, JsonNode headers, String idempotencyKey,
      String key) {
    if (body.length > MAX_BODY) {
      throw BufferSpec.invalid("an item's body is " + body.length + " bytes: at most " + MAX_BODY);
    }
    for (String[] f : new String[][] {{"idempotencyKey", idempotencyKey}, {"key", key}}) {
      if (f[1] != null && (f[1].isEmpty() || f[1].length() > 200)) {
        throw BufferSpec.invalid(f[0] + " must be a string of 1 to 200 characters");
      }
    }
    if (contentType != null && (contentType.length() > 200 || contentType.indexOf('\n') >= 0)) {
      throw BufferSpec.invalid("content type '" + contentType + "' is not a valid header value");
    }
    return new NewItem(body, contentType, BufferSpec.headers(headers, "item headers"), idempotencyKey, key);
  }

  private static String optionalText(JsonNode i, String field) {
    JsonNode v = i.get(field);
    if (v == null || v.isNull()) {
      return null;
    }
    if (!v.isTextual()) {
      throw BufferSpec.invalid(field + " must be a string of 1 to 200 characters");
    }
    return v.asText();
  }

  /**
   * Stores items durably, in order, and schedules their delivery. Completes with their ids once
   * committed; an item whose idempotency key was pushed before gets the earlier item's id.
   */
  public CompletableFuture<List<Long>> push(String name, List<NewItem> items) {
    Buffer b = buffer(name);
    long now = millis.getAsLong();
    if (b.deleted) {
      throw new EngineException(EngineException.Reason.NOT_FOUND, "buffer '" + name + "' was deleted");
    }
    for (NewItem it : items) {
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
              b.open.put(id, new Item(id, items.get(i).key(), now, now));
            }
          }
        }
        pump(b);
      }
      return ids.stream().map(Math::abs).toList();
    });
  }

  /** An item's headers as stored: its own, and its body's content type unless it set one. */
  static String storedHeaders(NewItem it) {
    ObjectNode h = BufferSpec.JSON.createObjectNode();
    it.headers().forEach(h::put);
    if (it.contentType() != null && it.headers().keySet().stream().noneMatch(k -> k.equalsIgnoreCase("content-type"))) {
      h.put("Content-Type", it.contentType());
    }
    return h.toString();
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
      throw new EngineException(EngineException.Reason.NOT_FOUND, "buffer '" + name + "' has no item " + id
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
  // Delivery

  private static final class Item {
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

  private final class Buffer {
    final BufferSpec spec;
    final TreeMap<Long, Item> open = new TreeMap<>();
    final Rate rate = new Rate();
    final List<Meter> meters = new ArrayList<>();
    int running;
    /** This node delivers it: always alone; in shared mode while it holds the lease. */
    boolean owned;
    /** Bumped when ownership changes: outcomes of an earlier ownership leave local state alone. */
    int epoch;
    /** Shared mode: the last item id read from the stream. */
    long lastId;
    /** When this node learned of it (System.nanoTime). */
    final long learned = System.nanoTime();
    /** When this node last paused or resumed it (System.nanoTime), so a stale sync cannot undo it. */
    long pausedChanged = learned - TimeUnit.DAYS.toNanos(1);
    long delivered;
    boolean paused;
    boolean deleted;
    ScheduledFuture<?> timer;
    long timerAt = Long.MAX_VALUE;
    boolean warnedMissingResource;

    Buffer(BufferSpec spec, boolean paused) {
      this.spec = spec;
      this.paused = paused;
    }

    double oldestAgeSeconds(long now) {
      for (Item i : open.values()) {
        if (!i.running) {
          return Math.max(0, now - i.created) / 1000.0;
        }
      }
      return 0;
    }

    void meter() {
      Tags t = Tags.of("buffer", spec.name());
      meters.add(Gauge.builder("sluice.buffer.items", this, b -> b.count(false)).tags(t.and("state", "pending"))
          .description("Items of the buffer by state").register(registry));
      meters.add(Gauge.builder("sluice.buffer.items", this, b -> b.count(true)).tags(t.and("state", "running"))
          .register(registry));
      meters.add(Gauge.builder("sluice.buffer.oldest.pending.age", this,
          b -> b.oldestAge()).tags(t).baseUnit("seconds").description("Age of the oldest item not yet delivered")
          .register(registry));
      meters.add(Counter.builder("sluice.buffer.delivered").tags(t).description("Items delivered (2xx)")
          .register(registry));
    }

    /** This node's share: zero where another node delivers it (sum the series over nodes). */
    synchronized double count(boolean inFlight) {
      return inFlight ? running : open.size() - running;
    }

    synchronized double oldestAge() {
      return oldestAgeSeconds(millis.getAsLong());
    }

    void unmeter() {
      for (Meter m : meters) {
        registry.remove(m);
      }
      for (String outcome : List.of("delivered", "throttled", "retried", "failed")) {
        registry.find("sluice.buffer.attempts").tags("buffer", spec.name(), "outcome", outcome).meters()
            .forEach(registry::remove);
      }
    }

    void counted(String outcome) {
      registry.counter("sluice.buffer.attempts", "buffer", spec.name(), "outcome", outcome).increment();
      if (outcome.equals("delivered")) {
        registry.counter("sluice.buffer.delivered", "buffer", spec.name()).increment();
      }
    }
  }

  /** Deliveries per second over the last 10 whole seconds. */
  private static final class Rate {
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

  /** Starts every delivery the buffer's order and in-flight cap allow now; arms a timer for later ones. */
  private void pump(Buffer b) {
    List<Item> start = new ArrayList<>();
    synchronized (b) {
      if (b.paused || b.deleted || closed || !b.owned) {
        return;
      }
      long now = millis.getAsLong();
      long earliest = Long.MAX_VALUE;
      Set<String> taken = new HashSet<>();
      int scanned = 0;
      for (Iterator<Item> it = b.open.values().iterator(); it.hasNext() && b.running < b.spec.inFlight(); ) {
        Item i = it.next();
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
          b.timer.cancel(false);
        }
        b.timerAt = earliest;
        b.timer = timers.schedule(() -> {
          synchronized (b) {
            b.timerAt = Long.MAX_VALUE;
            b.timer = null;
          }
          pump(b);
        }, Math.max(1, earliest - now), TimeUnit.MILLISECONDS);
      }
    }
    int epoch = b.epoch;
    for (Item i : start) {
      acquire(b, i, epoch);
    }
  }

  /** True while the delivery begun in {@code epoch} still counts: the node has not lost the buffer since. */
  private static boolean current(Buffer b, int epoch) {
    synchronized (b) {
      return b.epoch == epoch && !b.deleted;
    }
  }

  private void acquire(Buffer b, Item i, int epoch) {
    if (closed || !current(b, epoch)) {
      return;
    }
    engine.acquire(b.spec.pacingResource(), Map.of("requests", 1L), Lane.DEFAULT, ACQUIRE_TIMEOUT.toNanos(),
        "buffer-" + b.spec.name() + "-" + i.id + "-" + ThreadLocalRandom.current().nextLong(Long.MAX_VALUE))
        .future().whenComplete((grant, error) -> {
          if (error == null) {
            if (!current(b, epoch)) {
              engine.release(b.spec.pacingResource(), grant.permitId(), Map.of(), false, true);
              return;
            }
            attempt(b, i, grant, epoch);
            return;
          }
          Throwable e = EngineException.unwrap(error);
          if (closed || !current(b, epoch)) {
            return;
          }
          if (e instanceof EngineException ee && ee.reason() == EngineException.Reason.DEADLINE) {
            acquire(b, i, epoch); // a long pause: keep our place in the line
            return;
          }
          if (!b.warnedMissingResource) {
            b.warnedMissingResource = true;
            log.warn("buffer {} cannot acquire on {}: {}; retrying every 5 s", b.spec.name(), b.spec.pacingResource(),
                e.getMessage());
          }
          timers.schedule(() -> acquire(b, i, epoch), 5, TimeUnit.SECONDS);
        });
  }

  /** Records the attempt durably, sends it, then records the outcome. */
  private void attempt(Buffer b, Item i, Grant grant, int epoch) {
    String name = b.spec.name();
    long started = millis.getAsLong();
    backend.startAttempt(name, i.id).whenComplete((send, error) -> {
      if (error != null || send == null || !current(b, epoch) || closed) {
        engine.release(b.spec.pacingResource(), grant.permitId(), Map.of(), false, true);
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
      if (!targets.looksUp(b.spec.url())) {
        send(b, i, grant, send, started, epoch); // an address: checked at once, nothing blocks
        return;
      }
      try {
        checks.execute(() -> send(b, i, grant, send, started, epoch));
      } catch (java.util.concurrent.RejectedExecutionException e) {
        engine.release(b.spec.pacingResource(), grant.permitId(), Map.of(), false, true); // closing
      }
    });
  }

  /**
   * Checks the target, builds the request and sends it. Every way this can fail ends as the
   * attempt's outcome, with a history line and a log line: an item is never left running.
   */
  private void send(Buffer b, Item i, Grant grant, BufferBackend.Send send, long started, int epoch) {
    Outcome early = null;
    HttpRequest request = null;
    try {
      targets.check(b.spec.url());
    } catch (RuntimeException e) {
      early = Outcome.refused(e.getMessage()); // where the URL leads now: it may change back, so retried
    }
    if (early == null) {
      try {
        request = request(b.spec, send.body(), send.headers(), send.idem());
      } catch (RuntimeException e) {
        early = Outcome.unbuildable(e);
      }
    }
    CompletableFuture<HttpResponse<InputStream>> response;
    if (early != null) {
      response = null;
    } else {
      try {
        response = http.sendAsync(request, HttpResponse.BodyHandlers.ofInputStream());
      } catch (RuntimeException e) {
        response = null;
        early = Outcome.unbuildable(e);
      }
    }
    if (early != null) {
      engine.release(b.spec.pacingResource(), grant.permitId(), Map.of(), false, true); // nothing left
      recordQuietly(b, i, send.attempt(), started, early, epoch);
      return;
    }
    response.whenComplete((r, failure) -> {
      engine.release(b.spec.pacingResource(), grant.permitId(), Map.of(), false, false);
      Outcome o;
      try {
        o = failure != null ? Outcome.error(failure) : Outcome.of(r, millis.getAsLong());
      } catch (RuntimeException e) {
        o = Outcome.error(e);
      }
      recordQuietly(b, i, send.attempt(), started, o, epoch);
    });
  }

  /** {@link #record} from a callback, where an exception would vanish and leave the item running. */
  private void recordQuietly(Buffer b, Item i, int attempt, long started, Outcome o, int epoch) {
    try {
      record(b, i, attempt, started, o, epoch);
    } catch (RuntimeException e) {
      log.error("buffer {} item {}: recording attempt {} failed ({}); trying it again in a second", b.spec.name(),
          i.id, attempt, e.toString());
      finishLater(b, i, epoch);
    }
  }

  private void finishLater(Buffer b, Item i, int epoch) {
    synchronized (b) {
      if (b.epoch != epoch) {
        return;
      }
      i.running = false;
      b.running--;
      i.nextAt = millis.getAsLong() + 1000;
    }
    pump(b);
  }

  /**
   * The request of one attempt. The item's headers are checked again (items stored before a
   * rule existed); the buffer's own headers are set last, so they win over anything an item says.
   *
   * @throws RuntimeException when the request cannot be built: the attempt fails, not retried
   */
  static HttpRequest request(BufferSpec spec, byte[] body, String itemHeaders, String idem) {
    HttpRequest.Builder r = HttpRequest.newBuilder(spec.url()).timeout(spec.timeout())
        .method(spec.method(), spec.method().equals("GET") ? HttpRequest.BodyPublishers.noBody()
            : HttpRequest.BodyPublishers.ofByteArray(body));
    JsonNode h;
    try {
      h = BufferSpec.JSON.readTree(itemHeaders);
    } catch (IOException e) {
      throw new IllegalStateException("the item's stored headers are not JSON", e);
    }
    h.fields().forEachRemaining(e -> {
      if (spec.headers().keySet().stream().noneMatch(e.getKey()::equalsIgnoreCase)) {
        BufferSpec.checkAllowed("item headers", e.getKey());
        BufferSpec.checkValue("item headers", e.getKey(), e.getValue().asText());
        r.setHeader(e.getKey(), e.getValue().asText());
      }
    });
    spec.headers().forEach(r::setHeader);
    r.setHeader("Idempotency-Key", idem);
    r.setHeader("User-Agent", "sluice-buffer/0.1");
    return r.build();
  }

  /**
   * What one attempt came to.
   *
   * @param permanent the request cannot be built: trying again cannot help
   */
  private record Outcome(int status, String excerpt, String error, long retryAfterMillis, boolean permanent) {
    static Outcome error(Throwable t) {
      Throwable e = t instanceof java.util.concurrent.CompletionException && t.getCause() != null ? t.getCause() : t;
      return new Outcome(0, null, describe(e), 0, false);
    }

    static Outcome refused(String why) {
      return new Outcome(0, null, "not sent: " + why, 0, false);
    }

    static Outcome unbuildable(Throwable e) {
      return new Outcome(0, null, "the request could not be built (" + describe(e) + ")", 0, true);
    }

    private static String describe(Throwable e) {
      return e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage());
    }

    static Outcome of(HttpResponse<InputStream> r, long now) {
      String excerpt;
      try (InputStream in = r.body()) {
        excerpt = new String(in.readNBytes(EXCERPT), StandardCharsets.UTF_8);
      } catch (IOException e) {
        excerpt = "";
      }
      long retryAfter = 0;
      if (r.statusCode() == 429) {
        retryAfter = Buffers.retryAfterMillis(r.headers().firstValue("Retry-After").orElse(null), now);
      }
      return new Outcome(r.statusCode(), excerpt, null, retryAfter, false);
    }
  }

  /** Retry-After as seconds or an HTTP date; 1 s when absent or unreadable. */
  static long retryAfterMillis(String v, long now) {
    if (v == null || v.isBlank()) {
      return 1000;
    }
    try {
      return Math.max(0, Math.round(Double.parseDouble(v.trim()) * 1000));
    } catch (NumberFormatException e) {
      try {
        return Math.max(0, ZonedDateTime.parse(v.trim(), DateTimeFormatter.RFC_1123_DATE_TIME).toInstant()
            .toEpochMilli() - now);
      } catch (RuntimeException e2) {
        return 1000;
      }
    }
  }

  /**
   * Decides what an attempt came to, applies it in memory and lets the next delivery start at
   * once, and queues the durable record. The record is committed before (or with) any later
   * write of this buffer, in particular the next item's attempt: after a crash the store never
   * shows item k+1 sent and item k unfinished.
   */
  private void record(Buffer b, Item i, int attempt, long started, Outcome o, int epoch) {
    long now = millis.getAsLong();
    String name = b.spec.name();
    int s = o.status();
    String state;
    String verdict;
    String note;
    long next = 0;
    int retries;
    synchronized (b) {
      retries = i.retries;
      if (o.permanent()) {
        verdict = "failed";
        state = "failed";
        note = "; not retried: the same request would fail again";
      } else if (s >= 200 && s < 300) {
        verdict = "delivered";
        state = "completed";
        note = "";
      } else if (s == 429) {
        verdict = "throttled";
        state = "pending";
        next = now + o.retryAfterMillis();
        note = "; retry at " + Instant.ofEpochMilli(next) + " (Retry-After; the retry budget is untouched)";
      } else if (s == 0 || s == 408 || s >= 500) {
        if (retries >= b.spec.maxRetries()) {
          verdict = "failed";
          state = "failed";
          note = "; retry budget of " + b.spec.maxRetries() + " spent: failed";
        } else {
          retries++;
          verdict = "retried";
          state = "pending";
          next = now + Backoff.delay(b.spec.backoff(), b.spec.backoffBase(), b.spec.backoffMax(), retries,
              ThreadLocalRandom.current()::nextDouble).toMillis();
          note = "; retry " + retries + " of " + b.spec.maxRetries() + " at " + Instant.ofEpochMilli(next);
        }
      } else {
        verdict = "failed";
        state = "failed";
        note = "; " + s + " is not retried";
      }
      if (b.epoch == epoch) {
        i.retries = retries;
        i.running = false;
        b.running--;
        if (state.equals("pending")) {
          i.nextAt = next;
        } else {
          b.open.remove(i.id);
        }
      }
      if (state.equals("completed")) {
        b.delivered++;
        b.rate.add(now);
      }
      b.counted(verdict);
    }
    if (s == 429) {
      // Upstream feedback, as a worker's report: the shared resource pauses for everyone.
      engine.report(b.spec.pacingResource(), true, o.retryAfterMillis() * 1_000_000L, Map.of())
          .whenComplete((paused, error) -> {
            if (error != null) {
              log.debug("buffer {}: reporting the 429 failed: {}", name, EngineException.unwrap(error).getMessage());
            }
          });
    }
    String line = Instant.ofEpochMilli(now) + " attempt " + attempt + ": "
        + (o.error() != null ? o.error() : "HTTP " + s) + " after " + (now - started) + " ms" + note + "\n";
    if (o.error() != null) {
      log.warn("buffer {} item {} attempt {}: {}{}", name, i.id, attempt, o.error(), note);
    }
    boolean finished = !state.equals("pending");
    int retriesUsed = retries;
    long nextAt = next;
    backend.finishAttempt(name, i.id, new BufferBackend.Result(state, retriesUsed, nextAt, s, o.excerpt(), line,
        finished ? now : 0)).whenComplete((r, error) -> {
      if (error != null && !closed) {
        log.error("buffer {} item {}: recording the outcome failed ({}); it may be sent again after a restart",
            name, i.id, error.getMessage());
      }
    });
    pump(b);
  }

  // ---------------------------------------------------------------------------------------
  // Start, retention, stop

  private void load() {
    long now = millis.getAsLong();
    for (BufferBackend.StoredBuffer row : backend.buffers()) {
      Buffer b = fromStore(row);
      if (b == null) {
        continue;
      }
      buffers.put(b.spec.name(), b);
      b.meter();
      if (!backend.shared()) {
        BufferBackend.Takeover t = backend.takeOver(b.spec.name(), now);
        start(b, t);
        log.info("buffer {} loaded: {} items to deliver{}{}", b.spec.name(), t.items().size(),
            t.reopened() > 0 ? ", " + t.reopened() + " re-sent after a crash (flagged as possible duplicates)" : "",
            b.paused ? ", paused" : "");
      }
    }
    for (Buffer b : buffers.values()) {
      pump(b);
    }
  }

  private Buffer fromStore(BufferBackend.StoredBuffer row) {
    try {
      return new Buffer(BufferSpec.parse(BufferSpec.JSON.readTree(row.spec())), row.paused());
    } catch (IOException | RuntimeException e) {
      log.error("buffer {} in the store cannot be read ({}): left out", row.name(), e.getMessage());
      return null;
    }
  }

  /** Makes this node the buffer's deliverer with the store's unfinished items. */
  private static void start(Buffer b, BufferBackend.Takeover t) {
    synchronized (b) {
      b.epoch++;
      b.open.clear();
      b.running = 0;
      for (BufferBackend.OpenItem o : t.items()) {
        Item it = new Item(o.id(), o.key(), o.created(), o.nextAt());
        it.retries = o.retries();
        b.open.put(it.id, it);
      }
      b.lastId = t.lastId();
      b.owned = true;
    }
  }

  /** Shared mode: this node no longer delivers the buffer; attempts in flight are let go. */
  private static void stop(Buffer b) {
    synchronized (b) {
      b.epoch++;
      b.owned = false;
      b.open.clear();
      b.running = 0;
      if (b.timer != null) {
        b.timer.cancel(false);
        b.timer = null;
        b.timerAt = Long.MAX_VALUE;
      }
    }
  }

  private void syncQuietly() {
    try {
      sync();
    } catch (RuntimeException e) {
      if (!closed) {
        log.warn("buffers: reading the shared store failed ({}); retrying every second", e.getMessage());
      }
    }
  }

  /**
   * Shared mode, every second: learns of buffers created, deleted, paused or resumed on other
   * nodes, and takes, keeps or gives up the lease of each.
   */
  private synchronized void sync() {
    if (closed) {
      return;
    }
    long readAt = System.nanoTime();
    List<BufferBackend.StoredBuffer> stored = backend.buffers();
    Set<String> names = new HashSet<>();
    for (BufferBackend.StoredBuffer row : stored) {
      names.add(row.name());
      Buffer b = buffers.get(row.name());
      if (b == null) {
        b = fromStore(row);
        if (b == null) {
          continue;
        }
        Buffer raced = buffers.putIfAbsent(row.name(), b);
        if (raced == null) {
          b.meter();
        } else {
          b = raced;
        }
      }
      boolean resumed = false;
      synchronized (b) {
        if (b.pausedChanged - readAt < 0 && b.paused != row.paused()) {
          b.paused = row.paused();
          resumed = !b.paused;
        }
      }
      if (resumed) {
        pump(b);
      }
    }
    for (Buffer b : List.copyOf(buffers.values())) {
      if (!names.contains(b.spec.name()) && b.learned - readAt < 0) {
        // Deleted on another node.
        synchronized (b) {
          b.deleted = true;
        }
        stop(b);
        buffers.remove(b.spec.name(), b);
        b.unmeter();
        continue;
      }
      if (b.deleted) {
        continue;
      }
      BufferBackend.Claim claim = backend.claim(b.spec.name());
      boolean mine = claim != BufferBackend.Claim.LOST;
      if (claim == BufferBackend.Claim.TAKEN && b.owned) {
        // Our own lease lapsed (a pause longer than it) and nobody took it: outcomes recorded
        // meanwhile were refused by the fence, so start again from the store.
        stop(b);
        log.warn("buffer {}: this node's delivery lease had lapsed; reloading the buffer from the store",
            b.spec.name());
      }
      if (mine && !b.owned) {
        BufferBackend.Takeover t = backend.takeOver(b.spec.name(), millis.getAsLong());
        if (t != null) {
          start(b, t);
          log.info("buffer {}: this node delivers it now ({} items to deliver{})", b.spec.name(), t.items().size(),
              t.reopened() > 0 ? ", " + t.reopened() + " attempts left open by the last deliverer re-sent, flagged"
                  + " as possible duplicates" : "");
          pump(b);
        }
      } else if (!mine && b.owned) {
        stop(b);
        log.warn("buffer {}: this node lost its delivery lease (a pause or a partition longer than the lease);"
            + " another node delivers it now", b.spec.name());
      }
    }
  }

  /** Shared mode: reads items pushed on any node from the streams of the buffers this node delivers. */
  private void follow() {
    RedisBackend redis = (RedisBackend) backend;
    while (!closed) {
      Map<String, Long> after = new java.util.LinkedHashMap<>();
      Map<String, Integer> epochs = new java.util.HashMap<>();
      for (Buffer b : buffers.values()) {
        synchronized (b) {
          if (b.owned && !b.deleted) {
            after.put(b.spec.name(), b.lastId);
            epochs.put(b.spec.name(), b.epoch);
          }
        }
      }
      try {
        if (after.isEmpty()) {
          Thread.sleep(50);
          continue;
        }
        for (var e : redis.follow(after, 250).entrySet()) {
          Buffer b = buffers.get(e.getKey());
          if (b == null) {
            continue;
          }
          synchronized (b) {
            if (b.epoch != epochs.get(e.getKey()) || !b.owned) {
              continue; // taken over again meanwhile: the takeover read the store afresh
            }
            for (BufferBackend.OpenItem o : e.getValue()) {
              if (o.id() > b.lastId) {
                b.open.put(o.id(), new Item(o.id(), o.key(), o.created(), o.nextAt()));
                b.lastId = o.id();
              }
            }
          }
          pump(b);
        }
      } catch (InterruptedException e) {
        return;
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

  /** Drops completed and failed items older than their buffer's retention. */
  private void expire() {
    long now = millis.getAsLong();
    for (Buffer b : buffers.values()) {
      if (!b.owned) {
        continue; // the deliverer expires, once for every node
      }
      try {
        backend.expire(b.spec.name(), now - b.spec.retention().toMillis());
      } catch (RuntimeException e) {
        log.warn("buffer {}: removing items past their retention failed: {}", b.spec.name(), e.getMessage());
      }
    }
  }

  /** A buffer by name; shared, one created on another node within the second is read at once. */
  private Buffer known(String name) {
    Buffer b = buffers.get(name);
    if (b == null && backend.shared() && !closed) {
      for (BufferBackend.StoredBuffer row : backend.buffers()) {
        if (row.name().equals(name)) {
          Buffer made = fromStore(row);
          if (made != null && buffers.putIfAbsent(name, made) == null) {
            made.meter();
          }
          return buffers.get(name);
        }
      }
    }
    return b;
  }

  private Buffer buffer(String name) {
    open();
    Buffer b = known(name);
    if (b == null) {
      throw new EngineException(EngineException.Reason.NOT_FOUND, "no buffer '" + name + "': create it with"
          + " `sluice buffer create " + name + " --url ... --resource ...` or check the name");
    }
    return b;
  }

  private void open() {
    if (closed) {
      throw new EngineException(EngineException.Reason.UNAVAILABLE, "the coordinator is stopping: retry on another"
          + " node or after the restart");
    }
  }

  /** Stops delivering. Attempts in flight are abandoned: after a restart they are sent again, flagged. */
  @Override
  public void close() {
    closed = true;
    timers.shutdownNow();
    checks.shutdownNow();
    if (sync != null) {
      sync.shutdownNow();
      try {
        sync.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      for (Buffer b : buffers.values()) {
        if (b.owned) {
          try {
            backend.disown(b.spec.name()); // a clean stop: another node takes over at once
          } catch (RuntimeException e) {
            // the lease lapses on its own
          }
        }
      }
      follower.interrupt();
    }
    backend.close();
  }
}
