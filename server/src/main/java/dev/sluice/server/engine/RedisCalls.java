package dev.sluice.server.engine;

import io.lettuce.core.RedisException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Calls of {@code redis-engine.lua} on one resource's keys, with the arguments every call
 * shares (operation, time, node, resource, aging, node timeout), and the small codecs of its
 * replies. Shared by the parts of {@link RedisEngine}.
 */
final class RedisCalls {

  private static final Logger log = LoggerFactory.getLogger(RedisEngine.class);

  final RedisStore store;
  final String nodeId;
  private final Ticker ticker; // null: Redis time
  private final long agingMicros;
  private final long nodeTimeoutMicros;
  private final RedisStore.Script script;
  /** System.nanoTime of the first cluster refusal since a script last answered; 0: none. */
  private final AtomicLong clusterTroubleSince = new AtomicLong();

  RedisCalls(RedisStore store, Ticker ticker, long agingMicros, long nodeTimeoutMicros) {
    this.store = store;
    this.nodeId = store.nodeId();
    this.ticker = ticker;
    this.agingMicros = agingMicros;
    this.nodeTimeoutMicros = nodeTimeoutMicros;
    this.script = store.script(loadScript());
  }

  private static String loadScript() {
    try (InputStream in = RedisEngine.class.getResourceAsStream("redis-engine.lua")) {
      return new String(Objects.requireNonNull(in, "redis-engine.lua").readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new IllegalStateException("cannot read the bundled redis-engine.lua", e);
    }
  }

  static String[] keys(String resource) {
    String p = "sluice:{" + resource + "}:";
    return new String[] {
      p + "cfg", p + "st", p + "leases", p + "pl", p + "q0", p + "q1", p + "q2", p + "w",
      p + "nodes", p + "done"
    };
  }

  long nodeTimeoutMicros() {
    return nodeTimeoutMicros;
  }

  long nanoNow() {
    return ticker == null ? System.nanoTime() : ticker.read();
  }

  /** Now on the scripts' clock (Redis TIME, or the test clock), in microseconds; waits for Redis. */
  long scriptMicros() {
    if (ticker != null) {
      return ticker.read() / 1000;
    }
    List<String> t = store.sync().time();
    return Long.parseLong(t.get(0)) * 1_000_000 + Long.parseLong(t.get(1));
  }

  private String now() {
    return ticker == null ? "" : Long.toString(ticker.read() / 1000);
  }

  /** Longest that one sample of Redis's clock counts ({@link #sawRedisNow}). */
  private static final long CLOCK_WINDOW_NANOS = 5_000_000_000L;
  private static final long UNKNOWN = Long.MIN_VALUE;
  /** Redis time minus this node's, in microseconds: the largest seen in this window and the last. */
  private long offsetNow = UNKNOWN; // guarded by this
  private long offsetBefore = UNKNOWN; // guarded by this
  private long offsetWindowStart; // guarded by this

  /**
   * Notes Redis's clock ({@code TIME}, in microseconds) as a reply read it. A reply that took
   * long on the way reads behind, so the largest difference to this node's clock is the best
   * guess at the true one; it is kept for 5 to 10 s, so that a clock set back is followed.
   */
  void sawRedisNow(long redisMicros) {
    if (ticker != null) {
      return; // the engine's own clock is Redis's too
    }
    long local = System.nanoTime();
    long offset = redisMicros - local / 1000;
    synchronized (this) {
      if (offsetNow == UNKNOWN || local - offsetWindowStart > CLOCK_WINDOW_NANOS) {
        offsetBefore = offsetNow;
        offsetNow = offset;
        offsetWindowStart = local;
      } else {
        offsetNow = Math.max(offsetNow, offset);
      }
    }
  }

  /**
   * How long ago, on Redis's clock, a reply or a message that read Redis's clock at {@code
   * redisMicros} was made: what it spent on the way and in line here. 0 until a reply was seen.
   */
  long ageMicros(long redisMicros) {
    if (ticker != null) {
      return Math.max(0, ticker.read() / 1000 - redisMicros);
    }
    long offset;
    synchronized (this) {
      offset = Math.max(offsetNow, offsetBefore);
    }
    return offset == UNKNOWN ? 0 : Math.max(0, System.nanoTime() / 1000 + offset - redisMicros);
  }

  /** The arguments every call starts with. */
  void header(List<String> argv, String op, String resource) {
    argv.add(op);
    argv.add(now());
    argv.add(nodeId);
    argv.add(resource);
    argv.add(Long.toString(agingMicros));
    argv.add(timeouts());
  }

  /** ARGV 6: the node timeout, and after a '/' the lease grace when there is one. */
  private String timeouts() {
    long grace = store.leaseGraceMicros();
    return grace > 0 ? nodeTimeoutMicros + "/" + grace : Long.toString(nodeTimeoutMicros);
  }

  /** Runs one operation of the script on a resource's keys, waiting for the reply. */
  List<Object> call(String resource, String op, String... args) {
    String[] argv = new String[6 + args.length];
    argv[0] = op;
    argv[1] = now();
    argv[2] = nodeId;
    argv[3] = resource;
    argv[4] = Long.toString(agingMicros);
    argv[5] = timeouts();
    System.arraycopy(args, 0, argv, 6, args.length);
    try {
      List<Object> out = script.eval(keys(resource), argv);
      answered();
      return out;
    } catch (RedisException e) {
      throw failed(e);
    }
  }

  /**
   * The refusal for a failed Redis call. On a Redis Cluster, a call refused before it ran (a
   * primary failing over, a slot on the move: {@link ClusterRetry#notRun}) concerns one slot and
   * passes: for {@link ClusterRetry#BUDGET} after the first such refusal with no script answered
   * since, it leaves the node's health alone (its clients keep waiting on it instead of being cut
   * off, and their waiters keep their places in line). Anything else, or such trouble that
   * lasts, marks the store unreachable ({@link RedisStore#unavailable}). A refusal of Lettuce's
   * routing ({@link ClusterRetry#staleRoute}) also asks for a topology refresh.
   */
  EngineException failed(Throwable t) {
    if (t instanceof RedisException e && store.isCluster() && ClusterRetry.notRun(e)) {
      if (ClusterRetry.staleRoute(e)) {
        store.refreshTopology();
      }
      long now = System.nanoTime();
      long since = clusterTroubleSince.updateAndGet(s -> s == 0 ? now : s);
      if (now - since < ClusterRetry.BUDGET.toNanos()) {
        return new EngineException(
            EngineException.Reason.UNAVAILABLE,
            "this resource's Redis Cluster slot is failing over or moving (" + RedisStore.rootMessage(e)
                + "): retry");
      }
    }
    return store.failed(t);
  }

  /** Notes a script's answer: the store is reachable, and cluster trouble is over. */
  private void answered() {
    if (clusterTroubleSince.get() != 0) {
      long since = clusterTroubleSince.getAndSet(0);
      if (since != 0) {
        store.graceAfter(System.nanoTime() - since); // this node's scripts could not run meanwhile
      }
    }
    store.markReachable();
  }

  /**
   * Runs one operation of the script on a resource's keys without waiting: the future
   * completes with the reply on Lettuce's event loop, or fails with an {@link EngineException}.
   */
  CompletableFuture<List<Object>> callAsync(String resource, String op, String... args) {
    List<String> argv = new java.util.ArrayList<>(6 + args.length);
    header(argv, op, resource);
    argv.addAll(List.of(args));
    return reached(callAsync(keys(resource), argv.toArray(String[]::new)));
  }

  /**
   * A Redis command's future, marking the store reachable on a reply and failing with the
   * store's UNAVAILABLE refusal on a Redis error. Whatever runs after it runs on Lettuce's event
   * loop: it must never wait for Redis.
   */
  <T> CompletableFuture<T> reached(java.util.concurrent.CompletionStage<T> command) {
    CompletableFuture<T> out = new CompletableFuture<>();
    command.whenComplete(
        (value, error) -> {
          if (error == null) {
            store.markReachable();
            out.complete(value);
            return;
          }
          Throwable t = EngineException.unwrap(error);
          out.completeExceptionally(failed(t));
        });
    return out;
  }

  /**
   * EVALSHA without waiting; loads the script again if Redis forgot it. On a Redis Cluster, a
   * call refused before it ran is sent again for up to {@link ClusterRetry#BUDGET}.
   */
  CompletableFuture<List<Object>> callAsync(String[] keys, String[] argv) {
    return callAsync(keys, argv, System.nanoTime() + ClusterRetry.BUDGET.toNanos());
  }

  /**
   * EVALSHA without waiting; on a Redis Cluster, a call refused before it ran (a slot on the
   * move, a primary failing over) is sent again while a retry can start before {@code
   * deadline} ({@link System#nanoTime()}), at most {@link ClusterRetry#BUDGET} from now.
   */
  CompletableFuture<List<Object>> callAsync(String[] keys, String[] argv, long deadline) {
    if (!store.isCluster()) {
      return script.evalAsync(keys, argv);
    }
    long latest = System.nanoTime() + ClusterRetry.BUDGET.toNanos();
    return ClusterRetry.call(
            () -> script.evalAsync(keys, argv), deadline - latest < 0 ? deadline : latest, store::refreshTopology)
        .whenComplete((reply, error) -> {
          if (error == null) {
            answered();
          }
        });
  }

  /** Counts without waiting: a counter is not worth a round trip, nor failing an answer for. */
  void count(String resource, String field) {
    try {
      store.async().hincrby(keys(resource)[1], field, 1);
    } catch (RuntimeException e) {
      // Only a counter.
    }
  }

  void countRejected(String resource, String reason) {
    count(resource, "rej:" + reason);
  }

  static EngineException unexpected(Throwable t) {
    log.error("unexpected failure on a Redis call", t);
    return new EngineException(
        EngineException.Reason.UNAVAILABLE, "internal error on this node (" + t + "): retry");
  }

  static String word(List<Object> reply) {
    return (String) reply.get(0);
  }

  static long num(Object o) {
    return o instanceof Long l ? l : Long.parseLong((String) o);
  }

  /** Decodes {@link #encodeLoad}. */
  static Map<String, Long> decodeLoad(String s) {
    Map<String, Long> load = new LinkedHashMap<>();
    if (!s.equals("-")) {
      for (String part : s.split(",")) {
        int eq = part.indexOf('=');
        load.put(part.substring(0, eq), Long.parseLong(part.substring(eq + 1)));
      }
    }
    return load;
  }

  static String encodeLoad(Map<String, Long> load) {
    if (load.isEmpty()) {
      return "-";
    }
    StringBuilder b = new StringBuilder();
    for (Map.Entry<String, Long> e : load.entrySet()) {
      if (b.length() > 0) {
        b.append(',');
      }
      b.append(e.getKey()).append('=').append(e.getValue());
    }
    return b.toString();
  }

  /**
   * The pause the script put at {@code at} and {@code at + 1} of a TIMEOUT or LEFT reply
   * (microseconds, the admin's -1 until resumed); none when the reply has no such fields.
   */
  static PauseState pause(List<?> r, int at) {
    if (r.size() <= at + 1) {
      return PauseState.NONE;
    }
    long admin = num(r.get(at));
    return new PauseState(admin < 0 ? -1 : admin * 1000, num(r.get(at + 1)) * 1000);
  }

  /** Decodes the reply of the script's {@code stats} op; {@code p} holds {p50, p99} of waits. */
  static ResourceSnapshot snapshot(LimitSpec spec, List<Object> r, double[] p) {
    Map<Lane, Integer> waiting = new EnumMap<>(Lane.class);
    waiting.put(Lane.INTERACTIVE, (int) num(r.get(3)));
    waiting.put(Lane.DEFAULT, (int) num(r.get(4)));
    waiting.put(Lane.BATCH, (int) num(r.get(5)));
    long paused = num(r.get(6));
    long granted = num(r.get(7));
    long timedOut = num(r.get(8));
    long cancelledCount = num(r.get(9));
    long throttled = num(r.get(10));
    long givenBack = num(r.get(11));
    long forfeited = num(r.get(12));
    long expired = num(r.get(13));
    Map<String, Double> available = new LinkedHashMap<>();
    int i = 14;
    for (; i < r.size() && !"--".equals(r.get(i)); i += 2) {
      available.put((String) r.get(i), Double.parseDouble((String) r.get(i + 1)));
    }
    Map<String, Long> rejected = new TreeMap<>();
    Map<String, Double> used = new LinkedHashMap<>();
    for (String d : available.keySet()) {
      if (!spec.holds().containsKey(d)) { // a held dimension's available is its cap less what is held
        used.put(d, 0.0);
      }
    }
    Map<String, Map<String, Double>> tenantUsed = new TreeMap<>();
    Map<String, Integer> tenantWaiting = new TreeMap<>();
    long pauseAdmin = 0;
    long pauseUpstream = 0;
    long throttleAgo = -1;
    for (i = i + 1; i + 1 < r.size(); i += 2) {
      String key = (String) r.get(i);
      if (key.equals("p:admin")) {
        long us = num(r.get(i + 1));
        pauseAdmin = us < 0 ? -1 : us * 1000;
      } else if (key.equals("p:upstream")) {
        pauseUpstream = num(r.get(i + 1)) * 1000;
      } else if (key.equals("t:ago")) {
        throttleAgo = num(r.get(i + 1)) * 1000;
      } else if (key.startsWith("tu:")) {
        int at = key.lastIndexOf(':');
        String dim = key.substring(at + 1);
        if (used.containsKey(dim)) {
          tenantUsed.computeIfAbsent(key.substring(3, at), k -> new LinkedHashMap<>())
              .put(dim, Double.parseDouble((String) r.get(i + 1)));
        }
      } else if (key.startsWith("tq:")) {
        tenantWaiting.put(key.substring(3), (int) num(r.get(i + 1)));
      } else if (key.startsWith("u:")) {
        String dim = key.substring(2);
        if (used.containsKey(dim)) { // a dimension the limit no longer has keeps its old count
          used.put(dim, Double.parseDouble((String) r.get(i + 1)));
        }
      } else {
        rejected.put(key, num(r.get(i + 1)));
      }
    }
    return new ResourceSnapshot(
        spec,
        available,
        num(r.get(2)),
        waiting,
        paused != 0,
        paused < 0 ? -1 : paused * 1000,
        new PauseState(pauseAdmin, pauseUpstream),
        granted,
        timedOut,
        cancelledCount,
        givenBack,
        forfeited,
        expired,
        rejected,
        p[0],
        p[1],
        throttled,
        throttled == 0 ? -1 : throttleAgo,
        used,
        tenants(available.keySet(), tenantUsed, tenantWaiting));
  }

  private static Map<String, ResourceSnapshot.TenantUse> tenants(
      java.util.Set<String> dims, Map<String, Map<String, Double>> used, Map<String, Integer> waiting) {
    java.util.TreeSet<String> keys = new java.util.TreeSet<>(used.keySet());
    keys.addAll(waiting.keySet());
    Map<String, ResourceSnapshot.TenantUse> out = new TreeMap<>();
    for (String k : keys) {
      Map<String, Double> u = new LinkedHashMap<>();
      for (String d : dims) {
        u.put(d, used.getOrDefault(k, Map.of()).getOrDefault(d, 0.0));
      }
      out.put(k, new ResourceSnapshot.TenantUse(waiting.getOrDefault(k, 0), u));
    }
    return out;
  }
}
