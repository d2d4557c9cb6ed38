package dev.sluice.examples.mock;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.sluice.examples.TokenEstimator;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Collections;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;

/**
 * A strict, OpenAI-compatible mock upstream on a real HTTP port, enforcing OpenAI's rate limits the
 * way OpenAI does, so a demo can show offline that workers behind Sluice never see a 429 and still
 * use the whole quota, and that workers without it do get 429s. It is strict on purpose: a lenient
 * mock would make any client look good.
 *
 * <p>It runs past 700 lines because it is a small server in one file, its documentation
 * included: the request parsing, OpenAI's limit model (per-minute and per-day buckets, bursts,
 * quantized windows) and OpenAI's exact error bodies and headers are what a demo is judged
 * against, and reading them side by side is the point of the file.
 *
 * <pre>{@code
 * try (MockOpenAi mock = MockOpenAi.builder().rpm(600).tpm(40_000).build().start()) {
 *   OpenAIClient client =
 *       OpenAIOkHttpClient.builder().baseUrl(mock.baseUrl()).apiKey("k").maxRetries(0).build();
 *   ...
 *   Stats stats = mock.stats();
 * }
 * }</pre>
 *
 * <h2>Endpoints</h2>
 *
 * <ul>
 *   <li>{@code POST /v1/chat/completions}: OpenAI's request ({@code model}, {@code messages} with
 *       string or text-part content, {@code max_tokens} or {@code max_completion_tokens} — default
 *       256 —, {@code n}, {@code stream}, {@code stream_options.include_usage}, and {@code
 *       safety_identifier} or {@code user}, counted per end user in {@link Stats#byUser}); the {@code
 *       chat.completion} object or a {@code chat.completion.chunk} event stream ending in {@code
 *       data: [DONE]}. Needs {@code Authorization: Bearer <key>} (else 401 {@code
 *       invalid_api_key}); a body that is not valid JSON or not a valid request is a 400 {@code
 *       invalid_request_error}. Any model name is accepted.
 *   <li>{@code POST /v1/messages}: Anthropic's Messages API, with Anthropic's request checks,
 *       answer and stream shapes, errors and {@code anthropic-ratelimit-*} headers, and its limit
 *       model (RPM, input and output tokens per minute, per {@code x-api-key}; see {@link
 *       Builder#anthropic}): {@link AnthropicMessages}. Its calls count in the same {@link Stats}.
 *   <li>{@code POST /v1/files}, {@code GET /v1/files/{id}[/content]}, {@code POST|GET /v1/batches},
 *       {@code GET /v1/batches/{id}}, {@code POST /v1/batches/{id}/cancel}: OpenAI's Files and
 *       Batch APIs with a processing time on the ticker, line errors, expiry and the enqueued-token
 *       limit ({@link MockBatches}).
 *   <li>{@code GET /v1/models}: a fixed list of models.
 *   <li>{@code GET /mock/stats}: {@link Stats} as JSON; {@code POST /mock/reset}: {@link #reset()};
 *       {@code GET|PUT /mock/limits}: the limits, or new ones from a JSON object with any of {@code
 *       rpm, tpm, rpd, tpd, burst_seconds, quantized, insufficient_quota}. No key is needed for
 *       these.
 *   <li>{@code GET /mock/projects}: the registered projects ({@link Builder#project}) with their
 *       keys and limits; {@code PUT /mock/projects/NAME/limits}: changes one project's limits
 *       mid-run, from the same JSON object as {@code PUT /mock/limits}.
 * </ul>
 *
 * <p>With projects registered, each key is its project's and has its limits; other keys get 401
 * {@code invalid_api_key}. In Azure mode ({@link Builder#azure}) answers carry Azure OpenAI's
 * headers ({@link AzureHeaders}) instead of OpenAI's.
 *
 * <h2>The limit model</h2>
 *
 * Limits are per <em>project</em>: the {@code OpenAI-Project} header if sent, otherwise the API key
 * — so two keys are two quotas, and many workers sharing one key share one quota. (Real OpenAI
 * limits are per organization or project and per model; the mock ignores the model.)
 *
 * <p>A chat completion costs 1 request and, in tokens, its <em>admission charge</em>: {@link
 * TokenEstimator#promptTokens} + n × max_tokens. Unused completion budget is never refunded.
 *
 * <p>Each project has a meter per dimension — RPM, TPM, and RPD / TPD when non-zero — that starts
 * full. By default a meter is a continuous token bucket refilling at {@code limit / 60 s} (per day:
 * {@code limit / 86,400 s}) and holding {@code limit × burstSeconds / 60} (at least 1; per day: the
 * whole limit). A request is admitted only if every bucket has room — at least 1 for requests; at
 * least {@code min(charge, capacity)} for tokens, so a request above the capacity but within the
 * limit gets in only into a full bucket, which it leaves in debt — and then every bucket is debited
 * at once. In <em>quantized</em> mode the per-minute meters are fixed one-second windows from the
 * mock's creation instead, each allowing {@code floor(limit / 60)} (at least 1); a request fits if
 * {@code used + charge <= allowance}, or if the window is untouched and the charge is within the
 * limit.
 *
 * <p>Refusals are HTTP 429 with OpenAI's exact error bodies:
 *
 * <ul>
 *   <li>{@code Rate limit reached for <model> in organization org-mock on tokens per min (TPM):
 *       Limit L, Used U, Requested R. Please try again in 1.146s. Visit …}, with {@code type}
 *       {@code tokens} (or {@code requests} for RPM / RPD) and {@code code} {@code
 *       rate_limit_exceeded}. When several dimensions refuse, the one with the longest wait is
 *       named. {@code Used} is {@code limit − remaining}, remaining as in the headers below.
 *   <li>{@code Request too large for <model> … on tokens per min (TPM): Limit L, Requested R. The
 *       input or output tokens must be reduced …} when the charge exceeds the TPM (or TPD) limit
 *       itself; retrying can never succeed, so no {@code retry-after} is sent.
 *   <li>{@code insufficient_quota} (type and code) for every completion when that mode is on.
 * </ul>
 *
 * A rate-limited or too-large request still takes one request from the RPM bucket — OpenAI counts
 * refused requests toward the per-minute limit — which may go negative, at most one capacity deep.
 * The wait in the message and in {@code retry-after-ms} / {@code retry-after} (seconds, rounded up,
 * at least 1) is the time until every bucket could admit the request after that debit: {@code
 * deficit / rate}, rounded up to the millisecond. So a lone client that waits as told is admitted
 * on its next try, while uncoordinated clients that together retry faster than the RPM refills
 * keep the bucket in debt and can starve one another — as on OpenAI.
 *
 * <p>Every completion answer (200 or 429) carries {@code x-ratelimit-limit-requests|tokens} (the
 * per-minute limits), {@code x-ratelimit-remaining-requests|tokens} ({@code floor(level / capacity
 * × limit)}, 0 when in debt: OpenAI states what is left against the per-minute limit) and {@code
 * x-ratelimit-reset-requests|tokens} (time until the bucket is full again, in Go duration format
 * such as {@code 6m0s}), plus {@code x-request-id} and {@code openai-processing-ms}. An admitted
 * request is answered after a seeded-random latency in [min, max]; each choice has a seeded-random
 * length in [1, max_tokens] tokens.
 *
 * <p>All rate-limit time comes from the {@linkplain Builder#ticker ticker}, so tests can move time
 * by hand; only the answer latency is a real sleep. A completion is metered at the instant its
 * exchange reached the handler, not once its body has been read and its tokens counted: a mock
 * starved of CPU (or loading its tokenizer, which it does at start) would otherwise meter
 * requests that arrived apart as one burst, which no upstream does.
 */
public final class MockOpenAi implements AutoCloseable {

  private static final String ORGANIZATION = "org-mock";
  private static final String LIMITS_URL = "https://platform.openai.com/account/rate-limits";
  private static final long NANOS_PER_MILLI = 1_000_000L;
  private static final String[] MODELS = {
    "gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-3.5-turbo"
  };

  private final int requestedPort;
  private final long latencyMinNanos;
  private final long latencyMaxNanos;
  private final long seed;
  private final Engine engine;
  private final Projects projects;
  private final boolean azure;
  private final ObjectMapper json = new ObjectMapper();
  private final AnthropicMessages anthropic;
  private final MockBatches batches;
  private final AtomicInteger batchGarbage = new AtomicInteger();
  private final java.util.concurrent.atomic.AtomicReference<BatchHold> batchHold =
      new java.util.concurrent.atomic.AtomicReference<>();
  private final AtomicLong sequence = new AtomicLong();
  private final Object lifecycle = new Object();
  private HttpServer server;
  private ExecutorService executor;
  private final LongSupplier ticker;
  private boolean closed;

  private MockOpenAi(Builder b) {
    this.requestedPort = b.port;
    this.latencyMinNanos = b.latencyMin.toNanos();
    this.latencyMaxNanos = b.latencyMax.toNanos();
    this.seed = b.seed;
    this.ticker = b.ticker;
    this.engine =
        new Engine(
            new Stats.Limits(
                b.rpm, b.tpm, b.rpd, b.tpd, b.burstSeconds, b.quantized, b.insufficientQuota),
            b.anthropic,
            b.ticker);
    this.anthropic = new AnthropicMessages(engine, json, this::nextRandom, this::latency);
    this.batches = new MockBatches(json, b.ticker, this::nextRandom, b.batchProcessing, b.batchQueueTokens);
    this.projects = new Projects(b.projects);
    this.azure = b.azure;
    projects.all().values().forEach(p -> engine.updateProjectLimits(Projects.id(p.name()),
        l -> new Stats.Limits(p.rpm(), p.tpm(), l.rpd(), l.tpd(), l.burstSeconds(), l.quantized(), l.insufficientQuota())));
  }

  /** A builder with every default; see each setter. */
  public static Builder builder() {
    return new Builder();
  }

  /**
   * Binds the port on 127.0.0.1 and starts serving. Prints nothing.
   *
   * @return this
   * @throws IOException if the port cannot be bound
   * @throws IllegalStateException if already started or closed
   */
  public MockOpenAi start() throws IOException {
    synchronized (lifecycle) {
      if (server != null || closed) {
        throw new IllegalStateException(closed ? "closed" : "already started");
      }
      // Load the tokenizer's tables now (a second or more on a busy machine): the first chat
      // completions would otherwise wait for them together and be metered as one burst.
      TokenEstimator.promptTokens(List.of(new TokenEstimator.Message("user", "warm-up")));
      HttpServer s =
          HttpServer.create(
              new InetSocketAddress(InetAddress.getLoopbackAddress(), requestedPort), 1024);
      // Admitted requests sleep through their latency, so every one needs its own thread.
      executor = Executors.newCachedThreadPool(daemonThreads());
      s.setExecutor(executor);
      s.createContext("/", this::handle);
      s.start();
      server = s;
      return this;
    }
  }

  /** The bound port. */
  public int port() {
    synchronized (lifecycle) {
      if (server == null) {
        throw new IllegalStateException("not started");
      }
      return server.getAddress().getPort();
    }
  }

  /** The base URL to give an OpenAI client, such as {@code http://127.0.0.1:PORT/v1}. */
  public String baseUrl() {
    return "http://127.0.0.1:" + port() + "/v1";
  }

  /** What the mock has seen; the same content as {@code GET /mock/stats}. */
  public Stats stats() {
    return engine.stats();
  }

  /**
   * Zeroes the stats (except requests in flight) and refills every project's buckets, as {@code
   * POST /mock/reset} does.
   */
  public void reset() {
    engine.reset();
  }

  /**
   * Stops serving at once: open exchanges are dropped and sleeping requests interrupted.
   * Idempotent.
   */
  @Override
  public void close() {
    synchronized (lifecycle) {
      if (closed) {
        return;
      }
      closed = true;
      if (server != null) {
        server.stop(0);
        executor.shutdownNow();
      }
    }
  }

  /** One line describing the configuration, for the command line. */
  String describe() {
    Stats.Limits l = engine.limits();
    AnthropicLimiter.Limits a = engine.anthropicLimits();
    return String.format(
        "rpm=%d, tpm=%d, rpd=%s, tpd=%s, burst=%ss, %s%s, latency=%d..%dms, seed=%d,"
            + " anthropic rpm=%d itpm=%d otpm=%d",
        l.rpm(),
        l.tpm(),
        l.rpd() == 0 ? "off" : l.rpd(),
        l.tpd() == 0 ? "off" : l.tpd(),
        l.burstSeconds(),
        l.quantized() ? "quantized" : "continuous",
        l.insufficientQuota() ? ", insufficient-quota" : "",
        latencyMinNanos / NANOS_PER_MILLI,
        latencyMaxNanos / NANOS_PER_MILLI,
        seed,
        a.rpm(),
        a.itpm(),
        a.otpm());
  }

  // ---------------------------------------------------------------- HTTP

  private void handle(HttpExchange exchange) throws IOException {
    long arrivedAt = ticker.getAsLong();
    try (exchange) {
      byte[] body = exchange.getRequestBody().readAllBytes();
      String method = exchange.getRequestMethod();
      String path = exchange.getRequestURI().getPath();
      if (path.endsWith("/") && path.length() > 1) {
        path = path.substring(0, path.length() - 1);
      }
      switch (method + " " + path) {
        case "POST /v1/chat/completions" -> chatCompletion(exchange, body, arrivedAt);
        case "POST /v1/messages" -> anthropic.handle(exchange, body);
        case "GET /v1/models" -> models(exchange);
        case "GET /mock/stats" -> sendJson(exchange, 200, json.valueToTree(engine.stats()));
        case "POST /mock/reset" -> {
          engine.reset();
          sendJson(exchange, 200, json.valueToTree(engine.stats()));
        }
        case "GET /mock/limits" -> sendJson(exchange, 200, json.valueToTree(engine.limits()));
        case "PUT /mock/limits" -> putLimits(exchange, body);
        default -> {
          if (!batchesOrFiles(exchange, method, path, body)
              && !projectControl(exchange, method, path, body)) {
            sendError(
                exchange,
                404,
                "Invalid URL (" + method + " " + path + ")",
                "invalid_request_error",
                null,
                null);
          }
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt(); // closing: the exchange is dropped unanswered
    } catch (RuntimeException e) {
      // A bug in the mock must be loud, never a 200.
      sendError(exchange, 500, "The mock failed: " + e, "server_error", null, null);
    }
  }

  /** The Files and Batch APIs ({@link MockBatches}); false when the path is neither. */
  private boolean batchesOrFiles(HttpExchange exchange, String method, String path, byte[] body)
      throws IOException, InterruptedException {
    if (!path.startsWith("/v1/files") && !path.startsWith("/v1/batches")) {
      return false;
    }
    exchange.getResponseHeaders().set("x-request-id", newRequestId());
    if (bearerKey(exchange) == null) {
      sendError(exchange, 401, "You didn't provide an API key. You need to provide your API key in an"
          + " Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
          "invalid_request_error", null, "invalid_api_key");
      return true;
    }
    if (batchGarbage.getAndUpdate(n -> Math.max(0, n - 1)) > 0) {
      byte[] garbage = "<html>502 Bad Gateway</html>".getBytes(StandardCharsets.UTF_8);
      exchange.getResponseHeaders().set("Content-Type", "text/html");
      exchange.sendResponseHeaders(200, garbage.length); // a proxy's page with a 200: garbage, not an error
      exchange.getResponseBody().write(garbage);
      return true;
    }
    MockBatches.Answer answer;
    try {
      answer = batches.handle(method, path, exchange.getRequestURI().getRawQuery(),
          exchange.getRequestHeaders().getFirst("Content-Type"), body);
    } catch (MockBatches.Refusal r) {
      sendError(exchange, r.status, r.getMessage(), r.type, r.param, r.code);
      return true;
    }
    if (answer == null) {
      return false;
    }
    BatchStage stage = method.equals("POST") && path.equals("/v1/files") ? BatchStage.UPLOAD
        : method.equals("POST") && path.equals("/v1/batches") ? BatchStage.CREATE
        : method.equals("GET") && path.startsWith("/v1/files/") && path.endsWith("/content") ? BatchStage.DOWNLOAD
        : null;
    BatchHold hold = batchHold.get();
    if (stage != null && hold != null && hold.stage == stage && batchHold.compareAndSet(hold, null)) {
      hold.reached.countDown();
      hold.released.await(); // done at the mock; the caller hears of it only once released
    }
    exchange.getResponseHeaders().set("Content-Type", answer.contentType());
    exchange.sendResponseHeaders(answer.status(), answer.body().length);
    exchange.getResponseBody().write(answer.body());
    return true;
  }

  /** How long a batch takes from create to completed, on the ticker (tests shorten or lengthen it mid-run). */
  public void batchProcessing(Duration processing) {
    batches.processing(processing);
  }

  /**
   * The next {@code n} Files or Batches calls are answered 200 with an HTML page instead of
   * being served, as a misbehaving proxy would: nothing of them happens.
   */
  public void batchGarbage(int n) {
    batchGarbage.set(n);
  }

  /** A step of a batch's travel at which {@link #batchHold} can hold the answer. */
  public enum BatchStage {
    /** {@code POST /v1/files}: the input file is stored. */
    UPLOAD,
    /** {@code POST /v1/batches}: the batch is created and runs. */
    CREATE,
    /** {@code GET /v1/files/{id}/content}: the results are read. */
    DOWNLOAD
  }

  /** An answer held back by {@link #batchHold}. */
  public static final class BatchHold {
    private final BatchStage stage;
    private final java.util.concurrent.CountDownLatch reached = new java.util.concurrent.CountDownLatch(1);
    private final java.util.concurrent.CountDownLatch released = new java.util.concurrent.CountDownLatch(1);

    private BatchHold(BatchStage stage) {
      this.stage = stage;
    }

    /** Waits until a call of the stage has been served and its answer is held; false on timeout. */
    public boolean awaitReached(Duration timeout) throws InterruptedException {
      return reached.await(timeout.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS);
    }

    /** Sends the held answer (to a caller that may be dead by now). Idempotent. */
    public void release() {
      released.countDown();
    }
  }

  /**
   * Holds the answer to the next call of {@code stage} after the mock has done what it asks (the
   * file stored, the batch created, the results read), until {@link BatchHold#release}: the
   * caller waits as on a slow network, and a test can kill it at exactly that point. One call;
   * other calls are served meanwhile. {@link #close} drops it with the exchange.
   */
  public BatchHold batchHold(BatchStage stage) {
    BatchHold h = new BatchHold(stage);
    BatchHold before = batchHold.getAndSet(h);
    if (before != null) {
      before.release();
    }
    return h;
  }

  /**
   * A provider that never finishes a batch: from now on batches stay {@code in_progress} past
   * their {@code expires_at} (which follows {@link #batchExpiry}); only a cancel ends them.
   */
  public void batchStuck(boolean on) {
    batches.stuck(on);
  }

  /** How long an unfinished batch lasts before it expires, on the ticker; default 24 h, OpenAI's window. */
  public void batchExpiry(Duration expiry) {
    batches.expiry(expiry);
  }

  /** Every k-th line of each batch is answered 500 {@code server_error} in its error file; 0 (default): none. */
  public void batchLineErrorEvery(int k) {
    if (k < 0) {
      throw new IllegalArgumentException("k must be >= 0 (0 = off): " + k);
    }
    batches.lineErrorEvery(k);
  }

  /** Input tokens of {@code model}'s batches not yet ended: what the enqueued-token limit counts. */
  public long batchEnqueuedTokens(String model) {
    return batches.enqueuedTokens(model);
  }

  private void chatCompletion(HttpExchange exchange, byte[] body, long arrivedAt)
      throws IOException, InterruptedException {
    String requestId = newRequestId();
    exchange.getResponseHeaders().set("x-request-id", requestId);
    String key = bearerKey(exchange);
    if (key == null) {
      engine.refused("unauthorized");
      sendError(
          exchange,
          401,
          "You didn't provide an API key. You need to provide your API key in an Authorization"
              + " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
          "invalid_request_error",
          null,
          "invalid_api_key");
      return;
    }
    ChatRequest request;
    try {
      JsonNode tree;
      try {
        tree = json.readTree(body);
      } catch (JsonProcessingException e) {
        throw new InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you"
                + " aren't using your HTTP library correctly. The OpenAI API expects a JSON"
                + " payload, but what was sent was not valid JSON.)",
            null,
            null);
      }
      request = ChatRequest.parse(tree);
    } catch (InvalidRequest e) {
      engine.refused("bad_request");
      sendError(exchange, 400, e.getMessage(), "invalid_request_error", e.param, e.code);
      return;
    }
    String project = project(exchange, key);
    if (project == null) {
      return;
    }
    int promptTokens = TokenEstimator.promptTokens(request.messages());
    long charge = promptTokens + (long) request.n() * request.maxTokens();
    Decision decision = engine.admit(project, charge, request.endUser(), arrivedAt);
    switch (decision.kind()) {
      case ADMITTED -> answer(exchange, request, promptTokens, decision);
      case RATE_LIMITED -> rateLimited(exchange, request, decision);
      case TOO_LARGE -> tooLarge(exchange, request, decision);
      case INSUFFICIENT_QUOTA ->
          sendError(
              exchange,
              429,
              "You exceeded your current quota, please check your plan and billing details. For"
                  + " more information on this error, read the docs:"
                  + " https://platform.openai.com/docs/guides/error-codes/api-errors.",
              "insufficient_quota",
              null,
              "insufficient_quota");
    }
  }

  private void answer(
      HttpExchange exchange, ChatRequest request, int promptTokens, Decision decision)
      throws IOException, InterruptedException {
    SplittableRandom random = nextRandom();
    long latency = latency(random);
    Reply reply = new Reply(request, promptTokens, Instant.now().getEpochSecond(), random);
    long total = 0;
    try {
      if (latency > 0) {
        TimeUnit.NANOSECONDS.sleep(latency);
      }
      total = reply.totalTokens();
    } finally {
      // Before writing, so that a client reading the stats after its answer sees this one.
      engine.finished(total);
    }
    rateHeaders(exchange, decision.headers());
    exchange
        .getResponseHeaders()
        .set("openai-processing-ms", Long.toString(latency / NANOS_PER_MILLI));
    if (!request.stream()) {
      sendJson(exchange, 200, reply.completion(json));
      return;
    }
    exchange.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
    exchange.getResponseHeaders().set("Cache-Control", "no-cache");
    exchange.sendResponseHeaders(200, 0);
    OutputStream out = exchange.getResponseBody();
    for (ObjectNode chunk : reply.chunks(json, request.includeUsage())) {
      out.write(
          ("data: " + json.writeValueAsString(chunk) + "\n\n").getBytes(StandardCharsets.UTF_8));
    }
    out.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
    out.flush();
  }

  /**
   * Seeded per admission, so the k-th admitted request gets the same latency and answer lengths
   * in every run with the same seed, whichever thread serves it.
   */
  private SplittableRandom nextRandom() {
    return new SplittableRandom(seed + sequence.getAndIncrement() * 0x9E3779B97F4A7C15L);
  }

  private long latency(SplittableRandom random) {
    return latencyMaxNanos == latencyMinNanos
        ? latencyMinNanos
        : random.nextLong(latencyMinNanos, latencyMaxNanos + 1);
  }

  private void rateLimited(HttpExchange exchange, ChatRequest request, Decision d)
      throws IOException {
    // Rounded up so that a client waiting exactly this long is admitted.
    long waitMillis = Math.max(1, ceilDiv(d.waitNanos(), NANOS_PER_MILLI));
    rateHeaders(exchange, d.headers());
    exchange
        .getResponseHeaders()
        .set("retry-after", Long.toString(Math.max(1, ceilDiv(waitMillis, 1000))));
    exchange.getResponseHeaders().set("retry-after-ms", Long.toString(waitMillis));
    if (azure) {
      AzureHeaders.retryAfter(exchange.getResponseHeaders(), waitMillis);
    }
    sendError(
        exchange,
        429,
        String.format(
            "Rate limit reached for %s in organization %s on %s: Limit %d, Used %d, Requested %d."
                + " Please try again in %s. Visit %s to learn more.",
            request.model(),
            ORGANIZATION,
            d.dimension().label,
            d.limit(),
            d.used(),
            d.requested(),
            GoDuration.format(Duration.ofMillis(waitMillis)),
            LIMITS_URL),
        d.dimension().errorType,
        null,
        "rate_limit_exceeded");
  }

  private void tooLarge(HttpExchange exchange, ChatRequest request, Decision d) throws IOException {
    rateHeaders(exchange, d.headers());
    sendError(
        exchange,
        429,
        String.format(
            "Request too large for %s in organization %s on %s: Limit %d, Requested %d. The input"
                + " or output tokens must be reduced in order to run successfully. Visit %s to"
                + " learn more.",
            request.model(),
            ORGANIZATION,
            d.dimension().label,
            d.limit(),
            d.requested(),
            LIMITS_URL),
        d.dimension().errorType,
        null,
        "rate_limit_exceeded");
  }

  private void models(HttpExchange exchange) throws IOException {
    if (bearerKey(exchange) == null) {
      engine.refused("unauthorized");
      sendError(
          exchange,
          401,
          "You didn't provide an API key. You need to provide your API key in an Authorization"
              + " header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
          "invalid_request_error",
          null,
          "invalid_api_key");
      return;
    }
    ObjectNode list = json.createObjectNode().put("object", "list");
    ArrayNode data = list.putArray("data");
    long created = 1_721_172_741L;
    for (String model : MODELS) {
      data.addObject()
          .put("id", model)
          .put("object", "model")
          .put("created", created)
          .put("owned_by", model.startsWith("gpt-3.5") ? "openai" : "system");
    }
    sendJson(exchange, 200, list);
  }

  private void putLimits(HttpExchange exchange, byte[] body) throws IOException {
    JsonNode patch;
    try {
      patch = json.readTree(body);
    } catch (JsonProcessingException e) {
      sendError(exchange, 400, "Body is not valid JSON.", "invalid_request_error", null, null);
      return;
    }
    if (patch == null || !patch.isObject()) {
      sendError(exchange, 400, "Expected a JSON object.", "invalid_request_error", null, null);
      return;
    }
    try {
      Stats.Limits next = engine.updateLimits(current -> merge(current, patch));
      sendJson(exchange, 200, json.valueToTree(next));
    } catch (IllegalArgumentException e) {
      sendError(exchange, 400, e.getMessage(), "invalid_request_error", null, null);
    }
  }

  private static Stats.Limits merge(Stats.Limits l, JsonNode patch) {
    long rpm = l.rpm();
    long tpm = l.tpm();
    long rpd = l.rpd();
    long tpd = l.tpd();
    double burst = l.burstSeconds();
    boolean quantized = l.quantized();
    boolean insufficientQuota = l.insufficientQuota();
    for (Iterator<Map.Entry<String, JsonNode>> it = patch.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> field = it.next();
      JsonNode v = field.getValue();
      switch (field.getKey()) {
        case "rpm" -> rpm = longValue(field.getKey(), v);
        case "tpm" -> tpm = longValue(field.getKey(), v);
        case "rpd" -> rpd = longValue(field.getKey(), v);
        case "tpd" -> tpd = longValue(field.getKey(), v);
        case "burst_seconds" -> {
          if (!v.isNumber()) {
            throw new IllegalArgumentException("burst_seconds must be a number");
          }
          burst = v.asDouble();
        }
        case "quantized" -> quantized = boolValue(field.getKey(), v);
        case "insufficient_quota" -> insufficientQuota = boolValue(field.getKey(), v);
        default -> throw new IllegalArgumentException("unknown field: " + field.getKey());
      }
    }
    return new Stats.Limits(rpm, tpm, rpd, tpd, burst, quantized, insufficientQuota);
  }

  private static long longValue(String name, JsonNode v) {
    if (!v.isIntegralNumber() || !v.canConvertToLong()) {
      throw new IllegalArgumentException(name + " must be an integer");
    }
    return v.asLong();
  }

  private static boolean boolValue(String name, JsonNode v) {
    if (!v.isBoolean()) {
      throw new IllegalArgumentException(name + " must be a boolean");
    }
    return v.asBoolean();
  }

  // ---------------------------------------------------------------- Projects

  /**
   * The project a call counts against: a registered project by its key (an unknown key is
   * answered 401 here, and null returned); otherwise the {@code OpenAI-Project} header if sent,
   * else the key itself.
   */
  private String project(HttpExchange exchange, String key) throws IOException {
    if (projects.any()) {
      Projects.Project p = projects.byKey(key);
      if (p == null) {
        engine.refused("unauthorized");
        sendError(exchange, 401, "Incorrect API key provided: " + (key.length() > 8 ? key.substring(0, 3) + "*****"
            + key.substring(key.length() - 4) : "*****") + ". You can find your API key at"
            + " https://platform.openai.com/account/api-keys.", "invalid_request_error", null, "invalid_api_key");
        return null;
      }
      return Projects.id(p.name());
    }
    String projectHeader = exchange.getRequestHeaders().getFirst("OpenAI-Project");
    return projectHeader != null && !projectHeader.isBlank() ? "project:" + projectHeader : "key:" + key;
  }

  /**
   * {@code GET /mock/projects}: each registered project's key and limits; {@code PUT
   * /mock/projects/NAME/limits}: changes one project's limits mid-run, from a JSON object with any
   * of the fields {@code PUT /mock/limits} takes. False if the path is not one of these.
   */
  private boolean projectControl(HttpExchange exchange, String method, String path, byte[] body) throws IOException {
    if (method.equals("GET") && path.equals("/mock/projects")) {
      ObjectNode out = json.createObjectNode();
      projects.all().values().forEach(p -> {
        ObjectNode o = out.putObject(p.name());
        o.put("key", p.key());
        o.set("limits", json.valueToTree(engine.limitsOf(Projects.id(p.name()))));
      });
      sendJson(exchange, 200, out);
      return true;
    }
    if (!method.equals("PUT") || !path.startsWith("/mock/projects/") || !path.endsWith("/limits")) {
      return false;
    }
    String name = path.substring("/mock/projects/".length(), path.length() - "/limits".length());
    if (projects.byName(name) == null) {
      sendError(exchange, 404, "No project '" + name + "': the mock has " + projects.all().keySet(),
          "invalid_request_error", null, null);
      return true;
    }
    JsonNode patch;
    try {
      patch = json.readTree(body);
    } catch (JsonProcessingException e) {
      patch = null;
    }
    if (patch == null || !patch.isObject()) {
      sendError(exchange, 400, "Expected a JSON object such as {\"rpm\": 300}.", "invalid_request_error", null, null);
      return true;
    }
    JsonNode change = patch;
    try {
      sendJson(exchange, 200, json.valueToTree(engine.updateProjectLimits(Projects.id(name), l -> merge(l, change))));
    } catch (IllegalArgumentException e) {
      sendError(exchange, 400, e.getMessage(), "invalid_request_error", null, null);
    }
    return true;
  }

  /** The bearer key, or null if there is none or it is blank. */
  private static String bearerKey(HttpExchange exchange) {
    String auth = exchange.getRequestHeaders().getFirst("Authorization");
    if (auth == null || !auth.regionMatches(true, 0, "Bearer ", 0, 7)) {
      return null;
    }
    String key = auth.substring(7).strip();
    return key.isEmpty() ? null : key;
  }

  private void rateHeaders(HttpExchange exchange, Decision.RateHeaders h) {
    Headers headers = exchange.getResponseHeaders();
    if (azure) {
      AzureHeaders.rate(headers, h);
      return;
    }
    headers.set("x-ratelimit-limit-requests", Long.toString(h.limitRequests()));
    headers.set("x-ratelimit-limit-tokens", Long.toString(h.limitTokens()));
    headers.set("x-ratelimit-remaining-requests", Long.toString(h.remainingRequests()));
    headers.set("x-ratelimit-remaining-tokens", Long.toString(h.remainingTokens()));
    headers.set("x-ratelimit-reset-requests", resetValue(h.resetRequestsNanos()));
    headers.set("x-ratelimit-reset-tokens", resetValue(h.resetTokensNanos()));
  }

  /** Go duration rounded up to the millisecond, as OpenAI writes it. */
  static String resetValue(long nanos) {
    return GoDuration.format(Duration.ofMillis(ceilDiv(Math.max(0, nanos), NANOS_PER_MILLI)));
  }

  private static long ceilDiv(long a, long b) {
    return -Math.floorDiv(-a, b);
  }

  private static String newRequestId() {
    ThreadLocalRandom random = ThreadLocalRandom.current();
    return String.format("req_%016x%016x", random.nextLong(), random.nextLong());
  }

  private void sendError(
      HttpExchange exchange, int status, String message, String type, String param, String code)
      throws IOException {
    ObjectNode root = json.createObjectNode();
    ObjectNode error = root.putObject("error");
    error.put("message", message);
    error.put("type", type);
    error.put("param", param);
    error.put("code", code);
    sendJson(exchange, status, root);
  }

  private void sendJson(HttpExchange exchange, int status, JsonNode body) throws IOException {
    byte[] bytes = json.writeValueAsBytes(body);
    exchange.getResponseHeaders().set("Content-Type", "application/json");
    exchange.sendResponseHeaders(status, bytes.length);
    exchange.getResponseBody().write(bytes);
  }

  private static ThreadFactory daemonThreads() {
    AtomicInteger count = new AtomicInteger();
    return r -> {
      Thread t = new Thread(r, "mock-openai-" + count.incrementAndGet());
      t.setDaemon(true);
      return t;
    };
  }

  // ---------------------------------------------------------------- Stats

  /**
   * What the mock has seen since it started or was last reset; the body of {@code GET /mock/stats}.
   * Timestamps are milliseconds since that moment, by the mock's ticker.
   *
   * @param admitted chat completions admitted (answered 200)
   * @param rejected requests refused, by reason, every reason present: {@code requests}, {@code
   *     tokens}, {@code requests_per_day}, {@code tokens_per_day} (429 over RPM, TPM, RPD, TPD),
   *     {@code too_large} (429 "Request too large": the charge exceeds the TPM or TPD limit),
   *     {@code insufficient_quota} (429), {@code unauthorized} (401), {@code bad_request} (400),
   *     and for Anthropic's Messages {@code requests}, {@code input_tokens}, {@code output_tokens}
   *     (429 over its RPM, ITPM, OTPM) and {@code too_large}.
   *     Every rate-limit 429 (the first five) also took one request from the project's RPM bucket.
   * @param estimatedTokens sum of the admission charges (prompt + n × max_tokens) of admitted
   *     requests — what was debited from the TPM buckets
   * @param actualTokens sum of {@code usage.total_tokens} of the replies
   * @param inFlight admitted requests not yet answered
   * @param peakInFlight most admitted requests in flight at once
   * @param peakTokens60s most admission charge admitted within any sliding 60 s window, all
   *     projects together
   * @param peakRequests60s most requests admitted within any sliding 60 s window, all projects
   *     together
   * @param firstAdmittedAtMs when the first request was admitted, or null
   * @param lastAdmittedAtMs when the last request was admitted, or null
   * @param limits the limits now in force (per project)
   * @param byUser chat completions by the end user they name ({@code safety_identifier}, else
   *     {@code user}), sorted by name; requests naming none are counted only in the totals. A
   *     worker that sets it to its tenant lets a test measure each tenant's share where the calls
   *     arrive.
   * @param byProject chat completions by registered project ({@link Builder#project}), sorted by
   *     name: a pool's members measured where the calls arrive
   */
  public record Stats(
      @JsonProperty("admitted") long admitted,
      @JsonProperty("rejected") Map<String, Long> rejected,
      @JsonProperty("estimated_tokens") long estimatedTokens,
      @JsonProperty("actual_tokens") long actualTokens,
      @JsonProperty("in_flight") long inFlight,
      @JsonProperty("peak_in_flight") long peakInFlight,
      @JsonProperty("peak_tokens_60s") long peakTokens60s,
      @JsonProperty("peak_requests_60s") long peakRequests60s,
      @JsonProperty("first_admitted_at_ms") Long firstAdmittedAtMs,
      @JsonProperty("last_admitted_at_ms") Long lastAdmittedAtMs,
      @JsonProperty("limits") Limits limits,
      @JsonProperty("by_user") Map<String, User> byUser,
      @JsonProperty("by_project") Map<String, Project> byProject) {

    /** Copies {@code rejected}, {@code byUser} and {@code byProject}. */
    public Stats {
      rejected = Collections.unmodifiableMap(new LinkedHashMap<>(rejected));
      byUser = Collections.unmodifiableMap(new LinkedHashMap<>(byUser));
      byProject = Collections.unmodifiableMap(new LinkedHashMap<>(byProject == null ? Map.of() : byProject));
    }

    /** One registered project's count, or zeros if it had no call. */
    public Project project(String name) {
      return byProject.getOrDefault(name, new Project(0, 0, 0, null, List.of()));
    }

    /**
     * What one registered project's chat completions got.
     *
     * @param admitted admitted (answered 200)
     * @param estimatedTokens sum of their admission charges
     * @param rateLimited answered 429 for a rate limit
     * @param firstRateLimitedAtMs when its first rate-limit 429 was answered, or null
     * @param tokensPerSlot admission charges admitted in each {@value #SLOT_MILLIS} ms since the
     *     stats' epoch, up to the last admission (the first hour only): its rate over time, by the
     *     mock's clock
     */
    public record Project(
        @JsonProperty("admitted") long admitted,
        @JsonProperty("estimated_tokens") long estimatedTokens,
        @JsonProperty("rate_limited") long rateLimited,
        @JsonProperty("first_rate_limited_at_ms") Long firstRateLimitedAtMs,
        @JsonProperty("tokens_per_slot") List<Long> tokensPerSlot) {

      /** The width of a slot of {@link #tokensPerSlot}. */
      public static final long SLOT_MILLIS = 100;
      static final long SLOT_NANOS = SLOT_MILLIS * 1_000_000;
      /** Slots kept: one hour's. */
      static final long MAX_SLOTS = 36_000;

      /** Copies the slots. */
      public Project {
        tokensPerSlot = List.copyOf(tokensPerSlot == null ? List.of() : tokensPerSlot);
      }

      /** Tokens admitted in {@code [fromMs, toMs)} of the mock's clock (slot-aligned). */
      public long tokensBetween(long fromMs, long toMs) {
        long sum = 0;
        for (long i = Math.max(0, fromMs / SLOT_MILLIS); i < Math.min(tokensPerSlot.size(), toMs / SLOT_MILLIS); i++) {
          sum += tokensPerSlot.get((int) i);
        }
        return sum;
      }
    }

    /** One end user's count, or zeros if it sent nothing. */
    public User user(String name) {
      return byUser.getOrDefault(name, new User(0, 0, 0));
    }

    /**
     * What one end user's chat completions got.
     *
     * @param admitted admitted (answered 200)
     * @param estimatedTokens sum of their admission charges
     * @param rateLimited answered 429 for a rate limit: over RPM, TPM, RPD or TPD, or too large
     */
    public record User(
        @JsonProperty("admitted") long admitted,
        @JsonProperty("estimated_tokens") long estimatedTokens,
        @JsonProperty("rate_limited") long rateLimited) {}

    /** All HTTP 429 answers: the rate-limit reasons plus {@code insufficient_quota}, both APIs. */
    public long rateLimited() {
      long sum = 0;
      for (String reason :
          new String[] {
            "requests",
            "tokens",
            "requests_per_day",
            "tokens_per_day",
            "too_large",
            "insufficient_quota",
            "input_tokens",
            "output_tokens"
          }) {
        sum += rejected.getOrDefault(reason, 0L);
      }
      return sum;
    }

    /**
     * Limits per project.
     *
     * @param rpm requests per minute, positive
     * @param tpm tokens per minute, positive
     * @param rpd requests per day, 0 when off
     * @param tpd tokens per day, 0 when off
     * @param burstSeconds how many seconds of the per-minute rate a full bucket holds
     * @param quantized fixed one-second windows instead of continuous buckets
     * @param insufficientQuota answer every completion with 429 {@code insufficient_quota}
     */
    public record Limits(
        @JsonProperty("rpm") long rpm,
        @JsonProperty("tpm") long tpm,
        @JsonProperty("rpd") long rpd,
        @JsonProperty("tpd") long tpd,
        @JsonProperty("burst_seconds") double burstSeconds,
        @JsonProperty("quantized") boolean quantized,
        @JsonProperty("insufficient_quota") boolean insufficientQuota) {

      /** Rejects values the mock cannot enforce. */
      public Limits {
        if (rpm <= 0) {
          throw new IllegalArgumentException("rpm must be positive: " + rpm);
        }
        if (tpm <= 0) {
          throw new IllegalArgumentException("tpm must be positive: " + tpm);
        }
        if (rpd < 0) {
          throw new IllegalArgumentException("rpd must be >= 0 (0 = off): " + rpd);
        }
        if (tpd < 0) {
          throw new IllegalArgumentException("tpd must be >= 0 (0 = off): " + tpd);
        }
        if (!(burstSeconds > 0) || burstSeconds > 60) {
          throw new IllegalArgumentException("burst_seconds must be in (0, 60]: " + burstSeconds);
        }
      }
    }
  }

  // ---------------------------------------------------------------- Builder

  /**
   * Configures a {@link MockOpenAi}. Every setter checks its value at once and may be called only
   * once.
   */
  public static final class Builder {

    private int port;
    private long rpm = 600;
    private long tpm = 40_000;
    private long rpd;
    private long tpd;
    private double burstSeconds = 1.0;
    private boolean quantized;
    private Duration latencyMin = Duration.ofMillis(50);
    private Duration latencyMax = Duration.ofMillis(200);
    private long seed = 42;
    private boolean insufficientQuota;
    private LongSupplier ticker = System::nanoTime;
    private AnthropicLimiter.Limits anthropic = AnthropicLimiter.DEFAULTS;
    private final Map<String, Projects.Project> projects = new java.util.LinkedHashMap<>();
    private boolean azure;
    private Duration batchProcessing = Duration.ofMinutes(10);
    private long batchQueueTokens = 2_000_000;
    private final Set<String> set = new HashSet<>();

    private Builder() {}

    private void once(String name) {
      if (!set.add(name)) {
        throw new IllegalStateException(name + " was already set");
      }
    }

    /** The port to bind on 127.0.0.1; default 0, any free port. */
    public Builder port(int port) {
      if (port < 0 || port > 65_535) {
        throw new IllegalArgumentException("port must be in 0..65535: " + port);
      }
      once("port");
      this.port = port;
      return this;
    }

    /** Requests per minute per project; default 600. */
    public Builder rpm(long rpm) {
      if (rpm <= 0) {
        throw new IllegalArgumentException("rpm must be positive: " + rpm);
      }
      once("rpm");
      this.rpm = rpm;
      return this;
    }

    /** Tokens per minute per project; default 40,000. */
    public Builder tpm(long tpm) {
      if (tpm <= 0) {
        throw new IllegalArgumentException("tpm must be positive: " + tpm);
      }
      once("tpm");
      this.tpm = tpm;
      return this;
    }

    /** Requests per day per project; default 0, off. */
    public Builder rpd(long rpd) {
      if (rpd < 0) {
        throw new IllegalArgumentException("rpd must be >= 0 (0 = off): " + rpd);
      }
      once("rpd");
      this.rpd = rpd;
      return this;
    }

    /** Tokens per day per project; default 0, off. */
    public Builder tpd(long tpd) {
      if (tpd < 0) {
        throw new IllegalArgumentException("tpd must be >= 0 (0 = off): " + tpd);
      }
      once("tpd");
      this.tpd = tpd;
      return this;
    }

    /**
     * How many seconds of the per-minute rate a full bucket holds, in (0, 60]; default 1.0 (so 600
     * RPM allows a burst of 10 requests). Ignored in quantized mode.
     */
    public Builder burstSeconds(double burstSeconds) {
      if (!(burstSeconds > 0) || burstSeconds > 60) {
        throw new IllegalArgumentException("burstSeconds must be in (0, 60]: " + burstSeconds);
      }
      once("burstSeconds");
      this.burstSeconds = burstSeconds;
      return this;
    }

    /**
     * Fixed one-second windows of {@code limit / 60} instead of continuous buckets for the
     * per-minute limits; default false.
     */
    public Builder quantized(boolean quantized) {
      once("quantized");
      this.quantized = quantized;
      return this;
    }

    /**
     * The range an admitted request's answer latency is drawn from, uniformly; default 50..200 ms.
     * Use zero for tests.
     */
    public Builder latency(Duration min, Duration max) {
      Objects.requireNonNull(min, "min");
      Objects.requireNonNull(max, "max");
      if (min.isNegative() || max.compareTo(min) < 0) {
        throw new IllegalArgumentException("need 0 <= min <= max: " + min + ", " + max);
      }
      once("latency");
      this.latencyMin = min;
      this.latencyMax = max;
      return this;
    }

    /** Seed of the latencies and answer lengths; default 42. */
    public Builder seed(long seed) {
      once("seed");
      this.seed = seed;
      return this;
    }

    /** Answer every completion with 429 {@code insufficient_quota}; default false. */
    public Builder insufficientQuota(boolean insufficientQuota) {
      once("insufficientQuota");
      this.insufficientQuota = insufficientQuota;
      return this;
    }

    /**
     * The monotonic nanosecond clock all rate limiting uses; default {@link System#nanoTime}. For
     * tests, which advance a fake one instead of sleeping.
     */
    public Builder ticker(LongSupplier ticker) {
      Objects.requireNonNull(ticker, "ticker");
      once("ticker");
      this.ticker = ticker;
      return this;
    }

    /**
     * The limits of Anthropic's {@code POST /v1/messages}, per {@code x-api-key}: requests, input
     * tokens and output tokens per minute; default 50, 30,000 and 8,000 (Claude Sonnet at
     * Anthropic's first tier). Their buckets hold {@link #burstSeconds} of each.
     */
    public Builder anthropic(long rpm, long itpm, long otpm) {
      AnthropicLimiter.Limits limits = new AnthropicLimiter.Limits(rpm, itpm, otpm);
      once("anthropic");
      this.anthropic = limits;
      return this;
    }

    /** A mock with these settings, not yet listening; see {@link MockOpenAi#start()}. */
    /**
     * Registers a project with its own key and per-minute limits (repeatable; day limits, burst
     * and modes are shared). Once one is registered, only registered keys are accepted. Default:
     * none, every key is its own project on the shared limits.
     */
    public Builder project(String name, String key, long rpm, long tpm) {
      if (name == null || !name.matches("[A-Za-z0-9._-]{1,64}")) {
        throw new IllegalArgumentException("project name must be 1-64 of [A-Za-z0-9._-]: " + name);
      }
      if (key == null || key.isBlank()) {
        throw new IllegalArgumentException("project " + name + " needs a key");
      }
      if (rpm <= 0 || tpm <= 0) {
        throw new IllegalArgumentException("project " + name + ": rpm and tpm must be positive");
      }
      if (projects.containsKey(name) || projects.values().stream().anyMatch(p -> p.key().equals(key))) {
        throw new IllegalArgumentException("project " + name + " or its key is registered twice");
      }
      projects.put(name, new Projects.Project(name, key, rpm, tpm));
      return this;
    }

    /**
     * Sends Azure OpenAI's rate-limit headers instead of OpenAI's ({@link AzureHeaders}: what
     * remains, no limit). Default false.
     */
    public Builder azure(boolean azure) {
      once("azure");
      this.azure = azure;
      return this;
    }

    /**
     * How long a batch takes from create to {@code completed}, on the ticker; default 10 minutes.
     * Longer than its expiry (24 h) makes every batch expire.
     */
    public Builder batchProcessing(Duration processing) {
      Objects.requireNonNull(processing, "processing");
      if (processing.isNegative()) {
        throw new IllegalArgumentException("batchProcessing must be >= 0: " + processing);
      }
      once("batchProcessing");
      this.batchProcessing = processing;
      return this;
    }

    /**
     * The enqueued-token limit: input tokens per model across batches not yet ended; a batch that
     * would pass it fails with {@code token_limit_exceeded}. Default 2,000,000 (gpt-4o-mini at
     * OpenAI's first tier).
     */
    public Builder batchQueueTokens(long tokens) {
      if (tokens <= 0) {
        throw new IllegalArgumentException("batchQueueTokens must be positive: " + tokens);
      }
      once("batchQueueTokens");
      this.batchQueueTokens = tokens;
      return this;
    }

    public MockOpenAi build() {
      return new MockOpenAi(this);
    }
  }
}
