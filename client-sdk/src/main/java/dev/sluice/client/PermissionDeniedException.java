package dev.sluice.client;

/**
 * The client's API key is valid but its role may not make this call (for example a worker key
 * calling an admin operation). Use a key with the right role.
 */
public final class PermissionDeniedException extends SluiceException {
  private static final long serialVersionUID = 1L;

  PermissionDeniedException(String message, Throwable cause) {
    super(message, cause);
  }
}
