package dev.sluice.server;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.SessionAcquire;
import dev.sluice.proto.v1.SessionAnswer;
import dev.sluice.proto.v1.SessionRequest;
import dev.sluice.proto.v1.SessionResponse;
import dev.sluice.server.auth.Principal;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Ticket;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One {@code Session} stream: acquires and releases in batches, answers batched back.
 *
 * <p>Answers are queued and written by one thread at a time (a stream observer is not
 * thread-safe), into as few messages as the queue holds, with no timer and no added wait. On
 * Netty the writing is a drain scheduled on the stream's event loop by the first answer queued:
 * the transport writes only there anyway, and the loop runs it after the request messages of
 * the same read, so the answers to every message read at once leave in one (on the peers'
 * 64-thread driver: 43 answers a message instead of 16). Without a loop (in-process), whoever
 * queues an answer while nobody writes becomes the writer and drains the queue; the answers a
 * request message reaches at once (grants that need no waiting, refusals) still leave in one
 * message after it is read.
 *
 * <p>Flow control: answers are written only while the transport is ready ({@code isReady}; the
 * writer stops and {@code onReady} resumes it), and the next request message is read only while
 * fewer than {@link #MAX_QUEUED} answers wait to be written. A client that sends but never reads
 * so stalls its own stream at a bounded cost, instead of piling answers up in the server (issue
 * 26: 41 MB sent held 453 MB).
 *
 * <p>The end of the stream, for any reason, cancels every ticket still open on it: waiters leave
 * their queues, and a grant that raced with the end is given back ({@link Ticket}'s protocol).
 */
final class Session implements StreamObserver<SessionRequest> {

  private static final Logger log = LoggerFactory.getLogger(Session.class);
  /** Answers per message at most, so one message stays small however long the queue. */
  private static final int MAX_BATCH = 512;
  /** Answers waiting to be written beyond which no further request message is read. */
  static final int MAX_QUEUED = 4 * MAX_BATCH;

  private final CoordinatorService service;
  private final Engine engine;
  private final ServerCallStreamObserver<SessionResponse> out;
  private final ConcurrentHashMap<Long, Ticket> open = new ConcurrentHashMap<>();
  private final ConcurrentLinkedQueue<SessionAnswer> answers = new ConcurrentLinkedQueue<>();
  private final AtomicInteger writers = new AtomicInteger();
  private final AtomicInteger queued = new AtomicInteger();
  /** True while a request message has been asked for and not yet delivered. */
  private final AtomicBoolean messageAsked = new AtomicBoolean();
  private volatile boolean ended;
  /** True while a request message is read: its answers wait for its end, to leave together. */
  private volatile boolean reading;
  /** The stream's event loop, where answers are written; null to write where they are reached. */
  private final Executor loop;
  /** True from when a drain is handed to the loop until it starts draining. */
  private final AtomicBoolean drainScheduled = new AtomicBoolean();
  private final Runnable drain = () -> {
    drainScheduled.set(false); // first: an answer queued from now on schedules the next drain
    write();
  };

  /**
   * @param loop the event loop the stream's transport runs on (its answers are written there);
   *     null without one
   */
  Session(CoordinatorService service, Engine engine, StreamObserver<SessionResponse> out, Executor loop) {
    this.loop = loop;
    this.service = service;
    this.engine = engine;
    this.out = (ServerCallStreamObserver<SessionResponse>) out;
    this.out.setOnCancelHandler(this::end);
    this.out.disableAutoRequest();
    this.out.setOnReadyHandler(this::flush);
    readMoreIfRoom();
  }

  /** Asks for the next request message unless answers are piling up unwritten. */
  private void readMoreIfRoom() {
    if (!ended && queued.get() < MAX_QUEUED && messageAsked.compareAndSet(false, true)) {
      out.request(1);
    }
  }

  private void queue(SessionAnswer a) {
    queued.incrementAndGet();
    answers.add(a);
  }

  @Override
  public void onNext(SessionRequest message) {
    messageAsked.set(false);
    if (ended) {
      return;
    }
    reading = true;
    try {
      for (ReleaseRequest r : message.getReleasesList()) {
        release(r);
      }
      for (SessionAcquire a : message.getAcquiresList()) {
        acquire(a.getTag(), a.getRequest());
      }
    } finally {
      reading = false;
    }
    // With a loop the answers are written after this read; the next message may be read first.
    readMoreIfRoom();
    flush(); // after reading is cleared: an answer queued meanwhile by another thread goes too
  }

  private void release(ReleaseRequest r) {
    try {
      Principal.checkResource(r.getResource());
      service.release(r)
          .whenComplete((released, error) -> {
            if (error != null) {
              released(r, EngineException.unwrap(error));
            }
          });
    } catch (RuntimeException e) {
      released(r, e);
    }
  }

  /** A release that failed: never hold a slot hostage to a refused settle (as the unary SDK path). */
  private void released(ReleaseRequest r, Throwable error) {
    if (error instanceof EngineException e && e.reason() == EngineException.Reason.INVALID && r.getSettle()) {
      log.debug("settle of permit {} on '{}' refused, released without it: {}",
          r.getPermitId(), r.getResource(), e.getMessage());
      release(r.toBuilder().clearActual().setSettle(false).build());
    } else if (error instanceof EngineException || error instanceof io.grpc.StatusRuntimeException) {
      log.debug("release of permit {} on '{}' in a session refused: {}", r.getPermitId(), r.getResource(),
          error.getMessage());
    } else {
      log.warn("release of permit {} on '{}' in a session failed", r.getPermitId(), r.getResource(), error);
    }
  }

  private void acquire(long tag, AcquireRequest req) {
    long arrived = System.nanoTime();
    Ticket ticket;
    try {
      if (open.containsKey(tag)) {
        throw new EngineException(EngineException.Reason.INVALID, "session tag " + tag
            + " is already used by an acquire still open on this stream; give every open acquire its own tag");
      }
      ticket = service.start(req, null);
    } catch (RuntimeException e) {
      queue(failure(tag, e));
      return;
    }
    open.put(tag, ticket);
    ticket.future().whenComplete((grant, error) -> answered(tag, req, arrived, ticket, grant, error));
  }

  private void answered(long tag, AcquireRequest req, long arrived, Ticket ticket, Grant grant, Throwable error) {
    open.remove(tag, ticket);
    if (error != null) {
      if (!ended) {
        queue(failure(tag, error));
        flushUnlessReading();
      }
      return;
    }
    if (ended || !ticket.claim()) {
      ticket.cancel(); // gives the grant back
      return;
    }
    queue(SessionAnswer.newBuilder().setTag(tag).setGranted(service.handOver(req, grant, arrived)).build());
    flushUnlessReading();
  }

  private static SessionAnswer failure(long tag, Throwable error) {
    StatusRuntimeException status = Statuses.of(error);
    com.google.rpc.Status proto = StatusProto.fromThrowable(status);
    if (proto == null) {
      proto = com.google.rpc.Status.newBuilder()
          .setCode(status.getStatus().getCode().value())
          .setMessage(String.valueOf(status.getStatus().getDescription()))
          .build();
    }
    return SessionAnswer.newBuilder().setTag(tag).setFailed(proto).build();
  }

  /** Answers reached while a request is read go out with that message's own answers. */
  private void flushUnlessReading() {
    if (!reading) {
      flush();
    }
  }

  /**
   * Gets the queued answers written: by a drain on the stream's loop if there is one, else here.
   * Also the {@code onReady} handler: a stalled writer resumes here.
   */
  private void flush() {
    if (loop == null) {
      write();
      return;
    }
    if (drainScheduled.compareAndSet(false, true)) {
      try {
        loop.execute(drain);
      } catch (RejectedExecutionException e) {
        // The loop is shutting down (the server is stopping): write here, as without a loop.
        drainScheduled.set(false);
        write();
      }
    }
  }

  /**
   * Writes queued answers if nobody else is, while the transport is ready; the writer keeps going
   * while answers keep coming.
   */
  private void write() {
    if (writers.getAndIncrement() != 0) {
      return; // the writer will see ours
    }
    do {
      try {
        SessionResponse.Builder batch = null;
        SessionAnswer a;
        while ((batch != null || out.isReady()) && (a = answers.poll()) != null) {
          queued.decrementAndGet();
          if (batch == null) {
            batch = SessionResponse.newBuilder();
          }
          batch.addAnswers(a);
          if (batch.getAnswersCount() == MAX_BATCH) {
            send(batch);
            batch = null;
          }
        }
        if (batch != null) {
          send(batch);
        }
      } catch (RuntimeException e) {
        log.debug("a session answer could not be written; the stream is ending: {}", e.toString());
        answers.clear();
        queued.set(0);
      }
    } while (writers.decrementAndGet() != 0);
    readMoreIfRoom();
  }

  private void send(SessionResponse.Builder batch) {
    if (!ended) {
      out.onNext(batch.build());
    }
  }

  @Override
  public void onError(Throwable t) {
    end();
  }

  @Override
  public void onCompleted() {
    // The client sends no more and so can release nothing more: its acquires still open are
    // withdrawn (a grant now could never be released) and the stream ends.
    end();
    try {
      out.onCompleted();
    } catch (RuntimeException e) {
      log.debug("session already closed: {}", e.toString());
    }
  }

  /** Withdraws every acquire still open on this stream. Idempotent. */
  private void end() {
    ended = true;
    for (Ticket t : open.values()) {
      t.cancel();
    }
    open.clear();
  }
}
