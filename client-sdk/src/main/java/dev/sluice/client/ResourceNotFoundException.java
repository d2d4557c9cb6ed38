package dev.sluice.client;

/**
 * The coordinator has no limit for the resource (or it was deleted while the caller waited).
 * Create the limit with the admin CLI, or check the resource name.
 */
public final class ResourceNotFoundException extends SluiceException {
  private static final long serialVersionUID = 1L;

  ResourceNotFoundException(String message, Throwable cause) {
    super(message, cause);
  }
}
