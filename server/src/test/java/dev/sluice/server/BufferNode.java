package dev.sluice.server;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * A coordinator process of {@link BufferIT} and of examples' {@code BatchBufferCrashIT}, killed
 * with SIGKILL and started again. Arguments: the data dir, and optionally a Redis URI and node id
 * (distributed mode, a 2 s buffer lease). Prints {@code READY <http port>} once it serves.
 */
public final class BufferNode {

  private static final java.net.http.HttpClient HTTP = java.net.http.HttpClient.newHttpClient();
  private static final com.fasterxml.jackson.databind.ObjectMapper JSON =
      new com.fasterxml.jackson.databind.ObjectMapper();

  /** A call to a node's HTTP port that must answer 2xx; its JSON answer. */
  public static com.fasterxml.jackson.databind.JsonNode call(int port, String method, String path, String body)
      throws Exception {
    java.net.http.HttpResponse<String> r = HTTP.send(java.net.http.HttpRequest.newBuilder(
            java.net.URI.create("http://127.0.0.1:" + port + path))
        .method(method, body == null ? java.net.http.HttpRequest.BodyPublishers.noBody()
            : java.net.http.HttpRequest.BodyPublishers.ofString(body))
        .timeout(Duration.ofSeconds(30)).build(), java.net.http.HttpResponse.BodyHandlers.ofString());
    org.assertj.core.api.Assertions.assertThat(r.statusCode()).as(method + " " + path + ": " + r.body())
        .isBetween(200, 202);
    return JSON.readTree(r.body());
  }

  /**
   * Starts a node in a JVM of its own on {@code data} (and {@code store}: a Redis URI and a node
   * id) and waits for it to serve; {@code port[0]} is then its HTTP port. Its log is drained.
   */
  public static Process start(Path data, int[] port, String... store) throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    List<String> command = new ArrayList<>(List.of(java, "-Xmx256m", "-cp", System.getProperty("java.class.path"),
        BufferNode.class.getName(), data.toString()));
    command.addAll(List.of(store));
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
    port[0] = CompletableFuture.supplyAsync(() -> {
      try {
        for (String line; (line = out.readLine()) != null; ) {
          if (line.startsWith("READY ")) {
            return Integer.parseInt(line.substring(6).trim());
          }
        }
        throw new IllegalStateException("the node exited before READY");
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    }).get(60, TimeUnit.SECONDS);
    CompletableFuture.runAsync(() -> { // keep draining its log so it never blocks on a full pipe
      try {
        for (String line; (line = out.readLine()) != null; ) {
          if (line.contains(" WARN ") || line.contains(" ERROR ")) {
            System.out.println("[node " + data.getFileName() + "] " + line); // what went wrong, in the test's log
          }
        }
      } catch (java.io.IOException e) {
        // killed
      }
    });
    return p;
  }

  public static void main(String[] args) throws Exception {
    SluiceServer.Builder b = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(Path.of(args[0]))
        .shutdownGrace(Duration.ZERO);
    if (args.length > 1) {
      b.store(args[1]).nodeId(args[2]).bufferLease(Duration.ofSeconds(2));
    }
    SluiceServer server = b.build().start();
    System.out.println("READY " + server.httpPort());
    System.out.flush();
    server.awaitTermination();
  }
}
