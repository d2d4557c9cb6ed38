package dev.sluice.buffers;

import io.lettuce.core.api.StatefulConnection;
import io.lettuce.core.cluster.api.async.RedisClusterAsyncCommands;
import io.lettuce.core.cluster.api.sync.RedisClusterCommands;

/**
 * The Redis every node shares, as the shared buffers use it: the coordinator's own connection
 * (one client for the engine, the API keys and the buffers), and a connection of their own for
 * the blocking stream reads.
 */
public interface SharedRedis {

  /** This node's id: the name a buffer's delivery lease is held under. */
  String nodeId();

  /** The store as log lines and errors name it (no password). */
  String describe();

  RedisClusterCommands<String, String> sync();

  RedisClusterAsyncCommands<String, String> async();

  /** A new connection, for blocking reads; the caller closes it. */
  StatefulConnection<String, String> openConnection();

  /** Whether the store is a Redis Cluster (one XREAD's streams must then share a slot). */
  boolean isCluster();
}
