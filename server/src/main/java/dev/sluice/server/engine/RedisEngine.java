package dev.sluice.server.engine;

import static dev.sluice.server.engine.RedisCalls.encodeLoad;
import static dev.sluice.server.engine.RedisCalls.num;
import static dev.sluice.server.engine.RedisCalls.unexpected;
import static dev.sluice.server.engine.RedisCalls.word;

import dev.sluice.client.HumanDurations;
import dev.sluice.server.config.ServerConfigKeys.Limits;
import io.lettuce.core.RedisException;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The distributed engine: every resource's state in Redis, shared by any number of nodes.
 *
 * <p>Each read-modify-write of a resource is one call of {@code redis-engine.lua} (EVALSHA),
 * which Redis runs atomically, so the algorithm is the memory engine's with Redis as the
 * monitor; see that script and {@code docs/ARCHITECTURE.md}. The keys of one resource share
 * the hash tag {@code {resource}}, so everything works on Redis Cluster; time comes from Redis
 * ({@code TIME}), so node clocks do not matter.
 *
 * <p>Waiters stay parked on the node that received them. The queue itself lives in Redis (one
 * sorted set per lane, ordered by arrival at Redis), so any node's operation can grant anyone:
 * grants for its own waiters come back in the script's reply, grants for another node's
 * waiters go to that node on its pub/sub channel. A node with waiters on a resource schedules
 * one wake-up, at the instant the script computed (at most {@link #HEARTBEAT} away, which is
 * also how the others know it is alive); waiters of a node that stopped beating are dropped.
 *
 * <p>The {@link Engine} methods never wait for Redis: they use Lettuce's asynchronous API and
 * finish on Lettuce's event loop, so what runs after a reply must never wait for Redis either.
 * Calls have a short command timeout: a node whose Redis is away answers UNAVAILABLE within
 * that timeout and recovers by itself (Lettuce reconnects). Work that is not a caller's (a
 * waiter leaving, pub/sub news, housekeeping) still calls Redis synchronously, on the node's
 * event thread or the scheduler's, never on an event loop.
 *
 * <p>The parts: {@link RedisStore} (the connection, shared with the API keys and the buffers),
 * {@link RedisCalls} (the script's calls), {@link RedisLimits} (the limit cache), {@link
 * RedisBatches} (acquires and releases batched per resource) and {@link RedisWaiters} (the
 * node's parked acquires, wake-ups and pub/sub). This class holds the {@link Engine} methods.
 */
public final class RedisEngine implements Engine {

  private static final Logger log = LoggerFactory.getLogger(RedisEngine.class);
  static final Duration HEARTBEAT = RedisWaiters.HEARTBEAT;
  private static final long MAX_RETRY_AFTER = TimeUnit.HOURS.toNanos(1);

  private final RedisStore store;
  private final String nodeId;
  private final Ticker ticker; // null: Redis time
  private final Scheduler scheduler;
  private final int defaultMaxWaiting;
  private final Duration defaultLease;
  private final long housekeepingNanos;
  private final long templateIdleMicros;

  private final RedisCalls calls;
  private final RedisLimits limits;
  private final RedisWaiters waiters;
  private final RedisBatches batches;
  private final StoreLoss loss;
  private final AtomicLong ids = new AtomicLong();
  private volatile boolean closed;
  private volatile Scheduler.Cancellable housekeeping;

  private RedisEngine(Builder b, RedisStore store) {
    this.store = store;
    this.nodeId = store.nodeId();
    this.ticker = b.ticker;
    this.scheduler = b.scheduler;
    this.defaultMaxWaiting = b.defaultMaxWaiting;
    this.defaultLease = b.defaultLease;
    this.housekeepingNanos = b.housekeeping.toNanos();
    this.templateIdleMicros = b.templateIdle.toNanos() / 1000;
    this.calls = new RedisCalls(store, ticker, b.aging.toNanos() / 1000, b.nodeTimeout.toNanos() / 1000);
    this.limits = new RedisLimits(calls);
    this.waiters = new RedisWaiters(calls, limits, scheduler);
    this.batches = waiters.batches;
    waiters.subscribe();
    this.loss = new StoreLoss(store, limits, waiters, spec -> writeLimit(spec, true), waiters.events);
    loss.start();
    limits.materializer(this::materialize);
    waiters.onTemplates(this::templatesChanged);
    limits.reload();
    limits.reloadTemplates();
    if (housekeepingNanos > 0) {
      housekeeping = scheduler.schedule(this::housekeepAndReschedule, housekeepingNanos);
    }
  }

  /** A builder with the defaults documented on each setter. */
  public static Builder builder() {
    return new Builder();
  }

  /** Configures a {@link RedisEngine}. */
  public static final class Builder {
    private final RedisStore.Builder storeBuilder = RedisStore.builder();
    private boolean storeConfigured;
    private RedisStore store;
    private Ticker ticker;
    private Scheduler scheduler;
    private int defaultMaxWaiting = Limits.MAX_WAITING.defaultValue();
    private Duration defaultLease = Limits.LEASE_TTL.defaultValue();
    private Duration aging = Limits.AGING.defaultValue();
    private Duration nodeTimeout = Duration.ofSeconds(3);
    private Duration housekeeping = HEARTBEAT;
    private Duration templateIdle = Duration.ofMinutes(10);

    private Builder() {}

    /**
     * The store to use, shared with other users of the same Redis (API keys, buffers); its node
     * id is the engine's. {@link RedisEngine#closeStore()} closes it. Instead of {@link #uri},
     * {@link #nodeId} and {@link #commandTimeout}, which make a store of the engine's own.
     */
    public Builder store(RedisStore store) {
      this.store = Objects.requireNonNull(store, "store");
      return this;
    }

    /** Where Redis is; see {@link RedisStore.Builder#uri}. */
    public Builder uri(String uri) {
      storeBuilder.uri(uri);
      storeConfigured = true;
      return this;
    }

    /** This node's id on the shared store; default a random one. */
    public Builder nodeId(String id) {
      storeBuilder.nodeId(id);
      storeConfigured = true;
      return this;
    }

    /**
     * A test clock: time passed to the scripts instead of Redis {@code TIME}. Production nodes
     * leave it unset so that every node uses the one clock Redis has.
     */
    public Builder ticker(Ticker ticker) {
      this.ticker = Objects.requireNonNull(ticker, "ticker");
      storeBuilder.ticker(ticker);
      return this;
    }

    /** Runs wake-ups, deadlines and housekeeping; required. */
    public Builder scheduler(Scheduler scheduler) {
      this.scheduler = Objects.requireNonNull(scheduler, "scheduler");
      return this;
    }

    /** Waiting room size for limits that do not set one; default 10 000. */
    public Builder defaultMaxWaiting(int n) {
      this.defaultMaxWaiting = Limits.MAX_WAITING.check(n);
      return this;
    }

    /** Lease length for limits that do not set one; default 30 s. */
    public Builder defaultLease(Duration d) {
      this.defaultLease = Limits.LEASE_TTL.check(d);
      return this;
    }

    /** Lane aging threshold; default 10 s (see {@link MemoryEngine.Builder#aging}). */
    public Builder aging(Duration d) {
      this.aging = Limits.AGING.check(d);
      return this;
    }

    /**
     * How long a node may go unheard before the others drop its waiters; default 3 s. Nodes
     * with waiters are heard at least every second.
     */
    public Builder nodeTimeout(Duration d) {
      if (d.compareTo(HEARTBEAT.multipliedBy(2)) < 0) {
        throw new IllegalArgumentException(
            "node timeout " + d + " is too short: use at least 2 heartbeats (2s)");
      }
      this.nodeTimeout = d;
      return this;
    }

    /** Longest wait for one Redis call before answering UNAVAILABLE; default 1 s. */
    public Builder commandTimeout(Duration d) {
      storeBuilder.commandTimeout(d);
      storeConfigured = true;
      return this;
    }

    /**
     * How often the node checks that Redis still holds its data and refreshes its view of the
     * limits; default 1 s; zero turns it off (tests call {@link RedisEngine#housekeep()}).
     */
    public Builder housekeeping(Duration d) {
      this.housekeeping = Objects.requireNonNull(d, "housekeeping");
      return this;
    }

    /**
     * How long a template-made bucket's keys stay after it is idle (full, nobody waiting, no
     * permit held); default 10 min, at least 1 min. Then Redis drops them (key TTLs): an idle
     * name leaves no keys.
     */
    public Builder templateIdle(Duration d) {
      if (d.compareTo(Duration.ofMinutes(1)) < 0) {
        throw new IllegalArgumentException("template idle " + d + " is too short: use at least 1 minute");
      }
      this.templateIdle = d;
      return this;
    }

    /**
     * Connects (unless given a {@link #store}), loads the script and the limits.
     *
     * @throws IOException if Redis cannot be reached; the message names the URI and the fix
     */
    public RedisEngine build() throws IOException {
      if (store != null && storeConfigured) {
        throw new IllegalStateException(
            "both store(...) and uri/nodeId/commandTimeout are set: configure those on the store");
      }
      if (scheduler == null) {
        throw new IllegalStateException("scheduler is required: call scheduler(...)");
      }
      boolean owns = store == null;
      RedisStore s = owns ? storeBuilder.build() : store;
      try {
        return new RedisEngine(this, s);
      } catch (RedisException e) {
        if (owns) {
          s.close();
        }
        throw RedisStore.cannotReach(s.describe(), e);
      } catch (RuntimeException e) {
        if (owns) {
          s.close();
        }
        throw e;
      }
    }
  }

  @Override
  public boolean storeReachable() {
    return store.reachable();
  }

  /** This node's id on the shared store. */
  public String nodeId() {
    return nodeId;
  }

  /** The store, without credentials, for logs. */
  public String describeStore() {
    return store.describe();
  }

  // ---------------------------------------------------------------------------------------
  // Limits

  @Override
  public LimitSpec normalized(LimitSpec limit) {
    return Validation.limit(limit, defaultMaxWaiting, defaultLease);
  }

  @Override
  public CompletableFuture<Boolean> setLimit(LimitSpec limit) {
    LimitSpec spec;
    try {
      spec = Validation.limit(limit, defaultMaxWaiting, defaultLease);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    return writeLimit(spec, false)
        .thenApply(
            created -> {
              // The audit line, with who and before → after, is LimitChanges's.
              log.debug("limit {} {}: {}", created ? "created" : "changed", spec.resource(), MemoryEngine.describe(spec));
              return created;
            });
  }

  /** Writes a limit; with {@code onlyIfAbsent}, a restore that leaves an existing one alone. */
  private CompletableFuture<Boolean> writeLimit(LimitSpec spec, boolean onlyIfAbsent) {
    String version = limits.newVersion();
    Map<String, String> fields = RedisLimits.encode(spec, version);
    String[] args = new String[1 + fields.size() * 2];
    args[0] = onlyIfAbsent ? "1" : "0";
    int i = 1;
    for (Map.Entry<String, String> e : fields.entrySet()) {
      args[i++] = e.getKey();
      args[i++] = e.getValue();
    }
    return calls.callAsync(spec.resource(), "setlimit", args)
        .thenCompose(
            reply -> {
              String w = word(reply);
              if (w.equals("EXISTS")) {
                return CompletableFuture.completedFuture(false);
              }
              return calls.reached(store.async().sadd(RedisLimits.LIMITS_KEY, spec.resource()))
                  .thenCompose(
                      added ->
                          calls.reached(
                              store.async()
                                  .publish(RedisWaiters.CONFIG_CHANNEL, "S\t" + spec.resource() + "\t" + nodeId)))
                  .thenApply(
                      published -> {
                        limits.remember(spec, version);
                        int sep = reply.indexOf("--");
                        for (int m = sep + 1; sep > 0 && m + 1 < reply.size(); m += 2) {
                          waiters.changed(spec.resource(), (String) reply.get(m), reply.get(m + 1));
                        }
                        waiters.afterDrain(spec.resource(), reply, 1);
                        return w.equals("CREATED");
                      });
            });
  }

  @Override
  public CompletableFuture<Optional<LimitSpec>> getLimit(String resource) {
    try {
      Validation.resource(resource);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    // Read from Redis, not the cache: a change another node just made shows at once.
    return limits.fetchAsync(resource).thenApply(c -> c == null ? Optional.empty() : Optional.of(c.spec()));
  }

  @Override
  public CompletableFuture<Optional<LimitSpec>> cachedLimit(String resource) {
    RedisLimits.Cfg c = limits.cached(resource);
    if (c != null) {
      return CompletableFuture.completedFuture(Optional.of(c.spec()));
    }
    if (limits.bornLately(resource)) {
      return CompletableFuture.completedFuture(Optional.empty()); // a template's bucket, no limit of its own
    }
    return getLimit(resource);
  }

  @Override
  public CompletableFuture<List<LimitSpec>> listLimits(String prefix) {
    return limits.list(prefix, true);
  }

  @Override
  public CompletableFuture<List<LimitSpec>> cachedLimits(String prefix) {
    return limits.list(prefix, false);
  }

  @Override
  public CompletableFuture<Void> deleteLimit(String resource) {
    try {
      Validation.resource(resource);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    return calls.callAsync(resource, "dellimit")
        .thenCompose(
            reply -> {
              if (word(reply).equals("NOTFOUND")) {
                limits.forget(resource);
                throw EngineException.notFound(resource);
              }
              return calls.reached(store.async().srem(RedisLimits.LIMITS_KEY, resource))
                  .thenCompose(
                      removed ->
                          calls.reached(
                              store.async().publish(RedisWaiters.CONFIG_CHANNEL, "D\t" + resource + "\t" + nodeId)));
            })
        .thenAccept(
            published -> {
              limits.deleted(resource);
              waiters.deleted(resource);
              log.debug("limit deleted {}", resource);
            });
  }

  // ---------------------------------------------------------------------------------------
  // Templates

  @Override
  public LimitSpec normalizedTemplate(LimitSpec template) {
    return Templates.spec(template, defaultMaxWaiting, defaultLease);
  }

  @Override
  public CompletableFuture<Boolean> setTemplate(LimitSpec template) {
    LimitSpec spec;
    try {
      spec = Templates.spec(template, defaultMaxWaiting, defaultLease);
      Templates.checkRoom(limits.templates(), spec.resource());
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    String pattern = spec.resource();
    String version = limits.newVersion();
    return calls.reached(store.async().hget(RedisLimits.TEMPLATES_KEY, pattern))
        .thenCompose(old -> old != null
            // A change keeps the template's creation: its buckets keep what they hold.
            ? CompletableFuture.completedFuture(RedisLimits.decodeTemplate(pattern, old).createdAt() / 1000)
            : nowMicros())
        .thenCompose(created -> calls.reached(store.async().hset(RedisLimits.TEMPLATES_KEY, pattern,
                RedisLimits.encodeTemplate(spec, version, created)))
            .thenCompose(isNew -> calls.reached(store.async()
                    .publish(RedisWaiters.CONFIG_CHANNEL, "T\t" + pattern + "\t" + nodeId))
                .thenCompose(published -> {
                  limits.templates(limits.templates().with(new Templates.Template(spec, created * 1000, version)));
                  log.debug("template {} {}: {}", isNew ? "created" : "changed", pattern, MemoryEngine.describe(spec));
                  return templatesChanged(pattern).thenApply(done -> isNew);
                })));
  }

  /** Now on the scripts' clock, in microseconds. */
  private CompletableFuture<Long> nowMicros() {
    if (ticker != null) {
      return CompletableFuture.completedFuture(ticker.read() / 1000);
    }
    return calls.reached(store.async().time())
        .thenApply(t -> Long.parseLong(t.get(0)) * 1_000_000 + Long.parseLong(t.get(1)));
  }

  @Override
  public CompletableFuture<List<LimitSpec>> listTemplates() {
    return calls.reached(store.async().hgetall(RedisLimits.TEMPLATES_KEY))
        .thenApply(raw -> RedisLimits.decodeTemplates(raw).all().stream().map(Templates.Template::spec).toList());
  }

  @Override
  public CompletableFuture<Void> deleteTemplate(String pattern) {
    try {
      Templates.pattern(pattern);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    return calls.reached(store.async().hdel(RedisLimits.TEMPLATES_KEY, pattern))
        .thenCompose(n -> {
          if (n == 0) {
            throw MemoryEngine.templateNotFound(pattern);
          }
          return calls.reached(store.async().publish(RedisWaiters.CONFIG_CHANNEL, "T\t" + pattern + "\t" + nodeId));
        })
        .thenCompose(published -> {
          limits.templates(limits.templates().without(pattern));
          log.debug("template deleted {}", pattern);
          return templatesChanged(pattern);
        });
  }

  @Override
  public CompletableFuture<Optional<LimitSpec>> templateFor(String resource) {
    return getLimit(resource).thenApply(own -> {
      if (own.isPresent()) {
        return Optional.<LimitSpec>empty();
      }
      Templates.Template t = limits.templates().match(resource);
      return t == null ? Optional.<LimitSpec>empty() : Optional.of(t.spec());
    });
  }

  /**
   * A template changed (here or, told on the config channel, on another node): the buckets this
   * node has waiters on and that the pattern matches follow it now (made again from the
   * template that matches them now, or deleted when none does: their waiters end with
   * NOT_FOUND); other buckets follow at their next operation, which reads the new version.
   */
  private CompletableFuture<Void> templatesChanged(String pattern) {
    List<CompletableFuture<?>> all = new ArrayList<>();
    for (String resource : waiters.waitingOn()) {
      if (!Templates.matches(pattern, resource) || limits.cached(resource) != null) {
        continue;
      }
      Templates.Template t = limits.templates().match(resource);
      CompletableFuture<?> done = t != null
          ? materialize(resource, t)
          : calls.callAsync(resource, "dellimit").thenAccept(reply -> waiters.deleted(resource));
      all.add(done.handle((r, e) -> {
        if (e != null) {
          log.debug("template bucket {} not brought up to date: {}", resource, e.toString());
        }
        return null;
      }));
    }
    return CompletableFuture.allOf(all.toArray(CompletableFuture[]::new));
  }

  /**
   * Makes a name's bucket from its template in Redis, or brings it up to the template's version
   * (the script's {@code settpl}: a limit change, so waiters that no longer fit end). A limit of
   * its own found there wins.
   */
  private CompletableFuture<RedisLimits.Cfg> materialize(String resource, Templates.Template t) {
    Map<String, String> fields = RedisLimits.encode(t.specFor(resource), t.version());
    String[] args = new String[4 + fields.size() * 2];
    args[0] = t.pattern();
    args[1] = t.version();
    args[2] = Long.toString(t.createdAt() / 1000);
    args[3] = Long.toString(templateIdleMicros);
    int i = 4;
    for (Map.Entry<String, String> e : fields.entrySet()) {
      args[i++] = e.getKey();
      args[i++] = e.getValue();
    }
    return calls.callAsync(resource, "settpl", args)
        .thenCompose(reply -> {
          if (word(reply).equals("OWN")) {
            return limits.fetchAsync(resource).thenApply(c -> {
              if (c == null) {
                throw limits.vanished(resource);
              }
              return c;
            });
          }
          RedisLimits.Cfg c = new RedisLimits.Cfg(t.specFor(resource), t.version());
          limits.born(resource, c);
          if (!word(reply).equals("SAME")) {
            int sep = reply.indexOf("--");
            for (int m = sep + 1; sep > 0 && m + 1 < reply.size(); m += 2) {
              waiters.changed(resource, (String) reply.get(m), reply.get(m + 1));
            }
            waiters.afterDrain(resource, reply, 1);
          }
          return CompletableFuture.completedFuture(c);
        });
  }

  // ---------------------------------------------------------------------------------------
  // Worker operations

  /**
   * Never waits for Redis: the acquire joins its resource's next batch and the ticket completes
   * from the reply, on Lettuce's event loop. Every refusal fails the ticket's future. Its {@link
   * Ticket#cancel()} does not wait either: a waiter leaves the queue from another thread.
   */
  @Override
  public Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant) {
    try {
      return new RedisWaiters.AsyncTicket(startAcquire(resource, load, lane, timeoutNanos, requestId, tenant));
    } catch (EngineException e) {
      return new RefusedTicket(e);
    }
  }

  /**
   * Checks what can be checked here and hands the acquire to its resource's batcher; a limit
   * this node has not cached is read first, without waiting.
   */
  private RedisBatches.AcquireOp startAcquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant) {
    Objects.requireNonNull(lane, "lane");
    String who = tenant == null || tenant.isEmpty() ? TenantPolicy.DEFAULT_TENANT : Validation.tenant(tenant);
    String rid =
        requestId == null || requestId.isEmpty()
            ? nodeId + "." + Long.toString(ids.incrementAndGet(), 36)
            : Validation.requestId(requestId);
    if (closed) {
      throw shuttingDown();
    }
    if (timeoutNanos < 0) {
      throw EngineException.invalid("timeout " + timeoutNanos + "ns is negative: use 0 or more");
    }
    Validation.resource(resource);
    RedisWaiters.RWaiter w = waiters.newWaiter(resource, rid, load, lane, who, timeoutNanos);
    RedisBatches.AcquireOp op = new RedisBatches.AcquireOp(waiters, w, load, lane);
    RedisLimits.Cfg c = limits.cached(resource);
    if (c != null) {
      waiters.admit(op, c);
      return op;
    }
    limits.cfgAsync(resource)
        .whenComplete(
            (cfg, error) -> {
              try {
                if (error != null) {
                  throw EngineException.unwrap(error);
                }
                waiters.admit(op, cfg);
              } catch (Throwable e) {
                op.refuse(e instanceof EngineException ee ? ee : unexpected(e));
              }
            });
    return op;
  }

  @Override
  public CompletableFuture<Boolean> cancel(String resource, String requestId) {
    try {
      Validation.requestId(requestId);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    return limits.cfgAsync(resource)
        .thenCompose(c -> calls.callAsync(resource, "leave", requestId, "cancelled", "0"))
        .thenApply(
            reply -> {
              if (!word(reply).equals("LEFT")) {
                return false;
              }
              waiters.left(resource, requestId);
              waiters.afterDrain(resource, reply, RedisWaiters.LEFT_TAIL);
              return true;
            });
  }

  /** Never waits for Redis: the release joins its resource's next batch. */
  @Override
  public CompletableFuture<Boolean> release(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    try {
      Objects.requireNonNull(permitId, "permitId");
      Validation.resource(resource);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
    return limits.cfgAsync(resource).thenCompose(c -> startRelease(c, resource, permitId, actual, settle, unused));
  }

  private CompletableFuture<Boolean> startRelease(
      RedisLimits.Cfg c, String resource, String permitId, Map<String, Long> actual, boolean settle,
      boolean unused) {
    if (settle && !unused) {
      Validation.usage(c.spec(), actual, "settle", false);
    }
    String mode = unused ? "unused" : settle ? "settle" : "plain";
    return batches.release(resource, permitId, mode, settle && !unused ? encodeLoad(actual) : "-");
  }

  @Override
  public CompletableFuture<List<String>> renew(String resource, List<String> permitIds) {
    return limits.cfgAsync(resource)
        .thenCompose(c -> calls.callAsync(resource, "renew", permitIds.toArray(String[]::new)))
        .thenApply(
            reply -> {
              if (word(reply).equals("NOTFOUND")) {
                // Deleted, or Redis lost its data: then UNAVAILABLE, and the holder's retry,
                // once the limit is restored, adopts its permit back.
                throw limits.vanished(resource);
              }
              waiters.afterDrain(resource, reply, 1);
              List<String> expired = new ArrayList<>();
              boolean after = false;
              for (Object o : reply) {
                if (after) {
                  expired.add((String) o);
                } else if ("--".equals(o)) {
                  after = true;
                }
              }
              return expired;
            });
  }

  @Override
  public CompletableFuture<Long> leaseTtlNanos(String resource) {
    return limits.cfgAsync(resource).thenApply(c -> c.spec().leaseTtl().toNanos());
  }

  @Override
  public CompletableFuture<Long> report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    return limits.cfgAsync(resource)
        .thenCompose(
            c -> {
              Validation.usage(c.spec(), remaining, "remaining", true);
              if (retryAfterNanos < 0 || retryAfterNanos > MAX_RETRY_AFTER) {
                throw EngineException.invalid(
                    "retry-after " + HumanDurations.formatNanos(retryAfterNanos) + " is out of range: use 0 to 1h");
              }
              return calls.callAsync(resource, "report", throttled ? "1" : "0",
                  Long.toString(retryAfterNanos / 1000), encodeLoad(remaining));
            })
        .thenApply(
            reply -> {
              if (word(reply).equals("NOTFOUND")) {
                throw limits.vanished(resource); // deleted, or Redis lost its data
              }
              if (throttled) {
                log.info("upstream throttled {}: pausing grants for {}", resource,
                    HumanDurations.formatNanos(retryAfterNanos));
              }
              long left = num(reply.get(1));
              waiters.afterDrain(resource, reply, 2);
              return left < 0 ? -1 : left * 1000;
            });
  }

  @Override
  public CompletableFuture<Long> pause(String resource, long nanos) {
    return limits.cfgAsync(resource)
        .thenCompose(c -> calls.callAsync(resource, "pause", Long.toString(nanos < 0 ? -1 : nanos / 1000)))
        .thenApply(
            reply -> {
              if (word(reply).equals("NOTFOUND")) {
                throw EngineException.notFound(resource);
              }
              long left = num(reply.get(1));
              waiters.afterDrain(resource, reply, 2);
              long out = left < 0 ? -1 : left * 1000;
              log.info("paused {} {}", resource, out < 0 ? "until resumed" : "for " + HumanDurations.formatNanos(out));
              return out;
            });
  }

  @Override
  public CompletableFuture<Void> resume(String resource) {
    return limits.cfgAsync(resource)
        .thenCompose(c -> calls.callAsync(resource, "resume"))
        .thenAccept(
            reply -> {
              if (word(reply).equals("NOTFOUND")) {
                throw EngineException.notFound(resource);
              }
              waiters.afterDrain(resource, reply, 1);
              log.info("resumed {}", resource);
            });
  }

  @Override
  public CompletableFuture<Long> estimate(String resource, Map<String, Long> load, Lane lane, String tenant) {
    String who;
    try {
      Objects.requireNonNull(lane, "lane");
      who = tenant == null || tenant.isEmpty() ? TenantPolicy.DEFAULT_TENANT : Validation.tenant(tenant);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    return limits.cfgAsync(resource)
        .thenCompose(c -> calls.callAsync(resource, "estimate",
            RedisCalls.encodeLoad(Validation.load(c.spec(), load)), Integer.toString(lane.ordinal() + 1), who))
        .thenApply(reply -> {
          if (word(reply).equals("NOTFOUND")) {
            throw EngineException.notFound(resource);
          }
          long us = num(reply.get(1));
          return us < 0 ? -1L : us * 1000;
        });
  }

  @Override
  public CompletableFuture<ResourceSnapshot> stats(String resource) {
    return limits.cfgAsync(resource)
        .thenCompose(
            c ->
                calls.callAsync(resource, "stats")
                    .thenCompose(
                        r -> {
                          if (word(r).equals("NOTFOUND")) {
                            limits.forget(resource);
                            throw EngineException.notFound(resource);
                          }
                          if (c.version().equals(r.get(1))) {
                            return CompletableFuture.completedFuture(snapshot(c, r));
                          }
                          return limits.fetchAsync(resource)
                              .thenApply(
                                  f -> {
                                    if (f == null) {
                                      throw EngineException.notFound(resource);
                                    }
                                    return snapshot(f, r);
                                  });
                        }));
  }

  private ResourceSnapshot snapshot(RedisLimits.Cfg c, List<Object> r) {
    return RedisCalls.snapshot(c.spec(), r, waiters.percentiles(c.spec().resource()));
  }

  // ---------------------------------------------------------------------------------------
  // Housekeeping: data loss, limits view, idle state

  private void housekeepAndReschedule() {
    if (closed) {
      return;
    }
    try {
      housekeep();
    } catch (RuntimeException e) {
      log.debug("housekeeping failed: {}", e.toString());
    } finally {
      if (!closed) {
        housekeeping = scheduler.schedule(this::housekeepAndReschedule, housekeepingNanos);
      }
    }
  }

  /**
   * Checks that Redis still holds the store and refreshes this node's view of the limits.
   * When Redis lost its data (restart without persistence, failover to an empty replica,
   * FLUSHALL), this node restores every limit it last knew and ends its waiters with
   * UNAVAILABLE (see {@link StoreLoss}); a reconnection or a NOSCRIPT reply checks at once too.
   * Logged loudly: the operator should check the limits. Also drops the wait stats of resources
   * idle for a while.
   */
  public void housekeep() {
    loss.check(StoreLoss.HOUSEKEEPING);
    limits.refresh(ticker == null ? System.nanoTime() : ticker.read());
    waiters.housekeep();
  }

  /** How many times this node found that Redis had lost its data, and recovered. */
  public long storeLosses() {
    return loss.losses();
  }

  /**
   * How many grants reached this node later than they stay fresh (a reply or notice held up on
   * the way) and were asked for again instead of handed over (RedisWaiters#stale).
   */
  public long staleGrants() {
    return waiters.staleGrants.get();
  }

  // ---------------------------------------------------------------------------------------

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    Scheduler.Cancellable h = housekeeping;
    if (h != null) {
      h.cancel();
    }
    waiters.close(RedisEngine::shuttingDown);
  }

  /**
   * For tests that compare stores step by step: returns once every call this node started on
   * the store (batched acquires, releases, give-backs, waiters leaving) has been answered and
   * handled.
   */
  void awaitQuiet() {
    batches.awaitQuiet();
  }

  /** Test hook: the name in Redis of the call behind a ticket {@link #acquire} returned. */
  static String attemptOf(Ticket t) {
    return (t instanceof RedisWaiters.AsyncTicket a ? a.op.w : (RedisWaiters.RWaiter) t).attempt();
  }

  /** Test hook: one call of the engine's script on {@code resource}, as a node would make it. */
  List<Object> script(String resource, String op, String... args) {
    return calls.call(resource, op, args);
  }

  /** Test hook: while held, acquires and releases wait; let go, they leave in batches. */
  void holdBatches(boolean hold) {
    batches.hold(hold);
  }

  /**
   * For tests: how many entries the per-resource tables hold: parked-waiter tables, batchers,
   * wait stats, remembered deliveries, cached and last known limits.
   */
  Map<String, Integer> tableSizes() {
    int[] w = waiters.sizes();
    Map<String, Integer> out = new LinkedHashMap<>();
    out.put("locals", w[0]);
    out.put("batchers", batches.size());
    out.put("waits", w[1]);
    out.put("delivered", w[2]);
    out.put("limits", limits.sizes()[0]);
    out.put("lastKnown", limits.sizes()[1]);
    return out;
  }

  /** Test hook: dies like a killed process would: no goodbyes, timers and connections cut. */
  void crash() {
    closed = true;
    Scheduler.Cancellable h = housekeeping;
    if (h != null) {
      h.cancel();
    }
    waiters.crash();
    store.close();
    waiters.events.shutdown();
  }

  /** Closes the store too (a store given to the builder as well: its users are done by now). */
  @Override
  public void closeStore() {
    close();
    try {
      store.close();
    } finally {
      waiters.events.shutdown();
    }
  }

  private static EngineException shuttingDown() {
    return new EngineException(
        EngineException.Reason.UNAVAILABLE,
        "coordinator is shutting down: retry on another node or after it restarts");
  }
}
