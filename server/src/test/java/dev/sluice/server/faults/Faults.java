package dev.sluice.server.faults;

import dev.sluice.server.FaultProxy;
import dev.sluice.server.redis.RedisProcess;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Function;

/** The faults of issue 24's table, each a {@link FaultRun.Fault}. */
final class Faults {

  private Faults() {}

  private static FaultRun.Fault of(String name, ThrowingPlay play) {
    return new FaultRun.Fault() {
      @Override
      public String name() {
        return name;
      }

      @Override
      public long play(FaultRun run) throws Exception {
        return play.play(run);
      }
    };
  }

  private interface ThrowingPlay {
    long play(FaultRun run) throws Exception;
  }

  /** {@code CLIENT PAUSE <d> ALL} on the standalone Redis; back when the pause ends. */
  static FaultRun.Fault stall(Duration d) {
    return of("redis stall " + d.toMillis() + " ms", run -> {
      long start = System.nanoTime();
      run.redis.get(0).pause(d);
      FaultRun.sleepUntil(start + d.toNanos());
      return start + d.toNanos();
    });
  }

  /** kill -9, then after {@code down} a restart: empty, or from its AOF; back when it answers. */
  static FaultRun.Fault killRestart(Duration down, boolean fromDisk) {
    return of("redis kill -9, " + (fromDisk ? "AOF" : "empty") + " restart after " + down.toMillis() + " ms", run -> {
      RedisProcess r = run.redis.get(0);
      run.history.counterMayReset |= !fromDisk;
      r.kill();
      TimeUnit.NANOSECONDS.sleep(down.toNanos());
      if (fromDisk) {
        r.relaunch();
      } else {
        r.restart();
      }
      return System.nanoTime();
    });
  }

  /** Something done to one proxy for {@code d}, then {@link FaultProxy#restore()}. */
  private static FaultRun.Fault proxy(String name, Function<FaultRun, FaultProxy> which, Consumer<FaultProxy> fault,
      Duration d) {
    return of(name + " " + d.toMillis() + " ms", run -> {
      FaultProxy p = which.apply(run);
      fault.accept(p);
      TimeUnit.NANOSECONDS.sleep(d.toNanos());
      p.restore();
      return System.nanoTime();
    });
  }

  /** Node {@code i}'s replies from Redis are held; its commands still run. */
  static FaultRun.Fault storeRepliesLost(int node, Duration d) {
    return proxy("node " + (node + 1) + "'s replies from redis lost", r -> r.storeProxies.get(node),
        FaultProxy::holdReplies, d);
  }

  /** Node {@code i} cut off from Redis both ways. */
  static FaultRun.Fault storeCut(int node, Duration d) {
    return proxy("node " + (node + 1) + " cut off from redis", r -> r.storeProxies.get(node), FaultProxy::blackhole, d);
  }

  /** The workers cut off from node {@code i} both ways; the node keeps its store. */
  static FaultRun.Fault clientCut(int node, Duration d) {
    return proxy("workers cut off from node " + (node + 1), r -> r.clientProxies.get(node), FaultProxy::blackhole, d);
  }

  /** The workers lose node {@code i}'s replies. */
  static FaultRun.Fault clientRepliesLost(int node, Duration d) {
    return proxy("workers lose node " + (node + 1) + "'s replies", r -> r.clientProxies.get(node),
        FaultProxy::holdReplies, d);
  }

  /** Node {@code i}'s Redis connection: every chunk held {@code delay} ms, for {@code d}. */
  static FaultRun.Fault storeDelay(int node, int delayMillis, Duration d) {
    return of("node " + (node + 1) + "'s redis link delayed " + delayMillis + " ms for " + d.toMillis() + " ms",
        run -> {
          FaultProxy p = run.storeProxies.get(node);
          p.delay(delayMillis);
          TimeUnit.NANOSECONDS.sleep(d.toNanos());
          p.delay(0);
          return System.nanoTime();
        });
  }

  /** Node {@code i}'s connections to Redis reset (RST) at once; back at once. */
  static FaultRun.Fault storeReset(int node) {
    return of("node " + (node + 1) + "'s redis connections reset", run -> {
      run.storeProxies.get(node).resetAll();
      return System.nanoTime();
    });
  }

  /** kill -9 of the Sentinel-managed primary; back when every sentinel names the new one. */
  static FaultRun.Fault sentinelFailover() {
    return of("sentinel failover (primary kill -9)", run -> {
      RedisProcess primary = run.redis.get(0);
      int old = primary.port();
      primary.kill();
      FaultRun.awaitTrue("the sentinels promote the replica", Duration.ofSeconds(30), () ->
          run.sentinels.stream().allMatch(s -> FaultRun.Lettuce.sentinelMasterPort(s, FaultRun.MASTER) != old));
      return System.nanoTime();
    });
  }

  /** kill -9 of the primary owning the resource's slot; back when its replica serves the slot. */
  static FaultRun.Fault clusterFailover() {
    return of("cluster primary kill -9", run -> {
      int slot = slot(run);
      RedisProcess owner = owner(run, slot);
      String ownerId = FaultRun.Lettuce.nodeId(owner);
      owner.kill();
      List<RedisProcess> rest = run.redis.stream().filter(r -> r != owner).toList();
      FaultRun.awaitTrue("a replica takes the slot and the cluster is ok", Duration.ofSeconds(30), () ->
          rest.stream().allMatch(n -> FaultRun.Lettuce.with(n, c -> c.clusterInfo().contains("cluster_state:ok")
              && !slotOwnerId(c.clusterSlots(), slot).equals(ownerId) && !slotOwnerId(c.clusterSlots(), slot).isEmpty())));
      return System.nanoTime();
    });
  }

  /**
   * Resharding of the resource's slot to another primary under load, as redis-cli does it:
   * IMPORTING on the target, MIGRATING on the source, MIGRATE its keys one by one spread over
   * {@code spread}, then SETSLOT NODE on every primary. Back after the last SETSLOT.
   */
  static FaultRun.Fault slotMigration(Duration spread) {
    return of("slot migration over " + spread.toMillis() + " ms", run -> {
      int slot = slot(run);
      RedisProcess source = owner(run, slot);
      List<RedisProcess> masters = run.redis.subList(0, 3);
      RedisProcess target = masters.stream().filter(m -> m != source).findFirst().orElseThrow();
      String sourceId = FaultRun.Lettuce.nodeId(source);
      String targetId = FaultRun.Lettuce.nodeId(target);
      FaultRun.Lettuce.with(target, c -> c.clusterSetSlotImporting(slot, sourceId));
      FaultRun.Lettuce.with(source, c -> c.clusterSetSlotMigrating(slot, targetId));
      List<String> keys = FaultRun.Lettuce.with(source, c -> c.clusterGetKeysInSlot(slot, 1000));
      long pause = spread.toNanos() / Math.max(1, keys.size());
      for (String key : keys) {
        FaultRun.Lettuce.with(source, c -> c.migrate("127.0.0.1", target.port(), key, 0, 5_000));
        TimeUnit.NANOSECONDS.sleep(pause);
      }
      // Keys the engine wrote meanwhile on the source (still its slot for existing keys).
      List<String> late = FaultRun.Lettuce.with(source, c -> c.clusterGetKeysInSlot(slot, 1000));
      for (String key : late) {
        FaultRun.Lettuce.with(source, c -> c.migrate("127.0.0.1", target.port(), key, 0, 5_000));
      }
      for (RedisProcess m : masters) {
        FaultRun.Lettuce.with(m, c -> c.clusterSetSlotNode(slot, targetId));
      }
      return System.nanoTime();
    });
  }

  private static int slot(FaultRun run) {
    return FaultRun.Lettuce.with(run.redis.get(0), c -> c.clusterKeyslot(FaultRun.RESOURCE).intValue());
  }

  private static RedisProcess owner(FaultRun run, int slot) {
    String id = FaultRun.Lettuce.with(run.redis.get(0), c -> slotOwnerId(c.clusterSlots(), slot));
    return run.redis.stream().filter(r -> r.running() && FaultRun.Lettuce.nodeId(r).equals(id)).findFirst()
        .orElseThrow(() -> new IllegalStateException("no live primary owns slot " + slot));
  }

  /** The master node id serving {@code slot} in a CLUSTER SLOTS reply, or "" if none. */
  @SuppressWarnings("unchecked")
  private static String slotOwnerId(List<Object> slots, int slot) {
    for (Object o : slots) {
      List<Object> range = (List<Object>) o;
      long from = (Long) range.get(0);
      long to = (Long) range.get(1);
      if (slot >= from && slot <= to) {
        List<Object> master = (List<Object>) range.get(2);
        return master.size() > 2 ? String.valueOf(master.get(2)) : "";
      }
    }
    return "";
  }
}
