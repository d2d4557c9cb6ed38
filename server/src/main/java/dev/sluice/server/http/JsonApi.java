package dev.sluice.server.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.client.HumanDurations;
import dev.sluice.server.auth.AuthInterceptor;
import dev.sluice.server.auth.Principal;
import dev.sluice.server.auth.Role;
import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.FailIfLate;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.ResourceSnapshot;
import dev.sluice.server.engine.Ticket;
import dev.sluice.server.price.Costs;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code /v1/} endpoints: the worker API (acquire as a long poll, release, renew, report),
 * the dashboard's reads and its pause and resume. Same keys, same guarantees and same error
 * meanings as the gRPC port; docs/http-api.md lists the status of each.
 */
final class JsonApi {

  private static final Logger log = LoggerFactory.getLogger(JsonApi.class);
  /** Default long-poll timeout: under the 60 s idle timeout of most proxies and load balancers. */
  static final long DEFAULT_TIMEOUT_NANOS = 30_000_000_000L;

  private final Engine engine;
  private final HttpApi.Options options;
  private final BufferApi buffers;
  private final Costs costs;
  private final PriceApi prices;
  private final PoolApi pools;
  private final TemplateApi templates;
  private final LimitsApi limits;

  JsonApi(HttpApi.Options options) {
    this.options = options;
    this.engine = options.engine();
    this.buffers = new BufferApi(options.buffers(), this);
    this.costs = new Costs(engine, options.prices());
    this.prices = new PriceApi(options.prices(), this);
    this.pools = new PoolApi(engine, options, this);
    this.limits = new LimitsApi(options.changes(), this);
    this.templates = new TemplateApi(engine, this);
  }

  /** Where limit changes go: ownership, audit line, history. */
  dev.sluice.server.limits.LimitChanges changes() {
    return options.changes();
  }

  void route(Exchange x, String method, String path, BiConsumer<Exchange, Runnable> offload) {
    if (path.equals("/v1/buffers") || path.startsWith("/v1/buffers/")) {
      buffers.route(x, path, offload);
      return;
    }
    if (path.equals("/v1/prices") || path.startsWith("/v1/prices/")) {
      prices.route(x, path, offload);
      return;
    }
    if (path.equals("/v1/pools") || path.startsWith("/v1/pools/")) {
      pools.route(x, path, offload);
      return;
    }
    if (path.equals("/v1/templates") || path.startsWith("/v1/templates/")) {
      templates.route(x, path, offload);
      return;
    }
    if (path.equals("/v1/limits")) {
      limits.route(x, offload);
      return;
    }
    if (path.equals("/v1/resources")) {
      HttpApi.only(x, "GET");
      offload.accept(x, () -> x.json(HttpResponseStatus.OK, Views.sample(options.sampler().latest(), options.node(), options.poolMeters())));
      return;
    }
    if (path.equals("/v1/history")) {
      HttpApi.only(x, "GET");
      offload.accept(x, () -> x.json(HttpResponseStatus.OK, history()));
      return;
    }
    if (path.startsWith("/v1/resources/")) {
      String rest = path.substring("/v1/resources/".length());
      int slash = rest.lastIndexOf('/');
      String verb = slash < 0 ? "" : rest.substring(slash + 1);
      switch (verb) {
        case "acquire", "estimate", "cancel", "report", "pause", "resume", "limit" -> {
          HttpApi.only(x, "POST");
          String resource = decode(rest.substring(0, slash));
          offload.accept(x, () -> {
            switch (verb) {
              case "acquire" -> acquire(x, resource);
              case "estimate" -> estimate(x, resource);
              case "cancel" -> cancel(x, resource);
              case "report" -> report(x, resource);
              case "pause" -> pause(x, resource);
              case "limit" -> setLimit(x, resource);
              default -> resume(x, resource);
            }
          });
          return;
        }
        default -> {
          if (!method.equals("GET")) { // a GET reads a resource, whose name may hold a slash: x/ACQUIRE
            caseSensitive(x, verb, "acquire", "estimate", "cancel", "report", "pause", "resume", "limit");
            x.allow("GET");
            throw new HttpError(HttpResponseStatus.METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", method + " " + path
                + " is not served: GET " + path + " reads the resource; its calls are POST " + path + "/acquire, "
                + path + "/estimate, " + path + "/cancel, " + path + "/report, " + path + "/pause, " + path
                + "/resume and " + path + "/limit");
          }
          if (verb.equals("history")) {
            String resource = decode(rest.substring(0, slash));
            offload.accept(x, () -> history(x, resource));
            return;
          }
          String resource = decode(rest);
          offload.accept(x, () -> describe(x, resource));
          return;
        }
      }
    }
    if (path.startsWith("/v1/permits/")) {
      String rest = path.substring("/v1/permits/".length());
      int slash = rest.lastIndexOf('/');
      String verb = slash < 0 ? "" : rest.substring(slash + 1);
      if (verb.equals("release") || verb.equals("renew")) {
        HttpApi.only(x, "POST");
        HttpPermit permit = HttpPermit.parse(decode(rest.substring(0, slash)));
        offload.accept(x, () -> {
          if (verb.equals("release")) {
            release(x, permit);
          } else {
            renew(x, permit);
          }
        });
        return;
      }
      caseSensitive(x, verb, "release", "renew");
    }
    throw new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", "no such endpoint: " + method + " " + path
        + "; see docs/http-api.md (POST /v1/resources/{name}/acquire, POST /v1/permits/{id}/release, ...)");
  }

  /** A call spelled in the wrong case ({@code .../ACQUIRE}) is refused naming the right one. */
  private static void caseSensitive(Exchange x, String verb, String... verbs) {
    for (String v : verbs) {
      if (!v.equals(verb) && v.equalsIgnoreCase(verb)) {
        String right = x.rawPath().substring(0, x.rawPath().length() - verb.length()) + v;
        throw new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", "no such endpoint: " + x.method() + " "
            + x.rawPath() + "; paths are case-sensitive: use POST " + right);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Worker calls

  /**
   * {@code POST /v1/resources/{name}/acquire}: waits (up to {@code timeout}) for capacity, then
   * answers the permit. A client that hangs up while waiting leaves the queue; a grant that
   * raced with the hang-up, or whose answer could not be written, is given back in full.
   */
  private void acquire(Exchange x, String resource) {
    long arrived = System.nanoTime();
    Optional<Principal> who = authenticate(x, false);
    JsonNode body = x.json();
    known(body, "load", "lane", "timeout", "requestId", "tenant", "model", "failIfLate");
    Map<String, Long> load = load(body.get("load"), "load");
    Lane lane = lane(body.get("lane"));
    long timeout = DEFAULT_TIMEOUT_NANOS;
    String fromQuery = x.query("timeout");
    if (fromQuery != null) {
      timeout = duration(fromQuery, "timeout");
    } else if (body.hasNonNull("timeout")) {
      timeout = duration(body.get("timeout"), "timeout");
    }
    timeout = Math.min(timeout, options.maxWaitNanos());
    String requestId = body.hasNonNull("requestId") ? text(body.get("requestId"), "requestId")
        : "http-" + UUID.randomUUID();
    String asked = body.hasNonNull("tenant") ? text(body.get("tenant"), "tenant") : null;
    String model = body.hasNonNull("model") ? text(body.get("model"), "model") : null;
    boolean failIfLate = body.hasNonNull("failIfLate") && bool(body.get("failIfLate"), "failIfLate");
    String tenant = tenant(who, resource, asked);
    long wait = timeout;
    Ticket ticket = costs.acquire(resource, load, model, priced -> failIfLate
        ? FailIfLate.acquire(engine, resource, priced, lane, wait, requestId, tenant)
        : engine.acquire(resource, priced, lane, wait, requestId, tenant));
    x.onClose(ticket::cancel);
    ticket.future().whenComplete((grant, error) -> {
      if (error != null) {
        x.error(HttpError.of(error));
        return;
      }
      if (!x.open() || !ticket.claim()) {
        ticket.cancel(); // gives the grant back
        return;
      }
      x.json(HttpResponseStatus.OK, Views.grant(grant, resource, HttpPermit.id(resource, grant.permitId()), arrived), written -> {
        if (!written) {
          // The caller left as the answer went out: nobody holds this permit, give it back.
          engine.release(resource, grant.permitId(), Map.of(), false, true);
        } else {
          options.poolMeters().handedOver(resource, grant.resource());
        }
      });
    });
  }

  /**
   * {@code POST /v1/resources/{name}/estimate}: when an acquire with this body ({@code load},
   * {@code lane}, {@code tenant}) would be granted, without queueing it (the gRPC {@code
   * Estimate}): {@code {"resource", "waitSeconds", "paused"}}, {@code waitSeconds} null when
   * paused until resumed.
   */
  private void estimate(Exchange x, String resource) {
    Optional<Principal> who = authenticate(x, false);
    JsonNode body = x.json();
    known(body, "load", "lane", "tenant");
    Map<String, Long> load = load(body.get("load"), "load");
    Lane lane = lane(body.get("lane"));
    String tenant = tenant(who, resource, body.hasNonNull("tenant") ? text(body.get("tenant"), "tenant") : null);
    answer(x, engine.estimate(resource, load, lane, tenant), nanos -> {
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("resource", resource);
      o.setAll(Views.estimate(nanos));
      x.json(HttpResponseStatus.OK, o);
    });
  }

  /**
   * The tenant a call on {@code resource} by {@code who} (empty: an open coordinator) is in,
   * {@code asked} or the key's (see {@link Principal#tenant}); the key must cover the resource.
   */
  private static String tenant(Optional<Principal> who, String resource, String asked) {
    who.ifPresent(p -> p.check(resource));
    return who.isPresent() ? who.get().tenant(asked) : Principal.checkTenant(asked);
  }

  /**
   * {@code POST /v1/resources/{name}/cancel}: withdraws the waiting acquire sent with this
   * {@code requestId}, on any node (the gRPC {@code Cancel}). {@code cancelled} is true if it was
   * still queued and has left (its long poll then ends with 503 CANCELLED); false if it was
   * granted, ended or unknown. A client that stops waiting calls this and keeps reading its
   * acquire: a grant that raced with the cancel arrives there, and the client releases it with
   * {@code unused}. Hanging up instead cannot tell a grant already written from one never made.
   */
  private void cancel(Exchange x, String resource) {
    Optional<Principal> who = authenticate(x, false);
    JsonNode body = x.json();
    known(body, "requestId");
    if (!body.hasNonNull("requestId")) {
      throw HttpError.badRequest("requestId is missing: give the requestId the acquire was sent with, such as"
          + " {\"requestId\": \"worker-7-42\"}");
    }
    String requestId = text(body.get("requestId"), "requestId");
    who.ifPresent(p -> p.check(resource));
    answer(x, engine.cancel(resource, requestId), cancelled -> {
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("cancelled", cancelled);
      x.json(HttpResponseStatus.OK, o);
    });
  }

  /** {@code POST /v1/permits/{id}/release}: ends the permit; {@code usage} settles, {@code unused} refunds. */
  private void release(Exchange x, HttpPermit permit) {
    Optional<Principal> who = authenticate(x, false);
    JsonNode body = x.json();
    known(body, "usage", "unused", "model");
    boolean unused = body.hasNonNull("unused") && bool(body.get("unused"), "unused");
    Map<String, Long> usage = body.hasNonNull("usage") ? load(body.get("usage"), "usage") : Map.of();
    if (unused && body.hasNonNull("usage")) {
      throw HttpError.badRequest("give either usage (what the call really used) or unused: true (the call was"
          + " never made), not both");
    }
    String model = body.hasNonNull("model") ? text(body.get("model"), "model") : null;
    who.ifPresent(p -> p.check(permit.resource()));
    CompletableFuture<Map<String, Long>> actual = body.hasNonNull("usage")
        ? costs.actual(permit.resource(), usage, model) : CompletableFuture.completedFuture(usage);
    answer(x, actual.thenCompose(a -> engine.release(permit.resource(), permit.permitId(), a, body.hasNonNull("usage"),
        unused)),
        released -> {
          ObjectNode o = Views.JSON.createObjectNode();
          o.put("released", released);
          if (!released) {
            o.put("message", "the permit was not held any more (released already, or its lease ran out): nothing"
                + " to do");
          }
          x.json(HttpResponseStatus.OK, o);
        });
  }

  /** {@code POST /v1/permits/{id}/renew}: extends the lease; 404 once the permit is gone. */
  private void renew(Exchange x, HttpPermit permit) {
    Optional<Principal> who = authenticate(x, false);
    known(x.json());
    who.ifPresent(p -> p.check(permit.resource()));
    CompletableFuture<Long> lease = engine.renew(permit.resource(), List.of(permit.permitId()))
        .thenCompose(expired -> {
          if (!expired.isEmpty()) {
            throw new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", "permit " + permit.id() + " is not held"
                + " any more (released, or its lease ran out before this renewal): acquire again, and renew well"
                + " within leaseSeconds");
          }
          return engine.leaseTtlNanos(permit.resource());
        });
    answer(x, lease, nanos -> {
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("leaseSeconds", nanos / 1e9);
      x.json(HttpResponseStatus.OK, o);
    });
  }

  /** {@code POST /v1/resources/{name}/report}: upstream feedback (a 429 pauses every worker). */
  private void report(Exchange x, String resource) {
    Optional<Principal> who = authenticate(x, false);
    JsonNode body = x.json();
    known(body, "throttled", "retryAfter", "remaining", "limits");
    boolean throttled = body.hasNonNull("throttled") && bool(body.get("throttled"), "throttled");
    long retryAfter = body.hasNonNull("retryAfter") ? duration(body.get("retryAfter"), "retryAfter")
        : 1_000_000_000L;
    Map<String, Long> remaining = body.hasNonNull("remaining") ? load(body.get("remaining"), "remaining") : Map.of();
    Map<String, Long> limits = body.hasNonNull("limits") ? load(body.get("limits"), "limits") : Map.of();
    who.ifPresent(p -> p.check(resource));
    answer(x, changes().report(resource, throttled, retryAfter, remaining, limits, System.currentTimeMillis()), paused -> {
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("pausedForSeconds", paused / 1e9);
      x.json(HttpResponseStatus.OK, o);
    });
  }

  // ---------------------------------------------------------------------------------------
  // Dashboard calls

  private void describe(Exchange x, String resource) {
    authenticate(x, false).ifPresent(p -> p.check(resource));
    // A resource without a limit of its own names the template it uses.
    answer(x, engine.stats(resource).thenCombine(engine.templateFor(resource), (s, t) -> {
      ObjectNode o = Views.resource(s, Map.of(), null);
      t.ifPresent(spec -> o.put("template", spec.resource()));
      return o;
    }), o -> x.json(HttpResponseStatus.OK, o));
  }

  /** {@code POST /v1/resources/{name}/pause}, admin: {@code seconds} (or none: until resumed). */
  private void pause(Exchange x, String resource) {
    Optional<Principal> who = authenticate(x, true);
    JsonNode body = x.json();
    known(body, "seconds", "for");
    if (body.hasNonNull("seconds") && body.hasNonNull("for")) {
      throw HttpError.badRequest("give seconds or for, not both");
    }
    long nanos = -1;
    if (body.hasNonNull("seconds")) {
      nanos = duration(body.get("seconds"), "seconds", Durations.PAUSE);
    } else if (body.hasNonNull("for")) {
      nanos = duration(body.get("for"), "for", Durations.PAUSE);
    }
    long asked = nanos;
    answer(x, engine.pause(resource, nanos), left -> {
      log.info("paused {} {} from the HTTP port ({})", resource, asked < 0 ? "until resumed" : "for "
          + HumanDurations.formatNanos(asked), who.map(p -> "key " + p.keyId()).orElse("open coordinator"));
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("resource", resource);
      o.put("paused", true);
      o.put("pausedForSeconds", left < 0 || asked < 0 ? -1 : left / 1e9);
      x.json(HttpResponseStatus.OK, o);
    });
  }

  /**
   * {@code POST /v1/resources/{name}/limit}, admin: creates or replaces the limit (the gRPC
   * {@code SetLimit}), tenant policy included; answers the limit as stored.
   */
  private void setLimit(Exchange x, String resource) {
    Optional<Principal> who = authenticate(x, "setting a limit is an admin call");
    boolean force = flag(x, "force");
    var spec = LimitJson.parse(resource, x.json());
    answer(x, changes().set(spec, dev.sluice.server.limits.LimitChanges.who(who.orElse(null)), force).thenCompose(created -> engine.getLimit(resource).thenApply(stored -> {
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("resource", resource);
      o.put("created", created);
      o.set("limit", Views.limit(stored.orElseThrow()));
      return o;
    })), o -> x.json(HttpResponseStatus.OK, o));
  }

  /**
   * {@code GET /v1/resources/{name}/history?n=20}, admin: the last changes of its limit, newest
   * first (a resource whose own name ends in {@code /history} is read with {@code GET
   * /v1/limits}).
   */
  private void history(Exchange x, String resource) {
    authenticate(x, "the history of a limit is an admin call");
    String n = x.query("n");
    int count;
    try {
      count = n == null ? 20 : Integer.parseInt(n);
    } catch (NumberFormatException e) {
      throw HttpError.badRequest("n=" + n + " is not a number: ask for 1 to "
          + dev.sluice.server.limits.LimitHistory.PER_RESOURCE + " changes");
    }
    answer(x, changes().history(resource, count), entries -> {
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("resource", resource);
      var list = o.putArray("changes");
      for (var e : entries) {
        ObjectNode one = list.addObject();
        one.put("at", java.time.Instant.ofEpochMilli(e.atMillis()).toString());
        one.put("who", e.who());
        one.put("action", e.action());
        e.changes().forEach(one.putArray("changes")::add);
      }
      x.json(HttpResponseStatus.OK, o);
    });
  }

  /** A {@code ?name=true} flag: absent or false is false; anything else but true is refused. */
  static boolean flag(Exchange x, String name) {
    String v = x.query(name);
    if (v == null || v.equals("false")) {
      return false;
    }
    if (v.equals("true") || v.isEmpty()) {
      return true;
    }
    throw HttpError.badRequest(name + "=" + v + " is not a flag: use " + name + "=true or leave it out");
  }

  private void resume(Exchange x, String resource) {
    Optional<Principal> who = authenticate(x, true);
    known(x.json());
    answer(x, engine.resume(resource), done -> {
      log.info("resume of {} asked from the HTTP port ({})", resource,
          who.map(p -> "key " + p.keyId()).orElse("open coordinator"));
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("resource", resource);
      o.put("paused", false);
      x.json(HttpResponseStatus.OK, o);
    });
  }

  /** Answers from an engine future, in its callback; a failure becomes the error answer. */
  static <T> void answer(Exchange x, CompletableFuture<T> future, Consumer<T> then) {
    future.whenComplete((value, error) -> {
      if (error != null) {
        x.error(HttpError.of(error));
        return;
      }
      try {
        then.accept(value);
      } catch (RuntimeException e) {
        x.error(HttpError.of(e));
      }
    });
  }

  private ObjectNode history() {
    ObjectNode o = Views.JSON.createObjectNode();
    o.put("stepSeconds", 1);
    o.put("points", ResourceSampler.HISTORY);
    ObjectNode resources = o.putObject("resources");
    for (String name : options.sampler().watched()) {
      ObjectNode r = resources.putObject(name);
      options.sampler().history(name).forEach((dim, series) -> {
        var a = r.putArray(dim);
        for (double v : series) {
          a.add(Math.round(v * 1000) / 1000.0);
        }
      });
    }
    return o;
  }

  // ---------------------------------------------------------------------------------------
  // Keys

  /**
   * The caller's key: empty on an open coordinator (no key exists). 401 without a valid key,
   * 403 when {@code admin} and the key is a worker's.
   */
  Optional<Principal> authenticate(Exchange x, boolean admin) {
    return authenticate(x, admin ? "pause and resume are admin calls" : null);
  }

  /**
   * {@link #authenticate(Exchange, boolean)} for an admin call described as {@code adminCall}
   * (null: any key), so a worker is told which call needs an admin key and what it may do instead.
   */
  Optional<Principal> authenticate(Exchange x, String adminCall) {
    boolean admin = adminCall != null;
    if (options.keys().isEmpty()) {
      return Optional.empty();
    }
    String header = x.header(HttpHeaderNames.AUTHORIZATION);
    Optional<Principal> p = options.auth().authenticate(header);
    if (p.isEmpty()) {
      throw new HttpError(HttpResponseStatus.UNAUTHORIZED, "UNAUTHENTICATED", header == null
          ? "this coordinator requires an API key: send the header 'Authorization: Bearer slk_...' (an admin creates"
              + " keys with `sluice key create`)"
          : "unknown or revoked API key " + AuthInterceptor.describe(header) + ": check the key, or ask an admin"
              + " for a new one (`sluice key create`)");
    }
    if (admin && p.get().role() != Role.ADMIN) {
      throw new HttpError(HttpResponseStatus.FORBIDDEN, "PERMISSION_DENIED", "API key " + p.get().keyId()
          + " has role worker; " + adminCall + ": use an admin key");
    }
    return p;
  }

  // ---------------------------------------------------------------------------------------
  // Parsing: every refusal names the field and the fix

  static String decode(String raw) {
    try {
      return QueryStringDecoder.decodeComponent(raw, StandardCharsets.UTF_8);
    } catch (IllegalArgumentException e) {
      throw HttpError.badRequest("bad percent-encoding in the path '" + raw + "': " + e.getMessage());
    }
  }

  static void known(JsonNode body, String... fields) {
    knownIn(body, "the body", fields);
  }

  /** Refuses a field of {@code node} (named {@code where} in the message) not among {@code fields}. */
  static void knownIn(JsonNode node, String where, String... fields) {
    for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
      String f = it.next();
      if (!List.of(fields).contains(f)) {
        throw HttpError.badRequest("unknown field '" + f + "' in " + where + (fields.length == 0
            ? ": this call takes no body" : ": it takes " + String.join(", ", fields)));
      }
    }
  }

  static Map<String, Long> load(JsonNode node, String field) {
    if (node == null || node.isNull()) {
      return Map.of();
    }
    if (!node.isObject()) {
      throw HttpError.badRequest(field + " must be an object of dimension to whole number, such as"
          + " {\"requests\": 1, \"tokens\": 1200}");
    }
    Map<String, Long> out = new LinkedHashMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      JsonNode v = e.getValue();
      if (!v.isIntegralNumber() || !v.canConvertToLong()) {
        throw HttpError.badRequest(field + "." + e.getKey() + " is " + v + ": give a whole number of tokens");
      }
      out.put(e.getKey(), v.longValue());
    }
    return out;
  }

  private static Lane lane(JsonNode node) {
    if (node == null || node.isNull()) {
      return Lane.DEFAULT;
    }
    String s = text(node, "lane").toLowerCase(Locale.ROOT);
    return switch (s) {
      case "interactive" -> Lane.INTERACTIVE;
      case "default" -> Lane.DEFAULT;
      case "batch" -> Lane.BATCH;
      default -> throw HttpError.badRequest("lane '" + node.asText() + "' is unknown: use interactive, default or"
          + " batch");
    };
  }

  static String text(JsonNode node, String field) {
    if (!node.isTextual()) {
      throw HttpError.badRequest(field + " must be a string, not " + node);
    }
    return node.asText();
  }

  private static boolean bool(JsonNode node, String field) {
    if (!node.isBoolean()) {
      throw HttpError.badRequest(field + " must be true or false, not " + node);
    }
    return node.booleanValue();
  }

  /** Acquire timeouts and retry hints: 0 to a day. */
  private static final Durations.Bounds UP_TO_A_DAY = Durations.Bounds.of(Duration.ZERO, Duration.ofDays(1), "30s");

  /** Seconds as a number, or a string: {@code 250ms}, {@code 30s}, {@code 5m}, {@code 1h}, {@code PT30S}. */
  static long duration(JsonNode node, String field) {
    return duration(node, field, UP_TO_A_DAY);
  }

  static long duration(JsonNode node, String field, Durations.Bounds bounds) {
    try {
      // A JSON number is seconds; its text (0.5, 1.0E-3) is what the parser reads as plain seconds.
      return Durations.parse(field, node.isNumber() ? node.asText() : text(node, field), bounds, true).toNanos();
    } catch (IllegalArgumentException e) {
      throw HttpError.badRequest(e.getMessage());
    }
  }

  static long duration(String s, String field) {
    try {
      return Durations.parse(field, s, UP_TO_A_DAY, true).toNanos();
    } catch (IllegalArgumentException e) {
      throw HttpError.badRequest(e.getMessage());
    }
  }

  /**
   * The permit id the HTTP API hands out: the resource (base64url) and the engine's permit id,
   * so that release and renew need only the id, on any node.
   */
  record HttpPermit(String id, String resource, String permitId) {
    static String id(String resource, String permitId) {
      return Base64.getUrlEncoder().withoutPadding().encodeToString(resource.getBytes(StandardCharsets.UTF_8))
          + "." + permitId;
    }

    static HttpPermit parse(String id) {
      int dot = id.indexOf('.');
      if (dot > 0 && dot < id.length() - 1) {
        try {
          String resource = new String(Base64.getUrlDecoder().decode(id.substring(0, dot)), StandardCharsets.UTF_8);
          return new HttpPermit(id, resource, id.substring(dot + 1));
        } catch (IllegalArgumentException e) {
          // fall through
        }
      }
      throw HttpError.badRequest("permit id '" + (id.length() > 80 ? id.substring(0, 80) + "..." : id)
          + "' is not one this API hands out: pass the permitId an acquire answered");
    }
  }
}
