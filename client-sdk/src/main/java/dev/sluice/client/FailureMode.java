package dev.sluice.client;

import java.util.Locale;

/**
 * What a {@link SluiceClient} does with an acquire while it is <em>degraded</em>: no coordinator
 * node answers (see {@link SluiceClient#isDegraded()} for the exact rule). Set it with
 * {@link SluiceClient.Builder#failureMode}; the default is {@link #FAIL_CLOSED}.
 *
 * <p>Whatever the mode, each acquire while degraded first tries the cluster (that fails at once
 * while no node is up), so the client leaves degraded mode by itself when a node is back. Only the
 * acquire's fallback differs:
 *
 * <ul>
 *   <li>{@link #FAIL_CLOSED}: no fallback. The acquire keeps retrying the cluster until its
 *       timeout, then throws {@link SluiceUnavailableException}. The upstream is never called
 *       without a grant.
 *   <li>{@link #FAIL_OPEN}: the acquire is granted at once by the client itself, without any
 *       limit; closing or settling such a permit does nothing. Choose it only when an unprotected
 *       upstream is better than no upstream.
 *   <li>{@link #local(double)}: a local limiter per resource at a fixed share of the resource's
 *       last known limit (every rate and the concurrency cap multiplied by {@code share}; the cap
 *       rounded down, at least 1). With N client processes, a share of 1/N keeps the total at
 *       the limit. A resource whose limit the client has not learnt yet (it learns it after its
 *       first grant from the cluster) fails closed.
 * </ul>
 *
 * <p>Immutable; compare with {@code equals}.
 */
public final class FailureMode {

  /** Retry until the acquire's timeout, then throw {@link SluiceUnavailableException}. The default. */
  public static final FailureMode FAIL_CLOSED = new FailureMode(Kind.FAIL_CLOSED, 0);

  /** Grant at once, locally and without limit; the permit's close and settle do nothing. */
  public static final FailureMode FAIL_OPEN = new FailureMode(Kind.FAIL_OPEN, 0);

  enum Kind { FAIL_CLOSED, FAIL_OPEN, LOCAL }

  private final Kind kind;
  private final double share;

  private FailureMode(Kind kind, double share) {
    this.kind = kind;
    this.share = share;
  }

  /**
   * A local limiter at {@code share} of each resource's last known limit: rates times
   * {@code share}, concurrency cap times {@code share} rounded down but at least 1. The share is
   * explicit so the limit is never silently multiplied: with N client processes, use at most 1/N.
   *
   * @param share in (0, 1], e.g. 0.25 for one of four worker processes
   * @throws IllegalArgumentException if {@code share} is not in (0, 1]
   */
  public static FailureMode local(double share) {
    if (!(share > 0 && share <= 1)) {
      throw new IllegalArgumentException("local share is " + share + "; it must be in (0, 1], the fraction of"
          + " the limit this client may use alone, e.g. 0.25 for one of four worker processes");
    }
    return new FailureMode(Kind.LOCAL, share);
  }

  Kind kind() {
    return kind;
  }

  /** The local share; 0 unless {@link Kind#LOCAL}. */
  double share() {
    return share;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof FailureMode m && m.kind == kind && Double.compare(m.share, share) == 0;
  }

  @Override
  public int hashCode() {
    return kind.hashCode() * 31 + Double.hashCode(share);
  }

  /** {@code FAIL_CLOSED}, {@code FAIL_OPEN} or {@code LOCAL(0.25)}. */
  @Override
  public String toString() {
    return kind == Kind.LOCAL ? "LOCAL(" + formatShare(share) + ")" : kind.name();
  }

  static String formatShare(double share) {
    String s = String.format(Locale.ROOT, "%.4f", share).replaceAll("0+$", "");
    return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
  }
}
