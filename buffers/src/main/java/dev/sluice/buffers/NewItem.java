package dev.sluice.buffers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * One item to push, checked: what a push body says, read once on the way in, so the delivery
 * only ever meets items it can send.
 *
 * @param body sent as is
 * @param contentType the body's type when the push gave JSON (then {@code application/json}),
 *     or null
 * @param headers the item's own headers: names checked, reserved ones refused
 * @param idempotencyKey the pusher's key (a repeated key is the same item), or null
 * @param key the order key (with {@code inFlight} N, one item per key at a time), or null
 */
public record NewItem(byte[] body, String contentType, Map<String, String> headers, String idempotencyKey,
    String key) {

  /** Bytes of one item's body at most. */
  public static final int MAX_BODY = 512 * 1024;

  /**
   * Parses a push: one item ({@code {"body": ..., "headers": {...}, "idempotencyKey": ..., "key":
   * ...}}) or many ({@code {"items": [...]}}).
   *
   * @throws BufferException INVALID naming the field and the fix
   */
  public static List<NewItem> parsePush(JsonNode body) {
    if (body == null || !body.isObject()) {
      throw BufferSpec.invalid("push a JSON object: {\"body\": ...} or {\"items\": [{\"body\": ...}, ...]}");
    }
    List<NewItem> out = new ArrayList<>();
    if (body.has("items")) {
      BufferSpec.known(body, "items");
      JsonNode items = body.get("items");
      if (!items.isArray() || items.isEmpty() || items.size() > 10_000) {
        throw BufferSpec.invalid("items must be an array of 1 to 10000 items");
      }
      for (JsonNode i : items) {
        out.add(fromJson(i));
      }
    } else {
      out.add(fromJson(body));
    }
    return out;
  }

  private static NewItem fromJson(JsonNode i) {
    if (!i.isObject()) {
      throw BufferSpec.invalid("an item is an object: {\"body\": ..., \"headers\": {...}, \"idempotencyKey\": ...}");
    }
    BufferSpec.known(i, "body", "headers", "idempotencyKey", "key");
    JsonNode b = i.get("body");
    if (b == null) {
      throw BufferSpec.invalid("an item needs a body: a string (sent as is) or JSON (sent as application/json)");
    }
    byte[] bytes = b.isTextual() ? b.asText().getBytes(StandardCharsets.UTF_8)
        : b.toString().getBytes(StandardCharsets.UTF_8);
    return of(bytes, b.isTextual() ? null : "application/json", i.get("headers"),
        optionalText(i, "idempotencyKey"), optionalText(i, "key"));
  }

  /**
   * One item from its parts (the gRPC push), checked as the HTTP push checks it.
   *
   * @throws BufferException INVALID naming the field and the fix
   */
  public static NewItem of(byte[] body, String contentType, JsonNode headers, String idempotencyKey, String key) {
    if (body.length > MAX_BODY) {
      throw BufferSpec.invalid("an item's body is " + body.length + " bytes: at most " + MAX_BODY);
    }
    for (String[] f : new String[][] {{"idempotencyKey", idempotencyKey}, {"key", key}}) {
      if (f[1] != null && (f[1].isEmpty() || f[1].length() > 200)) {
        throw BufferSpec.invalid(f[0] + " must be a string of 1 to 200 characters");
      }
    }
    if (contentType != null && (contentType.length() > 200 || contentType.indexOf('\n') >= 0)) {
      throw BufferSpec.invalid("content type '" + contentType + "' is not a valid header value");
    }
    return new NewItem(body, contentType, BufferSpec.headers(headers, "item headers"), idempotencyKey, key);
  }

  private static String optionalText(JsonNode i, String field) {
    JsonNode v = i.get(field);
    if (v == null || v.isNull()) {
      return null;
    }
    if (!v.isTextual()) {
      throw BufferSpec.invalid(field + " must be a string of 1 to 200 characters");
    }
    return v.asText();
  }

  /** The item's headers as stored (JSON): its own, and its body's content type unless it set one. */
  public String storedHeaders() {
    ObjectNode h = BufferSpec.JSON.createObjectNode();
    headers.forEach(h::put);
    if (contentType != null && headers.keySet().stream().noneMatch(k -> k.equalsIgnoreCase("content-type"))) {
      h.put("Content-Type", contentType);
    }
    return h.toString();
  }
}
