package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.Duration;
import com.google.rpc.RetryInfo;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.DeleteLimitRequest;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.Lane;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ListLimitsRequest;
import dev.sluice.proto.v1.PauseRequest;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.RenewRequest;
import dev.sluice.proto.v1.ReportRequest;
import dev.sluice.proto.v1.ResumeRequest;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.MemoryEngine;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** The gRPC mapping, in-process and fast: every error path of both services and its status. */
class GrpcLayerTest {

  private FakeClock clock;
  private MemoryEngine engine;
  private Server server;
  private ManagedChannel channel;
  private CoordinatorGrpc.CoordinatorBlockingStub worker;
  private CoordinatorGrpc.CoordinatorStub async;
  private AdminGrpc.AdminBlockingStub admin;

  @BeforeEach
  void setUp() throws Exception {
    clock = new FakeClock();
    engine = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
    String name = InProcessServerBuilder.generateName();
    server =
        InProcessServerBuilder.forName(name)
            .directExecutor()
            .addService(new CoordinatorService(engine, TimeUnit.MINUTES.toNanos(5)))
            .addService(new AdminService(engine, Runnable::run, new dev.sluice.server.auth.KeyAdmin(new dev.sluice.server.auth.FileKeyStore(java.nio.file.Files.createTempDirectory("keys")), System::currentTimeMillis)))
            .build()
            .start();
    channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    worker = CoordinatorGrpc.newBlockingStub(channel);
    async = CoordinatorGrpc.newStub(channel);
    admin = AdminGrpc.newBlockingStub(channel);
  }

  @AfterEach
  void tearDown() {
    channel.shutdownNow();
    server.shutdownNow();
  }

  private static Duration seconds(long s) {
    return Duration.newBuilder().setSeconds(s).build();
  }

  private void setLimit(String resource, long amount, long periodSeconds, long burst, int maxWaiting) {
    admin.setLimit(
        SetLimitRequest.newBuilder()
            .setLimit(
                Limit.newBuilder()
                    .setResource(resource)
                    .setMaxWaiting(maxWaiting)
                    // No jitter: these tests count the bucket to the unit.
                    .setJitter(com.google.protobuf.Duration.getDefaultInstance())
                    .addRates(
                        RateDimension.newBuilder()
                            .setName("requests")
                            .setAmount(amount)
                            .setPeriod(seconds(periodSeconds))
                            .setBurst(burst)))
            .build());
  }

  private static void assertStatus(Executable call, Status.Code code, String text) {
    assertThatThrownBy(call::execute)
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> {
              assertThat(e.getStatus().getCode()).isEqualTo(code);
              assertThat(e.getStatus().getDescription()).contains(text);
            });
  }

  @Test
  void aNegativeJitterOrOneAsLongAsTheSubWindowIsInvalidArgumentNamingTheFix() {
    Limit.Builder limit = Limit.newBuilder().setResource("tier").addRates(
        RateDimension.newBuilder().setName("requests").setAmount(60).setPeriod(seconds(60)).setBurst(1));
    assertStatus(() -> admin.setLimit(SetLimitRequest.newBuilder()
            .setLimit(limit.clone().setJitter(Duration.newBuilder().setSeconds(-1))).build()),
        Status.Code.INVALID_ARGUMENT, "jitter -1s 0ns is negative or malformed: use a non-negative duration");
    assertStatus(() -> admin.setLimit(SetLimitRequest.newBuilder()
            .setLimit(limit.clone().setJitter(seconds(1))).build()),
        Status.Code.INVALID_ARGUMENT, "use a jitter under 1s, or raise the burst");
    var ok = admin.setLimit(SetLimitRequest.newBuilder()
        .setLimit(limit.clone().setJitter(Duration.newBuilder().setNanos(20_000_000))).build());
    assertThat(ok.getLimit().getRates(0).getEffectiveAmount()).isCloseTo(60 / 1.02, org.assertj.core.api.Assertions.within(1e-9));
  }

  @Test
  void setLimitFillsDefaultsAndReportsCreation() {
    var first =
        admin.setLimit(
            SetLimitRequest.newBuilder()
                .setLimit(
                    Limit.newBuilder()
                        .setResource("openai")
                        .addRates(
                            RateDimension.newBuilder()
                                .setName("tokens")
                                .setAmount(120_000)
                                .setPeriod(seconds(60))))
                .build());
    assertThat(first.getCreated()).isTrue();
    assertThat(first.getLimit().getRates(0).getBurst()).isEqualTo(2000);
    assertThat(first.getLimit().getMaxWaiting()).isEqualTo(10_000);
    assertThat(first.getLimit().getLeaseTtl().getSeconds()).isEqualTo(30);
    // Unset jitter on a set: the default, and each rate says what it is really granted at.
    assertThat(first.getLimit().getJitter().getNanos()).isEqualTo(20_000_000);
    assertThat(first.getLimit().getRates(0).getEffectiveAmount()).isEqualTo(120_000.0);
    assertThat(admin.setLimit(SetLimitRequest.newBuilder().setLimit(first.getLimit()).build()).getCreated())
        .isFalse();
    assertThat(admin.listLimits(ListLimitsRequest.newBuilder().setPrefix("open").build()).getLimitsCount())
        .isEqualTo(1);
    assertThat(admin.listLimits(ListLimitsRequest.newBuilder().setPrefix("shop").build()).getLimitsCount())
        .isZero();
  }

  @Test
  void adminErrorPaths() {
    assertStatus(() -> admin.setLimit(SetLimitRequest.getDefaultInstance()), Status.Code.INVALID_ARGUMENT, "needs a limit");
    assertStatus(
        () ->
            admin.setLimit(
                SetLimitRequest.newBuilder()
                    .setLimit(
                        Limit.newBuilder()
                            .setResource("x")
                            .addRates(RateDimension.newBuilder().setName("requests").setAmount(5)))
                    .build()),
        Status.Code.INVALID_ARGUMENT,
        "period");
    assertStatus(
        () ->
            admin.setLimit(
                SetLimitRequest.newBuilder()
                    .setLimit(
                        Limit.newBuilder()
                            .setResource("x")
                            .addRates(
                                RateDimension.newBuilder()
                                    .setName("requests")
                                    .setAmount(5)
                                    .setPeriod(Duration.newBuilder().setSeconds(-1))))
                    .build()),
        Status.Code.INVALID_ARGUMENT,
        "negative");
    assertStatus(() -> admin.getLimit(GetLimitRequest.newBuilder().setResource("nope").build()), Status.Code.NOT_FOUND, "sluice limit list");
    assertStatus(() -> admin.getLimit(GetLimitRequest.newBuilder().setResource("bad name").build()), Status.Code.INVALID_ARGUMENT, "invalid");
    assertStatus(() -> admin.deleteLimit(DeleteLimitRequest.newBuilder().setResource("nope").build()), Status.Code.NOT_FOUND, "nope");
    assertStatus(() -> admin.pause(PauseRequest.newBuilder().setResource("nope").build()), Status.Code.NOT_FOUND, "nope");
    assertStatus(() -> admin.resume(ResumeRequest.newBuilder().setResource("nope").build()), Status.Code.NOT_FOUND, "nope");
    assertStatus(() -> admin.getStats(GetStatsRequest.newBuilder().setResource("nope").build()), Status.Code.NOT_FOUND, "nope");
    assertThat(admin.getStats(GetStatsRequest.getDefaultInstance()).getResourcesCount()).isZero();
  }

  /** The gRPC fuzzer's two findings: durations at the ends of the wire's range were INTERNAL. */
  @Test
  void aPauseAtTheEndsOfTheWiresRangeIsInvalidArgument() {
    setLimit("api", 10, 1, 10, 0);
    for (Duration d : List.of(Duration.newBuilder().setSeconds(Long.MIN_VALUE).build(),
        Duration.newBuilder().setSeconds(Long.MIN_VALUE).setNanos(-999_999_999).build(),
        Duration.newBuilder().setSeconds(Long.MAX_VALUE).setNanos(999_999_999).build())) {
      assertStatus(() -> admin.pause(PauseRequest.newBuilder().setResource("api").setDuration(d).build()),
          Status.Code.INVALID_ARGUMENT, "duration '" + d.getSeconds() + "s'");
    }
    assertThat(admin.getStats(GetStatsRequest.newBuilder().setResource("api").build()).getResources(0).getPaused())
        .as("nothing paused").isFalse();
  }

  @Test
  void pauseAndStatsOverTheWire() {
    setLimit("api", 10, 1, 10, 0);
    var paused = admin.pause(PauseRequest.newBuilder().setResource("api").setDuration(seconds(30)).build());
    assertThat(paused.getPausedFor().getSeconds()).isEqualTo(30);
    var stats = admin.getStats(GetStatsRequest.newBuilder().setResource("api").build()).getResources(0);
    assertThat(stats.getPaused()).isTrue();
    assertThat(stats.getWaitingMap()).containsKeys("interactive", "default", "batch");
    assertThat(stats.getUsedMap()).as("one counter per dimension, nothing taken yet").hasSize(1)
        .containsValue(0.0);
    assertThat(admin.pause(PauseRequest.newBuilder().setResource("api").build()).hasPausedFor()).isFalse();
    admin.resume(ResumeRequest.newBuilder().setResource("api").build());
    assertThat(admin.getStats(GetStatsRequest.newBuilder().setResource("api").build()).getResources(0).getPaused()).isFalse();
  }

  @Test
  void workerErrorPaths() {
    setLimit("api", 10, 1, 10, 0);
    assertStatus(
        () -> worker.acquire(AcquireRequest.newBuilder().setResource("api").setTimeout(Duration.newBuilder().setSeconds(-5)).build()),
        Status.Code.INVALID_ARGUMENT,
        "negative");
    assertStatus(
        () -> worker.acquire(AcquireRequest.newBuilder().setResource("api").setLaneValue(42).build()),
        Status.Code.INVALID_ARGUMENT,
        "lane");
    assertStatus(
        () -> worker.acquire(AcquireRequest.newBuilder().setResource("api").setRequestId("has space").build()),
        Status.Code.INVALID_ARGUMENT,
        "request id");
    assertStatus(
        () -> worker.acquire(AcquireRequest.newBuilder().setResource("api").setTimeout(seconds(0)).build()),
        Status.Code.DEADLINE_EXCEEDED,
        "not granted");
    assertStatus(
        () -> worker.report(ReportRequest.newBuilder().setResource("api").setThrottled(true).setRetryAfter(seconds(7200)).build()),
        Status.Code.INVALID_ARGUMENT,
        "retry-after");
    assertStatus(
        () -> worker.report(ReportRequest.newBuilder().setResource("api").putRemaining("requests", -1).build()),
        Status.Code.INVALID_ARGUMENT,
        "out of range");
    // Upstream counters for dimensions this limit does not have are ignored, not refused.
    assertThat(worker.report(ReportRequest.newBuilder().setResource("api").putRemaining("tokens", 5).build()).hasPausedFor())
        .isFalse();
    assertStatus(
        () -> worker.release(ReleaseRequest.newBuilder().setResource("gone").setPermitId("p").build()),
        Status.Code.NOT_FOUND,
        "gone");
    assertThat(worker.release(ReleaseRequest.newBuilder().setResource("api").setPermitId("unknown").build()).getReleased())
        .isFalse();
    var renewed = worker.renew(RenewRequest.newBuilder().setResource("api").addPermitIds("unknown").build());
    assertThat(renewed.getExpiredList()).containsExactly("unknown");
    assertThat(renewed.getLeaseTtl().getSeconds()).isEqualTo(30);
  }

  @Test
  void fullWaitingRoomCarriesRetryInfo() {
    setLimit("small", 1, 10, 1, 1);
    async.acquire(AcquireRequest.newBuilder().setResource("small").build(), new Sink());
    StatusRuntimeException e =
        org.junit.jupiter.api.Assertions.assertThrows(
            StatusRuntimeException.class,
            () -> worker.acquire(AcquireRequest.newBuilder().setResource("small").build()));
    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
    com.google.rpc.Status detail = StatusProto.fromThrowable(e);
    assertThat(detail).isNotNull();
    RetryInfo retry = detail.getDetailsList().stream()
        .filter(a -> a.is(RetryInfo.class))
        .map(a -> unpack(a))
        .findFirst()
        .orElseThrow();
    assertThat(retry.getRetryDelay().getSeconds()).isGreaterThanOrEqualTo(9);
  }

  private static RetryInfo unpack(com.google.protobuf.Any a) {
    try {
      return a.unpack(RetryInfo.class);
    } catch (com.google.protobuf.InvalidProtocolBufferException ex) {
      throw new AssertionError(ex);
    }
  }

  @Test
  void cancelledCallLeavesTheQueueAndUnclaimedGrantIsGivenBack() throws Exception {
    setLimit("api", 1, 1, 1, 0);
    var call = io.grpc.Context.current().withCancellation();
    Sink sink = new Sink();
    call.run(() -> async.acquire(AcquireRequest.newBuilder().setResource("api").setLane(Lane.LANE_BATCH).build(), sink));
    assertThat(sync(engine).stats("api").waiting().values().stream().mapToInt(Integer::intValue).sum()).isEqualTo(1);
    call.cancel(null);
    assertThat(sync(engine).stats("api").waiting().values().stream().mapToInt(Integer::intValue).sum()).isZero();
    assertThat(sync(engine).stats("api").cancelled()).isEqualTo(1);
    clock.advance(java.time.Duration.ofSeconds(1));
    assertThat(sync(engine).stats("api").available().get("requests")).isEqualTo(1.0);
  }

  @Test
  void grantForACallAlreadyCancelledIsGivenBack() {
    sync(engine).setLimit(
        new dev.sluice.server.engine.LimitSpec(
            "api",
            java.util.List.of(new dev.sluice.server.engine.RateSpec("requests", 10, java.time.Duration.ofSeconds(1), 10)),
            1,
            0,
            null));
    clock.advance(java.time.Duration.ofSeconds(1));
    var service = new CoordinatorService(engine, TimeUnit.MINUTES.toNanos(5));
    CancelledCall call = new CancelledCall();
    // Capacity is there, so the engine grants at once; the call was cancelled meanwhile.
    service.acquire(AcquireRequest.newBuilder().setResource("api").build(), call);
    assertThat(call.answered).isZero();
    assertThat(sync(engine).stats("api").inFlight()).isZero();
    assertThat(sync(engine).stats("api").available().get("requests")).isEqualTo(10.0);
    assertThat(sync(engine).stats("api").granted()).isEqualTo(1);
  }

  /** A server call whose client has already gone away. */
  private static final class CancelledCall extends io.grpc.stub.ServerCallStreamObserver<AcquireResponse> {
    int answered;

    @Override
    public boolean isCancelled() {
      return true;
    }

    @Override
    public void setOnCancelHandler(Runnable onCancelHandler) {}

    @Override
    public void setCompression(String compression) {}

    @Override
    public boolean isReady() {
      return true;
    }

    @Override
    public void setOnReadyHandler(Runnable onReadyHandler) {}

    @Override
    public void request(int count) {}

    @Override
    public void setMessageCompression(boolean enable) {}

    @Override
    public void disableAutoInboundFlowControl() {}

    @Override
    public void onNext(AcquireResponse value) {
      answered++;
    }

    @Override
    public void onError(Throwable t) {
      answered++;
    }

    @Override
    public void onCompleted() {}
  }

  /** Collects one unary answer. */
  private static final class Sink implements StreamObserver<AcquireResponse> {
    final CompletableFuture<AcquireResponse> result = new CompletableFuture<>();

    @Override
    public void onNext(AcquireResponse value) {
      result.complete(value);
    }

    @Override
    public void onError(Throwable t) {
      result.completeExceptionally(t);
    }

    @Override
    public void onCompleted() {}
  }
}
