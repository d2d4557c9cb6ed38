package dev.sluice.bench;

import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Closed loops over a coordinator's HTTP port, as a client without the SDK drives it: the JDK's
 * {@link HttpClient} on HTTP/1.1 keep-alive (one connection per request in flight), and the
 * baseline every request of that port pays, {@code GET /healthz}.
 */
final class HttpLoad {

  private static final Pattern PERMIT_ID = Pattern.compile("\"permitId\"\\s*:\\s*\"([^\"]+)\"");

  private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
  private final String base;

  HttpLoad(int httpPort) {
    if (httpPort <= 0) {
      throw new IllegalArgumentException("the coordinator has no HTTP port (" + httpPort + ")");
    }
    this.base = "http://127.0.0.1:" + httpPort;
  }

  /** {@code GET /healthz}, {@code inFlight} at a time: the HTTP stack's own ceiling on this port. */
  Workload healthz(int inFlight) {
    HttpRequest get = HttpRequest.newBuilder(URI.create(base + "/healthz")).GET().build();
    return new AsyncLoop("http-healthz", inFlight, (lap, done) ->
        http.sendAsync(get, HttpResponse.BodyHandlers.discarding())
            .whenComplete((r, e) -> done.accept(failure("GET /healthz", r, e))));
  }

  /**
   * {@code POST /v1/resources/{resource}/acquire} (one request), then, once granted, {@code POST
   * /v1/permits/{id}/release}: two requests per permit, both awaited (HTTP has no fire-and-forget
   * release); the acquire alone is marked.
   */
  Workload acquireRelease(String resource, int inFlight) {
    HttpRequest acquire = HttpRequest.newBuilder(URI.create(base + "/v1/resources/"
            + URLEncoder.encode(resource, StandardCharsets.UTF_8) + "/acquire"))
        .POST(HttpRequest.BodyPublishers.ofString("{\"load\": {\"requests\": 1}}")).build();
    return new AsyncLoop("http-acquire", inFlight, (lap, done) ->
        http.sendAsync(acquire, HttpResponse.BodyHandlers.ofString()).whenComplete((r, e) -> {
          Throwable failed = failure("acquire", r, e);
          if (failed != null) {
            done.accept(failed);
            return;
          }
          String id;
          try {
            id = permitId(r.body());
          } catch (IllegalStateException bad) {
            done.accept(bad);
            return;
          }
          lap.mark();
          HttpRequest release = HttpRequest.newBuilder(URI.create(base + "/v1/permits/"
                  + URLEncoder.encode(id, StandardCharsets.UTF_8) + "/release"))
              .POST(HttpRequest.BodyPublishers.ofString("{}")).build();
          http.sendAsync(release, HttpResponse.BodyHandlers.discarding())
              .whenComplete((r2, e2) -> done.accept(failure("release", r2, e2)));
        }));
  }

  /** The {@code permitId} of an acquire's answer. */
  static String permitId(String body) {
    Matcher m = PERMIT_ID.matcher(body);
    if (!m.find()) {
      throw new IllegalStateException("the acquire's answer has no permitId: "
          + (body.length() > 200 ? body.substring(0, 200) + "..." : body));
    }
    return m.group(1);
  }

  private static Throwable failure(String what, HttpResponse<?> r, Throwable e) {
    if (e != null) {
      return e;
    }
    if (r.statusCode() >= 300) {
      Object body = r.body();
      return new IllegalStateException(what + " answered " + r.statusCode() + (body instanceof String s ? ": " + s
          : ""));
    }
    return null;
  }
}
