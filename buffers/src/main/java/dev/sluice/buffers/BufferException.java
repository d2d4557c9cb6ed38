package dev.sluice.buffers;

/**
 * Why a buffer call was refused. The coordinator's transport maps each {@link Reason} to its
 * status code as it maps the engine's refusals; the message always says what was wrong and what
 * to do.
 */
public final class BufferException extends RuntimeException {

  private static final long serialVersionUID = 1L;

  /** The kinds of refusal, one per status code. */
  public enum Reason {
    /** A request wrong in any state: a bad spec, a bad item, a name taken (400, INVALID_ARGUMENT). */
    INVALID,
    /** No such buffer or item (404, NOT_FOUND). */
    NOT_FOUND,
    /** The store cannot write or answer, or the coordinator is stopping: retry (503, UNAVAILABLE). */
    UNAVAILABLE
  }

  private final Reason reason;

  public BufferException(Reason reason, String message) {
    super(message, null, false, false);
    this.reason = reason;
  }

  public Reason reason() {
    return reason;
  }

  static BufferException invalid(String message) {
    return new BufferException(Reason.INVALID, message);
  }

  static BufferException notFound(String message) {
    return new BufferException(Reason.NOT_FOUND, message);
  }

  static BufferException unavailable(String message) {
    return new BufferException(Reason.UNAVAILABLE, message);
  }
}
