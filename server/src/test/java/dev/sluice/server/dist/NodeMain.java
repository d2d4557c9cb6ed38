package dev.sluice.server.dist;

import dev.sluice.server.SluiceServer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * One coordinator node process of the distributed test: a real {@link SluiceServer} on the
 * Redis store. Prints {@code READY <port>} once it serves.
 *
 * <p>Arguments: storeUri nodeId
 */
public final class NodeMain {

  public static void main(String[] args) throws Exception {
    Path data = Files.createTempDirectory("sluice-node-");
    SluiceServer server =
        SluiceServer.builder()
            .host("127.0.0.1")
            .port(0)
            .dataDir(data)
            .store(args[0])
            .nodeId(args[1])
            .shutdownGrace(Duration.ofSeconds(1))
            .build()
            .start();
    System.out.println("READY " + server.port());
    System.out.flush();
    server.awaitTermination();
  }
}
