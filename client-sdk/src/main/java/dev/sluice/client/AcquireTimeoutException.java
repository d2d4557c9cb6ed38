package dev.sluice.client;

import java.util.Optional;

/**
 * The acquire was not granted within its timeout (or the coordinator did not answer within the
 * timeout plus a 5 s margin). Nothing was granted; retry later, raise the timeout, or lower the
 * load. {@link SluiceClient#tryAcquire} reports this as an empty result instead.
 *
 * <p>An acquire with {@link AcquireOptions.Builder#failIfLate()} whose estimated wait was past its
 * timeout is refused with this at once, without waiting: {@link #estimate()} then holds the
 * coordinator's estimate.
 */
public final class AcquireTimeoutException extends SluiceException {
  private static final long serialVersionUID = 1L;

  private final transient WaitEstimate estimate;

  AcquireTimeoutException(String message, Throwable cause) {
    this(message, cause, null);
  }

  AcquireTimeoutException(String message, Throwable cause, WaitEstimate estimate) {
    super(message, cause);
    this.estimate = estimate;
  }

  /**
   * The coordinator's estimate when the acquire asked to {@linkplain AcquireOptions.Builder#failIfLate()
   * fail if late} and was refused at once for it; empty when the acquire waited out its timeout.
   */
  public Optional<WaitEstimate> estimate() {
    return Optional.ofNullable(estimate);
  }
}
