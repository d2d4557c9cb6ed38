package dev.sluice.server.limits;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The limits file: what it reads, and each refusal naming the line and column at fault. */
class LimitsDocumentTest {

  private static final String FILE = """
      version: 1
      resources:
        openai:
          rates:
            - {dimension: requests, amount: 500, period: 1m}
            - {dimension: tokens, amount: 200000, period: 1m, burst: 4000}
          concurrency: 50
          lease: 45s
          shares: {search: 3}
          floors: {search: 0.4}
        openai-b:
          rates: [{dimension: requests, amount: 60, period: 1s}]
      pools:
        openai-any: [openai, openai-b]
      """;

  @Test
  void readsResourcesThenPoolsInFileOrder() {
    LimitsDocument doc = LimitsDocument.parse(FILE, "limits.yaml");
    assertThat(doc.limits().keySet()).containsExactly("openai", "openai-b", "openai-any");
    LimitSpec openai = doc.limits().get("openai");
    assertThat(openai.rates()).containsExactly(
        new RateSpec("requests", 500, Duration.ofMinutes(1), 0),
        new RateSpec("tokens", 200000, Duration.ofMinutes(1), 4000));
    assertThat(openai.concurrency()).isEqualTo(50);
    assertThat(openai.leaseTtl()).isEqualTo(Duration.ofSeconds(45));
    assertThat(openai.tenants().weights()).containsEntry("search", 3.0);
    assertThat(openai.tenants().floors()).containsEntry("search", 0.4);
    assertThat(doc.limits().get("openai-any").members()).containsExactly("openai", "openai-b");
    assertThat(doc.hash()).hasSize(12).isEqualTo(LimitsDocument.parse(FILE, "other.yaml").hash());
    assertThat(LimitsDocument.parse(FILE + "\n# a comment\n", "x").hash()).isNotEqualTo(doc.hash());
  }

  @Test
  void aHeldDimensionIsReadAndExportedAgain() {
    LimitsDocument doc = LimitsDocument.parse("""
        resources:
          batch-queue:
            holds: {enqueued_tokens: 2000000}
            lease: 10m
        """, "limits.yaml");
    LimitSpec q = doc.limits().get("batch-queue");
    assertThat(q.holds()).containsEntry("enqueued_tokens", 2_000_000L);
    LimitSpec stored = dev.sluice.server.engine.Validation.limit(q, 100, Duration.ofSeconds(30));
    assertThat(LimitsDocument.tree(List.of(stored)).at("/resources/batch-queue/holds/enqueued_tokens").asLong())
        .isEqualTo(2_000_000L);
    assertThatThrownBy(() -> LimitsDocument.parse("resources:\n  q:\n    holds: {t: -1}\n", "limits.yaml"))
        .hasMessageContaining("held t=-1 on 'q' is out of range");
  }

  @Test
  void jsonIsYamlToo() {
    LimitsDocument doc = LimitsDocument.parse(
        "{\"resources\": {\"shop\": {\"concurrency\": 4, \"leaseSeconds\": 30}}}", "limits.json");
    assertThat(doc.limits().get("shop").concurrency()).isEqualTo(4);
    assertThat(doc.limits().get("shop").leaseTtl()).isEqualTo(Duration.ofSeconds(30));
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(delimiter = '|', textBlock = """
      negative amount      | resources:\\n  a:\\n    rates:\\n      - {dimension: r, amount: -5, period: 1m}         | 2 | 3  | amount -5 is out of range
      unknown top key      | resource:\\n  a: {concurrency: 1}                                                     | 1 | 1  | unknown key 'resource'
      unknown field        | resources:\\n  a:\\n    concurency: 3                                                 | 3 | 5  | unknown field 'concurency': it takes rates
      no rate, no cap      | resources:\\n  a: {maxWaiting: 10}                                                   | 2 | 3  | has no rate and no concurrency cap
      bad name             | resources:\\n  'a b': {concurrency: 1}                                               | 2 | 3  | resource name 'a b' is invalid
      bad period           | resources:\\n  a:\\n    rates: [{dimension: r, amount: 5, period: 1fortnight}]       | 3 | 39 | '1fortnight' has an unknown unit
      duplicate key        | resources:\\n  a: {concurrency: 1}\\n  a: {concurrency: 2}                            | 3 | 4  | Duplicate field 'a'
      pool and resource    | resources:\\n  a: {concurrency: 1}\\npools:\\n  a: [b]                                 | 4 | 3  | both a resource and a pool
      empty pool           | pools:\\n  p: []                                                                     | 2 | 3  | needs a list of member resources
      lease twice          | resources:\\n  a: {concurrency: 1, lease: 30s, leaseSeconds: 30}                     | 2 | 23 | lease is given twice
      version 2            | version: 2\\nresources: {}                                                            | 1 | 1  | version 2
      not a mapping        | - a\\n- b                                                                           | 1 | 1  | must be a mapping
      syntax               | resources:\\n  a: {concurrency: 1\\n  b: 2                                           | 3 | 4  | not a valid YAML document
      """)
  void eachProblemNamesItsLineAndColumn(String what, String text, int line, int column, String message) {
    String yaml = text.replace("\\n", "\n");
    assertThatThrownBy(() -> LimitsDocument.parse(yaml, "limits.yaml"))
        .isInstanceOf(LimitsFileException.class)
        .hasMessageContaining(message)
        .satisfies(e -> {
          LimitsFileException f = (LimitsFileException) e;
          assertThat(f.source()).isEqualTo("limits.yaml");
          assertThat(f.line()).as("line of " + e.getMessage()).isEqualTo(line);
          assertThat(f.column()).as("column of " + e.getMessage()).isEqualTo(column);
          assertThat(f.getMessage()).startsWith("limits.yaml:" + line + ":" + column + ": ");
        });
  }

  @Test
  void anEmptyDocumentSaysWhatToWrite() {
    assertThatThrownBy(() -> LimitsDocument.parse("", "limits.yaml"))
        .isInstanceOf(LimitsFileException.class).hasMessageContaining("the document is empty");
    assertThatThrownBy(() -> LimitsDocument.parse("# nothing\n", "limits.yaml"))
        .isInstanceOf(LimitsFileException.class).hasMessageContaining("the document is empty");
  }

  /** A billion laughs: aliases that expand to far more than the text, refused before they expand. */
  @Test
  void anAliasBombIsRefused() {
    StringBuilder y = new StringBuilder("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (char c = 'b'; c <= 'j'; c++) {
      char p = (char) (c - 1);
      y.append(c).append(": &").append(c).append(" [*").append(p).append(", *").append(p).append(", *").append(p)
          .append(", *").append(p).append(", *").append(p).append(", *").append(p).append(", *").append(p).append("]\n");
    }
    assertThatThrownBy(() -> LimitsDocument.parse(y.toString(), "bomb.yaml"))
        .isInstanceOf(LimitsFileException.class).hasMessageContaining("bomb.yaml:");
  }

  @Test
  void aDocumentOverTheCapIsRefusedUnread() {
    String big = "resources: {}\n" + "#".repeat(LimitsDocument.MAX_BYTES);
    assertThatThrownBy(() -> LimitsDocument.parse(big, "big.yaml"))
        .isInstanceOf(LimitsFileException.class).hasMessageContaining("over the " + LimitsDocument.MAX_BYTES);
  }

  @Test
  void exportReadsBackToTheSameLimits() {
    List<LimitSpec> limits = List.of(
        new LimitSpec("a", List.of(new RateSpec("requests", 500, Duration.ofMinutes(1), 9),
            new RateSpec("tokens", 7, Duration.ofMillis(1500), 3)), 4, 100, Duration.ofSeconds(45),
            Duration.ofMillis(20)),
        LimitSpec.pool("p", List.of("a")));
    LimitsDocument back = LimitsDocument.parse(LimitsDocument.export(limits), "export");
    assertThat(back.limits().get("a").rates()).isEqualTo(limits.get(0).rates());
    assertThat(back.limits().get("a").leaseTtl()).isEqualTo(Duration.ofSeconds(45));
    assertThat(back.limits().get("a").jitter()).isEqualTo(Duration.ofMillis(20));
    assertThat(back.limits().get("a").maxWaiting()).isEqualTo(100);
    assertThat(back.limits().get("p").members()).containsExactly("a");
  }

  @Test
  void templatesSitBesideResourcesUnderTheirPatternsAndExportBack() {
    LimitsDocument doc = LimitsDocument.parse("""
        resources:
          customer:vip: {concurrency: 9}
        templates:
          "customer:*": {rates: [{dimension: requests, amount: 60, period: 1m, burst: 2}]}
          tenant/?/hooks: {concurrency: 1}
        """, "limits.yaml");
    assertThat(doc.limits().keySet()).containsExactly("customer:vip", "customer:*", "tenant/?/hooks");
    // Exported as a store holds them: defaults filled in.
    String back = LimitsDocument.export(doc.limits().values().stream()
        .map(l -> dev.sluice.server.engine.Templates.isPattern(l.resource())
            ? dev.sluice.server.engine.Templates.spec(l, 10, Duration.ofSeconds(30))
            : dev.sluice.server.engine.Validation.limit(l, 10, Duration.ofSeconds(30)))
        .toList());
    assertThat(back).contains("templates:");
    assertThat(LimitsDocument.parse(back, "export").limits().get("customer:*").rates())
        .isEqualTo(doc.limits().get("customer:*").rates());
  }

  /** The JSON Schema editors and CI check files against names exactly the fields the parser takes. */
  @Test
  void theSchemaNamesTheFieldsTheParserTakes() throws Exception {
    var schema = new com.fasterxml.jackson.databind.ObjectMapper().readTree(
        java.nio.file.Path.of("..", "docs", "limits-file.schema.json").toFile());
    List<String> fields = new java.util.ArrayList<>();
    schema.at("/$defs/limit/properties").fieldNames().forEachRemaining(fields::add);
    assertThat(fields).containsExactlyInAnyOrderElementsOf(dev.sluice.server.http.LimitJson.FIELDS);
    List<String> top = new java.util.ArrayList<>();
    schema.at("/properties").fieldNames().forEachRemaining(top::add);
    assertThat(top).containsExactlyInAnyOrder("version", "resources", "pools", "templates");
    assertThat(schema.at("/additionalProperties").asBoolean(true)).isFalse();
  }
}
