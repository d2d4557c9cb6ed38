package dev.sluice.examples;

import static dev.sluice.examples.ClientProcesses.cli;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.examples.mock.MockOpenAi;
import dev.sluice.server.SluiceServer;
import dev.sluice.server.http.HttpApi;
import dev.sluice.server.redis.RedisProcess;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Python client ({@code clients/python}, package {@code sluice}) runs its pytest suite against
 * real coordinators on real ports: one with API keys on for everything but failover, and two
 * that share one Redis (the project's {@link RedisProcess}) for failover, the first of which this
 * test stops when the Python side asks (it writes the node's URL to {@code $SLUICE_CONTROL/stop}).
 * Then the coordinator's counters must agree with what the Python clients saw: grants, timeouts
 * and withdrawn waiters, per resource, the cancel storm's included. The drop-in transports'
 * tests call the strict mock upstream ({@link MockOpenAi}: OpenAI's and Anthropic's APIs) started
 * here ({@code SLUICE_MOCK_URL}).
 *
 * <p>Needs a {@code python3} that imports {@code httpx} and {@code pytest}: Debian's
 * {@code /usr/bin/python3} with {@code python3-httpx} and {@code python3-pytest}.
 */
class PythonClientIT {

  private static final Path PACKAGE =
      Path.of(System.getProperty("sluice.python.dir", "../clients/python")).toAbsolutePath().normalize();

  @TempDir Path dir;

  @Test
  void pythonClientPassesItsTestsAgainstRealCoordinatorsAndTheCountersAgree() throws Exception {
    String python = ClientProcesses.python("PythonClientIT", true);
    Path control = Files.createDirectories(dir.resolve("control"));
    try (RedisProcess redis = RedisProcess.start();
        // The storm holds 1 000 long polls at once, one connection each, beside its cancels: above
        // the port's default cap of 1 024 connections, which would refuse some and slow the storm.
        SluiceServer main = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0)
            .httpLimits(new HttpApi.Limits(2048, HttpApi.Limits.defaults().idleTimeout(),
                HttpApi.Limits.defaults().readTimeout(), HttpApi.Limits.defaults().maxPipelined()))
            .shutdownGrace(Duration.ZERO).dataDir(dir.resolve("main")).build().start();
        SluiceServer first = redisNode(redis, "first");
        SluiceServer second = redisNode(redis, "second");
        // The transports' upstream: OpenAI's buckets of 10 requests and 666 tokens, Anthropic's
        // of 10 requests, 1 000 input and 20 output tokens (burst 1 s).
        MockOpenAi upstream = MockOpenAi.builder().rpm(600).tpm(40_000).anthropic(600, 60_000, 1_200)
            .latency(Duration.ofMillis(20), Duration.ofMillis(60)).build().start()) {
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
      ClientProcesses.pool(target, admin, "py.pool", "py.pool.a", "py.pool.b");
      cli(target, admin, "price", "set", "py-model", "--input", "1/M", "--output", "2/M");
      // The pair shares its limits through Redis: set once, on either node.
      cli("127.0.0.1:" + first.port(), null, "limit", "set", "py.failover", "--rate", "requests=600000/min:10000");

      Thread stopper = stopOnRequest(control, first);
      Path summary = dir.resolve("python-summary.json");
      String pair = "http://127.0.0.1:" + first.httpPort() + ",http://127.0.0.1:" + second.httpPort();
      ClientProcesses.Ran ran = ClientProcesses.run("python", PACKAGE, Duration.ofMinutes(3), Map.of(
              "SLUICE_URL", "http://127.0.0.1:" + main.httpPort(),
              "SLUICE_MOCK_URL", "http://127.0.0.1:" + upstream.port(),
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
        if (name.startsWith("py.pool.")) {
          // A pool's members: its grants are theirs, but so are the pool's own tries at them (a
          // try-once at the soonest member counts as its timeout, the waits that lost to another
          // member as its cancels), which no caller saw: the grants alone are compared.
          coordinator.put(name, List.of(r.path("granted").asLong()));
          client.put(name, List.of(seen.path("granted").path(name).asLong()));
        } else if (name.startsWith("py.")) {
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
}
