package dev.sluice.bench;

import dev.sluice.server.SluiceServer;
import dev.sluice.server.redis.RedisProcess;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * {@code sluice-bench.jar push}: how many buffer items a coordinator accepts per second over
 * HTTP, one item per request and in batches, on each store, against the same callers doing
 * {@code GET /healthz} on the same coordinator (the HTTP stack's own ceiling) in the same run.
 * Prints one line per row as it goes; nothing is written.
 */
final class PushBench {

  private PushBench() {}

  private record Row(String name, double perSecond, double p50Millis, double p99Millis, long errors) {}

  static void run(String[] args, PrintStream out) throws Exception {
    Duration warmup = Duration.ofSeconds(3);
    Duration measure = Duration.ofSeconds(10);
    int callers = 64;
    for (int i = 1; i < args.length; i++) {
      switch (args[i]) {
        case "--duration" -> measure = Duration.parse("PT" + args[++i].toUpperCase());
        case "--callers" -> callers = Integer.parseInt(args[++i]);
        default -> throw new IllegalArgumentException("unknown option " + args[i] + ": push [--duration 10s]"
            + " [--callers 64]");
      }
    }
    out.printf("push: %d callers over HTTP/1.1 keep-alive, %d s warm-up, %d s measured per row; items go into a"
        + " paused buffer (acceptance only)%n", callers, warmup.toSeconds(), measure.toSeconds());
    try (RedisProcess redis = RedisProcess.start()) {
      for (String store : List.of("embedded, --buffer-fsync always", "embedded, --buffer-fsync crash",
          "redis (shared mode)")) {
        Path dir = Files.createTempDirectory("sluice-push");
        SluiceServer.Builder b = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir)
            .shutdownGrace(Duration.ZERO);
        if (store.startsWith("redis")) {
          redis.flushAll();
          b.store(redis.uri());
        } else {
          b.bufferFsync(store.endsWith("always"));
        }
        try (SluiceServer server = b.build().start()) {
          String base = "http://127.0.0.1:" + server.httpPort();
          HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
          send(http, HttpRequest.newBuilder(URI.create(base + "/v1/buffers")).POST(HttpRequest.BodyPublishers.ofString(
              "{\"name\": \"bench\", \"url\": \"http://127.0.0.1:9/\", \"rate\": {\"amount\": 1, \"period\": \"1s\"}}"))
              .build());
          send(http, HttpRequest.newBuilder(URI.create(base + "/v1/buffers/bench/pause"))
              .POST(HttpRequest.BodyPublishers.noBody()).build());
          HttpRequest health = HttpRequest.newBuilder(URI.create(base + "/healthz")).GET().build();
          HttpRequest single = HttpRequest.newBuilder(URI.create(base + "/v1/buffers/bench/items"))
              .POST(HttpRequest.BodyPublishers.ofString("{\"body\": {\"order\": 42, \"sku\": \"abc-123\"}}")).build();
          StringBuilder hundred = new StringBuilder("{\"items\": [");
          for (int k = 0; k < 100; k++) {
            hundred.append(k == 0 ? "" : ",").append("{\"body\": {\"order\": ").append(k).append("}}");
          }
          HttpRequest batch = HttpRequest.newBuilder(URI.create(base + "/v1/buffers/bench/items"))
              .POST(HttpRequest.BodyPublishers.ofString(hundred.append("]}").toString())).build();
          Row baseline = load(http, health, 1, callers, warmup, measure, "GET /healthz (baseline)");
          Row one = load(http, single, 1, callers, warmup, measure, "push, 1 item per request");
          Row many = load(http, batch, 100, callers / 4, warmup, measure, "push, 100 items per request");
          out.printf("%n%s%n", store);
          for (Row r : List.of(baseline, one, many)) {
            out.printf("  %-30s %10.0f /s  p50 %6.1f ms  p99 %6.1f ms  errors %d  (%.2fx baseline requests)%n",
                r.name(), r.perSecond(), r.p50Millis(), r.p99Millis(), r.errors(),
                r.name().contains("100") ? r.perSecond() / 100 / baseline.perSecond() : r.perSecond()
                    / baseline.perSecond());
          }
        }
      }
    }
  }

  private static void send(HttpClient http, HttpRequest r) throws Exception {
    HttpResponse<String> answer = http.send(r, HttpResponse.BodyHandlers.ofString());
    if (answer.statusCode() >= 300) {
      throw new IllegalStateException(r.uri() + " answered " + answer.statusCode() + ": " + answer.body());
    }
  }

  /** {@code callers} closed loops of {@code request}; items per second (requests x itemsPer). */
  private static Row load(HttpClient http, HttpRequest request, int itemsPer, int callers, Duration warmup,
      Duration measure, String name) throws InterruptedException {
    AtomicBoolean measuring = new AtomicBoolean();
    AtomicBoolean stop = new AtomicBoolean();
    AtomicLong done = new AtomicLong();
    AtomicLong errors = new AtomicLong();
    ConcurrentLinkedQueue<Long> latencies = new ConcurrentLinkedQueue<>();
    CountDownLatch finished = new CountDownLatch(callers);
    for (int c = 0; c < callers; c++) {
      loop(http, request, stop, measuring, done, errors, latencies, finished);
    }
    Thread.sleep(warmup.toMillis());
    measuring.set(true);
    long t0 = System.nanoTime();
    Thread.sleep(measure.toMillis());
    measuring.set(false);
    double seconds = (System.nanoTime() - t0) / 1e9;
    stop.set(true);
    finished.await();
    List<Long> sorted = new ArrayList<>(latencies);
    sorted.sort(null);
    double p50 = sorted.isEmpty() ? 0 : sorted.get(sorted.size() / 2) / 1e6;
    double p99 = sorted.isEmpty() ? 0 : sorted.get((int) (sorted.size() * 0.99)) / 1e6;
    return new Row(name, done.get() * itemsPer / seconds, p50, p99, errors.get());
  }

  private static void loop(HttpClient http, HttpRequest request, AtomicBoolean stop, AtomicBoolean measuring,
      AtomicLong done, AtomicLong errors, ConcurrentLinkedQueue<Long> latencies, CountDownLatch finished) {
    if (stop.get()) {
      finished.countDown();
      return;
    }
    long start = System.nanoTime();
    http.sendAsync(request, HttpResponse.BodyHandlers.discarding()).whenComplete((r, e) -> {
      if (measuring.get()) {
        if (e != null || r.statusCode() >= 300) {
          errors.incrementAndGet();
        } else {
          done.incrementAndGet();
          latencies.add(System.nanoTime() - start);
        }
      }
      loop(http, request, stop, measuring, done, errors, latencies, finished);
    });
  }
}
