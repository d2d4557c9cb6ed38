package dev.sluice.server.faults;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The upstream stand-in: a small HTTP server on a free loopback port that stamps each call on
 * arrival, by its own handler and clock, before anything else. Workers call {@link #call} after
 * each grant; what the checker counts is what arrived here, not what the workers or coordinators
 * say they did.
 */
final class Recorder implements AutoCloseable {

  private final History history;
  private final HttpServer server;
  private final ExecutorService handlers = Executors.newFixedThreadPool(4, r -> {
    Thread t = new Thread(r, "recorder");
    t.setDaemon(true);
    return t;
  });
  private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

  Recorder(History history) throws IOException {
    this.history = history;
    System.setProperty("sun.net.httpserver.nodelay", "true"); // no Nagle delay on answers
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 64);
    server.setExecutor(handlers);
    server.createContext("/call", this::handle);
    server.start();
  }

  private void handle(HttpExchange x) throws IOException {
    long now = System.nanoTime();
    Map<String, String> q = new HashMap<>();
    for (String kv : x.getRequestURI().getQuery().split("&")) {
      int eq = kv.indexOf('=');
      q.put(kv.substring(0, eq), kv.substring(eq + 1));
    }
    history.arrivals.add(new History.Arrival(now, q.get("permit"), q.get("request")));
    x.sendResponseHeaders(204, -1);
    x.close();
  }

  /** The worker's upstream call for one granted permit. */
  void call(String permitId, String requestId) throws IOException, InterruptedException {
    URI uri = URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/call?permit="
        + java.net.URLEncoder.encode(permitId, java.nio.charset.StandardCharsets.UTF_8) + "&request=" + requestId);
    HttpResponse<Void> r = client.send(HttpRequest.newBuilder(uri).build(), HttpResponse.BodyHandlers.discarding());
    if (r.statusCode() != 204) {
      throw new IOException("recorder answered " + r.statusCode());
    }
  }

  @Override
  public void close() {
    server.stop(0);
    handlers.shutdownNow();
  }
}
