package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A full disk, made with SQLite's {@code max_page_count} on the writer's connection: every push
 * answered either with its id (and stored) or with a 503-kind refusal naming the disk (and not
 * stored), and the store writes again as soon as there is room, without a restart.
 */
class DiskFullTest {

  @TempDir Path dir;
  private SqliteBackend backend;

  @BeforeEach
  void open() throws Exception {
    backend = new SqliteBackend(dir.resolve("buffers.db"), false);
    assertThat(backend.create("b", "{}", 1)).isTrue();
  }

  @AfterEach
  void close() {
    backend.close();
  }

  private static NewItem item(int n, int size) {
    byte[] body = ("item-" + n + "-" + "x".repeat(size)).getBytes(StandardCharsets.UTF_8);
    return new NewItem(body, null, Map.of(), "k" + n, null);
  }

  /** Sets the writer's page cap: its current size plus {@code extra} pages (a "disk" that fills). */
  private void capPages(long extra) {
    backend.store().write(c -> {
      long pages = BufferStore.count(c, "PRAGMA page_count");
      return BufferStore.count(c, "PRAGMA max_page_count = " + (pages + extra));
    }).join();
  }

  private long stored(int n) {
    return backend.store().read(c -> BufferStore.count(c, "SELECT COUNT(*) FROM items WHERE idem = ?", "k" + n));
  }

  @Test
  void everyAnswerSaysWhatHappenedAndTheStoreRecoversWithoutARestart() throws Exception {
    capPages(20);
    // Many pushes queued at once, so they share group commits; the disk fills among them.
    List<CompletableFuture<List<Long>>> answers = new ArrayList<>();
    for (int n = 0; n < 60; n++) {
      answers.add(backend.push("b", List.of(item(n, 3000)), 1));
    }
    int ok = 0;
    int refused = 0;
    for (int n = 0; n < answers.size(); n++) {
      try {
        List<Long> ids = answers.get(n).join();
        assertThat(stored(n)).as("push %d answered with id %s", n, ids).isEqualTo(1);
        ok++;
      } catch (CompletionException e) {
        assertThat(e.getCause()).isInstanceOf(BufferException.class);
        BufferException ee = (BufferException) e.getCause();
        assertThat(ee.reason()).isEqualTo(BufferException.Reason.UNAVAILABLE);
        assertThat(ee.getMessage()).contains("not stored", "full", dir.resolve("buffers.db").toString());
        assertThat(stored(n)).as("push %d answered 'not stored'", n).isZero();
        refused++;
      }
    }
    assertThat(refused).as("pushes refused on the full disk").isPositive();

    // Still full: a later push bigger than the room left is refused cleanly, again and again.
    for (int i = 0; i < 3; i++) {
      int n = 100 + i;
      assertThatThrownBy(() -> backend.push("b", List.of(item(n, 200_000)), 1).join())
          .hasCauseInstanceOf(BufferException.class).hasMessageContaining("full");
      assertThat(stored(n)).isZero();
    }

    // Room again: pushes, pause and resume work at once, on the same connection.
    capPages(10_000);
    List<Long> ids = backend.push("b", List.of(item(200, 3000), item(201, 10)), 1).join();
    assertThat(ids).hasSize(2);
    assertThat(ids.get(1)).isEqualTo(ids.get(0) + 1);
    assertThat(stored(200)).isEqualTo(1);
    assertThat(stored(201)).isEqualTo(1);
    backend.setPaused("b", true);
    assertThat(backend.buffers().get(0).paused()).isTrue();
    backend.setPaused("b", false);
    assertThat(backend.buffers().get(0).paused()).isFalse();
    long all = backend.store().read(c -> BufferStore.count(c, "SELECT COUNT(*) FROM items"));
    assertThat(all).as("items stored = pushes answered with an id").isEqualTo(ok + 2);
  }
}
