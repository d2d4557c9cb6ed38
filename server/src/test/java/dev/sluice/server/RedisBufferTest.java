package dev.sluice.server;

import dev.sluice.server.redis.RedisProcess;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;

/**
 * Every {@link BufferTest} again with buffers on a real {@code redis-server} (distributed mode:
 * Redis Streams, a delivery lease): the same order, pacing, 429 feedback, retries and refusals.
 */
class RedisBufferTest extends BufferTest {

  private static RedisProcess redis;

  @BeforeAll
  static void startRedis() throws InterruptedException {
    redis = RedisProcess.start();
  }

  @AfterAll
  static void stopRedis() {
    redis.close();
  }

  @BeforeEach
  @Override
  void start() throws Exception {
    redis.flushAll();
    super.start();
  }

  @Override
  SluiceServer.Builder configure(SluiceServer.Builder b) {
    return b.store(redis.uri());
  }
}
