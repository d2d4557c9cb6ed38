package dev.sluice.client;

import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.CancelRequest;
import dev.sluice.proto.v1.CancelResponse;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.DescribeRequest;
import dev.sluice.proto.v1.DescribeResponse;
import dev.sluice.proto.v1.EstimateRequest;
import dev.sluice.proto.v1.EstimateResponse;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.ReleaseResponse;
import dev.sluice.proto.v1.RenewRequest;
import dev.sluice.proto.v1.RenewResponse;
import dev.sluice.proto.v1.ReportRequest;
import dev.sluice.proto.v1.ReportResponse;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiConsumer;
import java.util.function.Function;

/** A coordinator that records every request and answers as each test tells it to. */
final class FakeCoordinator extends CoordinatorGrpc.CoordinatorImplBase {

  final List<AcquireRequest> acquires = new CopyOnWriteArrayList<>();
  final List<Deadline> acquireDeadlines = new CopyOnWriteArrayList<>();
  final List<ReleaseRequest> releases = new CopyOnWriteArrayList<>();
  final List<RenewRequest> renews = new CopyOnWriteArrayList<>();
  final List<ReportRequest> reports = new CopyOnWriteArrayList<>();
  final List<CancelRequest> cancels = new CopyOnWriteArrayList<>();
  final List<DescribeRequest> describes = new CopyOnWriteArrayList<>();
  final List<EstimateRequest> estimates = new CopyOnWriteArrayList<>();

  /** Default: a wait of 1 s. */
  volatile Function<EstimateRequest, EstimateResponse> onEstimate = request ->
      EstimateResponse.newBuilder().setWait(Protos.toProto(Duration.ofSeconds(1))).build();

  /** Default: Describe is not implemented (an older coordinator). */
  volatile Function<String, Limit> onDescribe;

  /** Default: Cancel is not implemented, so the client falls back to cancelling the call. */
  volatile BiConsumer<CancelRequest, StreamObserver<CancelResponse>> onCancel;

  private final AtomicInteger nextPermit = new AtomicInteger(1);

  /** Default: grant at once, without a lease. */
  volatile BiConsumer<AcquireRequest, StreamObserver<AcquireResponse>> onAcquire = (request, response) -> {
    response.onNext(grant(request, Duration.ZERO));
    response.onCompleted();
  };
  /** Default: every permit renewed for 3 s. */
  volatile Function<RenewRequest, RenewResponse> onRenew = request ->
      RenewResponse.newBuilder().setLeaseTtl(Protos.toProto(Duration.ofSeconds(3))).build();
  volatile Function<ReportRequest, ReportResponse> onReport = request -> ReportResponse.getDefaultInstance();
  volatile StatusRuntimeException releaseFailure;
  /** When set, releases that settle fail with this (the permit stays held). */
  volatile StatusRuntimeException settleFailure;

  /** A grant of what was asked, with the server's requests=1 default, and a fresh permit id. */
  AcquireResponse grant(AcquireRequest request, Duration leaseTtl) {
    AcquireResponse.Builder grant = AcquireResponse.newBuilder()
        .setPermitId("permit-" + nextPermit.getAndIncrement())
        .setLeaseTtl(Protos.toProto(leaseTtl))
        .setWaited(Protos.toProto(Duration.ofMillis(150)))
        .putAllGranted(request.getLoadMap());
    if (!request.getLoadMap().containsKey("requests")) {
      grant.putGranted("requests", 1);
    }
    return grant.build();
  }

  @Override
  public void acquire(AcquireRequest request, StreamObserver<AcquireResponse> response) {
    acquires.add(request);
    acquireDeadlines.add(Context.current().getDeadline());
    onAcquire.accept(request, response);
  }

  @Override
  public void cancel(CancelRequest request, StreamObserver<CancelResponse> response) {
    cancels.add(request);
    var handler = onCancel;
    if (handler == null) {
      super.cancel(request, response);
    } else {
      handler.accept(request, response);
    }
  }

  @Override
  public void release(ReleaseRequest request, StreamObserver<ReleaseResponse> response) {
    releases.add(request);
    StatusRuntimeException failure = request.getSettle() && settleFailure != null ? settleFailure : releaseFailure;
    if (failure != null) {
      response.onError(failure);
      return;
    }
    response.onNext(ReleaseResponse.newBuilder().setReleased(true).build());
    response.onCompleted();
  }

  @Override
  public void renew(RenewRequest request, StreamObserver<RenewResponse> response) {
    renews.add(request);
    try {
      response.onNext(onRenew.apply(request));
      response.onCompleted();
    } catch (StatusRuntimeException e) {
      response.onError(e);
    }
  }

  @Override
  public void report(ReportRequest request, StreamObserver<ReportResponse> response) {
    reports.add(request);
    try {
      response.onNext(onReport.apply(request));
      response.onCompleted();
    } catch (StatusRuntimeException e) {
      response.onError(e);
    }
  }

  @Override
  public void estimate(EstimateRequest request, StreamObserver<EstimateResponse> response) {
    estimates.add(request);
    try {
      response.onNext(onEstimate.apply(request));
      response.onCompleted();
    } catch (StatusRuntimeException e) {
      response.onError(e);
    }
  }

  @Override
  public void describe(DescribeRequest request, StreamObserver<DescribeResponse> response) {
    describes.add(request);
    var handler = onDescribe;
    if (handler == null) {
      super.describe(request, response);
      return;
    }
    try {
      response.onNext(DescribeResponse.newBuilder().setLimit(handler.apply(request.getResource())).build());
      response.onCompleted();
    } catch (StatusRuntimeException e) {
      response.onError(e);
    }
  }
}
