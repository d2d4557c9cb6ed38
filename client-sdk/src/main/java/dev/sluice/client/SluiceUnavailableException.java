package dev.sluice.client;

/**
 * The coordinator could not be reached or could not serve the call: the node is shutting down,
 * its store is unreachable, or the connection failed. The call may be retried, possibly on another
 * node.
 */
public final class SluiceUnavailableException extends SluiceException {
  private static final long serialVersionUID = 1L;

  SluiceUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
