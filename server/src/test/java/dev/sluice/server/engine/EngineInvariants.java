package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletionException;

/**
 * Drives one engine through a scripted interleaving of worker and admin operations on a
 * {@link FakeClock}, records every grant at its instant, and checks the guarantees after each
 * step and at the end. Shared by the property tests of every store.
 *
 * <p>What is checked, and why each check is sound for a token bucket:
 *
 * <ul>
 *   <li><b>Window bound</b> (guarantee 1): for every dimension and every window {@code [a, a+P]}
 *       that starts at a grant, the load granted in it is at most {@code amount + burst} of the
 *       largest limit in force during it. A permit given back unused counts 0; a settled one
 *       counts what it used, capped at what it was granted (debt only makes the engine
 *       stricter). Refunds are capped by the engines (a give-back after a refill adds nothing a
 *       window could not have had), so the bound is exact.
 *   <li><b>Concurrency</b>: a grant never brings the live leases (granted, not released, not
 *       expired) above the cap; the engine's {@code inFlight} equals that count, never negative.
 *   <li><b>Waiting room</b>: the engine's waiting count equals the acquires still pending;
 *       within a lane nobody is granted while an earlier arrival of that lane still waits.
 *   <li><b>Refusals</b>: a load that can never fit is refused at once with INVALID, a load that
 *       can is never refused as INVALID; every failure is one of the documented reasons.
 *   <li><b>Restoration</b>: once everything is cancelled or released and the refill time has
 *       passed, every bucket holds exactly its burst, nothing is in flight, nobody waits.
 * </ul>
 */
final class EngineInvariants {

  static final String RESOURCE = "prop";
  static final Duration LEASE = Duration.ofSeconds(3);

  /** The limit a scenario starts from; later {@link Op.SetLimit}s keep period and lease. */
  record Setup(long reqAmount, long reqBurst, long tokAmount, long tokBurst, long periodMillis, long concurrency, int maxWaiting) {
    LimitSpec spec() {
      return spec(reqAmount, reqBurst, tokBurst, concurrency);
    }

    LimitSpec spec(long req, long reqB, long tokB, long conc) {
      Duration p = Duration.ofMillis(periodMillis);
      return new LimitSpec(
          RESOURCE,
          List.of(
              new RateSpec("requests", req, p, reqB),
              new RateSpec("tokens", tokAmount, p, tokB)),
          conc,
          maxWaiting,
          LEASE);
    }
  }

  /** One step of a scenario. Indices pick among the tickets so far, modulo their number. */
  sealed interface Op {
    record Acquire(int lane, long requests, boolean namesRequests, long tokens, long timeoutMillis, boolean withId) implements Op {}

    record Cancel(int pick, boolean byRequestId) implements Op {}

    /** kind 0: plain release, 1: settle {@code actualTokens}, 2: unused. */
    record Release(int pick, int kind, long actualTokens) implements Op {}

    record Renew(int pick) implements Op {}

    record Advance(long millis) implements Op {}

    /** millis &lt; 0: until resumed. */
    record Pause(long millis) implements Op {}

    record Resume() implements Op {}

    record Report(boolean throttled, long retryAfterMillis, long remainingTokens) implements Op {}

    record SetLimit(long reqAmount, long reqBurst, long tokBurst, long concurrency) implements Op {}
  }

  /** One acquire as the test sees it. */
  private final class Call {
    final int seq;
    final Lane lane;
    final String requestId;
    final Map<String, Long> asked;
    Ticket ticket;
    Grant grant;
    long grantedAt;
    long expiresAt;
    boolean claimed;
    long deadline;
    boolean withdrawn; // cancelled by the test
    boolean ended; // released, given back, or known expired
    Map<String, Long> used; // effective usage once ended, else null (counts as granted)

    Call(int seq, Lane lane, String requestId, Map<String, Long> asked) {
      this.seq = seq;
      this.lane = lane;
      this.requestId = requestId;
      this.asked = asked;
    }

    boolean pending() {
      return ticket != null && !ticket.future().isDone();
    }

    /**
     * Still entitled to its place in line. A waiter that leaves (cancel, deadline) lets the next
     * one be granted before its own future fails, so pending alone would over-report.
     */
    boolean inLine(long now) {
      return pending() && !withdrawn && deadline - now > 0;
    }

    boolean holds(long now) {
      return grant != null && !ended && expiresAt - now > 0;
    }
  }


  private record Epoch(long from, LimitSpec spec) {}

  private final Engine engine;
  private final FakeClock clock;
  private final Setup setup;
  private final List<Call> calls = new ArrayList<>();
  private final List<Epoch> epochs = new ArrayList<>();
  private LimitSpec current;
  private int seq;
  private Throwable callbackFailure;

  EngineInvariants(Engine engine, FakeClock clock, Setup setup) {
    this.engine = engine;
    this.clock = clock;
    this.setup = setup;
  }

  /** Runs the scenario, checking after every step, then drains and checks restoration. */
  void run(List<Op> ops) {
    setLimit(setup.spec());
    for (Op op : ops) {
      apply(op);
      checkLive();
    }
    drainAndCheckRestored();
    checkWindows();
  }

  private void setLimit(LimitSpec spec) {
    // Set before the call: a limit change can grant waiters, under the new limit, within it.
    current = spec;
    epochs.add(new Epoch(clock.read(), spec));
    sync(engine).setLimit(spec);
    assertThat(sync(engine).getLimit(RESOURCE)).contains(spec);
  }

  private void apply(Op op) {
    // An if-chain, not a pattern switch: that is a preview feature on Java 17.
    if (op instanceof Op.Acquire a) {
      acquire(a);
    } else if (op instanceof Op.Cancel c) {
      pick(c.pick()).ifPresent(call -> cancel(call, c.byRequestId()));
    } else if (op instanceof Op.Release r) {
      pick(r.pick()).ifPresent(call -> release(call, r));
    } else if (op instanceof Op.Renew r) {
      pick(r.pick()).ifPresent(this::renew);
    } else if (op instanceof Op.Advance a) {
      clock.advance(Duration.ofMillis(a.millis()));
    } else if (op instanceof Op.Pause p) {
      sync(engine).pause(RESOURCE, p.millis() < 0 ? -1 : p.millis() * 1_000_000L);
    } else if (op instanceof Op.Resume) {
      sync(engine).resume(RESOURCE);
    } else if (op instanceof Op.Report r) {
      sync(engine).report(
          RESOURCE,
          r.throttled(),
          r.retryAfterMillis() * 1_000_000L,
          r.remainingTokens() < 0 ? Map.of() : Map.of("tokens", r.remainingTokens()));
    } else if (op instanceof Op.SetLimit s) {
      setLimit(setup.spec(s.reqAmount(), s.reqBurst(), s.tokBurst(), s.concurrency()));
    } else {
      throw new IllegalArgumentException("unknown op " + op);
    }
  }

  private java.util.Optional<Call> pick(int i) {
    return calls.isEmpty() ? java.util.Optional.empty() : java.util.Optional.of(calls.get(Math.floorMod(i, calls.size())));
  }

  private void acquire(Op.Acquire a) {
    Map<String, Long> load = new LinkedHashMap<>();
    if (a.namesRequests()) {
      load.put("requests", a.requests());
    }
    if (a.tokens() > 0 || !a.namesRequests()) {
      load.put("tokens", a.tokens());
    }
    long req = a.namesRequests() ? a.requests() : 1;
    long tok = load.getOrDefault("tokens", 0L);
    boolean canFit =
        req <= current.rate("requests").burst()
            && tok <= current.rate("tokens").burst()
            && req + tok > 0;
    Lane lane = Lane.values()[a.lane()];
    String id = a.withId() ? "rq-" + seq : null;
    Call call = new Call(seq++, lane, id, load);
    try {
      Ticket t = sync(engine).acquire(RESOURCE, load, lane, a.timeoutMillis() * 1_000_000L, id);
      call.ticket = t;
      call.deadline = clock.read() + a.timeoutMillis() * 1_000_000L;
      calls.add(call);
      t.future().whenComplete((g, err) -> {
        try {
          onDone(call, g, err);
        } catch (Throwable failure) {
          // A callback's exception would vanish into the dependent future: keep it for checkLive.
          if (callbackFailure == null) {
            callbackFailure = failure;
          }
        }
      });
      assertThat(canFit).as("acquire %s was accepted but can never fit %s", load, current).isTrue();
    } catch (EngineException e) {
      assertThat(e.getMessage()).isNotBlank();
      if (canFit) {
        assertThat(e.reason()).as("refusal of %s: %s", load, e.getMessage()).isEqualTo(EngineException.Reason.WAITING_ROOM_FULL);
        assertThat(e.retryAfterNanos()).isPositive();
      } else {
        assertThat(e.reason()).as("refusal of %s: %s", load, e.getMessage()).isEqualTo(EngineException.Reason.INVALID);
      }
    }
  }

  private void onDone(Call call, Grant g, Throwable err) {
    long now = clock.read();
    if (err == null) {
      // FIFO within a lane: nobody of this lane who arrived earlier may still be waiting.
      for (Call other : calls) {
        if (other != call && other.lane == call.lane && other.seq < call.seq && other.inLine(now)) {
          throw new AssertionError("grant of #" + call.seq + " " + call.asked + " at " + now + " overtook #" + other.seq + " " + other.asked + " in lane " + call.lane);
        }
      }
      call.grant = g;
      call.grantedAt = now;
      call.expiresAt = now + g.leaseTtlNanos();
      long cap = current.concurrency();
      long live = calls.stream().filter(c -> c.holds(now)).count();
      if (cap > 0 && live > cap) {
        throw new AssertionError("grant of #" + call.seq + " made " + live + " leases live, cap " + cap);
      }
      return;
    }
    Throwable cause = err instanceof CompletionException && err.getCause() != null ? err.getCause() : err;
    if (cause instanceof CancellationException) {
      return;
    }
    if (!(cause instanceof EngineException e)) {
      throw new AssertionError("acquire #" + call.seq + " failed with an undocumented " + cause, cause);
    }
    assertThat(e.getMessage()).isNotBlank();
    assertThat(e.reason()).isIn(EngineException.Reason.DEADLINE, EngineException.Reason.INVALID);
  }

  private void cancel(Call call, boolean byRequestId) {
    boolean wasPending = call.pending();
    boolean unclaimedGrant = call.grant != null && !call.claimed && !call.ended;
    call.withdrawn = true;
    if (byRequestId && call.requestId != null) {
      boolean left = sync(engine).cancel(RESOURCE, call.requestId);
      assertThat(left).as("cancel of #%d by id (pending %s)", call.seq, wasPending).isEqualTo(wasPending);
    } else if (call.ticket != null) {
      if (unclaimedGrant) {
        call.ended = true; // the slot it frees may be granted within the cancel
      }
      call.ticket.cancel();
      if (unclaimedGrant) {
        // The grant raced with the cancel: it is given back whole.
        assertThat(call.ticket.claim()).isFalse();
        endGivingBack(call);
      }
    }
    assertThat(call.pending()).isFalse();
  }

  private boolean claim(Call call) {
    if (call.grant == null || call.ended) {
      return false;
    }
    if (!call.claimed) {
      assertThat(call.ticket.claim()).isTrue();
      call.claimed = true;
    }
    return true;
  }

  private void release(Call call, Op.Release r) {
    if (!claim(call)) {
      return;
    }
    long now = clock.read();
    boolean live = call.expiresAt - now > 0;
    // Ended before the call: the freed slot may be granted to a waiter within it.
    call.ended = true;
    boolean released;
    switch (r.kind()) {
      case 1 -> {
        long granted = call.grant.load().getOrDefault("tokens", 0L);
        long actual = r.actualTokens();
        released = sync(engine).release(RESOURCE, call.grant.permitId(), Map.of("tokens", actual), true, false);
        if (released) {
          Map<String, Long> used = new HashMap<>(call.grant.load());
          used.put("tokens", Math.min(granted, actual));
          call.used = used;
        }
      }
      case 2 -> {
        released = sync(engine).release(RESOURCE, call.grant.permitId(), Map.of(), false, true);
        if (released) {
          endGivingBack(call);
        }
      }
      default -> released = sync(engine).release(RESOURCE, call.grant.permitId(), Map.of(), false, false);
    }
    assertThat(released).as("release of #%d, lease live %s", call.seq, live).isEqualTo(live);
    call.ended = true;
  }

  private void endGivingBack(Call call) {
    call.ended = true;
    call.used = Map.of();
  }

  private void renew(Call call) {
    if (call.grant == null || call.ended) {
      return;
    }
    long now = clock.read();
    boolean live = call.expiresAt - now > 0;
    List<String> expired = sync(engine).renew(RESOURCE, List.of(call.grant.permitId()));
    assertThat(expired.isEmpty()).as("renew of #%d, lease live %s", call.seq, live).isEqualTo(live);
    if (live) {
      call.expiresAt = now + sync(engine).leaseTtlNanos(RESOURCE);
    } else {
      call.ended = true;
    }
  }

  private void checkLive() {
    if (callbackFailure != null) {
      throw new AssertionError(callbackFailure.getMessage(), callbackFailure);
    }
    long now = clock.read();
    ResourceSnapshot s = sync(engine).stats(RESOURCE);
    long live = calls.stream().filter(c -> c.holds(now)).count();
    long pending = calls.stream().filter(Call::pending).count();
    int waiting = s.waiting().values().stream().mapToInt(Integer::intValue).sum();
    assertThat(s.inFlight()).as("in flight").isNotNegative().isEqualTo(live);
    assertThat(waiting).as("waiting").isEqualTo(pending);
  }

  /** Cancels and releases everything, resumes, waits out every refill: all is as new. */
  private void drainAndCheckRestored() {
    for (Call c : calls) {
      if (c.pending()) {
        cancel(c, false);
      }
    }
    for (Call c : calls) {
      if (c.grant != null && !c.ended) {
        if (!c.claimed && c.expiresAt - clock.read() > 0) {
          cancel(c, false); // an unclaimed grant is given back
        } else {
          release(c, new Op.Release(0, 0, 0));
        }
      }
    }
    sync(engine).resume(RESOURCE);
    checkLive();
    // Deepest debt is one period's amount, plus a report's zeroing: (burst + amount) / rate.
    clock.advance(Duration.ofHours(1));
    ResourceSnapshot s = sync(engine).stats(RESOURCE);
    assertThat(s.inFlight()).isZero();
    assertThat(s.waiting().values()).allMatch(n -> n == 0);
    assertThat(s.paused()).isFalse();
    for (RateSpec r : current.rates()) {
      assertThat(s.available().get(r.name())).as("available %s", r.name()).isEqualTo((double) r.burst());
    }
  }

  /** Every window of the period that starts at a grant, per dimension. */
  private void checkWindows() {
    long period = Duration.ofMillis(setup.periodMillis()).toNanos();
    List<Call> granted = calls.stream().filter(c -> c.grant != null).toList();
    for (String dim : List.of("requests", "tokens")) {
      for (Call start : granted) {
        long a = start.grantedAt;
        long b = a + period;
        long sum = 0;
        for (Call c : granted) {
          if (c.grantedAt - a >= 0 && b - c.grantedAt >= 0) {
            Map<String, Long> u = c.used != null ? c.used : c.grant.load();
            sum += u.getOrDefault(dim, 0L);
          }
        }
        long bound = maxAmountPlusBurst(dim, a, b);
        if (sum > bound) {
          throw new AssertionError(
              dim + " granted " + sum + " in [" + a + ", " + b + "], bound " + bound);
        }
      }
    }
  }

  private long maxAmountPlusBurst(String dim, long a, long b) {
    long amount = 0;
    long burst = 0;
    for (int i = 0; i < epochs.size(); i++) {
      long from = epochs.get(i).from();
      long to = i + 1 < epochs.size() ? epochs.get(i + 1).from() : Long.MAX_VALUE;
      if (from - b <= 0 && to - a >= 0) {
        RateSpec r = epochs.get(i).spec().rate(dim);
        amount = Math.max(amount, r.amount());
        burst = Math.max(burst, r.burst());
      }
    }
    return amount + burst;
  }

  /** Grants recorded, for the tests' own sanity checks (a scenario that grants nothing proves little). */
  long grants() {
    return calls.stream().filter(c -> c.grant != null).count();
  }
}
