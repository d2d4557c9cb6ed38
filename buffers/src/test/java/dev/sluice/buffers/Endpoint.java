package dev.sluice.buffers;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;

/** A real HTTP endpoint on loopback: answers each request with the next status queued (200 when none). */
final class Endpoint implements AutoCloseable {

  private final HttpServer server;
  private final Queue<Integer> statuses = new ConcurrentLinkedQueue<>();
  final List<String> bodies = new CopyOnWriteArrayList<>();

  Endpoint() throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    server.createContext("/", x -> {
      bodies.add(new String(x.getRequestBody().readAllBytes(), StandardCharsets.UTF_8));
      Integer s = statuses.poll();
      byte[] answer = ("status " + (s == null ? 200 : s)).getBytes(StandardCharsets.UTF_8);
      x.sendResponseHeaders(s == null ? 200 : s, answer.length);
      x.getResponseBody().write(answer);
      x.close();
    });
    server.start();
  }

  /** Answers the next requests with these statuses, in order. */
  Endpoint answer(Integer... next) {
    statuses.addAll(List.of(next));
    return this;
  }

  /** The endpoint's URL, with {@code host} as the host. */
  String url(String host) {
    return "http://" + host + ":" + server.getAddress().getPort() + "/hook";
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
