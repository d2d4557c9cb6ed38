package dev.sluice.server.auth;

import dev.sluice.server.engine.Validation;
import io.grpc.Context;
import io.grpc.Status;

/**
 * Who is calling: a key's id, role, resources and tenant (null when the key is bound to none).
 * Attached to each call's {@link Context}.
 */
public record Principal(String keyId, Role role, ResourcePattern resources, KeyStore store, String tenant) {

  static final Context.Key<Principal> KEY = Context.key("sluice-principal");

  /** The caller of the current call; null outside a call checked by {@link AuthInterceptor}. */
  public static Principal current() {
    return KEY.get();
  }

  /**
   * Refuses a malformed resource name (INVALID_ARGUMENT, quoting at most its first 60
   * characters: checked first, so a huge name is never echoed), a resource the calling key does
   * not cover (PERMISSION_DENIED), or a key revoked since the call began (UNAUTHENTICATED: long-lived session streams). Does nothing outside a checked
   * call: in-process tests, or an open coordinator (no key), whose calls carry no principal.
   */
  public static void checkResource(String resource) {
    Validation.resource(resource);
    Principal p = KEY.get();
    if (p != null) {
      p.check(resource);
    }
  }

  /**
   * The tenant an acquire of the current call is in: see {@link #tenant(String)}; outside a
   * checked call (open coordinator, in-process tests) the one asked, checked, or null.
   */
  public static String checkTenant(String asked) {
    Principal p = KEY.get();
    return p != null ? p.tenant(asked) : asked(asked);
  }

  /**
   * The tenant an acquire with this key is in: the key's own when it is bound to one (asking for
   * none, or for the same, is fine; asking for another is PERMISSION_DENIED: a key cannot spend
   * in another tenant's name), else the one asked, checked (INVALID_ARGUMENT for a bad name), or
   * null (empty or null asked) for the default tenant.
   */
  public String tenant(String asked) {
    String own = asked(asked);
    if (tenant == null || own == null || own.equals(tenant)) {
      return tenant != null ? tenant : own;
    }
    throw Status.PERMISSION_DENIED.withDescription("API key " + keyId + " is bound to tenant '" + tenant
        + "' and cannot acquire as tenant '" + own + "': leave the tenant out (the key's is used), or use a key"
        + " of tenant '" + own + "' (`sluice key create --role worker --tenant " + own + "`)").asRuntimeException();
  }

  private static String asked(String asked) {
    return asked == null || asked.isEmpty() ? null : Validation.tenant(asked);
  }

  /**
   * Refuses a resource this key does not cover (PERMISSION_DENIED), or this key if revoked since
   * it was checked (UNAUTHENTICATED).
   */
  public void check(String resource) {
    Validation.resource(resource);
    if (store.get(keyId).isEmpty()) {
      throw Status.UNAUTHENTICATED.withDescription("API key " + keyId + " was revoked: ask an admin for a new"
          + " key (`sluice key create`)").asRuntimeException();
    }
    if (!resources.matches(resource)) {
      throw Status.PERMISSION_DENIED.withDescription("API key " + keyId + " may use resources '" + resources
          + "', not '" + resource + "': use a key that covers it, or have an admin create one"
          + " (`sluice key create --role worker --resources " + resource + "`)").asRuntimeException();
    }
  }
}
