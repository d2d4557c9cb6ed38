package dev.sluice.client;

/**
 * The coordinator did not accept the client's credentials: none were sent, or the API key is
 * wrong. Configure a valid key.
 */
public final class AuthenticationException extends SluiceException {
  private static final long serialVersionUID = 1L;

  AuthenticationException(String message, Throwable cause) {
    super(message, cause);
  }
}
