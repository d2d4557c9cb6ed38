package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.client.SluiceUnavailableException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.tls.TestPki;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** TLS and mTLS on the gRPC port, with a CA generated at test time, through the real SDK over Netty. */
class TlsTest {

  @TempDir static Path pkiDir;
  @TempDir Path dataDir;

  private static TestPki pki;
  private static TestPki strangers;
  private static TestPki.Issued serverCert;
  private static TestPki.Issued clientCert;
  private static TestPki.Issued strangerCert;

  private final List<AutoCloseable> closeables = new ArrayList<>();

  @BeforeAll
  static void makePki() throws Exception {
    pki = TestPki.create(pkiDir, "sluice-test");
    strangers = TestPki.create(pkiDir, "someone-else");
    serverCert = pki.issue("server");
    clientCert = pki.issue("worker-1");
    strangerCert = strangers.issue("intruder");
  }

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private SluiceServer server(UnaryOperator<SluiceServer.Builder> tls) throws IOException {
    SluiceServer s = tls.apply(SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO)).build().start();
    closeables.add(s);
    sync(s.engine()).setLimit(new LimitSpec("api", List.of(), 10, 0, null));
    return s;
  }

  private SluiceClient client(SluiceServer s, UnaryOperator<SluiceClient.Builder> tls) {
    SluiceClient c = tls.apply(SluiceClient.builder().target("localhost:" + s.port())).build();
    closeables.add(c);
    return c;
  }

  private static void grants(SluiceClient c) throws InterruptedException {
    try (Permit p = c.acquire("api", Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(10)).build())) {
      assertThat(p.resource()).isEqualTo("api");
    }
  }

  private static void refused(SluiceClient c) {
    assertThatThrownBy(() -> c.acquire("api", Load.requests(1),
        AcquireOptions.builder().timeout(Duration.ofMillis(800)).build()))
        .isInstanceOf(SluiceUnavailableException.class);
  }

  @Test
  void tlsServesAClientThatTrustsItsCaAndNoOtherClient() throws Exception {
    SluiceServer s = server(b -> b.tls(serverCert.cert(), serverCert.key()));

    grants(client(s, b -> b.tlsTrust(pki.caFile())));
    refused(client(s, b -> b));                                   // plaintext client
    refused(client(s, b -> b.tlsTrust(strangers.caFile())));      // does not trust the server's CA
    grants(client(s, b -> b.tlsTrust(pki.caFile()).session(1))); // the session stream too
  }

  @Test
  void mtlsRequiresAClientCertificateFromTheConfiguredCa() throws Exception {
    SluiceServer s = server(b -> b.tls(serverCert.cert(), serverCert.key()).tlsClientCa(pki.caFile()));

    grants(client(s, b -> b.tlsTrust(pki.caFile()).tlsClientCertificate(clientCert.cert(), clientCert.key())));
    refused(client(s, b -> b.tlsTrust(pki.caFile())));            // no client certificate
    refused(client(s, b -> b.tlsTrust(pki.caFile())
        .tlsClientCertificate(strangerCert.cert(), strangerCert.key()))); // signed by another CA
  }

  @Test
  void badTlsFilesFailTheStartNamingTheFileAndTheFlag() throws Exception {
    Path missing = pkiDir.resolve("nope.pem");
    assertThatThrownBy(() -> SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir)
        .tls(missing, serverCert.key()).build().start())
        .isInstanceOf(IOException.class)
        .hasMessageContaining("nope.pem").hasMessageContaining("--tls-cert");

    Path garbage = Files.writeString(pkiDir.resolve("garbage.pem"), "-----BEGIN CERTIFICATE-----\nnot base64\n");
    assertThatThrownBy(() -> SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir)
        .tls(garbage, serverCert.key()).build().start())
        .isInstanceOf(IOException.class)
        .hasMessageContaining("garbage.pem").hasMessageContaining("PEM");

    assertThatThrownBy(() -> SluiceServer.builder().tlsClientCa(pki.caFile()))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("--tls-cert");
  }

  @Test
  void sdkRefusesUnreadableTlsFilesAtBuildTime() {
    assertThatThrownBy(() -> SluiceClient.builder().tlsTrust(pkiDir.resolve("absent-ca.pem")))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("absent-ca.pem");
    assertThatThrownBy(() -> SluiceClient.builder().tls().channel(
            io.grpc.inprocess.InProcessChannelBuilder.forName("x").build()).build())
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("own credentials");
  }
}
