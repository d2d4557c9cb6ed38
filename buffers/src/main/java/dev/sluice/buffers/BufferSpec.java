package dev.sluice.buffers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.net.URI;
import java.net.URISyntaxException;
import java.time.Duration;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * A buffer: a durable queue in front of one endpoint, delivered at the pace of a Sluice resource.
 *
 * @param name 1-100 characters of A-Z a-z 0-9 . _ -
 * @param url where items go (http or https)
 * @param method POST (default), PUT, PATCH, DELETE or GET
 * @param headers sent with every item; values are secrets: stored, never logged or shown in full
 * @param resource the resource whose limit paces delivery (shared with live workers); null when
 *     {@code rate} is given
 * @param rate an inline rate instead: the buffer gets a resource {@code buffer:<name>} of its own
 * @param maxRetries failed attempts (5xx, 408, connection errors) before the item fails; 429s do
 *     not count
 * @param backoff exponential (with full jitter) or fixed
 * @param backoffBase first retry delay (exponential) or every delay (fixed)
 * @param backoffMax longest delay
 * @param inFlight deliveries at once: 1 (default) keeps strict submission order; N keeps order per
 *     item key
 * @param timeout per attempt
 * @param retention how long completed and failed items keep their status
 * @param excerptsVisibleToWorkers whether worker keys covering the buffer read the endpoint's
 *     response excerpts (default false: admins only; a response may echo the buffer's secrets)
 * @param batch with {@code "delivery": "openai-batch"}, how items go as OpenAI Batch API lines;
 *     null for the default {@code "delivery": "http"}, one request per item
 * @param overflow an http buffer's overflow into an openai-batch buffer, or null
 */
public record BufferSpec(
    String name,
    URI url,
    String method,
    Map<String, String> headers,
    String resource,
    Rate rate,
    int maxRetries,
    Backoff.Kind backoff,
    Duration backoffBase,
    Duration backoffMax,
    int inFlight,
    Duration timeout,
    Duration retention,
    boolean excerptsVisibleToWorkers,
    BatchSettings batch,
    Overflow overflow) {

  /** An inline pace: {@code amount} requests per {@code period}, bursts of {@code burst}. */
  public record Rate(long amount, Duration period, long burst) {}

  /**
   * Items whose estimated wait at the buffer's quota passes {@code whenWaitExceeds} move to the
   * openai-batch buffer {@code to} instead of waiting.
   */
  public record Overflow(String to, Duration whenWaitExceeds) {}

  static final ObjectMapper JSON = new ObjectMapper();
  private static final Pattern NAME = Pattern.compile("[A-Za-z0-9._-]{1,100}");
  private static final Pattern HEADER = Pattern.compile("[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}");
  private static final Set<String> METHODS = Set.of("POST", "PUT", "PATCH", "DELETE", "GET");
  /**
   * Headers neither a buffer nor an item may set: the framing and hop-by-hop headers (RFC 9110
   * section 7.6.1, RFC 9112 section 6: a {@code Transfer-Encoding} next to the real {@code
   * Content-Length} lets a worker smuggle a second request to the endpoint), the ones the HTTP
   * client refuses, and the ones the delivery owns. {@code Proxy-*} is refused as a prefix.
   */
  private static final Set<String> RESERVED = Set.of("connection", "content-length", "expect", "host", "upgrade",
      "transfer-encoding", "te", "trailer", "keep-alive", "idempotency-key");
  /** Longest header value: far above any real token, far below what an endpoint would refuse. */
  static final int MAX_HEADER_VALUE = 8192;

  public BufferSpec {
    headers = Map.copyOf(headers);
  }

  /** The resource that paces delivery: the named one, or the buffer's own for an inline rate. */
  public String pacingResource() {
    return resource != null ? resource : "buffer:" + name;
  }

  /**
   * Reads and checks a spec; every refusal names the field and the fix.
   *
   * @param syntax the coordinator's resource names and durations
   * @throws BufferException INVALID
   */
  public static BufferSpec parse(JsonNode body, BufferSyntax syntax) {
    if (body == null || !body.isObject()) {
      throw invalid("a buffer is a JSON object: {\"name\": \"orders\", \"url\": \"https://...\", \"resource\": \"shop\"}");
    }
    known(body, "name", "url", "method", "headers", "resource", "rate", "maxRetries", "backoff", "backoffBase",
        "backoffMax", "inFlight", "timeout", "retention", "excerptsVisibleToWorkers", "delivery", "endpoint",
        "completionWindow", "maxBatchItems", "maxBatchBytes", "flushAfter", "overflowTo", "whenWaitExceeds");
    String name = text(body, "name", null);
    if (name == null || !NAME.matcher(name).matches()) {
      throw invalid("buffer name " + (name == null ? "is missing" : "'" + name + "' is invalid")
          + ": use 1-100 characters of A-Z a-z 0-9 . _ -");
    }
    String rawUrl = text(body, "url", null);
    if (rawUrl == null) {
      throw invalid("url is missing: where should the items go? e.g. https://api.example.com/orders");
    }
    URI url;
    try {
      url = new URI(rawUrl);
    } catch (URISyntaxException e) {
      throw invalid("url '" + maskUrl(rawUrl) + "' is not a URL (" + e.getReason() + "): e.g."
          + " https://api.example.com/orders");
    }
    if (url.getScheme() == null || !Set.of("http", "https").contains(url.getScheme().toLowerCase(Locale.ROOT))
        || url.getHost() == null) {
      throw invalid("url '" + maskUrl(rawUrl) + "' must be an absolute http or https URL with a host");
    }
    if (url.getPort() > 65535) {
      throw invalid("url '" + maskUrl(rawUrl) + "' has port " + url.getPort() + ": ports run from 1 to 65535");
    }
    if (url.getPort() == 0) {
      throw invalid("url '" + maskUrl(rawUrl) + "' has port 0, which no endpoint listens on: give the endpoint's port"
          + " or none (80 for http, 443 for https)");
    }
    TargetPolicy.checkHostForm(url.getHost());
    String method = text(body, "method", "POST").toUpperCase(Locale.ROOT);
    if (!METHODS.contains(method)) {
      throw invalid("method '" + method + "' is not supported: use POST, PUT, PATCH, DELETE or GET");
    }
    Map<String, String> headers = headers(body.get("headers"), "headers");
    String resource = text(body, "resource", null);
    Rate rate = null;
    if (body.hasNonNull("rate")) {
      JsonNode r = body.get("rate");
      if (!r.isObject()) {
        throw invalid("rate must be an object: {\"amount\": 10, \"period\": \"1s\", \"burst\": 1}");
      }
      known(r, "amount", "period", "burst");
      long amount = whole(r, "rate.amount", 0, 1, 1_000_000_000L);
      Duration period = duration(r, "rate.period", Duration.ofSeconds(1),
          new Range(syntax.minPeriod(), syntax.maxPeriod(), "1m"), syntax);
      long burst = whole(r, "rate.burst", 1, 1, 1_000_000_000L);
      rate = new Rate(amount, period, burst);
    }
    if ((resource == null) == (rate == null)) {
      throw invalid("give either resource (a limit shared with your workers, e.g. \"openai\") or rate (the"
          + " buffer's own pace, e.g. {\"amount\": 10, \"period\": \"1s\"}), exactly one of them");
    }
    if (resource != null) {
      try {
        syntax.checkResource(resource);
      } catch (IllegalArgumentException e) {
        throw invalid(e.getMessage());
      }
    }
    int maxRetries = (int) whole(body, "maxRetries", 5, 0, 1000);
    Backoff.Kind backoff;
    String kind = text(body, "backoff", "exponential");
    try {
      backoff = Backoff.Kind.valueOf(kind.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw invalid("backoff '" + kind + "' is unknown: use exponential (with jitter) or fixed");
    }
    Duration base = duration(body, "backoffBase", Duration.ofSeconds(1), BACKOFF_BASE, syntax);
    Duration max = duration(body, "backoffMax", Duration.ofMinutes(5), BACKOFF_MAX, syntax);
    if (max.compareTo(base) < 0) {
      throw invalid("backoffMax " + max + " must be at least backoffBase (" + base + ") and at most 1d");
    }
    int inFlight = (int) whole(body, "inFlight", 1, 1, 1000);
    Duration timeout = duration(body, "timeout", Duration.ofSeconds(30), TIMEOUT, syntax);
    Duration retention = duration(body, "retention", Duration.ofDays(7), RETENTION, syntax);
    JsonNode excerpts = body.get("excerptsVisibleToWorkers");
    if (excerpts != null && !excerpts.isNull() && !excerpts.isBoolean()) {
      throw invalid("excerptsVisibleToWorkers must be true or false (default false: only admins read the"
          + " endpoint's responses), not " + excerpts);
    }
    String delivery = text(body, "delivery", BatchSettings.HTTP);
    BatchSettings batch = null;
    if (delivery.equals(BatchSettings.OPENAI_BATCH)) {
      if (!method.equals("POST")) {
        throw invalid("method " + method + ": an openai-batch buffer sends its batches with POST; leave method out");
      }
      batch = BatchSettings.parse(body, syntax);
    } else if (delivery.equals(BatchSettings.HTTP)) {
      BatchSettings.refuseOnHttp(body);
    } else {
      throw invalid("delivery '" + delivery + "' is unknown: use http (default, one request per item) or openai-batch"
          + " (items go as lines of OpenAI Batch API files)");
    }
    Overflow overflow = null;
    String overflowTo = text(body, "overflowTo", null);
    if (overflowTo != null || body.hasNonNull("whenWaitExceeds")) {
      if (overflowTo == null || !body.hasNonNull("whenWaitExceeds")) {
        throw invalid("overflowTo and whenWaitExceeds go together: e.g. \"overflowTo\": \"nightly\","
            + " \"whenWaitExceeds\": \"5m\" (items that would wait longer move to the openai-batch buffer nightly)");
      }
      if (batch != null) {
        throw invalid("overflowTo: an openai-batch buffer does not overflow (its items wait for a batch anyway); set"
            + " overflowTo on the http buffer whose items should move to it");
      }
      if (!NAME.matcher(overflowTo).matches()) {
        throw invalid("overflowTo '" + overflowTo + "' is not a buffer name: use 1-100 characters of A-Z a-z 0-9 . _ -");
      }
      if (overflowTo.equals(name)) {
        throw invalid("overflowTo '" + overflowTo + "' is this buffer itself: name an openai-batch buffer"
            + " (`sluice buffer create NAME --delivery openai-batch ...`)");
      }
      overflow = new Overflow(overflowTo, duration(body, "whenWaitExceeds", null, WAIT_THRESHOLD, syntax));
    }
    return new BufferSpec(name, url, method, headers, resource, rate, maxRetries, backoff, base, max, inFlight,
        timeout, retention, excerpts != null && excerpts.asBoolean(false), batch, overflow);
  }

  /** Per-item or buffer headers: names checked, reserved ones refused. */
  static Map<String, String> headers(JsonNode node, String field) {
    Map<String, String> out = new LinkedHashMap<>();
    if (node == null || node.isNull()) {
      return out;
    }
    if (!node.isObject()) {
      throw invalid(field + " must be an object of header name to value, e.g. {\"Authorization\": \"Bearer ...\"}");
    }
    for (Map.Entry<String, JsonNode> e : node.properties()) {
      if (!HEADER.matcher(e.getKey()).matches()) {
        throw invalid(field + ": '" + printable(e.getKey()) + "' is not a valid header name: use 1-100 letters, digits"
            + " and - (e.g. X-Request-Source)");
      }
      checkAllowed(field, e.getKey());
      if (!e.getValue().isTextual()) {
        throw invalid(field + "." + e.getKey() + " must be a string, not " + e.getValue().getNodeType()
            .toString().toLowerCase(Locale.ROOT));
      }
      checkValue(field, e.getKey(), e.getValue().asText());
      if (out.keySet().stream().anyMatch(k -> k.equalsIgnoreCase(e.getKey()))) {
        throw invalid(field + ": header " + e.getKey() + " is given twice (header names ignore case): keep one");
      }
      out.put(e.getKey(), e.getValue().asText());
    }
    if (out.size() > 50) {
      throw invalid(field + " has " + out.size() + " headers: at most 50");
    }
    return out;
  }

  /** Refuses a header that only the delivery may set: framing, hop-by-hop, proxy and its own. */
  static void checkAllowed(String field, String header) {
    String lower = header.toLowerCase(Locale.ROOT);
    if (RESERVED.contains(lower) || lower.startsWith("proxy-")) {
      throw invalid(field + ": header " + header + " may not be set: framing and hop-by-hop headers (Transfer-Encoding,"
          + " Content-Length, Connection, Host, Upgrade, TE, Trailer, Keep-Alive, Expect, Proxy-*) and"
          + " Idempotency-Key are the delivery's own: leave it out");
    }
  }

  /**
   * A header value as the endpoint will receive it: printable ASCII, spaces and tabs (RFC 9110
   * field-value without obs-text). The HTTP client refuses anything else when the request is
   * built, so it is refused here, where the pusher learns of it.
   */
  static void checkValue(String field, String header, String value) {
    if (value.length() > MAX_HEADER_VALUE) {
      throw invalid(field + "." + header + " is " + value.length() + " characters: at most " + MAX_HEADER_VALUE);
    }
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      if ((c < 0x20 && c != '\t') || c >= 0x7f) {
        throw invalid(field + "." + header + " holds " + String.format("U+%04X", (int) c) + " at position " + i
            + ": header values are printable ASCII text (letters, digits, punctuation, spaces); encode anything"
            + " else, e.g. as percent-encoding or base64");
      }
    }
  }

  /** A name as it may be quoted in an error: control characters escaped, cut at 100. */
  private static String printable(String s) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < s.length() && i < 100; i++) {
      char c = s.charAt(i);
      b.append(c < 0x20 || c >= 0x7f ? String.format("\\u%04x", (int) c) : String.valueOf(c));
    }
    return b.toString();
  }

  /** The spec as stored (secrets included): only ever written to the data dir. */
  ObjectNode toStoredJson() {
    ObjectNode o = shape(false);
    ObjectNode h = o.putObject("headers");
    headers.forEach(h::put);
    o.put("excerptsVisibleToWorkers", excerptsVisibleToWorkers);
    return o;
  }

  /**
   * The spec as shown, to admins and workers alike: header values, the URL's user info and its
   * query values masked.
   */
  public ObjectNode toPublicJson() {
    ObjectNode o = shape(true);
    ObjectNode h = o.putObject("headers");
    headers.forEach((k, v) -> h.put(k, MASK));
    o.put("excerptsVisibleToWorkers", excerptsVisibleToWorkers);
    return o;
  }

  /** The URL as shown and logged: user info, query values and fragment masked. */
  public String shownUrl() {
    return maskUrl(url.toString());
  }

  private ObjectNode shape(boolean shown) {
    ObjectNode o = JSON.createObjectNode();
    o.put("name", name);
    o.put("url", shown ? shownUrl() : url.toString());
    o.put("method", method);
    if (resource != null) {
      o.put("resource", resource);
    } else {
      ObjectNode r = o.putObject("rate");
      r.put("amount", rate.amount());
      r.put("period", rate.period().toString());
      r.put("burst", rate.burst());
    }
    o.put("maxRetries", maxRetries);
    o.put("backoff", backoff.name().toLowerCase(Locale.ROOT));
    o.put("backoffBase", backoffBase.toString());
    o.put("backoffMax", backoffMax.toString());
    o.put("inFlight", inFlight);
    o.put("timeout", timeout.toString());
    o.put("retention", retention.toString());
    if (batch != null) {
      batch.write(o);
    }
    if (overflow != null) {
      o.put("overflowTo", overflow.to());
      o.put("whenWaitExceeds", overflow.whenWaitExceeds().toString());
    }
    return o;
  }

  /** What a secret shows: nothing of it. */
  static final String MASK = "***";

  /**
   * A URL, or what was given as one, with its secrets masked: {@code user:pass@} becomes
   * {@code ***@}, every query value (or a bare query word) {@code ***}, a fragment {@code ***}.
   * Works on the raw text, so it masks an unparseable URL as well as a good one.
   */
  static String maskUrl(String raw) {
    String rest = raw;
    String fragment = "";
    int hash = rest.indexOf('#');
    if (hash >= 0) {
      fragment = "#" + MASK;
      rest = rest.substring(0, hash);
    }
    String query = null;
    int q = rest.indexOf('?');
    if (q >= 0) {
      query = rest.substring(q + 1);
      rest = rest.substring(0, q);
    }
    int scheme = rest.indexOf("://");
    int authorityStart = scheme < 0 ? 0 : scheme + 3;
    int slash = rest.indexOf('/', authorityStart);
    int authorityEnd = slash < 0 ? rest.length() : slash;
    int at = rest.lastIndexOf('@', authorityEnd - 1);
    if (at >= authorityStart) {
      rest = rest.substring(0, authorityStart) + MASK + rest.substring(at);
    }
    if (query == null) {
      return rest + fragment;
    }
    StringBuilder b = new StringBuilder(rest).append('?');
    String[] params = query.split("&", -1);
    for (int i = 0; i < params.length; i++) {
      int eq = params[i].indexOf('=');
      b.append(i == 0 ? "" : "&").append(eq >= 0 ? params[i].substring(0, eq + 1) + MASK
          : params[i].isEmpty() ? "" : MASK);
    }
    return b.append(fragment).toString();
  }

  // ---------------------------------------------------------------------------------------

  static BufferException invalid(String message) {
    return BufferException.invalid(message);
  }

  static void known(JsonNode body, String... fields) {
    List<String> ok = List.of(fields);
    for (Iterator<String> it = body.fieldNames(); it.hasNext(); ) {
      String f = it.next();
      if (!ok.contains(f)) {
        throw invalid("unknown field '" + f + "': a buffer takes " + String.join(", ", fields));
      }
    }
  }

  static String text(JsonNode body, String field, String dflt) {
    JsonNode v = body.get(field);
    if (v == null || v.isNull()) {
      return dflt;
    }
    if (!v.isTextual()) {
      throw invalid(field + " must be a string, not " + v);
    }
    return v.asText();
  }

  static long whole(JsonNode body, String field, long dflt, long min, long max) {
    String leaf = field.substring(field.lastIndexOf('.') + 1);
    JsonNode v = body.get(leaf);
    if (v == null || v.isNull()) {
      return dflt;
    }
    if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < min || v.longValue() > max) {
      throw invalid(field + " is " + v + ": give a whole number from " + min + " to " + max);
    }
    return v.longValue();
  }

  /** A duration field's range, and an example of it for the refusal. */
  record Range(Duration min, Duration max, String example) {}

  private static final Range BACKOFF_BASE = new Range(Duration.ofMillis(1), Duration.ofHours(1), "1s");
  private static final Range BACKOFF_MAX = new Range(Duration.ofMillis(1), Duration.ofDays(1), "5m");
  private static final Range TIMEOUT = new Range(Duration.ofMillis(1), Duration.ofMinutes(10), "30s");
  private static final Range RETENTION = new Range(Duration.ofSeconds(1), Duration.ofDays(365), "7d");
  private static final Range WAIT_THRESHOLD = new Range(Duration.ofSeconds(1), Duration.ofDays(7), "5m");

  /** A duration: seconds as a number, or 250ms / 30s / 5m / 1h / 2d, or ISO-8601, within {@code bounds}. */
  static Duration duration(JsonNode body, String field, Duration dflt, Range range, BufferSyntax syntax) {
    String leaf = field.substring(field.lastIndexOf('.') + 1);
    JsonNode v = body.get(leaf);
    if (v == null || v.isNull()) {
      return dflt;
    }
    if (!v.isNumber() && !v.isTextual()) {
      throw invalid(field + " must be a duration such as \"30s\", not " + v);
    }
    try {
      return syntax.duration(field, v.asText(), range.min(), range.max(), range.example());
    } catch (IllegalArgumentException e) {
      throw invalid(e.getMessage());
    }
  }
}
