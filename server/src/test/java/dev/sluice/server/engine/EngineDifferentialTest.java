package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The differential test: seeded scripts of worker and admin operations run in lockstep against a
 * {@link MemoryEngine} and a {@link RedisEngine} on a real redis-server, each on its own {@link
 * FakeClock} advanced by the same steps; after every step {@link Lockstep} compares everything the
 * two stores can be seen to do (see there). The scheduler exists twice, in Java and in Lua; this
 * is what keeps the two one algorithm.
 *
 * <p>Each script runs on a resource of its own, so one pair of engines serves the whole run. A
 * failing script is shrunk (steps removed while it still diverges) and printed as a test ready
 * to paste into {@code EngineDifferentialRegressionTest}.
 *
 * <p>Budget: {@code -Dsluice.diff.seconds=N} (CI: 15 s), at least {@code -Dsluice.diff.scripts=N}
 * scripts (CI: 600) whatever the time; {@code -Dsluice.diff.seed=N} replays from one seed.
 */
class EngineDifferentialTest {

  private static final long BASE_SEED = Long.getLong("sluice.diff.seed", 20261204L);
  private static final long SECONDS = Long.getLong("sluice.diff.seconds", 15);
  private static final int MIN_SCRIPTS = Integer.getInteger("sluice.diff.scripts", 600);

  private static Lockstep.Pair engines;

  @BeforeAll
  static void start() throws Exception {
    engines = Lockstep.Pair.start();
  }

  @AfterAll
  static void stop() {
    if (engines != null) {
      engines.close();
    }
  }

  @Test
  void memoryAndRedisAgreeStepByStep() {
    long deadline = System.nanoTime() + Duration.ofSeconds(SECONDS).toNanos();
    int scripts = 0;
    long steps = 0;
    long grants = 0;
    AtomicInteger names = new AtomicInteger();
    while (scripts < MIN_SCRIPTS || System.nanoTime() - deadline < 0) {
      long seed = BASE_SEED + scripts;
      Random random = new Random(seed);
      Lockstep.Setup setup = Lockstep.Setup.random(random);
      List<Lockstep.Step> script = Lockstep.script(random);
      setup = setup.withRandomJitter(new Random(~seed)).withRandomPool(new Random(seed * 31 + 7))
          .withRandomTemplate(new Random(seed * 17 + 3)).withRandomHold(new Random(seed * 13 + 5));
      Lockstep.Result result = Lockstep.run(engines, "diff-" + names.incrementAndGet(), setup, script);
      if (result.divergence() != null) {
        List<Lockstep.Step> shortest = shrink(setup, script, names);
        Lockstep.Result again = Lockstep.run(engines, "diff-" + names.incrementAndGet(), setup, shortest);
        throw new AssertionError(
            "memory and Redis diverged, seed " + seed + " (-Dsluice.diff.seed=" + seed
                + " -Dsluice.diff.scripts=1 -Dsluice.diff.seconds=0)\n  first run: "
                + result.divergence() + "\n  shortest script (" + shortest.size() + " of "
                + script.size() + " steps): " + again.divergence() + "\n\n"
                + Lockstep.asTest(seed, setup, shortest));
      }
      scripts++;
      steps += result.steps();
      grants += result.grants();
      if (scripts % 500 == 0) {
        System.out.printf("differential: %d scripts, %d steps, %d grants compared%n", scripts, steps, grants);
      }
    }
    System.out.printf(
        "differential: %d scripts, %d steps, %d grants compared, memory and Redis agree%n",
        scripts, steps, grants);
    // A generator that stopped granting or queueing would make agreement vacuous.
    assertThat(grants).as("grants compared").isGreaterThan(scripts * 2L);
  }

  /** Removes steps, one at a time from the end, for as long as the script still diverges. */
  private static List<Lockstep.Step> shrink(
      Lockstep.Setup setup, List<Lockstep.Step> script, AtomicInteger names) {
    List<Lockstep.Step> current = new ArrayList<>(script);
    boolean progress = true;
    while (progress) {
      progress = false;
      for (int i = current.size() - 1; i >= 0; i--) {
        List<Lockstep.Step> shorter = new ArrayList<>(current);
        shorter.remove(i);
        if (Lockstep.run(engines, "diff-" + names.incrementAndGet(), setup, shorter).divergence() != null) {
          current = shorter;
          progress = true;
        }
      }
    }
    return current;
  }
}
