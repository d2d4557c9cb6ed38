package dev.sluice.server;

import io.grpc.InsecureServerCredentials;
import io.grpc.ServerCredentials;
import io.grpc.TlsServerCredentials;
import io.grpc.netty.GrpcSslContexts;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The gRPC port's transport security: plaintext, TLS, or TLS that requires client certificates
 * signed by a given CA (mTLS). Files are PEM; each is read and checked at start, and a problem
 * names the file and the flag to fix.
 */
record Tls(Path certChain, Path privateKey, Path clientCa) {

  static final Tls NONE = new Tls(null, null, null);

  boolean enabled() {
    return certChain != null;
  }

  ServerCredentials credentials() throws IOException {
    if (!enabled()) {
      return InsecureServerCredentials.create();
    }
    TlsServerCredentials.Builder b = TlsServerCredentials.newBuilder();
    try {
      b.keyManager(readable(certChain, "--tls-cert").toFile(), readable(privateKey, "--tls-key").toFile());
      // Parsed here, not when the port opens, so a bad file is named at once.
      GrpcSslContexts.forServer(certChain.toFile(), privateKey.toFile()).build();
    } catch (IllegalArgumentException | IOException e) {
      throw new IOException("cannot use the TLS certificate " + certChain + " with key " + privateKey + " ("
          + e.getMessage() + "): give a PEM certificate chain to --tls-cert and its unencrypted PKCS#8 PEM"
          + " private key to --tls-key", e);
    }
    if (clientCa != null) {
      try {
        b.trustManager(readable(clientCa, "--tls-client-ca").toFile());
        GrpcSslContexts.forServer(certChain.toFile(), privateKey.toFile()).trustManager(clientCa.toFile()).build();
      } catch (IllegalArgumentException | IOException e) {
        throw new IOException("cannot use the client CA " + clientCa + " (" + e.getMessage() + "): give a PEM"
            + " file of CA certificates to --tls-client-ca", e);
      }
      b.clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
    }
    return b.build();
  }

  private static Path readable(Path p, String flag) throws IOException {
    if (!Files.isReadable(p)) {
      throw new IOException(p + " is missing or unreadable (" + flag + ")");
    }
    return p;
  }

  /** For the ready line. */
  String describe() {
    if (!enabled()) {
      return "plaintext";
    }
    return clientCa == null ? "TLS" : "mTLS (client certificates signed by " + clientCa + " required)";
  }
}
