package dev.sluice.server.engine;

import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;

/**
 * The ticket of an acquire that waits for something before it is queued (its limit, to price its
 * load; an estimate, to refuse it at once if it would be late): it becomes the engine's ticket
 * once started. Exactly one of "the caller owns the grant" and "the grant is given back" happens:
 * a cancel before the start cancels the engine's ticket as it starts.
 */
public final class LaterTicket implements Ticket {

  private final CompletableFuture<Grant> future = new CompletableFuture<>();
  private Ticket inner;
  private boolean cancelled;

  public static LaterTicket failed(Throwable error) {
    LaterTicket t = new LaterTicket();
    t.fail(error);
    return t;
  }

  public void start(Ticket ticket) {
    boolean cancel;
    synchronized (this) {
      inner = ticket;
      cancel = cancelled;
    }
    if (cancel) {
      ticket.cancel();
    }
    ticket.future().whenComplete((grant, error) -> {
      if (error != null) {
        future.completeExceptionally(error);
      } else {
        future.complete(grant);
      }
    });
  }

  public void fail(Throwable error) {
    future.completeExceptionally(error);
  }

  @Override
  public CompletableFuture<Grant> future() {
    return future;
  }

  @Override
  public boolean claim() {
    Ticket t;
    synchronized (this) {
      t = inner;
    }
    return t != null && t.claim();
  }

  @Override
  public void cancel() {
    Ticket t;
    synchronized (this) {
      cancelled = true;
      t = inner;
    }
    if (t != null) {
      t.cancel();
    } else {
      future.completeExceptionally(new CancellationException("cancelled before it was queued"));
    }
  }
}
