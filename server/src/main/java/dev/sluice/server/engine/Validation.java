package dev.sluice.server.engine;

import dev.sluice.server.config.ServerConfigKeys.Limits;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/** Checks of names, limits and loads. Every message says what was wrong and how to fix it. */
public final class Validation {

  /** Largest amount, burst or load value accepted: far above any real quota, far from overflow. */
  public static final long MAX_UNITS = 1_000_000_000_000_000L;

  public static final int MAX_DIMENSIONS = 16;
  public static final Duration MIN_PERIOD = Duration.ofMillis(1);
  public static final Duration MAX_PERIOD = Duration.ofDays(7);

  /**
   * The jitter a newly set limit gets when none is given: calls may reach the upstream this
   * much later than their grant. A limit stored without one (before jitter existed) keeps 0.
   */
  public static final Duration DEFAULT_JITTER = Duration.ofMillis(20);

  /** The most jitter a limit may have: later than this, a call is not jitter but a delay. */
  public static final Duration MAX_JITTER = Duration.ofMinutes(1);

  private static final Pattern DIMENSION = Pattern.compile("[A-Za-z0-9._-]{1,64}");

  private Validation() {}

  /**
   * Whether {@code s} is 1 to {@code max} characters of A-Z a-z 0-9 . _ - and the given extras.
   * A loop, not a regex: names and request ids are checked on every call of the hot path.
   */
  private static boolean plainName(String s, int max, boolean colon, boolean slash) {
    int n = s.length();
    if (n == 0 || n > max) {
      return false;
    }
    for (int i = 0; i < n; i++) {
      char c = s.charAt(i);
      boolean ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-' || (colon && c == ':') || (slash && c == '/');
      if (!ok) {
        return false;
      }
    }
    return true;
  }

  /**
   * At most {@code max} characters of a name a client sent, for an error message: a client may
   * send megabytes, and an error must not echo them back (issue 26).
   */
  public static String shown(String s, int max) {
    return s == null || s.length() <= max ? s : s.substring(0, max) + "... (" + s.length() + " characters)";
  }

  /** Refuses a resource name outside 1-200 characters of {@code [A-Za-z0-9._:/-]}. */
  public static String resource(String name) {
    if (name == null || name.isEmpty()) {
      throw EngineException.invalid("resource name is empty: name the quota, e.g. 'openai'");
    }
    if (!plainName(name, 200, true, true)) {
      String shown = name.length() > 60 ? name.substring(0, 60) + "..." : name;
      throw EngineException.invalid(
          "resource name '" + shown + "' is invalid: use 1-200 characters of A-Z a-z 0-9 . _ : / -"
              + " (length " + name.length() + ")");
    }
    return name;
  }

  /** Refuses a request id outside 1-64 characters of {@code [A-Za-z0-9._:-]}. */
  static String requestId(String id) {
    if (id == null || !plainName(id, 64, true, false)) {
      String shown = id.length() > 70 ? id.substring(0, 70) + "..." : id;
      throw EngineException.invalid(
          "request id '" + shown + "' is invalid: use 1-64 characters of A-Z a-z 0-9 . _ : -,"
              + " e.g. a UUID");
    }
    return id;
  }

  static String dimension(String name) {
    if (name == null || !DIMENSION.matcher(name).matches()) {
      throw EngineException.invalid(
          "dimension name '" + shown(name, 64) + "' is invalid: use 1-64 characters of A-Z a-z 0-9 . _ -,"
              + " e.g. 'requests' or 'tokens'");
    }
    return name;
  }

  /**
   * The jitter given, checked against every rate; null means the default: {@link
   * #DEFAULT_JITTER}, or half the shortest burst refill when that is less (so a limit valid
   * without jitter stays valid). The margin it costs is in {@link RateSpec}.
   */
  static Duration jitter(Duration given, List<RateSpec> rates) {
    if (given == null) {
      Duration d = DEFAULT_JITTER;
      for (RateSpec r : rates) {
        Duration half = r.burstRefill().dividedBy(2);
        if (half.compareTo(d) < 0) {
          d = half;
        }
      }
      return d;
    }
    if (given.isNegative()) {
      throw EngineException.invalid(
          "jitter " + Durations.format(given) + " is negative: use 0 for no allowance, or how"
              + " late a call may reach the upstream, e.g. 20ms");
    }
    if (given.compareTo(MAX_JITTER) > 0) {
      throw EngineException.invalid(
          "jitter " + Durations.format(given) + " is more than " + Durations.format(MAX_JITTER)
              + ": a call that late is not jitter; use at most " + Durations.format(MAX_JITTER)
              + ", e.g. 20ms");
    }
    for (RateSpec r : rates) {
      Duration refill = r.burstRefill();
      if (!given.isZero() && given.compareTo(refill) >= 0) {
        throw EngineException.invalid(
            "jitter " + Durations.format(given) + " is not shorter than the time the " + r.name()
                + " burst takes to refill (" + Durations.format(refill) + " at " + r.describe() + "): a call that late"
                + " would land in the next sub-window; "
                + (refill.isZero() ? "use 0" : "use a jitter under " + Durations.format(refill))
                + ", or raise the burst");
      }
    }
    return given;
  }

  /**
   * Checks a limit and fills in defaults (burst, waiting room, lease, jitter).
   *
   * @param defaultMaxWaiting used when {@code maxWaiting} is 0
   * @param defaultLease used when {@code leaseTtl} is null or zero
   */
  public static LimitSpec limit(LimitSpec in, int defaultMaxWaiting, Duration defaultLease) {
    return limit(in, defaultMaxWaiting, defaultLease, false);
  }

  /** {@link #limit(LimitSpec, int, Duration)}; for a template, its name is a checked pattern. */
  static LimitSpec limit(LimitSpec in, int defaultMaxWaiting, Duration defaultLease, boolean template) {
    String resource = template ? Templates.pattern(in.resource()) : resource(in.resource());
    if (in.isPool()) {
      return pool(resource, in).withOwner(in.owner());
    }
    if (in.rates().isEmpty() && in.concurrency() == 0 && in.holds().isEmpty()) {
      throw EngineException.invalid(
          "limit for '" + resource + "' has no rate and no concurrency cap: add --rate"
              + " requests=N/min, --concurrency N or --hold DIM=AMOUNT");
    }
    if (in.rates().size() > MAX_DIMENSIONS) {
      throw EngineException.invalid(
          "limit for '" + resource + "' has " + in.rates().size() + " rate dimensions: at most "
              + MAX_DIMENSIONS + " are allowed");
    }
    List<RateSpec> rates = rates(resource, in.rates(), "limit for '" + resource + "'");
    if (in.concurrency() < 0 || in.concurrency() > MAX_UNITS) {
      throw EngineException.invalid(
          "concurrency " + in.concurrency() + " is out of range: use 0 (no cap) to " + MAX_UNITS);
    }
    int maxWaiting = in.maxWaiting() == 0 ? defaultMaxWaiting : in.maxWaiting();
    if (Limits.MAX_WAITING.problem(maxWaiting) != null) {
      // A limit's own value: 0 is allowed too, so the message says so.
      throw EngineException.invalid(Limits.MAX_WAITING.problem(in.maxWaiting()) + ", or 0 for the server default");
    }
    Duration lease =
        in.leaseTtl() == null || in.leaseTtl().isZero() ? defaultLease : in.leaseTtl();
    String leaseProblem = Limits.LEASE_TTL.problem(lease);
    if (leaseProblem != null) {
      throw EngineException.invalid(leaseProblem);
    }
    TenantPolicy tenants = tenants(resource, rates, in.tenants());
    LimitSpec out = new LimitSpec(resource, rates, in.concurrency(), maxWaiting, lease, jitter(in.jitter(), rates), tenants);
    out = out.withOwner(in.owner()).withHolds(holds(resource, rates, in.holds()));
    return in.learn() == null ? out : out.withLearn(LearnSpec.check(in.learn(), resource, rates));
  }

  /**
   * Checks held dimensions: valid names, none also a rate (a dimension either refills with time
   * or comes back when its permit ends, not both), amounts 1 to {@link #MAX_UNITS}, at most
   * {@link #MAX_DIMENSIONS}.
   */
  static Map<String, Long> holds(String resource, List<RateSpec> rates, Map<String, Long> holds) {
    if (holds.size() > MAX_DIMENSIONS) {
      throw EngineException.invalid("limit for '" + resource + "' has " + holds.size() + " held dimensions: at most "
          + MAX_DIMENSIONS + " are allowed");
    }
    for (Map.Entry<String, Long> e : holds.entrySet()) {
      String dim = dimension(e.getKey());
      if (dim.equals("requests")) {
        throw EngineException.invalid("held dimension 'requests' on '" + resource + "': every call costs one request,"
            + " so a cap on requests held at once is --concurrency N; hold another dimension");
      }
      for (RateSpec r : rates) {
        if (r.name().equals(dim)) {
          throw EngineException.invalid("dimension '" + dim + "' of '" + resource + "' is both a rate and held:"
              + " a rate refills with time, a held amount comes back when its permit ends; keep one of them");
        }
      }
      long v = e.getValue() == null ? 0 : e.getValue();
      if (v < 1 || v > MAX_UNITS) {
        throw EngineException.invalid("held " + dim + "=" + v + " on '" + resource + "' is out of range: use 1 to "
            + MAX_UNITS + " (the most held by the permits alive at once)");
      }
    }
    return holds;
  }

  /** The most members a pool may have: each pool acquire waits in every member's room. */
  public static final int MAX_POOL_MEMBERS = 16;

  /**
   * A pool's own checks; that its members exist and are not pools is for {@link PoolEngine},
   * which can ask the store.
   */
  private static LimitSpec pool(String pool, LimitSpec in) {
    if (!in.rates().isEmpty() || in.concurrency() != 0 || in.learn() != null || !in.tenants().equals(TenantPolicy.NONE)
        || !in.holds().isEmpty()) {
      throw EngineException.invalid("pool '" + pool + "' has rates, a concurrency cap, held dimensions, tenants or learning of its own:"
          + " a pool grants from its members' limits, so set those on the members (sluice limit set MEMBER ...)");
    }
    if (in.members().size() > MAX_POOL_MEMBERS) {
      throw EngineException.invalid("pool '" + pool + "' has " + in.members().size() + " members: at most "
          + MAX_POOL_MEMBERS + " are allowed (each acquire waits at every member)");
    }
    Set<String> seen = new HashSet<>();
    for (String m : in.members()) {
      String member = resource(m);
      if (member.equals(pool)) {
        throw EngineException.invalid("pool '" + pool + "' lists itself as a member: list the resources it grants from");
      }
      if (!seen.add(member)) {
        throw EngineException.invalid("pool '" + pool + "' lists member '" + member + "' twice: give each member once");
      }
    }
    return LimitSpec.pool(pool, in.members());
  }

  /** Checks rate dimensions and fills in default bursts; {@code where} names them in errors. */
  private static List<RateSpec> rates(String resource, List<RateSpec> in, String where) {
    Set<String> seen = new HashSet<>();
    List<RateSpec> rates = new ArrayList<>();
    for (RateSpec r : in) {
      String dim = dimension(r.name());
      if (!seen.add(dim)) {
        throw EngineException.invalid(
            "dimension '" + dim + "' appears twice in the " + where + ": give each dimension once");
      }
      if (r.amount() < 1 || r.amount() > MAX_UNITS) {
        throw EngineException.invalid(
            "rate " + dim + " amount " + r.amount() + " is out of range: use 1 to " + MAX_UNITS);
      }
      if (r.period() == null
          || r.period().compareTo(MIN_PERIOD) < 0
          || r.period().compareTo(MAX_PERIOD) > 0) {
        throw EngineException.invalid(
            "rate " + dim + " period " + r.period() + " is out of range: use 1ms to 7d");
      }
      long burst = r.burst() == 0 ? RateSpec.defaultBurst(r.amount(), r.period()) : r.burst();
      if (burst < 1 || burst > MAX_UNITS) {
        throw EngineException.invalid(
            "rate " + dim + " burst " + r.burst() + " is out of range: use 1 to " + MAX_UNITS
                + ", or 0 for the default (one second's worth)");
      }
      rates.add(new RateSpec(dim, r.amount(), r.period(), burst));
    }
    return rates;
  }

  /** Most tenants one limit may name in its shares, floors and caps. */
  public static final int MAX_POLICY_TENANTS = 1000;

  /** Largest weight a tenant may have: far above any real ratio between teams. */
  public static final double MAX_WEIGHT = 1_000_000;

  /** Refuses a tenant name outside 1-64 characters of {@code [A-Za-z0-9._:-]}. */
  public static String tenant(String name) {
    if (name == null || !plainName(name, 64, true, false)) {
      throw EngineException.invalid(
          "tenant name '" + shown(name, 64) + "' is invalid: use 1-64 characters of A-Z a-z 0-9 . _ : -,"
              + " e.g. 'search'");
    }
    return name;
  }

  /**
   * Checks a limit's tenant policy against its rates: weights in (0, 1e6], floors in (0, 100 %]
   * summing to at most 100 %, caps only on the limit's own dimensions and never above them.
   */
  static TenantPolicy tenants(String resource, List<RateSpec> limitRates, TenantPolicy in) {
    if (in == null || in.isEmpty()) {
      return TenantPolicy.NONE;
    }
    Set<String> named = new HashSet<>();
    named.addAll(in.weights().keySet());
    named.addAll(in.floors().keySet());
    named.addAll(in.caps().keySet());
    if (named.size() > MAX_POLICY_TENANTS) {
      throw EngineException.invalid("limit for '" + resource + "' names " + named.size()
          + " tenants in its shares, floors and caps: at most " + MAX_POLICY_TENANTS
          + "; unnamed tenants weigh 1, so name only those that differ");
    }
    named.forEach(Validation::tenant);
    if (named.contains(TenantPolicy.OTHER)) {
      throw EngineException.invalid("limit for '" + resource + "' names a tenant '" + TenantPolicy.OTHER + "': stats and"
          + " metrics count every tenant the policy does not name as '" + TenantPolicy.OTHER + "', so give that"
          + " tenant another name");
    }
    in.weights().forEach((t, w) -> {
      if (!(w > 0) || w > MAX_WEIGHT) {
        throw EngineException.invalid("share " + t + "=" + w + " is out of range: a weight is above 0"
            + " and at most " + (long) MAX_WEIGHT + " (unnamed tenants weigh 1)");
      }
    });
    double floors = 0;
    for (Map.Entry<String, Double> f : in.floors().entrySet()) {
      double v = f.getValue();
      if (!(v > 0) || v > 1) {
        throw EngineException.invalid("floor " + f.getKey() + "=" + percent(v) + " is out of range: use"
            + " more than 0 % and at most 100 %");
      }
      floors += v;
    }
    if (floors > 1 + 1e-9) {
      throw EngineException.invalid("the floors of '" + resource + "' sum to " + percent(floors)
          + ": together they can guarantee at most 100 %; lower some");
    }
    Map<String, List<RateSpec>> caps = new java.util.TreeMap<>();
    for (Map.Entry<String, List<RateSpec>> c : in.caps().entrySet()) {
      String t = c.getKey();
      List<RateSpec> own = rates(resource, c.getValue(), "cap of tenant '" + t + "'");
      if (own.isEmpty()) {
        throw EngineException.invalid("the cap of tenant '" + t + "' has no rate: give one, e.g. "
            + t + "=tokens=1000/min");
      }
      for (RateSpec r : own) {
        RateSpec of = null;
        for (RateSpec l : limitRates) {
          if (l.name().equals(r.name())) {
            of = l;
          }
        }
        if (of == null) {
          throw EngineException.invalid("the cap of tenant '" + t + "' is on dimension '" + r.name()
              + "', which the limit of '" + resource + "' does not have: cap one of its dimensions ("
              + limitRates.stream().map(RateSpec::name).collect(java.util.stream.Collectors.joining(", ")) + ")");
        }
        if (r.perMicro() > of.perMicro() || r.burst() > of.burst()) {
          throw EngineException.invalid("the cap of tenant '" + t + "' on " + r.name() + " ("
              + r.amount() + " per " + Durations.format(r.period()) + ", burst " + r.burst()
              + ") is above the quota itself (" + of.amount() + " per " + Durations.format(of.period())
              + ", burst " + of.burst() + "): a cap is a ceiling inside the quota; lower it");
        }
      }
      caps.put(t, own);
    }
    return new TenantPolicy(in.weights(), in.floors(), caps);
  }

  private static String percent(double fraction) {
    return String.format(java.util.Locale.ROOT, "%.4g %%", fraction * 100);
  }

  /**
   * Checks a load against a limit and applies the {@code requests} default. Refuses negative
   * values, a zero total, unknown dimensions and any value above its dimension's burst.
   */
  static Map<String, Long> load(LimitSpec limit, Map<String, Long> load) {
    Map<String, Long> out = new LinkedHashMap<>();
    // Whether the call costs anything; a sum of up to 17 values of 1e18 would overflow a long.
    boolean costs = false;
    for (Map.Entry<String, Long> e : load.entrySet()) {
      String dim = e.getKey();
      long v = e.getValue();
      RateSpec rate = limit.rate(dim);
      Long held = limit.holds().get(dim);
      if (rate == null && held == null && !dim.equals("requests")) {
        throw EngineException.invalid(
            "load names dimension '" + shown(dim, 64) + "' but resource '" + limit.resource()
                + "' limits only " + dimensionNames(limit) + ": drop it or add it to the limit");
      }
      if (v < 0 || v > MAX_UNITS) {
        throw EngineException.invalid(
            "load " + shown(dim, 64) + "=" + v + " is out of range: use 0 to " + MAX_UNITS);
      }
      if (held != null) {
        if (v > held) {
          throw EngineException.invalid(
              "load " + dim + "=" + v + " can never fit resource '" + limit.resource() + "': it may hold only "
                  + held + " " + dim + " at once; split the call or raise the cap (--hold " + dim + "=N)");
        }
        costs |= v > 0;
        out.put(dim, v);
        continue;
      }
      if (rate == null) {
        // "requests" is every call's implicit dimension: fine to name without a bucket for it.
        costs |= v > 0;
        continue;
      }
      if (v > rate.burst()) {
        throw EngineException.invalid(
            "load " + dim + "=" + v + " can never fit resource '" + limit.resource()
                + "': its burst is " + rate.burst() + "; split the call or raise the burst");
      }
      costs |= v > 0;
      out.put(dim, v);
    }
    if (!load.containsKey("requests")) {
      // The default costs one request; it only charges a bucket if there is one.
      costs = true;
      if (limit.rate("requests") != null) {
        out.put("requests", 1L);
      }
    }
    if (!costs) {
      throw EngineException.invalid(
          "load for '" + limit.resource() + "' is zero: every call must cost something, e.g."
              + " requests=1");
    }
    return out;
  }

  /**
   * Checks a settle or remaining-counter map: values in range and, unless {@code lenient},
   * known dimensions ({@code requests} is always known). Remaining counters are lenient: they
   * describe the upstream, which may count dimensions this limit does not.
   */
  static void usage(LimitSpec limit, Map<String, Long> usage, String what, boolean lenient) {
    for (Map.Entry<String, Long> e : usage.entrySet()) {
      if (!lenient && limit.rate(e.getKey()) == null && !limit.holds().containsKey(e.getKey())
          && !e.getKey().equals("requests")) {
        throw EngineException.invalid(
            what + " names dimension '" + shown(e.getKey(), 64) + "' but resource '" + limit.resource()
                + "' limits only " + dimensionNames(limit) + ": drop it or add it to the limit");
      }
      long v = e.getValue();
      if (v < 0 || v > MAX_UNITS) {
        throw EngineException.invalid(
            what + " " + e.getKey() + "=" + v + " is out of range: use 0 to " + MAX_UNITS);
      }
    }
  }

  private static List<String> dimensionNames(LimitSpec limit) {
    List<String> names = new java.util.ArrayList<>(limit.rates().stream().map(RateSpec::name).toList());
    names.addAll(limit.holds().keySet());
    return names;
  }
}
