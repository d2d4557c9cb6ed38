package dev.sluice.server.limits;

import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LimitOwner;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.Templates;
import dev.sluice.server.engine.Validation;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every change of a limit made by someone (the gRPC and HTTP admin calls, an applied limits
 * file) goes through here: the ownership check (a limit a limits file manages is changed only
 * by that file, or by hand with force), then the change, then one INFO line naming who made it
 * and each field before → after, and the same in the {@link LimitHistory}.
 *
 * <p>The check reads the limit, then writes: two changes racing on one resource may both pass
 * it. Both are logged and kept, so the history shows the race; the last write wins as before.
 */
public final class LimitChanges {

  private static final Logger log = LoggerFactory.getLogger(LimitChanges.class);

  /** "local": a change on a coordinator without API keys. */
  public static final String LOCAL = "local";

  private final Engine engine;
  private final LimitHistory history;
  private final LongSupplier wallMillis;

  public LimitChanges(Engine engine, LimitHistory history, LongSupplier wallMillis) {
    this.engine = Objects.requireNonNull(engine);
    this.history = Objects.requireNonNull(history);
    this.wallMillis = Objects.requireNonNull(wallMillis);
  }

  /** With an in-process history and the system clock (tests, callers that keep no store). */
  public LimitChanges(Engine engine) {
    this(engine, LimitHistory.inMemory(), System::currentTimeMillis);
  }

  public Engine engine() {
    return engine;
  }

  /**
   * Who a caller is: {@code key <id>} with the key's description in parentheses when it has one,
   * or {@link #LOCAL} on a coordinator without keys (no principal).
   */
  public static String who(dev.sluice.server.auth.Principal p) {
    if (p == null) {
      return LOCAL;
    }
    String about = p.store() == null ? null
        : p.store().get(p.keyId()).map(dev.sluice.server.auth.StoredKey::description).orElse(null);
    return "key " + p.keyId() + (about == null || about.isBlank() ? "" : " (" + about + ")");
  }

  /** Who a file's apply is: {@code file limits.yaml sha256:0123456789ab}. */
  public static String file(String name, String sha256) {
    return "file " + name + " sha256:" + sha256;
  }

  /**
   * Sets a limit by hand ({@code limit set}, a pool created). A limit a file manages is refused
   * (CONFLICT) unless {@code force}; forced, it is marked changed by hand, which the file's next
   * apply reports as drift. A limit already changed by hand keeps that mark.
   *
   * @return true if it was created
   */
  public CompletableFuture<Boolean> set(LimitSpec asked, String who, boolean force) {
    String resource = asked.resource();
    return current(resource).thenCompose(before -> {
      LimitOwner owner = before == null ? null : before.owner();
      if (owner != null && !owner.overridden()) {
        if (!force) {
          throw refused(resource, owner, "set");
        }
        owner = owner.overriddenByHand();
      }
      LimitSpec spec = asked.withOwner(owner);
      return engine.setLimit(spec).thenCompose(created -> recorded(resource, who, before, engine.normalized(spec))
          .thenApply(x -> created));
    });
  }

  /** Deletes a limit by hand ({@code limit delete}): refused as {@link #set} refuses. */
  public CompletableFuture<Void> delete(String resource, String who, boolean force) {
    return current(resource).thenCompose(before -> {
      if (before != null && before.owner() != null && !before.owner().overridden() && !force) {
        throw refused(resource, before.owner(), "delete");
      }
      return engine.deleteLimit(resource).thenCompose(x -> recorded(resource, who, before, null));
    });
  }

  /** The limit of a checked name as stored, or null: what a change by hand is checked against. */
  private CompletableFuture<LimitSpec> current(String resource) {
    try {
      Validation.resource(resource);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    return engine.getLimit(resource).thenApply(had -> had.orElse(null));
  }

  /**
   * A report from a worker ({@code Report} over gRPC, {@code POST .../report} over HTTP): for a
   * limit that learns from the provider's headers, a change of its rates gets the audit line and
   * the history entry of any other change, by "learned from PROVIDER headers".
   *
   * @return how long the resource is now paused for, as {@link Engine#report} answers
   */
  public CompletableFuture<Long> report(String resource, boolean throttled, long retryAfterNanos,
      java.util.Map<String, Long> remaining, java.util.Map<String, Long> limits, long wallMillis) {
    return engine.reportLearning(resource, throttled, retryAfterNanos, remaining, limits, wallMillis)
        .thenCompose(l -> l.after() == null
            ? CompletableFuture.completedFuture(l.paused())
            : recorded(resource, "learned from " + l.after().learn().provider() + " headers", l.before(),
                engine.normalized(l.after())).thenApply(x -> l.paused()));
  }

  /** The last {@code n} changes of {@code resource}, newest first. */
  public CompletableFuture<List<LimitHistory.Entry>> history(String resource, int n) {
    try {
      Validation.resource(resource);
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    if (n < 1 || n > LimitHistory.PER_RESOURCE) {
      return CompletableFuture.failedFuture(new EngineException(EngineException.Reason.INVALID, "asked for " + n + " changes: ask for 1 to "
          + LimitHistory.PER_RESOURCE + " (that many are kept per resource)"));
    }
    CompletableFuture<List<LimitHistory.Entry>> read;
    try {
      read = history.recent(resource, n);
    } catch (RuntimeException e) {
      read = CompletableFuture.failedFuture(e);
    }
    return read.exceptionally(e -> {
      Throwable cause = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
      if (cause instanceof EngineException ee) {
        throw ee;
      }
      throw new EngineException(EngineException.Reason.UNAVAILABLE, "the history of '" + resource
          + "' could not be read from the store (" + cause.getMessage() + "): retry");
    });
  }

  /** Writes one change of an apply ({@link LimitsApply}), then logs and keeps it. */
  CompletableFuture<Void> applied(LimitsApply.Change c, String who) {
    CompletableFuture<?> write = switch (c.kind()) {
      // A template (a pattern) has no owner of its own: the file's apply sets and prunes it.
      case ADDED, CHANGED, DRIFTED -> Templates.isPattern(c.resource())
          ? engine.setTemplate(c.after().withOwner(null)) : engine.setLimit(c.after());
      case REMOVED -> Templates.isPattern(c.resource()) ? engine.deleteTemplate(c.resource())
          : engine.deleteLimit(c.resource());
      case UNMANAGED -> null;
    };
    return write == null ? CompletableFuture.completedFuture(null)
        : write.thenCompose(x -> recorded(c.resource(), who, c.before(), c.after()));
  }

  /**
   * Logs a change in one line and adds it to the history. A history that cannot be written
   * (the store away a moment) costs a warning, not the change, which is made already.
   */
  CompletableFuture<Void> recorded(String resource, String who, LimitSpec before, LimitSpec after) {
    String action = before == null ? "created" : after == null ? "deleted" : "changed";
    List<String> changes = changes(before, after);
    log.info("limit {} {} by {}{}", resource, action, who, changes.isEmpty() ? "" : ": " + String.join("; ", changes));
    CompletableFuture<Void> kept;
    try {
      kept = history.add(resource, new LimitHistory.Entry(wallMillis.getAsLong(), who, action, changes));
    } catch (RuntimeException e) {
      kept = CompletableFuture.failedFuture(e);
    }
    return kept.exceptionally(e -> {
      log.warn("the change of limit {} by {} is made but not kept in its history: {}", resource, who, e.toString());
      return null;
    });
  }

  /** Each field before → after; a created or deleted limit lists its fields. */
  static List<String> changes(LimitSpec before, LimitSpec after) {
    List<String> out = new ArrayList<>();
    if (before == null || after == null) {
      LimitsApply.fields(before == null ? after : before).forEach((k, v) -> out.add(k + " " + v));
    } else {
      out.addAll(LimitsApply.compare(before, after));
    }
    String was = managedBy(before == null ? null : before.owner());
    String now = managedBy(after == null ? null : after.owner());
    if (after != null && !was.equals(now) && !(before == null && after.owner() == null)) {
      out.add("managed by " + was + " → " + now);
    }
    return out;
  }

  private static String managedBy(LimitOwner o) {
    if (o == null) {
      return "hand";
    }
    return o.overridden() ? "hand (over limits file " + o.file() + ")" : "limits file " + o.file();
  }

  /** The refusal of a change by hand to a limit a file manages: it names the file and the fix. */
  static EngineException refused(String resource, LimitOwner owner, String what) {
    return new EngineException(EngineException.Reason.CONFLICT, "resource '" + resource + "' is managed by "
        + owner.describe() + ": edit " + owner.file() + " and apply it, or pass --force to " + what
        + " it by hand (the file's next apply reports it as drift and puts it back)");
  }
}
