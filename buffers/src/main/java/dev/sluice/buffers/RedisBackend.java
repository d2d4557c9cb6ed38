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
        -- An item in an openai-batch batch resumes with its batch, not on its own.
        if not m.b then
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
      -- KEYS items open completed failed moved; ARGV since
      local oldest = 0
      local first = redis.call('ZRANGE', KEYS[2], 0, 0)
      if #first > 0 then
        local raw = redis.call('HGET', KEYS[1], first[1])
        if raw then oldest = cjson.decode(raw).c end
      end
      return {redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]),
        redis.call('ZCOUNT', KEYS[3], ARGV[1], '+inf'), tostring(oldest), redis.call('ZCARD', KEYS[5])}
      """;

  private static final String EXPIRE = """
      -- KEYS items completed failed log idem moved; ARGV before
      local n = 0
      for _, z in ipairs({2, 3, 6}) do
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

  // openai-batch: an item in a batch carries the batch's number in its state ({@code b}); each
  // batch not yet ended is a field of {@code :batches} (number to JSON: stage, input file,
  // provider id, the ids it took), numbered from {@code :bseq}. Every write checks the lease.

  private static final String OPEN_BATCH = """
      -- KEYS owner items bseq batches; ARGV me, now, ids...
      if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {-1} end
      local seq = redis.call('INCR', KEYS[3])
      local out = {seq}
      local ids = {}
      for i = 3, #ARGV do
        local raw = redis.call('HGET', KEYS[2], ARGV[i])
        if raw then
          local m = cjson.decode(raw)
          if m.s == 'pending' and not m.b then
            m.b = seq
            m.a = m.a + 1
            m.o = 1
            redis.call('HSET', KEYS[2], ARGV[i], cjson.encode(m))
            out[#out + 1] = tonumber(ARGV[i])
            ids[#ids + 1] = ARGV[i]
          end
        end
      end
      redis.call('HSET', KEYS[4], seq, cjson.encode({s = 'preparing', i = table.concat(ids, ','),
        c = tonumber(ARGV[2])}))
      return out
      """;

  private static final String BODIES = """
      -- KEYS log; ARGV ids
      local out = {}
      for i = 1, #ARGV do
        local e = redis.call('XRANGE', KEYS[1], ARGV[i] .. '-0', ARGV[i] .. '-0')
        local b = ''
        if #e > 0 then
          local f = e[1][2]
          for j = 1, #f, 2 do
            if f[j] == 'b' then b = f[j + 1] end
          end
        end
        out[i] = b
      end
      return out
      """;

  private static final String DROP_FROM_BATCH = """
      -- KEYS owner items; ARGV me, seq, ids...
      if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
      local seq = tonumber(ARGV[2])
      for i = 3, #ARGV do
        local raw = redis.call('HGET', KEYS[2], ARGV[i])
        if raw then
          local m = cjson.decode(raw)
          if m.b == seq then
            m.b = nil
            m.o = 0
            m.a = m.a - 1
            redis.call('HSET', KEYS[2], ARGV[i], cjson.encode(m))
          end
        end
      end
      return 1
      """;

  private static final String BATCH_STAGE = """
      -- KEYS owner batches; ARGV me, seq, stage, input file or '', provider id or ''
      if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
      local raw = redis.call('HGET', KEYS[2], ARGV[2])
      if not raw then return 0 end
      local m = cjson.decode(raw)
      m.s = ARGV[3]
      if ARGV[4] ~= '' then m.f = ARGV[4] end
      if ARGV[5] ~= '' then m.p = ARGV[5] end
      redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(m))
      return 1
      """;

  private static final String OPEN_BATCHES = """
      -- KEYS items batches: per batch seq, stage, input file, provider id, the ids still in it
      local out = {}
      local all = redis.call('HGETALL', KEYS[2])
      for j = 1, #all, 2 do
        local seq = tonumber(all[j])
        local m = cjson.decode(all[j + 1])
        local ids = {}
        for id in string.gmatch(m.i, '[^,]+') do
          local raw = redis.call('HGET', KEYS[1], id)
          if raw and cjson.decode(raw).b == seq then ids[#ids + 1] = id end
        end
        out[#out + 1] = tostring(seq)
        out[#out + 1] = m.s
        out[#out + 1] = m.f or ''
        out[#out + 1] = m.p or ''
        out[#out + 1] = table.concat(ids, ',')
      end
      return out
      """;

  /** A part of a batch's results: each item still in the batch gets its outcome and leaves it. */
  private static final String BATCH_RESULTS = """
      -- KEYS owner items open completed failed; ARGV me, seq, then per item: id, state, retries, next,
      -- status, excerpt, line, finished
      if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
      local seq = tonumber(ARGV[2])
      for i = 3, #ARGV, 8 do
        local raw = redis.call('HGET', KEYS[2], ARGV[i])
        if raw then
          local m = cjson.decode(raw)
          if m.b == seq then
            m.b = nil
            m.s = ARGV[i + 1]
            m.o = 0
            m.r = tonumber(ARGV[i + 2])
            m.n = tonumber(ARGV[i + 3])
            m.st = tonumber(ARGV[i + 4])
            m.x = ARGV[i + 5]
            m.h = m.h .. ARGV[i + 6]
            local finished = tonumber(ARGV[i + 7])
            if finished > 0 then
              m.f = finished
              redis.call('ZREM', KEYS[3], ARGV[i])
              if m.s == 'completed' then
                redis.call('ZADD', KEYS[4], finished, ARGV[i])
              else
                redis.call('ZADD', KEYS[5], finished, ARGV[i])
              end
            end
            redis.call('HSET', KEYS[2], ARGV[i], cjson.encode(m))
          end
        end
      end
      return 1
      """;

  /** The batch's end: the items still in it are pending again, and the batch is gone. */
  private static final String END_BATCH = """
      -- KEYS owner items batches; ARGV me, seq, history line of an item queued again
      if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
      local raw = redis.call('HGET', KEYS[3], ARGV[2])
      if not raw then return 1 end
      local seq = tonumber(ARGV[2])
      for id in string.gmatch(cjson.decode(raw).i, '[^,]+') do
        local r = redis.call('HGET', KEYS[2], id)
        if r then
          local m = cjson.decode(r)
          if m.b == seq then
            m.b = nil
            m.o = 0
            m.h = m.h .. ARGV[3]
            redis.call('HSET', KEYS[2], id, cjson.encode(m))
          end
        end
      end
      redis.call('HDEL', KEYS[3], ARGV[2])
      return 1
      """;

  /** Items per script call where a batch may hold 50 000: a script blocks Redis while it runs. */
  private static final int BATCH_CHUNK = 1000;

  private static final String MOVED = """
      -- KEYS items open moved; ARGV now, then per item: id, history line
      for i = 2, #ARGV, 2 do
        local raw = redis.call('HGET', KEYS[1], ARGV[i])
        if raw then
          local m = cjson.decode(raw)
          if m.s == 'pending' and m.o == 0 and not m.b then
            m.s = 'moved'
            m.f = tonumber(ARGV[1])
            m.h = m.h .. ARGV[i + 1]
            redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(m))
            redis.call('ZREM', KEYS[2], ARGV[i])
            redis.call('ZADD', KEYS[3], ARGV[1], ARGV[i])
          end
        end
      end
      return 1
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
    sync(() -> redis.del(keys(name, "seq", "log", "items", "open", "completed", "failed", "idem", "owner", "meta",
        "bseq", "batches", "moved")));
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
  public CompletableFuture<Void> moved(String name, Map<Long, String> lines, long now) {
    List<String> args = new ArrayList<>(List.of(Long.toString(now)));
    lines.forEach((id, line) -> args.addAll(List.of(Long.toString(id), line)));
    return async(async.<Long>eval(MOVED, ScriptOutputType.INTEGER, keys(name, "items", "open", "moved"),
        args.toArray(String[]::new))).thenApply(x -> null);
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
        "failed", "moved"), Long.toString(now - 10_000)));
    return new Counts((Long) r.get(0), (Long) r.get(1), (Long) r.get(2), (Long) r.get(3),
        (long) Double.parseDouble((String) r.get(4)), (Long) r.get(5));
  }

  @Override
  public void expire(String name, long before) {
    sync(() -> redis.eval(EXPIRE, ScriptOutputType.INTEGER, keys(name, "items", "completed", "failed", "log", "idem",
        "moved"), Long.toString(before)));
  }

  @Override
  public long oldestFinished(String name) {
    long oldest = 0;
    for (String part : List.of("completed", "failed", "moved")) {
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

  // ---------------------------------------------------------------------------------------
  // openai-batch

  /** A fenced write answered 0: this node no longer holds the buffer's lease. */
  private IllegalStateException lostLease(String name) {
    return new IllegalStateException("node " + me + " no longer delivers buffer '" + name + "' (its lease lapsed):"
        + " the new owner resumes its batches");
  }

  private CompletableFuture<Void> fenced(String name, String script, String[] keys, String... args) {
    return async(async.<Long>eval(script, ScriptOutputType.INTEGER, keys, args)).thenApply(n -> {
      if (n == null || n == 0) {
        throw lostLease(name);
      }
      return null;
    });
  }

  @Override
  public CompletableFuture<BatchRecord> openBatch(String name, List<Long> ids, long now) {
    String[] args = new String[2 + ids.size()];
    args[0] = me;
    args[1] = Long.toString(now);
    for (int i = 0; i < ids.size(); i++) {
      args[2 + i] = Long.toString(ids.get(i));
    }
    return async(async.<List<Long>>eval(OPEN_BATCH, ScriptOutputType.MULTI, keys(name, "owner", "items", "bseq",
        "batches"), args)).thenApply(r -> {
          if (r.get(0) < 0) {
            throw lostLease(name);
          }
          return new BatchRecord(r.get(0), "preparing", null, null, new ArrayList<>(r.subList(1, r.size())));
        });
  }

  @Override
  public Map<Long, byte[]> bodies(String name, List<Long> ids) {
    Map<Long, byte[]> out = new java.util.HashMap<>();
    for (int from = 0; from < ids.size(); from += BATCH_CHUNK) {
      List<Long> part = ids.subList(from, Math.min(ids.size(), from + BATCH_CHUNK));
      List<Object> r = sync(() -> redis.eval(BODIES, ScriptOutputType.MULTI, keys(name, "log"),
          part.stream().map(String::valueOf).toArray(String[]::new)));
      for (int i = 0; i < part.size(); i++) {
        String b = (String) r.get(i);
        if (b != null && !b.isEmpty()) {
          out.put(part.get(i), Base64.getDecoder().decode(b));
        }
      }
    }
    return out;
  }

  @Override
  public CompletableFuture<Void> dropFromBatch(String name, long seq, List<Long> ids) {
    List<String> args = new ArrayList<>(List.of(me, Long.toString(seq)));
    ids.forEach(id -> args.add(Long.toString(id)));
    return fenced(name, DROP_FROM_BATCH, keys(name, "owner", "items"), args.toArray(String[]::new));
  }

  @Override
  public CompletableFuture<Void> batchStage(String name, long seq, String stage, String inputFile,
      String providerId) {
    return fenced(name, BATCH_STAGE, keys(name, "owner", "batches"), me, Long.toString(seq), stage,
        inputFile == null ? "" : inputFile, providerId == null ? "" : providerId);
  }

  @Override
  public List<BatchRecord> openBatches(String name) {
    List<Object> r = sync(() -> redis.eval(OPEN_BATCHES, ScriptOutputType.MULTI, keys(name, "items", "batches")));
    List<BatchRecord> out = new ArrayList<>();
    for (int i = 0; i + 4 < r.size(); i += 5) {
      List<Long> ids = new ArrayList<>();
      for (String id : ((String) r.get(i + 4)).split(",")) {
        if (!id.isEmpty()) {
          ids.add(Long.parseLong(id));
        }
      }
      String file = (String) r.get(i + 2);
      String provider = (String) r.get(i + 3);
      out.add(new BatchRecord(Long.parseLong((String) r.get(i)), (String) r.get(i + 1), file.isEmpty() ? null : file,
          provider.isEmpty() ? null : provider, ids));
    }
    out.sort(java.util.Comparator.comparingLong(BatchRecord::seq));
    return out;
  }

  /**
   * Ends a batch in parts of {@link #BATCH_CHUNK} results, then the end itself. Not one
   * transaction as on SQLite, and it need not be: a result lands only while its item is still in
   * the batch, so a crash between parts leaves a batch that is polled and read again after the
   * restart, and the results already written are not written twice.
   */
  @Override
  public CompletableFuture<Void> finishBatch(String name, long seq, Map<Long, Result> results, String requeued,
      long now) {
    List<Map.Entry<Long, Result>> all = new ArrayList<>(results.entrySet());
    CompletableFuture<Void> done = CompletableFuture.completedFuture(null);
    for (int from = 0; from < all.size(); from += BATCH_CHUNK) {
      List<Map.Entry<Long, Result>> part = all.subList(from, Math.min(all.size(), from + BATCH_CHUNK));
      List<String> args = new ArrayList<>(List.of(me, Long.toString(seq)));
      for (Map.Entry<Long, Result> e : part) {
        Result x = e.getValue();
        args.addAll(List.of(Long.toString(e.getKey()), x.state(), Integer.toString(x.retries()),
            Long.toString(x.nextAt()), Integer.toString(x.status()), x.excerpt() == null ? "" : x.excerpt(), x.line(),
            Long.toString(x.finished())));
      }
      done = done.thenCompose(v -> fenced(name, BATCH_RESULTS, keys(name, "owner", "items", "open", "completed",
          "failed"), args.toArray(String[]::new)));
    }
    return done.thenCompose(v -> fenced(name, END_BATCH, keys(name, "owner", "items", "batches"), me,
        Long.toString(seq), requeued));
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
