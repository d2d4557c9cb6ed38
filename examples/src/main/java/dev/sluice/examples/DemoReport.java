package dev.sluice.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Helper of {@code examples/run-demo.sh}: talks to the mock's control endpoints and prints the
 * side-by-side table from the workers' summaries. Kept in Java so the demo needs no curl or jq.
 *
 * <pre>
 * DemoReport stats MOCK_URL OUT.json   # GET /mock/stats into a file
 * DemoReport reset MOCK_URL            # POST /mock/reset
 * DemoReport table DIR TPM             # the table, from DIR/{local,sluice}-*.json and DIR/mock-*.json
 * </pre>
 */
public final class DemoReport {

  private static final ObjectMapper JSON = new ObjectMapper();

  private DemoReport() {}

  public static void main(String[] args) throws Exception {
    switch (args.length == 0 ? "" : args[0]) {
      case "stats" -> Files.writeString(Path.of(args[2]), http("GET", args[1] + "/mock/stats"));
      case "reset" -> http("POST", args[1] + "/mock/reset");
      case "table" -> System.out.print(table(Path.of(args[1]), Long.parseLong(args[2])));
      default -> {
        System.err.println("usage: DemoReport stats URL OUT | reset URL | table DIR TPM");
        System.exit(2);
      }
    }
  }

  private static String http(String method, String url) throws IOException, InterruptedException {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url));
    b = method.equals("POST") ? b.POST(HttpRequest.BodyPublishers.noBody()) : b.GET();
    HttpResponse<String> r = HttpClient.newHttpClient().send(b.build(), HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() / 100 != 2) {
      throw new IOException(method + " " + url + " answered " + r.statusCode() + ": " + r.body());
    }
    return r.body();
  }

  private static List<JsonNode> summaries(Path dir, String prefix) throws IOException {
    List<JsonNode> out = new ArrayList<>();
    try (Stream<Path> files = Files.list(dir)) {
      for (Path p :
          files
              .filter(f -> f.getFileName().toString().startsWith(prefix + "-"))
              .filter(f -> f.getFileName().toString().endsWith(".json"))
              .sorted()
              .toList()) {
        out.add(JSON.readTree(p.toFile()));
      }
    }
    return out;
  }

  private static long sum(List<JsonNode> s, String field) {
    return s.stream().mapToLong(n -> n.path(field).asLong()).sum();
  }

  private static long max(List<JsonNode> s, String field) {
    return s.stream().mapToLong(n -> n.path(field).asLong()).max().orElse(0);
  }

  private static long rejections(JsonNode mock) {
    JsonNode r = mock.path("rejected");
    return r.path("requests").asLong() + r.path("tokens").asLong();
  }

  static String table(Path dir, long tpm) throws IOException {
    List<JsonNode> local = summaries(dir, "local");
    List<JsonNode> sluice = summaries(dir, "sluice");
    JsonNode mockLocal = JSON.readTree(dir.resolve("mock-local.json").toFile());
    JsonNode mockSluice = JSON.readTree(dir.resolve("mock-sluice.json").toFile());
    StringBuilder b = new StringBuilder();
    b.append(String.format("%-34s %18s %18s%n", "", "without Sluice", "with Sluice"));
    b.append(String.format("%-34s %18d %18d%n", "requests done", sum(local, "done"), sum(sluice, "done")));
    b.append(String.format("%-34s %18d %18d%n", "429s seen by the upstream", rejections(mockLocal), rejections(mockSluice)));
    b.append(String.format("%-34s %18d %18d%n", "429s seen by the workers", sum(local, "worker_429s"), sum(sluice, "worker_429s")));
    b.append(String.format("%-34s %18s %18s%n", "tokens per minute (limit " + tpm + ")",
        perMinute(mockLocal, max(local, "wall_ms"), tpm), perMinute(mockSluice, max(sluice, "wall_ms"), tpm)));
    b.append(String.format("%-34s %17.1fs %17.1fs%n", "wall time", max(local, "wall_ms") / 1000.0, max(sluice, "wall_ms") / 1000.0));
    Path probe = dir.resolve("interactive.json");
    if (Files.exists(probe)) {
      JsonNode p = JSON.readTree(probe.toFile());
      double batchP50 = sluice.stream().mapToDouble(n -> n.path("wait_p50_ms").asDouble()).max().orElse(0);
      double batchP99 = sluice.stream().mapToDouble(n -> n.path("wait_p99_ms").asDouble()).max().orElse(0);
      b.append(String.format("%nwait at the coordinator, with Sluice:  interactive p50 %.0f ms, p99 %.0f ms (%d calls)"
              + "   batch p50 %.0f ms, p99 %.0f ms%n",
          p.path("wait_p50_ms").asDouble(), p.path("wait_p99_ms").asDouble(), p.path("done").asLong(), batchP50, batchP99));
    }
    return b.toString();
  }

  /** Admitted tokens per minute over the phase's wall time, and the share of the limit. */
  private static String perMinute(JsonNode mock, long wallMs, long tpm) {
    if (wallMs <= 0) {
      return "-";
    }
    double perMinute = mock.path("estimated_tokens").asDouble() / (wallMs / 1000.0) * 60;
    return String.format("%.0f (%.0f%%)", perMinute, 100 * perMinute / tpm);
  }
}
