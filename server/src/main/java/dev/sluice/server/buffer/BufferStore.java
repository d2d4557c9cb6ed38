package dev.sluice.server.buffer;

import java.io.IOException;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Buffers and their items in {@code buffers.db} in the data dir: SQLite in WAL mode.
 *
 * <p>Why SQLite: a file format built for exactly this (crash-safe transactions, decades of
 * fsync care, a stable on-disk format one can inspect with {@code sqlite3}); indexed queries for
 * "the next pending item", counts per state and retention clean-up, which an append-only log would
 * have to rebuild in memory and compact by hand; one small dependency ({@code sqlite-jdbc}, the
 * native library inside the jar). H2's MVStore was the pure-Java alternative; its commits are
 * asynchronous by default and its format changes between versions.
 *
 * <p>Durability: every write goes through one writer thread that takes whatever is queued, runs
 * it as one transaction and commits once: a group commit, so a thousand concurrent pushes cost
 * one fsync, not a thousand. {@code synchronous=FULL} (default) makes each commit survive power
 * loss; {@code NORMAL} survives a process crash (kill -9) but may lose the last commits on power
 * loss, for more speed. A push is answered only after its commit.
 */
final class BufferStore implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(BufferStore.class);

  /** A unit of work for the writer: runs inside the group's transaction. */
  interface Write<T> {
    T apply(Connection c) throws SQLException;
  }

  private record Job<T>(Write<T> write, CompletableFuture<T> done) {}

  private final Connection writer;
  private final Connection reader;
  private final BlockingQueue<Job<?>> queue = new LinkedBlockingQueue<>();
  private final Thread thread;
  private volatile boolean closed;

  BufferStore(Path dataDir, boolean fsyncEveryCommit) throws IOException {
    Path file = dataDir.resolve("buffers.db");
    try {
      writer = DriverManager.getConnection("jdbc:sqlite:" + file);
      try (Statement s = writer.createStatement()) {
        s.execute("PRAGMA journal_mode=WAL");
        s.execute("PRAGMA synchronous=" + (fsyncEveryCommit ? "FULL" : "NORMAL"));
        s.execute("PRAGMA busy_timeout=5000");
        s.execute("CREATE TABLE IF NOT EXISTS buffers(name TEXT PRIMARY KEY, spec TEXT NOT NULL,"
            + " paused INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL)");
        s.execute("CREATE TABLE IF NOT EXISTS items(buffer TEXT NOT NULL, id INTEGER NOT NULL, body BLOB NOT NULL,"
            + " headers TEXT, idem TEXT NOT NULL, okey TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
            + " retries INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0,"
            + " open_attempt INTEGER NOT NULL DEFAULT 0, duplicate INTEGER NOT NULL DEFAULT 0, status INTEGER,"
            + " excerpt TEXT, history TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL, finished INTEGER,"
            + " PRIMARY KEY(buffer, id))");
        s.execute("CREATE INDEX IF NOT EXISTS items_state ON items(buffer, state, id)");
        s.execute("CREATE UNIQUE INDEX IF NOT EXISTS items_idem ON items(buffer, idem)");
      }
      writer.setAutoCommit(false);
      reader = DriverManager.getConnection("jdbc:sqlite:" + file);
      try (Statement s = reader.createStatement()) {
        s.execute("PRAGMA busy_timeout=5000");
      }
    } catch (SQLException e) {
      throw new IOException("cannot open the buffer store " + file + " (" + e.getMessage()
          + "): is the data dir writable, and not used by another coordinator?", e);
    }
    thread = new Thread(this::run, "sluice-buffer-store");
    thread.setDaemon(true);
    thread.start();
  }

  /** Queues a write; the future completes once it is committed (durable). */
  <T> CompletableFuture<T> write(Write<T> w) {
    CompletableFuture<T> done = new CompletableFuture<>();
    if (closed) {
      done.completeExceptionally(new IllegalStateException("the buffer store is closed"));
      return done;
    }
    queue.add(new Job<>(w, done));
    return done;
  }

  /** Runs a read on the reader connection (sees every committed write). */
  synchronized <T> T read(Write<T> r) {
    try {
      return r.apply(reader);
    } catch (SQLException e) {
      throw new IllegalStateException("reading the buffer store failed: " + e.getMessage(), e);
    }
  }

  private void run() {
    List<Job<?>> batch = new ArrayList<>();
    while (!closed || !queue.isEmpty()) {
      try {
        Job<?> first = queue.take();
        batch.add(first);
        queue.drainTo(batch, 4096);
        commit(batch);
      } catch (InterruptedException e) {
        if (closed) {
          break;
        }
      } finally {
        batch.clear();
      }
    }
  }

  @SuppressWarnings({"unchecked", "rawtypes"})
  private void commit(List<Job<?>> batch) {
    List<Object> results = new ArrayList<>(batch.size());
    List<Throwable> errors = new ArrayList<>(batch.size());
    for (Job<?> j : batch) {
      try (Statement sp = writer.createStatement()) {
        // Each job in a savepoint: one failing job does not take the others' writes with it.
        sp.execute("SAVEPOINT job");
        results.add(j.write().apply(writer));
        errors.add(null);
        sp.execute("RELEASE job");
      } catch (SQLException | RuntimeException e) {
        results.add(null);
        errors.add(e);
        try (Statement rb = writer.createStatement()) {
          rb.execute("ROLLBACK TO job");
          rb.execute("RELEASE job");
        } catch (SQLException ignored) {
          // the commit below reports a broken connection
        }
      }
    }
    try {
      writer.commit();
    } catch (SQLException e) {
      log.error("committing {} buffer writes failed: {}", batch.size(), e.getMessage());
      for (Job<?> j : batch) {
        j.done().completeExceptionally(new IllegalStateException("the buffer store could not commit: "
            + e.getMessage(), e));
      }
      try {
        writer.rollback();
      } catch (SQLException ignored) {
        // nothing more to do
      }
      return;
    }
    for (int i = 0; i < batch.size(); i++) {
      Job j = batch.get(i);
      if (errors.get(i) != null) {
        j.done().completeExceptionally(errors.get(i));
      } else {
        j.done().complete(results.get(i));
      }
    }
  }

  @Override
  public void close() {
    closed = true;
    thread.interrupt();
    try {
      thread.join(5_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    try {
      writer.close();
      synchronized (this) {
        reader.close();
      }
    } catch (SQLException e) {
      log.warn("closing the buffer store: {}", e.getMessage());
    }
  }

  static long count(Connection c, String sql, Object... args) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(sql)) {
      for (int i = 0; i < args.length; i++) {
        ps.setObject(i + 1, args[i]);
      }
      try (ResultSet rs = ps.executeQuery()) {
        return rs.next() ? rs.getLong(1) : 0;
      }
    }
  }
}
