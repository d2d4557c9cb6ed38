package dev.sluice.server.auth;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Validation;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.HexFormat;
import java.util.Optional;

/**
 * An API key as the coordinator keeps it: its public id, role and resources, and a salted SHA-256
 * of its secret. The key itself ({@code slk_<id>_<secret>}, 256 random bits of secret) is shown
 * once, at creation, and never stored or logged. A fast hash is enough for a random 256-bit
 * secret (nothing to brute-force); the salt keeps equal secrets apart. {@code tenant} is null for a
 * key bound to no tenant (every key made before tenants existed).
 */
@JsonInclude(JsonInclude.Include.NON_NULL) // a key bound to no tenant is stored as before tenants
public record StoredKey(
    String id,
    Role role,
    String resources,
    String description,
    long createdUnixMs,
    String salt,
    String hash,
    String tenant) {

  static final String PREFIX = "slk_";
  private static final int ID_BYTES = 6;
  private static final int SECRET_BYTES = 32;
  private static final SecureRandom RANDOM = new SecureRandom();

  /** A new key and what to store of it. */
  public record Issued(String key, StoredKey stored) {}

  /** The parts of a presented key. */
  record Presented(String id, String secret) {}

  public static Issued generate(Role role, ResourcePattern resources, String description, long nowUnixMs) {
    return generate(role, resources, description, null, nowUnixMs);
  }

  /** A new key bound to {@code tenant} (null: to none). */
  public static Issued generate(
      Role role, ResourcePattern resources, String description, String tenant, long nowUnixMs) {
    byte[] id = new byte[ID_BYTES];
    byte[] secret = new byte[SECRET_BYTES];
    byte[] salt = new byte[16];
    RANDOM.nextBytes(id);
    RANDOM.nextBytes(secret);
    RANDOM.nextBytes(salt);
    String idText = HexFormat.of().formatHex(id);
    String secretText = Base64.getUrlEncoder().withoutPadding().encodeToString(secret);
    StoredKey stored = new StoredKey(idText, role, role == Role.ADMIN ? "*" : resources.toString(),
        description == null ? "" : description, nowUnixMs, Base64.getEncoder().encodeToString(salt),
        Base64.getEncoder().encodeToString(digest(salt, secretText)), tenant);
    return new Issued(PREFIX + idText + "_" + secretText, stored);
  }

  /**
   * A stored key from its JSON. A key written before tenants has no {@code tenant} field: it is
   * bound to no tenant (the file store otherwise refuses a missing field, which it would not write).
   */
  static StoredKey read(ObjectMapper json, JsonNode node) throws JsonProcessingException {
    if (node instanceof ObjectNode o && !o.has("tenant")) {
      o.putNull("tenant");
    }
    return json.treeToValue(node, StoredKey.class);
  }

  /** Splits a presented key; empty if it does not have the key's shape. */
  static Optional<Presented> parse(String key) {
    if (key == null || !key.startsWith(PREFIX) || key.length() < PREFIX.length() + ID_BYTES * 2 + 2) {
      return Optional.empty();
    }
    String id = key.substring(PREFIX.length(), PREFIX.length() + ID_BYTES * 2);
    if (key.charAt(PREFIX.length() + ID_BYTES * 2) != '_') {
      return Optional.empty();
    }
    return Optional.of(new Presented(id, key.substring(PREFIX.length() + ID_BYTES * 2 + 1)));
  }

  /** A key's id from the whole key or the id itself, for revoking and for error messages. */
  public static String idOf(String keyOrId) {
    return parse(keyOrId).map(Presented::id).orElse(keyOrId);
  }

  /** Whether {@code secret} is this key's secret (constant time). */
  boolean matches(String secret) {
    byte[] expected = Base64.getDecoder().decode(hash);
    return MessageDigest.isEqual(expected, digest(Base64.getDecoder().decode(salt), secret));
  }

  /**
   * What makes this stored key unusable (a damaged or hand-edited record), or null: every field
   * present, the id of a generated key, a resource pattern that parses, salt and hash in base64
   * (a SHA-256 hash is 32 bytes).
   */
  String problem() {
    if (id == null || role == null || resources == null || salt == null || hash == null) {
      return "lacks its id, role, resources, salt or hash";
    }
    if (!id.matches("[0-9a-f]{" + ID_BYTES * 2 + "}")) {
      return "has the id '" + id + "', not " + ID_BYTES * 2 + " hex digits";
    }
    try {
      pattern();
    } catch (IllegalArgumentException e) {
      return "(key " + id + ") has a bad resource pattern: " + e.getMessage();
    }
    if (tenant != null) {
      try {
        Validation.tenant(tenant);
      } catch (EngineException e) {
        return "(key " + id + ") has a bad tenant: " + e.getMessage();
      }
    }
    try {
      if (Base64.getDecoder().decode(salt).length == 0) {
        return "(key " + id + ") has an empty salt";
      }
      if (Base64.getDecoder().decode(hash).length != 32) {
        return "(key " + id + ") has a hash that is not 32 bytes of base64";
      }
    } catch (IllegalArgumentException e) {
      return "(key " + id + ") has a salt or hash that is not base64: " + e.getMessage();
    }
    return null;
  }

  public ResourcePattern pattern() {
    return ResourcePattern.parse(resources);
  }

  private static byte[] digest(byte[] salt, String secret) {
    try {
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      sha.update(salt);
      return sha.digest(secret.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is missing from this JVM", e);
    }
  }

  /** Never prints the hash or salt. */
  @Override
  public String toString() {
    return "key " + id + " (" + role.name().toLowerCase(java.util.Locale.ROOT) + ", resources " + resources
        + (tenant == null ? "" : ", tenant " + tenant) + ")";
  }
}
