package dev.sluice.server.auth;

import dev.sluice.proto.v1.ApiKeyInfo;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.CreateKeyResponse;
import dev.sluice.proto.v1.ListKeysResponse;
import dev.sluice.proto.v1.RevokeKeyRequest;
import dev.sluice.proto.v1.RevokeKeyResponse;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Validation;
import io.grpc.Status;
import java.io.IOException;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The key calls of the Admin service: checks, store, one log line per change. */
public final class KeyAdmin {

  private static final Logger log = LoggerFactory.getLogger(KeyAdmin.class);

  private final KeyStore keys;
  private final LongSupplier clock;

  public KeyAdmin(KeyStore keys, LongSupplier unixMillis) {
    this.keys = keys;
    this.clock = unixMillis;
  }

  public CreateKeyResponse create(CreateKeyRequest req) {
    Role role = switch (req.getRole()) {
      case ROLE_WORKER -> Role.WORKER;
      case ROLE_ADMIN -> Role.ADMIN;
      default -> throw invalid("a key needs a role: worker (acquire and release on its resources) or admin"
          + " (everything)");
    };
    ResourcePattern resources;
    try {
      resources = ResourcePattern.parse(req.getResources());
    } catch (IllegalArgumentException e) {
      throw invalid(e.getMessage());
    }
    if (role == Role.ADMIN && !resources.all()) {
      throw invalid("admin keys cover every resource; limit a key to '" + resources + "' with role worker");
    }
    String description = req.getDescription();
    if (description.length() > 200 || description.chars().anyMatch(c -> c < 0x20 || c == 0x7f)) {
      throw invalid("key description must be at most 200 printable characters");
    }
    String tenant = null;
    if (!req.getTenant().isEmpty()) {
      try {
        tenant = Validation.tenant(req.getTenant());
      } catch (EngineException e) {
        throw invalid(e.getMessage());
      }
      if (role == Role.ADMIN) {
        throw invalid("admin keys act in every tenant; bind a key to tenant '" + tenant + "' with role worker");
      }
    }
    boolean first = keys.isEmpty();
    if (first && role != Role.ADMIN) {
      // A first worker key would close the coordinator to every admin call, for good.
      throw Status.FAILED_PRECONDITION.withDescription("the coordinator has no key yet: create an admin key first"
          + " (`sluice key create --role admin`), then worker keys with it; a first worker key would lock every"
          + " admin call out").asRuntimeException();
    }
    StoredKey.Issued issued = StoredKey.generate(role, resources, description, tenant, clock.getAsLong());
    try {
      keys.add(issued.stored());
    } catch (IOException e) {
      throw Status.UNAVAILABLE.withDescription("cannot store the new key in " + keys.describe() + ": " + e.getMessage()
          + "; check the data dir (or Redis) and retry").withCause(e).asRuntimeException();
    }
    log.info("API key {} created: role {}, resources {}{}{}", issued.stored().id(), role.name().toLowerCase(),
        issued.stored().resources(), tenant == null ? "" : ", tenant " + tenant, first ? "; this was the first key: every call now needs a key" : "");
    return CreateKeyResponse.newBuilder().setKey(issued.key()).setInfo(info(issued.stored())).build();
  }

  public ListKeysResponse list() {
    ListKeysResponse.Builder b = ListKeysResponse.newBuilder();
    keys.all().forEach(k -> b.addKeys(info(k)));
    return b.build();
  }

  public RevokeKeyResponse revoke(RevokeKeyRequest req) {
    String id = StoredKey.idOf(req.getId().trim());
    if (id.isEmpty()) {
      throw invalid("give the id of the key to revoke (see `sluice key list`)");
    }
    boolean revoked;
    try {
      revoked = keys.remove(id);
    } catch (IOException e) {
      throw Status.UNAVAILABLE.withDescription("cannot update " + keys.describe() + ": " + e.getMessage()
          + "; check the data dir (or Redis) and retry").withCause(e).asRuntimeException();
    }
    if (revoked) {
      log.info("API key {} revoked{}", id, keys.isEmpty()
          ? "; no key is left: the coordinator is OPEN to anyone who can reach it" : "");
    }
    return RevokeKeyResponse.newBuilder().setRevoked(revoked).build();
  }

  private static ApiKeyInfo info(StoredKey k) {
    ApiKeyInfo.Builder b = ApiKeyInfo.newBuilder();
    if (k.tenant() != null) {
      b.setTenant(k.tenant());
    }
    return b
        .setId(k.id())
        .setRole(k.role() == Role.ADMIN ? dev.sluice.proto.v1.Role.ROLE_ADMIN : dev.sluice.proto.v1.Role.ROLE_WORKER)
        .setResources(k.resources())
        .setDescription(k.description())
        .setCreatedUnixMs(k.createdUnixMs())
        .build();
  }

  private static RuntimeException invalid(String message) {
    return Status.INVALID_ARGUMENT.withDescription(message).asRuntimeException();
  }
}
