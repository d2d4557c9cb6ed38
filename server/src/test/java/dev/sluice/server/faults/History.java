package dev.sluice.server.faults;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.stream.Collectors;

/**
 * What one fault run saw, Jepsen-style, and the checker of guarantee 11 over it.
 *
 * <p>Three independent records: the workers' own (each acquire's start, deadline, end and
 * outcome, and when its permit was released), the upstream stand-in's arrival stamps ({@link
 * Recorder}, taken on arrival by its own handler) and the coordinators' grant and given-back counters sampled
 * in the test JVM. The faults are recorded with the moment each began and the moment the part it
 * broke was back ("back"). All stamps are {@code System.nanoTime()}.
 *
 * <p>{@link #check} returns every violation found, and {@link #report} prints the seed, the
 * fault schedule, the figures and the first violation of each kind.
 */
final class History {

  /** How an acquire ended, as the worker saw it. */
  enum Outcome {
    /** Granted: the worker holds a permit. */
    OK,
    /** The coordinator answered that the deadline passed: not granted, for sure. */
    TIMEOUT,
    /** Refused for a reason that says it was not granted (waiting room full, bad request...). */
    FAILED,
    /** Unavailable or cut off: it may have been granted without the worker hearing of it. */
    INDETERMINATE,
    /** Still waiting when the run was collected. */
    PENDING
  }

  /** One acquire; {@code end} and {@code released} are 0 while unknown. */
  record Acquire(int worker, String requestId, long start, long deadline, long end, Outcome outcome,
      String permitId, String error, long released) {}

  /** One call that reached the upstream stand-in. */
  record Arrival(long at, String permitId, String requestId) {}

  /**
   * The coordinators' counters, read between {@code before} and {@code after}: grants, grants
   * given back in full because their caller was gone (a cancel, a cut, a retry on another
   * node), grants forfeited because their caller came back too late; {@link #net} is what
   * reached or may have reached a caller.
   */
  record Sample(long before, long after, long granted, long givenBack, long forfeited, long expired) {
    long net() {
      return granted - givenBack - forfeited;
    }
  }

  /** A fault: what, when it began, when the part it broke was back. */
  record Fault(String what, long start, long back) {}

  final ConcurrentLinkedQueue<Acquire> acquires = new ConcurrentLinkedQueue<>();
  final ConcurrentLinkedQueue<Arrival> arrivals = new ConcurrentLinkedQueue<>();
  final ConcurrentLinkedQueue<Sample> samples = new ConcurrentLinkedQueue<>();
  final ConcurrentLinkedQueue<Fault> faults = new ConcurrentLinkedQueue<>();

  /** The limit under test and what the checker allows. */
  record Limit(double ratePerSecond, double burst, long concurrency, long jitterNanos) {
    double bound(long windowNanos) {
      return burst + ratePerSecond * (windowNanos + jitterNanos) / 1e9;
    }
  }

  static final long SEC = 1_000_000_000L;
  /** An acquire ends by its deadline plus this. */
  static final long DEADLINE_SLACK = SEC;
  /** After a fault, the rate must be used again from this long after the part is back... */
  static final long RECOVERY = 2 * SEC;
  /** ...over a window this long... */
  static final long RECOVERY_WINDOW = SEC;
  /** ...to at least this share. */
  static final double RECOVERY_SHARE = 0.95;

  long seed;
  long origin;
  long end;
  String setup = "";
  boolean counterMayReset;
  /**
   * The store replicates asynchronously (Sentinel, Cluster): a release acknowledged just before a
   * failover can be lost with the replication lag, and its lease then expires on the new primary
   * without any live holder behind it. Expired leases are reported, not held against the run.
   */
  boolean replicated;
  /** The cap found exceeded after a failover lost leases in the replication lag, for the report. */
  String replicationLoss;

  /** Milliseconds since the run's origin, for messages. */
  String ms(long nanos) {
    return String.format("%+.3f s", (nanos - origin) / 1e9);
  }

  /** The checker: every violation, in order of kind, then time. */
  List<String> check(Limit limit) {
    List<String> violations = new ArrayList<>();
    List<Long> arrivalTimes = arrivals.stream().map(Arrival::at).sorted().toList();
    window("arrivals at the upstream", arrivalTimes, limit, violations);
    coordinatorWindows(limit, violations);

    // No permit id handed to two callers; one permit per request id; no permit used twice.
    Map<String, Set<String>> callersByPermit = new HashMap<>();
    Map<String, Set<String>> permitsByRequest = new HashMap<>();
    for (Acquire a : acquires) {
      if (a.outcome() == Outcome.OK) {
        callersByPermit.computeIfAbsent(a.permitId(), k -> new HashSet<>()).add(a.requestId());
        permitsByRequest.computeIfAbsent(a.requestId(), k -> new HashSet<>()).add(a.permitId());
      }
    }
    callersByPermit.forEach((permit, callers) -> {
      if (callers.size() > 1) {
        violations.add("permit " + permit + " handed to " + callers.size() + " callers: " + callers);
      }
    });
    permitsByRequest.forEach((request, permits) -> {
      if (permits.size() > 1) {
        violations.add("request id " + request + " got " + permits.size() + " permits: " + permits);
      }
    });
    Map<String, Long> usesByPermit = arrivals.stream()
        .collect(Collectors.groupingBy(Arrival::permitId, Collectors.counting()));
    usesByPermit.forEach((permit, n) -> {
      if (n > 1) {
        violations.add("permit " + permit + " reached the upstream " + n + " times");
      }
    });

    // A retried request id gets one permit: the coordinators granted no more than the callers
    // got, could have got (indeterminate) or still wait for.
    long coordinator = coordinatorGrants();
    long callers = acquires.stream().filter(a -> a.outcome() == Outcome.OK || a.outcome() == Outcome.INDETERMINATE
        || a.outcome() == Outcome.PENDING).count();
    if (!counterMayReset && coordinator > callers) {
      violations.add("coordinator grants " + coordinator + " exceed the " + callers
          + " acquires that were or may have been granted: " + (coordinator - callers) + " granted twice or to no caller");
    }

    // No live holder's lease expires: every worker lives and releases (the long holders after
    // their lease, on renewals), so a lease that ran out is one a fault took, or a grant that
    // reached nobody and was never given back.
    long expired = leasesExpired();
    if (expired > 0 && !replicated) {
      violations.add(expired + " lease(s) expired: a live holder's renewals did not get through the"
          + " fault, or a grant reached nobody and was not given back; first seen at " + ms(firstExpiry()));
    }

    // Every acquire ends by its deadline + 1 s; none is lost to a fault it outlives.
    for (Acquire a : sortedAcquires()) {
      if (a.outcome() == Outcome.PENDING) {
        if (end > a.deadline() + DEADLINE_SLACK) {
          violations.add("acquire " + a.requestId() + " started " + ms(a.start()) + ", deadline "
              + ms(a.deadline()) + ": still waiting at " + ms(end) + " (hung)");
        }
        continue;
      }
      if (a.end() > a.deadline() + DEADLINE_SLACK) {
        violations.add("acquire " + a.requestId() + " started " + ms(a.start()) + " ended " + ms(a.end())
            + " (" + a.outcome() + (a.error() == null ? "" : " " + a.error()) + "), "
            + String.format("%.1f s", (a.end() - a.deadline()) / 1e9) + " after its deadline");
      }
      if (a.outcome() != Outcome.OK) {
        for (Fault f : faults) {
          // A timeout is the caller's own deadline: lost only if the store was back in time to
          // serve it (RECOVERY before its deadline), else the fault cost it its wait, as promised.
          long backBy = a.outcome() == Outcome.TIMEOUT ? f.back() + RECOVERY : f.back();
          if (a.deadline() > backBy && a.start() < f.back() + RECOVERY && a.end() > f.start()) {
            violations.add("lost waiter: acquire " + a.requestId() + " started " + ms(a.start())
                + ", deadline " + ms(a.deadline()) + ", after " + f.what() + " back at " + ms(f.back())
                + " ended " + ms(a.end()) + " " + a.outcome() + ": " + a.error());
            break;
          }
        }
      }
    }

    // The rate is used again from RECOVERY after the part is back.
    for (Fault f : faults) {
      long from = f.back() + RECOVERY;
      long to = from + RECOVERY_WINDOW;
      if (to > end) {
        violations.add(f.what() + ": the run ended before " + ms(to) + ", too soon to check recovery");
        continue;
      }
      Fault overlapping = faults.stream()
          .filter(o -> o != f && o.start() < to && o.back() > from).findFirst().orElse(null);
      if (overlapping != null) {
        // The harness's fault, not the system's: another fault breaks the window to measure.
        violations.add("schedule: " + overlapping.what() + " (" + ms(overlapping.start()) + " to "
            + ms(overlapping.back()) + ") overlaps the recovery window [" + ms(from) + ", " + ms(to)
            + ") of " + f.what() + "; space the faults further apart");
        continue;
      }
      long used = arrivalTimes.stream().filter(t -> t >= from && t < to).count();
      double need = RECOVERY_SHARE * limit.ratePerSecond() * RECOVERY_WINDOW / SEC;
      if (used < need) {
        violations.add(f.what() + ": only " + used + " arrivals in [" + ms(from) + ", " + ms(to)
            + ") against " + String.format("%.0f", need) + " (95 % of the rate), back at " + ms(f.back()));
      }
    }

    // Concurrency caps: what the workers held at once (a subset of what the coordinators count).
    if (limit.concurrency() > 0) {
      List<long[]> edges = new ArrayList<>();
      for (Acquire a : acquires) {
        if (a.outcome() == Outcome.OK) {
          edges.add(new long[] {a.end(), 1});
          edges.add(new long[] {a.released() == 0 ? end : a.released(), -1});
        }
      }
      edges.sort(Comparator.<long[]>comparingLong(e -> e[0]).thenComparingLong(e -> e[1]));
      long held = 0;
      for (long[] e : edges) {
        held += e[1];
        if (held > limit.concurrency()) {
          String what = "at " + ms(e[0]) + " workers held " + held + " permits, cap " + limit.concurrency();
          if (replicated) {
            // A failover can lose the leases granted in the replication lag, as it can lose
            // debits (docs/operations.md, "Known limits"): measured and stated, not held against
            // the run. An empty restart is held to the cap: holders renew their permits back.
            replicationLoss = what;
          } else {
            violations.add(what);
          }
          break;
        }
      }
    }
    return violations;
  }

  /** Every window [t_i, t_j] of sorted stamps holds at most the bound for its length. */
  private void window(String what, List<Long> times, Limit limit, List<String> violations) {
    for (int j = 0; j < times.size(); j++) {
      for (int i = 0; i < j; i++) {
        long n = j - i + 1;
        long length = times.get(j) - times.get(i);
        if (n > limit.bound(length)) {
          violations.add(String.format("%s: %d in the %.3f s window [%s, %s], bound %.1f"
                  + " (burst %.0f + rate %.0f/s x (window + %d ms jitter))", what, n, length / 1e9,
              ms(times.get(i)), ms(times.get(j)), limit.bound(length), limit.burst(),
              limit.ratePerSecond(), limit.jitterNanos() / 1_000_000));
          return; // the first window that breaks: the earliest end, its widest start
        }
      }
    }
  }

  /** The coordinators' counter between two samples, within the bound of the time between them. */
  private void coordinatorWindows(Limit limit, List<String> violations) {
    List<Sample> s = new ArrayList<>(samples);
    s.sort(Comparator.comparingLong(Sample::before));
    for (int j = 0; j < s.size(); j++) {
      for (int i = 0; i < j; i++) {
        long grants = s.get(j).net() - s.get(i).net();
        if (grants < 0) {
          continue; // the store's counter restarted (an empty restart)
        }
        boolean reset = false;
        for (int k = i + 1; k <= j && !reset; k++) {
          reset = s.get(k).granted() < s.get(k - 1).granted();
        }
        if (reset) {
          continue;
        }
        long length = s.get(j).after() - s.get(i).before();
        if (grants > limit.bound(length) + 1e-9 && grants > 0) {
          violations.add(String.format("coordinator grants: %d between samples at %s and %s (%.3f s), bound %.1f",
              grants, ms(s.get(i).before()), ms(s.get(j).after()), length / 1e9, limit.bound(length)));
          return;
        }
      }
    }
  }

  /** Leases that ran out: the sum of the counter's increases between samples. */
  long leasesExpired() {
    List<Sample> s = new ArrayList<>(samples);
    s.sort(Comparator.comparingLong(Sample::before));
    long expired = 0;
    for (int i = 1; i < s.size(); i++) {
      expired += Math.max(0, s.get(i).expired() - s.get(i - 1).expired());
    }
    return expired;
  }

  /** When the expired counter first rose: the sample that saw it. */
  long firstExpiry() {
    List<Sample> s = new ArrayList<>(samples);
    s.sort(Comparator.comparingLong(Sample::before));
    for (int i = 1; i < s.size(); i++) {
      if (s.get(i).expired() > s.get(i - 1).expired()) {
        return s.get(i).after();
      }
    }
    return origin;
  }

  /** The sum of the net grants' increases between samples (a counter reset adds nothing). */
  long coordinatorGrants() {
    List<Sample> s = new ArrayList<>(samples);
    s.sort(Comparator.comparingLong(Sample::before));
    long grants = 0;
    for (int i = 1; i < s.size(); i++) {
      Sample a = s.get(i - 1);
      Sample b = s.get(i);
      if (b.granted() >= a.granted()) { // else the store's counters restarted: nothing to add
        grants += (b.granted() - a.granted()) - Math.max(0, b.givenBack() - a.givenBack())
            - Math.max(0, b.forfeited() - a.forfeited());
      }
    }
    return grants;
  }

  List<Acquire> sortedAcquires() {
    List<Acquire> all = new ArrayList<>(acquires);
    all.sort(Comparator.comparingLong(Acquire::start));
    return all;
  }

  /** Counts by outcome, arrivals, coordinator grants, the longest arrival gap, recovery per fault. */
  String figures(Limit limit) {
    Map<Outcome, Long> byOutcome = acquires.stream()
        .collect(Collectors.groupingBy(Acquire::outcome, Collectors.counting()));
    Map<String, Long> errors = acquires.stream().filter(a -> a.error() != null)
        .collect(Collectors.groupingBy(a -> a.error().replaceAll("[0-9a-f]{8,}|w[0-9]+-[0-9]+", "#")
            .replaceAll("(.{0,110}).*", "$1"), Collectors.counting()));
    List<Long> times = arrivals.stream().map(Arrival::at).sorted().toList();
    long gap = 0;
    long gapAt = origin;
    for (int i = 1; i < times.size(); i++) {
      if (times.get(i) - times.get(i - 1) > gap) {
        gap = times.get(i) - times.get(i - 1);
        gapAt = times.get(i - 1);
      }
    }
    long worstSecond = 0;
    for (int i = 0, j = 0; j < times.size(); j++) {
      while (times.get(j) - times.get(i) >= SEC) {
        i++;
      }
      worstSecond = Math.max(worstSecond, j - i + 1);
    }
    long grants = coordinatorGrants();
    StringBuilder b = new StringBuilder();
    b.append(String.format("acquires %s; arrivals %d (%.1f/s over %.1f s), densest 1 s %d (burst + rate %.0f;"
            + " checked against %.0f with the %d ms jitter); coordinator grants %d; leases expired %d; longest arrival"
            + " gap %.2f s from %s", byOutcome, times.size(), times.size() / ((end - origin) / 1e9), (end - origin) / 1e9,
        worstSecond, limit.bound(SEC) - limit.ratePerSecond() * limit.jitterNanos() / 1e9, limit.bound(SEC),
        limit.jitterNanos() / 1_000_000, grants, leasesExpired(), gap / 1e9, ms(gapAt)));
    for (Fault f : faults) {
      long from = f.back() + RECOVERY;
      long after = times.stream().filter(t -> t >= from && t < from + RECOVERY_WINDOW).count();
      long firstAfter = times.stream().filter(t -> t >= f.back()).findFirst().orElse(0L);
      b.append(String.format("%n  %s from %s back %s: first arrival %s after back, %d arrivals in the"
              + " 1 s from back+2 s", f.what(), ms(f.start()), ms(f.back()),
          firstAfter == 0 ? "never" : String.format("%.2f s", (firstAfter - f.back()) / 1e9), after));
      if (after < RECOVERY_SHARE * limit.ratePerSecond() * RECOVERY_WINDOW / SEC) {
        // Short: how the calls came back, per 250 ms from the fault's start to the window's end.
        b.append("\n    arrivals per 250 ms from the fault's start:");
        for (long t = f.start(); t < from + RECOVERY_WINDOW; t += SEC / 4) {
          long lo = t;
          b.append(' ').append(times.stream().filter(x -> x >= lo && x < lo + SEC / 4).count());
        }
        b.append("; acquires still waiting at back+2 s: ").append(acquires.stream()
            .filter(a -> a.start() < from && (a.outcome() == Outcome.PENDING || a.end() > from)).count());
      }
    }
    errors.forEach((e, n) -> b.append(String.format("%n  %d x %s", n, e)));
    if (replicationLoss != null) {
      b.append("\n  leases lost with the store's data (a known limit, measured, not a violation): ")
          .append(replicationLoss);
    }
    return b.toString();
  }

  /** Seed, setup, schedule, figures and the first violation of each check. */
  String report(String name, Limit limit, List<String> violations) {
    StringBuilder b = new StringBuilder();
    b.append(name).append(": seed ").append(seed).append(", ").append(setup).append('\n');
    b.append("  schedule:");
    faults.stream().sorted(Comparator.comparingLong(Fault::start)).forEach(f ->
        b.append(" [").append(f.what()).append(" at ").append(ms(f.start())).append(", back ")
            .append(ms(f.back())).append(']'));
    b.append("\n  ").append(figures(limit)).append('\n');
    if (violations.isEmpty()) {
      b.append("  history clean\n");
    } else {
      b.append("  ").append(violations.size()).append(" violation(s); first of each kind:\n");
      Set<String> kinds = new HashSet<>();
      for (String v : violations) {
        String kind = v.replaceAll("[0-9].*", "");
        if (kinds.add(kind)) {
          b.append("  - ").append(v).append('\n');
        }
      }
    }
    return b.toString();
  }
}
