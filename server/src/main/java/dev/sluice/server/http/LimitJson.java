package dev.sluice.server.http;

import com.fasterxml.jackson.databind.JsonNode;
import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.TenantPolicy;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The body of {@code POST /v1/resources/{name}/limit}: a limit in the shape {@link Views#limit}
 * answers, so a limit read can be sent back changed. Checks only the JSON's shape here; the
 * ranges (amounts, periods, floors summing over 100 %, a cap above the quota) are the engine's
 * ({@code Validation.limit}), whose messages name the fix.
 */
public final class LimitJson {

  private static final Durations.Bounds PERIOD = Durations.Bounds.of(Duration.ofMillis(1), Duration.ofDays(1), "1m");
  private static final Durations.Bounds LEASE = Durations.Bounds.of(Duration.ZERO, Duration.ofDays(1), "30s");
  private static final Durations.Bounds JITTER = Durations.Bounds.of(Duration.ZERO, Duration.ofMinutes(1), "20ms");

  /** The fields a limit takes (docs/limits-file.schema.json lists the same). */
  public static final List<String> FIELDS = List.of("rates", "concurrency", "maxWaiting", "leaseSeconds",
      "jitterSeconds", "lease", "jitter", "shares", "floors", "caps", "learn", "holds");

  private LimitJson() {}

  /**
   * A limit from its JSON (or YAML tree): refusals are unchecked exceptions whose message starts
   * with the field it is about ({@code rates[0].amount is -5: ...}).
   */
  public static LimitSpec parse(String resource, JsonNode body) {
    // What a read shows (Views#limit) can be sent back: jitterSeconds and learn are taken, the
    // figures the coordinator works out (perSecond, effectiveAmount, learn's when and was) ignored.
    // lease and jitter are the limits file's names (a duration such as "30s"); the *Seconds forms
    // are what a read answers. Either, not both.
    JsonApi.known(body, FIELDS.toArray(String[]::new));
    List<RateSpec> rates = body.hasNonNull("rates") ? rates(body.get("rates"), "rates") : List.of();
    long concurrency = body.hasNonNull("concurrency") ? whole(body.get("concurrency"), "concurrency") : 0;
    long maxWaiting = body.hasNonNull("maxWaiting") ? whole(body.get("maxWaiting"), "maxWaiting") : 0;
    if (maxWaiting > Integer.MAX_VALUE) {
      throw HttpError.badRequest("maxWaiting " + maxWaiting + " is too large: give at most " + Integer.MAX_VALUE
          + ", or 0 for the server default");
    }
    Duration lease = duration(body, "lease", "leaseSeconds", LEASE);
    Duration jitter = duration(body, "jitter", "jitterSeconds", JITTER);
    Map<String, Double> shares = numbers(body.get("shares"), "shares", "{\"search\": 3}");
    Map<String, Double> floors = numbers(body.get("floors"), "floors", "{\"search\": 0.4} (0.4 is 40 %)");
    Map<String, List<RateSpec>> caps = new LinkedHashMap<>();
    JsonNode c = body.get("caps");
    if (c != null && !c.isNull()) {
      if (!c.isObject()) {
        throw HttpError.badRequest("caps must be an object of tenant to a list of rates, such as {\"research\":"
            + " [{\"dimension\": \"tokens\", \"amount\": 20000, \"period\": \"1m\"}]}");
      }
      for (Iterator<Map.Entry<String, JsonNode>> it = c.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        caps.put(e.getKey(), rates(e.getValue(), "caps." + e.getKey()));
      }
    }
    return new LimitSpec(resource, rates, concurrency, (int) maxWaiting, lease, jitter,
        new TenantPolicy(shares, floors, caps), learn(body.get("learn"))).withHolds(holds(body.get("holds")));
  }

  /** {@code {"enqueued_tokens": 2000000}}: held dimensions; the engine checks names and ranges. */
  private static Map<String, Long> holds(JsonNode h) {
    if (h == null || h.isNull()) {
      return Map.of();
    }
    if (!h.isObject()) {
      throw HttpError.badRequest("holds must be an object of dimension to the most the permits alive at once may"
          + " hold of it, such as {\"enqueued_tokens\": 2000000}");
    }
    Map<String, Long> out = new LinkedHashMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = h.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      out.put(e.getKey(), whole(e.getValue(), "holds." + e.getKey()));
    }
    return out;
  }

  /** {@code name} or {@code seconds} (not both) as a duration, or null when neither is there. */
  private static Duration duration(JsonNode body, String name, String seconds, Durations.Bounds bounds) {
    if (body.hasNonNull(name) && body.hasNonNull(seconds)) {
      throw HttpError.badRequest(name + " is given twice, as " + name + " and as " + seconds + ": keep one, such as"
          + " \"" + name + "\": \"" + bounds.example() + "\"");
    }
    String field = body.hasNonNull(name) ? name : seconds;
    return body.hasNonNull(field) ? Duration.ofNanos(JsonApi.duration(body.get(field), field, bounds)) : null;
  }

  /** {@code {"provider": "openai", "ceilingsPerMinute": {"requests": 500}}}, as a read shows it. */
  private static dev.sluice.server.engine.LearnSpec learn(JsonNode l) {
    if (l == null || l.isNull()) {
      return null;
    }
    if (!l.isObject() || !l.hasNonNull("provider") || !l.get("provider").isTextual()) {
      throw HttpError.badRequest("learn must be an object naming its provider, such as {\"provider\": \"openai\","
          + " \"ceilingsPerMinute\": {\"requests\": 500}}");
    }
    JsonApi.knownIn(l, "learn", "provider", "ceilingsPerMinute", "learnedAt", "was", "summary");
    List<RateSpec> ceilings = new java.util.ArrayList<>();
    JsonNode c = l.get("ceilingsPerMinute");
    if (c != null && !c.isNull()) {
      if (!c.isObject()) {
        throw HttpError.badRequest("learn.ceilingsPerMinute must be an object of dimension to a whole amount per"
            + " minute, such as {\"requests\": 500}");
      }
      for (Iterator<Map.Entry<String, JsonNode>> it = c.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        JsonNode v = e.getValue();
        // A read shows it as a number per minute (500.0): whole values are taken as they are.
        if (!v.isNumber() || v.asDouble() < 1 || v.asDouble() != Math.rint(v.asDouble()) || v.asDouble() > 1e15) {
          throw HttpError.badRequest("learn.ceilingsPerMinute." + e.getKey() + " is " + v + ": give a whole number"
              + " of units per minute, such as 500");
        }
        ceilings.add(new RateSpec(e.getKey(), (long) v.asDouble(), Duration.ofMinutes(1), 0));
      }
    }
    return new dev.sluice.server.engine.LearnSpec(l.get("provider").asText(), ceilings, 0, "");
  }

  private static List<RateSpec> rates(JsonNode node, String field) {
    if (!node.isArray()) {
      throw HttpError.badRequest(field + " must be a list of rates, such as [{\"dimension\": \"tokens\", \"amount\":"
          + " 20000, \"period\": \"1m\", \"burst\": 4000}]");
    }
    List<RateSpec> out = new ArrayList<>();
    for (int i = 0; i < node.size(); i++) {
      JsonNode r = node.get(i);
      String at = field + "[" + i + "]";
      if (!r.isObject()) {
        throw HttpError.badRequest(at + " must be an object such as {\"dimension\": \"tokens\", \"amount\": 20000,"
            + " \"period\": \"1m\"}");
      }
      // perSecond is what a read answers beside the rate; sent back, it is ignored.
      JsonApi.knownIn(r, at, "dimension", "amount", "period", "periodSeconds", "burst", "perSecond",
          "effectiveAmount");
      if (!r.hasNonNull("dimension") || !r.get("dimension").isTextual()) {
        throw HttpError.badRequest(at + ".dimension is missing: name the dimension, such as \"tokens\"");
      }
      if (r.hasNonNull("period") == r.hasNonNull("periodSeconds")) {
        throw HttpError.badRequest(at + " needs its period once: \"period\": \"1m\" (or seconds), or"
            + " \"periodSeconds\": 60");
      }
      JsonNode p = r.hasNonNull("period") ? r.get("period") : r.get("periodSeconds");
      if (r.hasNonNull("periodSeconds") && !p.isNumber()) {
        throw HttpError.badRequest(at + ".periodSeconds must be a number of seconds, not " + p);
      }
      long period = JsonApi.duration(p, at + ".period", PERIOD);
      if (!r.hasNonNull("amount")) {
        throw HttpError.badRequest(at + ".amount is missing: give the units allowed per period, such as 20000");
      }
      out.add(new RateSpec(r.get("dimension").asText(), whole(r.get("amount"), at + ".amount"),
          Duration.ofNanos(period), r.hasNonNull("burst") ? whole(r.get("burst"), at + ".burst") : 0));
    }
    return out;
  }

  private static Map<String, Double> numbers(JsonNode node, String field, String example) {
    Map<String, Double> out = new LinkedHashMap<>();
    if (node == null || node.isNull()) {
      return out;
    }
    if (!node.isObject()) {
      throw HttpError.badRequest(field + " must be an object of tenant to number, such as " + example);
    }
    for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      if (!e.getValue().isNumber()) {
        throw HttpError.badRequest(field + "." + e.getKey() + " is " + e.getValue() + ": give a number, such as "
            + example);
      }
      out.put(e.getKey(), e.getValue().doubleValue());
    }
    return out;
  }

  private static long whole(JsonNode v, String field) {
    if (!v.isIntegralNumber() || !v.canConvertToLong()) {
      throw HttpError.badRequest(field + " is " + v + ": give a whole number");
    }
    return v.longValue();
  }
}
