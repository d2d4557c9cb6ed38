package dev.sluice.cli;

import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code --target}, {@code --api-key} and the TLS options, mixed into every command that talks to a coordinator. */
final class ClientOptions {

  @Spec(Spec.Target.MIXEE)
  private CommandSpec mixee;

  @Option(names = "--target", paramLabel = "HOST:PORT",
      defaultValue = "${env:SLUICE_TARGET:-localhost:7420}",
      description = "Coordinator to talk to (env SLUICE_TARGET, default ${DEFAULT-VALUE}).")
  private String target;

  @Option(names = "--api-key", paramLabel = "KEY", defaultValue = "${env:SLUICE_API_KEY}",
      description = "API key for a coordinator that has keys (env SLUICE_API_KEY; prefer the env var: a"
          + " command line is visible to other users of the host).")
  private String apiKey;

  @Option(names = "--tls", defaultValue = "${env:SLUICE_TLS:-false}",
      description = "Speak TLS to the coordinator, trusting the JVM's CAs (env SLUICE_TLS).")
  private boolean tls;

  @Option(names = "--tls-ca", paramLabel = "FILE", defaultValue = "${env:SLUICE_TLS_CA}",
      description = "Speak TLS, trusting the CA certificates in this PEM file (env SLUICE_TLS_CA).")
  private Path tlsCa;

  @Option(names = "--tls-client-cert", paramLabel = "FILE", defaultValue = "${env:SLUICE_TLS_CLIENT_CERT}",
      description = "Present this PEM client certificate (mTLS); needs --tls-client-key"
          + " (env SLUICE_TLS_CLIENT_CERT).")
  private Path tlsClientCert;

  @Option(names = "--tls-client-key", paramLabel = "FILE", defaultValue = "${env:SLUICE_TLS_CLIENT_KEY}",
      description = "The PEM (PKCS#8, unencrypted) key of --tls-client-cert (env SLUICE_TLS_CLIENT_KEY).")
  private Path tlsClientKey;

  /** The target as given, for headers. */
  String describeTarget() {
    return target == null ? "" : target.trim();
  }

  /** Opens a client to the target; a bare host gets the default port 7420. */
  AdminClient connect() {
    String t = target == null ? "" : target.trim();
    if (t.isEmpty()) {
      throw new ParameterException(mixee.commandLine(),
          "--target is empty; give HOST:PORT, e.g. localhost:7420");
    }
    if (!t.contains(":")) {
      t = t + ":7420";
    }
    return new AdminClient(t, credentials(), apiKey == null || apiKey.isBlank() ? null : apiKey.trim());
  }

  private ChannelCredentials credentials() {
    if ((tlsClientCert == null) != (tlsClientKey == null)) {
      throw new ParameterException(mixee.commandLine(), "--tls-client-cert and --tls-client-key go together:"
          + " give both or neither");
    }
    if (!tls && tlsCa == null && tlsClientCert == null) {
      return InsecureChannelCredentials.create();
    }
    TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
    try {
      if (tlsCa != null) {
        b.trustManager(tlsCa.toFile());
      }
      if (tlsClientCert != null) {
        b.keyManager(tlsClientCert.toFile(), tlsClientKey.toFile());
      }
    } catch (IOException | IllegalArgumentException e) {
      throw new ParameterException(mixee.commandLine(), "cannot read the TLS files (" + e.getMessage()
          + "): give readable PEM files to --tls-ca / --tls-client-cert / --tls-client-key");
    }
    return b.build();
  }
}
