package dev.sluice.server.buffer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
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
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
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
  private final BufferStore store;
  private final MeterRegistry registry;
  private final LongSupplier millis;
  private final HttpClient http;
  private final ScheduledExecutorService timers;
  private final Map<String, Buffer> buffers = new ConcurrentHashMap<>();
  private volatile boolean closed;

  /**
   * Opens {@code buffers.db} in the data dir and resumes every buffer's delivery.
   *
   * @param fsyncEveryCommit synchronous=FULL (power-loss safe) rather than NORMAL (crash safe)
   * @param millis the wall clock of schedules and histories (tests pass a fake one)
   */
  public Buffers(Engine engine, Path dataDir, MeterRegistry registry, LongSupplier millis, boolean fsyncEveryCommit)
      throws IOException {
    this.engine = engine;
    this.registry = registry;
    this.millis = millis;
    this.store = new BufferStore(dataDir, fsyncEveryCommit);
    this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10))
        .followRedirects(HttpClient.Redirect.NEVER).build();
    this.timers = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "sluice-buffer-timer");
      t.setDaemon(true);
      return t;
    });
    load();
    timers.scheduleWithFixedDelay(this::expire, 1, 60, TimeUnit.SECONDS);
  }

  // ---------------------------------------------------------------------------------------
  // Admin

  /** Creates a buffer; its pacing resource must exist (or an inline rate creates its own). */
  public BufferSpec create(JsonNode body) {
    open();
    BufferSpec spec = BufferSpec.parse(body);
    if (spec.resource() != null && engine.getLimit(spec.resource()).isEmpty()) {
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
        engine.setLimit(new LimitSpec(spec.pacingResource(), List.of(new RateSpec("requests", r.amount(), r.period(),
            r.burst())), 0, 100_000, Duration.ofSeconds(lease)));
      }
      long now = millis.getAsLong();
      join(store.write(c -> {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO buffers(name, spec, created) VALUES (?, ?, ?)")) {
          ps.setString(1, spec.name());
          ps.setString(2, spec.toStoredJson().toString());
          ps.setLong(3, now);
          ps.executeUpdate();
        }
        return null;
      }));
      Buffer b = new Buffer(spec, 1, false);
      buffers.put(spec.name(), b);
      b.meter();
    }
    log.info("buffer {} created: {} {} paced by {}", spec.name(), spec.method(), spec.toPublicJson().get("url").asText(),
        spec.pacingResource());
    return spec;
  }

  public Optional<BufferSpec> get(String name) {
    Buffer b = buffers.get(name);
    return b == null ? Optional.empty() : Optional.of(b.spec);
  }

  public List<String> names() {
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
    join(store.write(c -> {
      exec(c, "DELETE FROM items WHERE buffer = ?", name);
      exec(c, "DELETE FROM buffers WHERE name = ?", name);
      return null;
    }));
    if (b.spec.rate() != null) {
      try {
        engine.deleteLimit(b.spec.pacingResource());
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
    join(store.write(c -> {
      exec(c, "UPDATE buffers SET paused = ? WHERE name = ?", paused ? 1 : 0, b.spec.name());
      return null;
    }));
    synchronized (b) {
      b.paused = paused;
    }
  }

  /** Counts and rates of one buffer. */
  public ObjectNode stats(String name) {
    Buffer b = buffer(name);
    long[] done = store.read(c -> new long[] {
        BufferStore.count(c, "SELECT COUNT(*) FROM items WHERE buffer = ? AND state = 'completed'", name),
        BufferStore.count(c, "SELECT COUNT(*) FROM items WHERE buffer = ? AND state = 'failed'", name)});
    ObjectNode o = BufferSpec.JSON.createObjectNode();
    synchronized (b) {
      o.put("pending", b.open.size() - b.running);
      o.put("running", b.running);
      o.put("completed", done[0]);
      o.put("failed", done[1]);
      o.put("paused", b.paused);
      o.put("deliveredPerSecond", b.rate.perSecond(millis.getAsLong()));
      o.put("oldestPendingAgeSeconds", b.oldestAgeSeconds(millis.getAsLong()));
      o.put("delivered", b.delivered);
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
    CompletableFuture<List<Long>> written;
    synchronized (b) {
      if (b.deleted) {
        throw new EngineException(EngineException.Reason.NOT_FOUND, "buffer '" + name + "' was deleted");
      }
      long first = b.nextId;
      b.nextId += items.size();
      // Queued under the buffer's lock: commits happen in id order.
      written = store.write(c -> insert(c, name, first, items, now));
    }
    return written.thenApply(ids -> {
      synchronized (b) {
        for (int i = 0; i < ids.size(); i++) {
          long id = ids.get(i);
          if (!b.deleted && id >= 0 && !b.open.containsKey(id)) {
            NewItem it = items.get(i);
            b.open.put(id, new Item(id, it.key(), now, now));
          }
        }
      }
      pump(b);
      return ids.stream().map(Math::abs).toList();
    });
  }

  /** Inserts; returns each item's id (negated when it was a duplicate push of an earlier item). */
  private static List<Long> insert(Connection c, String name, long first, List<NewItem> items, long now)
      throws SQLException {
    List<Long> ids = new ArrayList<>(items.size());
    try (PreparedStatement find = c.prepareStatement("SELECT id FROM items WHERE buffer = ? AND idem = ?");
        PreparedStatement ins = c.prepareStatement("INSERT INTO items(buffer, id, body, headers, idem, okey, state,"
            + " next_at, history, created) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)")) {
      for (int i = 0; i < items.size(); i++) {
        NewItem it = items.get(i);
        long id = first + i;
        String idem = it.idempotencyKey() != null ? it.idempotencyKey() : "sluice-" + name + "-" + id;
        if (it.idempotencyKey() != null) {
          find.setString(1, name);
          find.setString(2, idem);
          try (ResultSet rs = find.executeQuery()) {
            if (rs.next()) {
              ids.add(-rs.getLong(1));
              continue;
            }
          }
        }
        ObjectNode h = BufferSpec.JSON.createObjectNode();
        it.headers().forEach(h::put);
        if (it.contentType() != null && it.headers().keySet().stream().noneMatch(k -> k.equalsIgnoreCase("content-type"))) {
          h.put("Content-Type", it.contentType());
        }
        ins.setString(1, name);
        ins.setLong(2, id);
        ins.setBytes(3, it.body());
        ins.setString(4, h.toString());
        ins.setString(5, idem);
        ins.setString(6, it.key());
        ins.setLong(7, now);
        ins.setString(8, Instant.ofEpochMilli(now) + " pushed\n");
        ins.setLong(9, now);
        ins.executeUpdate();
        ids.add(id);
      }
    }
    return ids;
  }

  /** An item's status, attempts, last status code, response excerpt and history. */
  public ObjectNode item(String name, long id) {
    buffer(name);
    ObjectNode o = store.read(c -> {
      try (PreparedStatement ps = c.prepareStatement("SELECT state, attempts, retries, next_at, status, excerpt,"
          + " history, created, finished, duplicate, idem, okey, open_attempt FROM items WHERE buffer = ? AND id = ?")) {
        ps.setString(1, name);
        ps.setLong(2, id);
        try (ResultSet rs = ps.executeQuery()) {
          if (!rs.next()) {
            return null;
          }
          ObjectNode x = BufferSpec.JSON.createObjectNode();
          x.put("id", id);
          x.put("buffer", name);
          String state = rs.getString(1);
          x.put("state", state.equals("pending") && rs.getInt(13) == 1 ? "running" : state);
          x.put("attempts", rs.getInt(2));
          x.put("retriesUsed", rs.getInt(3));
          if (state.equals("pending")) {
            x.put("nextAttemptAt", Instant.ofEpochMilli(rs.getLong(4)).toString());
          }
          int status = rs.getInt(5);
          if (!rs.wasNull()) {
            x.put("lastStatus", status);
          }
          x.put("responseExcerpt", rs.getString(6));
          x.put("possibleDuplicate", rs.getInt(10) == 1);
          x.put("idempotencyKey", rs.getString(11));
          x.put("key", rs.getString(12));
          x.put("created", Instant.ofEpochMilli(rs.getLong(8)).toString());
          long finished = rs.getLong(9);
          if (!rs.wasNull()) {
            x.put("finished", Instant.ofEpochMilli(finished).toString());
          }
          ArrayNode history = x.putArray("history");
          for (String line : rs.getString(7).split("\n")) {
            if (!line.isBlank()) {
              history.add(line);
            }
          }
          return x;
        }
      }
    });
    if (o == null) {
      throw new EngineException(EngineException.Reason.NOT_FOUND, "buffer '" + name + "' has no item " + id
          + " (or it was removed after its retention): check the id the push answered");
    }
    return o;
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
    long nextId;
    int running;
    long delivered;
    boolean paused;
    boolean deleted;
    ScheduledFuture<?> timer;
    long timerAt = Long.MAX_VALUE;
    boolean warnedMissingResource;

    Buffer(BufferSpec spec, long nextId, boolean paused) {
      this.spec = spec;
      this.nextId = nextId;
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
      if (b.paused || b.deleted || closed) {
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
    for (Item i : start) {
      acquire(b, i);
    }
  }

  private void acquire(Buffer b, Item i) {
    if (closed || b.deleted) {
      return;
    }
    engine.acquireAsync(b.spec.pacingResource(), Map.of("requests", 1L), Lane.DEFAULT, ACQUIRE_TIMEOUT.toNanos(),
        "buffer-" + b.spec.name() + "-" + i.id + "-" + ThreadLocalRandom.current().nextLong(Long.MAX_VALUE))
        .future().whenComplete((grant, error) -> {
          if (error == null) {
            attempt(b, i, grant);
            return;
          }
          Throwable e = error instanceof java.util.concurrent.CompletionException && error.getCause() != null
              ? error.getCause() : error;
          if (closed || b.deleted) {
            return;
          }
          if (e instanceof EngineException ee && ee.reason() == EngineException.Reason.DEADLINE) {
            acquire(b, i); // a long pause: keep our place in the line
            return;
          }
          if (!b.warnedMissingResource) {
            b.warnedMissingResource = true;
            log.warn("buffer {} cannot acquire on {}: {}; retrying every 5 s", b.spec.name(), b.spec.pacingResource(),
                e.getMessage());
          }
          timers.schedule(() -> acquire(b, i), 5, TimeUnit.SECONDS);
        });
  }

  /** Records the attempt durably, sends it, then records the outcome. */
  private void attempt(Buffer b, Item i, Grant grant) {
    String name = b.spec.name();
    long started = millis.getAsLong();
    store.write(c -> {
      exec(c, "UPDATE items SET attempts = attempts + 1, open_attempt = 1 WHERE buffer = ? AND id = ?", name, i.id);
      try (PreparedStatement ps = c.prepareStatement(
          "SELECT body, headers, idem, attempts FROM items WHERE buffer = ? AND id = ?")) {
        ps.setString(1, name);
        ps.setLong(2, i.id);
        try (ResultSet rs = ps.executeQuery()) {
          return rs.next() ? new Object[] {rs.getBytes(1), rs.getString(2), rs.getString(3), rs.getInt(4)} : null;
        }
      }
    }).whenComplete((row, error) -> {
      if (error != null || row == null || b.deleted || closed) {
        engine.releaseAsync(b.spec.pacingResource(), grant.permitId(), Map.of(), false, true);
        if (error != null && !closed) {
          log.warn("buffer {} item {}: recording the attempt failed: {}", name, i.id, error.getMessage());
          finishLater(b, i);
        }
        return;
      }
      HttpRequest request = request(b.spec, (byte[]) row[0], (String) row[1], (String) row[2]);
      int attempt = (Integer) row[3];
      http.sendAsync(request, HttpResponse.BodyHandlers.ofInputStream()).whenComplete((response, failure) -> {
        engine.releaseAsync(b.spec.pacingResource(), grant.permitId(), Map.of(), false, false);
        Outcome o = failure != null ? Outcome.error(failure) : Outcome.of(response, millis.getAsLong());
        record(b, i, attempt, started, o);
      });
    });
  }

  private void finishLater(Buffer b, Item i) {
    synchronized (b) {
      i.running = false;
      b.running--;
      i.nextAt = millis.getAsLong() + 1000;
    }
    pump(b);
  }

  private static HttpRequest request(BufferSpec spec, byte[] body, String itemHeaders, String idem) {
    HttpRequest.Builder r = HttpRequest.newBuilder(spec.url()).timeout(spec.timeout())
        .method(spec.method(), spec.method().equals("GET") ? HttpRequest.BodyPublishers.noBody()
            : HttpRequest.BodyPublishers.ofByteArray(body));
    spec.headers().forEach(r::setHeader);
    try {
      JsonNode h = BufferSpec.JSON.readTree(itemHeaders);
      h.fields().forEachRemaining(e -> r.setHeader(e.getKey(), e.getValue().asText()));
    } catch (IOException e) {
      // written by us as JSON: cannot happen
    }
    r.setHeader("Idempotency-Key", idem);
    r.setHeader("User-Agent", "sluice-buffer/0.1");
    return r.build();
  }

  /** What one attempt came to. */
  private record Outcome(int status, String excerpt, String error, long retryAfterMillis) {
    static Outcome error(Throwable t) {
      Throwable e = t instanceof java.util.concurrent.CompletionException && t.getCause() != null ? t.getCause() : t;
      return new Outcome(0, null, e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage()),
          0);
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
      return new Outcome(r.statusCode(), excerpt, null, retryAfter);
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
  private void record(Buffer b, Item i, int attempt, long started, Outcome o) {
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
      if (s >= 200 && s < 300) {
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
      i.retries = retries;
      i.running = false;
      b.running--;
      if (state.equals("pending")) {
        i.nextAt = next;
      } else {
        b.open.remove(i.id);
      }
      if (state.equals("completed")) {
        b.delivered++;
        b.rate.add(now);
      }
      b.counted(verdict);
    }
    if (s == 429) {
      // Upstream feedback, as a worker's report: the shared resource pauses for everyone.
      try {
        engine.report(b.spec.pacingResource(), true, o.retryAfterMillis() * 1_000_000L, Map.of());
      } catch (EngineException e) {
        log.debug("buffer {}: reporting the 429 failed: {}", name, e.getMessage());
      }
    }
    String line = Instant.ofEpochMilli(now) + " attempt " + attempt + ": "
        + (o.error() != null ? o.error() : "HTTP " + s) + " after " + (now - started) + " ms" + note + "\n";
    boolean finished = !state.equals("pending");
    int retriesUsed = retries;
    long nextAt = next;
    store.write(c -> {
      try (PreparedStatement ps = c.prepareStatement("UPDATE items SET state = ?, open_attempt = 0, retries = ?,"
          + " next_at = ?, status = ?, excerpt = ?, history = history || ?, finished = ? WHERE buffer = ? AND id = ?")) {
        ps.setString(1, state);
        ps.setInt(2, retriesUsed);
        ps.setLong(3, nextAt);
        if (s == 0) {
          ps.setNull(4, java.sql.Types.INTEGER);
        } else {
          ps.setInt(4, s);
        }
        ps.setString(5, o.excerpt());
        ps.setString(6, line);
        if (finished) {
          ps.setLong(7, now);
        } else {
          ps.setNull(7, java.sql.Types.INTEGER);
        }
        ps.setString(8, name);
        ps.setLong(9, i.id);
        ps.executeUpdate();
      }
      return null;
    }).whenComplete((r, error) -> {
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
    List<Object[]> rows = store.read(c -> {
      List<Object[]> out = new ArrayList<>();
      try (PreparedStatement ps = c.prepareStatement("SELECT name, spec, paused FROM buffers ORDER BY name");
          ResultSet rs = ps.executeQuery()) {
        while (rs.next()) {
          out.add(new Object[] {rs.getString(1), rs.getString(2), rs.getInt(3) == 1});
        }
      }
      return out;
    });
    long now = millis.getAsLong();
    for (Object[] row : rows) {
      BufferSpec spec;
      try {
        spec = BufferSpec.parse(withHeaders((String) row[1]));
      } catch (IOException | RuntimeException e) {
        log.error("buffer {} in buffers.db cannot be read ({}): left out", row[0], e.getMessage());
        continue;
      }
      String name = spec.name();
      // Attempts open at the crash may have reached the endpoint: send again, flagged.
      int reopened = join(store.write(c -> {
        try (PreparedStatement ps = c.prepareStatement("UPDATE items SET open_attempt = 0, duplicate = 1,"
            + " history = history || ? WHERE buffer = ? AND state = 'pending' AND open_attempt = 1")) {
          ps.setString(1, Instant.ofEpochMilli(now) + " restart: the last attempt was open when the coordinator"
              + " stopped and may have reached the endpoint; sending again (possible duplicate)\n");
          ps.setString(2, name);
          return ps.executeUpdate();
        }
      }));
      long maxId = store.read(c -> BufferStore.count(c, "SELECT COALESCE(MAX(id), 0) FROM items WHERE buffer = ?", name));
      Buffer b = new Buffer(spec, maxId + 1, (Boolean) row[2]);
      store.read(c -> {
        try (PreparedStatement ps = c.prepareStatement(
            "SELECT id, okey, created, next_at, retries FROM items WHERE buffer = ? AND state = 'pending' ORDER BY id")) {
          ps.setString(1, name);
          try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) {
              Item it = new Item(rs.getLong(1), rs.getString(2), rs.getLong(3), rs.getLong(4));
              it.retries = rs.getInt(5);
              b.open.put(it.id, it);
            }
          }
        }
        return null;
      });
      buffers.put(name, b);
      b.meter();
      log.info("buffer {} loaded: {} items to deliver{}{}", name, b.open.size(),
          reopened > 0 ? ", " + reopened + " re-sent after a crash (flagged as possible duplicates)" : "",
          b.paused ? ", paused" : "");
    }
    for (Buffer b : buffers.values()) {
      pump(b);
    }
  }

  private static JsonNode withHeaders(String stored) throws IOException {
    return BufferSpec.JSON.readTree(stored);
  }

  /** Drops completed and failed items older than their buffer's retention. */
  private void expire() {
    long now = millis.getAsLong();
    for (Buffer b : buffers.values()) {
      store.write(c -> {
        exec(c, "DELETE FROM items WHERE buffer = ? AND state IN ('completed', 'failed') AND finished < ?",
            b.spec.name(), now - b.spec.retention().toMillis());
        return null;
      });
    }
  }

  private Buffer buffer(String name) {
    open();
    Buffer b = buffers.get(name);
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

  private static void exec(Connection c, String sql, Object... args) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < args.length; i++) {
        ps.setObject(i + 1, args[i]);
      }
      ps.executeUpdate();
    }
  }

  private static <T> T join(CompletableFuture<T> f) {
    try {
      return f.join();
    } catch (java.util.concurrent.CompletionException e) {
      if (e.getCause() instanceof RuntimeException re) {
        throw re;
      }
      throw new IllegalStateException(e.getCause());
    }
  }

  /** Stops delivering. Attempts in flight are abandoned: after a restart they are sent again, flagged. */
  @Override
  public void close() {
    closed = true;
    timers.shutdownNow();
    store.close();
  }
}
