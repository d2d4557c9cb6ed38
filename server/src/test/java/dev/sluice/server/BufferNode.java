package dev.sluice.server;

import java.nio.file.Path;
import java.time.Duration;

/**
 * A coordinator process of {@link BufferIT}, killed with SIGKILL and started again on the same
 * data directory. Prints {@code READY <http port>} once it serves.
 */
public final class BufferNode {

  public static void main(String[] args) throws Exception {
    SluiceServer server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(Path.of(args[0]))
        .shutdownGrace(Duration.ZERO).build().start();
    System.out.println("READY " + server.httpPort());
    System.out.flush();
    server.awaitTermination();
  }
}
