package dev.sluice.client;

/**
 * A call to the coordinator failed. The message says what was wrong and what to do, and keeps the
 * coordinator's own explanation. Thrown as is for failures no subclass describes (for example a
 * coordinator that does not implement the call: check that client and server versions match).
 */
public class SluiceException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  SluiceException(String message, Throwable cause) {
    super(message, cause);
  }
}
