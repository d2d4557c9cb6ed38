package dev.sluice.examples.mock;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpExchange;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.function.ToLongFunction;

/**
 * Anthropic's {@code POST /v1/messages} on the mock, as strict as its OpenAI side: Anthropic's
 * request checks, answer and event-stream shapes, error bodies and rate-limit headers, with the
 * limits of {@link AnthropicLimiter} (per {@code x-api-key}).
 *
 * <ul>
 *   <li>Needs {@code x-api-key} (else 401 {@code authentication_error}) and {@code
 *       anthropic-version} (else 400); a body that is not JSON or not a valid request is a 400
 *       {@code invalid_request_error} naming the field ({@link MessagesRequest}).
 *   <li>An admitted call is answered after the mock's latency with a {@code message} of a
 *       seeded-random length in [1, max_tokens] tokens ({@code stop_reason} {@code max_tokens} when
 *       it used them all, else {@code end_turn}), or, with {@code "stream": true}, Anthropic's
 *       event stream: {@code message_start} (its usage: the input tokens, 1 output token), {@code
 *       content_block_start}, {@code ping}, one {@code content_block_delta} a token, {@code
 *       content_block_stop}, {@code message_delta} (the output tokens), {@code message_stop}.
 *   <li>A refusal is a 429 {@code rate_limit_error} ("This request would exceed the rate limit for
 *       your organization … of 8,000 output tokens per minute …") with {@code retry-after} in whole
 *       seconds, rounded up; a call that can never fit has none.
 *   <li>Every answer to an authenticated call carries {@code request-id} and {@code
 *       anthropic-ratelimit-{requests,input-tokens,output-tokens,tokens}-{limit,remaining,reset}}:
 *       remaining against the per-minute limit as the OpenAI side states it, reset as an RFC 3339
 *       instant; {@code tokens-*} is whichever of input and output has less left.
 * </ul>
 */
final class AnthropicMessages {

  private static final String ORGANIZATION = "org-mock";
  private static final String VERSION_HEADER = "anthropic-version";
  private static final String LIMITS_URL = "https://docs.claude.com/en/api/rate-limits";

  private final Engine engine;
  private final ObjectMapper json;
  private final Supplier<SplittableRandom> randoms;
  private final ToLongFunction<SplittableRandom> latency;

  /**
   * @param randoms a seeded random per admitted call, the same sequence as the OpenAI side's
   * @param latency draws an answer latency in nanoseconds
   */
  AnthropicMessages(
      Engine engine,
      ObjectMapper json,
      Supplier<SplittableRandom> randoms,
      ToLongFunction<SplittableRandom> latency) {
    this.engine = engine;
    this.json = json;
    this.randoms = randoms;
    this.latency = latency;
  }

  void handle(HttpExchange exchange, byte[] body) throws IOException, InterruptedException {
    exchange.getResponseHeaders().set("request-id", newRequestId());
    String key = exchange.getRequestHeaders().getFirst("x-api-key");
    if (key == null || key.isBlank()) {
      engine.refused("unauthorized");
      sendError(exchange, 401, "authentication_error", "x-api-key header is required");
      return;
    }
    MessagesRequest request;
    try {
      if (exchange.getRequestHeaders().getFirst(VERSION_HEADER) == null) {
        throw new InvalidRequest(VERSION_HEADER + ": header is required", null, null);
      }
      JsonNode tree;
      try {
        tree = json.readTree(body);
      } catch (JsonProcessingException e) {
        throw new InvalidRequest("There was an issue with your request body: it is not valid JSON",
            null, null);
      }
      request = MessagesRequest.parse(tree);
    } catch (InvalidRequest e) {
      engine.refused("bad_request");
      sendError(exchange, 400, "invalid_request_error", e.getMessage());
      return;
    }
    AnthropicLimiter.Verdict verdict =
        engine.admitMessage(key, request.inputTokens(), request.maxTokens());
    rateHeaders(exchange, verdict.levels());
    switch (verdict.kind()) {
      case ADMITTED -> answer(exchange, key, request);
      case RATE_LIMITED -> {
        long seconds = Math.max(1, -Math.floorDiv(-verdict.waitNanos(), 1_000_000_000L));
        exchange.getResponseHeaders().set("retry-after", Long.toString(seconds));
        sendError(exchange, 429, "rate_limit_error", exceeded(verdict));
      }
      default -> sendError(exchange, 429, "rate_limit_error", exceeded(verdict)
          + " This request can never fit: reduce the prompt or max_tokens.");
    }
  }

  private String exceeded(AnthropicLimiter.Verdict v) {
    AnthropicLimiter.Level level = v.levels()[v.refusedOn().ordinal()];
    return String.format(
        Locale.ROOT,
        "This request would exceed the rate limit for your organization (%s) of %,d %s per minute."
            + " For details, refer to: %s. You can see the response headers for current usage."
            + " Please reduce the prompt length or the maximum tokens requested, or try again later.",
        ORGANIZATION, level.limit(), v.refusedOn().words, LIMITS_URL);
  }

  private void answer(HttpExchange exchange, String key, MessagesRequest request)
      throws IOException, InterruptedException {
    SplittableRandom random = randoms.get();
    long sleep = latency.applyAsLong(random);
    int length = 1 + random.nextInt(request.maxTokens());
    List<String> pieces = new ArrayList<>(length);
    for (int i = 0; i < length; i++) {
      String word = Reply.WORDS.get(random.nextInt(Reply.WORDS.size()));
      pieces.add(i == 0 ? word : " " + word);
    }
    String id = "msg_" + Long.toHexString(random.nextLong()) + Long.toHexString(random.nextLong());
    boolean done = false;
    try {
      if (sleep > 0) {
        TimeUnit.NANOSECONDS.sleep(sleep);
      }
      done = true;
    } finally {
      engine.finishedMessage(key, request.inputTokens(), request.maxTokens(), done ? length : 0);
    }
    String stopReason = length == request.maxTokens() ? "max_tokens" : "end_turn";
    if (!request.stream()) {
      ObjectNode message = message(id, request, stopReason, length);
      message.putArray("content").addObject().put("type", "text").put("text", String.join("", pieces));
      sendJson(exchange, 200, message);
      return;
    }
    exchange.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
    exchange.getResponseHeaders().set("Cache-Control", "no-cache");
    exchange.sendResponseHeaders(200, 0);
    OutputStream out = exchange.getResponseBody();
    ObjectNode start = json.createObjectNode().put("type", "message_start");
    ObjectNode opening = message(id, request, null, 1);
    opening.putArray("content");
    start.set("message", opening);
    event(out, start);
    ObjectNode blockStart = json.createObjectNode().put("type", "content_block_start").put("index", 0);
    blockStart.putObject("content_block").put("type", "text").put("text", "");
    event(out, blockStart);
    event(out, json.createObjectNode().put("type", "ping"));
    for (String piece : pieces) {
      ObjectNode delta = json.createObjectNode().put("type", "content_block_delta").put("index", 0);
      delta.putObject("delta").put("type", "text_delta").put("text", piece);
      event(out, delta);
    }
    event(out, json.createObjectNode().put("type", "content_block_stop").put("index", 0));
    ObjectNode end = json.createObjectNode().put("type", "message_delta");
    end.putObject("delta").put("stop_reason", stopReason).putNull("stop_sequence");
    end.putObject("usage").put("output_tokens", length);
    event(out, end);
    event(out, json.createObjectNode().put("type", "message_stop"));
    out.flush();
  }

  /** A {@code message} object without its content; {@code stopReason} null while streaming. */
  private ObjectNode message(String id, MessagesRequest request, String stopReason, int output) {
    ObjectNode m = json.createObjectNode();
    m.put("id", id).put("type", "message").put("role", "assistant").put("model", request.model());
    m.put("stop_reason", stopReason).putNull("stop_sequence");
    m.putObject("usage")
        .put("input_tokens", request.inputTokens())
        .put("cache_creation_input_tokens", 0)
        .put("cache_read_input_tokens", 0)
        .put("output_tokens", output);
    return m;
  }

  private void event(OutputStream out, ObjectNode data) throws IOException {
    String text = "event: " + data.get("type").asText() + "\ndata: " + json.writeValueAsString(data) + "\n\n";
    out.write(text.getBytes(StandardCharsets.UTF_8));
  }

  private static void rateHeaders(HttpExchange exchange, AnthropicLimiter.Level[] levels) {
    Headers headers = exchange.getResponseHeaders();
    Instant now = Instant.now();
    for (AnthropicLimiter.Kind k : AnthropicLimiter.Kind.values()) {
      put(headers, k.header, levels[k.ordinal()], now);
    }
    AnthropicLimiter.Level in = levels[AnthropicLimiter.Kind.INPUT.ordinal()];
    AnthropicLimiter.Level out = levels[AnthropicLimiter.Kind.OUTPUT.ordinal()];
    boolean inputTighter = (double) in.remaining() / in.limit() <= (double) out.remaining() / out.limit();
    put(headers, "tokens", inputTighter ? in : out, now);
  }

  private static void put(Headers headers, String name, AnthropicLimiter.Level level, Instant now) {
    String prefix = "anthropic-ratelimit-" + name + "-";
    headers.set(prefix + "limit", Long.toString(level.limit()));
    headers.set(prefix + "remaining", Long.toString(level.remaining()));
    Instant full = now.plus(Duration.ofNanos(level.resetNanos()));
    Instant reset = full.getNano() == 0 ? full : full.truncatedTo(ChronoUnit.SECONDS).plusSeconds(1);
    headers.set(prefix + "reset", reset.toString());
  }

  private static String newRequestId() {
    ThreadLocalRandom random = ThreadLocalRandom.current();
    return String.format("req_%016x%08x", random.nextLong(), random.nextInt());
  }

  private void sendError(HttpExchange exchange, int status, String type, String message)
      throws IOException {
    ObjectNode root = json.createObjectNode().put("type", "error");
    root.putObject("error").put("type", type).put("message", message);
    root.put("request_id", exchange.getResponseHeaders().getFirst("request-id"));
    sendJson(exchange, status, root);
  }

  private void sendJson(HttpExchange exchange, int status, JsonNode body) throws IOException {
    byte[] bytes = json.writeValueAsBytes(body);
    exchange.getResponseHeaders().set("Content-Type", "application/json");
    exchange.sendResponseHeaders(status, bytes.length);
    exchange.getResponseBody().write(bytes);
  }
}
