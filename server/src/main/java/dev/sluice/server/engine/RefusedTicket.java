package dev.sluice.server.engine;

import java.util.concurrent.CompletableFuture;

/** An acquire refused before it waited: its future has already failed with the refusal. */
final class RefusedTicket implements Ticket {

  final EngineException refusal;
  private final CompletableFuture<Grant> future;

  RefusedTicket(EngineException refusal) {
    this.refusal = refusal;
    this.future = CompletableFuture.failedFuture(refusal);
  }

  @Override
  public CompletableFuture<Grant> future() {
    return future;
  }

  @Override
  public boolean claim() {
    return false;
  }

  @Override
  public void cancel() {}
}
