package dev.sluice.server.engine;

/**
 * Refund caps (guarantee 1) for one resource: giving tokens back after the bucket has refilled
 * must not let a later window exceed amount + burst. A permit's refund on dimension i is capped
 * at min(refund, burst - highest level since its grant): exactly what the bucket would hold
 * more had the grant been smaller (the two histories differ only while the other one sits at
 * the cap).
 *
 * <p>The highest level since any past event is kept as a short stack of (event, deficit) suffix
 * minima per dimension, oldest first; when it overflows, the two neighbours closest in deficit
 * merge into the older deficit at the newer event, which can only lower a cap. The Redis store's
 * script keeps the same structure (ST field {@code h:<dim>}); the differential test holds the
 * two to the same caps. Allocated only once a refund could ask about it: a resource used one
 * call at a time never has one.
 */
final class RefundHistory {

  private static final int HISTORY = 4;

  private final long[] event;
  private final double[] deficit;
  private final byte[] size;

  RefundHistory(int dims) {
    event = new long[dims * HISTORY];
    deficit = new double[dims * HISTORY];
    size = new byte[dims];
  }

  /**
   * The least deficit of dimension {@code i} recorded after event {@code since}, or {@code
   * upTo} if none was smaller: the cap of a refund to a permit granted at {@code since}.
   */
  double cap(int i, long since, double upTo) {
    int base = i * HISTORY;
    for (int k = 0; k < size[i]; k++) {
      if (event[base + k] > since) {
        return Math.min(upTo, deficit[base + k]); // the oldest after the grant is the smallest
      }
    }
    return upTo;
  }

  /** Records {@code d}, the deficit of dimension {@code i} at event {@code at}. */
  void record(int i, long at, double d) {
    int base = i * HISTORY;
    int n = size[i];
    while (n > 0 && deficit[base + n - 1] >= d) {
      n--; // no longer the minimum of any suffix that includes this event
    }
    if (n == HISTORY) {
      // Merge the neighbours closest in deficit: the older (smaller) deficit at the newer event.
      // That understates caps by the smallest gap there is, and never overstates one.
      int j = 0;
      for (int k = 1; k < HISTORY - 1; k++) {
        if (deficit[base + k + 1] - deficit[base + k] < deficit[base + j + 1] - deficit[base + j]) {
          j = k;
        }
      }
      event[base + j] = event[base + j + 1];
      System.arraycopy(event, base + j + 2, event, base + j + 1, HISTORY - j - 2);
      System.arraycopy(deficit, base + j + 2, deficit, base + j + 1, HISTORY - j - 2);
      n--;
    }
    event[base + n] = at;
    deficit[base + n] = d;
    size[i] = (byte) (n + 1);
  }

  /** Forgets dimension {@code i}: no open permit can ask about what was recorded. */
  void clear(int i) {
    size[i] = 0;
  }
}
