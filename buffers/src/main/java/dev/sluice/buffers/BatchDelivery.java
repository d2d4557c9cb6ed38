package dev.sluice.buffers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ThreadLocalRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Delivery of an {@code openai-batch} buffer: pushed items wait until a batch is worth sending
 * ({@link BatchSettings#maxBatchItems} of them, or the oldest has waited {@link
 * BatchSettings#flushAfter}); then one batch at a time is prepared: its items are taken in the
 * store (stage {@code preparing}), written as JSONL lines whose {@code custom_id} is the item id,
 * room for its input tokens is acquired on the buffer's resource, the file is uploaded ({@code
 * uploaded}) and the batch created with Sluice's metadata tag ({@code created}). Each created
 * batch is polled with backoff; when it ends, its output and error files are read and every
 * item's outcome is recorded in one commit with the batch's end.
 *
 * <p>What a line's answer means follows the buffer's retry rules ({@link Outcome#judge}): 2xx
 * completes the item with the response body stored as its excerpt, 408/429/5xx are retried in a
 * later batch while the budget lasts, other statuses fail it. Lines a batch did not run
 * (expired, cancelled, missing from both files) go back to pending without spending the budget.
 *
 * <p>Restart: each batch resumes from its stored stage. {@code preparing}: nothing was created,
 * the items go back to pending. {@code created}: polling resumes. {@code uploaded}: the batch
 * may have been created just before the crash, so the provider's batches are listed and the one
 * whose {@code sluice_batch} tag names it is polled; if none does, the items go back to pending.
 * Results land exactly once: an item's outcome is written only while it is still in its batch.
 *
 * <p>Room in the provider's queue: when the buffer's resource limits {@code enqueued_tokens}, a
 * batch acquires its estimated input tokens before its upload and holds that permit until the
 * batch ends; its end releases it. When the dimension is held ({@code --hold
 * enqueued_tokens=N}, a cap), the permit's lease is renewed every third of it (a batch outlives
 * any lease), so the room comes back exactly when the batch ends.
 * A permit lost meanwhile (its lease ran out through an outage) and a batch resumed after a
 * restart acquire their room again, in line, while the batch runs on: the queue is accounted
 * for again, late rather than never. A run this node no longer moves (the buffer deleted, or
 * owned elsewhere) releases its room; whoever resumes the batch acquires it again.
 */
final class BatchDelivery {

  private static final Logger log = LoggerFactory.getLogger(BatchDelivery.class);
  /** The engine dimension an openai-batch buffer's resource may limit: the provider's batch queue. */
  static final String ENQUEUED_TOKENS = "enqueued_tokens";
  static final String TAG_BUFFER = "sluice_buffer";
  static final String TAG_BATCH = "sluice_batch";
  private static final Duration ACQUIRE_TIMEOUT = Duration.ofSeconds(60);
  private static final long POLL_FIRST_MILLIS = 1_000;
  private static final long POLL_MAX_MILLIS = 60_000;
  /** How long a batch refused for the provider's queue waits before its items are tried again. */
  private static final long QUEUE_FULL_MILLIS = 60_000;

  private final BufferPermits permits;
  private final BufferBackend backend;
  private final Dispatch dispatch;
  private final BufferClock clock;
  private final Known known;
  /**
   * Where a batch's input file is read and written: off the store's callback threads (a Redis
   * read from Lettuce's event loop would wait for itself) and off the timer.
   */
  private final java.util.concurrent.ExecutorService files = Threads.pool("sluice-buffer-batch", 1);
  private volatile boolean closed;

  BatchDelivery(BufferPermits permits, BufferBackend backend, Dispatch dispatch, BufferClock clock, Known known) {
    this.permits = permits;
    this.backend = backend;
    this.dispatch = dispatch;
    this.clock = clock;
    this.known = known;
  }

  /** A batch this node is moving along. */
  private static final class Run {
    final Buffer buffer;
    final int epoch;
    final long seq;
    final List<Long> ids;
    String inputFile;
    String providerId;
    String permit;
    /** The room it holds in enqueued tokens (0: none, the resource does not limit them). */
    long heldTokens;
    /** Set when the batch ended: a room acquired after that is released at once. */
    boolean ended;
    int failures;
    /** A cancel was asked of a batch that outlived its window (a provider that never finishes). */
    boolean cancelAsked;

    Run(Buffer buffer, int epoch, long seq, List<Long> ids) {
      this.buffer = buffer;
      this.epoch = epoch;
      this.seq = seq;
      this.ids = ids;
    }

    String tag() {
      return buffer.spec.name() + "/" + seq;
    }
  }

  /** Starts a batch when one is due; otherwise arms the buffer's timer for when it will be. */
  void pump(Buffer b) {
    BatchSettings s = b.spec.batch();
    List<Long> take = new ArrayList<>();
    int epoch;
    synchronized (b) {
      if (b.paused || b.deleted || closed || !b.owned || b.preparing) {
        return;
      }
      long now = clock.millis();
      long oldest = Long.MAX_VALUE;
      long earliest = Long.MAX_VALUE;
      for (Buffer.Item i : b.open.values()) {
        if (i.running) {
          continue;
        }
        if (i.nextAt > now) {
          earliest = Math.min(earliest, i.nextAt);
          continue;
        }
        oldest = Math.min(oldest, Math.max(i.created, i.nextAt));
        if (take.size() < s.maxBatchItems()) {
          take.add(i.id);
        }
      }
      boolean due = take.size() >= s.maxBatchItems() || (!take.isEmpty() && now - oldest >= s.flushAfter().toMillis());
      if (!due) {
        long at = Math.min(earliest, oldest == Long.MAX_VALUE ? Long.MAX_VALUE : oldest + s.flushAfter().toMillis());
        if (at != Long.MAX_VALUE && at < b.timerAt) {
          if (b.timer != null) {
            b.timer.cancel();
          }
          b.timerAt = at;
          b.timer = clock.schedule(() -> wake(b), Math.max(1, at - now));
        }
        return;
      }
      for (long id : take) {
        b.open.get(id).running = true;
      }
      b.running += take.size();
      b.preparing = true;
      epoch = b.epoch;
    }
    backend.openBatch(b.spec.name(), take, clock.millis()).whenComplete((rec, error) -> guarded(b, () -> {
      if (error != null) {
        log.warn("buffer {}: taking {} items into a batch failed: {}; trying again in a second", b.spec.name(),
            take.size(), Delivery.cause(error).getMessage());
        letGo(b, epoch, take, clock.millis() + 1000);
        synchronized (b) {
          b.preparing = false;
        }
        pump(b);
        return;
      }
      List<Long> gone = new ArrayList<>(take);
      gone.removeAll(rec.items());
      letGo(b, epoch, gone, 0);
      b.batchAt(rec.seq(), "preparing", rec.items().size());
      prepare(new Run(b, epoch, rec.seq(), new ArrayList<>(rec.items())));
    }));
  }

  /**
   * Runs a step from a callback, where an exception would vanish and leave the batch stuck: a
   * bug is logged loudly instead.
   */
  private static void guarded(Buffer b, Runnable step) {
    try {
      step.run();
    } catch (RuntimeException e) {
      log.error("buffer {}: a batch step failed unexpectedly", b.spec.name(), e);
    }
  }

  private void wake(Buffer b) {
    synchronized (b) {
      b.timerAt = Long.MAX_VALUE;
      b.timer = null;
    }
    pump(b);
  }

  /** Items that will not be in the batch after all: pending again (at {@code nextAt} when not 0). */
  private void letGo(Buffer b, int epoch, List<Long> ids, long nextAt) {
    synchronized (b) {
      if (b.epoch != epoch) {
        return;
      }
      for (long id : ids) {
        Buffer.Item i = b.open.get(id);
        if (i != null && i.running) {
          i.running = false;
          b.running--;
          if (nextAt != 0) {
            i.nextAt = nextAt;
          }
        }
      }
    }
  }

  /** Writes the input file, acquires room for it, then uploads it. */
  private void prepare(Run run) {
    try {
      files.execute(() -> guarded(run.buffer, () -> writeFile(run)));
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // closing: the batch resumes from its stored stage after the restart
    }
  }

  private void writeFile(Run run) {
    Buffer b = run.buffer;
    if (!live(run)) {
      return;
    }
    if (run.ids.isEmpty()) {
      backend.finishBatch(b.spec.name(), run.seq, Map.of(), "", clock.millis());
      donePreparing(run);
      return;
    }
    BatchSettings s = b.spec.batch();
    Map<Long, byte[]> bodies = backend.bodies(b.spec.name(), run.ids);
    ByteArrayOutputStream file = new ByteArrayOutputStream();
    long tokens = 0;
    List<Long> over = new ArrayList<>();
    for (long id : run.ids) {
      byte[] body = bodies.get(id);
      if (body == null) {
        continue;
      }
      byte[] line = s.line(Long.toString(id), body);
      // The first line always goes (push refuses a line over the cap): a batch is never empty.
      if (!over.isEmpty() || (file.size() > 0 && file.size() + line.length > s.maxBatchBytes())) {
        over.add(id); // past the byte cap: this item and the rest wait for the next batch
        continue;
      }
      file.writeBytes(line);
      tokens += estimateTokens(body);
    }
    long estimate = Math.max(1, tokens);
    byte[] jsonl = file.toByteArray();
    if (over.isEmpty()) {
      acquireRoom(run, jsonl, estimate);
      return;
    }
    backend.dropFromBatch(b.spec.name(), run.seq, over).whenComplete((x, error) -> guarded(b, () -> {
      if (error != null) {
        retry(run, "taking the items over its byte cap out", error, () -> prepare(run));
        return;
      }
      run.ids.removeAll(over);
      letGo(b, run.epoch, over, 0);
      b.batchAt(run.seq, "preparing", run.ids.size());
      acquireRoom(run, jsonl, estimate);
    }));
  }

  /** Acquires room for the batch's input tokens on the buffer's resource, then uploads it. */
  private void acquireRoom(Run run, byte[] jsonl, long estimate) {
    Buffer b = run.buffer;
    String resource = b.spec.pacingResource();
    String requestId = "batch-" + run.seq + "-" + Long.toString(ThreadLocalRandom.current().nextLong(Long.MAX_VALUE), 36);
    boolean[] held = {false};
    permits.hasDimension(resource, ENQUEUED_TOKENS)
        .thenCombine(permits.holdsDimension(resource, ENQUEUED_TOKENS), (has, holds) -> {
          held[0] = holds;
          return has;
        })
        .thenCompose(has -> permits.acquire(resource, has ? Map.of(ENQUEUED_TOKENS, estimate) : Map.of("requests", 1L),
            ACQUIRE_TIMEOUT, requestId))
        .whenComplete((permit, error) -> guarded(b, () -> {
          boolean holds = held[0];
          if (!live(run)) {
            if (permit != null) {
              permit.ifPresent(p -> permits.release(resource, p, true));
            }
            return;
          }
          if (error != null || permit.isEmpty()) {
            if (error != null) {
              log.warn("buffer {} batch {}: no room on {} for {} enqueued tokens: {}; asking again in 5 s",
                  b.spec.name(), run.seq, resource, estimate, Delivery.cause(error).getMessage());
            }
            clock.schedule(() -> acquireRoom(run, jsonl, estimate), error != null ? 5_000 : 0);
            return;
          }
          run.permit = permit.get();
          if (holds) {
            run.heldTokens = estimate;
            keepRoom(run, resource, run.permit);
          }
          upload(run, jsonl);
        }));
  }

  /**
   * Renews the lease of the permit holding {@code run}'s room every third of the lease, while the
   * batch is open and this node moves it. A permit that is gone (its lease ran out: an outage
   * longer than the lease) is acquired again; a run no longer live lets its room go.
   */
  private void keepRoom(Run run, String resource, String permit) {
    synchronized (run) {
      if (run.ended || !permit.equals(run.permit)) {
        return; // released with the batch's end, or replaced
      }
      if (!live(run)) {
        run.permit = null;
        permits.release(resource, permit, true);
        return;
      }
    }
    permits.renew(resource, permit).whenComplete((lease, error) -> guarded(run.buffer, () -> {
      if (error != null) {
        log.warn("buffer {} batch {}: renewing its room on {} failed: {}; trying again in 5 s",
            run.buffer.spec.name(), run.seq, resource, Delivery.cause(error).getMessage());
        clock.schedule(() -> keepRoom(run, resource, permit), 5_000);
        return;
      }
      if (lease.isEmpty()) {
        synchronized (run) {
          if (run.ended || !permit.equals(run.permit)) {
            return;
          }
          run.permit = null;
        }
        log.warn("buffer {} batch {}: its room on {} was lost (the permit's lease ran out); acquiring {} enqueued"
            + " tokens again while it runs", run.buffer.spec.name(), run.seq, resource, run.heldTokens);
        reacquireRoom(run, resource);
        return;
      }
      clock.schedule(() -> keepRoom(run, resource, permit), Math.max(100, lease.get().toMillis() / 3));
    }));
  }

  /** Acquires {@code run}'s room again (its permit was lost, or the node restarted), in line. */
  private void reacquireRoom(Run run, String resource) {
    String requestId = "batch-" + run.seq + "-" + Long.toString(ThreadLocalRandom.current().nextLong(Long.MAX_VALUE), 36);
    permits.acquire(resource, Map.of(ENQUEUED_TOKENS, run.heldTokens), ACQUIRE_TIMEOUT, requestId)
        .whenComplete((permit, error) -> guarded(run.buffer, () -> {
          if (error != null || permit.isEmpty()) {
            synchronized (run) {
              if (run.ended || !live(run)) {
                permit.ifPresent(p -> permits.release(resource, p, true));
                return;
              }
            }
            clock.schedule(() -> reacquireRoom(run, resource), error != null ? 5_000 : 0);
            return;
          }
          synchronized (run) {
            if (run.ended || !live(run)) {
              permits.release(resource, permit.get(), true);
              return;
            }
            run.permit = permit.get();
          }
          keepRoom(run, resource, permit.get());
        }));
  }

  /**
   * A batch resumed after a restart held room that went with the restart (memory) or whose
   * lease runs out (Redis): its room, estimated from its items as at its upload, is acquired
   * again. Off the store's threads: reading the bodies is a store call.
   */
  private void reclaimRoom(Run run) {
    String resource = run.buffer.spec.pacingResource();
    permits.holdsDimension(resource, ENQUEUED_TOKENS).whenComplete((holds, error) -> {
      if (error != null || !Boolean.TRUE.equals(holds)) {
        return;
      }
      try {
        files.execute(() -> guarded(run.buffer, () -> {
          long tokens = 0;
          for (byte[] body : backend.bodies(run.buffer.spec.name(), run.ids).values()) {
            tokens += estimateTokens(body);
          }
          run.heldTokens = Math.max(1, tokens);
          reacquireRoom(run, resource);
        }));
      } catch (java.util.concurrent.RejectedExecutionException e) {
        // closing
      }
    });
  }

  /**
   * Input tokens a body will count in the provider's queue, estimated as its bytes / 4 (the
   * usual English-text ratio): the queue limit is reached a little early rather than passed.
   */
  static long estimateTokens(byte[] body) {
    return (body.length + 3) / 4;
  }

  private void upload(Run run, byte[] jsonl) {
    Buffer b = run.buffer;
    String boundary = "sluice" + Long.toString(ThreadLocalRandom.current().nextLong(Long.MAX_VALUE), 36);
    ByteArrayOutputStream body = new ByteArrayOutputStream();
    body.writeBytes(("--" + boundary + "\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--"
        + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"sluice-" + b.spec.name() + "-"
        + run.seq + ".jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n").getBytes(StandardCharsets.UTF_8));
    body.writeBytes(jsonl);
    body.writeBytes(("\r\n--" + boundary + "--\r\n").getBytes(StandardCharsets.UTF_8));
    call(run, "POST", "/files", "multipart/form-data; boundary=" + boundary, body.toByteArray())
        .thenCompose(file -> {
          run.inputFile = text(file, "id");
          return backend.batchStage(b.spec.name(), run.seq, "uploaded", run.inputFile, null);
        })
        .whenComplete((x, error) -> {
          if (error != null) {
            retry(run, "uploading its input file", error, () -> upload(run, jsonl));
          } else {
            run.failures = 0;
            b.batchAt(run.seq, "uploaded", run.ids.size());
            create(run);
          }
        });
  }

  private void create(Run run) {
    Buffer b = run.buffer;
    ObjectNode req = BufferSpec.JSON.createObjectNode();
    req.put("input_file_id", run.inputFile);
    req.put("endpoint", b.spec.batch().endpoint());
    req.put("completion_window", "24h");
    ObjectNode meta = req.putObject("metadata");
    meta.put(TAG_BUFFER, b.spec.name());
    meta.put(TAG_BATCH, run.tag());
    call(run, "POST", "/batches", "application/json", req.toString().getBytes(StandardCharsets.UTF_8))
        .thenCompose(batch -> {
          run.providerId = text(batch, "id");
          return backend.batchStage(b.spec.name(), run.seq, "created", null, run.providerId);
        })
        .whenComplete((x, error) -> {
          if (error != null) {
            retry(run, "creating it", error, () -> create(run));
            return;
          }
          run.failures = 0;
          synchronized (b) {
            b.batches.put(run.seq, run.providerId);
          }
          b.batchAt(run.seq, "created", run.ids.size());
          log.info("buffer {} batch {}: {} items sent as {}", b.spec.name(), run.seq, run.ids.size(), run.providerId);
          donePreparing(run);
          poll(run, POLL_FIRST_MILLIS);
        });
  }

  private void donePreparing(Run run) {
    synchronized (run.buffer) {
      if (run.buffer.epoch == run.epoch) {
        run.buffer.preparing = false;
      }
    }
    pump(run.buffer);
  }

  private void poll(Run run, long delay) {
    clock.schedule(() -> {
      if (!live(run)) {
        return;
      }
      call(run, "GET", "/batches/" + run.providerId, null, null).whenComplete((batch, error) -> {
        if (error != null) {
          retry(run, "reading its status", error, () -> poll(run, 0));
          return;
        }
        run.failures = 0;
        String status = batch.path("status").asText("");
        switch (status) {
          case "validating", "in_progress", "finalizing", "cancelling" -> {
            overdue(run, batch, status);
            poll(run, Math.min(POLL_MAX_MILLIS, Math.max(POLL_FIRST_MILLIS, delay * 2)));
          }
          case "completed", "expired", "cancelled" -> download(run, batch);
          case "failed" -> failed(run, batch);
          default -> retry(run, "reading its status", new IllegalStateException("the provider answered status '"
              + status + "', which the Batch API does not have"), () -> poll(run, 0));
        }
      });
    }, delay);
  }

  /**
   * A provider that never finishes: a batch still open well past its {@code expires_at} (by a
   * tenth of its window, at least a second) is reported and cancelled, so the lines it did not
   * run come back as cancelled and go in a later batch. Polling goes on until it ends: its items
   * stay in it until then, so none is lost or sent twice.
   */
  private void overdue(Run run, JsonNode batch, String status) {
    long expires = batch.path("expires_at").asLong(0);
    long created = batch.path("created_at").asLong(0);
    if (run.cancelAsked || expires <= 0 || created <= 0 || status.equals("cancelling")) {
      return;
    }
    long graceMillis = Math.max(1000, (expires - created) * 100);
    long late = clock.millis() - expires * 1000 - graceMillis;
    if (late < 0) {
      return;
    }
    run.cancelAsked = true;
    log.warn("buffer {} batch {} ({}): still {} {} s after its window ended at the provider; cancelling it, its"
        + " unfinished lines go in a later batch", run.buffer.spec.name(), run.seq, run.providerId, status,
        (clock.millis() / 1000) - expires);
    raw(run, "POST", "/batches/" + run.providerId + "/cancel", "application/json", new byte[0])
        .whenComplete((x, error) -> {
          if (error != null) {
            run.cancelAsked = false; // asked again at the next poll
            log.warn("buffer {} batch {}: the cancel failed ({}); asking again at the next poll",
                run.buffer.spec.name(), run.seq, Delivery.cause(error).getMessage());
          }
        });
  }

  private void download(Run run, JsonNode batch) {
    CompletableFuture<String> out = content(run, batch.path("output_file_id"));
    CompletableFuture<String> err = content(run, batch.path("error_file_id"));
    out.thenCombine(err, (o, e) -> o + "\n" + e).whenComplete((lines, error) -> {
      if (error != null) {
        retry(run, "downloading its results", error, () -> download(run, batch));
        return;
      }
      finish(run, batch.path("status").asText(), lines);
    });
  }

  private CompletableFuture<String> content(Run run, JsonNode fileId) {
    if (!fileId.isTextual()) {
      return CompletableFuture.completedFuture("");
    }
    return raw(run, "GET", "/files/" + fileId.asText() + "/content", null, null)
        .thenApply(r -> new String(r, StandardCharsets.UTF_8));
  }

  /** Reads every line's answer and records the batch's end with each item's outcome, in one commit. */
  private void finish(Run run, String status, String lines) {
    Buffer b = run.buffer;
    long now = clock.millis();
    known.batchEnded(b, status);
    Map<Long, BufferBackend.Result> results = new HashMap<>();
    Map<Long, Outcome.Verdict> verdicts = new HashMap<>();
    java.util.Set<Long> inBatch = new java.util.HashSet<>(run.ids);
    for (String raw : lines.split("\n")) {
      if (raw.isBlank()) {
        continue;
      }
      JsonNode line;
      try {
        line = BufferSpec.JSON.readTree(raw);
      } catch (IOException e) {
        log.warn("buffer {} batch {}: a result line is not JSON; its item is queued again", b.spec.name(), run.seq);
        continue;
      }
      long id;
      try {
        id = Long.parseLong(line.path("custom_id").asText(""));
      } catch (NumberFormatException e) {
        continue;
      }
      if (!inBatch.contains(id)) {
        continue;
      }
      JsonNode response = line.get("response");
      JsonNode error = line.get("error");
      Outcome o;
      if (response != null && response.isObject()) {
        int code = response.path("status_code").asInt(0);
        o = new Outcome(code, response.path("body").toString(), code == 0 ? "no status in the result line" : null,
            1000, false, true);
      } else if (error != null && error.isObject() && !error.path("code").asText().startsWith("batch_")) {
        o = new Outcome(0, null, error.path("code").asText() + ": " + error.path("message").asText(), 0, false, true);
      } else {
        continue; // expired or cancelled before it ran: queued again, nothing spent
      }
      Outcome.Verdict v = o.judge(b.spec, retries(b, id), now, ThreadLocalRandom.current()::nextDouble);
      verdicts.put(id, v);
      String text = Instant.ofEpochMilli(now) + " batch " + run.providerId + ": "
          + (o.error() != null ? o.error() : "HTTP " + o.status()) + v.note() + "\n";
      results.put(id, new BufferBackend.Result(v.state(), v.retries(), v.nextAt(), o.status(), o.excerpt(), text,
          v.pending() ? 0 : now));
    }
    String requeued = Instant.ofEpochMilli(now) + " batch " + run.providerId + " ended " + status
        + " before this line ran: queued again for a later batch\n";
    end(run, results, verdicts, requeued, now, 0);
  }

  /** A batch the provider refused as a whole: its queue was full, or the file was not valid. */
  private void failed(Run run, JsonNode batch) {
    Buffer b = run.buffer;
    long now = clock.millis();
    known.batchEnded(b, "failed");
    StringBuilder why = new StringBuilder();
    boolean queueFull = false;
    for (JsonNode e : batch.path("errors").path("data")) {
      queueFull |= e.path("code").asText().equals("token_limit_exceeded");
      why.append(why.length() == 0 ? "" : "; ").append(e.path("code").asText()).append(": ")
          .append(e.path("message").asText());
    }
    if (queueFull) {
      log.warn("buffer {} batch {}: the provider's batch queue is full ({}); its items wait {} s", b.spec.name(),
          run.seq, why, QUEUE_FULL_MILLIS / 1000);
      end(run, Map.of(), Map.of(), Instant.ofEpochMilli(now) + " batch " + run.providerId + " refused: " + why
          + "; queued again\n", now, now + QUEUE_FULL_MILLIS);
      return;
    }
    log.warn("buffer {} batch {} failed at the provider: {}", b.spec.name(), run.seq, why);
    Map<Long, BufferBackend.Result> results = new HashMap<>();
    Map<Long, Outcome.Verdict> verdicts = new HashMap<>();
    Outcome o = new Outcome(0, null, "batch failed: " + why, 0, false, true);
    for (long id : run.ids) {
      Outcome.Verdict v = o.judge(b.spec, retries(b, id), now, ThreadLocalRandom.current()::nextDouble);
      verdicts.put(id, v);
      results.put(id, new BufferBackend.Result(v.state(), v.retries(), v.nextAt(), 0, null,
          Instant.ofEpochMilli(now) + " batch " + run.providerId + ": " + o.error() + v.note() + "\n",
          v.pending() ? 0 : now));
    }
    end(run, results, verdicts, "", now, 0);
  }

  private static int retries(Buffer b, long id) {
    synchronized (b) {
      Buffer.Item i = b.open.get(id);
      return i == null ? 0 : i.retries;
    }
  }

  /** Records the batch's end, frees its room in the provider's queue, and applies it in memory. */
  private void end(Run run, Map<Long, BufferBackend.Result> results, Map<Long, Outcome.Verdict> verdicts,
      String requeued, long now, long requeueAt) {
    Buffer b = run.buffer;
    backend.finishBatch(b.spec.name(), run.seq, results, requeued, now).whenComplete((x, error) -> {
      if (error != null) {
        retry(run, "recording its results", error, () -> end(run, results, verdicts, requeued, now, requeueAt));
        return;
      }
      String held;
      synchronized (run) {
        run.ended = true;
        held = run.permit;
        run.permit = null;
      }
      if (held != null) {
        permits.release(b.spec.pacingResource(), held, true); // the batch left the provider's queue
      }
      boolean anyFinished = false;
      synchronized (b) {
        b.batches.remove(run.seq);
        b.batchEnded(run.seq);
        if (b.epoch != run.epoch) {
          return;
        }
        for (long id : run.ids) {
          Buffer.Item i = b.open.get(id);
          if (i == null) {
            continue;
          }
          if (i.running) {
            i.running = false;
            b.running--;
          }
          Outcome.Verdict v = verdicts.get(id);
          if (v == null) {
            if (requeueAt != 0) {
              i.nextAt = requeueAt;
            }
            continue;
          }
          known.counted(b, v.verdict());
          i.retries = v.retries();
          if (v.pending()) {
            i.nextAt = v.nextAt();
          } else {
            b.open.remove(id);
            anyFinished = true;
            if (v.state().equals("completed")) {
              b.delivered++;
              b.throughput.add(now);
            }
          }
        }
      }
      log.info("buffer {} batch {} ({}) ended: {} items answered, {} queued again", b.spec.name(), run.seq,
          run.providerId, results.size(), run.ids.size() - results.size());
      if (anyFinished) {
        finished.accept(b, now);
      }
      pump(b);
    });
  }

  /** Arms the buffer's clean-up after items finished (Delivery's retention). */
  private java.util.function.ObjLongConsumer<Buffer> finished = (b, now) -> {};

  void onFinished(java.util.function.ObjLongConsumer<Buffer> f) {
    this.finished = f;
  }

  /** A step failed: reported, and tried again after the buffer's backoff; no item is let go. */
  private void retry(Run run, String step, Throwable error, Runnable again) {
    if (!live(run)) {
      return;
    }
    run.failures++;
    BufferSpec spec = run.buffer.spec;
    long delay = Backoff.delay(spec.backoff(), spec.backoffBase(), spec.backoffMax(), Math.min(run.failures, 30),
        ThreadLocalRandom.current()::nextDouble).toMillis();
    log.warn("buffer {} batch {}: {} failed ({}); trying again in {} ms", spec.name(), run.seq, step,
        Delivery.cause(error).getMessage(), delay);
    clock.schedule(again, delay);
  }

  private boolean live(Run run) {
    return !closed && run.buffer.current(run.epoch);
  }

  // ---------------------------------------------------------------------------------------
  // Restart

  /** This node starts delivering {@code b}: resumes each of its batches from its stored stage. */
  void started(Buffer b) {
    List<BufferBackend.BatchRecord> open = backend.openBatches(b.spec.name());
    int epoch;
    synchronized (b) {
      epoch = b.epoch;
    }
    for (BufferBackend.BatchRecord r : open) {
      Run run = new Run(b, epoch, r.seq(), new ArrayList<>(r.items()));
      run.inputFile = r.inputFile();
      run.providerId = r.providerId();
      synchronized (b) {
        for (long id : r.items()) {
          BufferBackend.ItemRecord item = backend.item(b.spec.name(), id);
          Buffer.Item i = new Buffer.Item(id, item == null ? null : item.key(), item == null ? 0 : item.created(), 0);
          i.retries = item == null ? 0 : item.retries();
          i.running = true;
          b.open.put(id, i);
          b.running++;
        }
      }
      b.batchAt(run.seq, r.stage(), run.ids.size());
      switch (r.stage()) {
        case "created" -> {
          synchronized (b) {
            b.batches.put(run.seq, run.providerId);
          }
          log.info("buffer {} batch {}: polling {} again after the restart", b.spec.name(), run.seq, run.providerId);
          reclaimRoom(run);
          poll(run, 0);
        }
        case "uploaded" -> recover(run, null);
        default -> end(run, Map.of(), Map.of(), Instant.ofEpochMilli(clock.millis()) + " restart: batch " + run.seq
            + " was not yet sent; queued again\n", clock.millis(), 0);
      }
    }
  }

  /**
   * A batch whose create may or may not have reached the provider: finds it by its tag among the
   * provider's batches (newest first, page by page), else queues its items again.
   */
  private void recover(Run run, String after) {
    String page = "/batches?limit=100" + (after == null ? "" : "&after=" + after);
    call(run, "GET", page, null, null).whenComplete((list, error) -> {
      if (error != null) {
        retry(run, "finding it among the provider's batches", error, () -> recover(run, after));
        return;
      }
      for (JsonNode batch : list.path("data")) {
        if (run.tag().equals(batch.path("metadata").path(TAG_BATCH).asText(null))) {
          run.providerId = batch.path("id").asText();
          backend.batchStage(run.buffer.spec.name(), run.seq, "created", null, run.providerId);
          synchronized (run.buffer) {
            run.buffer.batches.put(run.seq, run.providerId);
          }
          run.buffer.batchAt(run.seq, "created", run.ids.size());
          log.info("buffer {} batch {}: found as {} by its tag after the restart", run.buffer.spec.name(), run.seq,
              run.providerId);
          reclaimRoom(run);
          poll(run, 0);
          return;
        }
      }
      if (list.path("has_more").asBoolean(false) && list.path("last_id").isTextual()) {
        recover(run, list.path("last_id").asText());
        return;
      }
      long now = clock.millis();
      end(run, Map.of(), Map.of(), Instant.ofEpochMilli(now) + " restart: batch " + run.seq
          + " was uploaded but never created at the provider; queued again\n", now, 0);
    });
  }

  /**
   * The buffer is deleted: asks the provider to cancel each of its open batches (fire and forget),
   * those this node runs and those the store knows of (shared: another node may run them).
   */
  void cancelAll(Buffer b) {
    Map<Long, String> open = new HashMap<>();
    try {
      for (BufferBackend.BatchRecord r : backend.openBatches(b.spec.name())) {
        open.put(r.seq(), r.providerId());
      }
    } catch (RuntimeException e) {
      log.warn("buffer {} deleted: reading its open batches failed ({}); cancelling those this node knows",
          b.spec.name(), e.getMessage());
    }
    synchronized (b) {
      b.batches.forEach((seq, id) -> open.merge(seq, id, (stored, here) -> here != null ? here : stored));
    }
    for (Map.Entry<Long, String> e : open.entrySet()) {
      if (e.getValue() == null) {
        continue;
      }
      Run run = new Run(b, -1, e.getKey(), List.of());
      raw(run, "POST", "/batches/" + e.getValue() + "/cancel", "application/json", new byte[0])
          .whenComplete((x, error) -> {
            if (error != null) {
              log.warn("buffer {} deleted: cancelling its batch {} failed: {}; it runs to its end at the provider",
                  b.spec.name(), e.getValue(), Delivery.cause(error).getMessage());
            } else {
              log.info("buffer {} deleted: its batch {} cancelled", b.spec.name(), e.getValue());
            }
          });
    }
  }

  void close() {
    closed = true;
    Threads.stop(files);
  }

  // ---------------------------------------------------------------------------------------
  // HTTP

  private CompletableFuture<JsonNode> call(Run run, String method, String path, String type, byte[] body) {
    return raw(run, method, path, type, body).thenApply(bytes -> {
      try {
        JsonNode n = BufferSpec.JSON.readTree(bytes);
        if (n == null || !n.isObject()) {
          throw new IllegalStateException("the provider answered " + method + " " + path + " with no JSON object");
        }
        return n;
      } catch (IOException e) {
        throw new IllegalStateException("the provider answered " + method + " " + path + " with garbage: "
            + excerpt(bytes));
      }
    });
  }

  private CompletableFuture<byte[]> raw(Run run, String method, String path, String type, byte[] body) {
    BufferSpec spec = run.buffer.spec;
    String base = spec.url().toString().replaceAll("/+$", "");
    URI target = URI.create(base + path);
    HttpRequest.Builder r = HttpRequest.newBuilder(target).timeout(spec.timeout())
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofByteArray(body));
    spec.headers().forEach(r::setHeader);
    if (type != null) {
      r.setHeader("Content-Type", type);
    }
    r.setHeader("User-Agent", "sluice-buffer/0.1");
    return dispatch.call(target, r.build()).thenApply((HttpResponse<byte[]> resp) -> {
      if (resp.statusCode() / 100 != 2) {
        throw new IllegalStateException(method + " " + spec.shownUrl() + path.replaceAll("\\?.*", "") + " answered HTTP "
            + resp.statusCode() + ": " + excerpt(resp.body()));
      }
      return resp.body();
    });
  }

  private static String excerpt(byte[] b) {
    return new String(b, 0, Math.min(b.length, 300), StandardCharsets.UTF_8).replace('\n', ' ');
  }

  private static String text(JsonNode n, String field) {
    JsonNode v = n.get(field);
    if (v == null || !v.isTextual() || v.asText().isEmpty()) {
      throw new IllegalStateException("the provider's answer has no '" + field + "': " + excerpt(n.toString()
          .getBytes(StandardCharsets.UTF_8)));
    }
    return v.asText();
  }
}
