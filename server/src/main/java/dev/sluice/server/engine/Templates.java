package dev.sluice.server.engine;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The templates an engine holds, as one immutable snapshot: a template is a limit whose name is
 * a glob ({@code customer:*}); every resource that matches it and has no limit of its own gets a
 * bucket of its own with that limit, on first use, freed when idle.
 *
 * <p>Globs: {@code *} matches any run of name characters (none too), {@code ?} exactly one.
 * <b>Most specific wins</b>, decided in this order: more literal (non-wildcard) characters; then
 * fewer {@code *}; then the pattern that sorts first. So for {@code customer:gold:7} the template
 * {@code customer:gold:*} wins over {@code customer:*}, and {@code customer:?} over {@code
 * customer:*} for {@code customer:7}. A resource's own limit always wins over any template.
 *
 * <p>Cost: a name is matched against every template (at most {@link #MAX_TEMPLATES}, each at
 * most {@link #MAX_PATTERN} characters) when its bucket is created or after a template change;
 * engines keep the answer with the live bucket.
 */
public final class Templates {

  /** The most templates an engine holds. */
  public static final int MAX_TEMPLATES = 1_000;

  /** The longest pattern, as the longest resource name. */
  public static final int MAX_PATTERN = 200;

  /**
   * One template.
   *
   * @param spec its limit; {@link LimitSpec#resource()} is the pattern
   * @param createdAt when it was first set (the engine's clock): a name's bucket starts as a
   *     resource's set at that instant would be now (empty then, filling since), so a restart,
   *     which sets it again, cannot hand out a fresh burst
   * @param version changes with every change of the template
   */
  public record Template(LimitSpec spec, long createdAt, String version) {
    public String pattern() {
      return spec.resource();
    }

    /** The limit a name matched by this template gets. */
    public LimitSpec specFor(String resource) {
      LimitSpec s = spec;
      return new LimitSpec(resource, s.rates(), s.concurrency(), s.maxWaiting(), s.leaseTtl(), s.jitter(),
          s.tenants(), null, List.of());
    }
  }

  /** Most literal characters first, then fewest {@code *}, then by text. */
  static final Comparator<String> SPECIFIC_FIRST =
      Comparator.comparingInt((String p) -> -literals(p))
          .thenComparingInt(p -> stars(p))
          .thenComparing(Comparator.naturalOrder());

  static final Templates NONE = new Templates(List.of());

  private final List<Template> bySpecificity;
  private final Map<String, Template> byPattern = new TreeMap<>();

  private Templates(List<Template> templates) {
    List<Template> sorted = new ArrayList<>(templates);
    sorted.sort(Comparator.comparing(Template::pattern, SPECIFIC_FIRST));
    this.bySpecificity = List.copyOf(sorted);
    for (Template t : templates) {
      byPattern.put(t.pattern(), t);
    }
  }

  static Templates of(List<Template> templates) {
    return templates.isEmpty() ? NONE : new Templates(templates);
  }

  /** This snapshot with {@code t} added or replacing the template of its pattern. */
  Templates with(Template t) {
    Map<String, Template> next = new TreeMap<>(byPattern);
    next.put(t.pattern(), t);
    return of(new ArrayList<>(next.values()));
  }

  /** This snapshot without the template of {@code pattern}. */
  Templates without(String pattern) {
    Map<String, Template> next = new TreeMap<>(byPattern);
    next.remove(pattern);
    return of(new ArrayList<>(next.values()));
  }

  /** The template of exactly this pattern, or null. */
  public Template get(String pattern) {
    return byPattern.get(pattern);
  }

  /** Every template, sorted by pattern. */
  public List<Template> all() {
    return List.copyOf(byPattern.values());
  }

  public int size() {
    return byPattern.size();
  }

  public boolean isEmpty() {
    return byPattern.isEmpty();
  }

  /** The most specific template matching {@code resource}, or null. */
  public Template match(String resource) {
    for (Template t : bySpecificity) {
      if (matches(t.pattern(), resource)) {
        return t;
      }
    }
    return null;
  }

  private static int literals(String p) {
    int n = 0;
    for (int i = 0; i < p.length(); i++) {
      if (p.charAt(i) != '*' && p.charAt(i) != '?') {
        n++;
      }
    }
    return n;
  }

  private static int stars(String p) {
    int n = 0;
    for (int i = 0; i < p.length(); i++) {
      if (p.charAt(i) == '*') {
        n++;
      }
    }
    return n;
  }

  /** Whether a name holds a wildcard: then it is a template's pattern, not a resource name. */
  public static boolean isPattern(String name) {
    return name != null && (name.indexOf('*') >= 0 || name.indexOf('?') >= 0);
  }

  /**
   * Glob match: {@code *} any run (also empty), {@code ?} one character. Linear backtracking
   * on the last {@code *} only, so O(pattern × name) at worst.
   */
  public static boolean matches(String pattern, String name) {
    int p = 0;
    int n = 0;
    int star = -1;
    int mark = 0;
    while (n < name.length()) {
      if (p < pattern.length() && (pattern.charAt(p) == '?' || pattern.charAt(p) == name.charAt(n))) {
        p++;
        n++;
      } else if (p < pattern.length() && pattern.charAt(p) == '*') {
        star = p++;
        mark = n;
      } else if (star >= 0) {
        p = star + 1;
        n = ++mark;
      } else {
        return false;
      }
    }
    while (p < pattern.length() && pattern.charAt(p) == '*') {
      p++;
    }
    return p == pattern.length();
  }

  /**
   * Refuses a pattern no template may have, with the fix: empty, too long, characters no
   * resource name has, no wildcard, {@code **}, or a leading wildcard or {@code _}: a template
   * must start with a literal name character other than {@code _}, so no template shadows every
   * name (a mistyped resource must still answer NOT_FOUND) nor the names the server keeps for
   * itself ({@code _other}, under which meters beyond the cap are shared).
   *
   * @throws EngineException (INVALID) naming the problem and the fix
   */
  public static String pattern(String p) {
    if (p == null || p.isEmpty()) {
      throw EngineException.invalid("template pattern is empty: use a glob such as 'customer:*'");
    }
    String shown = Validation.shown(p, 60);
    if (p.length() > MAX_PATTERN) {
      throw EngineException.invalid("template pattern '" + shown + "' is " + p.length()
          + " characters long: use at most " + MAX_PATTERN);
    }
    for (int i = 0; i < p.length(); i++) {
      char c = p.charAt(i);
      boolean ok = c == '*' || c == '?' || c == '.' || c == '_' || c == ':' || c == '/' || c == '-'
          || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      if (!ok) {
        throw EngineException.invalid("template pattern '" + shown + "' has '" + c + "': use resource name"
            + " characters [A-Za-z0-9._:/-] with * (any run) and ? (one character) as wildcards");
      }
    }
    if (!isPattern(p)) {
      throw EngineException.invalid("template pattern '" + shown + "' has no wildcard: a name without"
          + " * or ? is a resource, set its limit with 'limit set " + shown + "', or add * (e.g. '" + shown + ":*')");
    }
    if (p.contains("**")) {
      throw EngineException.invalid("template pattern '" + shown + "' has '**': one * already matches any run,"
          + " use '" + p.replaceAll("\\*+", "*") + "'");
    }
    char first = p.charAt(0);
    if (first == '*' || first == '?' || first == '_') {
      throw EngineException.invalid("template pattern '" + shown + "' starts with '" + first + "': start with a"
          + " literal prefix other than _ (e.g. 'customer:*'), so that it cannot shadow every resource"
          + " or the names the server reserves (_other)");
    }
    return p;
  }

  /**
   * A template's limit, checked and with defaults filled in: a limit's own checks, plus no pool
   * and no learned rates (a name's bucket is the template's, not a limit of its own to rewrite).
   */
  public static LimitSpec spec(LimitSpec in, int defaultMaxWaiting, java.time.Duration defaultLease) {
    String p = pattern(in.resource());
    if (in.isPool()) {
      throw EngineException.invalid("template '" + p + "' lists pool members: a template gives each name a"
          + " bucket of its own; set pools by name");
    }
    if (in.learn() != null) {
      throw EngineException.invalid("template '" + p + "' learns its rates: set a learned limit by name, or give"
          + " the template fixed rates");
    }
    return Validation.limit(in, defaultMaxWaiting, defaultLease, true);
  }

  /** Refuses one template too many. */
  static void checkRoom(Templates current, String pattern) {
    if (current.get(pattern) == null && current.size() >= MAX_TEMPLATES) {
      throw EngineException.invalid("there are already " + MAX_TEMPLATES + " templates: delete unused ones"
          + " ('sluice limit delete PATTERN') or merge them into a broader pattern");
    }
  }
}
