package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ConnectivityState;
import io.grpc.Server;
import io.grpc.netty.NettyServerBuilder;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** {@link SluiceClient#warmUp} against a coordinator on a real Netty port on loopback. */
class WarmUpTest {

  private final FakeCoordinator fake = new FakeCoordinator();
  private Server server;

  @BeforeEach
  void setUp() throws IOException {
    server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(fake).directExecutor().build().start();
  }

  @AfterEach
  void tearDown() throws InterruptedException {
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }

  @Test
  void buildLeavesTheChannelIdleAndWarmUpLeavesItReady() throws Exception {
    try (SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.getPort()).build()) {
      assertThat(client.channel().getState(false)).as("build() does not connect").isEqualTo(ConnectivityState.IDLE);

      assertThat(client.warmUp(Duration.ofSeconds(30))).isTrue();

      // Read at once, no waiting: warmUp returns only once the channel is READY.
      assertThat(client.channel().getState(false)).isEqualTo(ConnectivityState.READY);
      assertThat(fake.acquires).as("one acquire on the call path, for a name no limit can have").hasSize(1);
      assertThat(fake.acquires.get(0).getResource()).isEmpty();
      client.acquire("openai").close();
      assertThat(fake.acquires).hasSize(2);
    }
  }

  @Test
  void warmUpOfAListTargetWaitsForReady() throws Exception {
    String node = "127.0.0.1:" + server.getPort();
    try (SluiceClient client = SluiceClient.builder().target(node + "," + node).build()) {
      assertThat(client.warmUp(Duration.ofSeconds(30))).isTrue();
      assertThat(client.channel().getState(false)).isEqualTo(ConnectivityState.READY);
      client.acquire("openai").close();
    }
  }

  @Test
  void noCoordinatorMeansFalseAfterTheTimeoutNotAnException() throws Exception {
    int closedPort;
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      closedPort = s.getLocalPort();
    }
    try (SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + closedPort).build()) {
      assertThat(client.warmUp(Duration.ofMillis(300))).isFalse();
      assertThat(client.channel().getState(false)).isNotEqualTo(ConnectivityState.READY);
    }
  }

  @Test
  void badTimeoutAndClosedClientAreRefused() {
    SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.getPort()).build();
    assertThatThrownBy(() -> client.warmUp(Duration.ofSeconds(-1)))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining(">= 0");
    client.close();
    assertThatThrownBy(() -> client.warmUp(Duration.ofSeconds(1)))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
  }
}
