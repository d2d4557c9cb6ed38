package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.cli.SluiceCli;
import dev.sluice.server.SluiceServer;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A non-Java client built from {@code proto/} alone: the TypeScript package in
 * {@code examples/node} (grpc-js + proto-loader) runs its own tests against a real coordinator
 * on a real port, with API keys on. Then the coordinator's counters must agree with what the
 * Node side says it saw: grants, timeouts and aborts, per resource.
 *
 * <p>Needs {@code node} and {@code npm} (18 or later) and the npm registry for {@code npm ci}.
 */
class NodeClientIT {

  private static final Path PACKAGE = Path.of(System.getProperty("sluice.node.dir", "node")).toAbsolutePath();
  private static final String INSTALL_HINT = "install Node.js 18+ and npm (`sudo apt-get install -y nodejs npm`),"
      + " or run `bash .ci/run`, which installs them";

  @TempDir Path dir;

  @Test
  void nodeClientPassesItsTestsAgainstARealCoordinatorAndTheCountersAgree() throws Exception {
    require("node");
    require("npm");
    try (SluiceServer server =
        SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve("sluice-data")).build().start()) {
      String target = "127.0.0.1:" + server.port();
      // The first key may be made while the coordinator is open; from then on every call needs one.
      String admin = cli(target, null, "key", "create", "--role", "admin", "--description", "NodeClientIT");
      String worker = cli(target, admin, "key", "create", "--role", "worker", "--resources", "node.*",
          "--description", "the Node tests");
      for (String line : Files.readAllLines(PACKAGE.resolve("test/limits.txt"))) {
        if (!line.isBlank() && !line.startsWith("#")) {
          List<String> args = new ArrayList<>(List.of("limit", "set"));
          args.addAll(List.of(line.trim().split("\\s+")));
          cli(target, admin, args.toArray(String[]::new));
        }
      }

      assertThat(run(Duration.ofMinutes(5), Map.of(), "npm", "ci", "--no-audit", "--no-fund"))
          .as("npm ci in %s (is the npm registry reachable?)", PACKAGE)
          .isZero();
      Path summary = dir.resolve("node-summary.json");
      assertThat(run(Duration.ofMinutes(2),
              Map.of("SLUICE_TARGET", target, "SLUICE_API_KEY", worker, "SLUICE_SUMMARY", summary.toString()),
              "npm", "test"))
          .as("npm test in %s: see its output above", PACKAGE)
          .isZero();

      JsonNode seen = new ObjectMapper().readTree(summary.toFile());
      JsonNode stats = new ObjectMapper().readTree(cli(target, admin, "stats", "--json"));
      Map<String, List<Long>> coordinator = new TreeMap<>();
      Map<String, List<Long>> node = new TreeMap<>();
      for (JsonNode r : stats.path("resources")) {
        String name = r.path("resource").asText();
        if (name.startsWith("node.")) {
          coordinator.put(name, List.of(r.path("granted").asLong(), r.path("timedOut").asLong(),
              r.path("cancelled").asLong()));
          node.put(name, List.of(seen.path("granted").path(name).asLong(), seen.path("timedOut").path(name).asLong(),
              seen.path("cancelled").path(name).asLong()));
        }
      }
      System.out.println("[NodeClientIT] granted, timed out, cancelled per resource: coordinator " + coordinator
          + ", Node " + node);
      assertThat(node).as("what the Node client saw vs the coordinator's counters").isEqualTo(coordinator);
      assertThat(coordinator.values().stream().mapToLong(c -> c.get(0)).sum()).as("grants").isGreaterThan(20);
      assertThat(coordinator.get("node.never")).as("node.never: no grant, one timeout, one abort")
          .containsExactly(0L, 1L, 1L);
    }
  }

  /** Runs the real CLI in-process against the coordinator; returns what it printed on stdout. */
  private static String cli(String target, String apiKey, String... command) {
    List<String> args = new ArrayList<>(List.of(command));
    args.addAll(List.of("--target", target));
    if (apiKey != null) {
      args.addAll(List.of("--api-key", apiKey));
    }
    var out = new ByteArrayOutputStream();
    var err = new ByteArrayOutputStream();
    int code = SluiceCli.run(new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8), args.toArray(String[]::new));
    assertThat(code).as("sluice %s: %s", command[0], err.toString(StandardCharsets.UTF_8)).isZero();
    return out.toString(StandardCharsets.UTF_8).trim();
  }

  /** Fails with the fix unless {@code tool --version} runs. */
  private static void require(String tool) throws InterruptedException {
    try {
      Process p = new ProcessBuilder(tool, "--version").redirectErrorStream(true).start();
      String version = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
      if (p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0) {
        System.out.println("[NodeClientIT] " + tool + " " + version);
        return;
      }
    } catch (IOException e) {
      // not on the PATH: fail below
    }
    fail(tool + " is needed by NodeClientIT and was not found on the PATH: " + INSTALL_HINT);
  }

  /** Runs a command in the package directory, its output echoed to the test log; returns its exit code. */
  private static int run(Duration timeout, Map<String, String> env, String... command) throws Exception {
    ProcessBuilder pb = new ProcessBuilder(command).directory(PACKAGE.toFile()).redirectErrorStream(true);
    pb.environment().keySet().removeIf(k -> k.startsWith("SLUICE_")); // only what this test sets
    pb.environment().putAll(env);
    System.out.println("[NodeClientIT] $ " + String.join(" ", command));
    Process p = pb.start();
    Thread echo = new Thread(() -> {
      try (BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
        for (String line; (line = in.readLine()) != null; ) {
          System.out.println("[node] " + line);
        }
      } catch (IOException e) {
        // the process is gone; its exit code tells the rest
      }
    }, "node-output");
    echo.setDaemon(true);
    echo.start();
    if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
      p.descendants().forEach(ProcessHandle::destroyForcibly);
      p.destroyForcibly();
      fail(String.join(" ", command) + " did not finish within " + timeout);
    }
    echo.join(5_000);
    return p.exitValue();
  }
}
