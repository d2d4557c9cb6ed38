package dev.sluice.server.engine;

import java.util.concurrent.CompletableFuture;

/**
 * One acquire in progress. The future completes with the {@link Grant}, or exceptionally with
 * an {@link EngineException} (deadline, deletion, shutdown) or a
 * {@link java.util.concurrent.CancellationException} after {@link #cancel()}.
 *
 * <p>Delivery protocol: whoever hands the grant to the caller first calls {@link #claim()}; if
 * that fails (the caller cancelled meanwhile) the grant has been, or will be, given back. A
 * caller that goes away calls {@link #cancel()}: a waiter leaves the queue, an unclaimed grant
 * is given back in full. Together they make "a grant that raced with the cancel is given back".
 */
public interface Ticket {

  CompletableFuture<Grant> future();

  /** Marks a grant as delivered. False if the ticket was cancelled first (the grant is gone). */
  boolean claim();

  /** Leaves the queue, or gives back a grant not yet claimed. Idempotent. */
  void cancel();
}
