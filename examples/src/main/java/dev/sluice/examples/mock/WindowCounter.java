package dev.sluice.examples.mock;

/**
 * The quantized alternative to {@link TokenBucket} for a per-minute limit: fixed one-second windows
 * counted from the mock's origin, each allowing {@code floor(limit / 60)} (at least 1). A request
 * fits if {@code used + amount <= allowance}, or if the window is untouched (so a request bigger
 * than one second's allowance, but not than the limit, still gets through once). This is the
 * "60,000 RPM enforced as 1,000 requests per second" behaviour: the allowance of an idle second is
 * lost, not saved.
 */
final class WindowCounter implements Meter {

  static final long WINDOW_NANOS = 1_000_000_000L;

  private final long limit;
  private final long allowance;
  private final long originNanos;
  private long window;
  private long used;

  WindowCounter(long limit, long originNanos, double fill, long now) {
    this.limit = limit;
    this.allowance = Math.max(1, limit / 60);
    this.originNanos = originNanos;
    this.window = windowOf(now);
    double clipped = Math.max(-1, Math.min(1, fill));
    this.used = Math.round((1 - clipped) * allowance);
  }

  @Override
  public long limit() {
    return limit;
  }

  private long windowOf(long now) {
    return Math.floorDiv(now - originNanos, WINDOW_NANOS);
  }

  private void roll(long now) {
    long current = windowOf(now);
    if (current != window) {
      window = current;
      used = 0;
    }
  }

  @Override
  public boolean canAdmit(long amount, long now) {
    roll(now);
    return used + amount <= allowance || (used == 0 && amount <= limit);
  }

  @Override
  public void take(long amount, long now) {
    roll(now);
    used += amount;
  }

  @Override
  public void takeRejected(long now) {
    roll(now);
    used = Math.min(used + 1, 2 * allowance);
  }

  @Override
  public long waitNanos(long amount, long now) {
    return canAdmit(amount, now) ? 0 : untilNextWindow(now);
  }

  private long untilNextWindow(long now) {
    return originNanos + (window + 1) * WINDOW_NANOS - now;
  }

  @Override
  public long remaining(long now) {
    roll(now);
    long left = Math.max(0, allowance - used);
    return Math.min(limit, (long) Math.floor((double) left * limit / allowance));
  }

  @Override
  public long resetNanos(long now) {
    roll(now);
    return used == 0 ? 0 : untilNextWindow(now);
  }

  @Override
  public double fill(long now) {
    roll(now);
    return Math.max(-1, 1 - (double) used / allowance);
  }
}
