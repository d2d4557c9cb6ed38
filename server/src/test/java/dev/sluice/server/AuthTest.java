package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.client.AuthenticationException;
import dev.sluice.client.Load;
import dev.sluice.client.PermissionDeniedException;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.ListKeysRequest;
import dev.sluice.proto.v1.ListLimitsRequest;
import dev.sluice.proto.v1.RevokeKeyRequest;
import dev.sluice.proto.v1.Role;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.tls.TestPki;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.stub.MetadataUtils;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * API keys and roles, every case over a real TLS connection (a CA made at test time): the
 * open bootstrap, UNAUTHENTICATED, PERMISSION_DENIED by role and by resource, revocation,
 * keys kept hashed and surviving a restart.
 */
class AuthTest {

  @TempDir static Path pkiDir;
  @TempDir Path dataDir;
  private static TestPki pki;
  private static TestPki.Issued serverCert;

  private final List<AutoCloseable> closeables = new ArrayList<>();
  private SluiceServer server;

  @BeforeAll
  static void makePki() throws Exception {
    pki = TestPki.create(pkiDir, "auth-ca");
    serverCert = pki.issue("server");
  }

  @BeforeEach
  void start() throws Exception {
    server = startServer();
  }

  private SluiceServer startServer() throws Exception {
    SluiceServer s = SluiceServer.builder().port(0).dataDir(dataDir).shutdownGrace(Duration.ZERO)
        .tls(serverCert.cert(), serverCert.key()).build().start();
    closeables.add(s);
    return s;
  }

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private ManagedChannel channel() throws Exception {
    ManagedChannel c = Grpc.newChannelBuilder("localhost:" + server.port(),
        TlsChannelCredentials.newBuilder().trustManager(pki.caFile().toFile()).build()).build();
    closeables.add(c::shutdownNow);
    return c;
  }

  private AdminGrpc.AdminBlockingStub admin(String key) throws Exception {
    AdminGrpc.AdminBlockingStub stub = AdminGrpc.newBlockingStub(channel()).withDeadlineAfter(10, TimeUnit.SECONDS);
    if (key != null) {
      Metadata h = new Metadata();
      h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
      stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h));
    }
    return stub;
  }

  private SluiceClient worker(String key) {
    SluiceClient.Builder b = SluiceClient.builder().target("localhost:" + server.port()).tlsTrust(pki.caFile());
    if (key != null) {
      b.apiKey(key);
    }
    SluiceClient c = b.build();
    closeables.add(c);
    return c;
  }

  private String createKey(String adminKey, Role role, String resources) throws Exception {
    return admin(adminKey).createKey(CreateKeyRequest.newBuilder().setRole(role).setResources(resources).build())
        .getKey();
  }

  interface Call {
    void run() throws Exception;
  }

  private static void status(Call call, Status.Code code, String... text) {
    assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
      assertThat(e.getStatus().getCode()).isEqualTo(code);
      assertThat(e.getStatus().getDescription()).contains(text);
    });
  }

  @Test
  void anOpenCoordinatorListensOnLoopbackAndLetsTheFirstAdminKeyBeCreated() throws Exception {
    assertThat(server.boundHost()).isEqualTo("127.0.0.1");
    sync(server.engine()).setLimit(new LimitSpec("openai:gpt", List.of(), 5, 0, null));
    try (Permit p = worker(null).acquire("openai:gpt")) {
      assertThat(p.resource()).isEqualTo("openai:gpt"); // open: no key needed
    }

    String adminKey = createKey(null, Role.ROLE_ADMIN, "");

    assertThat(adminKey).startsWith("slk_");
    status(() -> admin(null).listLimits(ListLimitsRequest.getDefaultInstance()),
        Status.Code.UNAUTHENTICATED, "requires an API key", "SLUICE_API_KEY");
    assertThat(admin(adminKey).listLimits(ListLimitsRequest.getDefaultInstance()).getLimitsCount()).isEqualTo(1);
  }

  /** A first worker key would lock every admin call out: refused, nothing stored, the admin key still possible. */
  @Test
  void aFirstKeyThatIsNotAdminIsRefused() throws Exception {
    status(() -> createKey(null, Role.ROLE_WORKER, "team1:*"), Status.Code.FAILED_PRECONDITION,
        "create an admin key first", "--role admin");
    assertThat(dataDir.resolve("keys.json")).doesNotExist();
    String adminKey = createKey(null, Role.ROLE_ADMIN, "");
    assertThat(createKey(adminKey, Role.ROLE_WORKER, "team1:*")).startsWith("slk_");
  }

  @Test
  void everyAuthCase() throws Exception {
    sync(server.engine()).setLimit(new LimitSpec("openai:gpt", List.of(), 5, 0, null));
    sync(server.engine()).setLimit(new LimitSpec("shop:42", List.of(), 5, 0, null));
    String adminKey = createKey(null, Role.ROLE_ADMIN, "");
    String openaiWorker = createKey(adminKey, Role.ROLE_WORKER, "openai:*");

    // No key, and a made-up key: UNAUTHENTICATED through the SDK.
    assertThatThrownBy(() -> worker(null).acquire("openai:gpt"))
        .isInstanceOf(AuthenticationException.class).hasMessageContaining("requires an API key");
    String forged = openaiWorker.substring(0, openaiWorker.length() - 4) + "AAAA";
    assertThatThrownBy(() -> worker(forged).acquire("openai:gpt"))
        .isInstanceOf(AuthenticationException.class).hasMessageContaining("unknown or revoked API key")
        .hasMessageNotContaining(forged.substring(17));

    // A worker key: its resources yes, others no, admin calls no.
    try (Permit p = worker(openaiWorker).acquire("openai:gpt")) {
      assertThat(p.resource()).isEqualTo("openai:gpt");
    }
    assertThatThrownBy(() -> worker(openaiWorker).acquire("shop:42"))
        .isInstanceOf(PermissionDeniedException.class).hasMessageContaining("may use resources 'openai:*'");
    SluiceClient sessionWorker = SluiceClient.builder().target("localhost:" + server.port())
        .tlsTrust(pki.caFile()).apiKey(openaiWorker).session(1).build();
    closeables.add(sessionWorker);
    assertThatThrownBy(() -> sessionWorker.acquire("shop:42"))
        .as("the session stream checks each acquire").isInstanceOf(PermissionDeniedException.class);
    sessionWorker.acquire("openai:gpt").close();
    status(() -> admin(openaiWorker).listLimits(ListLimitsRequest.getDefaultInstance()),
        Status.Code.PERMISSION_DENIED, "role worker", "admin key");

    // An admin key does everything, including worker calls on any resource.
    try (Permit p = worker(adminKey).acquire("shop:42")) {
      assertThat(p.resource()).isEqualTo("shop:42");
    }

    // Health stays open for probes and load balancers.
    assertThat(HealthGrpc.newBlockingStub(channel()).check(HealthCheckRequest.getDefaultInstance()).getStatus())
        .isEqualTo(io.grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING);

    // Revoked: UNAUTHENTICATED from then on.
    String id = openaiWorker.substring(4, 16);
    assertThat(admin(adminKey).revokeKey(RevokeKeyRequest.newBuilder().setId(id).build()).getRevoked()).isTrue();
    assertThatThrownBy(() -> worker(openaiWorker).acquire("openai:gpt"))
        .isInstanceOf(AuthenticationException.class);
  }

  @Test
  void keysAreStoredHashedAndSurviveARestart() throws Exception {
    String adminKey = createKey(null, Role.ROLE_ADMIN, "");
    String workerKey = createKey(adminKey, Role.ROLE_WORKER, "shop:*");

    String file = Files.readString(dataDir.resolve("keys.json"));
    assertThat(file).contains(adminKey.substring(4, 16)).doesNotContain(adminKey.substring(17))
        .doesNotContain(workerKey.substring(17));

    server.close();
    server = startServer();
    assertThat(server.boundHost()).as("with keys it binds every interface").isEqualTo("0.0.0.0");
    assertThat(admin(adminKey).listKeys(ListKeysRequest.getDefaultInstance()).getKeysList())
        .extracting(k -> k.getRole() + " " + k.getResources())
        .containsExactly("ROLE_ADMIN *", "ROLE_WORKER shop:*");
  }

  @Test
  void badKeyRequestsAreRefusedWithTheFix() throws Exception {
    String adminKey = createKey(null, Role.ROLE_ADMIN, "");
    status(() -> createKey(adminKey, Role.ROLE_UNSPECIFIED, ""),
        Status.Code.INVALID_ARGUMENT, "needs a role");
    status(() -> createKey(adminKey, Role.ROLE_ADMIN, "openai:*"),
        Status.Code.INVALID_ARGUMENT, "admin keys cover every resource");
    status(() -> createKey(adminKey, Role.ROLE_WORKER, "openai:*,,x"),
        Status.Code.INVALID_ARGUMENT, "empty entry");
    status(() -> createKey(adminKey, Role.ROLE_WORKER, "open ai"),
        Status.Code.INVALID_ARGUMENT, "has ' '");
    assertThat(admin(adminKey).revokeKey(RevokeKeyRequest.newBuilder().setId("nope").build()).getRevoked())
        .isFalse();
  }
}
