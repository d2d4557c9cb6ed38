package dev.sluice.server.limits;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLGenerator;
import dev.sluice.server.engine.Durations;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.Templates;
import dev.sluice.server.engine.Validation;
import dev.sluice.server.http.LimitJson;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.yaml.snakeyaml.LoaderOptions;

/**
 * A limits file: the limits a coordinator should have, as code. YAML (so JSON too):
 *
 * <pre>
 * version: 1
 * resources:
 *   openai:
 *     rates:
 *       - {dimension: requests, amount: 500, period: 1m}
 *       - {dimension: tokens, amount: 200000, period: 1m}
 *     concurrency: 50
 *     lease: 30s
 * pools:
 *   openai-any: [openai-a, openai-b]
 * templates:
 *   "customer:*":
 *     rates:
 *       - {dimension: requests, amount: 60, period: 1m}
 * </pre>
 *
 * A template (a glob, see {@link Templates}) takes a resource's body; it gives every resource
 * it matches without a limit of its own a bucket of its own. Templates sit in {@link #limits()}
 * beside the resources, under their patterns (which no resource name can be).
 *
 * Each resource takes what {@code POST /v1/resources/{name}/limit} takes ({@link LimitJson}), so
 * the file, the HTTP API and {@link #export} share one shape. A refusal names the line and column
 * of the value it is about ({@link LimitsFileException}).
 */
public final class LimitsDocument {

  /** The largest document read: a file of 100 000 resources is about 10 MB. */
  public static final int MAX_BYTES = 16 * 1024 * 1024;

  private static final ObjectMapper YAML = new ObjectMapper(yamlFactory());
  private static final Pattern FIELD_PATH = Pattern.compile("^([A-Za-z][\\w]*(?:\\[\\d+])?(?:\\.[\\w:-]+(?:\\[\\d+])?)*)");
  private static final Pattern UNKNOWN_FIELD = Pattern.compile("^unknown field '([^']*)'");
  private static final Pattern INDEX = Pattern.compile("\\[(\\d+)]");

  private final Map<String, LimitSpec> limits;
  private final String sha256;

  private LimitsDocument(Map<String, LimitSpec> limits, String sha256) {
    this.limits = limits;
    this.sha256 = sha256;
  }

  /**
   * The limits the document names, resources first, then pools, then templates (by pattern),
   * each in file order.
   */
  public Map<String, LimitSpec> limits() {
    return limits;
  }

  /** The first 12 hex digits of the document's SHA-256: which version of a file was applied. */
  public String hash() {
    return sha256;
  }

  private static YAMLFactory yamlFactory() {
    LoaderOptions loader = new LoaderOptions();
    // Anchors and aliases are for humans; a handful is plenty and a bomb of them is refused.
    loader.setMaxAliasesForCollections(20);
    loader.setAllowDuplicateKeys(false);
    loader.setCodePointLimit(MAX_BYTES);
    YAMLFactory f = YAMLFactory.builder()
        .loaderOptions(loader)
        .disable(YAMLGenerator.Feature.WRITE_DOC_START_MARKER)
        .enable(YAMLGenerator.Feature.MINIMIZE_QUOTES)
        .enable(YAMLGenerator.Feature.INDENT_ARRAYS_WITH_INDICATOR)
        .build();
    f.setStreamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(32).build());
    f.enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);
    return f;
  }

  /**
   * Reads a limits document.
   *
   * @param source what to call it in messages (a file name, "the body")
   * @throws LimitsFileException naming the line and column of the first problem
   */
  public static LimitsDocument parse(String text, String source) {
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    if (bytes.length > MAX_BYTES) {
      throw new LimitsFileException(source, 1, 1, "the document is " + bytes.length + " bytes, over the "
          + MAX_BYTES + " a limits file may have: split it, or use templates for many alike resources");
    }
    Map<String, JsonLocation> where = new HashMap<>();
    JsonNode root;
    try {
      locate(text, where);
      root = YAML.readTree(text);
    } catch (JsonProcessingException e) {
      JsonLocation l = e.getLocation();
      throw new LimitsFileException(source, l == null ? 1 : l.getLineNr(), l == null ? 1 : l.getColumnNr(),
          "not a valid YAML document: " + firstLine(e.getOriginalMessage()));
    } catch (IOException | RuntimeException e) {
      // SnakeYAML refuses alias bombs and over-long documents with its own unchecked exceptions.
      throw new LimitsFileException(source, 1, 1, "not a valid YAML document: " + firstLine(e.getMessage()));
    }
    Locator at = new Locator(source, where);
    if (root == null || root.isNull() || root.isMissingNode()) {
      throw at.error("", "the document is empty: give at least `resources:` with one resource, such as"
          + " resources: {openai: {rates: [{dimension: requests, amount: 500, period: 1m}]}}");
    }
    if (!root.isObject()) {
      throw at.error("", "the document must be a mapping with `resources:` (and `pools:`), not " + kind(root));
    }
    for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
      String f = it.next();
      if (!List.of("version", "resources", "pools", "templates").contains(f)) {
        throw at.error("/" + escape(f), "unknown key '" + f + "': a limits file takes version, resources, pools"
            + " and templates");
      }
    }
    JsonNode version = root.get("version");
    if (version != null && !(version.isIntegralNumber() && version.asInt() == 1)) {
      throw at.error("/version", "version " + version + " is not one this coordinator reads: use 1");
    }
    Map<String, LimitSpec> out = new LinkedHashMap<>();
    JsonNode resources = root.get("resources");
    if (resources != null && !resources.isNull()) {
      if (!resources.isObject()) {
        throw at.error("/resources", "resources must be a mapping of resource name to its limit, not " + kind(resources));
      }
      for (Iterator<Map.Entry<String, JsonNode>> it = resources.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        String pointer = "/resources/" + escape(e.getKey());
        String name = name(at, pointer, e.getKey());
        out.put(name, body(at, pointer, "resource", name, e.getValue()));
      }
    }
    JsonNode pools = root.get("pools");
    if (pools != null && !pools.isNull()) {
      if (!pools.isObject()) {
        throw at.error("/pools", "pools must be a mapping of pool name to its members, such as"
            + " pools: {openai-any: [openai-a, openai-b]}, not " + kind(pools));
      }
      for (Iterator<Map.Entry<String, JsonNode>> it = pools.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        String pointer = "/pools/" + escape(e.getKey());
        String name = name(at, pointer, e.getKey());
        if (out.containsKey(name)) {
          throw at.error(pointer, "'" + name + "' is both a resource and a pool: a pool has no limit of its own;"
              + " rename one of them");
        }
        JsonNode members = e.getValue().isObject() ? e.getValue().get("members") : e.getValue();
        if (e.getValue().isObject()) {
          for (Iterator<String> f = e.getValue().fieldNames(); f.hasNext(); ) {
            String k = f.next();
            if (!k.equals("members")) {
              throw at.error(pointer + "/" + escape(k), "unknown key '" + k + "' in pool '" + name
                  + "': a pool takes only its members");
            }
          }
        }
        if (members == null || !members.isArray() || members.isEmpty()) {
          throw at.error(pointer, "pool '" + name + "' needs a list of member resources, such as [openai-a,"
              + " openai-b]");
        }
        List<String> names = new ArrayList<>();
        for (int i = 0; i < members.size(); i++) {
          String mp = pointer + (e.getValue().isObject() ? "/members/" : "/") + i;
          if (!members.get(i).isTextual()) {
            throw at.error(mp, "member " + members.get(i) + " of pool '" + name + "' is not a resource name");
          }
          names.add(name(at, mp, members.get(i).asText()));
        }
        LimitSpec pool = LimitSpec.pool(name, names);
        try {
          Validation.limit(pool, 1, java.time.Duration.ofSeconds(30));
        } catch (RuntimeException ex) {
          throw at.error(pointer, "pool '" + name + "': " + ex.getMessage());
        }
        out.put(name, pool);
      }
    }
    JsonNode templates = root.get("templates");
    if (templates != null && !templates.isNull()) {
      if (!templates.isObject()) {
        throw at.error("/templates", "templates must be a mapping of pattern to its limit, such as templates:"
            + " {\"customer:*\": {rates: [{dimension: requests, amount: 60, period: 1m}]}}, not " + kind(templates));
      }
      if (templates.size() > Templates.MAX_TEMPLATES) {
        throw at.error("/templates", templates.size() + " templates: a coordinator holds at most "
            + Templates.MAX_TEMPLATES + "; merge alike ones into a broader pattern");
      }
      for (Iterator<Map.Entry<String, JsonNode>> it = templates.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        String pointer = "/templates/" + escape(e.getKey());
        try {
          Templates.pattern(e.getKey());
        } catch (RuntimeException ex) {
          throw at.error(pointer, ex.getMessage());
        }
        out.put(e.getKey(), body(at, pointer, "template", e.getKey(), e.getValue()));
      }
    }
    return new LimitsDocument(java.util.Collections.unmodifiableMap(out), sha256(bytes));
  }

  /** A resource's or a template's limit, checked; a refusal names the field's line. */
  private static LimitSpec body(Locator at, String pointer, String what, String name, JsonNode body) {
    if (!body.isObject()) {
      throw at.error(pointer, what + " '" + name + "' must be a mapping such as {rates: [{dimension: requests,"
          + " amount: 500, period: 1m}]}, not " + kind(body));
    }
    try {
      LimitSpec spec = LimitJson.parse(name, body);
      // Range checks (a burst above the quota, floors over 100 %) with the engine's defaults:
      // what is stored is checked again by the store itself.
      if (what.equals("template")) {
        Templates.spec(spec, 1, java.time.Duration.ofSeconds(30));
      } else {
        Validation.limit(spec, 1, java.time.Duration.ofSeconds(30));
      }
      return spec;
    } catch (RuntimeException ex) {
      // The HTTP API's words for where a field sits ("in the body") do not fit a file.
      String detail = String.valueOf(ex.getMessage()).replace(" in the body", "");
      throw at.fieldError(pointer, what + " '" + name + "': " + detail, detail);
    }
  }

  private static String name(Locator at, String pointer, String name) {
    try {
      return Validation.resource(name);
    } catch (RuntimeException e) {
      throw at.error(pointer, e.getMessage());
    }
  }

  /**
   * Limits as a document {@link #parse} reads back to the same limits: durations in the largest
   * exact unit, every value the store holds written out (so apply after export changes nothing).
   */
  public static String export(List<LimitSpec> limits) {
    try {
      return YAML.writeValueAsString(tree(limits));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("writing limits as YAML failed", e);
    }
  }

  /** {@link #export}'s document as a tree, for those who want it as JSON. */
  public static ObjectNode tree(List<LimitSpec> limits) {
    ObjectNode root = YAML.createObjectNode();
    root.put("version", 1);
    ObjectNode resources = root.putObject("resources");
    ObjectNode pools = YAML.createObjectNode();
    ObjectNode templates = YAML.createObjectNode();
    for (LimitSpec l : limits) {
      if (l.isPool()) {
        l.members().forEach(pools.putArray(l.resource())::add);
        continue;
      }
      ObjectNode o = (Templates.isPattern(l.resource()) ? templates : resources).putObject(l.resource());
      if (!l.rates().isEmpty()) {
        rates(o.putArray("rates"), l.rates());
      }
      if (l.concurrency() > 0) {
        o.put("concurrency", l.concurrency());
      }
      if (!l.holds().isEmpty()) {
        l.holds().forEach(o.putObject("holds")::put);
      }
      o.put("maxWaiting", l.maxWaiting());
      o.put("lease", Durations.format(l.leaseTtl()));
      o.put("jitter", Durations.format(l.jitter()));
      if (!l.tenants().weights().isEmpty()) {
        ObjectNode s = o.putObject("shares");
        l.tenants().weights().forEach(s::put);
      }
      if (!l.tenants().floors().isEmpty()) {
        ObjectNode f = o.putObject("floors");
        l.tenants().floors().forEach(f::put);
      }
      if (!l.tenants().caps().isEmpty()) {
        ObjectNode c = o.putObject("caps");
        l.tenants().caps().forEach((tenant, rates) -> rates(c.putArray(tenant), rates));
      }
      if (l.learn() != null) {
        ObjectNode learn = o.putObject("learn");
        learn.put("provider", l.learn().provider());
        if (!l.learn().ceilings().isEmpty()) {
          ObjectNode c = learn.putObject("ceilingsPerMinute");
          for (RateSpec r : l.learn().ceilings()) {
            c.put(r.name(), Math.round((double) r.amount() * 60e9 / r.period().toNanos()));
          }
        }
      }
    }
    if (!pools.isEmpty()) {
      root.set("pools", pools);
    }
    if (!templates.isEmpty()) {
      root.set("templates", templates);
    }
    return root;
  }

  private static void rates(ArrayNode out, List<RateSpec> rates) {
    for (RateSpec r : rates) {
      ObjectNode x = out.addObject();
      x.put("dimension", r.name());
      x.put("amount", r.amount());
      x.put("period", Durations.format(r.period()));
      x.put("burst", r.burst());
    }
  }

  /** Records where each value starts, by JSON pointer, for the messages. */
  private static void locate(String text, Map<String, JsonLocation> where) throws IOException {
    try (JsonParser p = YAML.getFactory().createParser(text)) {
      JsonToken t;
      while ((t = p.nextToken()) != null) {
        if (t == JsonToken.END_OBJECT || t == JsonToken.END_ARRAY) {
          continue;
        }
        // A key's own place comes first (its value's is further along the line): a message about
        // a resource, a field or an unknown key points at the key.
        String pointer = p.getParsingContext().pathAsPointer().toString();
        if (t == JsonToken.START_OBJECT || t == JsonToken.START_ARRAY) {
          pointer = p.getParsingContext().getParent() == null ? ""
              : p.getParsingContext().getParent().pathAsPointer().toString();
        }
        where.putIfAbsent(pointer, p.currentTokenLocation());
      }
    }
  }

  /** SnakeYAML's messages quote the line with a caret below it: the place is given apart. */
  private static String firstLine(String message) {
    String m = String.valueOf(message).strip();
    int nl = m.indexOf('\n');
    return nl < 0 ? m : m.substring(0, nl).strip();
  }

  private static String escape(String key) {
    return key.replace("~", "~0").replace("/", "~1");
  }

  private static String kind(JsonNode n) {
    return n.isArray() ? "a list" : n.isObject() ? "a mapping" : n.isTextual() ? "the text '" + n.asText() + "'"
        : n.toString();
  }

  private static String sha256(byte[] bytes) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes)).substring(0, 12);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("no SHA-256 in this JVM", e);
    }
  }

  /** Pointers to locations, and the errors that name them. */
  private record Locator(String source, Map<String, JsonLocation> where) {

    LimitsFileException error(String pointer, String message) {
      String p = pointer;
      JsonLocation l = where.get(p);
      while (l == null && !p.isEmpty()) {
        p = p.substring(0, p.lastIndexOf('/'));
        l = where.get(p);
      }
      return new LimitsFileException(source, l == null ? 1 : l.getLineNr(), l == null ? 1 : l.getColumnNr(),
          message);
    }

    /**
     * An error about a resource's body: the field its message starts with ({@code
     * rates[0].amount}) locates it more closely than the resource.
     */
    LimitsFileException fieldError(String resourcePointer, String message, String detail) {
      Matcher unknown = UNKNOWN_FIELD.matcher(detail == null ? "" : detail);
      if (unknown.find()) {
        return error(resourcePointer + "/" + escape(unknown.group(1)), message);
      }
      Matcher m = FIELD_PATH.matcher(detail == null ? "" : detail);
      if (m.find()) {
        String field = INDEX.matcher(m.group(1)).replaceAll(".$1").replace('.', '/');
        return error(resourcePointer + "/" + field, message);
      }
      return error(resourcePointer, message);
    }
  }
}
