package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import io.grpc.InternalChannelz;
import io.grpc.InternalInstrumented;
import io.grpc.Server;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The gRPC port against hostile clients (issue 26): a real {@link SluiceServer} on loopback,
 * attacked with raw sockets ({@link RawH2} for hand-written HTTP/2) and grpc-netty clients.
 * Each attack checks the limit that answers it and that the server is left as it was.
 */
class GrpcHostileClientTest {

  @TempDir Path dataDir;
  private final List<AutoCloseable> closeables = new ArrayList<>();

  @AfterEach
  void tearDown() throws Exception {
    for (int i = closeables.size() - 1; i >= 0; i--) {
      closeables.get(i).close();
    }
  }

  private SluiceServer start(Consumer<SluiceServer.Builder> settings) throws Exception {
    SluiceServer.Builder b = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir);
    settings.accept(b);
    SluiceServer s = b.build().start();
    closeables.add(s);
    return s;
  }

  /** Transports the gRPC server still tracks (grpc-java's channelz, which it keeps as it goes). */
  static int transports(SluiceServer s) {
    Server grpc = s.grpcServer();
    long id = ((InternalInstrumented<?>) grpc).getLogId().getId();
    InternalChannelz.ServerSocketsList list = InternalChannelz.instance().getServerSockets(id, 0, 100_000);
    return list == null ? 0 : list.sockets.size();
  }

  @Test
  void aThousandConnectionsClosedBeforeHttp2LeaveNothingBehindAndStopStaysFast() throws Exception {
    SluiceServer s = start(b -> b.shutdownGrace(Duration.ofSeconds(5)));
    try (LogCapture logs = new LogCapture()) {
      for (int i = 0; i < 1000; i++) {
        try (Socket socket = new Socket("127.0.0.1", s.port())) {
          OutputStream out = socket.getOutputStream();
          switch (i % 4) {
            case 0 -> { } // a port scan: connect, close
            case 1 -> out.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n".getBytes(StandardCharsets.US_ASCII)); // curl
            case 2 -> out.write("PRI * HTTP/2.0\r\n".getBytes(StandardCharsets.US_ASCII)); // half a preface
            default -> out.write(new byte[] {0x16, 0x03, 0x01, 0x00, 0x05}); // a TLS hello, to plaintext
          }
          out.flush();
        }
      }
      await().atMost(Duration.ofSeconds(20)).until(() -> transports(s) == 0);
      s.close();
      assertThat(s.drainedInGrace()).as("stop drained every transport within the grace period").isTrue();
      assertThat(logs.warnings()).as("no JUL warning or exception logged").isEmpty();
      assertThat(logs.exceptionLines()).as("no exception logged:%n%s", logs.text()).isZero();
    }
  }
}
