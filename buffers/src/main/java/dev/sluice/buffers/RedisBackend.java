package dev.sluice.buffers;

import io.lettuce.core.ScriptOutputType;
import io.lettuce.core.StreamMessage;
import io.lettuce.core.XReadArgs;
import io.lettuce.core.api.StatefulConnection;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.cluster.api.StatefulRedisClusterConnection;
import io.lettuce.core.cluster.api.async.RedisClusterAsyncCommands;
import io.lettuce.core.cluster.api.sync.RedisClusterCommands;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * Buffers on the Redis every node shares (distributed mode).
 *
 * <p>Each buffer is a Redis Stream of its items, {@code sluice:buf:{name}:log}, with the entry id
 * {@code <item id>-0}: the push script takes the next id from {@code :seq} and appends in one
 * step, so stream order is id order is push order, across every node. Beside it (one hash slot,
 * so a Redis Cluster keeps a buffer's keys together): {@code :items} (id to the item's state as
 * JSON: attempts, retries, history...), {@code :open} (ids not yet finished), {@code :completed}
 * and {@code :failed} (ids by finish time, for counts and retention), {@code :idem} (idempotency
 * key to id) and {@code :owner}.
 *
 * <p>One node delivers a buffer at a time: the one holding {@code :owner}, a lease renewed every
 * second. Every write a delivery makes checks the lease (a fence), so a node that lost it (a long
 * pause, a partition) cannot record outcomes over its successor's. The owner learns of items
 * pushed on other nodes by reading the stream (XREAD BLOCK on a connection of its own). A new
 * owner flags attempts left open by its predecessor as possible duplicates and sends them again,
 * exactly as a restarted coordinator does with its own.
 */
final class RedisBackend implements BufferBackend {

  private static final String BUFFERS = "sluice:buffers";
  private static final String PAUSED = "sluice:buffers:paused";

  private static final String PUSH = """
      -- KEYS seq log items open idem meta; ARGV now, history line, then per item: idem, key, headers, body (base64)
      if redis.call('EXISTS', KEYS[6]) == 0 then return redis.error_reply('NOBUFFER the buffer was deleted') end
      local now = tonumber(ARGV[1])
      local out = {}
      for i = 3, #ARGV, 4 do
        local idem, key = ARGV[i], ARGV[i + 1]
        local known = false
        if idem ~= '' then known = redis.call('HGET', KEYS[5], idem) end
        if known then
          out[#out + 1] = -tonumber(known)
        else
          local id = redis.call('INCR', KEYS[1])
          redis.call('XADD', KEYS[2], id .. '-0', 'h', ARGV[i + 2], 'b', ARGV[i + 3], 'k', key, 'c', ARGV[1])
          redis.call('HSET', KEYS[3], id, cjson.encode({s = 'pending', a = 0, r = 0, n = now, c = now,
            o = 0, d = 0, h = ARGV[2], i = idem, k = key}))
          redis.call('ZADD', KEYS[4], id, id)
          if idem ~= '' then redis.call('HSET', KEYS[5], idem, id) end
          out[#out + 1] = id
        end
      end
      return out
      """;

  private static final String CLAIM = """
      -- KEYS owner; ARGV me, ttl ms
      local o = redis.call('GET', KEYS[1])
      if o == ARGV[1] then
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return 1
      elseif not o then
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return 2
      end
      return 0
      """;

  private static final String DISOWN = """
      if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
      return 0
      """;

  private static final String TAKE_OVER = """
      -- KEYS owner items open seq; ARGV me, note
      if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
      local out = {tonumber(redis.call('GET', KEYS[4]) or '0'), 0}
      for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
        local m = cjson.decode(redis.call('HGET', KEYS[2], id))
        if m.o == 1 then
          m.o = 0
          m.d = 1
          m.h = m.h .. ARGV[2]
          redis.call('HSET', KEYS[2], id, cjson.encode(m))
          out[2] = out[2] + 1
        end
        out[#out + 1] = id
        out[#out + 1] = m.k or ''
        out[#out + 1] = tostring(m.c)
        out[#out + 1] = tostring(m.n)
        out[#out + 1] = tostring(m.r)
      end
      return out
      """;

  private static final String START = """
      -- KEYS owner items log; ARGV me, id
      if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
      local raw = redis.call('HGET', KEYS[2], ARGV[2])
      if not raw then return false end
      local m = cjson.decode(raw)
      if m.s ~= 'pending' then return false end
      m.a = m.a + 1
      m.o = 1
      redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(m))
      local e = redis.call('XRANGE', KEYS[3], ARGV[2] .. '-0', ARGV[2] .. '-0')
      if #e == 0 then return false end
      local f = e[1][2]
      local h, b = '', ''
      for j = 1, #f, 2 do
        if f[j] == 'h' then h = f[j + 1] elseif f[j] == 'b' then b = f[j + 1] end
      end
      local idem = m.i
      if idem == '' then idem = ARGV[3] end
      return {b, h, idem, tostring(m.a)}
      """;

  private static final String FINISH = """
      -- KEYS owner items open completed failed; ARGV me, id, state, retries, next, status, excerpt, line, finished
      if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
      local raw = redis.call('HGET', KEYS[2], ARGV[2])
      if not raw then return 0 end
      local m = cjson.decode(raw)
      m.s = ARGV[3]
      m.o = 0
      m.r = tonumber(ARGV[4])
      m.n = tonumber(ARGV[5])
      m.st = tonumber(ARGV[6])
      m.x = ARGV[7]
      m.h = m.h .. ARGV[8]
      local finished = tonumber(ARGV[9])
      if finished > 0 then
        m.f = finished
        redis.call('ZREM', KEYS[3], ARGV[2])
        if ARGV[3] == 'completed' then
          redis.call('ZADD', KEYS[4], finished, ARGV[2])
        else
          redis.call('ZADD', KEYS[5], finished, ARGV[2])
        end
      end
      redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(m))
      return 1
      """;

  private static final String COUNTS = """
      -- KEYS items open completed failed; ARGV since
      local oldest = 0
      local first = redis.call('ZRANGE', KEYS[2], 0, 0)
      if #first > 0 then
        local raw = redis.call('HGET', KEYS[1], first[1])
        if raw then oldest = cjson.decode(raw).c end
      end
      return {redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]),
        redis.call('ZCOUNT', KEYS[3], ARGV[1], '+inf'), tostring(oldest)}
      """;

  private static final String EXPIRE = """
      -- KEYS items completed failed log idem; ARGV before
      local n = 0
      for z = 2, 3 do
        for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[z], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 5000)) do
          local raw = redis.call('HGET', KEYS[1], id)
          if raw then
            local m = cjson.decode(raw)
            if m.i ~= '' then redis.call('HDEL', KEYS[5], m.i) end
          end
          redis.call('HDEL', KEYS[1], id)
          redis.call('XDEL', KEYS[4], id .. '-0')
          redis.call('ZREM', KEYS[z], id)
          n = n + 1
        end
      end
      return n
      """;

  private final SharedRedis store;
  private final RedisClusterCommands<String, String> redis;
  private final RedisClusterAsyncCommands<String, String> async;
  private final String me;
  private final long leaseMillis;
  private final Object followLock = new Object();
  private StatefulConnection<String, String> follower; // guarded by followLock

  RedisBackend(SharedRedis store, Duration lease) {
    this.store = store;
    this.redis = store.sync();
    this.async = store.async();
    this.me = store.nodeId();
    this.leaseMillis = lease.toMillis();
  }

  /** A store outage as the API reports it: 503 / UNAVAILABLE, retry in a moment. */
  private BufferException unavailable(Throwable e) {
    Throwable cause = e instanceof java.util.concurrent.CompletionException && e.getCause() != null ? e.getCause() : e;
    return BufferException.unavailable("the shared store " + store.describe()
        + " did not answer (" + cause.getMessage() + "): retry in a moment; items already answered with an id are"
        + " stored");
  }

  private <T> T sync(java.util.function.Supplier<T> call) {
    try {
      return call.get();
    } catch (io.lettuce.core.RedisException e) {
      throw unavailable(e);
    }
  }

  private <T> CompletableFuture<T> async(java.util.concurrent.CompletionStage<T> call) {
    return call.toCompletableFuture().handle((v, e) -> {
      if (e == null) {
        return v;
      }
      Throwable cause = e instanceof java.util.concurrent.CompletionException && e.getCause() != null ? e.getCause() : e;
      if (cause instanceof io.lettuce.core.RedisException) {
        throw unavailable(cause);
      }
      throw e instanceof RuntimeException re ? re : new java.util.concurrent.CompletionException(e);
    });
  }

  private static String key(String name, String part) {
    return "sluice:buf:{" + name + "}:" + part;
  }

  private static String[] keys(String name, String... parts) {
    String[] k = new String[parts.length];
    for (int i = 0; i < parts.length; i++) {
      k[i] = key(name, parts[i]);
    }
    return k;
  }

  @Override
  public boolean shared() {
    return true;
  }

  /** This node's id: the lease holder's name. */
  String nodeId() {
    return me;
  }

  @Override
  public List<StoredBuffer> buffers() {
    Map<String, String> specs = sync(() -> redis.hgetall(BUFFERS));
    Map<String, String> paused = sync(() -> redis.hgetall(PAUSED));
    List<StoredBuffer> out = new ArrayList<>();
    specs.entrySet().stream().sorted(Map.Entry.comparingByKey())
        .forEach(e -> out.add(new StoredBuffer(e.getKey(), e.getValue(), paused.containsKey(e.getKey()))));
    return out;
  }

  @Override
  public boolean create(String name, String spec, long now) {
    // The marker first, in the buffer's own slot: the push script checks it (a cluster script
    // cannot read sluice:buffers). If the buffer existed, its marker was there already.
    sync(() -> redis.set(key(name, "meta"), "1"));
    return sync(() -> redis.hsetnx(BUFFERS, name, spec));
  }

  @Override
  public void delete(String name) {
    sync(() -> redis.del(keys(name, "seq", "log", "items", "open", "completed", "failed", "idem", "owner", "meta")));
    sync(() -> redis.hdel(PAUSED, name));
    sync(() -> redis.hdel(BUFFERS, name));
  }

  @Override
  public void setPaused(String name, boolean paused) {
    sync(() -> paused ? redis.hset(PAUSED, name, "1") : redis.hdel(PAUSED, name) > 0);
  }

  @Override
  public CompletableFuture<List<Long>> push(String name, List<NewItem> items, long now) {
    String[] args = new String[2 + items.size() * 4];
    args[0] = Long.toString(now);
    args[1] = Instant.ofEpochMilli(now) + " pushed\n";
    Base64.Encoder b64 = Base64.getEncoder();
    for (int i = 0; i < items.size(); i++) {
      NewItem it = items.get(i);
      args[2 + i * 4] = it.idempotencyKey() == null ? "" : it.idempotencyKey();
      args[3 + i * 4] = it.key() == null ? "" : it.key();
      args[4 + i * 4] = it.storedHeaders();
      args[5 + i * 4] = b64.encodeToString(it.body());
    }
    return async(async.<List<Long>>eval(PUSH, ScriptOutputType.MULTI, keys(name, "seq", "log", "items", "open", "idem",
        "meta"), args)).handle((ids, e) -> {
          if (e == null) {
            return ids;
          }
          Throwable cause = e instanceof java.util.concurrent.CompletionException && e.getCause() != null
              ? e.getCause() : e;
          if (cause.getMessage() != null && cause.getMessage().contains("NOBUFFER")) {
            throw BufferException.notFound("buffer '" + name + "' was deleted (on"
                + " another node): create it again, or push to another buffer");
          }
          throw e instanceof RuntimeException re ? re : new java.util.concurrent.CompletionException(e);
        });
  }

  @Override
  public Claim claim(String name) {
    Long r = sync(() -> redis.eval(CLAIM, ScriptOutputType.INTEGER, keys(name, "owner"), me,
        Long.toString(leaseMillis)));
    return r == null || r == 0 ? Claim.LOST : r == 1 ? Claim.KEPT : Claim.TAKEN;
  }

  @Override
  public void disown(String name) {
    sync(() -> redis.eval(DISOWN, ScriptOutputType.INTEGER, keys(name, "owner"), me));
  }

  @Override
  public Takeover takeOver(String name, long now) {
    List<Object> r = sync(() -> redis.eval(TAKE_OVER, ScriptOutputType.MULTI, keys(name, "owner", "items", "open",
        "seq"), me, Instant.ofEpochMilli(now) + " " + Buffers.REOPENED + " (node " + me + " took the buffer over)\n"));
    long lastId = (Long) r.get(0);
    if (lastId < 0) {
      return null; // the lease went elsewhere meanwhile
    }
    List<OpenItem> items = new ArrayList<>();
    for (int i = 2; i + 4 < r.size(); i += 5) {
      String k = (String) r.get(i + 1);
      items.add(new OpenItem(Long.parseLong((String) r.get(i)), k.isEmpty() ? null : k,
          Long.parseLong((String) r.get(i + 2)), Long.parseLong((String) r.get(i + 3)),
          Integer.parseInt((String) r.get(i + 4))));
    }
    return new Takeover(items, (int) (long) (Long) r.get(1), lastId);
  }

  @Override
  public CompletableFuture<Send> startAttempt(String name, long id) {
    return async(async.<List<Object>>eval(START, ScriptOutputType.MULTI, keys(name, "owner", "items", "log"), me,
        Long.toString(id), "sluice-" + name + "-" + id)).thenApply(r -> {
          if (r == null || r.isEmpty() || r.get(0) == null) {
            return null; // fenced (the lease is not ours), or the item is gone
          }
          return new Send(Base64.getDecoder().decode((String) r.get(0)), (String) r.get(1), (String) r.get(2),
              Integer.parseInt((String) r.get(3)));
        });
  }

  @Override
  public CompletableFuture<Void> finishAttempt(String name, long id, Result r) {
    return async(async.<Long>eval(FINISH, ScriptOutputType.INTEGER, keys(name, "owner", "items", "open", "completed",
        "failed"), me, Long.toString(id), r.state(), Integer.toString(r.retries()), Long.toString(r.nextAt()),
        Integer.toString(r.status()), r.excerpt() == null ? "" : r.excerpt(), r.line(), Long.toString(r.finished())))
        .thenApply(n -> {
          if (n == null || n == 0) {
            throw new IllegalStateException("node " + me + " no longer delivers buffer '" + name + "' (its lease"
                + " lapsed): the new owner sends item " + id + " again, flagged");
          }
          return null;
        });
  }

  @Override
  public ItemRecord item(String name, long id) {
    String raw = sync(() -> redis.hget(key(name, "items"), Long.toString(id)));
    if (raw == null) {
      return null;
    }
    try {
      var m = BufferSpec.JSON.readTree(raw);
      String idem = m.path("i").asText("");
      return new ItemRecord(id, m.path("s").asText(), m.path("o").asInt() == 1, m.path("a").asInt(),
          m.path("r").asInt(), m.path("n").asLong(), m.path("st").asInt(), m.hasNonNull("x") && !m.get("x").asText()
              .isEmpty() ? m.get("x").asText() : null, m.path("h").asText(), m.path("c").asLong(), m.path("f").asLong(),
          m.path("d").asInt() == 1, idem.isEmpty() ? "sluice-" + name + "-" + id : idem,
          m.path("k").asText("").isEmpty() ? null : m.get("k").asText());
    } catch (java.io.IOException e) {
      throw new IllegalStateException("item " + id + " of buffer '" + name + "' is unreadable: " + e.getMessage(), e);
    }
  }

  @Override
  public Counts counts(String name, long now) {
    List<Object> r = sync(() -> redis.eval(COUNTS, ScriptOutputType.MULTI, keys(name, "items", "open", "completed",
        "failed"), Long.toString(now - 10_000)));
    return new Counts((Long) r.get(0), (Long) r.get(1), (Long) r.get(2), (Long) r.get(3),
        (long) Double.parseDouble((String) r.get(4)));
  }

  @Override
  public void expire(String name, long before) {
    sync(() -> redis.eval(EXPIRE, ScriptOutputType.INTEGER, keys(name, "items", "completed", "failed", "log", "idem"),
        Long.toString(before)));
  }

  @Override
  public long oldestFinished(String name) {
    long oldest = 0;
    for (String part : List.of("completed", "failed")) {
      List<io.lettuce.core.ScoredValue<String>> first = sync(() -> redis.zrangeWithScores(key(name, part), 0, 0));
      if (!first.isEmpty()) {
        long at = (long) first.get(0).getScore();
        oldest = oldest == 0 ? at : Math.min(oldest, at);
      }
    }
    return oldest;
  }

  @Override
  public Map<String, List<OpenItem>> follow(Map<String, Long> after, long blockMillis) {
    Map<String, List<OpenItem>> out = new LinkedHashMap<>();
    if (after.isEmpty()) {
      return out;
    }
    RedisClusterCommands<String, String> c;
    synchronized (followLock) {
      if (follower == null) {
        follower = store.openConnection();
      }
      c = follower instanceof StatefulRedisClusterConnection<String, String> cc ? cc.sync()
          : ((StatefulRedisConnection<String, String>) follower).sync();
    }
    List<StreamMessage<String, String>> messages = new ArrayList<>();
    if (store.isCluster() && after.size() > 1) {
      // One XREAD's streams must share a slot on a cluster: read each, then wait a little.
      for (var e : after.entrySet()) {
        messages.addAll(c.xread(XReadArgs.Builder.count(1000),
            XReadArgs.StreamOffset.from(key(e.getKey(), "log"), e.getValue() + "-0")));
      }
      if (messages.isEmpty()) {
        sleep(Math.min(blockMillis, 100));
      }
    } else {
      @SuppressWarnings("unchecked")
      XReadArgs.StreamOffset<String>[] offsets = after.entrySet().stream()
          .map(e -> XReadArgs.StreamOffset.from(key(e.getKey(), "log"), e.getValue() + "-0"))
          .toArray(XReadArgs.StreamOffset[]::new);
      List<StreamMessage<String, String>> read = c.xread(XReadArgs.Builder.block(blockMillis).count(1000), offsets);
      if (read != null) {
        messages.addAll(read);
      }
    }
    for (StreamMessage<String, String> m : messages) {
      String stream = m.getStream();
      String name = stream.substring(stream.indexOf('{') + 1, stream.lastIndexOf('}'));
      long id = Long.parseLong(m.getId().substring(0, m.getId().indexOf('-')));
      String k = m.getBody().getOrDefault("k", "");
      long created = Long.parseLong(m.getBody().getOrDefault("c", "0"));
      out.computeIfAbsent(name, n -> new ArrayList<>()).add(new OpenItem(id, k.isEmpty() ? null : k, created, created, 0));
    }
    return out;
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    synchronized (followLock) {
      if (follower != null) {
        follower.close();
        follower = null;
      }
    }
  }
}
