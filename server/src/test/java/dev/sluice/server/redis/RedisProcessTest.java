package dev.sluice.server.redis;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisURI;
import io.lettuce.core.api.StatefulRedisConnection;
import io.lettuce.core.api.sync.RedisCommands;
import java.io.IOException;
import java.io.InputStream;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The fixture itself: a real server that answers, dies on {@code kill()}, and comes back empty. */
class RedisProcessTest {

  private static RedisClient client;

  @BeforeAll
  static void createClient() {
    client = RedisClient.create();
  }

  @AfterAll
  static void shutdownClient() {
    client.shutdown();
  }

  @Test
  void startsAndAnswersPingOnARawSocket() throws Exception {
    try (RedisProcess redis = RedisProcess.start()) {
      assertThat(RedisProcess.binary()).isNotBlank();
      assertThat(redis.uri()).isEqualTo("redis://127.0.0.1:" + redis.port());
      assertThat(rawCommand(redis.port(), "PING")).isEqualTo("+PONG");
    }
  }

  @Test
  void setAndGetRoundTripThroughLettuce() throws Exception {
    try (RedisProcess redis = RedisProcess.start();
        StatefulRedisConnection<String, String> connection = connect(redis)) {
      RedisCommands<String, String> commands = connection.sync();
      assertThat(commands.set("sluice:key", "value")).isEqualTo("OK");
      assertThat(commands.get("sluice:key")).isEqualTo("value");

      redis.flushAll();
      assertThat(commands.get("sluice:key")).isNull();
    }
  }

  @Test
  void killMakesThePortRefuseConnections() throws Exception {
    try (RedisProcess redis = RedisProcess.start()) {
      int port = redis.port();
      redis.kill();

      assertThatThrownBy(() -> rawCommand(port, "PING")).isInstanceOf(ConnectException.class);
      redis.kill(); // idempotent
    }
  }

  @Test
  void restartComesBackEmptyOnTheSamePort() throws Exception {
    try (RedisProcess redis = RedisProcess.start()) {
      int port = redis.port();
      try (StatefulRedisConnection<String, String> connection = connect(redis)) {
        connection.sync().set("sluice:key", "before");
      }

      redis.kill();
      redis.restart();

      assertThat(redis.port()).isEqualTo(port);
      assertThat(rawCommand(port, "PING")).isEqualTo("+PONG");
      try (StatefulRedisConnection<String, String> connection = connect(redis)) {
        assertThat(connection.sync().get("sluice:key")).isNull();
        assertThat(connection.sync().dbsize()).isZero();
      }
    }
  }

  @Test
  void restartWhileRunningAlsoEmptiesIt() throws Exception {
    try (RedisProcess redis = RedisProcess.start()) {
      try (StatefulRedisConnection<String, String> connection = connect(redis)) {
        connection.sync().set("sluice:key", "before");
      }

      redis.restart();

      try (StatefulRedisConnection<String, String> connection = connect(redis)) {
        assertThat(connection.sync().dbsize()).isZero();
      }
    }
  }

  @Test
  void closeKillsTheServerAndRemovesItsDirectory() throws Exception {
    RedisProcess redis = RedisProcess.start();
    Path dir = redis.dir();
    int port = redis.port();
    assertThat(dir.resolve("redis.log")).isRegularFile();

    redis.close();
    redis.close(); // idempotent

    assertThat(Files.exists(dir)).isFalse();
    assertThatThrownBy(() -> rawCommand(port, "PING")).isInstanceOf(ConnectException.class);
    assertThatThrownBy(redis::restart).isInstanceOf(IllegalStateException.class);
  }

  @Test
  void twoInstancesGetDifferentPorts() throws Exception {
    try (RedisProcess a = RedisProcess.start();
        RedisProcess b = RedisProcess.start()) {
      assertThat(a.port()).isNotEqualTo(b.port());
      assertThat(a.dir()).isNotEqualTo(b.dir());
    }
  }

  private static StatefulRedisConnection<String, String> connect(RedisProcess redis) {
    RedisURI uri = RedisURI.create(redis.uri());
    uri.setTimeout(Duration.ofSeconds(5));
    return client.connect(uri);
  }

  /** Independent of the fixture's own PING: one inline command, first reply line. */
  private static String rawCommand(int port, String command) throws IOException {
    try (Socket socket = new Socket()) {
      socket.connect(new InetSocketAddress("127.0.0.1", port), 2_000);
      socket.setSoTimeout(5_000);
      socket.getOutputStream().write((command + "\r\n").getBytes(StandardCharsets.US_ASCII));
      InputStream in = socket.getInputStream();
      StringBuilder line = new StringBuilder();
      for (int c = in.read(); c != -1 && c != '\n'; c = in.read()) {
        if (c != '\r') {
          line.append((char) c);
        }
      }
      return line.toString();
    }
  }
}
