package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The fsync policy reaches SQLite, and a write is visible to readers once its future completes. */
class BufferStoreTest {

  @TempDir Path dir;

  @Test
  void alwaysMeansFullSyncAndCrashMeansNormal() throws Exception {
    for (boolean always : new boolean[] {true, false}) {
      Path d = dir.resolve(always ? "always" : "crash");
      java.nio.file.Files.createDirectories(d);
      try (BufferStore store = new BufferStore(d.resolve("buffers.db"), always)) {
        // PRAGMA synchronous: 1 NORMAL, 2 FULL; journal in WAL either way.
        long sync = store.write(c -> BufferStore.count(c, "PRAGMA synchronous")).join();
        String journal = store.write(c -> {
          try (var s = c.createStatement(); var rs = s.executeQuery("PRAGMA journal_mode")) {
            rs.next();
            return rs.getString(1);
          }
        }).join();
        assertThat(sync).as("synchronous with fsync %s", always ? "always" : "crash").isEqualTo(always ? 2 : 1);
        assertThat(journal).isEqualToIgnoringCase("wal");
        store.write(c -> {
          try (var s = c.createStatement()) {
            s.executeUpdate("INSERT INTO buffers(name, spec, created) VALUES ('b', '{}', 1)");
          }
          return null;
        }).join();
        long rows = store.read(c -> BufferStore.count(c, "SELECT COUNT(*) FROM buffers"));
        assertThat(rows).isEqualTo(1);
      }
    }
  }
}
