package dev.sluice.client;

/**
 * How long answers normally spend on the way from the coordinators, to tell an answer that the
 * network held back (a cut that healed, a stalled link) from one that is merely far away.
 *
 * <p>A grant is worth its moment: the coordinator spaces grants so that the upstream sees no
 * more than the limit, and a grant that reaches its caller late reaches the upstream together
 * with the grants made since. Each answer says how long the node held the call ({@code
 * answered_after}); the caller's round trip minus that is what the call and its answer spent on
 * the way. A constant delay moves every grant alike and bunches nothing, so what counts is the
 * excess over the least time seen lately (in this window of 10 s or the last): that is at most how
 * much later than usual the grant arrives. The first answer sets the baseline.
 *
 * <p>Thread-safe; a few field writes per answer.
 */
final class Transit {

  private static final long WINDOW_NANOS = 10_000_000_000L;

  private long leastNow = Long.MAX_VALUE; // guarded by this
  private long leastBefore = Long.MAX_VALUE; // guarded by this
  private long windowStart; // guarded by this
  private boolean started; // guarded by this

  /**
   * Notes that an answer spent {@code onTheWayNanos} on the way, at {@code now} (the client's
   * ticker), and returns how much longer than the least lately seen it took (0 for the first).
   */
  synchronized long excess(long onTheWayNanos, long now) {
    if (!started || now - windowStart > WINDOW_NANOS) {
      leastBefore = leastNow;
      leastNow = Long.MAX_VALUE;
      windowStart = now;
      started = true;
    }
    long least = Math.min(leastNow, leastBefore);
    leastNow = Math.min(leastNow, onTheWayNanos);
    return least == Long.MAX_VALUE ? 0 : Math.max(0, onTheWayNanos - least);
  }
}
