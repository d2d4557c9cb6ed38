package dev.sluice.buffers;

import java.io.IOException;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/** Buffers in one SQLite file, {@code buffers.db} in the data dir ({@link BufferStore}: WAL, group commit). */
final class SqliteBackend implements BufferBackend {

  private final BufferStore store;
  /** Next item id per buffer; touched only on the writer thread. */
  private final Map<String, Long> nextIds = new HashMap<>();

  SqliteBackend(Path file, boolean fsyncEveryCommit) throws IOException {
    this.store = new BufferStore(file, fsyncEveryCommit);
    // A rolled-back push took ids it did not keep: read the next ones from the database again.
    store.onRollback(nextIds::clear);
  }

  /** The store itself, for tests in this package. */
  BufferStore store() {
    return store;
  }

  @Override
  public boolean shared() {
    return false;
  }

  @Override
  public List<StoredBuffer> buffers() {
    return store.read(c -> {
      List<StoredBuffer> out = new ArrayList<>();
      try (PreparedStatement ps = c.prepareStatement("SELECT name, spec, paused FROM buffers ORDER BY name");
          ResultSet rs = ps.executeQuery()) {
        while (rs.next()) {
          out.add(new StoredBuffer(rs.getString(1), rs.getString(2), rs.getInt(3) == 1));
        }
      }
      return out;
    });
  }

  @Override
  public boolean create(String name, String spec, long now) {
    return join(store.write(c -> {
      if (BufferStore.count(c, "SELECT COUNT(*) FROM buffers WHERE name = ?", name) > 0) {
        return false;
      }
      exec(c, "INSERT INTO buffers(name, spec, created) VALUES (?, ?, ?)", name, spec, now);
      return true;
    }));
  }

  @Override
  public void delete(String name) {
    join(store.write(c -> {
      exec(c, "DELETE FROM items WHERE buffer = ?", name);
      exec(c, "DELETE FROM batches WHERE buffer = ?", name);
      exec(c, "DELETE FROM buffers WHERE name = ?", name);
      nextIds.remove(name);
      return null;
    }));
  }

  @Override
  public void setPaused(String name, boolean paused) {
    join(store.write(c -> {
      exec(c, "UPDATE buffers SET paused = ? WHERE name = ?", paused ? 1 : 0, name);
      return null;
    }));
  }

  @Override
  public CompletableFuture<List<Long>> push(String name, List<NewItem> items, long now) {
    // Ids are given on the writer thread, so commit order is id order.
    return store.write(c -> {
      long first = nextIds.computeIfAbsent(name, n -> {
        try {
          return BufferStore.count(c, "SELECT COALESCE(MAX(id), 0) FROM items WHERE buffer = ?", n) + 1;
        } catch (SQLException e) {
          throw new IllegalStateException(e.getMessage(), e);
        }
      });
      List<Long> ids = insert(c, name, first, items, now);
      nextIds.put(name, first + items.size());
      return ids;
    });
  }

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
        ins.setString(1, name);
        ins.setLong(2, id);
        ins.setBytes(3, it.body());
        ins.setString(4, it.storedHeaders());
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

  @Override
  public Takeover takeOver(String name, long now) {
    int reopened = join(store.write(c -> {
      try (PreparedStatement ps = c.prepareStatement("UPDATE items SET open_attempt = 0, duplicate = 1,"
          + " history = history || ? WHERE buffer = ? AND state = 'pending' AND open_attempt = 1 AND batch IS NULL")) {
        ps.setString(1, Instant.ofEpochMilli(now) + " " + Buffers.REOPENED + "\n");
        ps.setString(2, name);
        return ps.executeUpdate();
      }
    }));
    List<OpenItem> items = store.read(c -> {
      List<OpenItem> out = new ArrayList<>();
      try (PreparedStatement ps = c.prepareStatement(
          "SELECT id, okey, created, next_at, retries FROM items WHERE buffer = ? AND state = 'pending'"
              + " AND batch IS NULL ORDER BY id")) {
        ps.setString(1, name);
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            out.add(new OpenItem(rs.getLong(1), rs.getString(2), rs.getLong(3), rs.getLong(4), rs.getInt(5)));
          }
        }
      }
      return out;
    });
    return new Takeover(items, reopened, 0);
  }

  @Override
  public CompletableFuture<Send> startAttempt(String name, long id) {
    return store.write(c -> {
      exec(c, "UPDATE items SET attempts = attempts + 1, open_attempt = 1 WHERE buffer = ? AND id = ?", name, id);
      try (PreparedStatement ps = c.prepareStatement(
          "SELECT body, headers, idem, attempts FROM items WHERE buffer = ? AND id = ?")) {
        ps.setString(1, name);
        ps.setLong(2, id);
        try (ResultSet rs = ps.executeQuery()) {
          return rs.next() ? new Send(rs.getBytes(1), rs.getString(2), rs.getString(3), rs.getInt(4)) : null;
        }
      }
    });
  }

  @Override
  public CompletableFuture<Void> finishAttempt(String name, long id, Result r) {
    return store.write(c -> {
      try (PreparedStatement ps = c.prepareStatement("UPDATE items SET state = ?, open_attempt = 0, retries = ?,"
          + " next_at = ?, status = ?, excerpt = ?, history = history || ?, finished = ? WHERE buffer = ? AND id = ?")) {
        ps.setString(1, r.state());
        ps.setInt(2, r.retries());
        ps.setLong(3, r.nextAt());
        if (r.status() == 0) {
          ps.setNull(4, java.sql.Types.INTEGER);
        } else {
          ps.setInt(4, r.status());
        }
        ps.setString(5, r.excerpt());
        ps.setString(6, r.line());
        if (r.finished() != 0) {
          ps.setLong(7, r.finished());
        } else {
          ps.setNull(7, java.sql.Types.INTEGER);
        }
        ps.setString(8, name);
        ps.setLong(9, id);
        ps.executeUpdate();
      }
      return null;
    });
  }

  @Override
  public CompletableFuture<Void> moved(String name, Map<Long, String> lines, long now) {
    return store.write(c -> {
      for (Map.Entry<Long, String> e : lines.entrySet()) {
        exec(c, "UPDATE items SET state = 'moved', finished = ?, history = history || ? WHERE buffer = ? AND id = ?"
            + " AND state = 'pending' AND open_attempt = 0 AND batch IS NULL", now, e.getValue(), name, e.getKey());
      }
      return null;
    });
  }

  @Override
  public ItemRecord item(String name, long id) {
    return store.read(c -> {
      try (PreparedStatement ps = c.prepareStatement("SELECT state, attempts, retries, next_at, status, excerpt,"
          + " history, created, finished, duplicate, idem, okey, open_attempt FROM items WHERE buffer = ? AND id = ?")) {
        ps.setString(1, name);
        ps.setLong(2, id);
        try (ResultSet rs = ps.executeQuery()) {
          if (!rs.next()) {
            return null;
          }
          return new ItemRecord(id, rs.getString(1), rs.getInt(13) == 1, rs.getInt(2), rs.getInt(3), rs.getLong(4),
              rs.getInt(5), rs.getString(6), rs.getString(7), rs.getLong(8), rs.getLong(9), rs.getInt(10) == 1,
              rs.getString(11), rs.getString(12));
        }
      }
    });
  }

  @Override
  public Counts counts(String name, long now) {
    return store.read(c -> new Counts(
        BufferStore.count(c, "SELECT COUNT(*) FROM items WHERE buffer = ? AND state = 'pending'", name),
        BufferStore.count(c, "SELECT COUNT(*) FROM items WHERE buffer = ? AND state = 'completed'", name),
        BufferStore.count(c, "SELECT COUNT(*) FROM items WHERE buffer = ? AND state = 'failed'", name),
        BufferStore.count(c, "SELECT COUNT(*) FROM items WHERE buffer = ? AND state = 'completed' AND finished >= ?",
            name, now - 10_000),
        BufferStore.count(c, "SELECT COALESCE(MIN(created), 0) FROM items WHERE buffer = ? AND state = 'pending'",
            name),
        BufferStore.count(c, "SELECT COUNT(*) FROM items WHERE buffer = ? AND state = 'moved'", name)));
  }

  @Override
  public void expire(String name, long before) {
    join(store.write(c -> {
      exec(c, "DELETE FROM items WHERE buffer = ? AND state IN ('completed', 'failed', 'moved') AND finished < ?", name,
          before);
      return null;
    }));
  }

  @Override
  public long oldestFinished(String name) {
    return store.read(c -> BufferStore.count(c, "SELECT COALESCE(MIN(finished), 0) FROM items WHERE buffer = ?"
        + " AND state IN ('completed', 'failed', 'moved')", name));
  }

  // ---------------------------------------------------------------------------------------
  // openai-batch

  @Override
  public CompletableFuture<BatchRecord> openBatch(String name, List<Long> ids, long now) {
    return store.write(c -> {
      long seq = BufferStore.count(c, "SELECT COALESCE(MAX(seq), 0) FROM batches WHERE buffer = ?", name) + 1;
      exec(c, "INSERT INTO batches(buffer, seq, stage, created) VALUES (?, ?, 'preparing', ?)", name, seq, now);
      List<Long> taken = new ArrayList<>(ids.size());
      try (PreparedStatement ps = c.prepareStatement("UPDATE items SET batch = ?, attempts = attempts + 1,"
          + " open_attempt = 1 WHERE buffer = ? AND id = ? AND state = 'pending' AND batch IS NULL")) {
        for (long id : ids) {
          ps.setLong(1, seq);
          ps.setString(2, name);
          ps.setLong(3, id);
          if (ps.executeUpdate() == 1) {
            taken.add(id);
          }
        }
      }
      return new BatchRecord(seq, "preparing", null, null, taken);
    });
  }

  @Override
  public Map<Long, byte[]> bodies(String name, List<Long> ids) {
    return store.read(c -> {
      Map<Long, byte[]> out = new HashMap<>();
      try (PreparedStatement ps = c.prepareStatement("SELECT body FROM items WHERE buffer = ? AND id = ?")) {
        for (long id : ids) {
          ps.setString(1, name);
          ps.setLong(2, id);
          try (ResultSet rs = ps.executeQuery()) {
            if (rs.next()) {
              out.put(id, rs.getBytes(1));
            }
          }
        }
      }
      return out;
    });
  }

  @Override
  public CompletableFuture<Void> dropFromBatch(String name, long seq, List<Long> ids) {
    return store.write(c -> {
      for (long id : ids) {
        exec(c, "UPDATE items SET batch = NULL, open_attempt = 0, attempts = attempts - 1 WHERE buffer = ? AND id = ?"
            + " AND batch = ?", name, id, seq);
      }
      return null;
    });
  }

  @Override
  public CompletableFuture<Void> batchStage(String name, long seq, String stage, String inputFile,
      String providerId) {
    return store.write(c -> {
      exec(c, "UPDATE batches SET stage = ?, input_file = COALESCE(?, input_file), provider_id = COALESCE(?,"
          + " provider_id) WHERE buffer = ? AND seq = ?", stage, inputFile, providerId, name, seq);
      return null;
    });
  }

  @Override
  public List<BatchRecord> openBatches(String name) {
    return store.read(c -> {
      List<BatchRecord> out = new ArrayList<>();
      try (PreparedStatement ps = c.prepareStatement("SELECT seq, stage, input_file, provider_id FROM batches"
          + " WHERE buffer = ? AND finished IS NULL ORDER BY seq");
          PreparedStatement items = c.prepareStatement("SELECT id FROM items WHERE buffer = ? AND batch = ?"
              + " ORDER BY id")) {
        ps.setString(1, name);
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            List<Long> ids = new ArrayList<>();
            items.setString(1, name);
            items.setLong(2, rs.getLong(1));
            try (ResultSet r2 = items.executeQuery()) {
              while (r2.next()) {
                ids.add(r2.getLong(1));
              }
            }
            out.add(new BatchRecord(rs.getLong(1), rs.getString(2), rs.getString(3), rs.getString(4), ids));
          }
        }
      }
      return out;
    });
  }

  @Override
  public CompletableFuture<Void> finishBatch(String name, long seq, Map<Long, Result> results, String requeued,
      long now) {
    return store.write(c -> {
      for (Map.Entry<Long, Result> e : results.entrySet()) {
        Result r = e.getValue();
        // Only an item still in this batch: a result read twice (a restart mid-download) lands once.
        exec(c, "UPDATE items SET state = ?, open_attempt = 0, retries = ?, next_at = ?, status = ?, excerpt = ?,"
            + " history = history || ?, finished = ?, batch = NULL WHERE buffer = ? AND id = ? AND batch = ?",
            r.state(), r.retries(), r.nextAt(), r.status() == 0 ? null : r.status(), r.excerpt(), r.line(),
            r.finished() != 0 ? r.finished() : null, name, e.getKey(), seq);
      }
      exec(c, "UPDATE items SET batch = NULL, open_attempt = 0, history = history || ? WHERE buffer = ? AND batch = ?",
          requeued, name, seq);
      exec(c, "UPDATE batches SET stage = 'finished', finished = ? WHERE buffer = ? AND seq = ?", now, name, seq);
      return null;
    });
  }

  @Override
  public void close() {
    store.close();
  }

  static void exec(Connection c, String sql, Object... args) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < args.length; i++) {
        ps.setObject(i + 1, args[i]);
      }
      ps.executeUpdate();
    }
  }

  static <T> T join(CompletableFuture<T> f) {
    try {
      return f.join();
    } catch (java.util.concurrent.CompletionException e) {
      if (e.getCause() instanceof RuntimeException re) {
        throw re;
      }
      throw new IllegalStateException(e.getCause());
    }
  }
}
