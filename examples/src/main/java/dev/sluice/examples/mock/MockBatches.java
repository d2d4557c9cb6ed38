package dev.sluice.examples.mock;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.examples.TokenEstimator;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * OpenAI's Files and Batch APIs as the mock serves them: {@code POST /v1/files} (multipart, purpose
 * {@code batch}), {@code GET /v1/files/{id}} and {@code /v1/files/{id}/content}, and {@code POST
 * /v1/batches}, {@code GET /v1/batches/{id}}, {@code POST /v1/batches/{id}/cancel}, {@code GET
 * /v1/batches} (newest first, {@code limit} and {@code after}).
 *
 * <p>The life of a batch, all on the mock's ticker (no thread runs it: every read computes the
 * state at that instant):
 *
 * <ol>
 *   <li>{@code validating} at create. The input file is checked as OpenAI checks it: every line a
 *       JSON object with {@code custom_id} (unique), {@code method} POST, {@code url} equal to the
 *       batch's endpoint and an object {@code body}; at most 50,000 lines. A bad file makes the
 *       batch {@code failed} with one {@code errors.data} entry per bad line (its {@code line},
 *       1-based). Then the enqueued-token limit: the batch's input tokens plus those of the
 *       model's batches still {@code validating}, {@code in_progress} or {@code finalizing} must
 *       stay within {@link #queueLimit}; otherwise the batch is {@code failed} with code {@code
 *       token_limit_exceeded}, as OpenAI refuses it (create itself answers 200).
 *   <li>{@code in_progress} right after, then {@code completed} once the processing time has
 *       passed, with an output file (one line per answered request, {@code response.status_code}
 *       200 and a {@code chat.completion} body) and an error file (requests whose body OpenAI
 *       would refuse: status 400 with the live endpoint's error body; and, when line errors are
 *       on, every k-th line answered 500 {@code server_error}).
 *   <li>{@code expired} instead when the processing time exceeds the expiry (24 h unless set):
 *       the share of lines the time allowed is answered, in line order, and every other line is
 *       in the error file with {@code batch_expired}.
 *   <li>{@code cancelling} then {@code cancelled} on cancel: lines processed so far are answered,
 *       the others are in the error file with {@code batch_cancelled}.
 * </ol>
 */
final class MockBatches {

  /** OpenAI's cap on requests in one batch input file. */
  static final int MAX_LINES = 50_000;
  /** The only completion window OpenAI offers. */
  static final String WINDOW = "24h";
  /** The endpoints OpenAI's Batch API serves; the mock executes chat completions only. */
  static final List<String> ENDPOINTS = List.of("/v1/responses", "/v1/chat/completions", "/v1/embeddings",
      "/v1/completions", "/v1/moderations");
  private static final Set<String> PURPOSES = Set.of("assistants", "batch", "fine-tune", "vision", "user_data",
      "evals");

  /** A refusal of the whole HTTP call, in OpenAI's error shape. */
  static final class Refusal extends Exception {
    final int status;
    final String type;
    final String param;
    final String code;

    Refusal(int status, String message, String type, String param, String code) {
      super(message, null, false, false);
      this.status = status;
      this.type = type;
      this.param = param;
      this.code = code;
    }
  }

  /** What a call answers: a status, its content type and bytes. */
  record Answer(int status, String contentType, byte[] body) {}

  private record StoredFile(String id, String filename, String purpose, byte[] content, long createdAt) {}

  private static final class Batch {
    final String id;
    final String endpoint;
    final String inputFileId;
    final String model;
    final long tokens;
    final long createdNanos;
    final long createdAt;
    final ObjectNode metadata;
    final List<JsonNode> lines;
    /** Null while the batch is valid; else the errors it failed with. */
    ArrayNode errors;
    long cancelledNanos = -1;
    /** Set once the batch ended: its files are written then, once. */
    String status;
    long endedAt;
    String outputFileId;
    String errorFileId;
    int completed;
    int failed;

    Batch(String id, String endpoint, String inputFileId, String model, long tokens, long createdNanos,
        long createdAt, ObjectNode metadata, List<JsonNode> lines) {
      this.id = id;
      this.endpoint = endpoint;
      this.inputFileId = inputFileId;
      this.model = model;
      this.tokens = tokens;
      this.createdNanos = createdNanos;
      this.createdAt = createdAt;
      this.metadata = metadata;
      this.lines = lines;
    }
  }

  private final ObjectMapper json;
  private final LongSupplier ticker;
  private final Supplier<SplittableRandom> random;
  private final long epochNanos;
  private final long startNanos;
  private final Map<String, StoredFile> files = new HashMap<>();
  private final Map<String, Batch> batches = new LinkedHashMap<>();
  private long processingNanos;
  private long expiryNanos = Duration.ofHours(24).toNanos();
  private int lineErrorEvery;
  private boolean stuck;
  private long queueLimit;
  private long sequence;

  MockBatches(ObjectMapper json, LongSupplier ticker, Supplier<SplittableRandom> random, Duration processing,
      long queueLimit) {
    this.json = json;
    this.ticker = ticker;
    this.random = random;
    this.startNanos = ticker.getAsLong();
    this.epochNanos = System.currentTimeMillis() * 1_000_000L;
    this.processingNanos = processing.toNanos();
    this.queueLimit = queueLimit;
  }

  /** How long a batch takes from create to completed, on the ticker. */
  synchronized void processing(Duration d) {
    processingNanos = d.toNanos();
  }

  /** How long before an unfinished batch expires, on the ticker; OpenAI's is its 24 h window. */
  synchronized void expiry(Duration d) {
    expiryNanos = d.toNanos();
  }

  /**
   * A provider that never finishes: batches stay {@code in_progress} past their {@code
   * expires_at}, whatever the processing time; only a cancel ends them.
   */
  synchronized void stuck(boolean on) {
    stuck = on;
  }

  /** Every k-th line of a batch (1-based: lines k, 2k, ...) is answered 500 {@code server_error}; 0: none. */
  synchronized void lineErrorEvery(int k) {
    lineErrorEvery = k;
  }

  /** Enqueued input tokens per model across unfinished batches. */
  synchronized void queueLimit(long tokens) {
    queueLimit = tokens;
  }

  /** Input tokens of the model's batches not yet ended, at this instant. */
  synchronized long enqueuedTokens(String model) {
    long now = ticker.getAsLong();
    long sum = 0;
    for (Batch b : batches.values()) {
      settle(b, now);
      if (b.status == null && b.errors == null && b.model.equals(model)) {
        sum += b.tokens;
      }
    }
    return sum;
  }

  /**
   * Serves a Files or Batches call.
   *
   * @return null when the path is not one of theirs
   */
  synchronized Answer handle(String method, String path, String query, String contentType, byte[] body)
      throws Refusal {
    if (path.equals("/v1/files") && method.equals("POST")) {
      return ok(upload(contentType, body));
    }
    if (path.startsWith("/v1/files/") && method.equals("GET")) {
      String rest = path.substring("/v1/files/".length());
      if (rest.endsWith("/content")) {
        StoredFile f = file(rest.substring(0, rest.length() - "/content".length()));
        return new Answer(200, "application/octet-stream", f.content());
      }
      return ok(fileObject(file(rest)));
    }
    if (path.equals("/v1/batches") && method.equals("POST")) {
      return ok(create(body));
    }
    if (path.equals("/v1/batches") && method.equals("GET")) {
      return ok(list(query));
    }
    if (path.startsWith("/v1/batches/")) {
      String rest = path.substring("/v1/batches/".length());
      if (rest.endsWith("/cancel") && method.equals("POST")) {
        return ok(cancel(rest.substring(0, rest.length() - "/cancel".length())));
      }
      if (method.equals("GET") && !rest.contains("/")) {
        return ok(batchObject(batch(rest)));
      }
    }
    return null;
  }

  private Answer ok(JsonNode body) {
    try {
      return new Answer(200, "application/json", json.writeValueAsBytes(body));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  // ---------------------------------------------------------------- Files

  private JsonNode upload(String contentType, byte[] body) throws Refusal {
    Map<String, Part> parts = Multipart.parse(contentType, body);
    Part purpose = parts.get("purpose");
    if (purpose == null) {
      throw invalid("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter");
    }
    String p = new String(purpose.content(), StandardCharsets.UTF_8).strip();
    if (!PURPOSES.contains(p)) {
      throw invalid("'" + p + "' is not one of ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals']"
          + " - 'purpose'", "purpose", "invalid_value");
    }
    Part file = parts.get("file");
    if (file == null || file.filename() == null) {
      throw invalid("Missing required parameter: 'file'.", "file", "missing_required_parameter");
    }
    if (p.equals("batch") && !file.filename().endsWith(".jsonl")) {
      throw invalid("Invalid file format for Batch API. Must be .jsonl", "file", "invalid_file_format");
    }
    StoredFile f = store(file.filename(), p, file.content());
    return fileObject(f);
  }

  private StoredFile store(String filename, String purpose, byte[] content) {
    StoredFile f = new StoredFile(newId("file-"), filename, purpose, content, epochSeconds(ticker.getAsLong()));
    files.put(f.id(), f);
    return f;
  }

  private StoredFile file(String id) throws Refusal {
    StoredFile f = files.get(id);
    if (f == null) {
      throw new Refusal(404, "No such File object: " + id, "invalid_request_error", "id", null);
    }
    return f;
  }

  private ObjectNode fileObject(StoredFile f) {
    ObjectNode o = json.createObjectNode();
    o.put("id", f.id());
    o.put("object", "file");
    o.put("bytes", f.content().length);
    o.put("created_at", f.createdAt());
    o.put("filename", f.filename());
    o.put("purpose", f.purpose());
    o.put("status", "processed");
    return o;
  }

  // ---------------------------------------------------------------- Batches

  private JsonNode create(byte[] body) throws Refusal {
    JsonNode req;
    try {
      req = json.readTree(body);
    } catch (java.io.IOException e) {
      throw invalid("We could not parse the JSON body of your request.", null, null);
    }
    if (req == null || !req.isObject()) {
      throw invalid("Invalid type for request body: expected an object.", null, "invalid_type");
    }
    String endpoint = text(req, "endpoint");
    String window = text(req, "completion_window");
    String fileId = text(req, "input_file_id");
    if (!ENDPOINTS.contains(endpoint)) {
      throw invalid("Invalid value: '" + endpoint + "'. Supported values are: '" + String.join("', '", ENDPOINTS)
          + "'.", "endpoint", "invalid_value");
    }
    if (!WINDOW.equals(window)) {
      throw invalid("Invalid value: '" + window + "'. Supported values are: '24h'.", "completion_window",
          "invalid_value");
    }
    ObjectNode metadata = json.createObjectNode();
    JsonNode m = req.get("metadata");
    if (m != null && !m.isNull()) {
      if (!m.isObject() || m.size() > 16) {
        throw invalid("Invalid 'metadata': expected an object of at most 16 string pairs.", "metadata", null);
      }
      for (Map.Entry<String, JsonNode> e : m.properties()) {
        if (!e.getValue().isTextual() || e.getKey().length() > 64 || e.getValue().asText().length() > 512) {
          throw invalid("Invalid 'metadata." + e.getKey() + "': keys are at most 64 characters, values strings of at"
              + " most 512.", "metadata", null);
        }
        metadata.put(e.getKey(), e.getValue().asText());
      }
    }
    StoredFile input = file(fileId);
    if (!input.purpose().equals("batch")) {
      throw invalid("File " + fileId + " has purpose '" + input.purpose() + "': a batch's input file must have"
          + " purpose 'batch'.", "input_file_id", "invalid_value");
    }
    long now = ticker.getAsLong();
    ArrayNode errors = json.createArrayNode();
    List<JsonNode> lines = readLines(input.content(), endpoint, errors);
    String model = lines.isEmpty() ? "" : lines.get(0).path("body").path("model").asText("");
    long tokens = 0;
    for (JsonNode line : lines) {
      tokens += inputTokens(line.get("body"));
    }
    Batch b = new Batch(newId("batch_"), endpoint, fileId, model, tokens, now, epochSeconds(now), metadata, lines);
    if (errors.isEmpty() && enqueuedTokens(model) + tokens > queueLimit) {
      errors.add(error("token_limit_exceeded", "Enqueued token limit reached for " + model
          + " in organization org-mock. Limit: " + queueLimit + " enqueued tokens. Please try again once some"
          + " in_progress batches have been completed.", null));
    }
    if (!errors.isEmpty()) {
      b.errors = errors;
    }
    batches.put(b.id, b);
    ObjectNode o = batchObject(b);
    o.put("status", "validating"); // OpenAI answers the create before validating
    o.putNull("failed_at");
    o.putNull("in_progress_at");
    o.putNull("errors");
    return o;
  }

  private List<JsonNode> readLines(byte[] content, String endpoint, ArrayNode errors) {
    List<JsonNode> out = new ArrayList<>();
    Set<String> ids = new HashSet<>();
    String[] raw = new String(content, StandardCharsets.UTF_8).split("\n");
    if (raw.length > MAX_LINES) {
      errors.add(error("too_many_requests", "The batch input file has " + raw.length + " requests; a batch may"
          + " hold at most " + MAX_LINES + ".", null));
      return out;
    }
    for (int i = 0; i < raw.length; i++) {
      if (raw[i].isBlank()) {
        continue;
      }
      int n = i + 1;
      JsonNode line;
      try {
        line = json.readTree(raw[i]);
      } catch (JsonProcessingException e) {
        errors.add(error("invalid_json_line", "This line is not parseable as valid JSON.", n));
        continue;
      }
      if (line == null || !line.isObject() || !line.path("custom_id").isTextual()) {
        errors.add(error("missing_required_parameter", "Missing required parameter: 'custom_id'.", n));
      } else if (!ids.add(line.get("custom_id").asText())) {
        errors.add(error("duplicate_custom_id", "The custom_id for this request is a duplicate of another request."
            + " The custom_id parameter must be unique for each request in a batch.", n));
      } else if (!"POST".equals(line.path("method").asText())) {
        errors.add(error("invalid_method", "The method for this request must be 'POST'.", n));
      } else if (!endpoint.equals(line.path("url").asText())) {
        errors.add(error("mismatched_endpoint", "The provided URL for this request does not match the batch"
            + " endpoint.", n));
      } else if (!line.path("body").isObject()) {
        errors.add(error("invalid_request", "The request body must be a JSON object.", n));
      } else {
        out.add(line);
      }
    }
    if (errors.isEmpty() && out.isEmpty()) {
      errors.add(error("empty_file", "The batch input file is empty.", null));
    }
    if (errors.isEmpty() && out.stream().map(l -> l.path("body").path("model").asText("")).distinct().count() > 1) {
      errors.add(error("model_mismatch", "All requests in a batch must use the same model.", null));
    }
    return out;
  }

  private static long inputTokens(JsonNode body) {
    try {
      return TokenEstimator.promptTokens(ChatRequest.parse(body).messages());
    } catch (InvalidRequest e) {
      return 0; // refused at processing: answers 400 and costs nothing
    }
  }

  private ObjectNode error(String code, String message, Integer line) {
    ObjectNode e = json.createObjectNode();
    e.put("code", code);
    e.put("message", message);
    e.putNull("param");
    if (line == null) {
      e.putNull("line");
    } else {
      e.put("line", line);
    }
    return e;
  }

  private JsonNode cancel(String id) throws Refusal {
    Batch b = batch(id);
    long now = ticker.getAsLong();
    settle(b, now);
    if (b.status != null || b.errors != null) {
      throw new Refusal(409, "Cannot cancel a batch with status '" + (b.status != null ? b.status : "failed") + "'.",
          "invalid_request_error", null, null);
    }
    b.cancelledNanos = now;
    ObjectNode o = batchObject(b);
    o.put("status", "cancelling");
    return o;
  }

  private JsonNode list(String query) throws Refusal {
    int limit = 20;
    String after = null;
    if (query != null) {
      for (String kv : query.split("&")) {
        int eq = kv.indexOf('=');
        String k = eq < 0 ? kv : kv.substring(0, eq);
        String v = eq < 0 ? "" : java.net.URLDecoder.decode(kv.substring(eq + 1), StandardCharsets.UTF_8);
        if (k.equals("limit")) {
          try {
            limit = Integer.parseInt(v);
          } catch (NumberFormatException e) {
            limit = -1;
          }
          if (limit < 1 || limit > 100) {
            throw invalid("Invalid 'limit': integer below minimum value or above maximum value (1 to 100).", "limit",
                "integer_out_of_range");
          }
        } else if (k.equals("after")) {
          after = v;
        }
      }
    }
    List<Batch> newestFirst = new ArrayList<>(batches.values());
    java.util.Collections.reverse(newestFirst);
    int from = 0;
    if (after != null) {
      from = -1;
      for (int i = 0; i < newestFirst.size(); i++) {
        if (newestFirst.get(i).id.equals(after)) {
          from = i + 1;
        }
      }
      if (from < 0) {
        throw new Refusal(404, "No such Batch object: " + after, "invalid_request_error", "after", null);
      }
    }
    ObjectNode o = json.createObjectNode();
    o.put("object", "list");
    ArrayNode data = o.putArray("data");
    int to = Math.min(newestFirst.size(), from + limit);
    for (int i = from; i < to; i++) {
      data.add(batchObject(newestFirst.get(i)));
    }
    if (data.isEmpty()) {
      o.putNull("first_id");
      o.putNull("last_id");
    } else {
      o.put("first_id", data.get(0).get("id").asText());
      o.put("last_id", data.get(data.size() - 1).get("id").asText());
    }
    o.put("has_more", to < newestFirst.size());
    return o;
  }

  private Batch batch(String id) throws Refusal {
    Batch b = batches.get(id);
    if (b == null) {
      throw new Refusal(404, "No batch found with id '" + id + "'.", "invalid_request_error", "batch_id", null);
    }
    return b;
  }

  /** Ends the batch if its time has come: answers its lines and writes its files, once. */
  private void settle(Batch b, long now) {
    if (b.status != null || b.errors != null) {
      return;
    }
    long done = stuck ? Long.MAX_VALUE : b.createdNanos + processingNanos;
    long expires = stuck ? Long.MAX_VALUE : b.createdNanos + expiryNanos;
    long end;
    String status;
    if (b.cancelledNanos >= 0 && b.cancelledNanos < Math.min(done, expires)) {
      end = b.cancelledNanos;
      status = "cancelled";
    } else if (done <= expires && now >= done) {
      end = done;
      status = "completed";
    } else if (done > expires && now >= expires) {
      end = expires;
      status = "expired";
    } else {
      return;
    }
    // Lines are processed in order at an even pace over the processing time.
    int processed = processingNanos == 0 ? b.lines.size()
        : (int) Math.min(b.lines.size(), (double) b.lines.size() * (end - b.createdNanos) / processingNanos);
    StringBuilder out = new StringBuilder();
    StringBuilder err = new StringBuilder();
    for (int i = 0; i < b.lines.size(); i++) {
      JsonNode line = b.lines.get(i);
      ObjectNode r = json.createObjectNode();
      r.put("id", newId("batch_req_"));
      r.put("custom_id", line.get("custom_id").asText());
      if (i >= processed) {
        r.putNull("response");
        r.set("error", status.equals("expired")
            ? errorBody("batch_expired", "This request could not be executed before the completion window expired.")
            : errorBody("batch_cancelled", "This request was not executed because the batch was cancelled."));
        err.append(r).append('\n');
        b.failed++;
        continue;
      }
      ObjectNode response = r.putObject("response");
      response.put("request_id", newId("req_"));
      r.putNull("error");
      if (lineErrorEvery > 0 && (i + 1) % lineErrorEvery == 0) {
        response.put("status_code", 500);
        response.set("body", apiError("The server had an error while processing your request. Sorry about that!",
            "server_error", null, null));
        err.append(r).append('\n');
        b.failed++;
        continue;
      }
      try {
        ChatRequest request = ChatRequest.parse(line.get("body"));
        int prompt = TokenEstimator.promptTokens(request.messages());
        Reply reply = new Reply(request, prompt, epochSeconds(end), random.get());
        response.put("status_code", 200);
        response.set("body", reply.completion(json));
        out.append(r).append('\n');
        b.completed++;
      } catch (InvalidRequest e) {
        response.put("status_code", 400);
        response.set("body", apiError(e.getMessage(), "invalid_request_error", e.param, e.code));
        err.append(r).append('\n');
        b.failed++;
      }
    }
    if (out.length() > 0) {
      b.outputFileId = store("batch_" + b.id + "_output.jsonl", "batch_output",
          out.toString().getBytes(StandardCharsets.UTF_8)).id();
    }
    if (err.length() > 0) {
      b.errorFileId = store("batch_" + b.id + "_error.jsonl", "batch_output",
          err.toString().getBytes(StandardCharsets.UTF_8)).id();
    }
    b.status = status;
    b.endedAt = epochSeconds(end);
  }

  private ObjectNode errorBody(String code, String message) {
    ObjectNode e = json.createObjectNode();
    e.put("code", code);
    e.put("message", message);
    return e;
  }

  private ObjectNode apiError(String message, String type, String param, String code) {
    ObjectNode root = json.createObjectNode();
    ObjectNode e = root.putObject("error");
    e.put("message", message);
    e.put("type", type);
    e.put("param", param);
    e.put("code", code);
    return root;
  }

  private ObjectNode batchObject(Batch b) {
    long now = ticker.getAsLong();
    settle(b, now);
    ObjectNode o = json.createObjectNode();
    o.put("id", b.id);
    o.put("object", "batch");
    o.put("endpoint", b.endpoint);
    o.put("input_file_id", b.inputFileId);
    o.put("completion_window", WINDOW);
    String status = b.errors != null ? "failed" : b.status != null ? b.status
        : b.cancelledNanos >= 0 ? "cancelling" : "in_progress";
    o.put("status", status);
    o.put("output_file_id", b.outputFileId);
    o.put("error_file_id", b.errorFileId);
    o.put("created_at", b.createdAt);
    o.put("in_progress_at", b.errors != null ? null : b.createdAt);
    o.put("expires_at", b.createdAt + Math.max(1, (expiryNanos + 999_999_999) / 1_000_000_000));
    o.put("failed_at", b.errors != null ? b.createdAt : null);
    o.put("completed_at", "completed".equals(b.status) ? b.endedAt : null);
    o.put("expired_at", "expired".equals(b.status) ? b.endedAt : null);
    o.put("cancelled_at", "cancelled".equals(b.status) ? b.endedAt : null);
    if (b.errors != null) {
      ObjectNode errors = o.putObject("errors");
      errors.put("object", "list");
      errors.set("data", b.errors);
    } else {
      o.putNull("errors");
    }
    ObjectNode counts = o.putObject("request_counts");
    counts.put("total", b.errors != null ? 0 : b.lines.size());
    counts.put("completed", b.completed);
    counts.put("failed", b.failed);
    o.set("metadata", b.metadata.deepCopy());
    return o;
  }

  // ---------------------------------------------------------------- helpers

  private static String text(JsonNode req, String field) throws Refusal {
    JsonNode v = req.get(field);
    if (v == null || v.isNull()) {
      throw invalid("Missing required parameter: '" + field + "'.", field, "missing_required_parameter");
    }
    if (!v.isTextual()) {
      throw invalid("Invalid type for '" + field + "': expected a string.", field, "invalid_type");
    }
    return v.asText();
  }

  private static Refusal invalid(String message, String param, String code) {
    return new Refusal(400, message, "invalid_request_error", param, code);
  }

  private String newId(String prefix) {
    sequence++;
    ThreadLocalRandom r = ThreadLocalRandom.current();
    return prefix + String.format("%08x%012x", sequence, r.nextLong() & 0xffffffffffffL);
  }

  private long epochSeconds(long tickerNanos) {
    return (epochNanos + (tickerNanos - startNanos)) / 1_000_000_000L;
  }

  // ---------------------------------------------------------------- multipart

  /** One part of a multipart/form-data body. */
  record Part(String name, String filename, byte[] content) {}

  /** The strict subset of RFC 7578 that OpenAI's clients send. */
  static final class Multipart {
    private Multipart() {}

    static Map<String, Part> parse(String contentType, byte[] body) throws Refusal {
      String boundary = null;
      if (contentType != null && contentType.toLowerCase(java.util.Locale.ROOT).startsWith("multipart/form-data")) {
        for (String param : contentType.split(";")) {
          String p = param.strip();
          if (p.toLowerCase(java.util.Locale.ROOT).startsWith("boundary=")) {
            boundary = p.substring("boundary=".length()).replace("\"", "");
          }
        }
      }
      if (boundary == null) {
        throw invalid("Invalid Content-Type header (" + contentType + "), expected multipart/form-data with a"
            + " boundary.", null, null);
      }
      byte[] delimiter = ("--" + boundary).getBytes(StandardCharsets.ISO_8859_1);
      Map<String, Part> parts = new LinkedHashMap<>();
      int at = indexOf(body, delimiter, 0);
      while (at >= 0) {
        int start = at + delimiter.length;
        if (start + 1 < body.length && body[start] == '-' && body[start + 1] == '-') {
          return parts; // the closing delimiter
        }
        start += 2; // CRLF
        int headersEnd = indexOf(body, "\r\n\r\n".getBytes(StandardCharsets.ISO_8859_1), start);
        int next = indexOf(body, ("\r\n--" + boundary).getBytes(StandardCharsets.ISO_8859_1), start);
        if (headersEnd < 0 || next < 0 || headersEnd > next) {
          break;
        }
        String headers = new String(body, start, headersEnd - start, StandardCharsets.UTF_8);
        String name = null;
        String filename = null;
        for (String h : headers.split("\r\n")) {
          if (h.toLowerCase(java.util.Locale.ROOT).startsWith("content-disposition:")) {
            name = attribute(h, "name");
            filename = attribute(h, "filename");
          }
        }
        ByteArrayOutputStream content = new ByteArrayOutputStream();
        content.write(body, headersEnd + 4, next - headersEnd - 4);
        if (name != null) {
          parts.put(name, new Part(name, filename, content.toByteArray()));
        }
        at = next + 2;
      }
      throw invalid("The multipart body is malformed: it does not end with its closing boundary.", null, null);
    }

    private static String attribute(String header, String key) {
      for (String piece : header.split(";")) {
        String p = piece.strip();
        if (p.startsWith(key + "=")) {
          return p.substring(key.length() + 1).replace("\"", "");
        }
      }
      return null;
    }

    private static int indexOf(byte[] data, byte[] pattern, int from) {
      outer:
      for (int i = from; i <= data.length - pattern.length; i++) {
        for (int j = 0; j < pattern.length; j++) {
          if (data[i + j] != pattern[j]) {
            continue outer;
          }
        }
        return i;
      }
      return -1;
    }
  }
}
