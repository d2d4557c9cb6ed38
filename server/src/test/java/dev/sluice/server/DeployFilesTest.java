package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.SluiceClient;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Keeps deploy/ honest: the files parse, have what their tools need, and every metric the
 * Grafana dashboard and the alert rules query exists in a real coordinator's {@code /metrics}.
 */
class DeployFilesTest {

  private static final Path DEPLOY = Path.of("..", "deploy");
  /** Where every serve flag and its SLUICE_* variable is documented. */
  private static final Path CONFIGURATION = Path.of("..", "docs", "configuration.md");
  private static final Pattern METRIC = Pattern.compile("\\b((?:sluice|jvm|grpc|process)_[a-z0-9_]+)\\b");
  /** Exported by the workers' own registries (the SDK), not by the coordinator. */
  private static final Set<String> CLIENT_SIDE = Set.of("sluice_client_degraded");

  @TempDir Path dataDir;

  private static List<JsonNode> yaml(Path file) throws Exception {
    List<JsonNode> docs = new ArrayList<>();
    try (var it = new YAMLMapper().readerFor(JsonNode.class).readValues(file.toFile())) {
      while (it.hasNext()) {
        JsonNode d = (JsonNode) it.next();
        if (d != null && !d.isNull() && !d.isEmpty()) {
          docs.add(d);
        }
      }
    }
    return docs;
  }

  private static Set<String> exprs() throws Exception {
    Set<String> out = new TreeSet<>();
    JsonNode dash = new ObjectMapper().readTree(DEPLOY.resolve("grafana/sluice-dashboard.json").toFile());
    for (JsonNode panel : dash.get("panels")) {
      for (JsonNode t : panel.get("targets")) {
        out.add(t.get("expr").asText());
      }
    }
    for (JsonNode group : yaml(DEPLOY.resolve("prometheus/sluice-alerts.yml")).get(0).get("groups")) {
      for (JsonNode rule : group.get("rules")) {
        out.add(rule.get("expr").asText());
      }
    }
    return out;
  }

  @Test
  void theGrafanaDashboardImportsAndEveryPanelQueriesPrometheus() throws Exception {
    JsonNode dash = new ObjectMapper().readTree(DEPLOY.resolve("grafana/sluice-dashboard.json").toFile());
    assertThat(dash.get("__inputs").get(0).get("name").asText()).isEqualTo("DS_PROMETHEUS");
    assertThat(dash.get("uid").asText()).isNotBlank();
    Set<Integer> ids = new TreeSet<>();
    for (JsonNode panel : dash.get("panels")) {
      assertThat(ids.add(panel.get("id").asInt())).as("panel ids are unique").isTrue();
      assertThat(panel.get("title").asText()).isNotBlank();
      assertThat(panel.get("gridPos").get("w").asInt()).isBetween(1, 24);
      assertThat(panel.get("targets")).isNotEmpty();
      for (JsonNode t : panel.get("targets")) {
        assertThat(t.get("expr").asText()).isNotBlank();
        assertThat(t.get("datasource").get("uid").asText()).isEqualTo("${DS_PROMETHEUS}");
      }
    }
    assertThat(dash.get("panels").toString()).contains("sluice_tokens_used_total", "sluice_waiting",
        "sluice_acquire_wait_seconds_bucket", "sluice_permits_in_flight", "sluice_resource_paused");
  }

  @Test
  void everyAlertRuleHasAnExpressionASeverityAndWordsForTheOnCall() throws Exception {
    List<String> names = new ArrayList<>();
    for (JsonNode group : yaml(DEPLOY.resolve("prometheus/sluice-alerts.yml")).get(0).get("groups")) {
      for (JsonNode rule : group.get("rules")) {
        names.add(rule.get("alert").asText());
        assertThat(rule.get("expr").asText()).isNotBlank();
        assertThat(rule.get("labels").get("severity").asText()).isIn("info", "warning", "critical");
        assertThat(rule.get("annotations").get("summary").asText()).isNotBlank();
        assertThat(rule.get("annotations").get("description").asText()).isNotBlank();
      }
    }
    assertThat(names).contains("SluiceSustainedWaiting", "SluiceClientsDegraded", "SluiceUpstreamThrottling");
  }

  @Test
  void theKubernetesManifestRunsThreeNodesOnRedisWithTheHttpProbes() throws Exception {
    List<JsonNode> docs = yaml(DEPLOY.resolve("kubernetes/sluice.yaml"));
    JsonNode sluice = docs.stream().filter(d -> d.get("kind").asText().equals("StatefulSet")
        && d.get("metadata").get("name").asText().equals("sluice")).findFirst().orElseThrow();
    assertThat(sluice.get("spec").get("replicas").asInt()).isEqualTo(3);
    JsonNode c = sluice.get("spec").get("template").get("spec").get("containers").get(0);
    assertThat(c.get("readinessProbe").get("httpGet").get("path").asText()).isEqualTo("/readyz");
    assertThat(c.get("livenessProbe").get("httpGet").get("path").asText()).isEqualTo("/healthz");
    List<String> env = new ArrayList<>();
    String store = null;
    for (JsonNode e : c.get("env")) {
      env.add(e.get("name").asText());
      if (e.get("name").asText().equals("SLUICE_STORE")) {
        store = e.get("value").asText();
      }
    }
    assertThat(store).startsWith("redis://sluice-redis:");
    // The limits file comes from a ConfigMap mounted where SLUICE_LIMITS_FILE points, and is a
    // document the coordinator applies.
    String limitsFile = null;
    for (JsonNode e : c.get("env")) {
      if (e.get("name").asText().equals("SLUICE_LIMITS_FILE")) {
        limitsFile = e.get("value").asText();
      }
    }
    assertThat(limitsFile).isNotNull();
    String mountedAt = limitsFile.substring(0, limitsFile.lastIndexOf('/'));
    JsonNode mount = null;
    for (JsonNode m : c.get("volumeMounts")) {
      if (m.get("mountPath").asText().equals(mountedAt)) {
        mount = m;
      }
    }
    assertThat(mount).as("a volume mounted at %s", mountedAt).isNotNull();
    String volume = mount.get("name").asText();
    String configMap = null;
    for (JsonNode v : sluice.get("spec").get("template").get("spec").get("volumes")) {
      if (v.get("name").asText().equals(volume)) {
        configMap = v.get("configMap").get("name").asText();
      }
    }
    String map = configMap;
    JsonNode limitsMap = docs.stream().filter(d -> d.get("kind").asText().equals("ConfigMap")
        && d.get("metadata").get("name").asText().equals(map)).findFirst().orElseThrow();
    String text = limitsMap.get("data").get(limitsFile.substring(limitsFile.lastIndexOf('/') + 1)).asText();
    assertThat(dev.sluice.server.limits.LimitsDocument.parse(text, "the ConfigMap").limits()).containsKey("openai");
    assertThat(docs).anySatisfy(d -> {
      assertThat(d.get("kind").asText()).isEqualTo("Service");
      assertThat(d.get("metadata").get("name").asText()).isEqualTo("sluice-redis");
    });
    assertThat(docs).anySatisfy(d -> {
      assertThat(d.get("kind").asText()).isEqualTo("Service");
      assertThat(d.get("spec").path("clusterIP").asText()).isEqualTo("None"); // SDKs see every node
    });
    assertThat(docs).anySatisfy(d -> assertThat(d.get("kind").asText()).isEqualTo("PodDisruptionBudget"));
    String configuration = Files.readString(CONFIGURATION);
    for (String name : env) {
      if (name.startsWith("SLUICE_")) {
        assertThat(configuration).as("%s is a documented serve setting (%s)", name, CONFIGURATION)
            .contains("`" + name + "`");
      }
    }
  }

  @Test
  void theSystemdUnitRunsServeWithAnEnvironmentFileOfRealSettings() throws Exception {
    String unit = Files.readString(DEPLOY.resolve("systemd/sluice.service"));
    assertThat(unit).contains("ExecStart=/usr/bin/java -XX:+ExitOnOutOfMemoryError $JAVA_OPTS -jar"
        + " /opt/sluice/sluice.jar serve",
        "EnvironmentFile=/etc/sluice/sluice.env", "StateDirectory=sluice", "Restart=on-failure", "[Install]");
    String configuration = Files.readString(CONFIGURATION);
    Matcher m = Pattern.compile("(?m)^#?(SLUICE_[A-Z_]+)=").matcher(Files.readString(DEPLOY.resolve("systemd/sluice.env")));
    int seen = 0;
    while (m.find()) {
      seen++;
      assertThat(configuration).as("%s is a documented serve setting (%s)", m.group(1), CONFIGURATION)
          .contains("`" + m.group(1) + "`");
    }
    assertThat(seen).isGreaterThan(5);
  }

  /** Issue 26: out of memory, the process must exit (to be restarted), not linger answering nothing. */
  @Test
  void everyWayToRunTheServerExitsOnOutOfMemory() throws Exception {
    String flag = "-XX:+ExitOnOutOfMemoryError";
    assertThat(Files.readString(DEPLOY.resolve("systemd/sluice.service"))).contains("ExecStart=/usr/bin/java " + flag);
    assertThat(Files.readString(DEPLOY.resolve("kubernetes/Dockerfile"))).contains("ENTRYPOINT [\"java\", \"" + flag + "\"");
    assertThat(Files.readString(Path.of("..", "bin", "sluice"))).contains("exec \"$JAVA\" " + flag);
    JsonNode sluice = yaml(DEPLOY.resolve("kubernetes/sluice.yaml")).stream().filter(d -> d.get("kind").asText()
        .equals("StatefulSet") && d.get("metadata").get("name").asText().equals("sluice")).findFirst().orElseThrow();
    String javaOpts = null;
    for (JsonNode e : sluice.get("spec").get("template").get("spec").get("containers").get(0).get("env")) {
      if (e.get("name").asText().equals("JAVA_TOOL_OPTIONS")) {
        javaOpts = e.get("value").asText();
      }
    }
    assertThat(javaOpts).contains(flag);
  }

  private static Set<String> missing(SluiceServer server, Set<String> wanted) throws Exception {
    String scrape = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
        URI.create("http://127.0.0.1:" + server.httpPort() + "/metrics")).build(),
        HttpResponse.BodyHandlers.ofString()).body();
    Set<String> missing = new TreeSet<>(wanted);
    for (String line : scrape.split("\n")) {
      if (!line.startsWith("#") && !line.isBlank()) {
        missing.remove(line.split("[{ ]", 2)[0]);
      }
    }
    return missing;
  }

  @Test
  void everyMetricTheDashboardAndAlertsQueryIsExportedByARealCoordinator() throws Exception {
    Set<String> wanted = new TreeSet<>();
    for (String e : exprs()) {
      Matcher m = METRIC.matcher(e);
      while (m.find()) {
        wanted.add(m.group(1));
      }
    }
    wanted.removeAll(CLIENT_SIDE);
    assertThat(wanted).contains("sluice_acquire_granted_total", "sluice_waiting");

    try (SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
            .shutdownGrace(Duration.ZERO).build().start();
        SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.port()).build()) {
      sync(server.engine()).setLimit(new LimitSpec("r", List.of(new RateSpec("requests", 1000, Duration.ofSeconds(1), 1000)),
          1, 10, Duration.ofSeconds(30)));
      // One of each outcome, so every counter family exists.
      var held = client.acquire("r");
      try {
        client.tryAcquire("r", Load.requests(1), Duration.ofMillis(20));
        try {
          client.acquire("r", Load.of("images", 1), AcquireOptions.builder().timeout(Duration.ofSeconds(1)).build());
        } catch (RuntimeException expected) {
          // invalid: counted as rejected{reason="invalid"}
        }
        client.reportThrottled("r", Duration.ofMillis(10), java.util.Map.of());
      } finally {
        held.close();
      }
      // A batch buffer, so the buffer and batch families exist (one buffer's series each).
      HttpResponse<String> created = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(
          "http://127.0.0.1:" + server.httpPort() + "/v1/buffers")).POST(HttpRequest.BodyPublishers.ofString(
          "{\"name\": \"nightly\", \"url\": \"http://127.0.0.1:9/v1\", \"rate\": {\"amount\": 1},"
              + " \"delivery\": \"openai-batch\", \"endpoint\": \"/v1/chat/completions\"}")).build(),
          HttpResponse.BodyHandlers.ofString());
      assertThat(created.statusCode()).as(created.body()).isBetween(200, 202);
      // The gauges appear with the sampler's first reading (once a second).
      await().atMost(Duration.ofSeconds(10)).untilAsserted(() ->
          assertThat(missing(server, wanted)).as("metrics queried by deploy/ but not exported").isEmpty());
    }
  }
}
