package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.examples.mock.MockOpenAi.Stats;
import dev.sluice.examples.mock.MockOpenAi.Stats.Limits;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** Stats bookkeeping, on a fake clock. */
class EngineTest {

  private static final long MS = 1_000_000L;
  private static final long S = 1_000 * MS;

  private final AtomicLong now = new AtomicLong(77 * S);
  private final Engine engine =
      new Engine(new Limits(1_000_000, 1_000_000_000, 0, 0, 60.0, false, false), now::get);

  private void admitAt(long offsetNanos, long charge) {
    now.set(77 * S + offsetNanos);
    assertThat(engine.admit("p", charge).kind()).isEqualTo(Decision.Kind.ADMITTED);
  }

  @Test
  void peaksAreTheMostAdmittedInAnySlidingMinute() {
    admitAt(0, 100);
    admitAt(30 * S, 200);
    admitAt(60 * S - 1, 300); // still within 60 s of the first
    admitAt(60 * S, 50); // the first has left the window: 550
    admitAt(200 * S, 10);
    Stats s = engine.stats();
    assertThat(s.peakTokens60s()).isEqualTo(600);
    assertThat(s.peakRequests60s()).isEqualTo(3);
    assertThat(s.admitted()).isEqualTo(5);
    assertThat(s.estimatedTokens()).isEqualTo(660);
    assertThat(s.firstAdmittedAtMs()).isZero();
    assertThat(s.lastAdmittedAtMs()).isEqualTo(200_000);
  }

  @Test
  void slidingWindowSurvivesManyEntries() {
    for (int i = 0; i < 10_000; i++) {
      admitAt(i * 10 * MS, 1); // 100 a second for 100 s
    }
    Stats s = engine.stats();
    assertThat(s.peakRequests60s()).isEqualTo(6_000);
    assertThat(s.peakTokens60s()).isEqualTo(6_000);
  }

  @Test
  void inFlightActualTokensAndRejections() {
    admitAt(0, 40);
    admitAt(0, 40);
    engine.finished(25);
    engine.refused("unauthorized");
    engine.refused("bad_request");
    Stats s = engine.stats();
    assertThat(s.inFlight()).isEqualTo(1);
    assertThat(s.peakInFlight()).isEqualTo(2);
    assertThat(s.actualTokens()).isEqualTo(25);
    assertThat(s.rejected())
        .containsOnlyKeys(
            "requests",
            "tokens",
            "requests_per_day",
            "tokens_per_day",
            "too_large",
            "insufficient_quota",
            "unauthorized",
            "bad_request",
            "input_tokens",
            "output_tokens")
        .containsEntry("unauthorized", 1L)
        .containsEntry("bad_request", 1L)
        .containsEntry("requests", 0L);
    assertThat(s.rateLimited()).isZero();
  }

  @Test
  void rejectionsAreCountedByReason() {
    Engine small = new Engine(new Limits(6_000, 600, 0, 0, 1.0, false, false), now::get);
    assertThat(small.admit("p", 8).kind()).isEqualTo(Decision.Kind.ADMITTED); // 2 of 10 left
    assertThat(small.admit("p", 5).reason()).isEqualTo("tokens");
    assertThat(small.admit("p", 601).reason()).isEqualTo("too_large");
    for (int i = 0; i < 100; i++) {
      assertThat(small.admit("q", 0).kind()).isEqualTo(Decision.Kind.ADMITTED);
    }
    assertThat(small.admit("q", 0).reason()).isEqualTo("requests");
    Stats s = small.stats();
    assertThat(s.rejected())
        .containsEntry("requests", 1L)
        .containsEntry("too_large", 1L)
        .containsEntry("tokens", 1L);
    assertThat(s.rateLimited()).isEqualTo(3);
    assertThat(s.admitted()).isEqualTo(101);
  }

  @Test
  void resetZeroesStatsAndRefills() {
    Engine small = new Engine(new Limits(60, 600, 0, 0, 1.0, false, false), now::get);
    small.admit("p", 5);
    small.admit("p", 5);
    small.finished(3);
    now.addAndGet(5 * S);
    small.reset();
    Stats s = small.stats();
    assertThat(s.admitted()).isZero();
    assertThat(s.rejected().values()).containsOnly(0L);
    assertThat(s.estimatedTokens()).isZero();
    assertThat(s.actualTokens()).isZero();
    assertThat(s.peakTokens60s()).isZero();
    assertThat(s.firstAdmittedAtMs()).isNull();
    now.addAndGet(S / 2);
    assertThat(small.admit("p", 5).kind()).isEqualTo(Decision.Kind.ADMITTED);
    assertThat(small.stats().firstAdmittedAtMs()).isEqualTo(500); // since the reset
  }

  @Test
  void updateLimitsShowsInStats() {
    Limits next = engine.updateLimits(l -> new Limits(10, 20, 30, 40, 2.0, true, false));
    assertThat(engine.stats().limits()).isEqualTo(next);
  }

  /**
   * A request is metered at its arrival, not when the mock got round to deciding: a one-second
   * bucket of 600 TPM (10 tokens) emptied at t=0 holds 5 tokens when a request of 10 arrives at
   * t=0.5 s, though the decision runs at t=5 s; an arrival stamped before the last decision's is
   * taken at that decision's instant (time never runs back).
   */
  @Test
  void requestsAreMeteredAtTheirArrival() {
    AtomicLong clock = new AtomicLong(10 * S);
    Engine e = new Engine(new Limits(1_000, 600, 0, 0, 1.0, false, false), clock::get);
    assertThat(e.admit("p", 10).kind()).isEqualTo(Decision.Kind.ADMITTED);
    clock.set(15 * S);
    assertThat(e.admit("p", 10, null, 10 * S + 500 * MS).kind()).as("arrived at 0.5 s: 5 tokens there")
        .isEqualTo(Decision.Kind.RATE_LIMITED);
    assertThat(e.admit("p", 5, null, 10 * S + 500 * MS).kind()).isEqualTo(Decision.Kind.ADMITTED);
    assertThat(e.admit("p", 1, null, 10 * S).kind()).as("stamped at 0.5 s, nothing refilled since")
        .isEqualTo(Decision.Kind.RATE_LIMITED);
    assertThat(e.stats().lastAdmittedAtMs()).isEqualTo(500);
    assertThat(e.admit("p", 10).kind()).as("decided at its own time: 4.5 s refilled").isEqualTo(Decision.Kind.ADMITTED);
  }
}
