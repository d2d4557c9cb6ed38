package dev.sluice.server.http;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.sluice.server.engine.EngineException;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

/**
 * One request on the HTTP port and its single answer. Answers may come from any thread; the
 * connection takes its next request once the answer is written (requests on one connection are
 * answered in order). The request's body is a heap copy: nothing here holds pooled memory, so
 * no path (an error, a hang-up, a long poll cut short) has a buffer to release.
 */
final class Exchange {

  /** The connection this exchange answers on. */
  interface Owner {
    /** The answer was written and the connection stays open: take the next request. */
    void answered();

    /** An event stream took the connection over: it takes no more requests. */
    void tookOver();

    /** Writing the answer failed (the connection is closed). */
    void writeFailed(Throwable cause);
  }

  private final ChannelHandlerContext ctx;
  private final FullHttpRequest request;
  private final QueryStringDecoder uri;
  private final Owner owner;
  private final AtomicBoolean answered = new AtomicBoolean();
  private volatile Runnable onClose;
  private String allowed = "";

  Exchange(ChannelHandlerContext ctx, FullHttpRequest request, Owner owner) {
    this.ctx = ctx;
    this.request = request;
    this.uri = new QueryStringDecoder(request.uri());
    this.owner = owner;
  }

  FullHttpRequest request() {
    return request;
  }

  String method() {
    return request.method().name();
  }

  /** The path as sent (still percent-encoded), without the query. */
  String rawPath() {
    return uri.rawPath();
  }

  /** A query parameter's first value, or null. */
  String query(String name) {
    List<String> v = uri.parameters().get(name);
    return v == null || v.isEmpty() ? null : v.get(0);
  }

  String header(CharSequence name) {
    return request.headers().get(name);
  }

  /** The body as JSON; an empty body is an empty object. */
  JsonNode json() {
    if (request.content().readableBytes() == 0) {
      return Views.JSON.createObjectNode();
    }
    String body = request.content().toString(StandardCharsets.UTF_8);
    JsonNode node;
    try {
      node = Views.JSON.readTree(body);
    } catch (JsonProcessingException e) {
      throw HttpError.badRequest("the body is not valid JSON (" + e.getOriginalMessage()
          + "): send an object such as {\"load\": {\"tokens\": 100}}");
    }
    if (node == null || !node.isObject()) {
      throw HttpError.badRequest("the body must be a JSON object, such as {\"load\": {\"tokens\": 100}}");
    }
    return node;
  }

  /** Whether the client is still connected. */
  boolean open() {
    return ctx.channel().isActive();
  }

  /** Runs {@code r} if the client goes away before the answer (at once if it already has). */
  void onClose(Runnable r) {
    onClose = r;
    if (!ctx.channel().isActive()) {
      closed();
    }
  }

  /** The connection closed: tells whoever asked. */
  void closed() {
    Runnable r = onClose;
    onClose = null;
    if (r != null && !answered.get()) {
      r.run();
    }
  }

  void json(HttpResponseStatus status, ObjectNode body) {
    json(status, body, null);
  }

  /**
   * Answers with a JSON body. {@code written} hears whether the answer reached the socket (false:
   * the client left first), for answers that hand something over, such as a permit.
   */
  void json(HttpResponseStatus status, ObjectNode body, Consumer<Boolean> written) {
    byte[] bytes;
    try {
      bytes = Views.JSON.writeValueAsBytes(body);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
    respond(status, "application/json", bytes, 0, written);
  }

  void error(HttpError e) {
    respond(e.status, "application/json", errorBody(e), e.retryAfterSeconds, null);
  }

  void text(HttpResponseStatus status, String contentType, String body) {
    respond(status, contentType, body.getBytes(StandardCharsets.UTF_8), 0, null);
  }

  void bytes(HttpResponseStatus status, String contentType, byte[] body) {
    respond(status, contentType, body, 0, null);
  }

  private static byte[] bytes(ObjectNode node) {
    try {
      return Views.JSON.writeValueAsBytes(node);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  private void respond(HttpResponseStatus status, String contentType, byte[] body, long retryAfterSeconds,
      Consumer<Boolean> written) {
    if (!answered.compareAndSet(false, true)) {
      return;
    }
    onClose = null;
    boolean keepAlive = HttpUtil.isKeepAlive(request);
    FullHttpResponse res = response(status, contentType, body, keepAlive);
    if (retryAfterSeconds > 0) {
      res.headers().set(HttpHeaderNames.RETRY_AFTER, Long.toString(retryAfterSeconds));
    }
    if (status.code() == 401) {
      res.headers().set(HttpHeaderNames.WWW_AUTHENTICATE, "Bearer realm=\"sluice\"");
    }
    if (status.code() == 405) {
      res.headers().set(HttpHeaderNames.ALLOW, allowed);
    }
    ChannelFuture f = ctx.writeAndFlush(res);
    f.addListener((ChannelFutureListener) future -> {
      if (written != null) {
        written.accept(future.isSuccess());
      }
      if (!future.isSuccess()) {
        future.channel().close();
        owner.writeFailed(future.cause());
      } else if (!keepAlive) {
        future.channel().close();
      } else {
        owner.answered();
      }
    });
  }

  /** A complete answer with the port's usual headers; its body is a heap buffer (no release owed). */
  static FullHttpResponse response(HttpResponseStatus status, String contentType, byte[] body, boolean keepAlive) {
    FullHttpResponse res = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status, Unpooled.wrappedBuffer(body));
    res.headers().set(HttpHeaderNames.CONTENT_TYPE, contentType);
    res.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, body.length);
    res.headers().set(HttpHeaderNames.CACHE_CONTROL, "no-store");
    res.headers().set("X-Content-Type-Options", "nosniff");
    res.headers().set(HttpHeaderNames.CONNECTION, keepAlive ? HttpHeaderValues.KEEP_ALIVE : HttpHeaderValues.CLOSE);
    return res;
  }

  /** An error body as every refusal on the port has it. */
  static byte[] errorBody(HttpError e) {
    ObjectNode body = Views.error(e.code, e.status.code(), e.getMessage());
    if (e.estimateNanos != EngineException.NO_ESTIMATE) {
      ((ObjectNode) body.get("error")).set("estimate", Views.estimate(e.estimateNanos));
    }
    return bytes(body);
  }

  /** For a 405: the methods the path takes. */
  Exchange allow(String methods) {
    this.allowed = methods;
    return this;
  }

  ChannelHandlerContext context() {
    return ctx;
  }

  /** Marks the request answered without a response of its own (the event stream took it over). */
  boolean takeOver() {
    if (!answered.compareAndSet(false, true)) {
      return false;
    }
    owner.tookOver();
    return true;
  }
}
