package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;

import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletionException;

/**
 * Runs one script of steps against two engines at once and compares, after every step, what
 * each can be seen to do:
 *
 * <ul>
 *   <li>the step's own outcome: an acquire refused (and why), queued, or granted at once; a
 *       release, renew or cancel that found its permit or waiter or not (so lease expiries);
 *       what a report or pause answers;
 *   <li>the acquires that ended during the step, in order: granted (with the load charged, the
 *       time waited and which permit: a retried request id must get the permit it had), timed
 *       out, cancelled, refused;
 *   <li>bucket levels per dimension (within 1e-6 of the burst), waiting counts per lane,
 *       permits in flight, pause state and time left.
 * </ul>
 *
 * Both engines run on their own {@link FakeClock}, advanced by the same steps. Everything is
 * keyed by the script's own call numbers, never by the engines' permit ids.
 */
final class Lockstep {

  private Lockstep() {}

  static final Duration LEASE = Duration.ofSeconds(3);
  /** {@code -Dsluice.diff.trace=true} prints what each side showed at every step. */
  private static final boolean TRACE = Boolean.getBoolean("sluice.diff.trace");

  // ------------------------------------------------------------------------------- the script

  /** The limit a script starts from; later {@link Step.SetLimit}s keep period and waiting room. */
  record Setup(
      long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting,
      int policy, long jitterNanos, boolean pooled, boolean templated, long holdCap) {

    /** Without a template or a held dimension (scripts found before they existed). */
    Setup(long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting,
        int policy, long jitterNanos, boolean pooled) {
      this(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy, jitterNanos, pooled,
          false, 0);
    }

    /** On a template or not, without a held dimension (scripts found before held dimensions existed). */
    Setup(long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting,
        int policy, long jitterNanos, boolean pooled, boolean templated) {
      this(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy, jitterNanos, pooled,
          templated, 0);
    }

    /** With a held cap, not on a template (scripts found before templates and held dimensions met). */
    Setup(long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting,
        int policy, long jitterNanos, boolean pooled, long holdCap) {
      this(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy, jitterNanos, pooled,
          false, holdCap);
    }

    /** Without a pool (scripts found before pools existed). */
    Setup(long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting,
        int policy, long jitterNanos) {
      this(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy, jitterNanos, false);
    }

    /** A limit without a tenant policy and without jitter (scripts found before either existed). */
    Setup(long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting) {
      this(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, 0, 0);
    }

    /** With a tenant policy, without jitter. */
    Setup(long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting,
        int policy) {
      this(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy, 0);
    }

    /** With jitter, without a tenant policy. */
    Setup(long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting,
        long jitterNanos) {
      this(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, 0, jitterNanos);
    }

    /**
     * The same with a jitter drawn from {@code r}: none a third of the time, else up to 20 ms,
     * under every burst refill time any script's limits can have (50 ms for requests, 20 ms for
     * tokens), so the margin varies from nothing to most of a burst-1 rate. A separate random,
     * so a seed's script stays what it was before jitter existed.
     */
    Setup withRandomJitter(Random r) {
      long j = r.nextInt(3) == 0 ? 0 : between(r, 1, 19_999_999);
      return new Setup(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy, j, pooled,
          templated, holdCap);
    }

    /**
     * A third of the scripts run with a pool: a second member {@code NAME-b} with the same limit
     * and a pool {@code NAME-p} of both; a third of their acquires go to the pool (by the step's
     * pick, so a seed's script stays what it was), and releases and renews by a pool acquire's
     * permit go to its member or, every other time, to the pool's name.
     */
    Setup withRandomPool(Random r) {
      return new Setup(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy,
          jitterNanos, r.nextInt(3) == 0, templated, holdCap);
    }

    /**
     * A quarter of the scripts without a pool run on a template instead of a limit: the limit
     * is set as template {@code NAME:*} and the script's resource is {@code NAME:t}, a name it
     * matches; a limit change changes the template, a deletion deletes it. Both stores make the
     * name's bucket from the template, follow its changes and end its waiters when it goes.
     */
    Setup withRandomTemplate(Random r) {
      boolean t = !pooled && r.nextInt(4) == 0;
      return new Setup(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy,
          jitterNanos, pooled, t, holdCap);
    }

    /**
     * Half the scripts not on a template limit a held dimension {@code held} too ({@link
     * LimitSpec#holds}), capped at 20 to 150: each acquire holds {@link #heldLoad} of it (now and
     * then more than the cap, refused), a settle names it, and each {@link Step.SetLimit} moves
     * the cap ({@link #heldCap}). A separate random, so a seed's script stays what it was.
     */
    Setup withRandomHold(Random r) {
      boolean hold = r.nextBoolean();
      long cap = between(r, 20, 150);
      return new Setup(reqAmount, reqBurst, tokAmount, tokBurst, periodMillis, concurrency, maxWaiting, policy,
          jitterNanos, pooled, templated, hold && !templated ? cap : 0);
    }

    static Setup random(Random r) {
      return new Setup(
          between(r, 1, 20), between(r, 1, 10), between(r, 10, 500), between(r, 10, 100),
          oneOf(r, List.of(1_000L, 2_000L, 10_000L)), between(r, 0, 4), (int) between(r, 1, 12),
          r.nextInt(POLICIES));
    }

    LimitSpec spec(String resource, long req, long reqB, long tokB, long conc) {
      return spec(resource, req, reqB, tokB, conc, holdCap);
    }

    /** The held cap after a limit change: it follows the step's token burst. */
    long heldCap(Step.SetLimit s) {
      return holdCap == 0 ? 0 : 10 + s.tokBurst();
    }

    LimitSpec spec(String resource, long req, long reqB, long tokB, long conc, long hold) {
      Duration p = Duration.ofMillis(periodMillis);
      return new LimitSpec(
          resource,
          List.of(new RateSpec("requests", req, p, reqB), new RateSpec("tokens", tokAmount, p, tokB)),
          conc,
          maxWaiting,
          LEASE,
          Duration.ofNanos(jitterNanos),
          policy(p, req, reqB, tokB)).withHolds(hold > 0 ? Map.of("held", hold) : Map.of());
    }

    /**
     * The tenant policy {@link #policy} names: none, weights, a floor, caps (each within the
     * limit it goes with, so every limit change of the script keeps it valid).
     */
    TenantPolicy policy(Duration p, long req, long reqB, long tokB) {
      return switch (policy) {
        case 1 -> new TenantPolicy(Map.of("a", 3.0, "b", 1.0), Map.of(), Map.of());
        case 2 -> new TenantPolicy(Map.of("a", 2.5), Map.of("b", 0.4), Map.of());
        case 3 -> new TenantPolicy(Map.of("b", 2.0), Map.of(),
            Map.of("a", List.of(new RateSpec("tokens", Math.max(1, tokAmount / 2), p, Math.max(1, tokB / 2)))));
        case 4 -> new TenantPolicy(Map.of(), Map.of("a", 0.3, "c", 0.5),
            Map.of("c", List.of(new RateSpec("requests", Math.max(1, req / 2), p, Math.max(1, reqB / 2))),
                "default", List.of(new RateSpec("tokens", tokAmount, p, Math.max(1, tokB / 3)))));
        default -> TenantPolicy.NONE;
      };
    }

    String asCode() {
      return "new Lockstep.Setup(" + reqAmount + ", " + reqBurst + ", " + tokAmount + ", " + tokBurst
          + ", " + periodMillis + ", " + concurrency + ", " + maxWaiting + ", " + policy + ", " + jitterNanos + "L"
          + (templated ? ", " + pooled + ", true" + (holdCap > 0 ? ", " + holdCap + ")" : ")")
              : holdCap > 0 ? ", " + pooled + ", " + holdCap + "L)" : pooled ? ", true)" : ")");
    }
  }

  /** How many tenant policies {@link Setup#policy} knows. */
  static final int POLICIES = 5;

  /** The tenants a script's acquires name: none (the default), then these. */
  static final List<String> TENANTS = List.of("a", "b", "c");

  /** One step. Picks choose among the script's acquires so far, modulo their number. */
  sealed interface Step {
    /** idMode 0: no request id, 1: a fresh one, 2: the id of the acquire {@code pick}. */
    record Acquire(
        int lane, long requests, boolean namesRequests, long tokens, long timeoutMillis, int idMode, int pick, int tenant)
        implements Step {
      /** In the default tenant (scripts found before tenants existed). */
      Acquire(int lane, long requests, boolean namesRequests, long tokens, long timeoutMillis, int idMode, int pick) {
        this(lane, requests, namesRequests, tokens, timeoutMillis, idMode, pick, 0);
      }
    }

    /** byRequestId: the engine's cancel by id; else the ticket's cancel (a caller gone). */
    record Cancel(int pick, boolean byRequestId) implements Step {}

    /** kind 0: plain, 1: settle tokens, 2: unused, 3: settle requests and tokens. */
    record Release(int pick, int kind, long actualRequests, long actualTokens) implements Step {}

    record Renew(int pick) implements Step {}

    record Advance(long millis) implements Step {}

    /** millis &lt; 0: until resumed. */
    record Pause(long millis) implements Step {}

    record Resume() implements Step {}

    /** remaining &lt; 0: not reported. */
    record Report(boolean throttled, long retryAfterMillis, long remainingRequests, long remainingTokens) implements Step {}

    record SetLimit(long reqAmount, long reqBurst, long tokBurst, long concurrency) implements Step {}

    record DeleteLimit() implements Step {}
  }

  static List<Step> script(Random r) {
    int n = (int) between(r, 4, 40);
    List<Step> steps = new ArrayList<>(n + 1);
    steps.add(new Step.Advance(between(r, 0, 3_000)));
    for (int i = 0; i < n; i++) {
      int pick = r.nextInt(1_000);
      int kind = r.nextInt(40);
      Step s;
      if (kind < 14) {
        int idMode = r.nextInt(10) < 6 ? 1 : r.nextInt(10) < 5 ? 0 : 2;
        s = new Step.Acquire(
            r.nextInt(3),
            r.nextInt(10) == 0 ? between(r, 0, 12) : between(r, 0, 3),
            r.nextInt(3) != 0,
            r.nextInt(10) == 0 ? between(r, 0, 120) : between(r, 0, 20),
            oneOf(r, List.of(0L, 200L, 3_000L, 60_000L)),
            idMode,
            pick,
            r.nextInt(3) == 0 ? 0 : 1 + r.nextInt(TENANTS.size()));
      } else if (kind < 17) {
        s = new Step.Cancel(pick, r.nextBoolean());
      } else if (kind < 23) {
        s = new Step.Release(pick, r.nextInt(4), between(r, 0, 6), between(r, 0, 150));
      } else if (kind < 25) {
        s = new Step.Renew(pick);
      } else if (kind < 33) {
        long ms = switch (r.nextInt(12)) {
          case 0 -> oneOf(r, List.of(10_000L, 61_000L, 3_600_000L)); // jumps: aging, id memory, idle
          case 1, 2, 3, 4, 5 -> between(r, 0, 300);
          default -> between(r, 300, 4_000); // past the 3 s lease
        };
        s = new Step.Advance(ms);
      } else if (kind == 33) {
        s = new Step.Pause(oneOf(r, List.of(-1L, 500L, 3_000L)));
      } else if (kind == 34) {
        s = new Step.Resume();
      } else if (kind < 37) {
        s = new Step.Report(
            r.nextBoolean(), between(r, 0, 3_000),
            r.nextBoolean() ? -1 : between(r, 0, 8), r.nextBoolean() ? -1 : between(r, 0, 50));
      } else if (kind < 39) {
        s = new Step.SetLimit(between(r, 1, 20), between(r, 1, 10), between(r, 10, 100), between(r, 0, 4));
      } else {
        s = new Step.DeleteLimit();
      }
      steps.add(s);
    }
    return steps;
  }

  private static long between(Random r, long lo, long hi) {
    return lo + (long) (r.nextDouble() * (hi - lo + 1));
  }

  private static <T> T oneOf(Random r, List<T> values) {
    return values.get(r.nextInt(values.size()));
  }

  /** The script as a JUnit test, to paste into the regression suite. */
  static String asTest(long seed, Setup setup, List<Step> steps) {
    StringBuilder b = new StringBuilder();
    b.append("  /** Found by the differential test, seed ").append(seed).append(". */\n");
    b.append("  @Test\n  void seed").append(seed).append("() {\n");
    b.append("    assertAgree(").append(setup.asCode()).append(",\n");
    for (int i = 0; i < steps.size(); i++) {
      b.append("        new Lockstep.Step.").append(steps.get(i).toString()
          .replaceAll("(\\w+)\\[", "$1(").replaceAll("\\]$", ")").replaceAll("\\w+=", ""));
      b.append(i + 1 < steps.size() ? ",\n" : ");\n");
    }
    return b.append("  }\n").toString();
  }

  // ------------------------------------------------------------------------------ the engines

  /** The two engines under comparison, each on its own clock. */
  record Pair(Side memory, Side redis, RedisProcess server) implements AutoCloseable {
    /** Starts a redis-server of its own (closed with the pair) and the two engines. */
    static Pair start() throws Exception {
      RedisProcess server = RedisProcess.start();
      FakeClock m = new FakeClock();
      FakeClock r = new FakeClock();
      RedisEngine redis =
          RedisEngine.builder().uri(server.uri()).ticker(r).scheduler(r).housekeeping(Duration.ZERO).build();
      // A timer's calls (a wake-up, a give-back asked again) are answered before time moves on:
      // an answer handled later would apply its relative wake-up from a later instant.
      r.afterEachTask(redis::awaitQuiet);
      return new Pair(
          new Side("memory", new PoolEngine(MemoryEngine.builder().ticker(m).scheduler(m).build()), m),
          new Side("redis", new PoolEngine(redis), r),
          server);
    }

    @Override
    public void close() {
      for (Side s : List.of(memory, redis)) {
        s.engine.close();
        s.engine.closeStore();
      }
      server.close();
    }
  }

  /** One engine, its clock, and what the script has seen of it. */
  static final class Side {
    final String name;
    final Engine engine;
    final FakeClock clock;
    final List<Call> calls = new ArrayList<>();
    final List<String> events = new ArrayList<>();
    final Map<String, Integer> permits = new HashMap<>();

    Side(String name, Engine engine, FakeClock clock) {
      this.name = name;
      this.engine = engine;
      this.clock = clock;
    }

    void reset() {
      calls.clear();
      synchronized (events) {
        events.clear();
      }
      permits.clear();
    }

    void event(String e) {
      synchronized (events) {
        events.add(e);
      }
    }

    /**
     * The acquires ended since the last step: grants in the order they were made, then the
     * other endings (deadline, cancel, refusal) sorted. Which waiters were granted, and in
     * what order, is the schedule; in what order one instant's failures are told apart from its
     * grants depends only on which timer a store happened to register first.
     */
    List<String> takeEvents() {
      synchronized (events) {
        List<String> grants = new ArrayList<>();
        List<String> others = new ArrayList<>();
        for (String e : events) {
          (e.contains(" granted ") ? grants : others).add(e);
        }
        events.clear();
        others.sort(null);
        // With a pool, grants in order per member: which member's wake-up runs first at one
        // instant, or between two close ones, is the order of the clock's timers.
        grants.sort(java.util.Comparator.comparing(e -> e.contains(" by ") ? e.substring(e.lastIndexOf(" by ")) : ""));
        grants.addAll(others);
        return grants;
      }
    }
  }

  /** One acquire as a side saw it. */
  static final class Call {
    final int index;
    final String requestId;
    /** The resource or pool it was asked of. */
    String target;
    Ticket ticket;
    Grant grant;

    Call(int index, String requestId) {
      this.index = index;
      this.requestId = requestId;
    }
  }

  /** What one step showed of one side. */
  record Seen(String outcome, List<String> events, String state, Map<String, Double> available, Map<String, Long> bursts) {

    /** Null when equal; else what differs. */
    String differenceFrom(Seen other) {
      if (!outcome.equals(other.outcome)) {
        return "outcome " + outcome + " vs " + other.outcome;
      }
      if (!events.equals(other.events)) {
        return "ended " + events + " vs " + other.events;
      }
      if (!state.equals(other.state)) {
        return "state " + state + " vs " + other.state;
      }
      if (!Objects.equals(available.keySet(), other.available.keySet())) {
        return "dimensions " + available.keySet() + " vs " + other.available.keySet();
      }
      for (var e : available.entrySet()) {
        double tolerance = 1e-6 * Math.max(1, bursts.getOrDefault(e.getKey(), 1L));
        if (Math.abs(e.getValue() - other.available.get(e.getKey())) > tolerance) {
          return "available " + available + " vs " + other.available;
        }
      }
      return null;
    }
  }

  record Result(String divergence, int steps, long grants) {}

  // --------------------------------------------------------------------------------- running

  static Result run(Pair pair, String name, Setup setup, List<Step> steps) {
    templated = setup.templated();
    String resource = templated ? name + ":t" : name;
    Side[] sides = {pair.memory(), pair.redis()};
    for (Side s : sides) {
      s.reset();
    }
    long[] limit = {setup.reqAmount(), setup.reqBurst(), setup.tokBurst(), setup.concurrency()};
    LimitSpec[] current = {setup.spec(resource, limit[0], limit[1], limit[2], limit[3])};
    pooled = setup.pooled();
    holdCap = setup.holdCap();
    List<Step> all = new ArrayList<>();
    all.add(null); // the initial setLimit
    all.addAll(steps);
    long grants = 0;
    for (int i = 0; i < all.size(); i++) {
      Step step = all.get(i);
      Seen[] seen = new Seen[2];
      for (int k = 0; k < 2; k++) {
        seen[k] = apply(sides[k], resource, setup, current, step);
      }
      if (TRACE) {
        System.out.println("step " + i + " " + step + "\n  memory " + seen[0] + "\n  redis  " + seen[1]);
      }
      String diff = seen[0].differenceFrom(seen[1]);
      if (diff != null) {
        cleanUp(sides, resource);
        return new Result("step " + i + " " + (step == null ? "setLimit" : step) + ": memory vs redis: " + diff, i, grants);
      }
      grants += seen[0].events().stream().filter(e -> e.contains("granted")).count()
          + (seen[0].outcome().contains("granted") ? 1 : 0);
      if (step instanceof Step.SetLimit s) {
        // Both sides applied the same change.
        current[0] = setup.spec(resource, s.reqAmount(), s.reqBurst(), s.tokBurst(), s.concurrency(), setup.heldCap(s));
      }
    }
    cleanUp(sides, resource);
    return new Result(null, all.size(), grants);
  }

  /** Whether the running script has a pool (see {@link Setup#withRandomPool}). */
  private static volatile boolean pooled;
  /** The running script's held cap, 0 when it holds nothing (see {@link Setup#withRandomHold}). */
  private static volatile long holdCap;

  /** What an acquire holds of dimension {@code held}: 0 to 59, now and then above a small cap. */
  static long heldLoad(Step.Acquire a) {
    return a.tokens() + Math.floorMod(a.pick(), 40);
  }

  /** Whether the running script runs on a template (see {@link Setup#withRandomTemplate}). */
  private static volatile boolean templated;

  /** The template of a templated script's resource {@code NAME:t}. */
  private static LimitSpec template(LimitSpec limit) {
    String r = limit.resource();
    return new LimitSpec(r.substring(0, r.length() - 1) + "*", limit.rates(), limit.concurrency(), limit.maxWaiting(),
        limit.leaseTtl(), limit.jitter(), limit.tenants());
  }

  /** Deletes the script's resources so their waiters and timers end before the next script. */
  private static void cleanUp(Side[] sides, String resource) {
    for (Side s : sides) {
      for (String r : List.of(resource + "-p", resource + "-b", resource)) {
        try {
          sync(s.engine).deleteLimit(r);
        } catch (EngineException ignored) {
          // already deleted by the script, or never made
        }
      }
      if (templated) {
        try {
          sync(s.engine).deleteTemplate(resource.substring(0, resource.length() - 1) + "*");
        } catch (EngineException ignored) {
          // already deleted by the script
        }
      }
      s.clock.advance(Duration.ofMinutes(2));
      s.reset();
    }
  }

  private static Seen apply(Side side, String resource, Setup setup, LimitSpec[] current, Step step) {
    Engine engine = side.engine;
    String outcome;
    try {
      outcome = applyOrThrow(side, resource, setup, current, step);
    } catch (EngineException e) {
      outcome = "refused " + e.reason();
    }
    // Whatever the step set in motion on the store (a give-back, a waiter leaving) lands first.
    if (PoolEngine.unwrap(engine) instanceof RedisEngine r) {
      r.awaitQuiet();
    }
    String state;
    Map<String, Double> available = new TreeMap<>();
    Map<String, Long> bursts = new HashMap<>();
    try {
      ResourceSnapshot s = sync(engine).stats(resource);
      available.putAll(s.available());
      for (RateSpec r : s.limit().rates()) {
        bursts.put(r.name(), r.burst());
      }
      state = "inFlight " + s.inFlight() + " waiting " + new TreeMap<>(s.waiting()) + " paused " + s.paused()
          + " for " + (s.pausedForNanos() < 0 ? "ever" : s.pausedForNanos() / 1_000_000 + "ms")
          // Not on a template's bucket: its counters start over when it is freed, which each store
          // does at its own idle time (Redis also waits out the request ids it made up).
          + (templated ? "" : " leases expired " + s.expired())
          + " estimates " + sync(engine).estimate(resource, Map.of("tokens", 3L), Lane.DEFAULT, null)
          + "/" + sync(engine).estimate(resource, Map.of("tokens", 3L), Lane.BATCH, "a")
          // Waiters per tenant; not the use counters, which restart when an idle state is let go.
          + " tenants waiting " + new TreeMap<>(s.tenants().entrySet().stream()
              .filter(e -> e.getValue().waiting() > 0)
              .collect(java.util.stream.Collectors.toMap(Map.Entry::getKey, e -> e.getValue().waiting())));
    } catch (EngineException e) {
      state = "stats refused " + e.reason();
    }
    if (pooled) {
      ResourceSnapshot b = sync(engine).stats(resource + "-b");
      b.available().forEach((k, v) -> available.put("b:" + k, v));
      for (RateSpec r : b.limit().rates()) {
        bursts.put("b:" + r.name(), r.burst());
      }
      state += " | b: inFlight " + b.inFlight() + " waiting " + new TreeMap<>(b.waiting()) + " paused " + b.paused()
          + " | pool estimate " + sync(engine).estimate(resource + "-p", Map.of("tokens", 3L), Lane.DEFAULT, null);
    }
    return new Seen(outcome, side.takeEvents(), state, available, bursts);
  }

  private static String applyOrThrow(Side side, String resource, Setup setup, LimitSpec[] current, Step step) {
    Engine engine = side.engine;
    if (step == null && templated) {
      sync(engine).setTemplate(template(current[0]));
      return "template set";
    }
    if (step == null) {
      sync(engine).setLimit(current[0]);
      if (pooled) {
        // b refills a little faster than a and its leases last 7 ms longer: with equal limits
        // both members would grant a pool waiter at the same instant, and which wake-up runs
        // first at one instant is the clock's order of timers, not a store's behaviour (either
        // member is a right answer).
        LimitSpec a = current[0];
        List<RateSpec> faster = a.rates().stream()
            .map(x -> new RateSpec(x.name(), x.amount() + 1, x.period(), x.burst())).toList();
        sync(engine).setLimit(new LimitSpec(resource + "-b", faster, a.concurrency(), a.maxWaiting(),
            a.leaseTtl().plusMillis(7), a.jitter(), a.tenants()).withHolds(a.holds()));
        sync(engine).setLimit(LimitSpec.pool(resource + "-p", List.of(resource, resource + "-b")));
        return "limits and pool set";
      }
      return "limit set";
    } else if (step instanceof Step.Acquire a) {
      return acquire(side, resource, a);
    } else if (step instanceof Step.Cancel c) {
      Call call = pick(side, c.pick());
      if (call == null || call.ticket == null) {
        return "nothing to cancel";
      }
      if (c.byRequestId() && call.requestId != null) {
        return "cancel by id #" + call.index + ": " + sync(engine).cancel(call.target, call.requestId);
      }
      call.ticket.cancel();
      return "ticket #" + call.index + " cancelled";
    } else if (step instanceof Step.Release r) {
      Call call = pick(side, r.pick());
      if (call == null || call.grant == null || !call.ticket.claim()) {
        return "nothing to release";
      }
      Map<String, Long> actual = new LinkedHashMap<>();
      if (r.kind() == 3) {
        actual.put("requests", r.actualRequests());
      }
      if (r.kind() == 1 || r.kind() == 3) {
        actual.put("tokens", r.actualTokens());
      }
      if (r.kind() == 3 && holdCap > 0) {
        actual.put("held", r.actualTokens()); // accepted, and changes nothing held
      }
      boolean released = sync(engine).release(
          holder(call, r.pick()), call.grant.permitId(), actual, r.kind() == 1 || r.kind() == 3, r.kind() == 2);
      return "release #" + call.index + ": " + released;
    } else if (step instanceof Step.Renew r) {
      Call call = pick(side, r.pick());
      if (call == null || call.grant == null) {
        return "nothing to renew";
      }
      return "renew #" + call.index + " expired "
          + sync(engine).renew(holder(call, r.pick()), List.of(call.grant.permitId())).size();
    } else if (step instanceof Step.Advance a) {
      side.clock.advance(Duration.ofMillis(a.millis()));
      return "advanced";
    } else if (step instanceof Step.Pause p) {
      return "paused for " + millis(sync(engine).pause(resource, p.millis() < 0 ? -1 : p.millis() * 1_000_000L));
    } else if (step instanceof Step.Resume) {
      sync(engine).resume(resource);
      return "resumed";
    } else if (step instanceof Step.Report r) {
      Map<String, Long> remaining = new LinkedHashMap<>();
      if (r.remainingRequests() >= 0) {
        remaining.put("requests", r.remainingRequests());
      }
      if (r.remainingTokens() >= 0) {
        remaining.put("tokens", r.remainingTokens());
      }
      return "report: paused for " + millis(sync(engine).report(resource, r.throttled(), r.retryAfterMillis() * 1_000_000L, remaining));
 } else if (step instanceof Step.SetLimit s && templated) {
      return "setTemplate created " + sync(engine).setTemplate(
          template(setup.spec(resource, s.reqAmount(), s.reqBurst(), s.tokBurst(), s.concurrency())));
    } else if (step instanceof Step.DeleteLimit && templated) {
      sync(engine).deleteTemplate(template(current[0]).resource());
      return "template deleted";
    } else if (step instanceof Step.SetLimit s) {
      return "setLimit created " + sync(engine).setLimit(
          setup.spec(resource, s.reqAmount(), s.reqBurst(), s.tokBurst(), s.concurrency(), setup.heldCap(s)));
    } else if (step instanceof Step.DeleteLimit) {
      sync(engine).deleteLimit(resource);
      return "deleted";
    }
    throw new IllegalArgumentException("unknown step " + step);
  }

  /** Where a permit is released or renewed: its member, or every other time the pool it came from. */
  private static String holder(Call call, int pick) {
    return call.target.endsWith("-p") && Math.floorMod(pick, 2) == 1 ? call.target : call.grant.resource();
  }

  private static String millis(long nanos) {
    return nanos < 0 ? "ever" : (nanos / 1_000_000) + "ms";
  }

  private static Call pick(Side side, int i) {
    return side.calls.isEmpty() ? null : side.calls.get(Math.floorMod(i, side.calls.size()));
  }

  private static String acquire(Side side, String resource, Step.Acquire a) {
    Map<String, Long> load = new LinkedHashMap<>();
    if (a.namesRequests()) {
      load.put("requests", a.requests());
    }
    if (a.tokens() > 0 || !a.namesRequests()) {
      load.put("tokens", a.tokens());
    }
    if (holdCap > 0) {
      load.put("held", heldLoad(a));
    }
    int index = side.calls.size();
    String id = switch (a.idMode()) {
      case 1 -> "r" + index;
      case 2 -> {
        Call earlier = pick(side, a.pick());
        yield earlier == null || earlier.requestId == null ? "r" + index : earlier.requestId;
      }
      default -> null;
    };
    Call call = new Call(index, id);
    call.target = pooled && Math.floorMod(a.pick(), 3) == 0 ? resource + "-p" : resource;
    side.calls.add(call);
    String tenant = a.tenant() == 0 ? null : TENANTS.get((a.tenant() - 1) % TENANTS.size());
    Ticket t = sync(side.engine).acquire(
        call.target, load, Lane.values()[a.lane()], a.timeoutMillis() * 1_000_000L, id, tenant);
    call.ticket = t;
    StringBuilder now = new StringBuilder();
    boolean[] returned = {false};
    t.future().whenComplete((g, err) -> {
      String e = ended(side, call, g, err);
      synchronized (returned) {
        if (!returned[0]) {
          now.append(e);
          return;
        }
      }
      side.event(e);
    });
    synchronized (returned) {
      returned[0] = true;
      return "acquire #" + index + (now.length() > 0 ? " " + now : " queued");
    }
  }

  private static String ended(Side side, Call call, Grant g, Throwable err) {
    if (err == null) {
      call.grant = g;
      Integer first = side.permits.putIfAbsent(g.resource() + "/" + g.permitId(), call.index);
      String permit = first == null ? "" : " the permit of #" + first;
      return "#" + call.index + " granted " + new TreeMap<>(g.load()) + " after "
          + g.waitedNanos() / 1_000_000 + "ms" + permit + (pooled ? " by " + g.resource() : "");
    }
    Throwable cause = err instanceof CompletionException && err.getCause() != null ? err.getCause() : err;
    if (cause instanceof CancellationException) {
      return "#" + call.index + " cancelled";
    }
    if (cause instanceof EngineException e) {
      return "#" + call.index + " " + e.reason();
    }
    return "#" + call.index + " failed " + cause.getClass().getSimpleName();
  }
}
