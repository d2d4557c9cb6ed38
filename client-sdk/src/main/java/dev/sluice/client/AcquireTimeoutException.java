package dev.sluice.client;

/**
 * The acquire was not granted within its timeout (or the coordinator did not answer within the
 * timeout plus a 5 s margin). Nothing was granted; retry later, raise the timeout, or lower the
 * load. {@link SluiceClient#tryAcquire} reports this as an empty result instead.
 */
public final class AcquireTimeoutException extends SluiceException {
  private static final long serialVersionUID = 1L;

  AcquireTimeoutException(String message, Throwable cause) {
    super(message, cause);
  }
}
