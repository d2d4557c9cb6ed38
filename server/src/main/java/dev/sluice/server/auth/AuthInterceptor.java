package dev.sluice.server.auth;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.Optional;

/**
 * Checks the API key of every call: {@code authorization: Bearer slk_...}. No key or an unknown
 * one: UNAUTHENTICATED; a worker key on the Admin service: PERMISSION_DENIED (resources are
 * checked per request by {@link Principal#checkResource}). Health checks are open (load
 * balancers and the SDK's probes carry no key); reflection needs an admin key, as it describes
 * the admin service too. While
 * the store holds no key at all the coordinator is open and every call passes as admin.
 *
 * <p>Keys never reach a log or an error message: only their public id does.
 */
public final class AuthInterceptor implements ServerInterceptor {

  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private static final String HEALTH = "grpc.health.v1.Health";
  private static final String ADMIN = "sluice.v1.Admin";
  private static final String COORDINATOR = "sluice.v1.Coordinator";
  private static final String REFLECTION = "grpc.reflection.";

  private final KeyStore keys;
  private final java.util.Map<String, ResourcePattern> patterns = new java.util.concurrent.ConcurrentHashMap<>();

  public AuthInterceptor(KeyStore keys) {
    this.keys = keys;
  }

  @Override
  public <ReqT, RespT> ServerCall.Listener<ReqT> interceptCall(
      ServerCall<ReqT, RespT> call, Metadata headers, ServerCallHandler<ReqT, RespT> next) {
    String service = call.getMethodDescriptor().getServiceName();
    if (HEALTH.equals(service) || keys.isEmpty()) {
      // Open coordinator (no key at all): nothing to check, and no context to attach per call.
      return next.startCall(call, headers);
    }
    Optional<Principal> found = authenticate(headers.get(AUTHORIZATION));
    if (found.isEmpty()) {
      return refuse(call, Status.UNAUTHENTICATED.withDescription(headers.get(AUTHORIZATION) == null
          ? "this coordinator requires an API key: pass one with SluiceClient.Builder.apiKey(...), the CLI's"
              + " --api-key, or SLUICE_API_KEY (an admin creates keys with `sluice key create`)"
          : "unknown or revoked API key " + describe(headers.get(AUTHORIZATION)) + ": check the key, or ask"
              + " an admin for a new one (`sluice key create`)"));
    }
    Principal principal = found.get();
    // Reflection describes every service, the admin one included: admin keys only (SECURITY.md).
    boolean allowed = COORDINATOR.equals(service) || principal.role() == Role.ADMIN;
    if (!allowed) {
      return refuse(call, Status.PERMISSION_DENIED.withDescription("API key " + principal.keyId() + " has role"
          + " worker; " + call.getMethodDescriptor().getBareMethodName() + (service.startsWith(REFLECTION)
              ? " (server reflection) needs an admin key: use one, or give grpcurl the .proto files (-proto)"
              : " is an admin call: use an admin key")));
    }
    return Contexts.interceptCall(Context.current().withValue(Principal.KEY, principal), call, headers, next);
  }

  /**
   * The principal of an {@code authorization} header value ({@code Bearer slk_...} or the bare
   * key); empty when absent, malformed, unknown or revoked. Shared with the HTTP port.
   */
  public Optional<Principal> authenticate(String header) {
    if (header == null) {
      return Optional.empty();
    }
    String token = header.regionMatches(true, 0, "Bearer ", 0, 7) ? header.substring(7).trim() : header.trim();
    return StoredKey.parse(token).flatMap(p -> keys.get(p.id())
        .filter(k -> k.matches(p.secret()))
        .map(k -> new Principal(k.id(), k.role(), patterns.computeIfAbsent(k.resources(), ResourcePattern::parse),
            keys, k.tenant())));
  }

  /** The key's public id, or that it is not shaped like a key; never the secret. */
  public static String describe(String header) {
    String token = header.regionMatches(true, 0, "Bearer ", 0, 7) ? header.substring(7).trim() : header.trim();
    return StoredKey.parse(token).map(p -> "(id " + p.id() + ")").orElse("(not a Sluice key: they start with slk_)");
  }

  private static <ReqT, RespT> ServerCall.Listener<ReqT> refuse(ServerCall<ReqT, RespT> call, Status status) {
    call.close(status, new Metadata());
    return new ServerCall.Listener<>() {};
  }
}
