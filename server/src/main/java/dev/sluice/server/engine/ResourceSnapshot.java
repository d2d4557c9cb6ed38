package dev.sluice.server.engine;

import java.util.Map;

/**
 * Live state and counters of one resource, read atomically.
 *
 * @param limit the configured limit
 * @param available tokens available now per dimension; negative while in debt
 * @param inFlight permits with an unexpired lease
 * @param waiting waiters per lane
 * @param paused whether grants are paused
 * @param pausedForNanos time left on the pause; -1 when paused until resumed
 * @param pause who holds the pause (an admin, an upstream throttle report) and for how long
 * @param granted grants since start
 * @param timedOut acquires that reached their deadline
 * @param cancelled acquires cancelled by the caller
 * @param givenBack grants that never reached their caller (it was gone: cancelled, cut off, or
 *     retried elsewhere) and were returned in full
 * @param forfeited grants whose caller came back for them too late (a retry after a cut, see
 *     {@code Engine#acquire}): not handed over, their tokens stay spent; {@code granted -
 *     givenBack - forfeited} reached a caller
 * @param expired permits whose lease ran out before they were released: a holder that died, a
 *     call longer than its lease that was not renewed, or a grant nobody heard of
 * @param rejected refusals by reason ({@code invalid}, {@code waiting_room_full}, ...)
 * @param waitP50Seconds median wait of recent grants
 * @param waitP99Seconds 99th percentile wait of recent grants
 * @param throttleReports upstream throttling reports received
 * @param lastThrottleAgoNanos time since the last of them; -1 when none was received
 * @param used tokens taken per dimension net of refunds, a counter (it restarts from zero when an
 *     idle resource's live state was let go); its rate over the limit's rate is utilization
 * @param tenants once tenants share the resource: per tenant named in the limit's policy, plus
 *     {@code default} and {@code other} (every unnamed tenant together, so the cardinality
 *     stays bounded), its waiters (while tenants wait) and what it used (granted, then settled
 *     or given back: a counter, which restarts like {@code used})
 */
public record ResourceSnapshot(
    LimitSpec limit,
    Map<String, Double> available,
    long inFlight,
    Map<Lane, Integer> waiting,
    boolean paused,
    long pausedForNanos,
    PauseState pause,
    long granted,
    long timedOut,
    long cancelled,
    long givenBack,
    long forfeited,
    long expired,
    Map<String, Long> rejected,
    double waitP50Seconds,
    double waitP99Seconds,
    long throttleReports,
    long lastThrottleAgoNanos,
    Map<String, Double> used,
    Map<String, TenantUse> tenants) {

  /** One tenant's part: waiters now, and units used per dimension (a counter). */
  public record TenantUse(int waiting, Map<String, Double> used) {}

  /** Without tenants. */
  public ResourceSnapshot(
      LimitSpec limit, Map<String, Double> available, long inFlight, Map<Lane, Integer> waiting,
      boolean paused, long pausedForNanos, PauseState pause, long granted, long timedOut, long cancelled,
      long givenBack, long forfeited, long expired, Map<String, Long> rejected, double waitP50Seconds,
      double waitP99Seconds, long throttleReports, long lastThrottleAgoNanos, Map<String, Double> used) {
    this(limit, available, inFlight, waiting, paused, pausedForNanos, pause, granted, timedOut, cancelled,
        givenBack, forfeited, expired, rejected, waitP50Seconds, waitP99Seconds, throttleReports,
        lastThrottleAgoNanos, used, Map.of());
  }
}
