package dev.sluice.server.http;

import dev.sluice.server.auth.AuthInterceptor;
import dev.sluice.server.auth.KeyStore;
import dev.sluice.server.config.ServerConfigKeys.Http;
import dev.sluice.server.engine.Engine;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.http.DefaultHttpContent;
import io.netty.handler.codec.http.DefaultHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpServerExpectContinueHandler;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.util.concurrent.GlobalEventExecutor;
import com.sun.management.UnixOperatingSystemMXBean;
import io.netty.buffer.ByteBufUtil;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelOutboundHandlerAdapter;
import io.netty.handler.codec.http.LastHttpContent;
import io.netty.handler.timeout.IdleStateEvent;
import io.netty.handler.timeout.IdleStateHandler;
import io.netty.util.concurrent.ScheduledFuture;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The coordinator's HTTP port (default 7421): Prometheus {@code /metrics}, {@code /healthz} and
 * {@code /readyz}, the live dashboard at {@code /} with its event stream, and the HTTP/JSON
 * worker API for languages without a gRPC client (docs/http-api.md).
 *
 * <p>On Netty, like the gRPC port: one event-loop thread takes the connections; a long-poll
 * acquire is an engine ticket, never a parked thread. Calls that may wait for the store run on
 * a small pool so the event loop stays free.
 */
public final class HttpApi implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(HttpApi.class);
  private static final String DASHBOARD = "/dev/sluice/server/http/dashboard/";
  /** Event-stream clients at most; a dashboard tab holds one. */
  static final int MAX_STREAMS = 256;

  private final Options options;
  private final JsonApi api;
  private final ChannelGroup streams = new DefaultChannelGroup("sluice-sse", GlobalEventExecutor.INSTANCE);
  private final Map<String, byte[]> assets = new ConcurrentHashMap<>();
  private final HttpConnections connections;
  private EventLoopGroup group;
  private ExecutorService pool;
  private Channel listener;
  private volatile boolean closed;

  /**
   * What the HTTP port serves.
   *
   * @param host address to bind
   * @param port port; 0 picks a free one
   * @param engine the engine
   * @param keys API keys: while empty the port is open like the gRPC port
   * @param auth checks a key (shared with the gRPC port)
   * @param registry the registry {@code /metrics} scrapes
   * @param sampler the dashboard's and gauges' once-a-second reading
   * @param ready whether {@code /readyz} says ready (serving, store reachable)
   * @param maxWaitNanos the server's longest wait
   * @param node this node's name on the page
   * @param buffers the buffers, or null where they are not available (shared store)
   * @param limits what one client may hold on the port
   * @param prices the price table, or null for none
   * @param poolMeters the pool grants per member, counted where the port hands a grant over
   */
  public record Options(
      String host,
      int port,
      Engine engine,
      KeyStore keys,
      AuthInterceptor auth,
      PrometheusMeterRegistry registry,
      ResourceSampler sampler,
      BooleanSupplier ready,
      long maxWaitNanos,
      String node,
      dev.sluice.buffers.Buffers buffers,
      Limits limits,
      dev.sluice.server.price.Prices prices,
      PoolMeters poolMeters,
      dev.sluice.server.limits.LimitChanges changes) {}

  /**
   * What clients may hold on the HTTP port, so that a flood of connections with no key can cost
   * neither the gRPC port nor the process its file descriptors or memory (SECURITY.md, "HTTP port
   * limits").
   *
   * @param maxConnections open connections at most ({@code --http-max-connections}); at the cap the
   *     connection waiting longest without a request is closed to make room, and a new one is
   *     refused only when every connection has a request being answered
   * @param idleTimeout a connection with no request being answered (and no long poll or event
   *     stream open) that sends nothing for this long is closed ({@code --http-idle-timeout})
   * @param readTimeout a request must arrive whole (headers and body) within this long of its
   *     first byte, else 408 and the connection is closed ({@code --http-read-timeout})
   * @param maxPipelined requests one connection may have waiting behind the one being answered;
   *     at the bound the port stops reading the connection until they are answered ({@code
   *     --http-max-pipelined})
   */
  public record Limits(int maxConnections, Duration idleTimeout, Duration readTimeout, int maxPipelined) {

    /** Checks each value; the message names the flag and the range. */
    public Limits {
      if (maxConnections < 1 || maxConnections > 1_000_000) {
        throw new IllegalArgumentException("--http-max-connections " + maxConnections + " is out of range: use 1 to"
            + " 1000000");
      }
      Http.IDLE_TIMEOUT.check(idleTimeout);
      Http.READ_TIMEOUT.check(readTimeout);
      Http.MAX_PIPELINED.check(maxPipelined);
    }

    /** The defaults: {@link #defaultMaxConnections()}, idle 75 s, read 20 s, 8 pipelined. */
    public static Limits defaults() {
      return new Limits(defaultMaxConnections(), Http.IDLE_TIMEOUT.defaultValue(), Http.READ_TIMEOUT.defaultValue(),
          Http.MAX_PIPELINED.defaultValue());
    }

    /**
     * 1 024, or half the process's open-file limit when that is lower (at least 16): the other
     * half stays for the gRPC port, the stores and the data files.
     */
    public static int defaultMaxConnections() {
      long files = ManagementFactory.getOperatingSystemMXBean() instanceof UnixOperatingSystemMXBean unix
          ? unix.getMaxFileDescriptorCount() : Long.MAX_VALUE;
      return (int) Math.max(16, Math.min(1024, files / 2));
    }
  }

  public HttpApi(Options options) {
    this.options = options;
    this.api = new JsonApi(options);
    this.connections = new HttpConnections(options.limits().maxConnections(), options.registry(), System::nanoTime);
    options.sampler().onSample(this::broadcast);
  }

  /** Binds the port. */
  public HttpApi start() throws IOException {
    group = new MultiThreadIoEventLoopGroup(1, daemon("sluice-http"), NioIoHandler.newFactory());
    pool = new ThreadPoolExecutor(2, 2, 0, TimeUnit.SECONDS, new LinkedBlockingQueue<>(10_000),
        daemon("sluice-http-call"));
    ServerBootstrap b = new ServerBootstrap()
        .group(group)
        .channel(NioServerSocketChannel.class)
        .childHandler(new ChannelInitializer<SocketChannel>() {
          @Override
          protected void initChannel(SocketChannel ch) {
            if (!connections.admit(ch)) {
              ch.close();
              return;
            }
            Connection c = new Connection(ch);
            ch.pipeline()
                .addLast(c.readGate)
                .addLast(new IdleStateHandler(0, 0, options.limits().idleTimeout().toNanos(), TimeUnit.NANOSECONDS))
                .addLast(c.firstByte)
                .addLast(new HttpServerCodec(8192, 16384, 16384))
                .addLast(c.lastByte)
                .addLast(new HttpServerExpectContinueHandler())
                .addLast(new HttpObjectAggregator(1 << 20))
                .addLast(c);
          }
        });
    try {
      listener = b.bind(new InetSocketAddress(options.host(), options.port())).sync().channel();
    } catch (Exception e) {
      close();
      throw new IOException("cannot listen on " + options.host() + ":" + options.port() + " for HTTP ("
          + e.getMessage() + "): is another server using it? choose another --http-port", e);
    }
    return this;
  }

  /** The limits, for the start line. */
  public String describeLimits() {
    Limits l = options.limits();
    return "at most " + l.maxConnections() + " connections, idle " + l.idleTimeout().toMillis() / 1000.0 + " s, read "
        + l.readTimeout().toMillis() / 1000.0 + " s, " + l.maxPipelined() + " pipelined";
  }

  /** The bound port. */
  public int port() {
    return ((InetSocketAddress) listener.localAddress()).getPort();
  }

  @Override
  public void close() {
    closed = true;
    streams.close();
    if (listener != null) {
      listener.close().syncUninterruptibly();
    }
    if (group != null) {
      group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    }
    if (pool != null) {
      pool.shutdownNow();
    }
  }

  /**
   * One connection: answers its requests one at a time, in order. Its memory is bounded: a
   * request's body is copied to the heap and its pooled buffer freed as it arrives; at most
   * {@code maxPipelined} requests wait behind the one being answered (then reading stops until
   * they are); an event stream stops reading altogether (nothing after it could be answered, and
   * a hang-up shows on its next write).
   */
  private final class Connection extends SimpleChannelInboundHandler<FullHttpRequest> implements Exchange.Owner {
    private final Channel ch;
    private final ArrayDeque<FullHttpRequest> queued = new ArrayDeque<>();
    private Exchange current;
    private boolean streaming;
    /** Closes a request that does not arrive whole within the read timeout of its first byte. */
    private ScheduledFuture<?> readDeadline;

    /**
     * First in line: while reading is paused, no handler reads either. The codec and the
     * aggregator ask for more bytes themselves while a request is half in (autoRead off or not),
     * which would read every pipelined body anyway.
     */
    final ChannelOutboundHandlerAdapter readGate = new ChannelOutboundHandlerAdapter() {
      @Override
      public void read(ChannelHandlerContext ctx) {
        if (ch.config().isAutoRead()) {
          ctx.read();
        }
      }
    };

    /** Before the codec: a request's first byte starts the read deadline. */
    final ChannelInboundHandlerAdapter firstByte = new ChannelInboundHandlerAdapter() {
      @Override
      public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (readDeadline == null && !streaming) {
          readDeadline = ctx.executor().schedule(Connection.this::readTimedOut,
              options.limits().readTimeout().toNanos(), TimeUnit.NANOSECONDS);
        }
        ctx.fireChannelRead(msg);
      }
    };

    /** After the codec: a request's last byte ends it. */
    final ChannelInboundHandlerAdapter lastByte = new ChannelInboundHandlerAdapter() {
      @Override
      public void channelRead(ChannelHandlerContext ctx, Object msg) {
        if (msg instanceof LastHttpContent) {
          cancelReadDeadline();
        }
        ctx.fireChannelRead(msg);
      }
    };

    Connection(Channel ch) {
      this.ch = ch;
    }

    @Override
    protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest req) {
      if (streaming) {
        return; // read before the stream stopped reading; never answered
      }
      // A heap copy: the pooled buffer is freed when this returns, whatever becomes of the request.
      queued.add(req.replace(Unpooled.wrappedBuffer(ByteBufUtil.getBytes(req.content()))));
      if (current == null) {
        next(ctx);
      }
      flow();
    }

    private void next(ChannelHandlerContext ctx) {
      FullHttpRequest req = queued.poll();
      if (req == null) {
        current = null;
        connections.waiting(ch);
        return;
      }
      connections.busy(ch);
      Exchange x = new Exchange(ctx, req, this);
      current = x;
      try {
        route(x);
      } catch (RuntimeException e) {
        x.error(HttpError.of(e));
      }
    }

    /** Reads while the pipelined requests stay under the bound; not at all once streaming. */
    private void flow() {
      boolean read = !streaming && (current == null || queued.size() < options.limits().maxPipelined());
      if (ch.config().isAutoRead() != read) {
        ch.config().setAutoRead(read);
        if (!read && !streaming) {
          connections.pausedReading();
        }
      }
    }

    @Override
    public void answered() {
      if (ch.eventLoop().inEventLoop()) {
        afterAnswer();
      } else {
        ch.eventLoop().execute(this::afterAnswer);
      }
    }

    private void afterAnswer() {
      ChannelHandlerContext ctx = ch.pipeline().context(this);
      if (ctx != null && !streaming) {
        next(ctx);
        flow();
      }
    }

    @Override
    public void tookOver() {
      streaming = true;
      queued.clear();
      cancelReadDeadline();
      flow();
    }

    @Override
    public void writeFailed(Throwable cause) {
      connections.failed(ch, cause);
    }

    private void readTimedOut() {
      readDeadline = null;
      if (!ch.isActive()) {
        return;
      }
      connections.count(HttpConnections.Reason.READ_TIMEOUT);
      if (current != null || !queued.isEmpty()) {
        ch.close(); // an answer is owed first: a 408 now would be read as that answer
        return;
      }
      HttpError e = new HttpError(HttpResponseStatus.REQUEST_TIMEOUT, "DEADLINE_EXCEEDED", "the request did not"
          + " arrive whole within " + options.limits().readTimeout().toMillis() + " ms of its first byte"
          + " (--http-read-timeout): send the headers and the body without pausing");
      ch.writeAndFlush(Exchange.response(e.status, "application/json", Exchange.errorBody(e), false))
          .addListener(ChannelFutureListener.CLOSE);
    }

    private void cancelReadDeadline() {
      if (readDeadline != null) {
        readDeadline.cancel(false);
        readDeadline = null;
      }
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
      if (!(evt instanceof IdleStateEvent)) {
        ctx.fireUserEventTriggered(evt);
      } else if (current == null && queued.isEmpty() && !streaming) {
        connections.count(HttpConnections.Reason.IDLE);
        ctx.close();
      }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
      cancelReadDeadline();
      if (current != null) {
        current.closed();
      }
      queued.clear();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      connections.failed(ch, cause);
      ctx.close();
    }
  }

  private void route(Exchange x) {
    if (!x.request().decoderResult().isSuccess()) {
      throw HttpError.badRequest("malformed HTTP request: " + x.request().decoderResult().cause());
    }
    String path = x.rawPath();
    String method = x.method();
    switch (path) {
      case "/healthz" -> {
        only(x, "GET", "HEAD");
        x.text(closed ? HttpResponseStatus.SERVICE_UNAVAILABLE : HttpResponseStatus.OK, "text/plain; charset=utf-8",
            closed ? "stopping\n" : "ok\n");
        return;
      }
      case "/readyz" -> {
        only(x, "GET", "HEAD");
        boolean ready = !closed && options.ready().getAsBoolean();
        x.text(ready ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8",
            ready ? "ready\n" : "not ready: stopping, or the store is unreachable\n");
        return;
      }
      case "/metrics" -> {
        only(x, "GET");
        offload(x, () -> x.text(HttpResponseStatus.OK, "text/plain; version=0.0.4; charset=utf-8",
            options.registry().scrape()));
        return;
      }
      case "/", "/index.html" -> {
        only(x, "GET", "HEAD");
        asset(x, "index.html");
        return;
      }
      case "/v1/events" -> {
        only(x, "GET");
        stream(x);
        return;
      }
      default -> { }
    }
    if (path.startsWith("/dashboard/")) {
      only(x, "GET", "HEAD");
      asset(x, path.substring("/dashboard/".length()));
      return;
    }
    if (path.startsWith("/v1/")) {
      api.route(x, method, path, this::offload);
      return;
    }
    throw new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", "no such endpoint: " + method + " " + path
        + "; the HTTP port serves /metrics, /healthz, /readyz, the dashboard at / and the /v1/ API (see"
        + " docs/http-api.md)");
  }

  static void only(Exchange x, String... methods) {
    for (String m : methods) {
      if (m.equals(x.method())) {
        return;
      }
    }
    x.allow(String.join(", ", methods));
    throw new HttpError(HttpResponseStatus.METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", x.method() + " "
        + x.rawPath() + " is not served: use " + String.join(" or ", methods) + " " + x.rawPath());
  }

  /** Runs {@code work} off the event loop; its failure becomes the answer. */
  private void offload(Exchange x, Runnable work) {
    try {
      pool.execute(() -> {
        try {
          work.run();
        } catch (RuntimeException e) {
          x.error(HttpError.of(e));
        }
      });
    } catch (java.util.concurrent.RejectedExecutionException e) {
      x.error(new HttpError(HttpResponseStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE",
          "the HTTP port is overloaded or stopping: retry shortly", 1));
    }
  }

  private void asset(Exchange x, String name) {
    if (name.isEmpty() || name.contains("..") || name.contains("\\") || name.startsWith("/")) {
      throw new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", "no such dashboard file: " + name);
    }
    byte[] body = assets.get(name);
    if (body == null) {
      body = load(name);
      if (body.length > 0) {
        assets.put(name, body); // only files that exist: a stream of made-up names must not grow the map
      }
    }
    if (body.length == 0) {
      throw new HttpError(HttpResponseStatus.NOT_FOUND, "NOT_FOUND", "no such dashboard file: " + name);
    }
    x.bytes(HttpResponseStatus.OK, contentType(name), body);
  }

  private static byte[] load(String name) {
    try (InputStream in = HttpApi.class.getResourceAsStream(DASHBOARD + name)) {
      return in == null ? new byte[0] : in.readAllBytes();
    } catch (IOException e) {
      return new byte[0];
    }
  }

  private static String contentType(String name) {
    String ext = name.substring(name.lastIndexOf('.') + 1);
    return switch (ext) {
      case "html" -> "text/html; charset=utf-8";
      case "js", "mjs" -> "text/javascript; charset=utf-8";
      case "css" -> "text/css; charset=utf-8";
      case "svg" -> "image/svg+xml";
      case "png" -> "image/png";
      case "json" -> "application/json";
      default -> "application/octet-stream";
    };
  }

  /** {@code GET /v1/events}: the sample as {@code event: snapshot} once a second. */
  private void stream(Exchange x) {
    if (streams.size() >= MAX_STREAMS) {
      throw new HttpError(HttpResponseStatus.SERVICE_UNAVAILABLE, "UNAVAILABLE", MAX_STREAMS
          + " event streams are open already: close some dashboards, or poll GET /v1/resources", 5);
    }
    if (!x.takeOver()) {
      return;
    }
    HttpResponse res = new DefaultHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.OK);
    res.headers().set(HttpHeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
    res.headers().set(HttpHeaderNames.CACHE_CONTROL, "no-store");
    HttpUtil.setTransferEncodingChunked(res, true);
    Channel ch = x.context().channel();
    ch.write(res);
    String first = "retry: 2000\n\n" + event(options.sampler().latest());
    ch.writeAndFlush(new DefaultHttpContent(Unpooled.copiedBuffer(first, StandardCharsets.UTF_8)));
    streams.add(ch); // removed from the group when it closes
  }

  private String event(ResourceSampler.Sample s) {
    return "event: snapshot\ndata: " + Views.sample(s, options.node(), options.poolMeters()) + "\n\n";
  }

  private void broadcast(ResourceSampler.Sample s) {
    if (streams.isEmpty() || closed) {
      return;
    }
    byte[] bytes = event(s).getBytes(StandardCharsets.UTF_8);
    for (Channel ch : streams) {
      if (ch.isWritable()) { // a reader that fell behind skips a second rather than piling up
        ch.writeAndFlush(new DefaultHttpContent(Unpooled.wrappedBuffer(bytes)));
      }
    }
  }

  private static java.util.concurrent.ThreadFactory daemon(String name) {
    AtomicInteger n = new AtomicInteger();
    return r -> {
      Thread t = new Thread(r, name + "-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    };
  }
}
