package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.SluiceServer;
import dev.sluice.server.tls.TestPki;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The CLI's TLS options against a real mTLS coordinator whose CA is made at test time. */
class TlsCommandsTest {

  @TempDir static Path dir;
  static TestPki pki;
  static TestPki.Issued client;
  static SluiceServer server;
  static String target;

  @BeforeAll
  static void start() throws Exception {
    pki = TestPki.create(dir, "cli-ca");
    TestPki.Issued serverCert = pki.issue("server");
    client = pki.issue("admin-cli");
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve("data"))
        .tls(serverCert.cert(), serverCert.key()).tlsClientCa(pki.caFile()).build().start();
    target = "--target=localhost:" + server.port();
  }

  @AfterAll
  static void stop() {
    server.close();
  }

  @Test
  void commandsSpeakMtlsWithTheCaAndAClientCertificate() {
    CliRun run = CliRun.of("limit", "set", "tls-test", "--rate", "requests=10/s", target,
        "--tls-ca=" + pki.caFile(), "--tls-client-cert=" + client.cert(), "--tls-client-key=" + client.key());
    assertThat(run.exit()).as(run.err()).isZero();
    assertThat(run.out()).startsWith("created limit tls-test");
  }

  @Test
  void plaintextOrNoClientCertificateFailsWithAClearMessage() {
    CliRun plain = CliRun.of("limit", "list", target);
    assertThat(plain.exit()).isNotZero();
    assertThat(plain.err()).contains("localhost:" + server.port());

    CliRun noCert = CliRun.of("limit", "list", target, "--tls-ca=" + pki.caFile());
    assertThat(noCert.exit()).isNotZero();
    assertThat(noCert.err()).isNotBlank();
  }

  @Test
  void halfAClientCertificateIsAUsageError() {
    CliRun run = CliRun.of("limit", "list", target, "--tls-client-cert=" + client.cert());
    assertThat(run.exit()).isEqualTo(2);
    assertThat(run.err()).contains("--tls-client-cert and --tls-client-key go together");
  }
}
