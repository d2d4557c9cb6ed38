package dev.sluice.server.limits;

import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LimitOwner;
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
      UNMANAGED,
      /** Managed by the document's file, changed by hand since (forced): put back. */
      DRIFTED
    }

    @Override
    public String toString() {
      String sign = switch (kind) {
        case ADDED -> "+ ";
        case CHANGED -> "~ ";
        case REMOVED -> "- ";
        case UNMANAGED -> "? ";
        case DRIFTED -> "! ";
      };
      return sign + resource + (details.isEmpty() ? "" : ": " + String.join("; ", details));
    }
  }

  /** What a plan says of a limit changed by hand since its file set it. */
  public static final String DRIFTED = "drifted: changed by hand since the file was applied";

  /** The changes that would make the store's limits match {@code doc}, by resource name, owners left aside. */
  public static CompletableFuture<List<Change>> plan(Engine engine, LimitsDocument doc, boolean prune) {
    return plan(engine, doc, prune, null, false);
  }

  /**
   * The changes that would make the store's limits match {@code doc}, applied as the file
   * {@code source} (its name without directories: the same file applied from the CLI and
   * by {@code serve --limits-file} is one owner). Each limit it sets is marked managed by it; a
   * limit that already has the document's values keeps its owner unless {@code force}. A limit
   * another file manages that the document would change is refused (CONFLICT) unless {@code
   * force}; a limit changed by hand since this file set it is {@link Change.Kind#DRIFTED};
   * prune leaves another file's limits unless forced.
   *
   * @param source the file's name, or null to leave owners aside
   */
  public static CompletableFuture<List<Change>> plan(
      Engine engine, LimitsDocument doc, boolean prune, String source, boolean force) {
    LimitOwner owner = source == null ? null : new LimitOwner(ownerName(source), doc.hash(), false);
    return current(engine).thenApply(current -> diff(engine, current, doc, prune, owner, force));
  }

  /** What the store holds as a document would name it: its limits, then its templates. */
  public static CompletableFuture<List<LimitSpec>> current(Engine engine) {
    return engine.listLimits("").thenCombine(engine.listTemplates(), (limits, templates) -> {
      List<LimitSpec> all = new ArrayList<>(limits);
      all.addAll(templates);
      return all;
    });
  }

  /**
   * The owner name of a file: its name without the directories ("limits.yaml"), control
   * characters shown as {@code ?} and cut to 120 characters (a caller names it: it goes into
   * logs and the store).
   */
  public static String ownerName(String source) {
    String s = source.replace('\\', '/');
    String name = s.substring(s.lastIndexOf('/') + 1);
    name = (name.isEmpty() ? s : name).replaceAll("\\p{Cntrl}", "?");
    return name.length() > 120 ? name.substring(0, 120) : name;
  }

  static List<Change> diff(Engine engine, List<LimitSpec> current, LimitsDocument doc, boolean prune) {
    return diff(engine, current, doc, prune, null, false);
  }

  static List<Change> diff(
      Engine engine, List<LimitSpec> current, LimitsDocument doc, boolean prune, LimitOwner owner, boolean force) {
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
      if (owner == null) {
        want = want.withOwner(had == null ? null : had.owner());
      } else {
        want = want.withOwner(owner);
      }
      if (had == null) {
        out.add(new Change(Change.Kind.ADDED, want.resource(), describe(want), null, want));
        continue;
      }
      List<String> changed = new ArrayList<>(compare(had, want));
      LimitOwner was = had.owner();
      Change.Kind kind = Change.Kind.CHANGED;
      // A file takes over the limits it sets. One that already has the file's values is left to
      // its owner unless forced: export, then apply, changes nothing.
      if (owner != null) {
        if (was == null) {
          if (!changed.isEmpty() || force) {
            changed.add("managed by hand → limits file " + owner.file());
          }
        } else if (was.overridden()) {
          kind = Change.Kind.DRIFTED;
          changed.add(0, DRIFTED);
        } else if (!was.file().equals(owner.file())) {
          if (!changed.isEmpty() && !force) {
            throw otherFile(want.resource(), was, owner);
          }
          if (force) {
            changed.add("managed by limits file " + was.file() + " → limits file " + owner.file());
          }
        }
      }
      if (!changed.isEmpty()) {
        out.add(new Change(kind, want.resource(), changed, had, want));
      }
    }
    for (LimitSpec had : now.values()) {
      if (!doc.limits().containsKey(had.resource())) {
        LimitOwner was = had.owner();
        boolean others = owner != null && was != null && !was.overridden() && !was.file().equals(owner.file());
        if (prune && (!others || force)) {
          out.add(new Change(Change.Kind.REMOVED, had.resource(), List.of(), had, null));
        } else {
          out.add(new Change(Change.Kind.UNMANAGED, had.resource(),
              others ? List.of("managed by " + was.describe() + ": left (--prune --force removes it)") : List.of(), had, null));
        }
      }
    }
    return out;
  }

  /** A limit another file manages, refused without force. */
  private static EngineException otherFile(String resource, LimitOwner was, LimitOwner owner) {
    return new EngineException(EngineException.Reason.CONFLICT, "resource '" + resource + "' is managed by "
        + was.describe() + ", not by " + owner.file() + ": remove it from one of the two files, or pass --force to"
        + " move it to " + owner.file());
  }

  /** {@link #apply(LimitChanges, List, String)} with a history of its own (tests). */
  public static CompletableFuture<List<Change>> apply(Engine engine, List<Change> plan, String who) {
    return apply(new LimitChanges(engine), plan, who);
  }

  /**
   * Applies {@code plan} (from {@link #plan}) through {@code changes}, which logs and keeps one
   * line per change naming {@code who} (a key, a file and its hash, "local"); then one line for
   * the whole.
   *
   * @return the plan, once every change is stored; on a refusal the changes before it stay
   *     applied and the future fails naming how many were
   */
  public static CompletableFuture<List<Change>> apply(LimitChanges changes, List<Change> plan, String who) {
    List<Change> order = new ArrayList<>();
    plan.stream().filter(c -> c.kind() == Change.Kind.REMOVED && c.before().isPool()).forEach(order::add);
    plan.stream().filter(c -> c.after() != null && !c.after().isPool()).forEach(order::add);
    plan.stream().filter(c -> c.after() != null && c.after().isPool()).forEach(order::add);
    plan.stream().filter(c -> c.kind() == Change.Kind.REMOVED && !order.contains(c)).forEach(order::add);
    CompletableFuture<Void> chain = CompletableFuture.completedFuture(null);
    int[] done = {0};
    for (Change c : order) {
      chain = chain.thenCompose(x -> changes.applied(c, who)).thenRun(() -> done[0]++);
    }
    return chain.handle((x, e) -> {
      long count = plan.stream().filter(c -> c.kind() != Change.Kind.UNMANAGED).count();
      if (e != null) {
        Throwable cause = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
        log.warn("limits from {}: {} of {} changes applied, then refused: {}", who, done[0], count,
            cause.getMessage());
        throw new CompletionException(new EngineException(EngineException.Reason.INVALID, done[0] + " of " + count
            + " changes applied, then: " + cause.getMessage()));
      }
      if (count > 0) {
        log.info("limits applied from {}: {}", who, summary(plan));
      }
      return plan;
    });
  }

  /** "2 added, 1 changed, 0 removed, 3 left unmanaged" (the last only when there are some). */
  public static String summary(List<Change> plan) {
    Map<Change.Kind, Integer> n = new TreeMap<>();
    plan.forEach(c -> n.merge(c.kind(), 1, Integer::sum));
    String s = n.getOrDefault(Change.Kind.ADDED, 0) + " added, " + n.getOrDefault(Change.Kind.CHANGED, 0)
        + " changed, " + n.getOrDefault(Change.Kind.REMOVED, 0) + " removed";
    int drifted = n.getOrDefault(Change.Kind.DRIFTED, 0);
    if (drifted > 0) {
      s += ", " + drifted + " drifted (changed by hand, put back)";
    }
    int left = n.getOrDefault(Change.Kind.UNMANAGED, 0);
    return left == 0 ? s : s + ", " + left + " not in the file (left; --prune removes them)";
  }

  /** The fields that differ, each as {@code name: before → after}. */
  public static List<String> compare(LimitSpec had, LimitSpec want) {
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
  public static Map<String, String> fields(LimitSpec l) {
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
    l.holds().forEach((d, cap) -> f.put("holds." + d, Long.toString(cap)));
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
