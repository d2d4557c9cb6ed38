package dev.sluice.server.http;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.limits.LimitChanges;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.function.BiConsumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code /v1/templates}: templates, admin keys only. {@code GET /v1/templates} lists them,
 * {@code PUT /v1/templates/{pattern}} with a limit's body (as {@code POST
 * /v1/resources/{name}/limit}) creates or replaces one, {@code GET} reads one, {@code DELETE}
 * deletes it. A {@code ?} in a pattern is written {@code %3F} in the path. Which template a
 * resource uses shows as {@code "template"} in {@code GET /v1/resources/{name}}.
 */
final class TemplateApi {

  private static final Logger log = LoggerFactory.getLogger(TemplateApi.class);
  private static final String ADMIN_CALL = "templates are admin calls";

  private final Engine engine;
  private final JsonApi api;

  TemplateApi(Engine engine, JsonApi api) {
    this.engine = engine;
    this.api = api;
  }

  void route(Exchange x, String path, BiConsumer<Exchange, Runnable> offload) {
    if (path.equals("/v1/templates")) {
      HttpApi.only(x, "GET");
      offload.accept(x, () -> {
        api.authenticate(x, ADMIN_CALL);
        JsonApi.answer(x, engine.listTemplates(), all -> {
          ObjectNode o = Views.JSON.createObjectNode();
          ArrayNode list = o.putArray("templates");
          all.forEach(t -> list.add(view(t)));
          x.json(HttpResponseStatus.OK, o);
        });
      });
      return;
    }
    String pattern = JsonApi.decode(path.substring("/v1/templates/".length()));
    HttpApi.only(x, "GET", "PUT", "DELETE");
    offload.accept(x, () -> {
      String who = LimitChanges.who(api.authenticate(x, ADMIN_CALL).orElse(null));
      switch (x.method()) {
        case "GET" -> JsonApi.answer(x, engine.listTemplates().thenApply(all -> view(find(all, pattern))),
            o -> x.json(HttpResponseStatus.OK, o));
        case "PUT" -> {
          LimitSpec spec = LimitJson.parse(pattern, x.json());
          CompletableFuture<ObjectNode> done = engine.setTemplate(spec).thenCompose(created ->
              engine.listTemplates().thenApply(all -> {
                LimitSpec stored = find(all, pattern);
                log.info("template {} {} by {} from the HTTP port: {}", pattern, created ? "created" : "changed", who,
                    MemoryEngine.describe(stored));
                return view(stored).put("created", created);
              }));
          JsonApi.answer(x, done, o -> x.json(HttpResponseStatus.OK, o));
        }
        default -> JsonApi.answer(x, engine.deleteTemplate(pattern), gone -> {
          log.info("template {} deleted by {} from the HTTP port", pattern, who);
          ObjectNode o = Views.JSON.createObjectNode();
          o.put("pattern", pattern);
          o.put("deleted", true);
          x.json(HttpResponseStatus.OK, o);
        });
      }
    });
  }

  private static LimitSpec find(List<LimitSpec> all, String pattern) {
    return all.stream().filter(t -> t.resource().equals(pattern)).findFirst().orElseThrow(() ->
        new EngineException(EngineException.Reason.NOT_FOUND, "no template '" + pattern + "': create it with PUT"
            + " /v1/templates/" + pattern + " and a limit's body (GET /v1/templates lists them)"));
  }

  private static ObjectNode view(LimitSpec t) {
    ObjectNode o = Views.JSON.createObjectNode();
    o.put("pattern", t.resource());
    o.set("limit", Views.limit(t));
    return o;
  }
}
