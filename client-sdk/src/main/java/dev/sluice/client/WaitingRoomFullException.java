package dev.sluice.client;

import java.time.Duration;

/**
 * The resource's waiting room is full: too many callers are already queued. Nothing was granted
 * and the caller was not queued; back off for {@link #retryAfter()} and retry, or lower the number
 * of concurrent callers.
 */
public final class WaitingRoomFullException extends SluiceException {
  private static final long serialVersionUID = 1L;

  private final Duration retryAfter;

  WaitingRoomFullException(String message, Throwable cause, Duration retryAfter) {
    super(message, cause);
    this.retryAfter = retryAfter;
  }

  /** How long to wait before retrying, as hinted by the coordinator; 1 s when it gave no hint. */
  public Duration retryAfter() {
    return retryAfter;
  }
}
