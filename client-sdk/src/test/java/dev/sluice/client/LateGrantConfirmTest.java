package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * A grant whose answer spent much longer on the way than answers lately did (the fake holds it
 * back, as a network that heals would) is confirmed with its request id, never handed over as it
 * is; and one that comes after the caller stopped waiting is given back, confirmed or not.
 * LateGrantTest (server) shows the coordinator's side over a real proxy.
 */
class LateGrantConfirmTest {

  private Fixture f;
  private final ScheduledExecutorService later = Executors.newSingleThreadScheduledExecutor();

  @AfterEach
  void tearDown() throws InterruptedException {
    later.shutdownNow();
    if (f != null) {
      f.close();
    }
  }

  /**
   * Acquires answered at once that set what on time means (the least time on the way). The
   * first call of a JVM loads the whole call path and can take longer than the 400 ms a test
   * holds a grant back, so a single one would make the late grant look ordinary.
   */
  private static final int ON_TIME = 5;

  private void onTime() throws InterruptedException {
    for (int i = 0; i < ON_TIME; i++) {
      f.client.acquire("openai", Load.requests(1)).close();
    }
  }

  /** A grant the node answered at once, fresh for 50 ms, that reaches the client {@code heldMillis} late. */
  private void answer(AcquireRequest request, StreamObserver<AcquireResponse> response, long heldMillis) {
    AcquireResponse grant = f.fake.grant(request, Duration.ofSeconds(30)).toBuilder()
        .setAnsweredAfter(Protos.toProto(Duration.ZERO))
        .setFreshFor(Protos.toProto(Duration.ofMillis(50)))
        .build();
    later.schedule(() -> {
      response.onNext(grant);
      response.onCompleted();
    }, heldMillis, TimeUnit.MILLISECONDS);
  }

  @Test
  void aGrantHeldBackOnTheWayIsConfirmedWithItsRequestId() throws Exception {
    f = new Fixture();
    f.fake.onAcquire = (request, response) -> answer(request, response, f.fake.acquires.size() == ON_TIME + 1 ? 400 : 0);
    onTime();

    Permit p = f.client.acquireAsync("openai", Load.requests(1), AcquireOptions.defaults()).get(10, TimeUnit.SECONDS);
    assertThat(f.fake.acquires).hasSize(ON_TIME + 2);
    assertThat(f.fake.acquires.get(ON_TIME + 1).getRequestId()).as("the confirmation is the same acquire")
        .isEqualTo(f.fake.acquires.get(ON_TIME).getRequestId());
    assertThat(p.id()).as("what the confirmation answered").isEqualTo("permit-" + (ON_TIME + 2));
    assertThat(f.client.lateGrants()).isEqualTo(1);
    assertThat(f.fake.releases).as("the late grant is the coordinator's to forfeit, not released")
        .noneMatch(r -> r.getPermitId().equals("permit-" + (ON_TIME + 1)));
    p.close();
  }

  @Test
  void aLateGrantForACallerWhoLeftIsGivenBack() throws Exception {
    f = new Fixture();
    f.fake.onAcquire = (request, response) -> answer(request, response, f.fake.acquires.size() == ON_TIME + 1 ? 400 : 0);
    onTime();

    // The grant is already on its way when the caller leaves: Cancel finds nothing to withdraw.
    f.fake.onCancel = (request, response) -> {
      response.onNext(dev.sluice.proto.v1.CancelResponse.newBuilder().setCancelled(false).build());
      response.onCompleted();
    };
    CompletableFuture<Permit> gaveUp = f.client.acquireAsync("openai", Load.requests(1), AcquireOptions.defaults());
    gaveUp.cancel(true);
    await().atMost(Duration.ofSeconds(5)).until(() -> f.fake.releases.size() == ON_TIME + 1);
    assertThat(f.fake.releases.get(ON_TIME).getPermitId()).isEqualTo("permit-" + (ON_TIME + 1));
    assertThat(f.fake.releases.get(ON_TIME).getUnused()).isTrue();
  }
}
