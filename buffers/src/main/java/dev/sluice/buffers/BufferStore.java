package dev.sluice.buffers;

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
import org.sqlite.SQLiteErrorCode;
import org.sqlite.SQLiteException;

/**
 * Buffers and their items in one SQLite file ({@code buffers.db} in the data dir), in WAL mode.
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

  private final Path file;
  private final Connection writer;
  private final Connection reader;
  private final BlockingQueue<Job<?>> queue = new LinkedBlockingQueue<>();
  private final Thread thread;
  private volatile boolean closed;
  private volatile Runnable onRollback = () -> {};
  /** Set while commits fail (logged once), cleared with one line when one succeeds again. */
  private boolean failing;

  /**
   * Opens (or creates) the database in {@code file}. The caller gives the file its permissions
   * first: SQLite creates the {@code -wal} and {@code -shm} files with the database file's mode.
   */
  BufferStore(Path file, boolean fsyncEveryCommit) throws IOException {
    this.file = file;
    try {
      // JDBC auto-commit on: the writer runs BEGIN, COMMIT and ROLLBACK itself, so it always knows
      // whether a transaction is open (the driver's own bookkeeping went wrong after SQLITE_FULL).
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
        // openai-batch buffers: the batch an item is in (null: none), and each batch's stage.
        boolean hasBatch = false;
        try (ResultSet rs = s.executeQuery("PRAGMA table_info(items)")) {
          while (rs.next()) {
            hasBatch |= rs.getString("name").equals("batch");
          }
        }
        if (!hasBatch) {
          s.execute("ALTER TABLE items ADD COLUMN batch INTEGER");
        }
        s.execute("CREATE TABLE IF NOT EXISTS batches(buffer TEXT NOT NULL, seq INTEGER NOT NULL, stage TEXT NOT NULL,"
            + " input_file TEXT, provider_id TEXT, created INTEGER NOT NULL, finished INTEGER,"
            + " PRIMARY KEY(buffer, seq))");
        s.execute("CREATE INDEX IF NOT EXISTS items_batch ON items(buffer, batch)");
      }
      reader = DriverManager.getConnection("jdbc:sqlite:" + file);
      try (Statement s = reader.createStatement()) {
        s.execute("PRAGMA busy_timeout=5000");
      }
    } catch (SQLException e) {
      throw new IOException("cannot open the buffer store " + file + " (" + e.getMessage()
          + "): is the data dir writable, and not used by another coordinator?", e);
    }
    thread = Threads.thread(this::run, "sluice-buffer-store");
    thread.start();
  }

  /**
   * Runs on the writer thread after a transaction was rolled back (nothing of it stored), so
   * state kept beside the database (the next item ids) can be read again from it.
   */
  void onRollback(Runnable r) {
    this.onRollback = r;
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

  /*
   * One transaction per batch, one savepoint per job. A job that fails is rolled back to its
   * savepoint and answered with its error; the others go on. But SQLite may roll back the whole
   * transaction on its own after some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM): then the
   * savepoint is gone, so is every job's work in this batch, and every job is answered "not
   * stored". A failed COMMIT is rolled back the same way. Each answer says exactly what happened:
   * an id means committed, an error means nothing of that job is in the database, and the next
   * batch starts from a clean connection (no restart needed once the disk has room).
   */
  @SuppressWarnings({"unchecked", "rawtypes"})
  private void commit(List<Job<?>> batch) {
    Object[] results = new Object[batch.size()];
    Throwable[] errors = new Throwable[batch.size()];
    Throwable lost = null;
    try {
      exec("BEGIN IMMEDIATE");
    } catch (SQLException e) {
      lost = e;
    }
    for (int i = 0; i < batch.size() && lost == null; i++) {
      try {
        exec("SAVEPOINT job");
        results[i] = batch.get(i).write().apply(writer);
        exec("RELEASE job");
      } catch (SQLException | RuntimeException e) {
        errors[i] = failure(e);
        try {
          exec("ROLLBACK TO job");
          exec("RELEASE job");
        } catch (SQLException gone) {
          lost = e;
        }
      }
    }
    if (lost == null) {
      try {
        exec("COMMIT");
      } catch (SQLException e) {
        lost = e;
      }
    }
    if (lost != null) {
      try {
        exec("ROLLBACK");
      } catch (SQLException alreadyRolledBack) {
        // SQLite ended the transaction itself: nothing of it is stored either way.
      }
      onRollback.run();
      if (!failing) {
        failing = true;
        log.error("the buffer store {} cannot write ({}): {} writes refused, nothing of them stored; it retries with"
            + " each new write", file, lost.getMessage(), batch.size());
      }
      RuntimeException answer = failure(lost);
      for (Job<?> j : batch) {
        j.done().completeExceptionally(answer);
      }
      return;
    }
    if (failing) {
      failing = false;
      log.info("the buffer store {} writes again", file);
    }
    for (int i = 0; i < batch.size(); i++) {
      Job j = batch.get(i);
      if (errors[i] != null) {
        j.done().completeExceptionally(errors[i]);
      } else {
        j.done().complete(results[i]);
      }
    }
  }

  private void exec(String sql) throws SQLException {
    try (Statement s = writer.createStatement()) {
      s.execute(sql);
    }
  }

  /**
   * What a caller is told: a full disk or a store that cannot write is UNAVAILABLE (503) naming
   * the file; anything else (a bug) as it was thrown.
   */
  private RuntimeException failure(Throwable t) {
    Throwable cause = t;
    while (cause != null && !(cause instanceof SQLiteException)) {
      cause = cause.getCause();
    }
    if (cause instanceof SQLiteException e) {
      int primary = e.getErrorCode() & 0xff;
      if (primary == SQLiteErrorCode.SQLITE_FULL.code) {
        return BufferException.unavailable("not stored: the disk holding the buffer"
            + " store " + file + " is full (SQLITE_FULL); free space there and retry: the store writes again as"
            + " soon as there is room, no restart needed");
      }
      if (STORE_DOWN.contains(primary)) {
        return BufferException.unavailable("not stored: the buffer store " + file
            + " cannot write (" + e.getMessage() + "); check the disk and the data dir's permissions, then retry");
      }
    }
    return t instanceof RuntimeException re ? re : new IllegalStateException("buffer store write failed: "
        + t.getMessage(), t);
  }

  /** SQLite primary result codes that mean the disk or file, not the statement. */
  private static final java.util.Set<Integer> STORE_DOWN = java.util.Set.of(SQLiteErrorCode.SQLITE_IOERR.code,
      SQLiteErrorCode.SQLITE_READONLY.code, SQLiteErrorCode.SQLITE_CANTOPEN.code, SQLiteErrorCode.SQLITE_BUSY.code,
      SQLiteErrorCode.SQLITE_LOCKED.code, SQLiteErrorCode.SQLITE_NOMEM.code, SQLiteErrorCode.SQLITE_CORRUPT.code,
      SQLiteErrorCode.SQLITE_NOTADB.code, SQLiteErrorCode.SQLITE_PERM.code);

  @Override
  public void close() {
    closed = true;
    Threads.stop(thread);
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
