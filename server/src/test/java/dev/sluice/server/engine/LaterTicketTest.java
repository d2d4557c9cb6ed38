package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** The ticket of an acquire that waits for its limit before it is priced and queued. */
class LaterTicketTest {

  /** An engine ticket that counts its cancels and claims. */
  static final class Counted implements Ticket {
    final CompletableFuture<Grant> future = new CompletableFuture<>();
    final AtomicInteger cancels = new AtomicInteger();
    final AtomicInteger claims = new AtomicInteger();

    @Override
    public CompletableFuture<Grant> future() {
      return future;
    }

    @Override
    public boolean claim() {
      claims.incrementAndGet();
      return true;
    }

    @Override
    public void cancel() {
      cancels.incrementAndGet();
    }
  }

  @Test
  void aCancelBeforeTheStartEndsTheCallerAndCancelsTheEngineTicketAsItStarts() {
    LaterTicket later = new LaterTicket();
    later.cancel();
    assertThat(later.future()).isCompletedExceptionally();
    assertThat(later.future()).as("a CancellationException, as an engine ticket's cancel").isCancelled();
    assertThat(later.claim()).as("nothing to claim yet").isFalse();

    Counted engine = new Counted();
    later.start(engine);
    assertThat(engine.cancels).as("the waiter leaves, or a racing grant goes back").hasValue(1);
  }

  @Test
  void onceStartedItIsTheEngineTicket() {
    LaterTicket later = new LaterTicket();
    Counted engine = new Counted();
    later.start(engine);
    assertThat(later.future()).isNotDone();
    engine.future.complete(null);
    assertThat(later.future()).isCompleted();
    assertThat(later.claim()).isTrue();
    assertThat(engine.claims).hasValue(1);
    later.cancel();
    assertThat(engine.cancels).hasValue(1);
  }

  @Test
  void aRefusalFailsTheFuture() {
    LaterTicket later = LaterTicket.failed(new IllegalStateException("no"));
    assertThat(later.future()).isCompletedExceptionally();
    assertThat(later.claim()).isFalse();
  }
}
