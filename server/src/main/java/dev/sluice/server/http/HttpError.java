package dev.sluice.server.http;

import dev.sluice.buffers.BufferException;
import dev.sluice.server.engine.EngineException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.util.concurrent.CancellationException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A refusal on the HTTP port: its status, the contract's error code and a message naming the
 * problem and the fix, plus a {@code Retry-After} in seconds where one applies (0 for none), and
 * the estimate of a fail-if-late refusal.
 */
final class HttpError extends RuntimeException {

  private static final long serialVersionUID = 1L;
  private static final Logger log = LoggerFactory.getLogger(HttpError.class);

  final transient HttpResponseStatus status;
  final String code;
  final long retryAfterSeconds;
  /** A fail-if-late refusal's estimate ({@link EngineException#estimateNanos}), else NO_ESTIMATE. */
  final long estimateNanos;

  HttpError(HttpResponseStatus status, String code, String message) {
    this(status, code, message, 0);
  }

  HttpError(HttpResponseStatus status, String code, String message, long retryAfterSeconds) {
    this(status, code, message, retryAfterSeconds, EngineException.NO_ESTIMATE);
  }

  private HttpError(HttpResponseStatus status, String code, String message, long retryAfterSeconds,
      long estimateNanos) {
    super(message, null, false, false);
    this.status = status;
    this.code = code;
    this.retryAfterSeconds = retryAfterSeconds;
    this.estimateNanos = estimateNanos;
  }

  static HttpError badRequest(String message) {
    return new HttpError(HttpResponseStatus.BAD_REQUEST, "INVALID_ARGUMENT", message);
  }

  /**
   * The HTTP form of an engine refusal or a gRPC status, as docs/http-api.md's table lists them:
   * invalid 400, unknown 404, deadline 408, waiting room full 429, no or bad key 401, key not
   * allowed 403, store away or shutting down 503.
   */
  static HttpError of(Throwable t) {
    t = EngineException.unwrap(t);
    if (t instanceof HttpError e) {
      return e;
    }
    if (t instanceof EngineException e) {
      return switch (e.reason()) {
        case INVALID -> badRequest(e.getMessage());
        case NOT_FOUND -> new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", e.getMessage());
        case DEADLINE -> new HttpError(HttpResponseStatus.REQUEST_TIMEOUT, "DEADLINE_EXCEEDED", e.getMessage(), 0,
            e.estimateNanos());
        case WAITING_ROOM_FULL -> new HttpError(HttpResponseStatus.TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED",
            e.getMessage(), Math.max(1, (e.retryAfterNanos() + 999_999_999L) / 1_000_000_000L));
        case UNAVAILABLE -> new HttpError(HttpResponseStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", e.getMessage(), 1);
        case CONFLICT -> new HttpError(HttpResponseStatus.CONFLICT, "FAILED_PRECONDITION", e.getMessage());
      };
    }
    if (t instanceof BufferException e) {
      return switch (e.reason()) {
        case INVALID -> badRequest(e.getMessage());
        case NOT_FOUND -> new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", e.getMessage());
        case UNAVAILABLE -> new HttpError(HttpResponseStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", e.getMessage(), 1);
      };
    }
    if (t instanceof StatusRuntimeException sre) {
      Status s = sre.getStatus();
      String message = s.getDescription() == null ? s.getCode().toString() : s.getDescription();
      return switch (s.getCode()) {
        case UNAUTHENTICATED -> new HttpError(HttpResponseStatus.UNAUTHORIZED, "UNAUTHENTICATED", message);
        case PERMISSION_DENIED -> new HttpError(HttpResponseStatus.FORBIDDEN, "PERMISSION_DENIED", message);
        case INVALID_ARGUMENT -> badRequest(message);
        case NOT_FOUND -> new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", message);
        case UNAVAILABLE -> new HttpError(HttpResponseStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", message, 1);
        default -> internal(t);
      };
    }
    if (t instanceof CancellationException) {
      return new HttpError(HttpResponseStatus.SERVICE_UNAVAILABLE, "CANCELLED", "the acquire was cancelled", 1);
    }
    return internal(t);
  }

  private static HttpError internal(Throwable t) {
    log.error("unexpected failure on the HTTP port", t);
    return new HttpError(HttpResponseStatus.INTERNAL_SERVER_ERROR, "INTERNAL",
        "internal error: " + t + "; please report it with the server log");
  }
}
