package dev.sluice.server;

import com.google.protobuf.Any;
import com.google.rpc.Code;
import com.google.rpc.RetryInfo;
import dev.sluice.buffers.BufferException;
import dev.sluice.server.engine.EngineException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.function.Function;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Maps engine and buffer outcomes onto gRPC statuses, as {@link io.grpc.Status} documents them. */
final class Statuses {

  private static final Logger log = LoggerFactory.getLogger(Statuses.class);

  private Statuses() {}

  static StatusRuntimeException of(Throwable t) {
    t = EngineException.unwrap(t);
    if (t instanceof StatusRuntimeException sre) {
      return sre;
    }
    if (t instanceof EngineException e) {
      return switch (e.reason()) {
        case INVALID -> Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException();
        case NOT_FOUND -> Status.NOT_FOUND.withDescription(e.getMessage()).asRuntimeException();
        case DEADLINE -> e.estimateNanos() == EngineException.NO_ESTIMATE
            ? Status.DEADLINE_EXCEEDED.withDescription(e.getMessage()).asRuntimeException()
            : late(e);
        case UNAVAILABLE -> Status.UNAVAILABLE.withDescription(e.getMessage()).asRuntimeException();
        case WAITING_ROOM_FULL -> waitingRoomFull(e);
        case CONFLICT -> Status.FAILED_PRECONDITION.withDescription(e.getMessage()).asRuntimeException();
      };
    }
    if (t instanceof BufferException e) {
      return switch (e.reason()) {
        case INVALID -> Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException();
        case NOT_FOUND -> Status.NOT_FOUND.withDescription(e.getMessage()).asRuntimeException();
        case UNAVAILABLE -> Status.UNAVAILABLE.withDescription(e.getMessage()).asRuntimeException();
      };
    }
    if (t instanceof CancellationException) {
      return Status.CANCELLED.withDescription(t.getMessage()).asRuntimeException();
    }
    log.error("unexpected failure", t);
    return Status.INTERNAL
        .withDescription("internal error: " + t + "; please report it with the server log")
        .asRuntimeException();
  }

  /**
   * Answers a unary call from an engine future, in its callback: the value through {@code
   * response}, a failure (thrown while starting, or failing the future) as its status.
   */
  static <T, R> void reply(
      StreamObserver<R> observer, Supplier<CompletableFuture<T>> call, Function<T, R> response) {
    CompletableFuture<T> future;
    try {
      future = call.get();
    } catch (RuntimeException e) {
      observer.onError(of(e));
      return;
    }
    future.whenComplete(
        (value, error) -> {
          R answer;
          try {
            if (error != null) {
              throw error instanceof RuntimeException r ? r : new java.util.concurrent.CompletionException(error);
            }
            answer = response.apply(value);
          } catch (RuntimeException e) {
            observer.onError(of(e));
            return;
          }
          observer.onNext(answer);
          observer.onCompleted();
        });
  }

  /** DEADLINE_EXCEEDED of a fail-if-late refusal, with the estimate as an EstimateResponse detail. */
  private static StatusRuntimeException late(EngineException e) {
    return StatusProto.toStatusRuntimeException(com.google.rpc.Status.newBuilder()
        .setCode(Code.DEADLINE_EXCEEDED_VALUE)
        .setMessage(e.getMessage())
        .addDetails(Any.pack(Protos.estimate(e.estimateNanos())))
        .build());
  }

  /** RESOURCE_EXHAUSTED with a {@code google.rpc.RetryInfo} detail carrying the hint. */
  private static StatusRuntimeException waitingRoomFull(EngineException e) {
    long nanos = e.retryAfterNanos();
    RetryInfo retry =
        RetryInfo.newBuilder().setRetryDelay(Protos.duration(nanos)).build();
    com.google.rpc.Status status =
        com.google.rpc.Status.newBuilder()
            .setCode(Code.RESOURCE_EXHAUSTED_VALUE)
            .setMessage(e.getMessage())
            .addDetails(Any.pack(retry))
            .build();
    return StatusProto.toStatusRuntimeException(status);
  }
}
