package dev.sluice.examples.mock;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.examples.mock.Decision.Kind;
import dev.sluice.examples.mock.MockOpenAi.Stats.Limits;
import org.junit.jupiter.api.Test;

/** The admission rule, on a fake clock. */
class RateLimiterTest {

  private static final long T0 = 1_000_000_000_000L;
  private static final long MS = 1_000_000L;
  private static final long S = 1_000 * MS;

  private static Limits limits(long rpm, long tpm) {
    return new Limits(rpm, tpm, 0, 0, 1.0, false, false);
  }

  @Test
  void requestBucketAdmitsItsCapacityThenRejectsAsRequests() {
    RateLimiter limiter = new RateLimiter(limits(600, 1_000_000), T0); // capacity 10
    for (int i = 0; i < 10; i++) {
      assertThat(limiter.acquire("p", 1, T0).kind()).isEqualTo(Kind.ADMITTED);
    }
    Decision d = limiter.acquire("p", 1, T0);
    assertThat(d.kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(d.dimension()).isEqualTo(Dimension.REQUESTS);
    assertThat(d.dimension().errorType).isEqualTo("requests");
    assertThat(d.limit()).isEqualTo(600);
    assertThat(d.used()).isEqualTo(600);
    assertThat(d.requested()).isEqualTo(1);
    // Level 0, then the rejection's own debit: -1. One request needs 2 more at 10/s.
    assertThat(d.waitNanos()).isEqualTo(200 * MS);
  }

  @Test
  void refillsExactlyLimitOverSixtyPerSecond() {
    RateLimiter limiter = new RateLimiter(limits(1_000_000, 6_000), T0); // 100 tokens, 100/s
    assertThat(limiter.acquire("p", 100, T0).kind()).isEqualTo(Kind.ADMITTED);
    Decision refused = limiter.acquire("p", 50, T0);
    assertThat(refused.kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(refused.waitNanos()).isEqualTo(500 * MS);

    Meter tokens = limiter.meter("p", Dimension.TOKENS, T0);
    assertThat(tokens.canAdmit(50, T0 + 499 * MS)).isFalse();
    assertThat(tokens.canAdmit(50, T0 + 500 * MS)).isTrue();
    assertThat(limiter.acquire("p", 50, T0 + 500 * MS).kind()).isEqualTo(Kind.ADMITTED);
    assertThat(limiter.acquire("p", 100, T0 + 1_500 * MS).kind()).isEqualTo(Kind.ADMITTED);
    // Sixty seconds refill the limit, but the bucket holds only its capacity.
    assertThat(((TokenBucket) tokens).level(T0 + 61_500 * MS)).isEqualTo(100.0);
  }

  @Test
  void rejectedRequestsCountTowardRpm() {
    RateLimiter with = new RateLimiter(limits(60, 1_000_000), T0); // 1 request, 1/s
    RateLimiter without = new RateLimiter(limits(60, 1_000_000), T0);
    assertThat(with.acquire("p", 1, T0).kind()).isEqualTo(Kind.ADMITTED);
    assertThat(without.acquire("p", 1, T0).kind()).isEqualTo(Kind.ADMITTED);

    Decision refused = with.acquire("p", 1, T0 + 500 * MS);
    assertThat(refused.kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(refused.waitNanos()).isEqualTo(1_500 * MS); // level 0.5 - 1 = -0.5 needs 1.5 s

    long oneSecond = T0 + S;
    assertThat(without.meter("p", Dimension.REQUESTS, oneSecond).canAdmit(1, oneSecond)).isTrue();
    assertThat(with.meter("p", Dimension.REQUESTS, oneSecond).canAdmit(1, oneSecond)).isFalse();
    long retry = T0 + 500 * MS + refused.waitNanos();
    assertThat(with.meter("p", Dimension.REQUESTS, retry - 1).canAdmit(1, retry - 1)).isFalse();
    assertThat(with.acquire("p", 1, retry).kind()).isEqualTo(Kind.ADMITTED);
  }

  @Test
  void rejectionDebtStopsAtOneCapacity() {
    RateLimiter limiter = new RateLimiter(limits(60, 1_000_000), T0);
    limiter.acquire("p", 1, T0);
    Decision last = null;
    for (int i = 0; i < 100; i++) {
      last = limiter.acquire("p", 1, T0);
    }
    assertThat(last.waitNanos()).isEqualTo(2 * S); // from -1 to 1
    assertThat(limiter.acquire("p", 1, T0 + 2 * S).kind()).isEqualTo(Kind.ADMITTED);
  }

  @Test
  void tokensBindWithTypeTokens() {
    RateLimiter limiter = new RateLimiter(limits(6_000, 6_000), T0); // 100 requests, 100 tokens
    assertThat(limiter.acquire("p", 80, T0).kind()).isEqualTo(Kind.ADMITTED);
    Decision d = limiter.acquire("p", 30, T0);
    assertThat(d.kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(d.dimension()).isEqualTo(Dimension.TOKENS);
    assertThat(d.dimension().errorType).isEqualTo("tokens");
    assertThat(d.limit()).isEqualTo(6_000);
    assertThat(d.requested()).isEqualTo(30);
    assertThat(d.used()).isEqualTo(6_000 - 1_200); // 20 of 100 left, stated against 6000
    assertThat(d.waitNanos()).isEqualTo(100 * MS);
    // The refused request cost no tokens.
    assertThat(limiter.acquire("p", 30, T0 + 100 * MS).kind()).isEqualTo(Kind.ADMITTED);
  }

  @Test
  void requestAboveCapacityButWithinLimitNeedsAFullBucketAndLeavesDebt() {
    RateLimiter limiter = new RateLimiter(limits(1_000_000, 6_000), T0); // 100 tokens, 100/s
    assertThat(limiter.acquire("p", 1, T0).kind()).isEqualTo(Kind.ADMITTED);
    Decision notFull = limiter.acquire("p", 250, T0);
    assertThat(notFull.kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(notFull.waitNanos()).isEqualTo(10 * MS);

    assertThat(limiter.acquire("p", 250, T0 + 10 * MS).kind()).isEqualTo(Kind.ADMITTED);
    Decision after = limiter.acquire("p", 250, T0 + 10 * MS);
    assertThat(after.kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(after.waitNanos()).isEqualTo(2_500 * MS); // from -150 back to full
    assertThat(after.headers().remainingTokens()).isZero();
  }

  @Test
  void chargeAboveTheLimitIsTooLargeAndStillCostsARequest() {
    RateLimiter limiter = new RateLimiter(limits(60, 6_000), T0); // 1 request
    Decision d = limiter.acquire("p", 6_001, T0);
    assertThat(d.kind()).isEqualTo(Kind.TOO_LARGE);
    assertThat(d.dimension()).isEqualTo(Dimension.TOKENS);
    assertThat(d.limit()).isEqualTo(6_000);
    assertThat(d.requested()).isEqualTo(6_001);
    assertThat(d.reason()).isEqualTo("too_large");
    Decision next = limiter.acquire("p", 10, T0);
    assertThat(next.kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(next.dimension()).isEqualTo(Dimension.REQUESTS);
    // Exactly the limit is not too large.
    assertThat(new RateLimiter(limits(60, 6_000), T0).acquire("p", 6_000, T0).kind())
        .isEqualTo(Kind.ADMITTED);
  }

  @Test
  void perDayLimits() {
    Limits daily = new Limits(6_000, 1_000_000, 3, 500, 1.0, false, false);
    RateLimiter limiter = new RateLimiter(daily, T0);
    assertThat(limiter.acquire("p", 600, T0).kind()).isEqualTo(Kind.TOO_LARGE);
    assertThat(limiter.acquire("p", 600, T0).dimension()).isEqualTo(Dimension.TOKENS_PER_DAY);
    for (int i = 0; i < 3; i++) {
      assertThat(limiter.acquire("p", 10, T0).kind()).isEqualTo(Kind.ADMITTED);
    }
    Decision d = limiter.acquire("p", 10, T0);
    assertThat(d.dimension()).isEqualTo(Dimension.REQUESTS_PER_DAY);
    assertThat(d.dimension().errorType).isEqualTo("requests");
    assertThat(d.reason()).isEqualTo("requests_per_day");
    assertThat(d.waitNanos()).isEqualTo(28_800 * S); // a third of a day

    RateLimiter tokensDaily = new RateLimiter(daily, T0);
    assertThat(tokensDaily.acquire("q", 450, T0).kind()).isEqualTo(Kind.ADMITTED);
    Decision t = tokensDaily.acquire("q", 100, T0);
    assertThat(t.dimension()).isEqualTo(Dimension.TOKENS_PER_DAY);
    assertThat(t.reason()).isEqualTo("tokens_per_day");
  }

  @Test
  void projectsAreIsolated() {
    RateLimiter limiter = new RateLimiter(limits(60, 1_000_000), T0);
    assertThat(limiter.acquire("key:a", 1, T0).kind()).isEqualTo(Kind.ADMITTED);
    assertThat(limiter.acquire("key:a", 1, T0).kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(limiter.acquire("key:b", 1, T0).kind()).isEqualTo(Kind.ADMITTED);
  }

  @Test
  void quantizedWindowsResetEachSecondAndDoNotSave() {
    Limits q = new Limits(600, 6_000, 0, 0, 1.0, true, false); // 10 requests, 100 tokens a second
    RateLimiter limiter = new RateLimiter(q, T0);
    long t = T0 + 5 * S + 300 * MS; // idle seconds are not saved up
    for (int i = 0; i < 10; i++) {
      assertThat(limiter.acquire("p", 1, t).kind()).isEqualTo(Kind.ADMITTED);
    }
    Decision d = limiter.acquire("p", 1, t);
    assertThat(d.kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(d.dimension()).isEqualTo(Dimension.REQUESTS);
    assertThat(d.waitNanos()).isEqualTo(700 * MS); // to the next boundary from the origin
    assertThat(limiter.acquire("p", 1, T0 + 6 * S - 1).kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(limiter.acquire("p", 95, T0 + 6 * S).kind()).isEqualTo(Kind.ADMITTED);
    Decision tokens = limiter.acquire("p", 6, T0 + 6 * S);
    assertThat(tokens.dimension()).isEqualTo(Dimension.TOKENS);
    assertThat(limiter.acquire("p", 5, T0 + 6 * S).kind()).isEqualTo(Kind.ADMITTED);

    // An untouched window takes one request bigger than its allowance, up to the limit.
    assertThat(limiter.acquire("p", 3_000, T0 + 7 * S).kind()).isEqualTo(Kind.ADMITTED);
    assertThat(limiter.acquire("p", 1, T0 + 7 * S).kind()).isEqualTo(Kind.RATE_LIMITED);
    assertThat(limiter.acquire("p", 6_001, T0 + 8 * S).kind()).isEqualTo(Kind.TOO_LARGE);
  }

  @Test
  void headersStateRemainingAgainstTheLimitAndTimeToFull() {
    RateLimiter limiter = new RateLimiter(limits(600, 60_000), T0); // 10 req, 1000 tokens
    Decision d = limiter.acquire("p", 250, T0);
    Decision.RateHeaders h = d.headers();
    assertThat(h.limitRequests()).isEqualTo(600);
    assertThat(h.limitTokens()).isEqualTo(60_000);
    assertThat(h.remainingRequests()).isEqualTo(540);
    assertThat(h.remainingTokens()).isEqualTo(45_000);
    assertThat(h.resetRequestsNanos()).isEqualTo(100 * MS);
    assertThat(h.resetTokensNanos()).isEqualTo(250 * MS);
  }

  @Test
  void newLimitsRescaleTheBucketsWithoutRefilling() {
    RateLimiter limiter = new RateLimiter(limits(600, 1_000_000), T0); // 10 requests
    for (int i = 0; i < 5; i++) {
      limiter.acquire("p", 1, T0);
    }
    limiter.setLimits(limits(1_200, 1_000_000), T0); // 20 requests, half full: 10
    assertThat(limiter.peek("p", T0).remainingRequests()).isEqualTo(600);
    for (int i = 0; i < 10; i++) {
      assertThat(limiter.acquire("p", 1, T0).kind()).isEqualTo(Kind.ADMITTED);
    }
    assertThat(limiter.acquire("p", 1, T0).kind()).isEqualTo(Kind.RATE_LIMITED);

    limiter.setLimits(new Limits(1_200, 1_000_000, 0, 0, 1.0, false, true), T0);
    assertThat(limiter.acquire("p", 1, T0).kind()).isEqualTo(Kind.INSUFFICIENT_QUOTA);
  }

  @Test
  void resetRefillsEveryProject() {
    RateLimiter limiter = new RateLimiter(limits(60, 1_000_000), T0);
    limiter.acquire("p", 1, T0);
    assertThat(limiter.acquire("p", 1, T0).kind()).isEqualTo(Kind.RATE_LIMITED);
    limiter.reset();
    assertThat(limiter.acquire("p", 1, T0).kind()).isEqualTo(Kind.ADMITTED);
  }
}
