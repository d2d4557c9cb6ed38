package dev.sluice.bench;

/**
 * One system under test, reduced to the shape every peer shares: take one permit for one call
 * of one hot key, then give it back. The load generator drives every system through this, so
 * each gets the same workload.
 *
 * <p>Systems that queue (Sluice) block in {@link #acquire()} until granted. Systems that only
 * answer yes/no (Sentinel, Bucket4j's tryConsume) are driven in the mode they document for
 * waiting, or retried with their own hint; the implementation says which in {@link #notes()}.
 */
public interface Limiter extends AutoCloseable {

  /** Short name for tables, e.g. {@code sluice-memory} or {@code bucket4j-lettuce}. */
  String name();

  /** How this system was driven and what it cannot do (no queue, no release, ...). */
  String notes();

  /**
   * Takes one permit, waiting if the system waits. Returns what {@link #release} needs, or
   * {@code null} when the system has nothing to release.
   *
   * @throws Exception if the system refused or failed; the load generator counts it as an error
   */
  Object acquire() throws Exception;

  /** Gives back what {@link #acquire()} returned (no-op for systems without release). */
  void release(Object permit) throws Exception;

  @Override
  void close() throws Exception;
}
