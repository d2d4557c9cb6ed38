package dev.sluice.cli;

import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
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
    boolean fromEnv = !mixee.commandLine().getParseResult().hasMatchedOption("--target")
        && System.getenv("SLUICE_TARGET") != null;
    String t;
    try {
      t = checkTarget(target, fromEnv ? "SLUICE_TARGET" : "--target");
    } catch (IllegalArgumentException e) {
      throw new ParameterException(mixee.commandLine(), e.getMessage());
    }
    return new AdminClient(t, credentials(), apiKey == null || apiKey.isBlank() ? null : apiKey.trim());
  }

  // A host name or IPv4 address, or [IPv6]; then an optional :port.
  private static final Pattern HOST_PORT =
      Pattern.compile("(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?::(\\d{1,5}))?");

  /**
   * Checks a target before any connection is tried, so a typo is one line at once, not a
   * resolver's exception seconds later: one {@code HOST[:PORT]} (port 1..65535, 7420 if left
   * out) or a gRPC target URI such as {@code dns:///sluice.internal:7420}.
   *
   * @return the target to dial
   * @throws IllegalArgumentException naming {@code source}, the value and the fix
   */
  static String checkTarget(String value, String source) {
    String t = value == null ? "" : value.trim();
    String example = "give HOST:PORT, e.g. localhost:7420";
    if (t.isEmpty()) {
      throw new IllegalArgumentException(source + " is empty; " + example);
    }
    if (t.contains(",")) {
      throw new IllegalArgumentException(source + " '" + t + "' is a list: the CLI talks to one coordinator; "
          + example);
    }
    if (t.contains(":/")) {
      return t; // a gRPC target URI: its own resolver reads it
    }
    Matcher m = HOST_PORT.matcher(t);
    if (!m.matches()) {
      throw new IllegalArgumentException(source + " '" + t + "' is not HOST:PORT (a host name or IP address, then"
          + " a port); " + example);
    }
    if (m.group(2) == null) {
      return t + ":7420";
    }
    int port = Integer.parseInt(m.group(2));
    if (port < 1 || port > 65_535) {
      throw new IllegalArgumentException(source + " '" + t + "' has port " + port + ", out of 1..65535; " + example);
    }
    return t;
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
