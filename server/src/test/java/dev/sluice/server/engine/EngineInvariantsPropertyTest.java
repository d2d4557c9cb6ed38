package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.engine.EngineInvariants.Op;
import dev.sluice.server.engine.EngineInvariants.Setup;
import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * Property-based tests: random interleavings of acquire, cancel, release, settle, give-back,
 * renew, lease expiry, pause, resume, upstream reports and limit changes on a fake clock,
 * against each engine; {@link EngineInvariants} says what is checked after every step.
 *
 * <p>Scripts come from a seeded {@link Random}, so a run is reproducible: a failure names its
 * seed and the shortest script (ops removed one by one while it still fails) that breaks the
 * property. {@code -Dsluice.prop.seed=N} replays one seed; {@code -Dsluice.prop.tries=N} runs
 * more scripts than CI's.
 */
class EngineInvariantsPropertyTest {

  private static final long BASE_SEED = Long.getLong("sluice.prop.seed", 20261123L);
  private static final int MEMORY_TRIES = Integer.getInteger("sluice.prop.tries", 400);
  private static final int REDIS_TRIES = Math.max(1, MEMORY_TRIES / 10);

  private static RedisProcess redis;

  @FunctionalInterface
  private interface EngineFactory {
    Engine create(FakeClock clock) throws Exception;
  }

  @Test
  void memoryEngineKeepsTheGuarantees() throws Exception {
    int granting = forEachScript(MEMORY_TRIES, clock -> MemoryEngine.builder().ticker(clock).scheduler(clock).build());
    // A generator that stopped producing grants would make every property hold vacuously.
    assertThat(granting).as("scripts that granted something").isGreaterThan(MEMORY_TRIES / 2);
  }

  /** The same properties against a real redis-server: fewer scripts, each is many round trips. */
  @Test
  void redisEngineKeepsTheGuarantees() throws Exception {
    redis = RedisProcess.start();
    int granting =
        forEachScript(
            REDIS_TRIES,
            clock -> {
              redis.flushAll();
              return RedisEngine.builder()
                  .uri(redis.uri())
                  .ticker(clock)
                  .scheduler(clock)
                  .housekeeping(Duration.ZERO)
                  .build();
            });
    assertThat(granting).isGreaterThan(REDIS_TRIES / 2);
  }

  @AfterAll
  static void stopRedis() {
    if (redis != null) {
      redis.close();
      redis = null;
    }
  }

  /** Runs {@code tries} scripts; returns how many granted something. */
  private static int forEachScript(int tries, EngineFactory engines) throws Exception {
    int granting = 0;
    for (int i = 0; i < tries; i++) {
      long seed = BASE_SEED + i;
      Random random = new Random(seed);
      Setup setup = setup(random);
      List<Op> ops = script(random);
      Throwable failure = runOnce(engines, setup, ops);
      if (failure != null) {
        List<Op> shortest = shrink(engines, setup, ops);
        AssertionError e =
            new AssertionError(
                "seed " + seed + " (-Dsluice.prop.seed=" + seed + " -Dsluice.prop.tries=1): "
                    + failure.getMessage() + "\n  setup " + setup + "\n  shortest failing script ("
                    + shortest.size() + " of " + ops.size() + " ops):\n    "
                    + String.join("\n    ", shortest.stream().map(Op::toString).toList()),
                runOnce(engines, setup, shortest));
        throw e;
      }
      if (lastGrants > 0) {
        granting++;
      }
    }
    return granting;
  }

  private static long lastGrants;

  private static Throwable runOnce(EngineFactory engines, Setup setup, List<Op> ops) throws Exception {
    FakeClock clock = new FakeClock();
    Engine engine = engines.create(clock);
    EngineInvariants run = new EngineInvariants(engine, clock, setup);
    try {
      run.run(ops);
      lastGrants = run.grants();
      return null;
    } catch (AssertionError | RuntimeException e) {
      return e;
    } finally {
      engine.close();
      engine.closeStore();
    }
  }

  /** Removes ops, one at a time, for as long as the script still fails. */
  private static List<Op> shrink(EngineFactory engines, Setup setup, List<Op> ops) throws Exception {
    List<Op> current = new ArrayList<>(ops);
    boolean progress = true;
    while (progress) {
      progress = false;
      for (int i = current.size() - 1; i >= 0; i--) {
        List<Op> shorter = new ArrayList<>(current);
        shorter.remove(i);
        if (runOnce(engines, setup, shorter) != null) {
          current = shorter;
          progress = true;
        }
      }
    }
    return current;
  }


  // ------------------------------------------------------------------------------ generators

  private static long between(Random r, long lo, long hi) {
    return lo + (long) (r.nextDouble() * (hi - lo + 1));
  }

  /** Usually a load that fits; one time in ten anything up to {@code rare}. */
  private static long mostlySmall(Random r, long usual, long rare) {
    return r.nextInt(10) == 0 ? between(r, 0, rare) : between(r, 0, usual);
  }

  private static <T> T oneOf(Random r, List<T> values) {
    return values.get(r.nextInt(values.size()));
  }

  static Setup setup(Random r) {
    return new Setup(
        between(r, 1, 20), // requests per period
        between(r, 1, 10), // requests burst
        between(r, 10, 500), // tokens per period
        between(r, 10, 100), // tokens burst
        oneOf(r, List.of(1_000L, 2_000L, 10_000L)), // period, ms
        between(r, 0, 4), // concurrency cap, 0 = none
        (int) between(r, 1, 12)); // waiting room
  }

  static List<Op> script(Random r) {
    int n = (int) between(r, 5, 60);
    List<Op> ops = new ArrayList<>(n + 1);
    // Limits start empty: most scripts first let the buckets fill for a while.
    ops.add(new Op.Advance(between(r, 0, 3_000)));
    for (int i = 0; i < n; i++) {
      int pick = r.nextInt(1_000);
      int kind = r.nextInt(30);
      Op op;
      if (kind < 10) {
        op =
            new Op.Acquire(
                r.nextInt(3),
                mostlySmall(r, 3, 12), // requests: sometimes above any burst
                r.nextInt(3) != 0,
                mostlySmall(r, 20, 120), // tokens: sometimes above any burst
                oneOf(r, List.of(0L, 200L, 3_000L, 60_000L)),
                r.nextBoolean());
      } else if (kind < 13) {
        op = new Op.Cancel(pick, r.nextBoolean());
      } else if (kind < 18) {
        op = new Op.Release(pick, r.nextInt(3), between(r, 0, 150));
      } else if (kind < 20) {
        op = new Op.Renew(pick);
      } else if (kind < 26) {
        // Short steps, and long ones past the 3 s lease.
        op = new Op.Advance(r.nextBoolean() ? between(r, 0, 300) : between(r, 300, 4_000));
      } else if (kind == 26) {
        op = new Op.Pause(oneOf(r, List.of(-1L, 0L, 500L, 3_000L)));
      } else if (kind == 27) {
        op = new Op.Resume();
      } else if (kind == 28) {
        op = new Op.Report(r.nextBoolean(), between(r, 0, 3_000), between(r, -1, 50));
      } else {
        op = new Op.SetLimit(between(r, 1, 20), between(r, 1, 10), between(r, 10, 100), between(r, 0, 4));
      }
      ops.add(op);
    }
    return ops;
  }
}
