package dev.sluice.server;

import java.nio.file.Path;
import java.time.Duration;

/**
 * A coordinator process of {@link BufferIT}, killed with SIGKILL and started again. Arguments:
 * the data dir, and optionally a Redis URI and node id (distributed mode, a 2 s buffer lease).
 * Prints {@code READY <http port>} once it serves.
 */
public final class BufferNode {

  public static void main(String[] args) throws Exception {
    SluiceServer.Builder b = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(Path.of(args[0]))
        .shutdownGrace(Duration.ZERO);
    if (args.length > 1) {
      b.store(args[1]).nodeId(args[2]).bufferLease(Duration.ofSeconds(2));
    }
    SluiceServer server = b.build().start();
    System.out.println("READY " + server.httpPort());
    System.out.flush();
    server.awaitTermination();
  }
}
