package dev.sluice.server.faults;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Issue 24's table, one row per test, scaled down: two nodes on one store, 60 requests/s burst 6
 * (cap 10), 24 workers, the fault 3 s in; every history goes through {@link History#check}.
 *
 * <p>Rows the engine fails today carry {@code @Tag("fault-known")}: the server module's surefire
 * configuration leaves that tag out of the default run (see server/pom.xml, issue 24) until the
 * engine's fixes land; {@code -Dgroups=fault-known} runs them. {@code
 * -Dsluice.faults.campaign=N} runs a seeded campaign of N faults ({@code -Dsluice.faults.seed}
 * to replay one).
 */
class StoreFaultsTest {

  private static final Duration AT = Duration.ofSeconds(3);
  private static final Duration TAIL = Duration.ofMillis(3_500); // recovery check ends back + 3 s

  private static void row(FaultRun.Topology topology, FaultRun.Fault fault) throws Exception {
    long seed = System.nanoTime();
    try (FaultRun run = new FaultRun(topology, seed)) {
      History h = run.run(List.of(new FaultRun.Step(AT, fault)), TAIL);
      List<String> violations = h.check(FaultRun.LIMIT);
      String report = h.report(fault.name(), FaultRun.LIMIT, violations);
      System.out.println(report);
      assertThat(violations).as(report).isEmpty();
    }
  }

  /** The control: no fault, a clean history (and the checker's figures for the baseline). */
  @Test
  void noFault() throws Exception {
    row(FaultRun.Topology.STANDALONE, Faults.storeDelay(0, 0, Duration.ZERO));
  }

  // Failing today (issue 24, measured once each): the stall, the Sentinel and Cluster
  // failovers, the slot migration and the AOF restart; the checker's output is in the issue's
  // note. Lost waiters come from the SDK cutting calls off a NOT_SERVING node (NodeProber) while
  // both nodes' store is away; the Cluster engine has no topology refresh (RedisEngine's
  // ClusterClientOptions); grants beyond the callers' count come from retried request ids.
  @Test
  @Tag("fault-known")
  void redisStall() throws Exception {
    row(FaultRun.Topology.STANDALONE, Faults.stall(Duration.ofSeconds(3)));
  }

  @Test
  @Tag("fault-known")
  void sentinelFailover() throws Exception {
    row(FaultRun.Topology.SENTINEL, Faults.sentinelFailover());
  }

  /**
   * Grants resume 0.01-0.08 s after the cluster is ok, no waiter lost (13 runs clean). It needs
   * the adaptive topology refresh (RedisStore#CLUSTER_REFRESH) and, in one run in three to six,
   * the refresh a stale view's refusal asks for (RedisStore#refreshTopology): Lettuce's refresh
   * took the view of a node that had not yet marked the killed primary failing, and routed the
   * slot to it until the periodic refresh, 4 s after the cluster was ok.
   */
  @Test
  void clusterPrimaryFailover() throws Exception {
    row(FaultRun.Topology.CLUSTER, Faults.clusterFailover());
  }

  @Test
  void clusterSlotMigrationUnderLoad() throws Exception {
    row(FaultRun.Topology.CLUSTER, Faults.slotMigration(Duration.ofSeconds(3)));
  }

  @Test
  void redisKilledRestartedEmpty() throws Exception {
    row(FaultRun.Topology.STANDALONE, Faults.killRestart(Duration.ofSeconds(3), false));
  }

  @Test
  @Tag("fault-known")
  void redisKilledRestartedFromAof() throws Exception {
    row(FaultRun.Topology.STANDALONE_AOF, Faults.killRestart(Duration.ofSeconds(3), true));
  }

  /**
   * Fails about one run in three today: an acquire whose grant Redis made while the node lost
   * the reply ends in a timeout, so the grant went to no caller (coordinator grants 550 vs 547
   * callers in one run). Safe for the limit, but a lost grant: issue 24's "a command that timed
   * out at the node may still have run in Redis".
   */
  @Test
  @Tag("fault-known")
  void nodeLosesRedisReplies() throws Exception {
    row(FaultRun.Topology.STANDALONE, Faults.storeRepliesLost(0, Duration.ofSeconds(4)));
  }

  @Test
  void nodeCutOffFromRedis() throws Exception {
    row(FaultRun.Topology.STANDALONE, Faults.storeCut(0, Duration.ofSeconds(4)));
  }

  @Test
  void workersCutOffFromANode() throws Exception {
    row(FaultRun.Topology.STANDALONE, Faults.clientCut(0, Duration.ofSeconds(4)));
  }

  @Test
  void workersLoseANodesReplies() throws Exception {
    row(FaultRun.Topology.STANDALONE, Faults.clientRepliesLost(0, Duration.ofSeconds(4)));
  }

  /**
   * A seeded campaign: runs of four faults each from the standalone menu at random moments,
   * until {@code sluice.faults.campaign} faults have been played. Prints every run's report and
   * fails on the first dirty history.
   */
  @Test
  @EnabledIfSystemProperty(named = "sluice.faults.campaign", matches = "[1-9][0-9]*")
  void campaign() throws Exception {
    int total = Integer.getInteger("sluice.faults.campaign");
    long seed = Long.getLong("sluice.faults.seed", System.nanoTime());
    Random random = new Random(seed);
    List<FaultRun.Fault> menu = List.of(
        Faults.stall(Duration.ofMillis(500 + random.nextInt(2500))),
        Faults.killRestart(Duration.ofMillis(200 + random.nextInt(2800)), false),
        Faults.storeRepliesLost(random.nextInt(2), Duration.ofMillis(500 + random.nextInt(3500))),
        Faults.storeCut(random.nextInt(2), Duration.ofMillis(500 + random.nextInt(3500))),
        Faults.storeDelay(random.nextInt(2), 50 + random.nextInt(400), Duration.ofSeconds(2)),
        Faults.storeReset(random.nextInt(2)),
        Faults.clientCut(random.nextInt(2), Duration.ofMillis(500 + random.nextInt(3500))),
        Faults.clientRepliesLost(random.nextInt(2), Duration.ofMillis(500 + random.nextInt(3500))));
    int played = 0;
    int dirty = 0;
    for (int r = 0; played < total; r++) {
      long runSeed = random.nextLong();
      int n = Math.min(4, total - played);
      List<FaultRun.Step> schedule = FaultRun.schedule(new Random(runSeed), menu, n, AT, Duration.ofSeconds(6));
      try (FaultRun run = new FaultRun(FaultRun.Topology.STANDALONE, runSeed)) {
        History h = run.run(schedule, TAIL);
        List<String> violations = h.check(FaultRun.LIMIT);
        System.out.println("campaign seed " + seed + " run " + r + ":\n"
            + h.report("run " + r, FaultRun.LIMIT, violations));
        dirty += violations.isEmpty() ? 0 : 1;
      }
      played += n;
    }
    assertThat(dirty).as("dirty runs in a campaign of " + total + " faults, seed " + seed).isZero();
  }
}
