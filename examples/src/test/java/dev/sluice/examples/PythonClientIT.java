package dev.sluice.examples;

import static dev.sluice.examples.ClientProcesses.cli;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.SluiceServer;
import dev.sluice.server.http.HttpApi;
import dev.sluice.server.redis.RedisProcess;
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
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Python client ({@code clients/python}, package {@code sluice}) runs its pytest suite against
 * real coordinators on real ports: one with API keys on for everything but failover, and two
 * that share one Redis (the project's {@link RedisProcess}) for failover, the first of which this
 * test stops when the Python side asks (it writes the node's URL to {@code $SLUICE_CONTROL/stop}).
 * Then the coordinator's counters must agree with what the Python clients saw: grants, timeouts
 * and withdrawn waiters, per resource, the cancel storm's included.
 *
 * <p>Needs a {@code python3} that imports {@code httpx} and {@code pytest}: Debian's
 * {@code /usr/bin/python3} with {@code python3-httpx} and {@code python3-pytest}.
 */
class PythonClientIT {

  private static final Path PACKAGE =
      Path.of(System.getProperty("sluice.python.dir", "../clients/python")).toAbsolutePath().normalize();
  private static final String INSTALL_HINT = "install Debian's packages (`sudo apt-get install -y python3"
      + " python3-httpx python3-pytest`), or run `bash .ci/run`, which installs them";

  @TempDir Path dir;

  @Test
  void pythonClientPassesItsTestsAgainstRealCoordinatorsAndTheCountersAgree() throws Exception {
    String python = python();
    Path control = Files.createDirectories(dir.resolve("control"));
    try (RedisProcess redis = RedisProcess.start();
        // The storm holds 1 000 long polls at once, one connection each, beside its cancels: above
        // the port's default cap of 1 024 connections, which would refuse some and slow the storm.
        SluiceServer main = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0)
            .httpLimits(new HttpApi.Limits(2048, HttpApi.Limits.defaults().idleTimeout(),
                HttpApi.Limits.defaults().readTimeout(), HttpApi.Limits.defaults().maxPipelined()))
            .shutdownGrace(Duration.ZERO).dataDir(dir.resolve("main")).build().start();
        SluiceServer first = redisNode(redis, "first");
        SluiceServer second = redisNode(redis, "second")) {
      String target = "127.0.0.1:" + main.port();
      // The first key may be made while the coordinator is open; from then on every call needs one.
      String admin = cli(target, null, "key", "create", "--role", "admin", "--description", "PythonClientIT");
      String worker = cli(target, admin, "key", "create", "--role", "worker", "--resources", "py.*",
          "--description", "the Python tests");
      String tenantKey = cli(target, admin, "key", "create", "--role", "worker", "--resources", "py.*",
          "--tenant", "search", "--description", "the Python tests, tenant search");
      for (String line : Files.readAllLines(PACKAGE.resolve("tests/limits.txt"))) {
        if (!line.isBlank() && !line.startsWith("#")) {
          List<String> args = new ArrayList<>(List.of("limit", "set"));
          args.addAll(List.of(line.trim().split("\\s+")));
          cli(target, admin, args.toArray(String[]::new));
        }
      }
      // The pair shares its limits through Redis: set once, on either node.
      cli("127.0.0.1:" + first.port(), null, "limit", "set", "py.failover", "--rate", "requests=600000/min:10000");

      Thread stopper = stopOnRequest(control, first);
      Path summary = dir.resolve("python-summary.json");
      String pair = "http://127.0.0.1:" + first.httpPort() + ",http://127.0.0.1:" + second.httpPort();
      ClientProcesses.Ran ran = ClientProcesses.run("python", PACKAGE, Duration.ofMinutes(3), Map.of(
              "SLUICE_URL", "http://127.0.0.1:" + main.httpPort(),
              "SLUICE_API_KEY", worker,
              "SLUICE_TENANT_KEY", tenantKey,
              "SLUICE_FAILOVER_URLS", pair,
              "SLUICE_CONTROL", control.toString(),
              "SLUICE_SUMMARY", summary.toString(),
              "SLUICE_REQUIRE_COORDINATOR", "1",
              "PYTHONDONTWRITEBYTECODE", "1"),
          python, "-m", "pytest", "-q", "-rs", "-s", "-p", "no:cacheprovider");
      stopper.interrupt();
      assertThat(ran.exit()).as("pytest in %s: see its output above", PACKAGE).isZero();
      assertThat(ran.output()).as("every test ran: none skipped").doesNotContain("skipped");
      assertThat(Files.exists(control.resolve("stopped"))).as("the failover test stopped the first node").isTrue();

      JsonNode seen = new ObjectMapper().readTree(summary.toFile());
      JsonNode stats = new ObjectMapper().readTree(cli(target, admin, "stats", "--json"));
      Map<String, List<Long>> coordinator = new TreeMap<>();
      Map<String, List<Long>> client = new TreeMap<>();
      for (JsonNode r : stats.path("resources")) {
        String name = r.path("resource").asText();
        if (name.startsWith("py.")) {
          coordinator.put(name, List.of(r.path("granted").asLong(), r.path("timedOut").asLong(),
              r.path("cancelled").asLong()));
          client.put(name, List.of(seen.path("granted").path(name).asLong(), seen.path("timedOut").path(name).asLong(),
              seen.path("cancelled").path(name).asLong()));
        }
      }
      System.out.println("[PythonClientIT] granted, timed out, cancelled per resource: coordinator " + coordinator
          + ", Python " + client);
      assertThat(client).as("what the Python clients saw vs the coordinator's counters").isEqualTo(coordinator);
      assertThat(coordinator.get("py.storm").get(0)).as("grants during the storm").isPositive();
      assertThat(coordinator.get("py.storm").get(1)).as("timeouts during the storm").isPositive();
      assertThat(coordinator.get("py.storm").get(2)).as("waiters withdrawn during the storm").isPositive();
    }
  }

  private SluiceServer redisNode(RedisProcess redis, String name) throws IOException {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).store(redis.uri()).nodeId(name)
        .shutdownGrace(Duration.ZERO).dataDir(dir.resolve(name)).build().start();
  }

  /** Stops {@code node} once the Python side writes its URL to {@code control/stop}; then writes {@code stopped}. */
  private static Thread stopOnRequest(Path control, SluiceServer node) {
    Thread t = new Thread(() -> {
      try {
        while (!Files.exists(control.resolve("stop"))) {
          Thread.sleep(20);
        }
        String url = Files.readString(control.resolve("stop")).trim();
        assertThat(url).as("the node the Python side asked to stop").endsWith(":" + node.httpPort());
        node.close();
        System.out.println("[PythonClientIT] stopped the node at " + url + " as asked");
        Files.writeString(control.resolve("stopped"), url);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
    }, "python-it-stopper");
    t.setDaemon(true);
    t.start();
    return t;
  }

  /** Debian's /usr/bin/python3, else a python3 on the PATH, that can import httpx and pytest. */
  private static String python() throws Exception {
    List<String> tried = new ArrayList<>();
    for (String candidate : List.of("/usr/bin/python3", "python3")) {
      try {
        Process p = new ProcessBuilder(candidate, "-c", "import sys, httpx, pytest; print(sys.version.split()[0],"
            + " 'httpx', httpx.__version__, 'pytest', pytest.__version__)").redirectErrorStream(true).start();
        String said = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        if (p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0) {
          System.out.println("[PythonClientIT] " + candidate + ": Python " + said);
          return candidate;
        }
        String[] lines = said.split("\n");
        tried.add(candidate + " (" + lines[lines.length - 1] + ")");
      } catch (IOException e) {
        tried.add(candidate + " (not found)");
      }
    }
    fail("PythonClientIT needs a python3 that can import httpx and pytest; tried " + String.join(", ", tried)
        + ": " + INSTALL_HINT);
    return null;
  }
}
