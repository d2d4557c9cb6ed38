package dev.sluice.server.http;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.auth.Principal;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.limits.LimitChanges;
import dev.sluice.server.limits.LimitsApply;
import dev.sluice.server.limits.LimitsDocument;
import dev.sluice.server.limits.LimitsFileException;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.function.BiConsumer;

/**
 * {@code /v1/limits}, admin keys only: the limits as a limits document (docs/limits-file.md).
 * {@code GET} answers it (YAML; {@code ?format=json} for JSON); {@code PUT} with a document as
 * the body (YAML or JSON, at most the port's 1 MiB body) answers the diff and applies it, or
 * only answers it with {@code ?dryRun=true}; {@code ?prune=true} also removes the limits the
 * document does not name. A document that cannot be applied is a 400 naming its line and column.
 */
final class LimitsApi {

  private static final String ADMIN_CALL = "limits documents are admin calls";

  private final Engine engine;
  private final LimitChanges changes;
  private final JsonApi api;

  LimitsApi(LimitChanges changes, JsonApi api) {
    this.engine = changes.engine();
    this.changes = changes;
    this.api = api;
  }

  void route(Exchange x, BiConsumer<Exchange, Runnable> offload) {
    HttpApi.only(x, "GET", "PUT");
    offload.accept(x, () -> {
      java.util.Optional<Principal> who = api.authenticate(x, ADMIN_CALL);
      if (x.method().equals("GET")) {
        String format = x.query("format");
        if (format != null && !format.equals("json") && !format.equals("yaml")) {
          throw HttpError.badRequest("format '" + format + "' is not one this call writes: use yaml (the default)"
              + " or json");
        }
        JsonApi.answer(x, LimitsApply.current(engine), limits -> {
          if ("json".equals(format)) {
            x.json(HttpResponseStatus.OK, LimitsDocument.tree(limits));
          } else {
            x.text(HttpResponseStatus.OK, "application/yaml; charset=utf-8", LimitsDocument.export(limits));
          }
        });
        return;
      }
      boolean dryRun = JsonApi.flag(x, "dryRun");
      boolean prune = JsonApi.flag(x, "prune");
      boolean force = JsonApi.flag(x, "force");
      String source = x.query("source") == null || x.query("source").isBlank() ? "the HTTP API"
          : LimitsApply.ownerName(x.query("source"));
      String text = x.request().content().toString(StandardCharsets.UTF_8);
      LimitsDocument doc;
      try {
        doc = LimitsDocument.parse(text, x.query("source") == null ? "the body" : source);
      } catch (LimitsFileException e) {
        throw HttpError.badRequest(e.getMessage());
      }
      String by = LimitChanges.who(who.orElse(null)) + ", " + LimitChanges.file(source, doc.hash());
      CompletableFuture<ObjectNode> done = LimitsApply.plan(engine, doc, prune, source, force).thenCompose(plan -> {
        boolean any = plan.stream().anyMatch(c -> c.kind() != LimitsApply.Change.Kind.UNMANAGED);
        if (dryRun || !any) {
          return CompletableFuture.completedFuture(view(plan, false, doc.hash()));
        }
        return LimitsApply.apply(changes, plan, by).thenApply(p -> view(p, true, doc.hash()));
      });
      JsonApi.answer(x, done, o -> x.json(HttpResponseStatus.OK, o));
    });
  }

  private static ObjectNode view(List<LimitsApply.Change> plan, boolean applied, String hash) {
    ObjectNode o = Views.JSON.createObjectNode();
    o.put("applied", applied);
    o.put("documentHash", hash);
    o.put("summary", plan.stream().anyMatch(c -> c.kind() != LimitsApply.Change.Kind.UNMANAGED)
        ? LimitsApply.summary(plan) : "no changes");
    ArrayNode changes = o.putArray("changes");
    for (LimitsApply.Change c : plan) {
      ObjectNode one = changes.addObject();
      one.put("kind", c.kind().name().toLowerCase(java.util.Locale.ROOT));
      one.put("resource", c.resource());
      c.details().forEach(one.putArray("details")::add);
    }
    return o;
  }
}
