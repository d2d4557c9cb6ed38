package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;

import io.grpc.Status;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * A coordinator whose store is away answers UNAVAILABLE (issue 24): that costs the worker
 * waiting, never an exception. The acquire is retried until its own timeout and granted once the
 * store is back; a release is retried in the background until the permit's lease would have run
 * out, and {@code close()} throws nothing. A manual scheduler stands for time.
 */
class StoreOutageTest {

  private static final Status STORE_AWAY = Status.UNAVAILABLE.withDescription(
      "this node's Redis (redis://127.0.0.1:6379) is unreachable (Connection refused): retry on another node"
          + " or after Redis is back");

  private final ManualScheduler scheduler = new ManualScheduler();
  private final Fixture f = new Fixture(b -> b.scheduler(scheduler).ticker(scheduler::nanoTime));

  @AfterEach
  void tearDown() throws InterruptedException {
    f.close();
  }

  @Test
  void anAcquireRidesOutAStoreOutageShorterThanItsTimeoutAndIsGranted() throws Exception {
    boolean[] storeAway = {true};
    f.fake.onAcquire = (request, response) -> {
      if (storeAway[0]) {
        response.onError(STORE_AWAY.asRuntimeException());
      } else {
        response.onNext(f.fake.grant(request, Duration.ZERO));
        response.onCompleted();
      }
    };
    var future = f.client.acquireAsync("r", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(30)).build());
    for (int i = 0; i < 10; i++) { // 10 s of outage, retried with backoff
      scheduler.advance(Duration.ofSeconds(1));
    }
    assertThat(future).as("still waiting, not failed").isNotDone();
    int attempts = f.fake.acquires.size();
    assertThat(attempts).as("retried through the outage").isGreaterThan(10);
    storeAway[0] = false;
    scheduler.advance(Duration.ofSeconds(1));
    assertThat(future).isCompleted();
    assertThat(future.join().id()).startsWith("permit-");
    assertThat(f.fake.acquires).extracting(r -> r.getRequestId()).as("one request id throughout").containsOnly(
        f.fake.acquires.get(0).getRequestId());
  }

  @Test
  void aReleaseDuringAStoreOutageIsRetriedUntilTheLeaseWouldHaveRunOut() throws Exception {
    f.fake.onAcquire = (request, response) -> {
      response.onNext(f.fake.grant(request, Duration.ofSeconds(30)));
      response.onCompleted();
    };
    Permit permit = f.client.acquire("r");
    f.fake.releaseFailure = STORE_AWAY.asRuntimeException();

    assertThatCode(permit::close).doesNotThrowAnyException();
    scheduler.advance(ClientRuntime.CALL_DEADLINE.plusSeconds(5)); // past the old 10 s budget
    int tries = f.fake.releases.size();
    assertThat(tries).as("still retrying in the background").isGreaterThan(20);

    f.fake.releaseFailure = null; // the store is back, 15 s in: well within the 30 s lease
    scheduler.advance(Duration.ofSeconds(1));
    assertThat(f.fake.releases.size()).isGreaterThan(tries);
    int done = f.fake.releases.size();
    scheduler.advance(Duration.ofSeconds(30));
    assertThat(f.fake.releases).as("released once it went through: no more retries").hasSize(done);
  }

  @Test
  void aReleaseGivesUpWhenTheLeaseWouldHaveRunOutAnyway() throws Exception {
    f.fake.onAcquire = (request, response) -> {
      response.onNext(f.fake.grant(request, Duration.ofSeconds(30)));
      response.onCompleted();
    };
    Permit permit = f.client.acquire("r");
    f.fake.releaseFailure = STORE_AWAY.asRuntimeException();
    assertThatCode(permit::close).doesNotThrowAnyException();
    scheduler.advance(Duration.ofSeconds(31));
    int tries = f.fake.releases.size();
    scheduler.advance(Duration.ofSeconds(30));
    assertThat(f.fake.releases).as("no retry past the lease").hasSize(tries);
  }
}
