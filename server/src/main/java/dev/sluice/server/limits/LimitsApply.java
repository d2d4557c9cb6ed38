package dev.sluice.server.limits;

import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.Templates;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Makes a store's limits match a {@link LimitsDocument}: what {@code sluice limit apply}, {@code
 * serve --limits-file} and {@code PUT /v1/limits} do. First the plan (the diff against what the
 * store holds, compared as the store would keep them), then the changes in an order the store
 * accepts: resources before the pools over them, pools removed before their members.
 */
public final class LimitsApply {

  private static final Logger log = LoggerFactory.getLogger(LimitsApply.class);

  private LimitsApply() {}

  /** One line of a plan: a resource added, changed (with each field before → after) or removed. */
  public record Change(Kind kind, String resource, List<String> details, LimitSpec before, LimitSpec after) {

    public enum Kind {
      ADDED,
      CHANGED,
      REMOVED,
      /** In the store, not in the document, and left (apply without prune). */
      UNMANAGED
    }

    @Override
    public String toString() {
      String sign = switch (kind) {
        case ADDED -> "+ ";
        case CHANGED -> "~ ";
        case REMOVED -> "- ";
        case UNMANAGED -> "? ";
      };
      return sign + resource + (details.isEmpty() ? "" : ": " + String.join("; ", details));
    }
  }

  /** The changes that would make the store's limits match {@code doc}, by resource name. */
  public static CompletableFuture<List<Change>> plan(Engine engine, LimitsDocument doc, boolean prune) {
    return current(engine).thenApply(current -> diff(engine, current, doc, prune));
  }

  /** What the store holds as a document would name it: its limits, then its templates. */
  public static CompletableFuture<List<LimitSpec>> current(Engine engine) {
    return engine.listLimits("").thenCombine(engine.listTemplates(), (limits, templates) -> {
      List<LimitSpec> all = new ArrayList<>(limits);
      all.addAll(templates);
      return all;
    });
  }

  static List<Change> diff(Engine engine, List<LimitSpec> current, LimitsDocument doc, boolean prune) {
    Map<String, LimitSpec> now = new LinkedHashMap<>();
    current.forEach(l -> now.put(l.resource(), l));
    List<Change> out = new ArrayList<>();
    for (LimitSpec asked : doc.limits().values()) {
      LimitSpec want;
      boolean template = Templates.isPattern(asked.resource());
      try {
        want = template ? engine.normalizedTemplate(asked) : engine.normalized(asked);
      } catch (EngineException e) {
        throw new EngineException(EngineException.Reason.INVALID, (template ? "template '" : "resource '")
            + asked.resource() + "': " + e.getMessage());
      }
      LimitSpec had = now.get(want.resource());
      if (had == null) {
        out.add(new Change(Change.Kind.ADDED, want.resource(), describe(want), null, want));
        continue;
      }
      List<String> changed = compare(had, want);
      if (!changed.isEmpty()) {
        out.add(new Change(Change.Kind.CHANGED, want.resource(), changed, had, want));
      }
    }
    for (LimitSpec had : now.values()) {
      if (!doc.limits().containsKey(had.resource())) {
        out.add(new Change(prune ? Change.Kind.REMOVED : Change.Kind.UNMANAGED, had.resource(), List.of(), had, null));
      }
    }
    return out;
  }

  /**
   * Applies {@code plan} (from {@link #plan}) and logs one line per change and one for the whole,
   * naming {@code who} (a key, a file and its hash, "local").
   *
   * @return the plan, once every change is stored; on a refusal the changes before it stay
   *     applied and the future fails naming how many were
   */
  public static CompletableFuture<List<Change>> apply(Engine engine, List<Change> plan, String who) {
    List<Change> order = new ArrayList<>();
    plan.stream().filter(c -> c.kind() == Change.Kind.REMOVED && c.before().isPool()).forEach(order::add);
    plan.stream().filter(c -> c.after() != null && !c.after().isPool()).forEach(order::add);
    plan.stream().filter(c -> c.after() != null && c.after().isPool()).forEach(order::add);
    plan.stream().filter(c -> c.kind() == Change.Kind.REMOVED && !order.contains(c)).forEach(order::add);
    CompletableFuture<Void> chain = CompletableFuture.completedFuture(null);
    int[] done = {0};
    for (Change c : order) {
      chain = chain.thenCompose(x -> step(engine, c)).thenRun(() -> {
        done[0]++;
        log.info("limit {} {} by {}{}", c.resource(), c.kind().name().toLowerCase(java.util.Locale.ROOT), who,
            c.details().isEmpty() ? "" : ": " + String.join("; ", c.details()));
      });
    }
    return chain.handle((x, e) -> {
      long changes = plan.stream().filter(c -> c.kind() != Change.Kind.UNMANAGED).count();
      if (e != null) {
        Throwable cause = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
        log.warn("limits from {}: {} of {} changes applied, then refused: {}", who, done[0], changes,
            cause.getMessage());
        throw new CompletionException(new EngineException(EngineException.Reason.INVALID, done[0] + " of " + changes
            + " changes applied, then: " + cause.getMessage()));
      }
      if (changes > 0) {
        log.info("limits applied from {}: {}", who, summary(plan));
      }
      return plan;
    });
  }

  private static CompletableFuture<Void> step(Engine engine, Change c) {
    return switch (c.kind()) {
      case ADDED, CHANGED -> (Templates.isPattern(c.resource()) ? engine.setTemplate(c.after())
          : engine.setLimit(c.after())).thenApply(created -> null);
      case REMOVED -> Templates.isPattern(c.resource()) ? engine.deleteTemplate(c.resource())
          : engine.deleteLimit(c.resource());
      case UNMANAGED -> CompletableFuture.completedFuture(null);
    };
  }

  /** "2 added, 1 changed, 0 removed, 3 left unmanaged" (the last only when there are some). */
  public static String summary(List<Change> plan) {
    Map<Change.Kind, Integer> n = new TreeMap<>();
    plan.forEach(c -> n.merge(c.kind(), 1, Integer::sum));
    String s = n.getOrDefault(Change.Kind.ADDED, 0) + " added, " + n.getOrDefault(Change.Kind.CHANGED, 0)
        + " changed, " + n.getOrDefault(Change.Kind.REMOVED, 0) + " removed";
    int left = n.getOrDefault(Change.Kind.UNMANAGED, 0);
    return left == 0 ? s : s + ", " + left + " not in the file (left; --prune removes them)";
  }

  /** The fields that differ, each as {@code name: before → after}. */
  static List<String> compare(LimitSpec had, LimitSpec want) {
    Map<String, String> a = fields(had);
    Map<String, String> b = fields(want);
    if (had.learn() != null && want.learn() != null && had.learn().learnedAtMillis() != 0) {
      // Once learned, a limit's rates are the provider's: the file's rates are where learning
      // started, not drift. Its ceilings and provider still are the file's.
      a.keySet().removeIf(k -> k.startsWith("rates."));
      b.keySet().removeIf(k -> k.startsWith("rates."));
    }
    Set<String> keys = new LinkedHashSet<>(a.keySet());
    keys.addAll(b.keySet());
    List<String> out = new ArrayList<>();
    for (String k : keys) {
      if (!Objects.equals(a.get(k), b.get(k))) {
        out.add(k + " " + (a.get(k) == null ? "(none)" : a.get(k)) + " → " + (b.get(k) == null ? "(none)" : b.get(k)));
      }
    }
    return out;
  }

  private static List<String> describe(LimitSpec l) {
    List<String> out = new ArrayList<>();
    fields(l).forEach((k, v) -> out.add(k + " " + v));
    return out;
  }

  /** A limit as named fields with comparable text: what a diff shows. */
  static Map<String, String> fields(LimitSpec l) {
    Map<String, String> f = new LinkedHashMap<>();
    if (l.isPool()) {
      f.put("members", String.join(",", l.members()));
      return f;
    }
    for (RateSpec r : l.rates()) {
      f.put("rates." + r.name(), rate(r));
    }
    if (l.concurrency() > 0) {
      f.put("concurrency", Long.toString(l.concurrency()));
    }
    f.put("maxWaiting", Integer.toString(l.maxWaiting()));
    f.put("lease", Durations.format(l.leaseTtl()));
    f.put("jitter", Durations.format(l.jitter()));
    l.tenants().weights().forEach((t, w) -> f.put("shares." + t, number(w)));
    l.tenants().floors().forEach((t, w) -> f.put("floors." + t, number(w)));
    l.tenants().caps().forEach((t, rates) -> rates.forEach(r -> f.put("caps." + t + "." + r.name(), rate(r))));
    if (l.learn() != null) {
      StringBuilder s = new StringBuilder(l.learn().provider());
      l.learn().ceilings().forEach(c -> s.append(' ').append(c.name()).append("≤").append(rate(c)));
      f.put("learn", s.toString());
    }
    return f;
  }

  private static String rate(RateSpec r) {
    return r.amount() + "/" + Durations.format(r.period()) + " burst " + r.burst();
  }

  private static String number(double d) {
    return d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString((long) d) : Double.toString(d);
  }
}
