package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.ListLimitsRequest;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.http.HttpApi;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * The HTTP port against clients that mean harm or are broken, over real sockets, each as the
 * attack run of issue 14 found it: idle connections kept for ever, slowloris requests, a flood
 * of connections starving the process of file descriptors (and the gRPC port with it), pipelined
 * 1 MB bodies held behind an event stream, and buffers lost on errors and hang-ups (under
 * paranoid leak detection). Timeouts are a few hundred milliseconds here.
 */
@ExtendWith(NettyLeakCheck.class)
class HttpHostileClientTest {

  private static final Duration SHORT = Duration.ofMillis(300);
  private static final Duration LONG = Duration.ofSeconds(30);

  @TempDir Path dataDir;
  private SluiceServer server;
  private final List<AutoCloseable> open = new ArrayList<>();
  private final ScheduledExecutorService trickle = Executors.newSingleThreadScheduledExecutor();

  private void start(int maxConnections, Duration idle, Duration read, int maxPipelined) throws IOException {
    server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).httpLimits(new HttpApi.Limits(maxConnections, idle, read, maxPipelined))
        .build().start();
    sync(server.engine()).setLimit(new LimitSpec("slow", List.of(new RateSpec("requests", 1000, Duration.ofSeconds(1),
        1000)), 0, 1000, null));
    sync(server.engine()).pause("slow", -1); // acquires on it wait: long polls
  }

  @AfterEach
  void stop() throws Exception {
    trickle.shutdownNow();
    for (AutoCloseable c : open) {
      c.close();
    }
    if (server != null) {
      server.close();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Raw sockets

  private Socket connect() throws IOException {
    Socket s = new Socket("127.0.0.1", server.httpPort());
    s.setSoTimeout(10_000);
    open.add(s);
    return s;
  }

  private static void send(Socket s, String text) throws IOException {
    s.getOutputStream().write(text.getBytes(StandardCharsets.US_ASCII));
    s.getOutputStream().flush();
  }

  /** What the server sends until it closes the connection; fails if it stays open 10 s. */
  private static String readToEnd(Socket s) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    InputStream in = s.getInputStream();
    byte[] b = new byte[8192];
    for (int n; (n = in.read(b)) >= 0; ) {
      out.write(b, 0, n);
    }
    return out.toString(StandardCharsets.US_ASCII);
  }

  /** Reads until {@code text} has come; the connection stays open. */
  private static String readUntil(Socket s, String text) throws IOException {
    StringBuilder seen = new StringBuilder();
    InputStream in = s.getInputStream();
    while (!seen.toString().contains(text)) {
      int c = in.read();
      if (c < 0) {
        throw new IOException("closed before '" + text + "'; got: " + seen);
      }
      seen.append((char) c);
    }
    return seen.toString();
  }

  /** Whether the server still holds the connection (nothing, or more data, to read at once). */
  private static boolean stillOpen(Socket s) throws IOException {
    s.setSoTimeout(50);
    try {
      return s.getInputStream().read() >= 0;
    } catch (SocketTimeoutException e) {
      return true;
    } finally {
      s.setSoTimeout(10_000);
    }
  }

  /** One request on its own connection ({@code Connection: close}): the whole answer. */
  private String call(String method, String path) throws IOException {
    return call(method, path, "");
  }

  private String call(String method, String path, String body) throws IOException {
    try (Socket s = new Socket("127.0.0.1", server.httpPort())) {
      s.setSoTimeout(10_000);
      send(s, method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " + body.length()
          + "\r\n\r\n" + body);
      return readToEnd(s);
    }
  }

  private double metric(String series) throws IOException {
    Matcher m = Pattern.compile("(?m)^" + Pattern.quote(series) + " (\\S+)$").matcher(call("GET", "/metrics"));
    return m.find() ? Double.parseDouble(m.group(1)) : 0;
  }

  private static String closed(String reason) {
    return "sluice_http_connections_closed_total{reason=\"" + reason + "\"}";
  }

  private String longPoll(Socket s, String body) throws IOException {
    String head = "POST /v1/resources/slow/acquire?timeout=60s HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + body.length() + "\r\n\r\n";
    send(s, head + body);
    return head;
  }

  private int waiting() {
    return sync(server.engine()).stats("slow").waiting().get(Lane.DEFAULT);
  }

  /** The gRPC port answers an admin call and an acquire over real channels. */
  private void grpcStillServes() throws Exception {
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
    try (SluiceClient client = SluiceClient.builder().target("127.0.0.1:" + server.port()).build()) {
      assertThat(AdminGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.SECONDS)
          .listLimits(ListLimitsRequest.getDefaultInstance()).getLimitsCount()).isGreaterThanOrEqualTo(2);
      try (Permit p = client.acquire("free", Load.requests(1),
          AcquireOptions.builder().timeout(Duration.ofSeconds(5)).build())) {
        assertThat(p).isNotNull();
      }
    } finally {
      ch.shutdownNow();
    }
  }

  private void freeResource() {
    sync(server.engine()).setLimit(new LimitSpec("free", List.of(new RateSpec("requests", 1000, Duration.ofSeconds(1),
        1000)), 0, 1000, null));
  }

  // ---------------------------------------------------------------------------------------
  // Finding 4: idle connections, slowloris, the connection cap, pipelining

  @Test
  void idleConnectionsAreClosedButLongPollsAndEventStreamsAreNot() throws Exception {
    start(100, SHORT, LONG, 8);
    Socket poll = connect();
    longPoll(poll, "");
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting() == 1);
    Socket events = connect();
    send(events, "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n");
    readUntil(events, "event: snapshot");

    List<Socket> idle = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      idle.add(connect()); // never sends a byte
    }
    Socket keptAlive = connect();
    send(keptAlive, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    readUntil(keptAlive, "ok\n");
    for (Socket s : idle) {
      assertThat(readToEnd(s)).as("an idle connection is closed, silently").isEmpty();
    }
    assertThat(readToEnd(keptAlive)).as("idle after its answer").isEmpty();

    // Both were idle on the wire longer than the idle ones, but have something open.
    assertThat(stillOpen(poll)).isTrue();
    assertThat(waiting()).isEqualTo(1);
    readUntil(events, "event: snapshot"); // the next sample still comes
    assertThat(metric(closed("idle"))).isGreaterThanOrEqualTo(11);
  }

  @Test
  void slowlorisHeadersAndBodiesAre408AndClosed() throws Exception {
    start(100, LONG, SHORT, 8);
    Socket headers = connect();
    send(headers, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    Socket body = connect();
    send(body, "POST /v1/resources/slow/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{");
    // A byte every 50 ms: never idle, never done.
    trickle.scheduleAtFixedRate(() -> {
      try {
        send(headers, "X-Slow: 1\r\n");
      } catch (IOException closed) {
        // the server hung up: what we wait for
      }
      try {
        send(body, " ");
      } catch (IOException closed) {
        // idem
      }
    }, 50, 50, TimeUnit.MILLISECONDS);

    for (Socket s : List.of(headers, body)) {
      String answer = readToEnd(s);
      assertThat(answer).startsWith("HTTP/1.1 408 ").contains("connection: close")
          .contains("\"code\":\"DEADLINE_EXCEEDED\"").contains("--http-read-timeout");
    }
    assertThat(waiting()).as("the half-sent acquire never reached the engine").isZero();
    assertThat(call("GET", "/healthz")).startsWith("HTTP/1.1 200 ");
    assertThat(metric(closed("read_timeout"))).isEqualTo(2);
  }

  @Test
  void atTheCapTheLongestWaitingConnectionMakesRoomAndGrpcAndHealthzStillAnswer() throws Exception {
    start(20, LONG, LONG, 8);
    freeResource();
    List<Socket> flood = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      Socket s = connect();
      if (i % 2 == 1) {
        send(s, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); // slowloris, mid-header
      }
      flood.add(s);
    }
    // The port holds its cap of idle and slowloris connections: probes and workers still get in.
    assertThat(call("GET", "/healthz")).startsWith("HTTP/1.1 200 ");
    grpcStillServes();
    assertThat(readToEnd(flood.get(0))).as("the longest waiting made room").isEmpty();

    for (int i = 0; i < 30; i++) {
      connect(); // a flood on top
    }
    assertThat(call("GET", "/healthz")).startsWith("HTTP/1.1 200 ");
    String metrics = call("GET", "/metrics");
    Matcher gauge = Pattern.compile("(?m)^sluice_http_connections (\\S+)$").matcher(metrics);
    assertThat(gauge.find()).isTrue();
    assertThat(Double.parseDouble(gauge.group(1))).as("never past the cap").isLessThanOrEqualTo(20);
    assertThat(metric(closed("evicted"))).isGreaterThanOrEqualTo(30);
    grpcStillServes();
  }

  @Test
  void whenEveryConnectionHasARequestBeingAnsweredANewOneIsRefusedAtOnce() throws Exception {
    start(5, LONG, LONG, 8);
    freeResource();
    List<Socket> polls = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      Socket s = connect();
      longPoll(s, "");
      polls.add(s);
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting() == 5);
    Socket refused = connect();
    assertThat(readToEnd(refused)).as("closed at accept, nothing read").isEmpty();
    assertThat(waiting()).as("no long poll was cut for it").isEqualTo(5);
    grpcStillServes();

    sync(server.engine()).resume("slow");
    for (Socket s : polls) {
      assertThat(readUntil(s, "\r\n")).startsWith("HTTP/1.1 200 ");
    }
    assertThat(metric(closed("refused"))).isEqualTo(1);
  }

  /**
   * Writes {@code posts} pipelined requests with 1 MB bodies without waiting for answers;
   * answers the bytes sent when the server had read nothing for a second, or all of them.
   */
  private static long pipeline(SocketChannel ch, String path, int posts) throws IOException {
    byte[] body = new byte[1_000_000];
    Arrays.fill(body, (byte) 'x'); // not JSON: a 400 once read
    byte[] head = ("POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + body.length + "\r\n\r\n")
        .getBytes(StandardCharsets.US_ASCII);
    ch.configureBlocking(false);
    long sent = 0;
    try (Selector selector = Selector.open()) {
      ch.register(selector, SelectionKey.OP_WRITE);
      for (int i = 0; i < posts; i++) {
        for (ByteBuffer b : List.of(ByteBuffer.wrap(head), ByteBuffer.wrap(body))) {
          while (b.hasRemaining()) {
            int n = ch.write(b);
            sent += n;
            if (n == 0) {
              selector.selectedKeys().clear();
              if (selector.select(1000) == 0) {
                return sent; // the server stopped reading
              }
            }
          }
        }
      }
    }
    return sent;
  }

  private SocketChannel channel() throws IOException {
    SocketChannel ch = SocketChannel.open();
    ch.setOption(StandardSocketOptions.SO_SNDBUF, 64 * 1024);
    ch.connect(new InetSocketAddress("127.0.0.1", server.httpPort()));
    open.add(ch);
    return ch;
  }

  @Test
  void pipelinedBodiesBehindAnEventStreamAreNotRead() throws Exception {
    start(100, LONG, LONG, 8);
    SocketChannel ch = channel();
    ch.write(ByteBuffer.wrap("GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII)));
    long sent = pipeline(ch, "/v1/resources/slow/acquire", 30);
    // Before: all 30 MB were read and held (300 MB for 300 posts). Now the stream stops reading:
    // what was sent sits in the kernel's socket buffers (about 0.2 MB here).
    assertThat(sent).as("bytes the client could send").isLessThan(10_000_000);
    assertThat(call("GET", "/healthz")).startsWith("HTTP/1.1 200 ");
  }

  @Test
  void pipelinedBodiesBehindALongPollStopAtTheBoundAndResumeWhenAnswered() throws Exception {
    start(100, LONG, LONG, 2);
    SocketChannel ch = channel();
    ch.write(ByteBuffer.wrap(("POST /v1/resources/slow/acquire?timeout=60s HTTP/1.1\r\nHost: x\r\n"
        + "Content-Length: 0\r\n\r\n").getBytes(StandardCharsets.US_ASCII)));
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting() == 1);
    long sent = pipeline(ch, "/v1/resources/slow/acquire", 40);
    // Two queued, one being read, the kernel's socket buffers: about 3 MB here, all 40 MB before.
    assertThat(sent).as("bytes the client could send").isLessThan(20_000_000);
    assertThat(metric("sluice_http_reads_paused_total")).isGreaterThanOrEqualTo(1);

    // Once the long poll is answered, the queued requests are: reading went on.
    sync(server.engine()).resume("slow");
    ch.configureBlocking(true);
    Socket s = ch.socket();
    s.setSoTimeout(10_000);
    assertThat(readUntil(s, "\r\n")).startsWith("HTTP/1.1 200 ");
    readUntil(s, "HTTP/1.1 400 ");
    readUntil(s, "not valid JSON");
  }

  // ---------------------------------------------------------------------------------------
  // Finding 13: every path releases its buffers (the class runs under paranoid leak detection)

  @Test
  void errorsHangUpsAndPipelinesLeaveNoBufferBehind() throws Exception {
    start(100, LONG, SHORT, 8);
    String big = "{\"requestId\": \"" + "r".repeat(200_000) + "\"}";
    // 400, 404, 405 on connections that close after the answer, with 200 KB bodies.
    for (String[] c : new String[][] {{"POST", "/v1/resources/slow/acquire", "{no"}, {"POST", "/v1/nothing", big},
        {"GET", "/v1/resources/slow/acquire", ""}, {"DELETE", "/healthz", big}, {"POST", "/v1/resources/slow/ACQUIRE",
        big}}) {
      assertThat(call(c[0], c[1], c[2])).matches("(?s)HTTP/1\\.1 40[045] .*");
    }
    // 408: a body that never completes.
    Socket slow = connect();
    send(slow, "POST /v1/resources/slow/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n"
        + big.substring(0, 100_000));
    assertThat(readToEnd(slow)).startsWith("HTTP/1.1 408 ");
    // Long polls with 200 KB bodies whose callers hang up.
    List<Socket> polls = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      Socket s = connect();
      longPoll(s, "{\"requestId\": \"hang-" + i + "\"," + " ".repeat(200_000) + "\"lane\": \"default\"}");
      polls.add(s);
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting() == 10);
    for (Socket s : polls) {
      s.close();
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting() == 0);
    // Pipelined requests, answered in order, then a hang-up with some still queued.
    Socket pipelined = connect();
    StringBuilder many = new StringBuilder();
    for (int i = 0; i < 5; i++) {
      many.append("POST /v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: ").append(big.length()).append("\r\n\r\n")
          .append(big);
    }
    send(pipelined, many.toString());
    for (int i = 0; i < 5; i++) {
      readUntil(pipelined, "HTTP/1.1 404 ");
    }
    Socket cut = connect();
    longPoll(cut, "");
    send(cut, many.toString());
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting() == 1);
    cut.close();
    await().atMost(Duration.ofSeconds(10)).until(() -> waiting() == 0);
    // Pushes to a (paused) buffer, answered on connections that close.
    assertThat(call("POST", "/v1/buffers", "{\"name\": \"b\", \"url\": \"http://192.0.2.1/in\", \"rate\":"
        + " {\"amount\": 10}}")).startsWith("HTTP/1.1 201 ");
    assertThat(call("POST", "/v1/buffers/b/pause", "")).startsWith("HTTP/1.1 200 ");
    for (int i = 0; i < 3; i++) {
      assertThat(call("POST", "/v1/buffers/b/items", "{\"body\": \"" + "p".repeat(100_000) + "\"}"))
          .startsWith("HTTP/1.1 202 ");
    }
    // An event stream closed by its reader.
    Socket events = connect();
    send(events, "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n");
    readUntil(events, "event: snapshot");
    events.close();
    assertThat(call("GET", "/healthz")).startsWith("HTTP/1.1 200 ");
    // NettyLeakCheck fails the test if any of these left a buffer unreleased.
  }
}
