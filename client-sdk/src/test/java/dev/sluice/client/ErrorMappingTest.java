package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;

import com.google.protobuf.Any;
import com.google.rpc.Code;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.Arrays;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class ErrorMappingTest {

  private static final String SERVER_SAYS = "load of 'tokens' is 9000, above its burst of 4000";

  private Fixture f;

  @AfterEach
  void tearDown() throws InterruptedException {
    if (f != null) {
      f.close();
    }
  }

  static Stream<Arguments> statuses() {
    return Stream.of(
        Arguments.of(Status.Code.INVALID_ARGUMENT, InvalidRequestException.class, "fix the resource name or load"),
        Arguments.of(Status.Code.NOT_FOUND, ResourceNotFoundException.class, "Create a limit for 'openai'"),
        Arguments.of(Status.Code.DEADLINE_EXCEEDED, AcquireTimeoutException.class, "raise the timeout"),
        Arguments.of(Status.Code.RESOURCE_EXHAUSTED, WaitingRoomFullException.class, "retry after 1 s"),
        Arguments.of(Status.Code.UNAVAILABLE, SluiceUnavailableException.class, "retry"),
        Arguments.of(Status.Code.INTERNAL, SluiceUnavailableException.class, "retry"),
        Arguments.of(Status.Code.UNAUTHENTICATED, AuthenticationException.class, "valid API key"),
        Arguments.of(Status.Code.PERMISSION_DENIED, PermissionDeniedException.class, "role, resources and tenant allow"),
        Arguments.of(Status.Code.UNIMPLEMENTED, SluiceException.class, "versions match"));
  }

  @ParameterizedTest
  @MethodSource("statuses")
  void eachStatusBecomesItsExceptionKeepingTheServersMessage(
      Status.Code code, Class<? extends SluiceException> type, String advice) {
    // Short, because UNAVAILABLE is retried (on another node) until the acquire's timeout.
    f = new Fixture(b -> b.defaultTimeout(Duration.ofMillis(200)));
    f.fake.onAcquire = (request, response) ->
        response.onError(Status.fromCode(code).withDescription(SERVER_SAYS).asRuntimeException());

    Throwable thrown = catchThrowable(() -> f.client.acquire("openai", Load.requests(1)));

    assertThat(thrown).isExactlyInstanceOf(type)
        .hasMessageContaining("'openai'")
        .hasMessageContaining(SERVER_SAYS)
        .hasMessageContaining(advice)
        .hasCauseInstanceOf(StatusRuntimeException.class);
  }

  @ParameterizedTest
  @MethodSource("statuses")
  void asyncFailsWithTheSameException(Status.Code code, Class<? extends SluiceException> type, String advice) {
    // Short, because UNAVAILABLE is retried (on another node) until the acquire's timeout.
    f = new Fixture(b -> b.defaultTimeout(Duration.ofMillis(200)));
    f.fake.onAcquire = (request, response) ->
        response.onError(Status.fromCode(code).withDescription(SERVER_SAYS).asRuntimeException());

    CompletableFuture<Permit> future = f.client.acquireAsync("openai", Load.requests(1), AcquireOptions.defaults());

    assertThatThrownBy(() -> future.get(5, TimeUnit.SECONDS))
        .isInstanceOf(ExecutionException.class)
        .cause().isExactlyInstanceOf(type).hasMessageContaining(SERVER_SAYS);
  }

  @Test
  void aTimeoutTheCoordinatorExplainsGivesItsAdviceOnce() {
    f = new Fixture();
    String said = "not granted on 'openai' within 2 s: the resource is paused by an admin until resumed;"
        + " resume it (sluice resume openai) or wait longer";
    f.fake.onAcquire = (request, response) ->
        response.onError(Status.DEADLINE_EXCEEDED.withDescription(said).asRuntimeException());

    Throwable thrown = catchThrowable(() -> f.client.acquire("openai"));

    assertThat(thrown).isExactlyInstanceOf(AcquireTimeoutException.class)
        .hasMessage("acquire on resource 'openai' failed: " + said + ". Nothing was granted");
  }

  @Test
  void aFailIfLateRefusalCarriesTheEstimateAndIsAnAnswerNeverRetried() {
    f = new Fixture();
    String said = "not granted in time: the estimated wait on 'openai' is 4.2 s, past the 2 s timeout; nothing was"
        + " queued. Raise the timeout to at least 4.2 s, or drop failIfLate to queue anyway";
    f.fake.onAcquire = (request, response) -> response.onError(StatusProto.toStatusRuntimeException(
        com.google.rpc.Status.newBuilder().setCode(Code.DEADLINE_EXCEEDED_VALUE).setMessage(said)
            .addDetails(Any.pack(dev.sluice.proto.v1.EstimateResponse.newBuilder()
                .setWait(Protos.toProto(Duration.ofMillis(4200))).build()))
            .build()));

    Throwable thrown = catchThrowable(() -> f.client.acquire("openai", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ofSeconds(2)).failIfLate().build()));

    assertThat(thrown).isExactlyInstanceOf(AcquireTimeoutException.class)
        .hasMessage("acquire on resource 'openai' failed: " + said + ". Nothing was granted");
    WaitEstimate estimate = ((AcquireTimeoutException) thrown).estimate().orElseThrow();
    assertThat(estimate.expectedWait()).contains(Duration.ofMillis(4200));
    assertThat(estimate).hasToString("4.2 s");
    assertThat(f.fake.acquires).hasSize(1);
    assertThat(f.fake.acquires.get(0).getFailIfLate()).isTrue();
  }

  @Test
  void anAcquireWithoutFailIfLateSendsItOffAndATimeoutCarriesNoEstimate() {
    f = new Fixture();
    f.fake.onAcquire = (request, response) ->
        response.onError(Status.DEADLINE_EXCEEDED.withDescription("not granted within 2 s").asRuntimeException());

    Throwable thrown = catchThrowable(() -> f.client.acquire("openai"));

    assertThat(((AcquireTimeoutException) thrown).estimate()).isEmpty();
    assertThat(f.fake.acquires.get(0).getFailIfLate()).isFalse();
  }

  @Test
  void anEstimateIsRetriedOnUnavailableAndSendsTheClientsDefaultLaneAndTenant() {
    f = new Fixture(b -> b.defaultLane(Lane.BATCH).defaultTenant("search"));
    java.util.concurrent.atomic.AtomicInteger calls = new java.util.concurrent.atomic.AtomicInteger();
    f.fake.onEstimate = request -> {
      if (calls.getAndIncrement() == 0) {
        throw Status.UNAVAILABLE.withDescription("node going away").asRuntimeException();
      }
      return dev.sluice.proto.v1.EstimateResponse.newBuilder().setPaused(true).build();
    };

    WaitEstimate estimate = f.client.estimate("openai", Load.of("tokens", 10));

    assertThat(estimate.paused()).isTrue();
    assertThat(f.fake.estimates).hasSize(2);
    assertThat(f.fake.estimates.get(1).getLane()).isEqualTo(dev.sluice.proto.v1.Lane.LANE_BATCH);
    assertThat(f.fake.estimates.get(1).getTenant()).isEqualTo("search");
    assertThat(f.fake.estimates.get(1).getLoadMap()).containsEntry("tokens", 10L);
    assertThat(f.client.estimate("openai", Load.requests(1), Lane.INTERACTIVE, "ads")).isEqualTo(estimate);
    assertThat(f.fake.estimates.get(2).getLane()).isEqualTo(dev.sluice.proto.v1.Lane.LANE_INTERACTIVE);
    assertThat(f.fake.estimates.get(2).getTenant()).isEqualTo("ads");
  }

  @Test
  void waitingRoomFullCarriesTheRetryHint() {
    f = new Fixture();
    com.google.rpc.Status rich = com.google.rpc.Status.newBuilder()
        .setCode(Code.RESOURCE_EXHAUSTED_VALUE)
        .setMessage("waiting room of 'openai' is full (10000 waiting)")
        .addDetails(Any.pack(RetryInfo.newBuilder()
            .setRetryDelay(com.google.protobuf.Duration.newBuilder().setSeconds(2).setNanos(500_000_000))
            .build()))
        .build();
    f.fake.onAcquire = (request, response) -> response.onError(StatusProto.toStatusRuntimeException(rich));

    Throwable thrown = catchThrowable(() -> f.client.acquire("openai"));

    assertThat(thrown).isInstanceOf(WaitingRoomFullException.class)
        .hasMessageContaining("10000 waiting")
        .hasMessageContaining("retry after 2.5 s");
    assertThat(((WaitingRoomFullException) thrown).retryAfter()).isEqualTo(Duration.ofMillis(2500));
  }

  @Test
  void waitingRoomFullWithoutAHintDefaultsToOneSecond() {
    f = new Fixture();
    f.fake.onAcquire = (request, response) ->
        response.onError(Status.RESOURCE_EXHAUSTED.withDescription("full").asRuntimeException());

    Throwable thrown = catchThrowable(() -> f.client.acquire("openai"));

    assertThat(((WaitingRoomFullException) thrown).retryAfter()).isEqualTo(Duration.ofSeconds(1));
  }

  @Test
  void tryAcquireIsEmptyWhenNotGrantedInTime() throws InterruptedException {
    f = new Fixture();
    f.fake.onAcquire = (request, response) ->
        response.onError(Status.DEADLINE_EXCEEDED.withDescription("not granted within 0.2s").asRuntimeException());

    Optional<Permit> permit = f.client.tryAcquire("openai", Load.requests(1), Duration.ofMillis(200));

    assertThat(permit).isEmpty();
    assertThat(Protos.toJava(f.fake.acquires.get(0).getTimeout())).isEqualTo(Duration.ofMillis(200));
  }

  @Test
  void tryAcquireReturnsTheGrant() throws InterruptedException {
    f = new Fixture();
    assertThat(f.client.tryAcquire("openai", Load.requests(1), Duration.ZERO)).get()
        .extracting(Permit::id).isEqualTo("permit-1");
  }

  @Test
  void tryAcquireStillThrowsOtherFailures() {
    f = new Fixture();
    f.fake.onAcquire = (request, response) -> response.onError(Status.NOT_FOUND.asRuntimeException());
    assertThatThrownBy(() -> f.client.tryAcquire("openai", Load.requests(1), Duration.ofSeconds(1)))
        .isInstanceOf(ResourceNotFoundException.class);
  }

  @Test
  void blockingFailureShowsTheCallersStack() {
    // Not direct: the answer, and so the exception, is made on a gRPC thread.
    f = new Fixture(false, b -> b);
    f.fake.onAcquire = (request, response) -> response.onError(Status.NOT_FOUND.asRuntimeException());

    Throwable thrown = catchThrowable(() -> f.client.acquire("openai"));

    assertThat(thrown).isInstanceOf(ResourceNotFoundException.class);
    assertThat(Arrays.stream(thrown.getStackTrace()).map(StackTraceElement::getMethodName))
        .contains("blockingFailureShowsTheCallersStack");
  }
}
