package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.driver.FuzzedDataProviderImpl;
import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.protobuf.Duration;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AcquireResponse;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CancelRequest;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.DeleteLimitRequest;
import dev.sluice.proto.v1.DescribeRequest;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.GetStatsRequest;
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
import dev.sluice.server.engine.ResourceSnapshot;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Fuzzes both gRPC services in-process on a fake clock: every request is built from the
 * fuzzer's bytes (names, loads, lanes, durations, limits: valid, borderline and absurd), in a
 * random order. Checked after every call: the answer is OK or a documented status with a
 * message (never INTERNAL or UNKNOWN); the engine agrees with what the client sees (waiters,
 * permits in flight never negative); cancelling every pending acquire empties every waiting
 * room; releasing every permit leaves nothing in flight.
 */
class GrpcFuzzTest {

  /** One data dir for every run's (unused) key store: a fuzz run makes tens of thousands of servers. */
  private static final java.nio.file.Path KEYS_DIR = keysDir();

  private static java.nio.file.Path keysDir() {
    try {
      java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("sluice-fuzz-keys");
      dir.toFile().deleteOnExit();
      return dir;
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }


  /** What a call may answer besides OK: docs/guarantees.md, "Errors". */
  private static final Set<Status.Code> DOCUMENTED =
      EnumSet.of(
          Status.Code.INVALID_ARGUMENT,
          Status.Code.NOT_FOUND,
          Status.Code.DEADLINE_EXCEEDED,
          Status.Code.RESOURCE_EXHAUSTED,
          Status.Code.UNAVAILABLE);

  private static final String[] RESOURCES = {"api", "shop:1", "x"};
  private static final String[] DIMENSIONS = {"requests", "tokens", "bytes"};

  @FuzzTest(maxDuration = "20s")
  void everyRequestGetsADocumentedAnswer(FuzzedDataProvider data) throws Exception {
    new Session(data).run();
  }

  /** The same harness on fixed pseudo-random inputs: deep paths in every build, fuzzing or not. */
  @Test
  void fixedRandomInputs() throws Exception {
    Random random = new Random(20261123);
    granted = 0;
    for (int i = 0; i < 200; i++) {
      byte[] bytes = new byte[64 + random.nextInt(1024)];
      random.nextBytes(bytes);
      try (FuzzedDataProviderImpl data = FuzzedDataProviderImpl.withJavaData(bytes)) {
        new Session(data).run();
      }
    }
    // Random bytes must still reach the grant path, or the checks above prove little.
    assertThat(granted).isGreaterThan(50);
  }

  /** Grants answered in {@link #fixedRandomInputs}. */
  private static int granted;

  /** One in-process server, one client, one script. */
  private static final class Session {
    final FuzzedDataProvider data;
    final FakeClock clock = new FakeClock();
    final List<Pending> acquires = new ArrayList<>();
    final List<String[]> permits = new ArrayList<>(); // {resource, permit id}
    /** resource NUL request id of every Cancel RPC sent: those waiters end CANCELLED, as documented. */
    final Set<String> cancelledIds = new java.util.HashSet<>();
    /** resource NUL request id of every Acquire sent with an id, and of those sent again. */
    final Set<String> sentIds = new java.util.HashSet<>();
    final Set<String> retriedIds = new java.util.HashSet<>();
    MemoryEngine engine;
    /** An assertion failed inside a gRPC callback, where it would only be logged. */
    Throwable callbackFailure;
    CoordinatorGrpc.CoordinatorBlockingStub worker;
    CoordinatorGrpc.CoordinatorStub async;
    AdminGrpc.AdminBlockingStub admin;

    Session(FuzzedDataProvider data) {
      this.data = data;
    }

    void run() throws Exception {
      engine = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
      String name = InProcessServerBuilder.generateName();
      Server server =
          InProcessServerBuilder.forName(name)
              .directExecutor()
              .addService(new CoordinatorService(engine, TimeUnit.MINUTES.toNanos(5)))
              .addService(new AdminService(engine, Runnable::run, new dev.sluice.server.auth.KeyAdmin(
                  new dev.sluice.server.auth.FileKeyStore(KEYS_DIR), System::currentTimeMillis)))
              .build()
              .start();
      ManagedChannel channel = InProcessChannelBuilder.forName(name).directExecutor().build();
      try {
        worker = CoordinatorGrpc.newBlockingStub(channel);
        async = CoordinatorGrpc.newStub(channel);
        admin = AdminGrpc.newBlockingStub(channel);
        // A sane limit first, so most scripts reach past "no such resource".
        call(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(
            Limit.newBuilder().setResource("api").setConcurrency(3).setMaxWaiting(4)
                .addRates(RateDimension.newBuilder().setName("requests").setAmount(5).setPeriod(seconds(1)).setBurst(5))
                .addRates(RateDimension.newBuilder().setName("tokens").setAmount(100).setPeriod(seconds(1)).setBurst(50)))
            .build()));
        clock.advance(java.time.Duration.ofSeconds(2)); // buckets full: some acquires are granted at once
        for (int step = 0; step < 48 && data.remainingBytes() > 0; step++) {
          step();
          checkConsistent();
        }
        finish();
      } finally {
        channel.shutdownNow();
        server.shutdownNow();
        engine.close();
      }
    }

    private void step() {
      switch (data.consumeInt(0, 14)) {
        case 0, 1, 2 -> acquire();
        case 3 -> {
          CancelRequest req = CancelRequest.newBuilder().setResource(resource()).setRequestId(requestId()).build();
          // Recorded before the call: with a direct executor the waiter's CANCELLED arrives inside it.
          cancelledIds.add(req.getResource() + "\0" + req.getRequestId());
          call(() -> worker.cancel(req));
        }
        case 4 -> release();
        case 5 -> call(() -> worker.renew(RenewRequest.newBuilder().setResource(resource()).addPermitIds(permitId()).addPermitIds(permitId()).build()));
        case 6 -> call(() -> worker.report(report()));
        case 7 -> {
          if (data.consumeInt(0, 3) == 0) {
            // A limits document: mostly one that parses with fuzzed values, else any text.
            String doc = data.consumeBoolean() ? data.consumeString(300)
                : "resources:\n  " + resource() + ":\n    rates: [{dimension: requests, amount: " + data.consumeLong()
                    + ", period: " + data.consumeString(6) + "}]\n    concurrency: " + data.consumeInt()
                    + "\npools:\n  " + data.consumeString(8) + ": [" + resource() + "]\n";
            call(() -> admin.applyLimits(dev.sluice.proto.v1.ApplyLimitsRequest.newBuilder().setDocument(doc)
                .setSource(data.consumeString(20)).setDryRun(data.consumeBoolean()).setPrune(data.consumeBoolean())
                .build()));
          } else {
            call(() -> admin.setLimit(data.consumeBoolean() ? SetLimitRequest.getDefaultInstance() : SetLimitRequest.newBuilder().setLimit(limit()).build()));
          }
        }
        case 8 -> call(() -> admin.deleteLimit(DeleteLimitRequest.newBuilder().setResource(resource()).build()));
        case 9 -> {
          PauseRequest.Builder b = PauseRequest.newBuilder().setResource(resource());
          if (data.consumeBoolean()) {
            b.setDuration(duration());
          }
          call(() -> admin.pause(b.build()));
        }
        case 10 -> call(() -> admin.resume(ResumeRequest.newBuilder().setResource(resource()).build()));
        case 11 -> {
          call(() -> admin.getStats(GetStatsRequest.newBuilder().setResource(data.consumeBoolean() ? "" : resource()).build()));
          call(() -> admin.listLimits(ListLimitsRequest.newBuilder().setPrefix(data.consumeString(8)).build()));
          call(() -> admin.getLimit(GetLimitRequest.newBuilder().setResource(resource()).build()));
          call(() -> admin.exportLimits(dev.sluice.proto.v1.ExportLimitsRequest.getDefaultInstance()));
          call(() -> worker.describe(DescribeRequest.newBuilder().setResource(resource()).build()));
        }
        case 12 -> clock.advance(java.time.Duration.ofMillis(data.consumeLong(0, 40_000)));
        case 13 -> {
          if (!acquires.isEmpty()) {
            acquires.get(data.consumeInt(0, acquires.size() - 1)).context.cancel(null);
          }
        }
        default -> {
          // Blocking, so it must not wait: the fake clock only moves between calls. Without a
          // request id: a try-once retry of an id still waiting takes the waiter over and ends at
          // its (zero) deadline, a timer the blocked fake clock would never run. The async path
          // above covers reused ids.
          AcquireRequest req = acquireRequest().toBuilder().setTimeout(Duration.getDefaultInstance())
              .clearRequestId().build();
          if (call(() -> worker.acquire(req)) instanceof AcquireResponse r) {
            granted++;
            permits.add(new String[] {req.getResource(), r.getPermitId()});
          }
        }
      }
    }

    // Mostly names and values that mean something, so scripts get past validation to grants,
    // waiters and leases; the rest anything at all.
    private String resource() {
      int pick = data.consumeInt(0, 7);
      return pick < RESOURCES.length * 2 ? RESOURCES[pick % 2 == 0 ? 0 : pick / 2] : data.consumeString(210);
    }

    private String dimension() {
      int pick = data.consumeInt(0, 7);
      return pick < 6 ? DIMENSIONS[pick % DIMENSIONS.length] : data.consumeString(70);
    }

    private long amount() {
      return switch (data.consumeInt(0, 7)) {
        case 0, 1, 2, 3 -> data.consumeLong(0, 5);
        case 4 -> data.consumeLong(0, 200);
        case 5 -> data.consumeLong(-2, 2);
        default -> data.consumeLong();
      };
    }

    private boolean rarely() {
      return data.consumeInt(0, 7) == 0;
    }

    private Duration duration() {
      if (!rarely()) {
        return Duration.newBuilder().setSeconds(data.consumeLong(0, 10)).setNanos(data.consumeInt(0, 999_999_999)).build();
      }
      return Duration.newBuilder().setSeconds(data.consumeLong()).setNanos(data.consumeInt()).build();
    }

    private static Duration seconds(long s) {
      return Duration.newBuilder().setSeconds(s).build();
    }

    private String requestId() {
      return rarely() ? data.consumeString(70) : "id-" + data.consumeInt(0, 5);
    }

    private String permitId() {
      if (!permits.isEmpty() && data.consumeBoolean()) {
        return permits.get(data.consumeInt(0, permits.size() - 1))[1];
      }
      return data.consumeString(40);
    }

    private AcquireRequest acquireRequest() {
      AcquireRequest.Builder b = AcquireRequest.newBuilder().setResource(resource());
      int dims = data.consumeInt(0, 2);
      for (int i = 0; i < dims; i++) {
        b.putLoad(dimension(), amount());
      }
      if (data.consumeBoolean()) {
        b.setLaneValue(rarely() ? data.consumeInt() : data.consumeInt(0, 3));
      }
      if (data.consumeBoolean()) {
        b.setTimeout(duration());
      }
      if (data.consumeBoolean()) {
        b.setRequestId(requestId());
      }
      return b.build();
    }

    private void acquire() {
      Pending p = new Pending(acquireRequest());
      if (!p.request.getRequestId().isEmpty()) {
        // Recorded before the call: an acquire still waiting under this id is taken over by this
        // one and ends CANCELLED, as documented (Engine#acquire).
        String key = p.request.getResource() + "\0" + p.request.getRequestId();
        if (!sentIds.add(key)) {
          retriedIds.add(key);
        }
      }
      acquires.add(p);
      p.context.run(() -> async.acquire(p.request, p));
    }

    private void release() {
      ReleaseRequest.Builder b = ReleaseRequest.newBuilder();
      if (!permits.isEmpty() && data.consumeBoolean()) {
        String[] p = permits.get(data.consumeInt(0, permits.size() - 1));
        b.setResource(p[0]).setPermitId(p[1]);
      } else {
        b.setResource(resource()).setPermitId(permitId());
      }
      int dims = data.consumeInt(0, 2);
      for (int i = 0; i < dims; i++) {
        b.putActual(dimension(), amount());
      }
      call(() -> worker.release(b.setSettle(data.consumeBoolean()).setUnused(data.consumeBoolean()).build()));
    }

    private ReportRequest report() {
      ReportRequest.Builder b = ReportRequest.newBuilder().setResource(resource()).setThrottled(data.consumeBoolean());
      if (data.consumeBoolean()) {
        b.setRetryAfter(duration());
      }
      int dims = data.consumeInt(0, 2);
      for (int i = 0; i < dims; i++) {
        b.putRemaining(dimension(), amount());
      }
      return b.build();
    }

    private Limit limit() {
      Limit.Builder b = Limit.newBuilder().setResource(resource());
      int rates = data.consumeInt(0, 3);
      for (int i = 0; i < rates; i++) {
        RateDimension.Builder r = RateDimension.newBuilder().setName(dimension()).setAmount(amount()).setBurst(amount());
        if (data.consumeBoolean()) {
          r.setPeriod(duration());
        }
        b.addRates(r);
      }
      b.setConcurrency(amount()).setMaxWaiting(data.consumeBoolean() ? data.consumeInt(0, 5) : data.consumeInt());
      if (data.consumeBoolean()) {
        b.setLeaseTtl(duration());
      }
      return b.build();
    }

    /** A unary call: OK (returns the answer), or a documented status with a message (null). */
    private Object call(Supplier<?> rpc) {
      try {
        return rpc.get();
      } catch (StatusRuntimeException e) {
        assertDocumented(e.getStatus());
        return null;
      }
    }

    private void rethrowCallbackFailure() {
      if (callbackFailure != null) {
        throw new AssertionError(callbackFailure.getMessage(), callbackFailure);
      }
    }

    private void checkConsistent() {
      rethrowCallbackFailure();
      for (String r : RESOURCES) {
        ResourceSnapshot s;
        try {
          s = sync(engine).stats(r);
        } catch (RuntimeException gone) {
          continue; // no limit (deleted, or never set)
        }
        assertThat(s.inFlight()).isNotNegative();
        long waiting = s.waiting().values().stream().mapToInt(Integer::intValue).sum();
        long pending = acquires.stream().filter(p -> !p.done && p.request.getResource().equals(r)).count();
        assertThat(waiting).as("waiters on %s", r).isEqualTo(pending);
      }
    }

    /** Cancels every pending acquire, releases every permit: nothing waits, nothing is held. */
    private void finish() {
      for (Pending p : acquires) {
        p.context.cancel(null);
      }
      for (Pending p : acquires) {
        assertThat(p.done).as("acquire ended by its cancel").isTrue();
      }
      for (String[] p : permits) {
        call(() -> worker.release(ReleaseRequest.newBuilder().setResource(p[0]).setPermitId(p[1]).build()));
      }
      rethrowCallbackFailure();
      call(() -> admin.getStats(GetStatsRequest.getDefaultInstance()));
      for (var s : sync(engine).stats()) {
        assertThat(s.waiting().values()).as("waiters on %s", s.limit().resource()).allMatch(n -> n == 0);
      }
      for (var s : sync(engine).stats()) {
        assertThat(s.inFlight()).as("in flight on %s", s.limit().resource()).isZero();
      }
    }

    /** An async acquire, with its own cancellable context. */
    private final class Pending implements StreamObserver<AcquireResponse> {
      final AcquireRequest request;
      final Context.CancellableContext context = Context.current().withCancellation();
      boolean done;

      Pending(AcquireRequest request) {
        this.request = request;
      }

      @Override
      public void onNext(AcquireResponse value) {
        granted++;
        permits.add(new String[] {request.getResource(), value.getPermitId()});
      }

      @Override
      public void onError(Throwable t) {
        done = true;
        Status status = Status.fromThrowable(t);
        if (status.getCode() == Status.Code.CANCELLED && context.isCancelled()) {
          return; // our own cancel
        }
        if (status.getCode() == Status.Code.CANCELLED && !request.getRequestId().isEmpty()
            && cancelledIds.contains(request.getResource() + "\0" + request.getRequestId())) {
          return; // cancelled by a Cancel RPC naming its request id
        }
        if (status.getCode() == Status.Code.CANCELLED && !request.getRequestId().isEmpty()
            && retriedIds.contains(request.getResource() + "\0" + request.getRequestId())) {
          return; // taken over by a later acquire with the same request id
        }
        try {
          assertDocumented(status);
        } catch (AssertionError e) {
          if (callbackFailure == null) {
            callbackFailure = e;
          }
        }
      }

      @Override
      public void onCompleted() {
        done = true;
      }
    }
  }

  private static void assertDocumented(Status status) {
    assertThat(status.getCode()).as("status %s: %s", status.getCode(), status.getDescription()).isIn(DOCUMENTED);
    assertThat(status.getDescription()).as("message of %s", status.getCode()).isNotBlank();
  }
}
