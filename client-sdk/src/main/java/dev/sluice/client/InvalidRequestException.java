package dev.sluice.client;

/**
 * The coordinator refused the request as wrong in any state: a malformed resource name, a bad
 * load, a dimension the limit does not have, or a load above a dimension's burst that could never
 * fit. Retrying the same request will not help; fix the request or the limit.
 */
public final class InvalidRequestException extends SluiceException {
  private static final long serialVersionUID = 1L;

  InvalidRequestException(String message, Throwable cause) {
    super(message, cause);
  }
}
