package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pools through a real coordinator over Netty: a pool set through the admin API, an acquire on it
 * answered with the member that granted (SDK {@code Permit.member()}, HTTP {@code member}), and
 * the permit released by the pool's name at that member. Members {@code a} and {@code b} hold
 * one permit at a time each; the clock stands still.
 */
class PoolWireTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path dataDir;

  private final FakeClock clock = new FakeClock();
  private final List<AutoCloseable> closeables = new ArrayList<>();
  private SluiceServer server;

  @BeforeEach
  void setUp() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).clock(clock, clock).build().start();
    closeables.add(server);
    for (String m : List.of("a", "b")) {
      sync(server.engine()).setLimit(new LimitSpec(m, List.of(), 1, 0, null));
    }
    ManagedChannel channel = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    closeables.add(channel::shutdownNow);
    AdminGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS).setLimit(SetLimitRequest.newBuilder()
        .setLimit(Limit.newBuilder().setResource("pool").addMembers("a").addMembers("b")).build());
  }

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  @Test
  void theSdksPermitNamesItsMemberAndClosingItFreesThatMember() throws Exception {
    assertThat(sync(server.engine()).getLimit("pool")).get().extracting(LimitSpec::members)
        .isEqualTo(List.of("a", "b"));
    SluiceClient c = SluiceClient.builder().target("127.0.0.1:" + server.port()).build();
    closeables.add(c);
    AcquireOptions wait = AcquireOptions.builder().timeout(Duration.ofSeconds(10)).build();
    Permit first = c.acquire("pool", Load.requests(1), wait);
    Permit second = c.acquire("pool", Load.requests(1), wait);
    assertThat(List.of(first.member(), second.member())).containsExactlyInAnyOrder("a", "b");
    assertThat(first.resource()).isEqualTo("pool");

    first.close();
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(10))
        .until(() -> sync(server.engine()).stats(first.member()).inFlight() == 0);
    Permit third = c.acquire("pool", Load.requests(1), wait);
    assertThat(third.member()).as("the member the first freed").isEqualTo(first.member());
  }

  @Test
  void overHttpTheGrantNamesItsMemberAndItsReleaseReachesThatMember() throws Exception {
    HttpClient http = HttpClient.newHttpClient();
    String base = "http://127.0.0.1:" + server.httpPort();
    HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/resources/pool/acquire"))
        .header("Content-Type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofString("{\"load\":{\"requests\":1},\"timeout\":\"5s\"}")).build(),
        HttpResponse.BodyHandlers.ofString());
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    JsonNode grant = JSON.readTree(r.body());
    String member = grant.get("member").asText();
    assertThat(member).isIn("a", "b");
    assertThat(grant.get("resource").asText()).as("the name asked, as the SDKs keep it").isEqualTo("pool");
    assertThat(sync(server.engine()).stats(member).inFlight()).isEqualTo(1);

    HttpResponse<String> rel = http.send(HttpRequest.newBuilder(
            URI.create(base + "/v1/permits/" + grant.get("permitId").asText() + "/release"))
        .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString("{}")).build(),
        HttpResponse.BodyHandlers.ofString());
    assertThat(rel.statusCode()).as(rel.body()).isLessThan(300);
    assertThat(sync(server.engine()).stats(member).inFlight()).isZero();
  }
}
