package dev.sluice.buffers;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.RejectedExecutionException;

/**
 * HTTP dispatch: checks where a buffer's URL leads now, builds an attempt's request and sends it,
 * and turns whatever happens into an {@link Outcome}: an attempt never ends in an exception.
 *
 * <p>Threads: the HTTP client runs on an executor of its own ({@code sluice-buffer-http-N}), and
 * a URL whose host is a name is checked on {@code sluice-buffer-check-N}, since a lookup may
 * block. {@link #close()} ends both, and the client's selector thread with them.
 */
final class Dispatch implements AutoCloseable {

  private final TargetPolicy targets;
  private final BufferClock clock;
  private final ExecutorService checks = Threads.pool("sluice-buffer-check", 2);
  private final ExecutorService io = Threads.cached("sluice-buffer-http");
  private final HttpClient http;

  Dispatch(TargetPolicy targets, BufferClock clock) {
    this.targets = targets;
    this.clock = clock;
    this.http = HttpClient.newBuilder().executor(io).connectTimeout(Duration.ofSeconds(10))
        .followRedirects(HttpClient.Redirect.NEVER).build();
  }

  /**
   * Sends one attempt. The future completes with its outcome; it fails only when dispatch is
   * closing (a lookup could not be queued).
   */
  CompletableFuture<Outcome> send(BufferSpec spec, BufferBackend.Send send) {
    if (!targets.looksUp(spec.url())) {
      return sendNow(spec, send); // an address: checked at once, nothing blocks
    }
    try {
      return CompletableFuture.supplyAsync(() -> sendNow(spec, send), checks).thenCompose(f -> f);
    } catch (RejectedExecutionException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  /**
   * One call of a batch's life (upload, create, poll, download) on the same client, checked
   * against the same target rules; fails with the reason when the target is refused or there
   * is no answer.
   */
  CompletableFuture<HttpResponse<byte[]>> call(URI target, HttpRequest request) {
    try {
      if (targets.looksUp(target)) {
        return CompletableFuture.supplyAsync(() -> {
          targets.check(target);
          return null;
        }, checks).thenCompose(x -> http.sendAsync(request, HttpResponse.BodyHandlers.ofByteArray()));
      }
      targets.check(target);
      return http.sendAsync(request, HttpResponse.BodyHandlers.ofByteArray());
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  /**
   * Checks the target, builds the request and sends it. Every way this can fail ends as the
   * attempt's outcome: an item is never left running.
   */
  private CompletableFuture<Outcome> sendNow(BufferSpec spec, BufferBackend.Send send) {
    try {
      targets.check(spec.url());
    } catch (RuntimeException e) {
      return CompletableFuture.completedFuture(Outcome.refused(e.getMessage()));
    }
    CompletableFuture<HttpResponse<InputStream>> response;
    try {
      response = http.sendAsync(request(spec, send.body(), send.headers(), send.idem()),
          HttpResponse.BodyHandlers.ofInputStream());
    } catch (RuntimeException e) {
      return CompletableFuture.completedFuture(Outcome.unbuildable(e));
    }
    return response.handle((r, failure) -> {
      try {
        return failure != null ? Outcome.error(failure) : Outcome.of(r, clock.millis());
      } catch (RuntimeException e) {
        return Outcome.error(e);
      }
    });
  }

  /**
   * The request of one attempt. The item's headers are checked again (items stored before a
   * rule existed); the buffer's own headers are set last, so they win over anything an item says.
   *
   * @throws RuntimeException when the request cannot be built: the attempt fails, not retried
   */
  static HttpRequest request(BufferSpec spec, byte[] body, String itemHeaders, String idem) {
    HttpRequest.Builder r = HttpRequest.newBuilder(spec.url()).timeout(spec.timeout())
        .method(spec.method(), spec.method().equals("GET") ? HttpRequest.BodyPublishers.noBody()
            : HttpRequest.BodyPublishers.ofByteArray(body));
    JsonNode h;
    try {
      h = BufferSpec.JSON.readTree(itemHeaders);
    } catch (IOException e) {
      throw new IllegalStateException("the item's stored headers are not JSON", e);
    }
    h.properties().forEach(e -> {
      if (spec.headers().keySet().stream().noneMatch(e.getKey()::equalsIgnoreCase)) {
        BufferSpec.checkAllowed("item headers", e.getKey());
        BufferSpec.checkValue("item headers", e.getKey(), e.getValue().asText());
        r.setHeader(e.getKey(), e.getValue().asText());
      }
    });
    spec.headers().forEach(r::setHeader);
    r.setHeader("Idempotency-Key", idem);
    r.setHeader("User-Agent", "sluice-buffer/0.1");
    return r.build();
  }

  /** Ends the lookups, the client's executor and its selector thread; requests in flight are dropped. */
  @Override
  public void close() {
    Threads.stop(checks);
    Threads.stop(io);
    stopSelector(http);
  }

  /**
   * Ends an HTTP client's selector thread. Java 17's client cannot be closed (21 added {@code
   * close()}), and its selector thread runs until the client is garbage collected, so every
   * coordinator started and stopped in one JVM would leave one behind. Interrupting that thread
   * ends it the way a close does: it closes the client's connections and fails what is in
   * flight. The JDK names it {@code HttpClient-<id>-SelectorManager}, and the client's {@code
   * toString()} ends with {@code (<id>)}, the convention the JDK's own tests use to find it; on a
   * JDK that names it otherwise nothing is found, and the thread ends by itself a few seconds
   * after the client is unreachable.
   */
  static void stopSelector(HttpClient client) {
    String s = client.toString();
    int open = s.lastIndexOf('(');
    if (open < 0 || !s.endsWith(")")) {
      return;
    }
    String name = "HttpClient-" + s.substring(open + 1, s.length() - 1) + "-SelectorManager";
    for (Thread t : Thread.getAllStackTraces().keySet()) {
      if (t.getName().equals(name)) {
        Threads.stop(t);
      }
    }
  }
}
