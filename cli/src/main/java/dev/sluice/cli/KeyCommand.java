package dev.sluice.cli;

import dev.sluice.proto.v1.ApiKeyInfo;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.CreateKeyResponse;
import dev.sluice.proto.v1.ListKeysRequest;
import dev.sluice.proto.v1.ListKeysResponse;
import dev.sluice.proto.v1.RevokeKeyRequest;
import dev.sluice.proto.v1.RevokeKeyResponse;
import dev.sluice.proto.v1.Role;
import dev.sluice.server.auth.FileKeyStore;
import dev.sluice.server.auth.KeyAdmin;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code sluice key create|list|revoke}: API keys. */
@Command(name = "key", mixinStandardHelpOptions = true,
    description = "API keys: create (shown once), list, revoke.",
    subcommands = {KeyCommand.Create.class, KeyCommand.ListKeys.class, KeyCommand.Revoke.class})
final class KeyCommand implements Callable<Integer> {
  @Spec
  private CommandSpec spec;

  @Override
  public Integer call() {
    spec.commandLine().usage(spec.commandLine().getOut());
    return 0;
  }

  enum KeyRole { worker, admin }

  /** {@code sluice key create --role worker|admin [--resources P] [--description D]}. */
  @Command(name = "create", mixinStandardHelpOptions = true,
      description = {"Creates an API key and prints it once: the coordinator keeps only a salted hash.",
          "While a coordinator has no key it is open (and listens on loopback only): create the first"
              + " admin key from its host."})
  static final class Create implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;
    @Option(names = "--role", required = true, paramLabel = "ROLE",
        description = "worker (acquire and release on its resources) or admin (everything).")
    private KeyRole role;
    @Option(names = "--resources", paramLabel = "PATTERN", defaultValue = "",
        description = "Worker keys: comma-separated resource globs, e.g. 'openai:*,shop:42'; default all.")
    private String resources;
    @Option(names = "--tenant", paramLabel = "TENANT", defaultValue = "",
        description = "Worker keys: bind the key to this tenant; its acquires are in this tenant's name, and one"
            + " naming another tenant is refused. Default: not bound.")
    private String tenant;
    @Option(names = "--description", paramLabel = "TEXT", defaultValue = "",
        description = "Who holds the key, for `sluice key list`.")
    private String description;
    @Option(names = "--data-dir", paramLabel = "DIR",
        description = "Offline, with the coordinator stopped: write the key into DIR/keys.json (the --data-dir"
            + " of `sluice serve`) instead of asking a coordinator; the way back in after losing every admin"
            + " key. The coordinator reads it at its next start.")
    private Path dataDir;

    @Override
    public Integer call() {
      CreateKeyRequest request = CreateKeyRequest.newBuilder()
          .setRole(role == KeyRole.admin ? Role.ROLE_ADMIN : Role.ROLE_WORKER)
          .setResources(resources).setDescription(description).setTenant(tenant).build();
      CreateKeyResponse response;
      if (dataDir != null) {
        response = createOffline(request);
      } else {
        try (AdminClient admin = client.connect()) {
          response = admin.call(stub -> stub.createKey(request));
        }
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, response);
        return 0;
      }
      out.println(response.getKey());
      PrintWriter err = spec.commandLine().getErr();
      err.println("created " + describe(response.getInfo()) + ". The key above is shown only this once:"
          + " store it as a secret (SLUICE_API_KEY)." + (dataDir == null ? ""
              : " Written to " + dataDir.resolve("keys.json") + ": start the coordinator to use it."));
      return 0;
    }

    /** The same checks and record as the Admin call, straight into the data dir's key file. */
    private CreateKeyResponse createOffline(CreateKeyRequest request) {
      if (!Files.isDirectory(dataDir)) {
        throw new ParameterException(spec.commandLine(), "--data-dir " + dataDir + " is not a directory: give the"
            + " --data-dir the coordinator runs with (default sluice-data)");
      }
      try {
        return new KeyAdmin(new FileKeyStore(dataDir), System::currentTimeMillis).create(request);
      } catch (IOException e) {
        throw new CliFailure(e.getMessage(), e);
      } catch (StatusRuntimeException e) {
        throw new CliFailure(e.getStatus().getCode() + ": " + e.getStatus().getDescription(), e);
      }
    }
  }

  /** {@code sluice key list}. */
  @Command(name = "list", mixinStandardHelpOptions = true, description = "Lists keys (ids, never the keys).")
  static final class ListKeys implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Mixin
    private Output output;

    @Override
    public Integer call() {
      ListKeysResponse response;
      try (AdminClient admin = client.connect()) {
        response = admin.call(stub -> stub.listKeys(ListKeysRequest.getDefaultInstance()));
      }
      PrintWriter out = spec.commandLine().getOut();
      if (output.json) {
        Output.printJson(out, response);
        return 0;
      }
      if (response.getKeysCount() == 0) {
        out.println("no keys: the coordinator is open to anyone who reaches it");
        return 0;
      }
      Table t = new Table("ID", "ROLE", "RESOURCES", "TENANT", "CREATED", "DESCRIPTION");
      for (ApiKeyInfo k : response.getKeysList()) {
        t.row(k.getId(), role(k), k.getResources(), k.getTenant().isEmpty() ? "-" : k.getTenant(),
            Instant.ofEpochMilli(k.getCreatedUnixMs()).toString(),
            k.getDescription().isEmpty() ? "-" : k.getDescription());
      }
      t.print(out);
      return 0;
    }
  }

  /** {@code sluice key revoke ID}. */
  @Command(name = "revoke", mixinStandardHelpOptions = true, description = "Revokes a key by id.")
  static final class Revoke implements Callable<Integer> {
    @Spec
    private CommandSpec spec;
    @Mixin
    private ClientOptions client;
    @Parameters(index = "0", paramLabel = "ID", description = "The key's id (see `sluice key list`).")
    private String id;

    @Override
    public Integer call() {
      RevokeKeyResponse response;
      try (AdminClient admin = client.connect()) {
        response = admin.call(stub -> stub.revokeKey(RevokeKeyRequest.newBuilder().setId(id).build()));
      }
      if (!response.getRevoked()) {
        throw new CliFailure("no key with id '" + id + "': see `sluice key list`", null);
      }
      spec.commandLine().getOut().println("revoked key " + id);
      return 0;
    }
  }

  private static String role(ApiKeyInfo k) {
    return k.getRole() == Role.ROLE_ADMIN ? "admin" : "worker";
  }

  private static String describe(ApiKeyInfo k) {
    return role(k).toLowerCase(Locale.ROOT) + " key " + k.getId() + " (resources " + k.getResources()
        + (k.getTenant().isEmpty() ? "" : ", tenant " + k.getTenant()) + ")";
  }
}
