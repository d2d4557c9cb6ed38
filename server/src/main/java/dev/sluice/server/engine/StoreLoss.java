package dev.sluice.server.engine;

import io.lettuce.core.RedisException;
import java.security.SecureRandom;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Finds out that Redis lost the store's data, however Redis came back, and recovers.
 *
 * <p>The store carries a marker key, {@code sluice:meta}, whose value names one generation of
 * the data: a random token written by the node that created it. Each node remembers the value
 * it last saw. A check reads the marker: the same value is the same data; no value, or another
 * one, means the data this node knew is gone (a restart without persistence, a failover to an
 * empty replica, FLUSHALL). That second case makes the check race-free across nodes: the first
 * node to find the marker gone writes a new generation (SETNX, so one writer wins) and every
 * other node, however late it checks, still sees a value it does not know and recovers too. A
 * node that checked before any restore and one that checked after both end their waiters.
 *
 * <p>Recovery: every limit the node last knew is written back only if absent (the script's
 * {@code setlimit} with only-if-absent, atomic), so concurrent restores write each limit once;
 * buckets start empty, exactly as after a restart of a single node. Then the waiters parked on
 * this node before the check end with UNAVAILABLE, which the SDK retries: their line in Redis
 * is gone, and a retry joins the restored one.
 *
 * <p>When: housekeeping checks every second, and any hint that Redis may be another process
 * checks at once ({@link #suspect}): a connection opened again, a NOSCRIPT reply, or a limit
 * this node knew answered NOT_FOUND without a deletion it heard of. A changed {@code run_id}
 * with the marker intact is a restart from disk or a failover that kept the data, logged at
 * INFO. Checks are coalesced and run one at a time, off Lettuce's event loop.
 */
final class StoreLoss {

  private static final Logger log = LoggerFactory.getLogger(RedisEngine.class);
  static final String META_KEY = "sluice:meta";
  /** The reason housekeeping gives: its checks skip the run_id (one command fewer a second). */
  static final String HOUSEKEEPING = "housekeeping";

  private final RedisStore store;
  private final RedisLimits limits;
  private final RedisWaiters waiters;
  private final Function<LimitSpec, CompletableFuture<Boolean>> restore;
  private final Executor executor;
  private final AtomicBoolean queued = new AtomicBoolean();
  private final Set<String> vanished = ConcurrentHashMap.newKeySet();
  private final SecureRandom random = new SecureRandom();
  private String marker; // guarded by this
  private String runId; // guarded by this
  private volatile long losses;

  /**
   * @param restore writes a limit only if absent; true if it wrote it
   * @param executor where suspected restarts are checked: may wait for Redis
   */
  StoreLoss(RedisStore store, RedisLimits limits, RedisWaiters waiters,
      Function<LimitSpec, CompletableFuture<Boolean>> restore, Executor executor) {
    this.store = store;
    this.limits = limits;
    this.waiters = waiters;
    this.restore = restore;
    this.executor = executor;
  }

  /** Adopts the store's generation, creating it on a new store; then listens for hints. */
  synchronized void start() {
    marker = claim("created");
    runId = store.runId();
    store.onSuspectedRestart(this::suspect);
    limits.onVanished(this::vanished);
  }

  /** How many losses this node has recovered from. */
  long losses() {
    return losses;
  }

  /** A limit this node knew answered NOT_FOUND with no deletion heard of: check the store. */
  private void vanished(String resource) {
    vanished.add(resource);
    suspect("the limit of '" + resource + "' is gone from Redis");
  }

  /** Checks the store soon, on the executor; calls made meanwhile share the one check. */
  void suspect(String why) {
    if (!queued.compareAndSet(false, true)) {
      return;
    }
    try {
      executor.execute(() -> {
        queued.set(false);
        try {
          check(why);
        } catch (RuntimeException e) {
          log.debug("store check after '{}' failed: {}", why, e.toString());
        }
      });
    } catch (RejectedExecutionException e) {
      queued.set(false); // shutting down
    }
  }

  /**
   * Reads the marker and recovers if the data this node knew is gone; waits for Redis.
   *
   * @return true if it found a loss
   * @throws EngineException UNAVAILABLE if Redis cannot be reached
   */
  synchronized boolean check(String why) {
    String seen = get();
    if (seen != null && seen.equals(marker)) {
      if (!HOUSEKEEPING.equals(why)) {
        noteRunId();
      }
      settleVanished();
      return false;
    }
    long before = waiters.arrivalMark();
    String how = seen == null
        ? "marker " + META_KEY + " is gone"
        : "marker " + META_KEY + " holds another generation: another node found the loss first";
    marker = seen == null ? claim("restored") : seen;
    Map<String, LimitSpec> known = limits.lastKnown();
    log.error(
        "REDIS LOST ITS DATA ({}; noticed because {}): restoring the {} limits this node last knew;"
            + " buckets start empty, waiters parked here end with UNAVAILABLE and retry. Check the"
            + " limits with `sluice limit list`",
        how, why, known.size());
    int restored = 0;
    for (LimitSpec spec : known.values()) {
      try {
        if (restore.apply(spec).join()) {
          restored++;
        }
      } catch (RuntimeException e) {
        log.error("could not restore the limit of '{}': {}", spec.resource(), e.toString());
      }
    }
    losses++;
    vanished.clear();
    runId = store.runId();
    log.error("restored {} limits into the empty Redis (the others already were, by another node)", restored);
    waiters.failAll(() -> new EngineException(EngineException.Reason.UNAVAILABLE,
        "the store lost its data while this acquire waited: retry"), before);
    // After the waiters heard: the templates this node knew go back too (none: no call).
    try {
      int templates = limits.restoreTemplates();
      if (templates > 0) {
        log.error("restored {} templates into the empty Redis", templates);
      }
    } catch (RuntimeException e) {
      log.error("could not restore the templates: {}", e.toString());
    }
    return true;
  }

  /** The marker's value, or null. */
  private String get() {
    try {
      String v = store.sync().get(META_KEY);
      store.markReachable();
      return v;
    } catch (RedisException e) {
      throw store.unavailable(e);
    }
  }

  /** Writes a new generation if none is there and returns the one that is (ours or a rival's). */
  private String claim(String verb) {
    String ours = "sluice store " + Long.toHexString(random.nextLong()) + ", " + verb + " by node "
        + store.nodeId() + " at " + System.currentTimeMillis();
    try {
      store.sync().setnx(META_KEY, ours);
    } catch (RedisException e) {
      throw store.unavailable(e);
    }
    String now = get();
    return now != null ? now : ours;
  }

  private void noteRunId() {
    String now = store.runId();
    if (now != null && runId != null && !now.equals(runId)) {
      log.info("Redis at {} is another process now (run_id {} -> {}) and kept the store's data"
          + " (persistence, or a failover to an up-to-date replica)", store.describe(), runId, now);
    }
    if (now != null) {
      runId = now;
    }
  }

  /** The store kept its data: a vanished limit was deleted by another node, unheard. */
  private void settleVanished() {
    for (String resource : Set.copyOf(vanished)) {
      vanished.remove(resource);
      if (limits.fetch(resource) == null) {
        limits.deleted(resource);
      }
    }
  }
}
