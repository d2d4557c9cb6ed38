package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import io.grpc.EquivalentAddressGroup;
import io.grpc.Server;
import io.grpc.StatusOr;
import io.grpc.netty.NettyServerBuilder;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** Target strings, the per-channel list resolver, and calls spread over several nodes. */
class TargetsTest {

  @ParameterizedTest
  @ValueSource(strings = {"h1:7420,h2:7421,h3:7422", "10.0.0.1:1,[::1]:7420", "localhost:7420",
      "dns:///sluice.internal:7420", "a:1,a:2"})
  void goodTargetsAreAccepted(String target) {
    assertThatCode(() -> SluiceClient.builder().target(target)).doesNotThrowAnyException();
  }

  @ParameterizedTest
  @CsvSource(delimiter = '|', value = {
      "h1:7420,,h2:7420 | empty element at position 2",
      ",h1:7420         | empty element at position 1",
      "h1:7420,         | empty element at position 2",
      "h1:7420,h2:0     | element 2 ('h2:0') is not host:port with a port in 1..65535",
      "h1:7420,h2       | element 2 ('h2') is not host:port",
      "h1:7420,h2:99999 | port in 1..65535",
      "h1:7420,dns:///h2:7420 | mixes a gRPC URI into a list",
      "h1:x             | is not host:port"})
  void badTargetsNameTheProblemAndTheFix(String target, String problem) {
    assertThatThrownBy(() -> SluiceClient.builder().target(target))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("'" + target + "'")
        .hasMessageContaining(problem)
        .hasMessageContaining("h1:7420,h2:7420");
  }

  @Test
  void emptyTargetIsRefusedWithAnExample() {
    assertThatThrownBy(() -> SluiceClient.builder().target(""))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("is empty")
        .hasMessageContaining("localhost:7420");
  }

  @Test
  void environmentVariableMayListSeveralNodes() {
    assertThat(SluiceClient.Builder.defaultTarget(java.util.Map.of("SLUICE_TARGET", "a:1,b:2")::get))
        .isEqualTo("a:1,b:2");
    assertThatThrownBy(() -> SluiceClient.Builder.defaultTarget(java.util.Map.of("SLUICE_TARGET", "a:1,")::get))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("environment variable SLUICE_TARGET")
        .hasMessageContaining("empty element");
  }

  @Test
  void listIsParsedInOrderWithIpv6Unbracketed() {
    assertThat(Targets.parseList("h1:7420,[::1]:7421,10.0.0.3:7422"))
        .containsExactly(new Targets.HostPort("h1", 7420), new Targets.HostPort("::1", 7421),
            new Targets.HostPort("10.0.0.3", 7422));
    assertThat(new Targets.HostPort("::1", 7421)).hasToString("[::1]:7421");
  }

  @Test
  void resolverGivesOneAddressGroupPerNode() {
    StatusOr<List<EquivalentAddressGroup>> result = Targets.ListResolver.lookUp(
        List.of(new Targets.HostPort("127.0.0.1", 7420), new Targets.HostPort("127.0.0.1", 7421)));
    assertThat(result.hasValue()).isTrue();
    assertThat(result.getValue()).extracting(g -> g.getAddresses().get(0))
        .containsExactly(new InetSocketAddress("127.0.0.1", 7420), new InetSocketAddress("127.0.0.1", 7421));
  }

  @Test
  void resolverFailsWhenNoNodeResolves() {
    StatusOr<List<EquivalentAddressGroup>> result =
        Targets.ListResolver.lookUp(List.of(new Targets.HostPort("no-such-host.invalid", 7420)));
    assertThat(result.hasValue()).isFalse();
    assertThat(result.getStatus().getDescription()).contains("no-such-host.invalid").contains("check the host names");
  }

  @Test
  void callsAreSpreadOverEveryNodeOfAList() throws Exception {
    List<FakeCoordinator> fakes = List.of(new FakeCoordinator(), new FakeCoordinator(), new FakeCoordinator());
    List<Server> servers = new ArrayList<>();
    try {
      for (FakeCoordinator fake : fakes) {
        servers.add(NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
            .addService(fake).directExecutor().build().start());
      }
      String target = String.join(",", servers.stream().map(s -> "127.0.0.1:" + s.getPort()).toList());
      try (SluiceClient client = SluiceClient.builder().target(target).build()) {
        // round_robin picks among the nodes whose connection is READY: wait for that state, seen
        // as an acquire that reached each node. Permits are held, so no release takes a turn.
        await().until(client::everyNodeAnswered);
        await().until(() -> {
          client.acquire("openai");
          return fakes.stream().noneMatch(f -> f.acquires.isEmpty());
        });
        List<Integer> before = fakes.stream().map(f -> f.acquires.size()).toList();
        for (int i = 0; i < 30; i++) {
          client.acquire("openai");
        }
        for (int n = 0; n < fakes.size(); n++) {
          assertThat(fakes.get(n).acquires.size() - before.get(n)).as("node %d's share", n).isEqualTo(10);
        }
      }
    } finally {
      for (Server s : servers) {
        s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      }
    }
  }
}
