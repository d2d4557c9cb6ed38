package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.Duration;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.PermissionDeniedException;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.AcquireRequest;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CoordinatorGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ListKeysRequest;
import dev.sluice.proto.v1.ListLimitsRequest;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.ReleaseRequest;
import dev.sluice.proto.v1.Role;
import dev.sluice.proto.v1.SessionAcquire;
import dev.sluice.proto.v1.SessionRequest;
import dev.sluice.proto.v1.SessionResponse;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.proto.v1.TenantCap;
import dev.sluice.server.auth.FileKeyStore;
import dev.sluice.server.auth.KeyAdmin;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.FakeClock;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.redis.RedisProcess;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Tenants on the gRPC surfaces: the tenant of an acquire (unary, session, SDK) reaches the engine,
 * a key bound to a tenant wins and refuses another, and a limit's shares, floors and caps make the
 * round trip through SetLimit / GetLimit / ListLimits on both stores and survive a restart. Every
 * refusal reaches the caller with the engine's message.
 */
class TenantsTest {

  @TempDir Path dir;
  private final List<AutoCloseable> closeables = new ArrayList<>();

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private static Duration seconds(long s) {
    return Duration.newBuilder().setSeconds(s).build();
  }

  private static RateDimension rate(String name, long amount, long periodSeconds, long burst) {
    return RateDimension.newBuilder().setName(name).setAmount(amount).setPeriod(seconds(periodSeconds))
        .setBurst(burst).build();
  }

  /** A limit of 6 000 tokens and 600 requests a minute with a full tenant policy. */
  private static Limit policyLimit(String resource) {
    return Limit.newBuilder()
        .setResource(resource)
        .addRates(rate("requests", 600, 60, 100))
        .addRates(rate("tokens", 6000, 60, 1000))
        .putShares("search", 3)
        .putShares("batch", 0.5)
        .putFloors("search", 0.4)
        .putFloors("ads", 0.25)
        .putCaps("research", TenantCap.newBuilder().addRates(rate("tokens", 1000, 60, 0)).build())
        .putCaps("batch", TenantCap.newBuilder().addRates(rate("requests", 60, 60, 10))
            .addRates(rate("tokens", 3000, 60, 500)).build())
        .build();
  }

  /** The policy as stored: the one sent, with the cap's default burst filled in (1 s of 1000/min, at least 1). */
  private static void assertPolicy(Limit stored) {
    assertThat(stored.getSharesMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of("search", 3.0, "batch", 0.5));
    assertThat(stored.getFloorsMap()).containsExactlyInAnyOrderEntriesOf(java.util.Map.of("search", 0.4, "ads", 0.25));
    assertThat(stored.getCapsMap()).containsOnlyKeys("research", "batch");
    assertThat(stored.getCapsOrThrow("research").getRatesList())
        .containsExactly(rate("tokens", 1000, 60, 16));
    assertThat(stored.getCapsOrThrow("batch").getRatesList())
        .containsExactly(rate("requests", 60, 60, 10), rate("tokens", 3000, 60, 500));
  }

  private static void status(Runnable call, Status.Code code, String... text) {
    assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(code);
      assertThat(e.getStatus().getDescription()).contains(text);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // In process: what the engine is asked

  /** A memory engine that notes the tenant of every acquire it is asked for. */
  private Engine recording(List<String> tenants) throws java.io.IOException {
    FakeClock clock = new FakeClock();
    MemoryEngine engine = MemoryEngine.builder().ticker(clock).scheduler(clock).build();
    closeables.add(engine);
    return (Engine) Proxy.newProxyInstance(Engine.class.getClassLoader(), new Class<?>[] {Engine.class},
        (proxy, method, args) -> {
          if (method.getName().equals("acquire") && args.length == 6) {
            tenants.add(String.valueOf(args[5]));
          }
          try {
            return method.invoke(engine, args);
          } catch (InvocationTargetException e) {
            throw e.getCause();
          }
        });
  }

  private ManagedChannel inProcess(Engine engine) throws Exception {
    String name = InProcessServerBuilder.generateName();
    Server server = InProcessServerBuilder.forName(name).directExecutor()
        .addService(new CoordinatorService(engine, TimeUnit.MINUTES.toNanos(5)))
        .addService(new AdminService(engine, Runnable::run,
            new KeyAdmin(new FileKeyStore(Files.createTempDirectory(dir, "keys")), System::currentTimeMillis)))
        .build().start();
    closeables.add(server::shutdownNow);
    ManagedChannel channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    closeables.add(channel::shutdownNow);
    return channel;
  }

  @Test
  void theTenantOfAUnaryOrSessionAcquireReachesTheEngineAndNoneMeansTheDefault() throws Exception {
    List<String> tenants = new CopyOnWriteArrayList<>();
    ManagedChannel channel = inProcess(recording(tenants));
    AdminGrpc.newBlockingStub(channel).setLimit(SetLimitRequest.newBuilder()
        .setLimit(Limit.newBuilder().setResource("r").setConcurrency(100)).build()); // grants at once
    var worker = CoordinatorGrpc.newBlockingStub(channel);
    AcquireRequest.Builder req = AcquireRequest.newBuilder().setResource("r").setTimeout(seconds(1));
    worker.acquire(req.clone().setTenant("search").build());
    worker.acquire(req.build());

    LinkedBlockingQueue<SessionResponse> answers = new LinkedBlockingQueue<>();
    StreamObserver<SessionRequest> session = CoordinatorGrpc.newStub(channel).session(new StreamObserver<>() {
      @Override
      public void onNext(SessionResponse r) {
        answers.add(r);
      }

      @Override
      public void onError(Throwable t) {}

      @Override
      public void onCompleted() {}
    });
    session.onNext(SessionRequest.newBuilder()
        .addAcquires(SessionAcquire.newBuilder().setTag(1).setRequest(req.clone().setTenant("ads")))
        .addAcquires(SessionAcquire.newBuilder().setTag(2).setRequest(req.clone().setTenant("bad tenant!")))
        .build());
    List<dev.sluice.proto.v1.SessionAnswer> got = new ArrayList<>();
    while (got.size() < 2) {
      got.addAll(answers.poll(10, TimeUnit.SECONDS).getAnswersList());
    }
    session.onCompleted();

    assertThat(tenants).containsExactly("search", "null", "ads");
    var refused = got.stream().filter(a -> a.getTag() == 2).findFirst().orElseThrow().getFailed();
    assertThat(refused.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
    assertThat(refused.getMessage()).contains("tenant name 'bad tenant!' is invalid", "e.g. 'search'");
    assertThat(got.stream().filter(a -> a.getTag() == 1).findFirst().orElseThrow().hasGranted()).isTrue();
  }

  @Test
  void aBadTenantNameOnAUnaryAcquireIsInvalidArgumentNamingTheFix() throws Exception {
    List<String> tenants = new CopyOnWriteArrayList<>();
    var worker = CoordinatorGrpc.newBlockingStub(inProcess(recording(tenants)));
    status(() -> worker.acquire(AcquireRequest.newBuilder().setResource("r").setTenant("x".repeat(65)).build()),
        Status.Code.INVALID_ARGUMENT, "tenant name", "1-64 characters");
    assertThat(tenants).as("refused before the engine").isEmpty();
  }

  @Test
  void theEnginesRangeChecksOfAPolicyReachTheGrpcCallerWithTheirMessage() throws Exception {
    var admin = AdminGrpc.newBlockingStub(inProcess(recording(new ArrayList<>())));
    Limit base = Limit.newBuilder().setResource("checked").addRates(rate("tokens", 6000, 60, 1000)).build();
    status(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(base.toBuilder()
            .putFloors("a", 0.7).putFloors("b", 0.5)).build()),
        Status.Code.INVALID_ARGUMENT, "the floors of 'checked' sum to 120.0 %", "at most 100 %; lower some");
    status(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(base.toBuilder()
            .putFloors("a", 1.5)).build()),
        Status.Code.INVALID_ARGUMENT, "floor a=150.0 %", "at most 100 %");
    status(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(base.toBuilder()
            .putShares("a", -2)).build()),
        Status.Code.INVALID_ARGUMENT, "share a=-2.0 is out of range", "above 0");
    status(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(base.toBuilder()
            .putShares("a", Double.NaN)).build()),
        Status.Code.INVALID_ARGUMENT, "share a=NaN is out of range");
    status(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(base.toBuilder()
            .putCaps("r", TenantCap.newBuilder().addRates(rate("tokens", 12000, 60, 0)).build())).build()),
        Status.Code.INVALID_ARGUMENT, "the cap of tenant 'r' on tokens", "is above the quota itself", "lower it");
    status(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(base.toBuilder()
            .putCaps("r", TenantCap.newBuilder().addRates(rate("requests", 10, 60, 0)).build())).build()),
        Status.Code.INVALID_ARGUMENT, "dimension 'requests', which the limit of 'checked' does not have",
        "cap one of its dimensions (tokens)");
    status(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(base.toBuilder()
            .putCaps("r", TenantCap.getDefaultInstance())).build()),
        Status.Code.INVALID_ARGUMENT, "the cap of tenant 'r' has no rate");
    status(() -> admin.setLimit(SetLimitRequest.newBuilder().setLimit(base.toBuilder()
            .putShares("no spaces", 2)).build()),
        Status.Code.INVALID_ARGUMENT, "tenant name 'no spaces' is invalid");
    status(() -> admin.getLimit(GetLimitRequest.newBuilder().setResource("checked").build()),
        Status.Code.NOT_FOUND, "checked");
  }

  // ---------------------------------------------------------------------------------------------
  // Over Netty: both stores, restarts, keys

  private SluiceServer embedded(Path data) throws Exception {
    SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(data)
        .shutdownGrace(java.time.Duration.ZERO).build().start();
    closeables.add(s);
    return s;
  }

  /** A Redis closed after every node of the test (closeables close in reverse). */
  private RedisProcess redis() throws Exception {
    RedisProcess redis = RedisProcess.start();
    closeables.add(redis);
    return redis;
  }

  private SluiceServer redisNode(RedisProcess redis, String id) throws Exception {
    SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve(id))
        .store(redis.uri()).nodeId(id).shutdownGrace(java.time.Duration.ZERO).build().start();
    closeables.add(s);
    return s;
  }

  private ManagedChannel channel(SluiceServer s) {
    ManagedChannel c = ManagedChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
    closeables.add(c::shutdownNow);
    return c;
  }

  private <S extends io.grpc.stub.AbstractStub<S>> S withKey(S stub, String key) {
    if (key == null) {
      return stub.withDeadlineAfter(10, TimeUnit.SECONDS);
    }
    Metadata h = new Metadata();
    h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
    return stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h)).withDeadlineAfter(10, TimeUnit.SECONDS);
  }

  private void assertPolicyRoundTrip(SluiceServer writer, SluiceServer reader) {
    var set = AdminGrpc.newBlockingStub(channel(writer)).withDeadlineAfter(10, TimeUnit.SECONDS)
        .setLimit(SetLimitRequest.newBuilder().setLimit(policyLimit("teams")).build());
    assertThat(set.getCreated()).isTrue();
    assertPolicy(set.getLimit());
    var admin = AdminGrpc.newBlockingStub(channel(reader)).withDeadlineAfter(10, TimeUnit.SECONDS);
    assertPolicy(admin.getLimit(GetLimitRequest.newBuilder().setResource("teams").build()));
    assertPolicy(admin.listLimits(ListLimitsRequest.getDefaultInstance()).getLimits(0));
    assertPolicy(CoordinatorGrpc.newBlockingStub(channel(reader)).withDeadlineAfter(10, TimeUnit.SECONDS)
        .describe(dev.sluice.proto.v1.DescribeRequest.newBuilder().setResource("teams").build()).getLimit());
  }

  @Test
  void onTheEmbeddedStoreThePolicyMakesTheRoundTripAndACoordinatorRestartedOnItsDataDirKeepsIt()
      throws Exception {
    Path data = dir.resolve("data");
    SluiceServer first = embedded(data);
    assertPolicyRoundTrip(first, first);
    first.close();

    SluiceServer again = embedded(data);
    assertPolicy(AdminGrpc.newBlockingStub(channel(again)).withDeadlineAfter(10, TimeUnit.SECONDS)
        .getLimit(GetLimitRequest.newBuilder().setResource("teams").build()));
    // Replacing the limit without a policy clears it.
    var cleared = AdminGrpc.newBlockingStub(channel(again)).setLimit(SetLimitRequest.newBuilder()
        .setLimit(Limit.newBuilder().setResource("teams").addRates(rate("tokens", 6000, 60, 1000))).build());
    assertThat(cleared.getCreated()).isFalse();
    assertThat(cleared.getLimit().getSharesCount() + cleared.getLimit().getFloorsCount()
        + cleared.getLimit().getCapsCount()).isZero();
  }

  @Test
  void onRedisThePolicySetOnOneNodeIsReadOnAnotherAndByANodeStartedLater() throws Exception {
    RedisProcess redis = redis();
    SluiceServer a = redisNode(redis, "a");
    SluiceServer b = redisNode(redis, "b");
    assertPolicyRoundTrip(a, b);
    a.close();
    SluiceServer c = redisNode(redis, "c");
    assertPolicy(AdminGrpc.newBlockingStub(channel(c)).withDeadlineAfter(10, TimeUnit.SECONDS)
        .getLimit(GetLimitRequest.newBuilder().setResource("teams").build()));
    status(() -> AdminGrpc.newBlockingStub(channel(c)).withDeadlineAfter(10, TimeUnit.SECONDS)
            .setLimit(SetLimitRequest.newBuilder().setLimit(policyLimit("teams").toBuilder()
                .putFloors("more", 0.5)).build()),
        Status.Code.INVALID_ARGUMENT, "the floors of 'teams' sum to 115.0 %");
  }

  /** Admin and a worker key bound to "search" on {@code server}; returns {admin, bound}. */
  private String[] keys(SluiceServer server) {
    var admin = AdminGrpc.newBlockingStub(channel(server)).withDeadlineAfter(10, TimeUnit.SECONDS);
    String adminKey = admin.createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN).build()).getKey();
    var created = withKey(AdminGrpc.newBlockingStub(channel(server)), adminKey).createKey(CreateKeyRequest.newBuilder()
        .setRole(Role.ROLE_WORKER).setResources("teams").setTenant("search").build());
    assertThat(created.getInfo().getTenant()).isEqualTo("search");
    withKey(AdminGrpc.newBlockingStub(channel(server)), adminKey)
        .setLimit(SetLimitRequest.newBuilder().setLimit(policyLimit("teams")).build());
    return new String[] {adminKey, created.getKey()};
  }

  private void assertTheKeysTenantWins(SluiceServer server, String bound) {
    var worker = withKey(CoordinatorGrpc.newBlockingStub(channel(server)), bound);
    AcquireRequest.Builder req = AcquireRequest.newBuilder().setResource("teams").setTimeout(seconds(5));
    String none = worker.acquire(req.build()).getPermitId();
    String same = worker.acquire(req.clone().setTenant("search").build()).getPermitId();
    assertThat(none).isNotEmpty();
    assertThat(same).isNotEmpty();
    status(() -> worker.acquire(req.clone().setTenant("ads").build()), Status.Code.PERMISSION_DENIED,
        "is bound to tenant 'search' and cannot acquire as tenant 'ads'",
        "leave the tenant out", "--tenant ads");
    worker.release(ReleaseRequest.newBuilder().setResource("teams").setPermitId(none).build());
    worker.release(ReleaseRequest.newBuilder().setResource("teams").setPermitId(same).build());
  }

  @Test
  void aKeyBoundToATenantAcquiresInItsNameRefusesAnotherAndKeepsItsTenantAcrossARestart() throws Exception {
    Path data = dir.resolve("data");
    SluiceServer server = embedded(data);
    String[] keys = keys(server);
    assertTheKeysTenantWins(server, keys[1]);
    server.close();

    SluiceServer again = embedded(data);
    assertTheKeysTenantWins(again, keys[1]);
    var listed = withKey(AdminGrpc.newBlockingStub(channel(again)), keys[0]).listKeys(ListKeysRequest.getDefaultInstance());
    assertThat(listed.getKeysList().stream().map(dev.sluice.proto.v1.ApiKeyInfo::getTenant))
        .containsExactlyInAnyOrder("", "search");
  }

  @Test
  void onRedisAKeyBoundToATenantWinsOnTheNodeThatMadeItAndOnANodeStartedLater() throws Exception {
    RedisProcess redis = redis();
    SluiceServer a = redisNode(redis, "a");
    String[] keys = keys(a);
    assertTheKeysTenantWins(a, keys[1]);
    SluiceServer b = redisNode(redis, "b"); // reads the keys from Redis at its start
    assertTheKeysTenantWins(b, keys[1]);
  }

  @Test
  void keyCreationRefusesATenantOnAnAdminKeyAndABadTenantName() throws Exception {
    SluiceServer server = embedded(dir.resolve("data"));
    var open = AdminGrpc.newBlockingStub(channel(server)).withDeadlineAfter(10, TimeUnit.SECONDS);
    status(() -> open.createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN).setTenant("search").build()),
        Status.Code.INVALID_ARGUMENT, "admin keys act in every tenant", "with role worker");
    String adminKey = open.createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN).build()).getKey();
    var admin = withKey(AdminGrpc.newBlockingStub(channel(server)), adminKey);
    status(() -> admin.createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER).setTenant("a b").build()),
        Status.Code.INVALID_ARGUMENT, "tenant name 'a b' is invalid");
    assertThat(admin.listKeys(ListKeysRequest.getDefaultInstance()).getKeysCount()).isEqualTo(1);
  }

  // ---------------------------------------------------------------------------------------------
  // The Java SDK

  @Test
  void theSdkSendsTheTenantOfItsOptionsOrItsDefaultOnUnaryCallsAndSessions() throws Exception {
    SluiceServer server = embedded(dir.resolve("data"));
    String bound = keys(server)[1];
    String target = "127.0.0.1:" + server.port();
    for (int sessions : new int[] {0, 1}) {
      SluiceClient plain = client(target, bound, sessions).build();
      closeables.add(plain);
      plain.acquire("teams").close();
      plain.acquire("teams", dev.sluice.client.Load.requests(1),
          AcquireOptions.builder().tenant("search").build()).close();
      assertThatThrownBy(() -> plain.acquire("teams", dev.sluice.client.Load.requests(1),
              AcquireOptions.builder().tenant("ads").build()))
          .as("sessions %d", sessions)
          .isInstanceOf(PermissionDeniedException.class)
          .hasMessageContaining("bound to tenant 'search'");
      SluiceClient defaulted = client(target, bound, sessions).defaultTenant("ads").build();
      closeables.add(defaulted);
      assertThatThrownBy(() -> defaulted.acquire("teams"))
          .as("the client's default tenant is sent, sessions %d", sessions)
          .isInstanceOf(PermissionDeniedException.class).hasMessageContaining("tenant 'ads'");
      defaulted.acquire("teams", dev.sluice.client.Load.requests(1),
          AcquireOptions.builder().tenant("search").build()).close();
    }
  }

  private static SluiceClient.Builder client(String target, String key, int sessions) {
    SluiceClient.Builder b = SluiceClient.builder().target(target).apiKey(key);
    return sessions == 0 ? b : b.session(sessions);
  }

  @Test
  void theSdkRefusesABadTenantAtOnceNamingTheFix() {
    assertThatThrownBy(() -> AcquireOptions.builder().tenant("a b"))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("tenant holds ' ' at 1")
        .hasMessageContaining("e.g. 'search'");
    assertThatThrownBy(() -> AcquireOptions.builder().tenant(""))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("tenant has 0 characters; use 1 to 64");
    assertThatThrownBy(() -> AcquireOptions.builder().tenant("a").tenant("b"))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("tenant was already set to 'a'");
    assertThatThrownBy(() -> SluiceClient.builder().defaultTenant("x".repeat(65)))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("defaultTenant has 65 characters");
    assertThat(AcquireOptions.builder().tenant("search").build().toString()).contains("tenant=search");
  }
}
