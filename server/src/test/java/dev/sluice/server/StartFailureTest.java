package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.sluice.server.redis.RedisProcess;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A start that fails at any step says why in one line and leaves nothing behind: every thread
 * it started ends and, on Redis, every connection it opened is closed (issue 16: a port taken
 * or a key store that could not load left the Lettuce client, its pub/sub connection and the
 * engine's events executor running).
 */
class StartFailureTest {

  /** Threads a server may start, by name; pool numbering is dropped ("sluice-grpc-3-1" is "sluice-grpc"). */
  private static final Pattern SERVER_THREAD = Pattern.compile("(sluice-|lettuce-|grpc-|nioEventLoopGroup).*");
  private static final Pattern NUMBERING = Pattern.compile("(-\\d+)+$");
  private static final Pattern CONNECTED = Pattern.compile("connected_clients:(\\d+)");

  private static RedisProcess redis;

  @TempDir Path dataDir;
  private Map<String, Integer> threadsBefore;

  @BeforeAll
  static void startRedis() throws InterruptedException {
    redis = RedisProcess.start();
  }

  @AfterAll
  static void stopRedis() {
    redis.close();
  }

  @BeforeEach
  void countThreads() {
    threadsBefore = serverThreads();
  }

  private SluiceServer.Builder server() {
    return SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir);
  }

  @Test
  void portTaken() throws IOException {
    try (ServerSocket taken = takenPort()) {
      int port = taken.getLocalPort();
      assertFailsInOneLine(SluiceServer.builder().host("127.0.0.1").port(port).dataDir(dataDir).build(),
          "cannot listen on 127.0.0.1:" + port + " (", "): is another server using it? choose another --port");
    }
    assertNothingLeft();
  }

  @Test
  void portTakenOnRedis() throws IOException {
    int clients = connectedClients();
    try (ServerSocket taken = takenPort()) {
      int port = taken.getLocalPort();
      assertFailsInOneLine(
          SluiceServer.builder().host("127.0.0.1").port(port).dataDir(dataDir).store(redis.uri()).build(),
          "cannot listen on 127.0.0.1:" + port + " (", "): is another server using it? choose another --port");
    }
    assertNothingLeft();
    assertConnectionsBackTo(clients);
  }

  @Test
  void httpPortTakenOnRedis() throws IOException {
    int clients = connectedClients();
    try (ServerSocket taken = takenPort()) {
      int port = taken.getLocalPort();
      assertFailsInOneLine(server().httpPort(port).store(redis.uri()).build(),
          "cannot listen on 127.0.0.1:" + port + " for HTTP (",
          "): is another server using it? choose another --http-port");
    }
    assertNothingLeft();
    assertConnectionsBackTo(clients);
  }

  @Test
  void keyFileUnreadable() throws IOException {
    Files.createDirectory(dataDir.resolve("keys.json"));
    assertFailsInOneLine(server().build(),
        dataDir.toAbsolutePath().normalize().resolve("keys.json") + " is a directory",
        "move it out of the data dir (or choose another --data-dir)");
    assertNothingLeft();
  }

  @Test
  void keyStoreUnreadableOnRedis() throws IOException {
    assertThat(redis.command("HSET sluice:keys bogus not-json")).isEqualTo(":1");
    try {
      int clients = connectedClients();
      assertFailsInOneLine(server().store(redis.uri()).build(),
          "API key bogus in " + redis.uri() + " (sluice:keys) is not valid JSON (",
          "): revoke it with `sluice key revoke bogus`");
      assertNothingLeft();
      assertConnectionsBackTo(clients);
    } finally {
      redis.command("DEL sluice:keys");
    }
  }

  @Test
  void redisDown() throws IOException {
    int port;
    try (ServerSocket free = takenPort()) {
      port = free.getLocalPort();
    }
    assertFailsInOneLine(server().store("redis://127.0.0.1:" + port).build(),
        "cannot reach Redis at redis://127.0.0.1:" + port + " (", "): start Redis there or fix --store");
    assertNothingLeft();
  }

  @Test
  void tlsFileMissing() {
    Path cert = dataDir.resolve("missing-cert.pem");
    Path key = dataDir.resolve("missing-key.pem");
    assertFailsInOneLine(server().tls(cert, key).build(),
        "cannot use the TLS certificate " + cert + " with key " + key + " (" + cert
            + " is missing or unreadable (--tls-cert)): ",
        "give a PEM certificate chain to --tls-cert and its unencrypted PKCS#8 PEM private key to --tls-key");
    assertNothingLeft();
  }

  /** A failed start is over: closing it is a no-op, starting it again is refused. */
  @Test
  void aFailedServerStaysClosed() throws Exception {
    SluiceServer s = server().tls(dataDir.resolve("none.pem"), dataDir.resolve("none.key")).build();
    assertThatThrownBy(s::start).isInstanceOf(IOException.class);
    s.close();
    s.awaitTermination();
    assertThatThrownBy(s::start).isInstanceOf(IllegalStateException.class).hasMessage("server already started");
    assertNothingLeft();
  }

  private static void assertFailsInOneLine(SluiceServer s, String starts, String ends) {
    assertThatThrownBy(s::start)
        .isInstanceOf(IOException.class)
        .satisfies(e -> assertThat(e.getMessage()).doesNotContain("\n").startsWith(starts).endsWith(ends));
  }

  private static ServerSocket takenPort() throws IOException {
    ServerSocket s = new ServerSocket();
    s.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
    return s;
  }

  /** Every server thread family is back to its count before the start (threads end a moment after close). */
  private void assertNothingLeft() {
    await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> {
      Map<String, Integer> now = serverThreads();
      for (Map.Entry<String, Integer> e : now.entrySet()) {
        assertThat(e.getValue()).as("live threads named %s* (before the start: %s; now: %s)", e.getKey(),
            threadsBefore, now).isLessThanOrEqualTo(threadsBefore.getOrDefault(e.getKey(), 0));
      }
    });
  }

  private static Map<String, Integer> serverThreads() {
    Map<String, Integer> families = new TreeMap<>();
    for (Thread t : Thread.getAllStackTraces().keySet()) {
      if (t.isAlive() && SERVER_THREAD.matcher(t.getName()).matches()) {
        families.merge(NUMBERING.matcher(t.getName()).replaceAll(""), 1, Integer::sum);
      }
    }
    return families;
  }

  private static void assertConnectionsBackTo(int clients) {
    await().atMost(Duration.ofSeconds(10)).untilAsserted(() -> assertThat(connectedClients())
        .as("connections to Redis (each count includes the one asking)").isEqualTo(clients));
  }

  /** Redis's {@code connected_clients}, read over a connection of its own (counted too). */
  private static int connectedClients() {
    try (Socket socket = new Socket()) {
      socket.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), redis.port()), 1_000);
      socket.setSoTimeout(2_000);
      socket.getOutputStream().write("INFO clients\r\n".getBytes(StandardCharsets.US_ASCII));
      InputStream in = socket.getInputStream();
      StringBuilder header = new StringBuilder();
      for (int c = in.read(); c != '\n'; c = in.read()) {
        if (c == -1) {
          throw new IOException("Redis closed the connection");
        }
        header.append((char) c);
      }
      int length = Integer.parseInt(header.toString().trim().substring(1)); // "$<length>"
      String info = new String(in.readNBytes(length), StandardCharsets.US_ASCII);
      Matcher m = CONNECTED.matcher(info);
      if (!m.find()) {
        throw new IllegalStateException("no connected_clients in INFO clients: " + info);
      }
      return Integer.parseInt(m.group(1));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
