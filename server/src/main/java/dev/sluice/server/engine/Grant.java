package dev.sluice.server.engine;

import java.util.Map;

/**
 * A granted acquire.
 *
 * @param permitId opaque id for release and renew
 * @param resource the resource
 * @param load what was charged, per dimension, including the {@code requests} default
 * @param leaseTtlNanos how long the permit's lease lasts without renewal
 * @param waitedNanos time spent in the waiting room
 * @param freshNanos how long after this answer left the engine the grant is still fresh, or -1
 *     when it never goes stale (it charges no rate). A grant that reaches its caller later than
 *     that would reach the upstream together with the grants made since: the caller confirms it
 *     with a retry of its request id, which forfeits it if it is late ({@link Engine#acquire})
 */
public record Grant(
    String permitId, String resource, Map<String, Long> load, long leaseTtlNanos, long waitedNanos,
    long freshNanos) {

  /** The same grant, handed over again {@code ageNanos} after it was made. */
  Grant handedOverAfter(long ageNanos) {
    return new Grant(permitId, resource, load, leaseTtlNanos, waitedNanos,
        freshNanos < 0 ? -1 : Math.max(0, freshNanos - ageNanos));
  }
}
