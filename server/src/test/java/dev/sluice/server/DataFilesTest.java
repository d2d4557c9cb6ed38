package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.Role;
import dev.sluice.server.engine.LimitSpec;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The data dir's files hold key hashes and buffer header secrets: each one 0600 and the dir 0700
 * when Sluice makes it, whatever the umask; a data file that is a directory is named.
 */
class DataFilesTest {

  @TempDir Path tmp;

  private static final List<String> FILES =
      List.of("buffers.db", "buffers.db-wal", "buffers.db-shm", "keys.json", "limits.json");

  private static String mode(Path p) throws IOException {
    return PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
  }

  /**
   * A coordinator started under {@code umask 000} (a child process: a JVM cannot change its own
   * umask), writing a limit and a key, with its buffer store open.
   */
  @Test
  void underAnOpenUmaskEveryDataFileIsOwnerOnly() throws Exception {
    Path data = tmp.resolve("new").resolve("data");
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    String command = "umask 000 && exec '" + java + "' -Xmx128m -cp '" + System.getProperty("java.class.path") + "' '"
        + Child.class.getName() + "' '" + data + "'";
    Process p = new ProcessBuilder("sh", "-c", command).redirectErrorStream(true).start();
    try {
      BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
      StringBuilder log = new StringBuilder();
      String line;
      while ((line = out.readLine()) != null && !line.equals("READY")) {
        log.append(line).append('\n');
      }
      assertThat(line).as("the child stopped before READY:\n%s", log).isEqualTo("READY");
      // Under umask 000 a file made without a mode would be rw-rw-rw- or rw-r--r--.
      for (String f : FILES) {
        assertThat(mode(data.resolve(f))).as(f).isEqualTo("rw-------");
      }
      assertThat(mode(data)).as("the data dir Sluice made").isEqualTo("rwx------");
    } finally {
      p.getOutputStream().close(); // the child stops when its stdin closes
      if (!p.waitFor(20, TimeUnit.SECONDS)) {
        p.destroyForcibly();
      }
    }
  }

  /** Files of an older version (or made by hand) readable by others are narrowed at start. */
  @Test
  void existingFilesAreNarrowedAtStart() throws Exception {
    Files.writeString(tmp.resolve("limits.json"), "{\"version\":1,\"limits\":[]}");
    Files.writeString(tmp.resolve("keys.json"), "{\"version\":1,\"keys\":[]}");
    Files.createFile(tmp.resolve("buffers.db"));
    for (String f : List.of("limits.json", "keys.json", "buffers.db")) {
      Files.setPosixFilePermissions(tmp.resolve(f), PosixFilePermissions.fromString("rw-rw-rw-"));
    }
    try (SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(tmp)
        .shutdownGrace(Duration.ZERO).build().start()) {
      for (String f : FILES) {
        assertThat(mode(tmp.resolve(f))).as(f).isEqualTo("rw-------");
      }
    }
  }

  @Test
  void aDataFileThatIsADirectoryIsNamed() throws Exception {
    for (String f : List.of("buffers.db", "keys.json", "limits.json")) {
      Path dir = tmp.resolve(f.replace('.', '-'));
      Files.createDirectories(dir.resolve(f));
      assertThatThrownBy(() -> SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir)
          .shutdownGrace(Duration.ZERO).build().start().close())
          .as(f).isInstanceOf(IOException.class).hasMessageContaining(dir.resolve(f) + " is a directory");
    }
  }

  /** The coordinator of {@link #underAnOpenUmaskEveryDataFileIsOwnerOnly}: prints READY, stops at end of stdin. */
  public static final class Child {
    public static void main(String[] args) throws Exception {
      try (SluiceServer s = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(Path.of(args[0]))
          .shutdownGrace(Duration.ZERO).build().start()) {
        sync(s.engine()).setLimit(new LimitSpec("team1:a", List.of(), 1, 0, Duration.ofSeconds(30)));
        ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", s.port()).usePlaintext().build();
        try {
          AdminGrpc.newBlockingStub(ch).createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN).build());
        } finally {
          ch.shutdownNow();
        }
        System.out.println("READY");
        System.out.flush();
        while (System.in.read() >= 0) {
          // wait for the test to close stdin
        }
      }
    }
  }
}
