package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.proto.v1.AcquireRequest;
import io.grpc.stub.ServerCallStreamObserver;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class AcquireTest {

  private Fixture f;

  @AfterEach
  void tearDown() throws InterruptedException {
    if (f != null) {
      f.close();
    }
  }

  @Test
  void sendsLoadLaneTimeoutAndRequestId() throws InterruptedException {
    f = new Fixture();
    AcquireOptions options = AcquireOptions.builder()
        .timeout(Duration.ofMillis(2500)).lane(Lane.BATCH).requestId("job-42").build();

    Permit permit = f.client.acquire("openai:gpt-4o", Load.of("requests", 1, "tokens", 1200), options);

    AcquireRequest sent = f.fake.acquires.get(0);
    assertThat(sent.getResource()).isEqualTo("openai:gpt-4o");
    assertThat(sent.getLoadMap()).containsExactlyInAnyOrderEntriesOf(Map.of("requests", 1L, "tokens", 1200L));
    assertThat(sent.getLane()).isEqualTo(dev.sluice.proto.v1.Lane.LANE_BATCH);
    assertThat(Protos.toJava(sent.getTimeout())).isEqualTo(Duration.ofMillis(2500));
    assertThat(sent.getRequestId()).isEqualTo("job-42");

    assertThat(permit.id()).isEqualTo("permit-1");
    assertThat(permit.resource()).isEqualTo("openai:gpt-4o");
    assertThat(permit.granted()).isEqualTo(Load.of("requests", 1, "tokens", 1200));
    assertThat(permit.waited()).isEqualTo(Duration.ofMillis(150));
  }

  @Test
  void theTenantOfTheOptionsOrTheClientsDefaultIsSentAndKeptOnARetry() throws InterruptedException {
    f = new Fixture(b -> b.defaultTenant("batch-jobs"));
    java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
    f.fake.onAcquire = (request, response) -> {
      if (calls.getAndIncrement() == 1) { // the second acquire's first attempt: a node going away
        response.onError(io.grpc.Status.UNAVAILABLE.withDescription("node shutting down").asRuntimeException());
        return;
      }
      response.onNext(f.fake.grant(request, Duration.ZERO));
      response.onCompleted();
    };

    f.client.acquire("shop:123").close();
    f.client.acquire("shop:123", Load.requests(1), AcquireOptions.builder().tenant("search").build()).close();

    assertThat(f.fake.acquires).extracting(AcquireRequest::getTenant)
        .containsExactly("batch-jobs", "search", "search");
    assertThat(f.fake.acquires.get(2).getRequestId()).as("the retry is the same acquire")
        .isEqualTo(f.fake.acquires.get(1).getRequestId());
  }

  @Test
  void withoutATenantTheFieldIsLeftEmpty() throws InterruptedException {
    f = new Fixture();
    f.client.acquire("shop:123").close();
    assertThat(f.fake.acquires.get(0).getTenant()).as("the coordinator's default tenant").isEmpty();
  }

  @Test
  void plainAcquireSendsEmptyLoadAndTheClientDefaults() throws InterruptedException {
    f = new Fixture(b -> b.defaultTimeout(Duration.ofSeconds(7)).defaultLane(Lane.INTERACTIVE));

    Permit permit = f.client.acquire("shop:123");

    AcquireRequest sent = f.fake.acquires.get(0);
    assertThat(sent.getLoadMap()).isEmpty();
    assertThat(sent.getLane()).isEqualTo(dev.sluice.proto.v1.Lane.LANE_INTERACTIVE);
    assertThat(Protos.toJava(sent.getTimeout())).isEqualTo(Duration.ofSeconds(7));
    assertThat(sent.getRequestId()).as("a fresh id, so a cancel can name it")
        .matches("[0-9a-f-]{36}-[0-9a-z]+").hasSizeLessThanOrEqualTo(64);
    f.client.acquire("shop:123");
    assertThat(f.fake.acquires.get(1).getRequestId()).isNotEqualTo(sent.getRequestId())
        .startsWith(sent.getRequestId().substring(0, 37));
    assertThat(permit.granted()).isEqualTo(Load.requests(1)); // what the server charged
  }

  @Test
  void builtInDefaultsAre30SecondsAndTheDefaultLane() throws InterruptedException {
    f = new Fixture();
    f.client.acquire("shop:123", Load.requests(1));
    AcquireRequest sent = f.fake.acquires.get(0);
    assertThat(Protos.toJava(sent.getTimeout())).isEqualTo(Duration.ofSeconds(30));
    assertThat(sent.getLane()).isEqualTo(dev.sluice.proto.v1.Lane.LANE_DEFAULT);
  }

  @Test
  void callDeadlineIsTheTimeoutPlusAMargin() throws InterruptedException {
    f = new Fixture();
    long sent = System.nanoTime();
    f.client.acquire("openai", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(2)).build());
    long remainingMillis = f.fake.acquireDeadlines.get(0).timeRemaining(TimeUnit.MILLISECONDS);
    long sinceSent = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - sent);
    // 2 s timeout + 5 s margin, set after `sent`: what is left plus what has passed since is at
    // least 7 s however long the hop took (1 ms for rounding), and what is left at most 7 s.
    assertThat(remainingMillis).isLessThanOrEqualTo(7_000L);
    assertThat(remainingMillis + sinceSent).isGreaterThanOrEqualTo(6_999L);
  }

  @Test
  void aCoordinatorThatNeverAnswersIsUnavailableNotATimeout() {
    f = new Fixture(false, b -> b);
    f.fake.onAcquire = (request, response) -> {}; // hung: takes the call, never answers
    // The coordinator was asked to time out after 100 ms; the call's own deadline (100 ms + the
    // 5 s margin) ends it instead, which only a dead or hung coordinator makes happen.
    assertThatThrownBy(() -> f.client.acquire("openai", Load.requests(1),
            AcquireOptions.builder().timeout(Duration.ofMillis(100)).build()))
        .isInstanceOf(SluiceUnavailableException.class)
        .hasMessageContaining("did not answer");
  }

  @Test
  void asyncCompletesOnTheClientsExecutorAndBlockingDoesNot() throws Exception {
    AtomicInteger handOffs = new AtomicInteger();
    f = new Fixture(b -> b.executor(task -> {
      handOffs.incrementAndGet();
      task.run();
    }));

    f.client.acquire("openai", Load.requests(1)).close();
    assertThat(handOffs).hasValue(0);

    CompletableFuture<Permit> future = f.client.acquireAsync("openai", Load.requests(2), AcquireOptions.defaults());
    assertThat(future.get(5, TimeUnit.SECONDS).granted()).isEqualTo(Load.requests(2));
    assertThat(handOffs).hasValue(1);
  }

  @Test
  void interruptedAcquireCancelsTheWaitAtTheCoordinator() throws Exception {
    f = new Fixture();
    CountDownLatch waiting = new CountDownLatch(1);
    CountDownLatch cancelledAtServer = new CountDownLatch(1);
    f.fake.onAcquire = (request, response) -> {
      ((ServerCallStreamObserver<?>) response).setOnCancelHandler(cancelledAtServer::countDown);
      waiting.countDown(); // and never answer
    };
    AtomicReference<Throwable> thrown = new AtomicReference<>();
    AtomicReference<Boolean> flagAfter = new AtomicReference<>();
    Thread worker = new Thread(() -> {
      try {
        f.client.acquire("openai");
      } catch (Throwable t) {
        thrown.set(t);
        flagAfter.set(Thread.currentThread().isInterrupted());
      }
    });
    worker.start();
    assertThat(waiting.await(5, TimeUnit.SECONDS)).isTrue();

    worker.interrupt();
    worker.join(5_000);

    assertThat(thrown.get()).isInstanceOf(InterruptedException.class);
    assertThat(flagAfter.get()).as("cleared, as Future.get does when it throws").isFalse();
    assertThat(cancelledAtServer.await(5, TimeUnit.SECONDS)).isTrue();
    assertThat(f.fake.releases).isEmpty();
  }

  @Test
  void alreadyInterruptedCallerDoesNotStartACall() {
    f = new Fixture();
    Thread.currentThread().interrupt();
    assertThatThrownBy(() -> f.client.acquire("openai")).isInstanceOf(InterruptedException.class);
    assertThat(f.fake.acquires).isEmpty();
  }

  @Test
  void blockingCallsInsideAnAsyncStageAreRefusedNotDeadlocked() throws Exception {
    f = new Fixture();
    // The first grant is held until the stage is attached, so the stage runs where it arrives.
    AtomicReference<Runnable> held = new AtomicReference<>();
    var grantAtOnce = f.fake.onAcquire;
    f.fake.onAcquire = (request, response) -> {
      if (!held.compareAndSet(null, () -> grantAtOnce.accept(request, response))) {
        grantAtOnce.accept(request, response);
      }
    };
    CompletableFuture<Object> inner = f.client
        .acquireAsync("openai", Load.requests(1), AcquireOptions.defaults())
        .thenApply(permit -> {
          try (permit) {
            return f.client.acquire("openai"); // runs where the answer arrived
          } catch (InterruptedException e) {
            throw new AssertionError(e);
          }
        });
    held.get().run();

    assertThatThrownBy(() -> inner.get(5, TimeUnit.SECONDS))
        .hasCauseInstanceOf(IllegalStateException.class)
        .cause().hasMessageContaining("network thread").hasMessageContaining("thenApplyAsync");
    assertThat(f.fake.acquires).as("the refused acquire never left").hasSize(1);

    // The same stage moved off the callback thread works, and so does the client afterwards.
    Permit viaAsyncStage = f.client
        .acquireAsync("openai", Load.requests(1), AcquireOptions.defaults())
        .thenApplyAsync(permit -> {
          try (permit) {
            return f.client.acquire("openai");
          } catch (InterruptedException e) {
            throw new AssertionError(e);
          }
        })
        .get(5, TimeUnit.SECONDS);
    assertThat(viaAsyncStage.resource()).isEqualTo("openai");
    assertThat(ClientRuntime.IN_CALLBACK.get()).as("the flag does not leak onto the caller").isFalse();
  }
}
