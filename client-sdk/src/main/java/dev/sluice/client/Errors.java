package dev.sluice.client;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.RetryInfo;
import dev.sluice.proto.v1.EstimateResponse;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;

/**
 * Maps gRPC failures onto the SDK's exceptions, so no gRPC type leaks into the public API. The
 * original {@link io.grpc.StatusRuntimeException} stays reachable as the cause.
 */
final class Errors {

  /** Used when a RESOURCE_EXHAUSTED carries no usable RetryInfo. */
  static final Duration DEFAULT_RETRY_AFTER = Duration.ofSeconds(1);

  private Errors() {}

  /**
   * @param operation what was attempted, e.g. "acquire", for the message
   * @param resource the resource the call was about
   */
  static SluiceException map(Throwable failure, String operation, String resource) {
    Status status = Status.fromThrowable(failure);
    String said = status.getDescription() == null ? status.getCode().toString() : status.getDescription();
    if (said.endsWith(".")) {
      said = said.substring(0, said.length() - 1);
    }
    String what = operation + " on resource '" + resource + "' failed: " + said + ". ";
    switch (status.getCode()) {
      case INVALID_ARGUMENT:
        return new InvalidRequestException(
            what + "The request is wrong in any state; fix the resource name or load, or the limit", failure);
      case NOT_FOUND:
        return new ResourceNotFoundException(
            what + "Create a limit for '" + resource + "' with the admin CLI, or check the name", failure);
      case DEADLINE_EXCEEDED:
        // The coordinator's own message says why (saturated, or paused by whom and how long)
        // and what to do, after a "; ": its advice is said once, not twice.
        return new AcquireTimeoutException(what + (said.contains("; ") ? "Nothing was granted"
            : "Nothing was granted; retry later, raise the timeout, or lower the load"), failure, estimate(failure));
      case RESOURCE_EXHAUSTED: {
        Duration retryAfter = retryAfter(failure);
        return new WaitingRoomFullException(
            what + "The waiting room is full; retry after " + HumanDurations.format(retryAfter) + " or lower the number of concurrent callers",
            failure, retryAfter);
      }
      case UNAUTHENTICATED:
        return new AuthenticationException(what + "Configure a valid API key", failure);
      case PERMISSION_DENIED:
        return new PermissionDeniedException(what + "Use an API key whose role, resources and tenant allow this call",
            failure);
      case UNAVAILABLE:
      case CANCELLED:
      case UNKNOWN:
      case INTERNAL:
      case ABORTED:
      case DATA_LOSS:
        // Transport-level or the node is going away: retrying, possibly elsewhere, may succeed.
        return new SluiceUnavailableException(
            what + "The coordinator could not be reached or could not serve the call; retry, or check that it is"
                + " running and reachable",
            failure);
      default:
        // UNIMPLEMENTED, FAILED_PRECONDITION, ...: not something a retry fixes.
        return new SluiceException(
            what + "Unexpected status " + status.getCode() + "; check that client and coordinator versions match",
            failure);
    }
  }

  /** The EstimateResponse detail of a fail-if-late refusal, or null when there is none. */
  static WaitEstimate estimate(Throwable failure) {
    EstimateResponse estimate = detail(failure, EstimateResponse.class);
    return estimate == null ? null : WaitEstimate.of(estimate);
  }

  /** The coordinator's google.rpc.RetryInfo hint, or 1 s when there is none or it is unusable. */
  static Duration retryAfter(Throwable failure) {
    RetryInfo info = detail(failure, RetryInfo.class);
    if (info == null || !info.hasRetryDelay()) {
      return DEFAULT_RETRY_AFTER;
    }
    Duration delay = Protos.toJava(info.getRetryDelay());
    return delay.isNegative() ? DEFAULT_RETRY_AFTER : delay;
  }

  /** The first detail of {@code type} in the failure's google.rpc.Status, or null when there is none or it is unusable. */
  private static <T extends com.google.protobuf.Message> T detail(Throwable failure, Class<T> type) {
    com.google.rpc.Status rich = StatusProto.fromThrowable(failure);
    if (rich == null) {
      return null;
    }
    for (com.google.protobuf.Any detail : rich.getDetailsList()) {
      if (detail.is(type)) {
        try {
          return detail.unpack(type);
        } catch (InvalidProtocolBufferException e) {
          return null;
        }
      }
    }
    return null;
  }
}
