package dev.sluice.examples.mock;

import dev.sluice.examples.mock.MockOpenAi.Stats;
import java.util.function.LongSupplier;
import java.util.function.UnaryOperator;

/**
 * The mock's state — limits, meters and stats — behind one lock, with all time from the ticker. The
 * HTTP layer in {@link MockOpenAi} only parses, calls in here, and writes. One lock is plenty: a
 * decision is a few arithmetic operations, and it makes admission and its bookkeeping atomic, so
 * the 60 s peaks see admissions in time order.
 */
final class Engine {

  private final LongSupplier ticker;
  private final RateLimiter limiter;
  private final AnthropicLimiter anthropic;
  private final StatsRecorder stats;
  /** The latest arrival a decision was stamped with (see {@link #admit(String, long, String, long)}). */
  private long lastArrival = Long.MIN_VALUE;

  Engine(Stats.Limits limits, LongSupplier ticker) {
    this(limits, AnthropicLimiter.DEFAULTS, ticker);
  }

  Engine(Stats.Limits limits, AnthropicLimiter.Limits anthropic, LongSupplier ticker) {
    this.ticker = ticker;
    long now = ticker.getAsLong();
    this.limiter = new RateLimiter(limits, now);
    this.anthropic = new AnthropicLimiter(anthropic, limits.burstSeconds());
    this.stats = new StatsRecorder(now);
  }

  /** Decides on a chat completion that names no end user; see {@link #admit(String, long, String)}. */
  synchronized Decision admit(String project, long charge) {
    return admit(project, charge, null);
  }

  /**
   * Decides on a chat completion and records the outcome, also under {@code user} (the end user
   * the request names, or null); an admitted one is now in flight.
   */
  synchronized Decision admit(String project, long charge, String user) {
    return admit(project, charge, user, ticker.getAsLong());
  }

  /**
   * Decides on a chat completion that arrived at {@code arrivedAt} (the ticker's reading when its
   * exchange reached the handler): the upstream meters a request where it comes in, not once it
   * has been read and parsed, so a mock that is slow to parse (starved of CPU on a busy machine)
   * does not bunch requests that arrived apart. Decisions stay in time order: one made after a
   * later arrival's is stamped at that arrival.
   */
  synchronized Decision admit(String project, long charge, String user, long arrivedAt) {
    long now = Math.max(arrivedAt, lastArrival);
    lastArrival = now;
    Decision decision = limiter.acquire(project, charge, now);
    if (decision.kind() == Decision.Kind.ADMITTED) {
      stats.admitted(charge, now, user);
      stats.projectAdmitted(project, charge, now);
    } else {
      stats.rejected(decision.reason());
      if (decision.kind() != Decision.Kind.INSUFFICIENT_QUOTA) {
        stats.rateLimited(user);
        stats.projectRateLimited(project, now);
      }
    }
    return decision;
  }

  /**
   * Decides on an Anthropic Messages call and records the outcome as {@link #admit} does; its
   * charge in the stats is its input tokens plus its {@code max_tokens}.
   */
  synchronized AnthropicLimiter.Verdict admitMessage(String key, long inputTokens, long maxTokens) {
    long now = ticker.getAsLong();
    AnthropicLimiter.Verdict verdict = anthropic.acquire(key, inputTokens, maxTokens, now);
    switch (verdict.kind()) {
      case ADMITTED -> stats.admitted(inputTokens + maxTokens, now, null);
      case TOO_LARGE -> stats.rejected("too_large");
      default -> stats.rejected(verdict.refusedOn().statsKey());
    }
    return verdict;
  }

  /** An admitted Messages call is answered: its unused output budget goes back to its key's OTPM. */
  synchronized void finishedMessage(String key, long inputTokens, long maxTokens, long outputTokens) {
    anthropic.finished(key, maxTokens, outputTokens, ticker.getAsLong());
    stats.finished(inputTokens + outputTokens);
  }

  synchronized AnthropicLimiter.Limits anthropicLimits() {
    return anthropic.limits();
  }

  /** Records a request refused before admission: {@code unauthorized} or {@code bad_request}. */
  synchronized void refused(String reason) {
    stats.rejected(reason);
  }

  /** An admitted request is answered (or abandoned, with 0 tokens). */
  synchronized void finished(long totalTokens) {
    stats.finished(totalTokens);
  }

  synchronized Stats stats() {
    return stats.snapshot(limiter.limits());
  }

  synchronized Stats.Limits limits() {
    return limiter.limits();
  }

  /** Zeroes the stats and refills every project's meters. */
  synchronized void reset() {
    long now = ticker.getAsLong();
    limiter.reset();
    anthropic.reset();
    stats.reset(now);
  }

  /** The limits one project is held to. */
  synchronized Stats.Limits limitsOf(String project) {
    return limiter.limitsOf(project);
  }

  /** Applies {@code change} to one project's limits; see {@link RateLimiter#setProjectLimits}. */
  synchronized Stats.Limits updateProjectLimits(String project, UnaryOperator<Stats.Limits> change) {
    Stats.Limits next = change.apply(limiter.limitsOf(project));
    limiter.setProjectLimits(project, next, ticker.getAsLong());
    return next;
  }

  /** Applies {@code change} to the current limits; see {@link RateLimiter#setLimits}. */
  synchronized Stats.Limits updateLimits(UnaryOperator<Stats.Limits> change) {
    Stats.Limits next = change.apply(limiter.limits());
    limiter.setLimits(next, ticker.getAsLong());
    return next;
  }
}
