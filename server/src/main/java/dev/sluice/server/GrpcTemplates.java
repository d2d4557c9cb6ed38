package dev.sluice.server;

import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.SetLimitResponse;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.auth.Principal;
import dev.sluice.server.limits.LimitChanges;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import java.util.concurrent.CompletableFuture;

/**
 * The limit RPCs' template side: a name holding a wildcard is a template's pattern, and a
 * resource without a limit of its own answers with the template that applies to it. Apart from
 * {@link AdminService} so that its limit paths stay one line longer each.
 */
final class GrpcTemplates {

  private GrpcTemplates() {}

  private static final Logger log = LoggerFactory.getLogger(GrpcTemplates.class);

  /** SetLimit with a pattern: sets the template, logs one line naming the caller, answers it as stored. */
  static CompletableFuture<SetLimitResponse> set(Engine engine, LimitSpec template) {
    String who = LimitChanges.who(Principal.current());
    return engine.setTemplate(template).thenCompose(created -> engine.listTemplates().thenApply(all -> {
      LimitSpec stored = all.stream().filter(t -> t.resource().equals(template.resource())).findFirst()
          .orElseThrow(() -> notFound(template.resource()));
      log.info("template {} {} by {}: {}", template.resource(), created ? "created" : "changed", who,
          MemoryEngine.describe(stored));
      return SetLimitResponse.newBuilder()
          .setLimit(Protos.limit(stored))
          .setCreated(created)
          .build();
    }));
  }

  /** DeleteLimit with a pattern: deletes the template and logs one line naming the caller. */
  static CompletableFuture<Void> delete(Engine engine, String pattern) {
    String who = LimitChanges.who(Principal.current());
    return engine.deleteTemplate(pattern).thenRun(() -> log.info("template {} deleted by {}", pattern, who));
  }

  /**
   * GetLimit: a template by its pattern; a resource's own limit; else the template that applies
   * to it, under its name, with {@code template} set; else NOT_FOUND.
   */
  static CompletableFuture<Limit> get(Engine engine, String name) {
    if (dev.sluice.server.engine.Templates.isPattern(name)) {
      return engine.listTemplates().thenApply(all -> Protos.limit(
          all.stream().filter(t -> t.resource().equals(name)).findFirst().orElseThrow(() -> notFound(name))));
    }
    return engine.getLimit(name).thenCompose(own -> {
      if (own.isPresent()) {
        return CompletableFuture.completedFuture(Protos.limit(own.get()));
      }
      return engine.templateFor(name).thenApply(t -> t
          .map(spec -> Protos.limit(spec).toBuilder().setResource(name).setTemplate(spec.resource()).build())
          .orElseThrow(() -> new EngineException(EngineException.Reason.NOT_FOUND,
              "resource '" + name + "' has no limit and no template matches it: list them with"
                  + " `sluice limit list`")));
    });
  }

  private static EngineException notFound(String pattern) {
    return new EngineException(EngineException.Reason.NOT_FOUND,
        "no template '" + pattern + "': list them with `sluice limit list`");
  }
}
