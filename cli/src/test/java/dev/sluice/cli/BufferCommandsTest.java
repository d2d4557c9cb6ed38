package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.sun.net.httpserver.HttpServer;
import dev.sluice.server.SluiceServer;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code sluice buffer ...} in process, against a real coordinator delivering to a real endpoint. */
class BufferCommandsTest {

  @TempDir
  static Path dataDir;
  static SluiceServer server;
  static HttpServer endpoint;
  static final List<String> received = new ArrayList<>();
  static String target;
  static String url;

  @BeforeAll
  static void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).build().start();
    target = "--target=127.0.0.1:" + server.port();
    System.setProperty("sun.net.httpserver.nodelay", "true");
    endpoint = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    endpoint.createContext("/", x -> {
      synchronized (received) {
        received.add(new String(x.getRequestBody().readAllBytes(), StandardCharsets.UTF_8) + " "
            + x.getRequestHeaders().getFirst("Idempotency-Key") + " " + x.getRequestHeaders().getFirst("Authorization"));
      }
      byte[] ok = "{\"ok\": true}".getBytes(StandardCharsets.UTF_8);
      x.sendResponseHeaders(201, ok.length);
      x.getResponseBody().write(ok);
      x.close();
    });
    endpoint.start();
    url = "http://127.0.0.1:" + endpoint.getAddress().getPort() + "/orders";
  }

  @AfterAll
  static void stop() {
    server.close();
    endpoint.stop(0);
  }

  private static CliRun sluice(String... args) {
    List<String> argv = new ArrayList<>(List.of(args));
    argv.add(target);
    return CliRun.of(argv.toArray(String[]::new));
  }

  @Test
  void createsAnOpenAiBatchBufferAndShowsItsSettings() {
    assertThat(sluice("limit", "set", "batch-queue", "--rate", "enqueued_tokens=2000000/1d").exit()).isZero();
    CliRun created = sluice("buffer", "create", "nightly", "--delivery", "openai-batch", "--url",
        "http://127.0.0.1:9/v1", "--endpoint", "/v1/chat/completions", "--resource", "batch-queue",
        "--completion-window", "24h", "--max-batch-items", "1000", "--max-batch-bytes", "1048576",
        "--flush-after", "5m");
    assertThat(created.exit()).as(created.err()).isZero();
    assertThat(created.out()).contains("openai-batch /v1/chat/completions", "window 24h", "up to 1000 items / 1048576"
        + " bytes", "flush after 5m");
    CliRun wrong = sluice("buffer", "create", "wrong", "--delivery", "openai-batch", "--url", "http://127.0.0.1:9/v1",
        "--endpoint", "/v1/audio/speech", "--resource", "batch-queue");
    assertThat(wrong.exit()).isNotZero();
    assertThat(wrong.err()).contains("not served by OpenAI's Batch API");
    assertThat(sluice("buffer", "stats", "nightly").out()).contains("open batches at the provider: 0 (uploaded, create"
        + " not yet confirmed: 0; being prepared: 0); items in them: 0");
    CliRun overflowing = sluice("buffer", "create", "orders", "--url", "http://127.0.0.1:9/v1/chat/completions",
        "--rate", "requests=5/s", "--overflow-to", "nightly", "--when-wait-exceeds", "5m");
    assertThat(overflowing.exit()).as(overflowing.err()).isZero();
    assertThat(overflowing.out()).contains("to openai-batch buffer nightly when the wait passes 5m (0 moved)");
    assertThat(sluice("buffer", "stats", "orders").out()).contains("moved to nightly: 0");
    CliRun missing = sluice("buffer", "create", "other", "--url", "http://127.0.0.1:9/v1/chat/completions",
        "--rate", "requests=5/s", "--overflow-to", "nowhere", "--when-wait-exceeds", "5m");
    assertThat(missing.exit()).isNotZero();
    assertThat(missing.err()).contains("overflowTo 'nowhere': no such buffer");
    assertThat(sluice("buffer", "delete", "orders").exit()).isZero();
    assertThat(sluice("buffer", "delete", "nightly").exit()).isZero();
  }

  @Test
  void createPushWatchPauseAndDeleteABuffer() {
    assertThat(sluice("limit", "set", "partner", "--rate", "requests=100/s").exit()).isZero();
    CliRun created = sluice("buffer", "create", "orders", "--url", url, "--resource", "partner",
        "-H", "Authorization=Bearer secret-12345678", "--max-retries", "3", "--backoff-base", "200ms");
    assertThat(created.exit()).as(created.err()).isZero();
    assertThat(created.out()).contains("orders", "POST " + url, "partner", "Authorization: ***",
        "3, exponential backoff 200ms", "1 (strict order)", "admins only").doesNotContain("secret-1234");
    CliRun shared = sluice("buffer", "create", "shared", "--url", url, "--resource", "partner",
        "--excerpts-visible-to-workers");
    assertThat(shared.out()).as(shared.err()).contains("excerpts", "admins and workers");
    assertThat(sluice("buffer", "delete", "shared").exit()).isZero();

    CliRun pushed = sluice("buffer", "push", "orders", "--body", "{\"sku\": 1}", "--idempotency-key", "order-1");
    assertThat(pushed.exit()).as(pushed.err()).isZero();
    assertThat(pushed.out().trim()).isEqualTo("1");
    assertThat(sluice("buffer", "push", "orders", "--body", "{\"sku\": 1}", "--idempotency-key", "order-1").out().trim())
        .as("the same idempotency key is the same item").isEqualTo("1");
    await().atMost(Duration.ofSeconds(10)).until(() -> sluice("buffer", "item", "orders", "1").out().contains("completed"));
    synchronized (received) {
      assertThat(received).containsExactly("{\"sku\": 1} order-1 Bearer secret-12345678");
    }
    CliRun item = sluice("buffer", "item", "orders", "1");
    assertThat(item.out()).contains("state", "completed", "1 (0 retries used)", "201", "pushed", "attempt 1: HTTP 201");
    CliRun json = sluice("buffer", "item", "orders", "1", "--json");
    assertThat(json.out()).contains("\"state\": \"completed\"", "\"lastStatus\": 201");

    assertThat(sluice("buffer", "stats", "orders").out()).contains("COMPLETED", "orders");
    assertThat(sluice("buffer", "stats", "orders", "--json").out()).contains("\"completed\": \"1\"");
    assertThat(sluice("buffer", "list").out()).contains("orders", "partner");
    assertThat(sluice("buffer", "pause", "orders").out()).contains("(paused)");
    CliRun later = sluice("buffer", "push", "orders", "--body", "later");
    assertThat(later.exit()).isZero();
    String laterId = later.out().trim();
    assertThat(sluice("buffer", "stats", "orders", "--json").out()).contains("\"pending\": \"1\"", "\"paused\": true");
    assertThat(sluice("buffer", "item", "orders", laterId).out()).contains("pending");
    assertThat(sluice("buffer", "resume", "orders").out()).doesNotContain("(paused)");
    await().atMost(Duration.ofSeconds(10)).until(() ->
        sluice("buffer", "item", "orders", laterId).out().contains("completed"));

    assertThat(sluice("buffer", "delete", "orders").out()).contains("deleted buffer orders");
    CliRun gone = sluice("buffer", "get", "orders");
    assertThat(gone.exit()).isEqualTo(1);
    assertThat(gone.err()).contains("no buffer 'orders'");
  }

  @Test
  void badInvocationsSayWhatToFix() {
    CliRun neither = sluice("buffer", "create", "x", "--url", url);
    assertThat(neither.exit()).isEqualTo(2);
    assertThat(neither.err()).contains("--resource NAME", "--rate requests=N/PERIOD");
    CliRun tokens = sluice("buffer", "create", "x", "--url", url, "--rate", "tokens=10/s");
    assertThat(tokens.exit()).isEqualTo(2);
    assertThat(tokens.err()).contains("counts requests");
    CliRun ftp = sluice("buffer", "create", "x", "--url", "ftp://h/x", "--rate", "requests=10/s");
    assertThat(ftp.exit()).isEqualTo(1);
    assertThat(ftp.err()).contains("http or https");
    CliRun noBody = sluice("buffer", "push", "nope");
    assertThat(noBody.exit()).isEqualTo(2);
    assertThat(noBody.err()).contains("--body TEXT or --file FILE");
    CliRun unknown = sluice("buffer", "push", "nope", "--body", "x");
    assertThat(unknown.exit()).isEqualTo(1);
    assertThat(unknown.err()).contains("no buffer 'nope'");
  }
}
