package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.proto.v1.ReleaseRequest;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.stub.ServerCallStreamObserver;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** Guarantee 5: a caller that stops waiting loses nothing, even when the grant is already on its way. */
class CancelRaceTest {

  private Fixture f;

  @AfterEach
  void tearDown() throws InterruptedException {
    if (f != null) {
      f.close();
    }
  }

  @Test
  void cancellingTheFutureCancelsTheWaitAtTheCoordinator() throws InterruptedException {
    f = new Fixture();
    CountDownLatch cancelledAtServer = new CountDownLatch(1);
    f.fake.onAcquire = (request, response) ->
        ((ServerCallStreamObserver<?>) response).setOnCancelHandler(cancelledAtServer::countDown);

    CompletableFuture<Permit> future = f.client.acquireAsync("openai", Load.requests(1), AcquireOptions.defaults());
    assertThat(cancelledAtServer.getCount()).isEqualTo(1);
    future.cancel(true);

    assertThat(cancelledAtServer.await(5, TimeUnit.SECONDS)).isTrue();
    assertThat(f.fake.releases).as("nothing was granted").isEmpty();
  }

  @Test
  void cancelWithdrawsTheWaiterByRequestIdWithoutCuttingTheCall() throws Exception {
    f = new Fixture();
    AtomicReference<io.grpc.stub.StreamObserver<dev.sluice.proto.v1.AcquireResponse>> pending = new AtomicReference<>();
    AtomicReference<dev.sluice.proto.v1.AcquireRequest> asked = new AtomicReference<>();
    CountDownLatch callCancelled = new CountDownLatch(1);
    f.fake.onAcquire = (request, response) -> {
      asked.set(request);
      pending.set(response);
      ((ServerCallStreamObserver<?>) response).setOnCancelHandler(callCancelled::countDown);
    };
    // The coordinator had granted just before the Cancel arrived: Cancel finds nothing, and the
    // grant travels on the still-open call.
    f.fake.onCancel = (request, response) -> {
      response.onNext(dev.sluice.proto.v1.CancelResponse.newBuilder().setCancelled(false).build());
      response.onCompleted();
      pending.get().onNext(f.fake.grant(asked.get(), Duration.ZERO));
      pending.get().onCompleted();
    };

    CompletableFuture<Permit> future = f.client.acquireAsync("openai", Load.requests(1), AcquireOptions.defaults());
    future.cancel(true);

    await().atMost(Duration.ofSeconds(5)).until(() -> !f.fake.releases.isEmpty());
    assertThat(f.fake.cancels).singleElement().satisfies(c -> {
      assertThat(c.getResource()).isEqualTo("openai");
      assertThat(c.getRequestId()).isEqualTo(asked.get().getRequestId()).isNotEmpty();
    });
    assertThat(f.fake.releases).singleElement().satisfies(r -> {
      assertThat(r.getPermitId()).isEqualTo("permit-1");
      assertThat(r.getUnused()).isTrue();
    });
    assertThat(callCancelled.getCount()).as("the call was answered, never cut").isEqualTo(1);
  }

  @Test
  void timingOutTheFutureLocallyAlsoCancelsTheWait() throws Exception {
    f = new Fixture(false, b -> b);
    CountDownLatch waiting = new CountDownLatch(1);
    CountDownLatch cancelledAtServer = new CountDownLatch(1);
    f.fake.onAcquire = (request, response) -> {
      ((ServerCallStreamObserver<?>) response).setOnCancelHandler(cancelledAtServer::countDown);
      waiting.countDown();
    };

    CompletableFuture<Permit> future = f.client.acquireAsync("openai", Load.requests(1), AcquireOptions.defaults());
    assertThat(waiting.await(5, TimeUnit.SECONDS)).isTrue();
    future.completeExceptionally(new TimeoutException("caller's own orTimeout"));

    assertThat(cancelledAtServer.await(5, TimeUnit.SECONDS)).isTrue();
  }

  @Test
  void grantArrivingAfterTheFutureWasCancelledIsGivenBack() throws Exception {
    HeldResponses held = new HeldResponses();
    f = new Fixture(false, b -> b, held);

    CompletableFuture<Permit> future = f.client.acquireAsync("openai", Load.of("tokens", 700), AcquireOptions.defaults());
    // The coordinator has granted; the grant is in the client but not yet handed to the future.
    assertThat(held.arrived.await(5, TimeUnit.SECONDS)).isTrue();
    future.cancel(true);
    held.gate.countDown();

    await().atMost(Duration.ofSeconds(5)).until(() -> !f.fake.releases.isEmpty());
    ReleaseRequest sent = f.fake.releases.get(0);
    assertThat(sent.getPermitId()).isEqualTo("permit-1");
    assertThat(sent.getResource()).isEqualTo("openai");
    assertThat(sent.getUnused()).isTrue();
    assertThat(future).isCancelled();
    assertThat(f.fake.releases).hasSize(1);
  }

  @Test
  void grantArrivingAfterTheBlockingCallerWasInterruptedIsGivenBack() throws Exception {
    HeldResponses held = new HeldResponses();
    f = new Fixture(false, b -> b, held);
    AtomicReference<Throwable> thrown = new AtomicReference<>();
    Thread worker = new Thread(() -> {
      try {
        f.client.acquire("openai");
      } catch (Throwable t) {
        thrown.set(t);
      }
    });
    worker.start();
    assertThat(held.arrived.await(5, TimeUnit.SECONDS)).isTrue();

    worker.interrupt();
    worker.join(5_000);
    held.gate.countDown();

    assertThat(thrown.get()).isInstanceOf(InterruptedException.class);
    await().atMost(Duration.ofSeconds(5)).until(() -> !f.fake.releases.isEmpty());
    assertThat(f.fake.releases).singleElement().satisfies(r -> {
      assertThat(r.getPermitId()).isEqualTo("permit-1");
      assertThat(r.getUnused()).isTrue();
    });
  }

  @Test
  void grantThatBeatTheInterruptIsGivenBack() {
    // The narrowest window: the grant completed the future after get() threw InterruptedException
    // but before the caller could cancel it. Driven directly, since no latch can reach inside get().
    f = new Fixture();
    AcquireCall call = new AcquireCall(f.client.runtime(), "openai", "req-1", Runnable::run);
    call.onNext(f.fake.grant(dev.sluice.proto.v1.AcquireRequest.getDefaultInstance(), Duration.ZERO));
    assertThat(call.future).isCompleted();

    call.abandon();

    assertThat(f.fake.releases).singleElement().satisfies(r -> {
      assertThat(r.getPermitId()).isEqualTo("permit-1");
      assertThat(r.getUnused()).isTrue();
    });
  }

  /**
   * Holds each Acquire response inside the client, between the transport and the SDK's observer,
   * until {@link #gate} opens: the window in which the caller can give up while the grant is
   * already on its way. The transport has accepted the message, so a cancel no longer stops it.
   */
  private static final class HeldResponses implements ClientInterceptor {
    final CountDownLatch arrived = new CountDownLatch(1);
    final CountDownLatch gate = new CountDownLatch(1);

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      ClientCall<Q, R> call = next.newCall(method, options);
      if (!method.getBareMethodName().equals("Acquire")) {
        return call;
      }
      return new ForwardingClientCall.SimpleForwardingClientCall<>(call) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          super.start(new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
            @Override
            public void onMessage(R message) {
              arrived.countDown();
              try {
                gate.await(10, TimeUnit.SECONDS);
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
              super.onMessage(message);
            }
          }, headers);
        }
      };
    }
  }
}
