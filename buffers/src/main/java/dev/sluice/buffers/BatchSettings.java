package dev.sluice.buffers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;

/**
 * How a buffer whose {@code delivery} is {@code openai-batch} sends: its items go as lines of
 * OpenAI Batch API input files, not one request each. The buffer's {@code url} is the API's base
 * ({@code https://api.openai.com/v1}); files go to {@code url/files}, batches to {@code
 * url/batches}.
 *
 * @param endpoint the Batch API endpoint every line calls, e.g. {@code /v1/chat/completions}
 * @param completionWindow the batch's completion window: OpenAI offers {@code 24h} only (default)
 * @param maxBatchItems lines per batch at most: default and at most 50,000, the provider's cap
 * @param maxBatchBytes bytes of one input file at most: default and at most 200 MB, the
 *     provider's cap; also the longest line an item may make
 * @param flushAfter a partial batch is sent once its oldest item has waited this long (default 10m)
 */
public record BatchSettings(String endpoint, Duration completionWindow, int maxBatchItems, long maxBatchBytes,
    Duration flushAfter) {

  /** The delivery modes a buffer takes. */
  public static final String HTTP = "http";
  public static final String OPENAI_BATCH = "openai-batch";

  /** OpenAI's caps on one batch input file. */
  static final int PROVIDER_MAX_ITEMS = 50_000;
  static final long PROVIDER_MAX_BYTES = 200L * 1024 * 1024;
  static final Duration WINDOW = Duration.ofHours(24);

  /**
   * What each endpoint the Batch API serves needs in a line's body: the fields that must be there.
   * An endpoint not here is one the Batch API does not serve.
   */
  private static final Map<String, List<String>> ENDPOINTS = Map.of(
      "/v1/chat/completions", List.of("model", "messages"),
      "/v1/responses", List.of("model", "input"),
      "/v1/embeddings", List.of("model", "input"),
      "/v1/completions", List.of("model", "prompt"),
      "/v1/moderations", List.of("input"));

  /** The JSON fields of these settings in a buffer spec, beside {@code delivery}. */
  static final List<String> FIELDS = List.of("endpoint", "completionWindow", "maxBatchItems", "maxBatchBytes",
      "flushAfter");

  /** The endpoints, sorted, as a refusal names them. */
  static String endpoints() {
    return String.join(", ", ENDPOINTS.keySet().stream().sorted().toList());
  }

  /**
   * Checks an item's body as a line for {@link #endpoint}: a JSON object with the endpoint's
   * required fields, not streamed, and a line within {@link #maxBatchBytes}.
   *
   * @param index the item's place in the push, for the refusal
   * @throws BufferException INVALID saying why the provider would refuse it
   */
  void checkItem(NewItem item, int index) {
    String which = "item " + index + ": ";
    if (!item.headers().isEmpty()) {
      throw BufferSpec.invalid(which + "a batch line carries no headers of its own (the batch is one request): leave"
          + " item headers out; put shared ones on the buffer");
    }
    JsonNode body;
    try {
      body = BufferSpec.JSON.readTree(item.body());
    } catch (java.io.IOException e) {
      body = null;
    }
    if (body == null || !body.isObject()) {
      throw BufferSpec.invalid(which + "the body is not a JSON object, so it is not a request for " + endpoint
          + ": push the request's JSON, e.g. {\"model\": \"gpt-4o-mini\", ...}");
    }
    for (String field : ENDPOINTS.get(endpoint)) {
      if (!body.hasNonNull(field)) {
        throw BufferSpec.invalid(which + "the body has no '" + field + "', which every " + endpoint + " request needs");
      }
    }
    if (endpoint.equals("/v1/chat/completions")
        && (!body.get("messages").isArray() || body.get("messages").isEmpty())) {
      throw BufferSpec.invalid(which + "'messages' must be a non-empty array of {\"role\": ..., \"content\": ...}");
    }
    if (body.path("stream").asBoolean(false)) {
      throw BufferSpec.invalid(which + "\"stream\": true is not served by the Batch API: leave it out");
    }
    long line = lineBytes(item.body().length);
    if (line > maxBatchBytes) {
      throw BufferSpec.invalid(which + "its batch line would be " + line + " bytes, over the buffer's maxBatchBytes ("
          + maxBatchBytes + "): no batch could carry it; shorten the body or push it to a live buffer");
    }
  }

  /**
   * Bytes of the JSONL line carrying a body of {@code bodyBytes}, with the longest {@code
   * custom_id} an item id makes: {@code {"custom_id":"<id>","method":"POST","url":"<endpoint>","body":<body>}\n}.
   */
  long lineBytes(int bodyBytes) {
    return line("9223372036854775807", new byte[0]).length + (long) bodyBytes;
  }

  /** The JSONL line (with its newline) that sends {@code body} as item {@code customId}. */
  byte[] line(String customId, byte[] body) {
    byte[] head = ("{\"custom_id\":\"" + customId + "\",\"method\":\"POST\",\"url\":\"" + endpoint + "\",\"body\":")
        .getBytes(StandardCharsets.UTF_8);
    byte[] out = new byte[head.length + body.length + 2];
    System.arraycopy(head, 0, out, 0, head.length);
    System.arraycopy(body, 0, out, head.length, body.length);
    out[out.length - 2] = '}';
    out[out.length - 1] = '\n';
    return out;
  }

  /** Reads the settings of a buffer whose delivery is {@code openai-batch}; refusals name the fix. */
  static BatchSettings parse(JsonNode body, BufferSyntax syntax) {
    JsonNode e = body.get("endpoint");
    if (e == null || e.isNull()) {
      throw BufferSpec.invalid("endpoint is missing: an openai-batch buffer needs the Batch API endpoint its items"
          + " call, one of " + endpoints() + " (e.g. \"endpoint\": \"/v1/chat/completions\")");
    }
    if (!e.isTextual() || !ENDPOINTS.containsKey(e.asText())) {
      throw BufferSpec.invalid("endpoint " + e + " is not served by OpenAI's Batch API: use one of " + endpoints());
    }
    Duration window = BufferSpec.duration(body, "completionWindow", WINDOW,
        new BufferSpec.Range(Duration.ofSeconds(1), Duration.ofDays(365), "24h"), syntax);
    if (!window.equals(WINDOW)) {
      throw BufferSpec.invalid("completionWindow " + (window.toSeconds() % 3600 == 0 ? window.toHours() + "h"
          : window.toSeconds() + "s") + " is not offered: OpenAI's Batch API"
          + " takes 24h only");
    }
    int items = (int) BufferSpec.whole(body, "maxBatchItems", PROVIDER_MAX_ITEMS, 1, PROVIDER_MAX_ITEMS);
    long bytes = BufferSpec.whole(body, "maxBatchBytes", PROVIDER_MAX_BYTES, 1024, PROVIDER_MAX_BYTES);
    Duration flush = BufferSpec.duration(body, "flushAfter", Duration.ofMinutes(10),
        new BufferSpec.Range(Duration.ofSeconds(1), Duration.ofDays(1), "10m"), syntax);
    return new BatchSettings(e.asText(), window, items, bytes, flush);
  }

  /** Refuses batch settings on a buffer that delivers item by item. */
  static void refuseOnHttp(JsonNode body) {
    for (String f : FIELDS) {
      if (body.has(f)) {
        throw BufferSpec.invalid(f + " applies to \"delivery\": \"openai-batch\" only: set that delivery, or leave "
            + f + " out");
      }
    }
  }

  void write(ObjectNode o) {
    o.put("delivery", OPENAI_BATCH);
    o.put("endpoint", endpoint);
    o.put("completionWindow", completionWindow.toString());
    o.put("maxBatchItems", maxBatchItems);
    o.put("maxBatchBytes", maxBatchBytes);
    o.put("flushAfter", flushAfter.toString());
  }
}
