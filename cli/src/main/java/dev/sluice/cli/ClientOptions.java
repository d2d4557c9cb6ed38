package dev.sluice.cli;

import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code --target}, mixed into every command that talks to a coordinator. */
final class ClientOptions {

  @Spec(Spec.Target.MIXEE)
  private CommandSpec mixee;

  @Option(names = "--target", paramLabel = "HOST:PORT",
      defaultValue = "${env:SLUICE_TARGET:-localhost:7420}",
      description = "Coordinator to talk to (env SLUICE_TARGET, default ${DEFAULT-VALUE}).")
  private String target;

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
    return new AdminClient(t);
  }
}
