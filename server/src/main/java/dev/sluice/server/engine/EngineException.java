package dev.sluice.server.engine;

/**
 * Why the engine refused or ended a request. The transport layer maps each {@link Reason} to
 * its status code; the message always says what was wrong and what to do.
 */
public final class EngineException extends RuntimeException {

  private static final long serialVersionUID = 1L;

  /** The kinds of refusal, one per status code of the contract. */
  public enum Reason {
    /** A request wrong in any state: bad name, bad load, a load that can never fit. */
    INVALID,
    /** No such resource. */
    NOT_FOUND,
    /** Not granted before the caller's deadline. */
    DEADLINE,
    /** The waiting room is full; {@link #retryAfterNanos()} hints when to come back. */
    WAITING_ROOM_FULL,
    /** The node is shutting down or its store is unreachable: retry on another node. */
    UNAVAILABLE,
    /**
     * Refused in the current state, not for the request itself: a limit a limits file manages,
     * changed without force. Retrying does not help; the message names the fix.
     */
    CONFLICT
  }

  /** {@link #estimateNanos()} of a refusal that is not a fail-if-late one. */
  public static final long NO_ESTIMATE = Long.MIN_VALUE;

  private final Reason reason;
  private final long retryAfterNanos;
  private final long estimateNanos;

  public EngineException(Reason reason, String message) {
    this(reason, message, 0);
  }

  public EngineException(Reason reason, String message, long retryAfterNanos) {
    this(reason, message, retryAfterNanos, null);
  }

  /** With the store's own error as its cause, for the engine to read (never sent to a client). */
  EngineException(Reason reason, String message, Throwable cause) {
    this(reason, message, 0, cause);
  }

  private EngineException(Reason reason, String message, long retryAfterNanos, Throwable cause) {
    this(reason, message, retryAfterNanos, NO_ESTIMATE, cause);
  }

  private EngineException(Reason reason, String message, long retryAfterNanos, long estimateNanos, Throwable cause) {
    super(message, cause, false, false);
    this.reason = reason;
    this.retryAfterNanos = retryAfterNanos;
    this.estimateNanos = estimateNanos;
  }

  /**
   * A {@link Reason#DEADLINE} refusal made at once, before queueing, because the wait was
   * estimated past the caller's timeout (fail-if-late): {@code estimateNanos} is the estimate, -1
   * when only a resume can help.
   */
  public static EngineException late(String message, long estimateNanos) {
    return new EngineException(Reason.DEADLINE, message, 0, estimateNanos, null);
  }

  public Reason reason() {
    return reason;
  }

  /** For {@link Reason#WAITING_ROOM_FULL}: how long until a retry is likely to find room. */
  public long retryAfterNanos() {
    return retryAfterNanos;
  }

  /**
   * For a fail-if-late refusal ({@link #late}): the estimated wait in nanoseconds, -1 when only a
   * resume can help; {@link #NO_ESTIMATE} for every other refusal.
   */
  public long estimateNanos() {
    return estimateNanos;
  }

  /**
   * What an engine future failed with: the cause of the {@link
   * java.util.concurrent.CompletionException} (or {@link java.util.concurrent.ExecutionException})
   * a future wraps it in when it completes on another thread, else {@code t} itself. The one
   * place callers unwrap, so an EngineException maps to the same status wherever it completed.
   */
  public static Throwable unwrap(Throwable t) {
    while ((t instanceof java.util.concurrent.CompletionException
            || t instanceof java.util.concurrent.ExecutionException)
        && t.getCause() != null) {
      t = t.getCause();
    }
    return t;
  }

  static EngineException invalid(String message) {
    return new EngineException(Reason.INVALID, message);
  }

  static EngineException notFound(String resource) {
    return new EngineException(
        Reason.NOT_FOUND,
        "resource '" + resource + "' has no limit: create it with `sluice limit set " + resource
            + " --rate requests=N/min` or check the name");
  }
}
