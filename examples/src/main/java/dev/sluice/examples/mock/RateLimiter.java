package dev.sluice.examples.mock;

import dev.sluice.examples.mock.MockOpenAi.Stats;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.HashMap;
import java.util.Map;

/**
 * OpenAI's admission rule, per project. Not thread-safe; {@link Engine} serializes calls.
 *
 * <p>Each project has one {@link Meter} per enabled dimension (RPM, TPM, and RPD/TPD when
 * non-zero), created full the first time the project is seen. A chat completion costs 1 in the
 * request dimensions and its admission charge (prompt + n × max_tokens) in the token dimensions. It
 * is admitted only if every meter can take it, and then all are debited together — there is no
 * partial debit, and no refund of unused completion budget.
 *
 * <p>A refused request is not free: OpenAI counts it toward the per-minute request limit, so it
 * takes one from the RPM meter (which may go into debt, at most one capacity deep). That is why a
 * fleet that retries blindly digs itself deeper and a coordinated fleet never should.
 *
 * <p>A charge above the TPM limit (or the TPD limit) can never be admitted; it is refused as
 * "Request too large" without looking at the meters, but still costs its RPM debit.
 */
final class RateLimiter {

  private static final Dimension[] DIMENSIONS = Dimension.values();

  private final long originNanos;
  private final Map<String, EnumMap<Dimension, Meter>> projects = new HashMap<>();
  /** Projects with limits of their own (registered projects); the others use {@link #limits}. */
  private final Map<String, Stats.Limits> own = new HashMap<>();
  private Stats.Limits limits;

  RateLimiter(Stats.Limits limits, long originNanos) {
    this.limits = limits;
    this.originNanos = originNanos;
  }

  Stats.Limits limits() {
    return limits;
  }

  Decision acquire(String project, long charge, long now) {
    Stats.Limits limits = limitsOf(project);
    if (limits.insufficientQuota()) {
      return new Decision(Decision.Kind.INSUFFICIENT_QUOTA, null, 0, 0, charge, 0, null);
    }
    EnumMap<Dimension, Meter> meters = meters(project, now);
    Dimension tooLargeFor =
        charge > limits.tpm()
            ? Dimension.TOKENS
            : limits.tpd() > 0 && charge > limits.tpd() ? Dimension.TOKENS_PER_DAY : null;
    if (tooLargeFor != null) {
      meters.get(Dimension.REQUESTS).takeRejected(now);
      Meter meter = meters.get(tooLargeFor);
      return new Decision(
          Decision.Kind.TOO_LARGE,
          tooLargeFor,
          meter.limit(),
          meter.limit() - meter.remaining(now),
          charge,
          0,
          headers(meters, now));
    }
    EnumSet<Dimension> failing = EnumSet.noneOf(Dimension.class);
    meters.forEach(
        (d, m) -> {
          if (!m.canAdmit(amount(d, charge), now)) {
            failing.add(d);
          }
        });
    if (failing.isEmpty()) {
      meters.forEach((d, m) -> m.take(amount(d, charge), now));
      return new Decision(Decision.Kind.ADMITTED, null, 0, 0, charge, 0, headers(meters, now));
    }
    meters.get(Dimension.REQUESTS).takeRejected(now);
    long wait = 0;
    Dimension binding = null;
    long bindingWait = -1;
    for (Map.Entry<Dimension, Meter> e : meters.entrySet()) {
      long w = e.getValue().waitNanos(amount(e.getKey(), charge), now);
      wait = Math.max(wait, w);
      if (failing.contains(e.getKey()) && w > bindingWait) {
        binding = e.getKey();
        bindingWait = w;
      }
    }
    Meter meter = meters.get(binding);
    return new Decision(
        Decision.Kind.RATE_LIMITED,
        binding,
        meter.limit(),
        meter.limit() - meter.remaining(now),
        amount(binding, charge),
        wait,
        headers(meters, now));
  }

  /** Forgets every project, so each starts again with full meters. */
  void reset() {
    projects.clear();
  }

  /**
   * Applies new limits. Meters whose dimension is unchanged are kept as they are; the others are
   * rebuilt at the same fill fraction (so a bucket half empty stays half empty: rescaled and
   * clipped, never refilled). A dimension switched on starts full; one switched off is dropped.
   */
  void setLimits(Stats.Limits next, long now) {
    Stats.Limits previous = limits;
    limits = next;
    projects.forEach((project, meters) -> {
      if (!own.containsKey(project)) {
        reshape(meters, previous, next, now);
      }
    });
  }

  /** The limits a project is held to: its own if it has them, else the shared ones. */
  Stats.Limits limitsOf(String project) {
    return own.getOrDefault(project, limits);
  }

  /**
   * Gives one project limits of its own, applied as {@link #setLimits} applies shared ones: a
   * meter whose limit changed keeps its fill fraction, so a cut takes effect on the next request.
   */
  void setProjectLimits(String project, Stats.Limits next, long now) {
    Stats.Limits previous = limitsOf(project);
    own.put(project, next);
    EnumMap<Dimension, Meter> meters = projects.get(project);
    if (meters != null) {
      reshape(meters, previous, next, now);
    }
  }

  private void reshape(EnumMap<Dimension, Meter> meters, Stats.Limits previous, Stats.Limits next, long now) {
    for (Dimension d : DIMENSIONS) {
      Meter old = meters.get(d);
      if (d.limit(next) == 0) {
        meters.remove(d);
      } else if (old == null) {
        meters.put(d, newMeter(next, d, 1.0, now));
      } else if (!sameShape(d, previous, next)) {
        meters.put(d, newMeter(next, d, old.fill(now), now));
      }
    }
  }

  /** The state of a project's meters, as the headers would show it. */
  Decision.RateHeaders peek(String project, long now) {
    return headers(meters(project, now), now);
  }

  Meter meter(String project, Dimension dimension, long now) {
    return meters(project, now).get(dimension);
  }

  private EnumMap<Dimension, Meter> meters(String project, long now) {
    return projects.computeIfAbsent(project, p -> newMeters(limitsOf(p), now));
  }

  private static boolean sameShape(Dimension d, Stats.Limits a, Stats.Limits b) {
    if (d.limit(a) != d.limit(b)) {
      return false;
    }
    return !d.perMinute()
        || (a.quantized() == b.quantized()
            && (a.quantized() || a.burstSeconds() == b.burstSeconds()));
  }

  private static long amount(Dimension d, long charge) {
    return d.countsRequests() ? 1 : charge;
  }

  private EnumMap<Dimension, Meter> newMeters(Stats.Limits limits, long now) {
    EnumMap<Dimension, Meter> meters = new EnumMap<>(Dimension.class);
    for (Dimension d : DIMENSIONS) {
      if (d.limit(limits) > 0) {
        meters.put(d, newMeter(limits, d, 1.0, now));
      }
    }
    return meters;
  }

  private Meter newMeter(Stats.Limits limits, Dimension d, double fill, long now) {
    long limit = d.limit(limits);
    if (!d.perMinute()) {
      return new TokenBucket(limit, d.windowNanos, limit, fill, now);
    }
    if (limits.quantized()) {
      return new WindowCounter(limit, originNanos, fill, now);
    }
    double capacity = Math.max(1.0, limit * limits.burstSeconds() / 60.0);
    return new TokenBucket(limit, d.windowNanos, capacity, fill, now);
  }

  private static Decision.RateHeaders headers(EnumMap<Dimension, Meter> meters, long now) {
    Meter requests = meters.get(Dimension.REQUESTS);
    Meter tokens = meters.get(Dimension.TOKENS);
    return new Decision.RateHeaders(
        requests.limit(),
        tokens.limit(),
        requests.remaining(now),
        tokens.remaining(now),
        requests.resetNanos(now),
        tokens.resetNanos(now));
  }
}
