package dev.sluice.examples;

import static dev.sluice.examples.ClientProcesses.cli;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.SluiceServer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A non-Java client built from {@code proto/} alone: the TypeScript package in
 * {@code clients/node} (grpc-js + proto-loader) runs its own tests against a real coordinator
 * on a real port, with API keys on. Then the coordinator's counters must agree with what the
 * Node side says it saw: grants, timeouts and aborts, per resource. And the package as users get
 * it: {@code npm pack}, installed into an empty project, called with {@code require()} and
 * {@code import}, type-checked from both.
 *
 * <p>Needs {@code node} and {@code npm} (18 or later) and the npm registry for {@code npm ci}.
 */
class NodeClientIT {

  private static final Path PACKAGE = Path.of(System.getProperty("sluice.node.dir", "../clients/node")).toAbsolutePath().normalize();
  private static final String INSTALL_HINT = "install Node.js 18+ and npm (`sudo apt-get install -y nodejs npm`),"
      + " or run `bash .ci/run`, which installs them";

  /** {@code npm ci} once for both tests: it builds the package too (its {@code prepare} script). */
  private static final AtomicBoolean INSTALLED = new AtomicBoolean();

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
      String tenantKey = cli(target, admin, "key", "create", "--role", "worker", "--resources", "node.*",
          "--tenant", "search", "--description", "the Node tests, tenant search");
      for (String line : Files.readAllLines(PACKAGE.resolve("test/limits.txt"))) {
        if (!line.isBlank() && !line.startsWith("#")) {
          List<String> args = new ArrayList<>(List.of("limit", "set"));
          args.addAll(List.of(line.trim().split("\\s+")));
          cli(target, admin, args.toArray(String[]::new));
        }
      }
      ClientProcesses.pool(target, admin, "node.pool", "node.pool.a", "node.pool.b");
      cli(target, admin, "price", "set", "node-model", "--input", "1/M", "--output", "2/M");

      npmCi();
      Path summary = dir.resolve("node-summary.json");
      assertThat(run(PACKAGE, Duration.ofMinutes(2),
              Map.of("SLUICE_TARGET", target, "SLUICE_API_KEY", worker, "SLUICE_TENANT_KEY", tenantKey,
                  "SLUICE_SUMMARY", summary.toString()),
              "npm", "test").exit())
          .as("npm test in %s: see its output above", PACKAGE)
          .isZero();

      JsonNode seen = new ObjectMapper().readTree(summary.toFile());
      JsonNode stats = new ObjectMapper().readTree(cli(target, admin, "stats", "--json"));
      Map<String, List<Long>> coordinator = new TreeMap<>();
      Map<String, List<Long>> node = new TreeMap<>();
      for (JsonNode r : stats.path("resources")) {
        String name = r.path("resource").asText();
        if (name.startsWith("node.pool.")) {
          // A pool's members: its grants are theirs, but so are the pool's own tries at them (a
          // try-once at the soonest member counts as its timeout, the waits that lost to another
          // member as its cancels), which no caller saw: the grants alone are compared.
          coordinator.put(name, List.of(r.path("granted").asLong()));
          node.put(name, List.of(seen.path("granted").path(name).asLong()));
        } else if (name.startsWith("node.")) {
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

  @Test
  void thePackedTarballInstalledInAnEmptyProjectCallsACoordinatorFromRequireAndImport() throws Exception {
    require("node");
    require("npm");
    npmCi();
    Path packs = Files.createDirectories(dir.resolve("packs"));
    assertThat(run(PACKAGE, Duration.ofMinutes(2), Map.of(), "npm", "pack", "--pack-destination", packs.toString())
        .exit()).as("npm pack in %s", PACKAGE).isZero();
    Path tarball;
    try (var files = Files.list(packs)) {
      tarball = files.filter(f -> f.toString().endsWith(".tgz")).findFirst().orElseThrow();
    }

    // An empty project outside the checkout: nothing to find two levels up, no SLUICE_* variable.
    Path app = Files.createDirectories(dir.resolve("app"));
    Files.writeString(app.resolve("package.json"), "{\"name\": \"sluice-smoke\", \"private\": true}\n");
    // --prefer-offline: the dependencies npm ci just fetched come from npm's cache.
    assertThat(run(app, Duration.ofMinutes(3), Map.of(), "npm", "install", "--prefer-offline", "--no-audit",
        "--no-fund", tarball.toString()).exit()).as("npm install %s (is the npm registry reachable?)", tarball).isZero();
    String call = """
        const client = new SluiceClient({ target: process.argv[2] });
        const permit = await client.acquire('smoke', { requests: 1, tokens: 5 }, { timeoutMs: 10000 });
        console.log('granted ' + JSON.stringify(permit.granted) + ' ' + (permit instanceof Permit));
        await permit.release();
        client.close();
        """;
    Files.writeString(app.resolve("call.cjs"), "const { SluiceClient, Permit } = require('@sluice/client');\n"
        + "(async () => {\n" + call + "})().catch((e) => { console.error(e); process.exit(1); });\n");
    Files.writeString(app.resolve("call.mjs"), "import { SluiceClient, Permit } from '@sluice/client';\n" + call);
    // The types of both entry points, checked by the package's own TypeScript (a wrong call fails).
    Files.writeString(app.resolve("check.mts"), """
        import { SluiceClient, type Permit } from '@sluice/client';
        const permit: Promise<Permit> = new SluiceClient({ target: 'localhost:7420' }).acquire('r', { tokens: 1 });
        void permit;
        """);
    Files.writeString(app.resolve("check.cts"), """
        import sluice = require('@sluice/client');
        const permit: Promise<sluice.Permit> = new sluice.SluiceClient({ target: 'localhost:7420' }).acquire('r');
        void permit;
        """);
    Files.writeString(app.resolve("tsconfig.json"), """
        {"compilerOptions": {"module": "node16", "moduleResolution": "node16", "target": "ES2022", "strict": true,
          "noEmit": true, "typeRoots": ["%s"], "types": ["node"]}, "files": ["check.mts", "check.cts"]}
        """.formatted(PACKAGE.resolve("node_modules/@types").toString().replace("\\", "/")));
    assertThat(run(app, Duration.ofMinutes(1), Map.of(), "node", PACKAGE.resolve("node_modules/typescript/bin/tsc")
        .toString(), "-p", ".").exit()).as("tsc on the installed package's types").isZero();

    try (SluiceServer server =
        SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve("sluice-data")).build().start()) {
      String target = "127.0.0.1:" + server.port();
      cli(target, null, "limit", "set", "smoke", "--rate", "requests=6000/min:100", "--rate", "tokens=60000/min:1000");
      for (String script : List.of("call.cjs", "call.mjs")) {
        ClientProcesses.Ran ran = run(app, Duration.ofSeconds(30), Map.of(), "node", script, target);
        assertThat(ran.exit()).as("node %s: %s", script, ran.output()).isZero();
        assertThat(ran.output()).as("node %s", script).contains("granted {\"requests\":1,\"tokens\":5} true");
      }
      JsonNode stats = new ObjectMapper().readTree(cli(target, null, "stats", "--json"));
      assertThat(stats.path("resources").get(0).path("granted").asLong()).as("grants the coordinator made").isEqualTo(2);
    }
  }

  /** {@code npm ci} in the package, once per run; it builds the package too. */
  private static void npmCi() throws Exception {
    if (!INSTALLED.get()) {
      assertThat(run(PACKAGE, Duration.ofMinutes(5), Map.of(), "npm", "ci", "--no-audit", "--no-fund").exit())
          .as("npm ci in %s (is the npm registry reachable?)", PACKAGE)
          .isZero();
      INSTALLED.set(true);
    }
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

  private static ClientProcesses.Ran run(Path dir, Duration timeout, Map<String, String> env, String... command)
      throws Exception {
    return ClientProcesses.run("node", dir, timeout, env, command);
  }
}
