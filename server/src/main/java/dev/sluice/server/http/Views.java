package dev.sluice.server.http;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LearnSpec;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.ResourceSnapshot;
import java.util.Locale;
import java.util.Map;

/** The JSON documents of the HTTP port (field names are the contract docs/http-api.md documents). */
final class Views {

  static final ObjectMapper JSON = new ObjectMapper();

  private Views() {}

  /**
   * {@code {"time", "node", "total", "resources": [...]}}: what /v1/resources and /v1/events
   * send. These reads need no key, so buffers (their URLs, headers, counts) stay out: they are
   * read from /v1/buffers with a key.
   */
  static ObjectNode sample(ResourceSampler.Sample s, String node) {
    ObjectNode o = JSON.createObjectNode();
    o.put("time", s.timeMillis());
    o.put("node", node);
    o.put("total", s.total());
    ArrayNode list = o.putArray("resources");
    for (ResourceSnapshot r : s.resources()) {
      list.add(resource(r, s.utilization().getOrDefault(r.limit().resource(), Map.of())));
    }
    return o;
  }

  static ObjectNode resource(ResourceSnapshot r, Map<String, Double> utilization) {
    ObjectNode o = JSON.createObjectNode();
    o.put("name", r.limit().resource());
    o.set("limit", limit(r.limit()));
    ObjectNode available = o.putObject("available");
    r.available().forEach((k, v) -> available.put(k, round(v)));
    ObjectNode util = o.putObject("utilization");
    for (RateSpec rs : r.limit().rates()) {
      util.put(rs.name(), round(utilization.getOrDefault(rs.name(), 0.0)));
    }
    o.put("inFlight", r.inFlight());
    ObjectNode waiting = o.putObject("waiting");
    for (Lane lane : Lane.values()) {
      waiting.put(lane.name().toLowerCase(Locale.ROOT), r.waiting().getOrDefault(lane, 0));
    }
    o.put("paused", r.paused());
    o.put("pausedForSeconds", r.pausedForNanos() < 0 ? -1 : r.pausedForNanos() / 1e9);
    o.put("granted", r.granted());
    o.put("timedOut", r.timedOut());
    o.put("cancelled", r.cancelled());
    o.put("givenBack", r.givenBack());
    o.put("forfeited", r.forfeited());
    o.put("expired", r.expired());
    ObjectNode rejected = o.putObject("rejected");
    r.rejected().forEach(rejected::put);
    o.put("waitP50Seconds", r.waitP50Seconds());
    o.put("waitP99Seconds", r.waitP99Seconds());
    o.put("throttleReports", r.throttleReports());
    return o;
  }

  static ObjectNode limit(LimitSpec l) {
    ObjectNode o = JSON.createObjectNode();
    ArrayNode rates = o.putArray("rates");
    for (RateSpec r : l.rates()) {
      ObjectNode x = rates.addObject();
      x.put("dimension", r.name());
      x.put("amount", r.amount());
      x.put("periodSeconds", r.period().toNanos() / 1e9);
      x.put("burst", r.burst());
      x.put("perSecond", round(ResourceSampler.perSecond(r)));
    }
    o.put("concurrency", l.concurrency());
    o.put("maxWaiting", l.maxWaiting());
    o.put("leaseSeconds", l.leaseTtl().toNanos() / 1e9);
    if (l.learn() != null) {
      o.set("learn", learn(l.learn()));
    }
    return o;
  }

  /** A learned limit's provider, ceilings and last change (null {@code learnedAt}: none yet). */
  static ObjectNode learn(LearnSpec l) {
    ObjectNode o = JSON.createObjectNode();
    o.put("provider", l.provider());
    ObjectNode ceilings = o.putObject("ceilingsPerMinute");
    for (RateSpec c : l.ceilings()) {
      ceilings.put(c.name(), round((double) c.amount() * 60e9 / c.period().toNanos()));
    }
    if (l.learnedAtMillis() == 0) {
      o.putNull("learnedAt");
    } else {
      o.put("learnedAt", java.time.Instant.ofEpochMilli(l.learnedAtMillis()).toString());
    }
    o.put("was", l.was());
    o.put("summary", LearnSpec.describe(l));
    return o;
  }

  /** A grant answering a request that reached this node at {@code arrivedNanos} (System.nanoTime). */
  static ObjectNode grant(Grant g, String httpPermitId, long arrivedNanos) {
    ObjectNode o = JSON.createObjectNode();
    o.put("permitId", httpPermitId);
    o.put("resource", g.resource());
    ObjectNode granted = o.putObject("granted");
    g.load().forEach(granted::put);
    o.put("leaseSeconds", g.leaseTtlNanos() / 1e9);
    o.put("waitedSeconds", g.waitedNanos() / 1e9);
    o.put("answeredAfterSeconds", Math.max(0, System.nanoTime() - arrivedNanos) / 1e9);
    if (g.freshNanos() >= 0) {
      o.put("freshForSeconds", g.freshNanos() / 1e9);
    } else {
      o.putNull("freshForSeconds");
    }
    return o;
  }

  static ObjectNode error(String code, int status, String message) {
    ObjectNode o = JSON.createObjectNode();
    ObjectNode e = o.putObject("error");
    e.put("code", code);
    e.put("status", status);
    e.put("message", message);
    return o;
  }

  private static double round(double v) {
    return Math.round(v * 1000) / 1000.0;
  }
}
