package dev.sluice.server.http;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.limits.LimitChanges;
import dev.sluice.server.engine.ResourceSnapshot;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.function.BiConsumer;

/**
 * {@code /v1/pools}: pools of member resources, admin keys only (a pool is a limit with members,
 * as the gRPC Admin service's SetLimit, GetLimit, ListLimits and DeleteLimit see it). {@code GET
 * /v1/pools} lists them, {@code PUT /v1/pools/{name}} with {@code {"members": [...]}} creates or
 * replaces one, {@code GET} reads one with its members' state, {@code DELETE} deletes the pool
 * and never its members. Names that are not pools are refused here, naming the limit calls.
 */
final class PoolApi {

  private static final String ADMIN_CALL = "pools are admin calls";
  private static final String EXAMPLE = "{\"members\": [\"openai-proj-a\", \"openai-proj-b\"]}";

  private final Engine engine;
  private final HttpApi.Options options;
  private final JsonApi api;

  PoolApi(Engine engine, HttpApi.Options options, JsonApi api) {
    this.engine = engine;
    this.options = options;
    this.api = api;
  }

  void route(Exchange x, String path, BiConsumer<Exchange, Runnable> offload) {
    if (path.equals("/v1/pools")) {
      HttpApi.only(x, "GET");
      offload.accept(x, () -> {
        api.authenticate(x, ADMIN_CALL);
        JsonApi.answer(x, engine.listLimits(""), all -> {
          ObjectNode o = Views.JSON.createObjectNode();
          ArrayNode list = o.putArray("pools");
          for (LimitSpec l : all) {
            if (l.isPool()) {
              ObjectNode one = list.addObject();
              one.put("name", l.resource());
              l.members().forEach(one.putArray("members")::add);
            }
          }
          x.json(HttpResponseStatus.OK, o);
        });
      });
      return;
    }
    String name = JsonApi.decode(path.substring("/v1/pools/".length()));
    HttpApi.only(x, "GET", "PUT", "DELETE");
    offload.accept(x, () -> {
      String who = LimitChanges.who(api.authenticate(x, ADMIN_CALL).orElse(null));
      boolean force = JsonApi.flag(x, "force");
      switch (x.method()) {
        case "GET" -> JsonApi.answer(x, pool(name).thenCompose(this::withMembers),
            o -> x.json(HttpResponseStatus.OK, o));
        case "PUT" -> put(x, name, who, force);
        default -> JsonApi.answer(x, pool(name).thenCompose(p -> api.changes().delete(name, who, force)), done -> {
          ObjectNode o = Views.JSON.createObjectNode();
          o.put("name", name);
          o.put("deleted", true);
          x.json(HttpResponseStatus.OK, o);
        });
      }
    });
  }

  private void put(Exchange x, String name, String who, boolean force) {
    JsonNode body = x.json();
    JsonApi.known(body, "members");
    JsonNode m = body.get("members");
    if (m == null || m.isNull() || (m.isArray() && m.isEmpty())) {
      throw HttpError.badRequest("a pool needs at least one member: give the resources it grants from, such as "
          + EXAMPLE);
    }
    if (!m.isArray()) {
      throw HttpError.badRequest("members must be a list of resource names, such as " + EXAMPLE);
    }
    List<String> members = new ArrayList<>();
    for (JsonNode e : m) {
      members.add(JsonApi.text(e, "each of members"));
    }
    LimitSpec spec = LimitSpec.pool(name, members);
    JsonApi.answer(x, api.changes().set(spec, who, force), created -> {
      ObjectNode o = Views.JSON.createObjectNode();
      o.put("name", name);
      o.put("created", created);
      members.forEach(o.putArray("members")::add);
      x.json(HttpResponseStatus.OK, o);
    });
  }

  /** The pool named so; NOT_FOUND when there is none, INVALID when the name is a resource's own limit. */
  private CompletableFuture<LimitSpec> pool(String name) {
    return engine.getLimit(name).thenApply(l -> {
      if (l.isEmpty()) {
        throw new EngineException(EngineException.Reason.NOT_FOUND, "no pool '" + name + "': create it with PUT"
            + " /v1/pools/" + name + " " + EXAMPLE + " (GET /v1/pools lists the pools)");
      }
      if (!l.get().isPool()) {
        throw new EngineException(EngineException.Reason.INVALID, "'" + name + "' is a resource with a limit of its"
            + " own, not a pool: read it with GET /v1/resources/" + name + ", change it with POST /v1/resources/"
            + name + "/limit");
      }
      return l.get();
    });
  }

  /** {@link Views#pool} read live, each member with its limit as {@code "limit"}. */
  private CompletableFuture<ObjectNode> withMembers(LimitSpec pool) {
    Map<String, CompletableFuture<Optional<ResourceSnapshot>>> each = new HashMap<>();
    for (String m : pool.members()) {
      each.put(m, engine.stats(m).handle((s, e) -> Optional.ofNullable(s))); // a deleted member: not found
    }
    return CompletableFuture.allOf(each.values().toArray(CompletableFuture[]::new)).thenApply(done -> {
      ObjectNode o = Views.pool(pool, m -> each.get(m).join().orElse(null), options.poolMeters());
      for (JsonNode member : o.get("members")) {
        each.get(member.get("name").asText()).join()
            .ifPresent(s -> ((ObjectNode) member).set("limit", Views.limit(s.limit())));
      }
      return o;
    });
  }
}
