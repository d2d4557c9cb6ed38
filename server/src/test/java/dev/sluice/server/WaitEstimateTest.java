package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.AcquireTimeoutException;
import dev.sluice.client.InvalidRequestException;
import dev.sluice.client.Lane;
import dev.sluice.client.Load;
import dev.sluice.client.PermissionDeniedException;
import dev.sluice.client.Permit;
import dev.sluice.client.ResourceNotFoundException;
import dev.sluice.client.SluiceClient;
import dev.sluice.client.WaitEstimate;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.EstimateRequest;
import dev.sluice.proto.v1.EstimateResponse;
import dev.sluice.proto.v1.Role;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * An honest wait estimate on the wire: the Estimate call (gRPC, SDK, HTTP) and fail-if-late
 * acquires, through a real coordinator over Netty on loopback, its time on a {@link FakeClock}
 * (so "at once" means: answered while the clock stands still). Resource {@code q} refills 100
 * tokens a second with a burst of 100, and starts empty.
 */
@ExtendWith(NettyLeakCheck.class)
class WaitEstimateTest {

  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path dataDir;

  private final FakeClock clock = new FakeClock();
  private final List<AutoCloseable> closeables = new ArrayList<>();
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private SluiceServer server;
  private ManagedChannel channel;

  @BeforeEach
  void setUp() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).clock(clock, clock).build().start();
    closeables.add(server);
    channel = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    closeables.add(channel::shutdownNow);
    sync(server.engine()).setLimit(new LimitSpec("q", List.of(
        new RateSpec("tokens", 100, Duration.ofSeconds(1), 100)), 0, 0, null));
  }

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private SluiceClient client(String key, int sessions) {
    SluiceClient.Builder b = SluiceClient.builder().target("127.0.0.1:" + server.port());
    if (key != null) {
      b.apiKey(key);
    }
    if (sessions > 0) {
      b.session(sessions);
    }
    SluiceClient c = b.build();
    closeables.add(c);
    return c;
  }

  private SluiceClient client() {
    return client(null, 0);
  }

  private CoordinatorGrpc.CoordinatorBlockingStub stub(String key) {
    var stub = CoordinatorGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS);
    if (key == null) {
      return stub;
    }
    Metadata h = new Metadata();
    h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
    return stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h));
  }

  private HttpResponse<String> post(String path, String body, String key) throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.httpPort() + path))
        .timeout(Duration.ofSeconds(30)).header("Content-Type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofString(body));
    if (key != null) {
      b.header("Authorization", "Bearer " + key);
    }
    return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  private static JsonNode ok(HttpResponse<String> r) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return JSON.readTree(r.body());
  }

  private static JsonNode refused(HttpResponse<String> r, int status, String code, String... words) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(status);
    JsonNode e = JSON.readTree(r.body()).get("error");
    assertThat(e.get("code").asText()).isEqualTo(code);
    assertThat(e.get("message").asText()).contains(words);
    return e;
  }

  private static void status(Runnable call, Status.Code code, String... words) {
    assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(code);
      assertThat(e.getStatus().getDescription()).contains(words);
    });
  }

  private static EstimateRequest estimate(String resource, long tokens) {
    return EstimateRequest.newBuilder().setResource(resource).putLoad("tokens", tokens).build();
  }

  private static AcquireOptions late(Duration timeout) {
    return AcquireOptions.builder().timeout(timeout).failIfLate().build();
  }

  private long waiting() {
    return sync(server.engine()).stats("q").waiting().values().stream().mapToLong(Integer::longValue).sum();
  }

  /** Queues an acquire of {@code tokens} that waits up to a minute; returns once it is queued. */
  private CompletableFuture<Permit> queue(SluiceClient c, long tokens) {
    long before = waiting();
    CompletableFuture<Permit> p = c.acquireAsync("q", Load.of("tokens", tokens),
        AcquireOptions.builder().timeout(Duration.ofMinutes(1)).build());
    await().until(() -> waiting() == before + 1);
    return p;
  }

  @Test
  void theEstimateGrowsWithTheQueueAheadOverGrpcTheSdkAndHttp() throws Exception {
    SluiceClient c = client();
    assertThat(c.estimate("q", Load.of("tokens", 50)).expectedWait()).as("an empty bucket refills 100/s")
        .contains(Duration.ofMillis(500));
    clock.advance(Duration.ofSeconds(1)); // full: 100 tokens
    assertThat(c.estimate("q", Load.of("tokens", 50)).expectedWait()).contains(Duration.ZERO);
    c.acquire("q", Load.of("tokens", 100)).close(); // empty again

    CompletableFuture<Permit> first = queue(c, 100);
    assertThat(stub(null).estimate(estimate("q", 50)))
        .isEqualTo(EstimateResponse.newBuilder().setWait(com.google.protobuf.Duration.newBuilder()
            .setSeconds(1).setNanos(500_000_000)).build());
    CompletableFuture<Permit> second = queue(c, 100);
    WaitEstimate two = c.estimate("q", Load.of("tokens", 50), Lane.DEFAULT, null);
    assertThat(two.expectedWait()).as("200 queued ahead, then 50").contains(Duration.ofMillis(2500));
    assertThat(two.paused()).isFalse();
    assertThat(two.fits(Duration.ofMillis(2500))).isTrue();
    assertThat(two.fits(Duration.ofSeconds(2))).isFalse();
    assertThat(c.estimateAsync("q", Load.of("tokens", 50), Lane.INTERACTIVE, null).get(10, TimeUnit.SECONDS)
        .expectedWait()).as("nothing queued in the lane above").contains(Duration.ofMillis(500));

    JsonNode overHttp = ok(post("/v1/resources/q/estimate", "{\"load\": {\"tokens\": 50}}", null));
    assertThat(overHttp.get("resource").asText()).isEqualTo("q");
    assertThat(overHttp.get("waitSeconds").asDouble()).isEqualTo(2.5);
    assertThat(overHttp.get("paused").asBoolean()).isFalse();
    assertThat(ok(post("/v1/resources/q/estimate", "{\"load\": {\"tokens\": 50}, \"lane\": \"batch\"}", null))
        .get("waitSeconds").asDouble()).isEqualTo(2.5);
    assertThat(waiting()).as("estimates queue nothing").isEqualTo(2);

    clock.advance(Duration.ofSeconds(2));
    first.get(10, TimeUnit.SECONDS).close();
    second.get(10, TimeUnit.SECONDS).close();
  }

  @Test
  void failIfLateIsRefusedAtOnceWithTheEstimateWhenItIsPastTheTimeout() throws Exception {
    SluiceClient c = client();
    CompletableFuture<Permit> ahead = queue(c, 100); // the next 50 tokens: in 1.5 s
    for (int sessions : new int[] {0, 1}) {
      SluiceClient each = client(null, sessions);
      assertThatThrownBy(() -> each.acquire("q", Load.of("tokens", 50), late(Duration.ofSeconds(1))))
          .as("sessions %d", sessions)
          .isInstanceOfSatisfying(AcquireTimeoutException.class, e -> {
            assertThat(e.estimate()).map(WaitEstimate::expectedWait).contains(java.util.Optional.of(
                Duration.ofMillis(1500)));
            assertThat(e.getMessage()).contains("the estimated wait on 'q' is 1.5 s, past the 1 s timeout",
                "Raise the timeout to at least 1.5 s, or drop failIfLate");
          });
    }
    // Over gRPC: DEADLINE_EXCEEDED, the estimate also as an EstimateResponse detail.
    AcquireRequest req = AcquireRequest.newBuilder().setResource("q").putLoad("tokens", 50)
        .setTimeout(com.google.protobuf.Duration.newBuilder().setSeconds(1)).setFailIfLate(true).build();
    StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
        () -> stub(null).acquire(req));
    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
    assertThat(StatusProto.fromThrowable(e).getDetails(0).unpack(EstimateResponse.class).getWait().getNanos())
        .isEqualTo(500_000_000);
    // Over HTTP: 408, the estimate in the error.
    JsonNode error = refused(post("/v1/resources/q/acquire",
        "{\"load\": {\"tokens\": 50}, \"timeout\": \"1s\", \"failIfLate\": true}", null),
        408, "DEADLINE_EXCEEDED", "the estimated wait on 'q' is 1.5 s, past the 1 s timeout");
    assertThat(error.get("estimate").get("waitSeconds").asDouble()).isEqualTo(1.5);
    assertThat(error.get("estimate").get("paused").asBoolean()).isFalse();
    assertThat(waiting()).as("nothing was queued").isEqualTo(1);

    // Without the option the same acquire waits, as ever.
    CompletableFuture<Permit> patient = c.acquireAsync("q", Load.of("tokens", 50),
        AcquireOptions.builder().timeout(Duration.ofSeconds(1)).build());
    await().until(() -> waiting() == 2);
    assertThat(patient).isNotDone();
    clock.advance(Duration.ofSeconds(1));
    assertThatThrownBy(() -> patient.get(10, TimeUnit.SECONDS)).hasCauseInstanceOf(AcquireTimeoutException.class)
        .satisfies(t -> assertThat(((AcquireTimeoutException) t.getCause()).estimate()).isEmpty());
    ahead.get(10, TimeUnit.SECONDS).close();
  }

  @Test
  void failIfLateQueuesAndIsGrantedWhenTheEstimateIsWithinTheTimeout() throws Exception {
    SluiceClient c = client();
    CompletableFuture<Permit> ahead = queue(c, 100);
    CompletableFuture<Permit> fits = c.acquireAsync("q", Load.of("tokens", 50), late(Duration.ofSeconds(2)));
    await().until(() -> waiting() == 2);
    CompletableFuture<HttpResponse<String>> overHttp = http.sendAsync(HttpRequest.newBuilder(URI.create(
            "http://127.0.0.1:" + server.httpPort() + "/v1/resources/q/acquire?timeout=5s"))
        .POST(HttpRequest.BodyPublishers.ofString("{\"load\": {\"tokens\": 50}, \"failIfLate\": true}")).build(),
        HttpResponse.BodyHandlers.ofString());
    await().until(() -> waiting() == 3);
    assertThat(fits).isNotDone();
    assertThat(overHttp).isNotDone();

    clock.advance(Duration.ofSeconds(2)); // 100 at 1 s, 50 at 1.5 s, 50 at 2 s
    ahead.get(10, TimeUnit.SECONDS).close();
    try (Permit p = fits.get(10, TimeUnit.SECONDS)) {
      assertThat(p.granted().asMap()).containsEntry("tokens", 50L);
    }
    JsonNode grant = ok(overHttp.get(10, TimeUnit.SECONDS));
    assertThat(grant.get("granted").get("tokens").asLong()).isEqualTo(50);
  }

  @Test
  void aResourcePausedUntilResumedIsEstimatedAsPausedAndFailIfLateSaysOnlyAResumeHelps() throws Exception {
    clock.advance(Duration.ofSeconds(1)); // full: only the pause stands in the way
    sync(server.engine()).pause("q", -1);
    SluiceClient c = client();
    WaitEstimate paused = c.estimate("q", Load.of("tokens", 1));
    assertThat(paused.paused()).isTrue();
    assertThat(paused.expectedWait()).isEmpty();
    assertThat(paused.fits(Duration.ofDays(1))).isFalse();
    assertThat(paused).hasToString("paused until resumed");
    assertThat(stub(null).estimate(estimate("q", 1))).isEqualTo(EstimateResponse.newBuilder().setPaused(true).build());
    JsonNode overHttp = ok(post("/v1/resources/q/estimate", "{}", null));
    assertThat(overHttp.get("waitSeconds").isNull()).isTrue();
    assertThat(overHttp.get("paused").asBoolean()).isTrue();

    assertThatThrownBy(() -> c.acquire("q", Load.of("tokens", 1), late(Duration.ofHours(1))))
        .isInstanceOfSatisfying(AcquireTimeoutException.class, e -> {
          assertThat(e.estimate()).contains(paused);
          assertThat(e.getMessage()).contains("resource 'q' is paused until an admin resumes it, so only a resume can"
              + " help (sluice resume q)");
        });
    JsonNode error = refused(post("/v1/resources/q/acquire", "{\"failIfLate\": true}", null), 408,
        "DEADLINE_EXCEEDED", "only a resume can help");
    assertThat(error.get("estimate").get("paused").asBoolean()).isTrue();
    assertThat(waiting()).isZero();

    // A pause for a while is part of the wait.
    sync(server.engine()).resume("q");
    sync(server.engine()).pause("q", Duration.ofSeconds(3).toNanos());
    assertThat(c.estimate("q", Load.of("tokens", 1)).expectedWait()).contains(Duration.ofSeconds(3));
    assertThatThrownBy(() -> c.acquire("q", Load.of("tokens", 1), late(Duration.ofSeconds(2))))
        .isInstanceOf(AcquireTimeoutException.class).hasMessageContaining("is 3 s, past the 2 s timeout");
  }

  @Test
  void aKeyBoundToATenantEstimatesInItsNameAndMayNotNameAnother() throws Exception {
    var admin = AdminGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
    String adminKey = admin.createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN).build()).getKey();
    Metadata h = new Metadata();
    h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + adminKey);
    String bound = admin.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h)).createKey(CreateKeyRequest
        .newBuilder().setRole(Role.ROLE_WORKER).setResources("q").setTenant("search").build()).getKey();

    // "search" has 100 tokens queued; the default tenant has nothing queued.
    SluiceClient worker = client(bound, 0);
    CompletableFuture<Permit> ahead = queue(worker, 100);
    assertThat(worker.estimate("q", Load.of("tokens", 50)).expectedWait()).as("in the key's tenant")
        .contains(Duration.ofMillis(1500));
    assertThat(client(adminKey, 0).estimate("q", Load.of("tokens", 50)).expectedWait()).as("the default tenant")
        .contains(Duration.ofMillis(500));
    assertThat(client(adminKey, 0).estimate("q", Load.of("tokens", 50), null, "search").expectedWait())
        .contains(Duration.ofMillis(1500));
    assertThat(stub(bound).estimate(estimate("q", 50).toBuilder().setTenant("search").build()).getWait().getSeconds())
        .isEqualTo(1);
    assertThat(ok(post("/v1/resources/q/estimate", "{\"load\": {\"tokens\": 50}}", bound)).get("waitSeconds")
        .asDouble()).isEqualTo(1.5);

    assertThatThrownBy(() -> worker.estimate("q", Load.of("tokens", 50), null, "ads"))
        .isInstanceOf(PermissionDeniedException.class).hasMessageContaining("is bound to tenant 'search'");
    status(() -> stub(bound).estimate(estimate("q", 50).toBuilder().setTenant("ads").build()),
        Status.Code.PERMISSION_DENIED, "is bound to tenant 'search'", "--tenant ads");
    refused(post("/v1/resources/q/estimate", "{\"tenant\": \"ads\"}", bound), 403, "PERMISSION_DENIED",
        "is bound to tenant 'search'");
    status(() -> stub(bound).estimate(estimate("other", 50)), Status.Code.PERMISSION_DENIED,
        "may use resources 'q', not 'other'");
    refused(post("/v1/resources/other/estimate", "{}", bound), 403, "PERMISSION_DENIED", "not 'other'");
    status(() -> stub(null).estimate(estimate("q", 50)), Status.Code.UNAUTHENTICATED, "requires an API key");
    refused(post("/v1/resources/q/estimate", "{}", null), 401, "UNAUTHENTICATED", "requires an API key");
    clock.advance(Duration.ofSeconds(1));
    ahead.get(10, TimeUnit.SECONDS).close();
  }

  @Test
  void anUnknownResourceOrABadLoadIsRefusedAsOnAcquire() throws Exception {
    SluiceClient c = client();
    assertThatThrownBy(() -> c.estimate("nope", Load.of("tokens", 1))).isInstanceOf(ResourceNotFoundException.class)
        .hasMessageContaining("resource 'nope' has no limit");
    assertThatThrownBy(() -> c.acquire("nope", Load.of("tokens", 1), late(Duration.ofSeconds(1))))
        .isInstanceOf(ResourceNotFoundException.class);
    assertThatThrownBy(() -> c.estimate("q", Load.of("tokens", 101))).isInstanceOf(InvalidRequestException.class)
        .hasMessageContaining("load tokens=101 can never fit resource 'q': its burst is 100");
    assertThatThrownBy(() -> c.acquire("q", Load.of("tokens", 101), late(Duration.ofSeconds(1))))
        .as("a bad load is INVALID_ARGUMENT, not late").isInstanceOf(InvalidRequestException.class);
    assertThatThrownBy(() -> c.estimate("q", Load.of("cents", 1))).isInstanceOf(InvalidRequestException.class)
        .hasMessageContaining("load names dimension 'cents'");
    assertThatThrownBy(() -> c.estimate("q", Load.requests(1), null, "a b")).isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("tenant holds ' ' at 1");

    status(() -> stub(null).estimate(estimate("nope", 1)), Status.Code.NOT_FOUND, "resource 'nope' has no limit");
    status(() -> stub(null).estimate(estimate("q", -1)), Status.Code.INVALID_ARGUMENT, "out of range");
    status(() -> stub(null).estimate(estimate("bad name!", 1)), Status.Code.INVALID_ARGUMENT, "bad name!");
    status(() -> stub(null).estimate(estimate("q", 1).toBuilder().setTenant("a b").build()),
        Status.Code.INVALID_ARGUMENT, "tenant");

    refused(post("/v1/resources/nope/estimate", "{}", null), 404, "NOT_FOUND", "resource 'nope' has no limit");
    refused(post("/v1/resources/q/estimate", "{\"load\": {\"tokens\": 101}}", null), 400, "INVALID_ARGUMENT",
        "can never fit");
    refused(post("/v1/resources/q/estimate", "{\"timeout\": 1}", null), 400, "INVALID_ARGUMENT",
        "unknown field 'timeout'", "it takes load, lane, tenant");
    refused(post("/v1/resources/q/estimate", "{\"lane\": \"urgent\"}", null), 400, "INVALID_ARGUMENT",
        "lane 'urgent' is unknown");
    refused(post("/v1/resources/q/acquire", "{\"failIfLate\": \"yes\"}", null), 400, "INVALID_ARGUMENT",
        "failIfLate must be true or false");
    refused(post("/v1/resources/q/ESTIMATE", "{}", null), 404, "NOT_FOUND", "use POST /v1/resources/q/estimate");
    assertThat(waiting()).isZero();
  }
}
