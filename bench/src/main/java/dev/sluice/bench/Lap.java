package dev.sluice.bench;

/**
 * The timing of one operation. The driver stamps {@link #start} before the operation and the
 * end when it reports done; the operation may mark an intermediate point (acquire returned, the
 * release not yet sent) or move the interval's ends when the interesting latency is not the
 * operation's own (release of one caller to grant of the next).
 */
public final class Lap {

  final long start;
  long from;
  long mark = -1;
  long end = -1;
  boolean skip;

  Lap(long start) {
    this.start = start;
    this.from = start;
  }

  /** Records the first latency (e.g. acquire alone) as ending now. */
  public void mark() {
    mark = System.nanoTime();
  }

  /** Measures the main latency from {@code nanoTime} instead of the operation's start. */
  public void from(long nanoTime) {
    from = nanoTime;
  }

  /** Ends the main latency now rather than when the operation reports done. */
  public void end() {
    end = System.nanoTime();
  }

  /** Counts nothing for this operation (e.g. no previous release to measure from). */
  public void skip() {
    skip = true;
  }
}
