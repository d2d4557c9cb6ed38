package dev.sluice.buffers;

import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * Where buffers and their items live: {@link SqliteBackend} in the data dir for a coordinator on
 * its own, {@link RedisBackend} on the Redis every node shares. {@link Delivery} and {@link
 * Ownership} keep the logic; a backend keeps the records and, when shared, decides which node
 * delivers a buffer (a lease) and tells that node about items pushed on the others.
 */
interface BufferBackend extends AutoCloseable {

  /** A buffer as stored: its spec as stored JSON. */
  record StoredBuffer(String name, String spec, boolean paused) {}

  /** An item not yet completed or failed, as delivery needs it. */
  record OpenItem(long id, String key, long created, long nextAt, int retries) {}

  /** What an attempt sends: the attempt is on record before this is returned. */
  record Send(byte[] body, String headers, String idem, int attempt) {}

  /** An attempt's outcome, to record: {@code finished} 0 while the item stays pending. */
  record Result(String state, int retries, long nextAt, int status, String excerpt, String line, long finished) {}

  /** An item's full record, for {@code GET .../items/{id}}. */
  record ItemRecord(long id, String state, boolean open, int attempts, int retries, long nextAt, int status,
      String excerpt, String history, long created, long finished, boolean duplicate, String idem, String key) {}

  /** A takeover: the unfinished items in id order, and how many had an attempt open. */
  record Takeover(List<OpenItem> items, int reopened, long lastId) {}

  /**
   * Counts across every node: items not finished, completed, failed, completed in the last 10 s,
   * the oldest unfinished one's creation, and items moved to an overflow buffer.
   */
  record Counts(long open, long completed, long failed, long completedLast10s, long oldestOpenCreated, long moved) {}

  /** True when several nodes share the records (leases and following apply). */
  boolean shared();

  List<StoredBuffer> buffers();

  /** False when a buffer of that name exists. */
  boolean create(String name, String spec, long now);

  void delete(String name);

  void setPaused(String name, boolean paused);

  /**
   * Stores items durably in push order; completes with their ids, negated for a repeated
   * idempotency key (the earlier item's id).
   */
  CompletableFuture<List<Long>> push(String name, List<NewItem> items, long now);

  /**
   * Flags attempts left open (by a crash, or a node that lost its lease) as possible duplicates
   * and returns the unfinished items. Called when this node starts delivering the buffer.
   */
  Takeover takeOver(String name, long now);

  /** Records an attempt as open and returns what to send; null when the item is gone or the lease lost. */
  CompletableFuture<Send> startAttempt(String name, long id);

  CompletableFuture<Void> finishAttempt(String name, long id, Result r);

  /**
   * Marks items moved to the overflow buffer (state {@code moved}, finished now, {@code line}
   * appended to each item's history with its new id): only items still pending with no attempt
   * open. {@code lines} maps an item id to its history line.
   */
  CompletableFuture<Void> moved(String name, Map<Long, String> lines, long now);

  /** Null when there is no such item. */
  ItemRecord item(String name, long id);

  Counts counts(String name, long now);

  /** Drops completed and failed items finished before {@code before}; done on return. */
  void expire(String name, long before);

  /** When the earliest completed or failed item still kept finished (millis), or 0 when none is kept. */
  long oldestFinished(String name);

  /**
   * Takes or keeps the right to deliver the buffer (shared backends: a lease in the store;
   * alone: always true).
   */
  default Claim claim(String name) {
    return Claim.KEPT;
  }

  /** What a claim came to. */
  enum Claim {
    /** Another node holds the lease. */
    LOST,
    /** This node held it and still does. */
    KEPT,
    /**
     * This node holds it afresh: nobody held it (a first claim, a dead node's lapsed lease, or
     * this node's own lapsed one: its in-memory state may be stale either way).
     */
    TAKEN
  }

  /** Gives the right up (a clean stop): another node takes over at once. */
  default void disown(String name) {}

  /**
   * Shared backends: items pushed after {@code after} (an item id per buffer) to the buffers
   * given, waiting up to {@code blockMillis} for the first; the map holds only buffers with news.
   */
  default Map<String, List<OpenItem>> follow(Map<String, Long> after, long blockMillis) {
    return Map.of();
  }

  // ---------------------------------------------------------------------------------------
  // openai-batch buffers: which items are in which batch, and how far each batch got, stored
  // with the items, so a restart resumes each batch from its last recorded stage.

  /**
   * A batch as stored.
   *
   * @param seq the buffer's own number for it, from 1
   * @param stage {@code preparing} (items taken, nothing uploaded), {@code uploaded} (the input
   *     file is at the provider), {@code created} (the provider runs it)
   * @param inputFile the provider's id of the input file, or null
   * @param providerId the provider's id of the batch, or null
   */
  record BatchRecord(long seq, String stage, String inputFile, String providerId, List<Long> items) {}

  /**
   * Takes pending items into a new batch (stage {@code preparing}), an attempt opened for each;
   * completes with the batch's number. Items no longer pending are left out of it.
   */
  CompletableFuture<BatchRecord> openBatch(String name, List<Long> ids, long now);

  /** Items' bodies by id (an item gone is absent). */
  Map<Long, byte[]> bodies(String name, List<Long> ids);

  /** Takes items back out of a batch still {@code preparing} (over its byte cap): pending again, attempt undone. */
  CompletableFuture<Void> dropFromBatch(String name, long seq, List<Long> ids);

  /** Records how far a batch got; null ids keep theirs. */
  CompletableFuture<Void> batchStage(String name, long seq, String stage, String inputFile,
      String providerId);

  /** The buffer's batches not yet finished, oldest first. */
  List<BatchRecord> openBatches(String name);

  /**
   * Ends a batch: each item in {@code results} gets its outcome; every other item of the batch
   * goes back to pending with {@code requeued} as its history line. SQLite does it in one commit;
   * Redis in parts, which is as safe: a result lands only while its item is still in the batch.
   */
  CompletableFuture<Void> finishBatch(String name, long seq, Map<Long, Result> results, String requeued,
      long now);

  @Override
  void close();
}
