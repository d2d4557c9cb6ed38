package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.proto.v1.RenewRequest;
import dev.sluice.proto.v1.RenewResponse;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class LeaseRenewalTest {

  private static final Duration TTL = Duration.ofSeconds(3);
  private static final Duration TICK = Duration.ofSeconds(1); // a third of the lease

  private final ManualScheduler scheduler = new ManualScheduler();
  private Fixture f;

  @AfterEach
  void tearDown() throws InterruptedException {
    if (f != null) {
      f.close();
    }
  }

  private void leasedFixture() {
    f = new Fixture(b -> b.scheduler(scheduler).ticker(scheduler::nanoTime));
    f.fake.onAcquire = (request, response) -> {
      Duration ttl = request.getResource().equals("no-cap") ? Duration.ZERO : TTL;
      response.onNext(f.fake.grant(request, ttl));
      response.onCompleted();
    };
  }

  /** Renewed permit ids per resource, in the order the renewals were sent. */
  private Map<String, List<List<String>>> renewals() {
    return f.fake.renews.stream().collect(Collectors.groupingBy(RenewRequest::getResource,
        Collectors.mapping(RenewRequest::getPermitIdsList, Collectors.toList())));
  }

  @Test
  void renewsEveryThirdOfTheLeaseInOneCallPerResource() throws InterruptedException {
    leasedFixture();
    Permit a1 = f.client.acquire("a");
    Permit a2 = f.client.acquire("a");
    Permit b1 = f.client.acquire("b");
    f.client.acquire("no-cap");

    scheduler.advance(TICK.minusMillis(1));
    assertThat(f.fake.renews).as("not before a third of the lease").isEmpty();

    scheduler.advance(Duration.ofMillis(1));
    assertThat(f.fake.renews).hasSize(2);
    assertThat(renewals().get("a")).singleElement().asList().containsExactlyInAnyOrder(a1.id(), a2.id());
    assertThat(renewals().get("b")).singleElement().asList().containsExactly(b1.id());

    scheduler.advance(TICK);
    assertThat(f.fake.renews).hasSize(4);
    assertThat(renewals()).doesNotContainKey("no-cap");
  }

  @Test
  void closingAPermitStopsItsRenewal() throws InterruptedException {
    leasedFixture();
    Permit a1 = f.client.acquire("a");
    Permit a2 = f.client.acquire("a");

    a1.close();
    scheduler.advance(TICK);
    assertThat(renewals().get("a")).singleElement().asList().containsExactly(a2.id());

    a2.close();
    assertThat(scheduler.pending()).as("closing only drops the id; the armed tick stays").isEqualTo(1);
    scheduler.advance(TICK);
    assertThat(scheduler.pending()).as("the tick found the resource empty and was not re-armed").isZero();
    scheduler.advance(TICK.multipliedBy(5));
    assertThat(f.fake.renews).as("an empty group sends no renewal").hasSize(1);

    Permit a3 = f.client.acquire("a"); // a new group, a new timer
    assertThat(scheduler.pending()).isEqualTo(1);
    scheduler.advance(TICK);
    assertThat(renewals().get("a")).last().asList().containsExactly(a3.id());
  }

  @Test
  void expiredPermitsAreDroppedFromRenewal() throws InterruptedException {
    leasedFixture();
    Permit a1 = f.client.acquire("a");
    Permit a2 = f.client.acquire("a");
    f.fake.onRenew = request -> RenewResponse.newBuilder()
        .setLeaseTtl(Protos.toProto(TTL)).addExpired(a1.id()).build();

    scheduler.advance(TICK);
    scheduler.advance(TICK);

    List<List<String>> sent = renewals().get("a");
    assertThat(sent).hasSize(2);
    assertThat(sent.get(0)).containsExactlyInAnyOrder(a1.id(), a2.id());
    assertThat(sent.get(1)).containsExactly(a2.id());
  }

  @Test
  void unavailableRenewalIsRetriedAfterABackoff() throws InterruptedException {
    leasedFixture();
    Permit a1 = f.client.acquire("a");
    f.fake.onRenew = request -> {
      throw Status.UNAVAILABLE.withDescription("node shutting down").asRuntimeException();
    };
    scheduler.advance(TICK);
    assertThat(f.fake.renews).hasSize(1);
    f.fake.onRenew = request -> RenewResponse.newBuilder().setLeaseTtl(Protos.toProto(TTL)).build();
    scheduler.advance(Retrier.FIRST_BACKOFF);

    assertThat(renewals().get("a")).as("retried after 50 ms, not at the next tick")
        .containsExactly(List.of(a1.id()), List.of(a1.id()));
    scheduler.advance(TICK.minus(Retrier.FIRST_BACKOFF));
    assertThat(f.fake.renews).as("the regular tick goes on").hasSize(3);
  }

  @Test
  void otherRenewalFailuresWaitForTheNextTick() throws InterruptedException {
    leasedFixture();
    Permit a1 = f.client.acquire("a");
    f.fake.onRenew = request -> {
      throw Status.INTERNAL.withDescription("bug").asRuntimeException();
    };
    scheduler.advance(TICK);
    f.fake.onRenew = request -> RenewResponse.newBuilder().setLeaseTtl(Protos.toProto(TTL)).build();
    scheduler.advance(TICK.minusMillis(1));
    assertThat(f.fake.renews).hasSize(1);
    scheduler.advance(Duration.ofMillis(1));

    assertThat(renewals().get("a")).containsExactly(List.of(a1.id()), List.of(a1.id()));
  }

  @Test
  void unavailableAcquireRenewsEveryLeaseAtOnce() throws InterruptedException {
    leasedFixture();
    Permit a1 = f.client.acquire("a");
    Permit b1 = f.client.acquire("b");
    var grant = f.fake.onAcquire;
    java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
    f.fake.onAcquire = (request, response) -> {
      if (calls.getAndIncrement() == 0) {
        response.onError(Status.UNAVAILABLE.withDescription("node shutting down").asRuntimeException());
      } else {
        grant.accept(request, response);
      }
    };
    var c = f.client.acquireAsync("c", Load.requests(1), AcquireOptions.defaults());

    scheduler.advance(Duration.ZERO);
    assertThat(renewals().get("a")).as("a failover renews at once, long before the tick")
        .containsExactly(List.of(a1.id()));
    assertThat(renewals().get("b")).containsExactly(List.of(b1.id()));
    scheduler.advance(Retrier.FIRST_BACKOFF);
    assertThat(c).isCompleted();
    assertThat(f.fake.acquires.get(2).getRequestId()).isEqualTo(f.fake.acquires.get(3).getRequestId());
  }

  @Test
  void shorterLeaseFromTheCoordinatorShortensTheTick() throws InterruptedException {
    leasedFixture();
    f.client.acquire("a");
    f.fake.onRenew = request -> RenewResponse.newBuilder().setLeaseTtl(Protos.toProto(Duration.ofMillis(300))).build();

    scheduler.advance(TICK); // renewal 1 learns of the 300 ms lease; the next tick is still 1 s away
    scheduler.advance(TICK); // renewal 2, after which ticks come every 100 ms
    scheduler.advance(Duration.ofMillis(100));

    assertThat(f.fake.renews).hasSize(3);
  }

  @Test
  void closingTheClientStopsRenewals() throws InterruptedException {
    leasedFixture();
    f.client.acquire("a");
    f.client.close();

    assertThat(scheduler.pending()).isZero();
    scheduler.advance(TICK.multipliedBy(3));
    assertThat(f.fake.renews).isEmpty();
  }

  @Test
  void renewsWithTheClientsOwnSchedulerInRealTime() throws InterruptedException {
    f = new Fixture(); // no injected scheduler: the client's own daemon thread
    f.fake.onAcquire = (request, response) -> {
      response.onNext(f.fake.grant(request, Duration.ofMillis(300)));
      response.onCompleted();
    };
    f.fake.onRenew = request -> RenewResponse.newBuilder().setLeaseTtl(Protos.toProto(Duration.ofMillis(300))).build();

    try (Permit permit = f.client.acquire("a")) {
      await().atMost(Duration.ofSeconds(10)).until(() -> f.fake.renews.size() >= 2);
      assertThat(f.fake.renews).allSatisfy(r -> assertThat(r.getPermitIdsList()).containsExactly(permit.id()));
    }
  }
}
