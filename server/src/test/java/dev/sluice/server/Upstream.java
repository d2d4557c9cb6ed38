package dev.sluice.server;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A strict upstream for buffer tests, a real HTTP server on a free port. {@code /ok} admits
 * {@code rate} requests a second (bucket of {@code burst}) and answers 429 with {@code
 * Retry-After: 1} to anything over; {@code /throttle-once} answers each idempotency key 429 with
 * {@code Retry-After: 1} once, then 200; {@code /fail} always 500; {@code /bad} always 400. Every
 * request is recorded in arrival order.
 */
final class Upstream implements AutoCloseable {

  /** One request as it arrived. */
  record Arrival(long nanos, String path, String idempotencyKey, String body, int status) {}

  private final HttpServer server;
  private final List<Arrival> arrivals = new ArrayList<>();
  private final Map<String, Integer> seen = new HashMap<>();
  private final double perNano;
  private final double burst;
  private double tokens;
  private long last = System.nanoTime();
  final AtomicInteger rejected = new AtomicInteger();

  Upstream(double ratePerSecond, double burst) throws IOException {
    this.perNano = ratePerSecond / 1e9;
    this.burst = burst;
    this.tokens = burst;
    // Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm and the
    // client's delayed ACK add 40 ms to every answer (a real upstream would not).
    System.setProperty("sun.net.httpserver.nodelay", "true");
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.setExecutor(Executors.newFixedThreadPool(4));
    server.createContext("/", this::handle);
    server.start();
  }

  String url(String path) {
    return "http://127.0.0.1:" + server.getAddress().getPort() + path;
  }

  private void handle(HttpExchange x) throws IOException {
    long now = System.nanoTime();
    String body = new String(x.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
    String key = x.getRequestHeaders().getFirst("Idempotency-Key");
    String path = x.getRequestURI().getPath();
    int status;
    synchronized (this) {
      status = switch (path) {
        case "/ok" -> admit(now) ? 200 : 429;
        case "/throttle-once" -> seen.merge(key, 1, Integer::sum) == 1 ? 429 : 200;
        case "/fail" -> 500;
        case "/bad" -> 400;
        default -> 404;
      };
      if (status == 429 && path.equals("/ok")) {
        rejected.incrementAndGet();
      }
      arrivals.add(new Arrival(now, path, key, body, status));
    }
    if (status == 429) {
      x.getResponseHeaders().set("Retry-After", "1");
    }
    byte[] reply = ("{\"status\": " + status + "}").getBytes(StandardCharsets.UTF_8);
    x.sendResponseHeaders(status, reply.length);
    x.getResponseBody().write(reply);
    x.close();
  }

  private boolean admit(long now) {
    tokens = Math.min(burst, tokens + (now - last) * perNano);
    last = now;
    if (tokens >= 1) {
      tokens -= 1;
      return true;
    }
    return false;
  }

  synchronized List<Arrival> arrivals() {
    return List.copyOf(arrivals);
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
