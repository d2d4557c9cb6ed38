package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FileLimitStoreTest {

  @TempDir Path dir;

  private static LimitSpec spec(String name) {
    return new LimitSpec(
        name,
        List.of(
            new RateSpec("requests", 500, Duration.ofMinutes(1), 10),
            new RateSpec("tokens", 200_000, Duration.ofMinutes(1), 4000)),
        50,
        1000,
        Duration.ofSeconds(30));
  }

  @Test
  void roundTripsEveryField() throws IOException {
    FileLimitStore store = new FileLimitStore(dir);
    assertThat(store.load()).isEmpty();
    store.save(List.of(spec("openai"), spec("shop:1")));
    assertThat(new FileLimitStore(dir).load()).containsExactly(spec("openai"), spec("shop:1"));
    store.save(List.of(spec("shop:1")));
    assertThat(new FileLimitStore(dir).load()).containsExactly(spec("shop:1"));
    // No temporary files are left behind.
    try (var files = Files.list(dir)) {
      assertThat(files.map(p -> p.getFileName().toString())).containsExactly("limits.json");
    }
  }

  /** kill -9 mid-save leaves {@code limits.json<digits>.tmp}: the next load removes it and keeps the limits. */
  @Test
  void aSaveInterruptedByAKillLeavesNothingAfterTheNextLoad() throws IOException {
    FileLimitStore store = new FileLimitStore(dir);
    store.save(List.of(spec("openai")));
    Path left = Files.writeString(dir.resolve("limits.json3141592653589793.tmp"), "{\"version\":1,\"lim");
    Path other = Files.writeString(dir.resolve("limits.json.bak.tmp"), "kept: not a name Sluice makes");
    assertThat(new FileLimitStore(dir).load()).containsExactly(spec("openai"));
    assertThat(left).doesNotExist();
    assertThat(other).exists();
  }

  @Test
  void corruptFileIsAClearErrorNotAnEmptyConfig() throws IOException {
    FileLimitStore store = new FileLimitStore(dir);
    store.save(List.of(spec("openai")));
    String whole = Files.readString(store.file());
    Files.writeString(store.file(), whole.substring(0, whole.length() / 2));
    assertThatThrownBy(store::load)
        .isInstanceOf(IOException.class)
        .hasMessageContaining(store.file().toString())
        .hasMessageContaining("line")
        .hasMessageContaining("restore it from a backup");
  }

  @Test
  void invalidLimitInFileIsNamed() throws IOException {
    FileLimitStore store = new FileLimitStore(dir);
    Files.writeString(
        store.file(),
        "{\"version\":1,\"limits\":[{\"resource\":\"bad name\",\"rates\":[],\"concurrency\":1,"
            + "\"maxWaiting\":10,\"leaseTtlMillis\":30000}]}");
    assertThatThrownBy(store::load).hasMessageContaining("invalid limit").hasMessageContaining("bad name");
  }

  @Test
  void unknownVersionIsRefused() throws IOException {
    FileLimitStore store = new FileLimitStore(dir);
    Files.writeString(store.file(), "{\"version\":9,\"limits\":[]}");
    assertThatThrownBy(store::load).hasMessageContaining("format version 9");
  }

  @Test
  void engineLoadsStoredLimitsAndStartsEmpty() throws IOException {
    FakeClock clock = new FakeClock();
    MemoryEngine first =
        MemoryEngine.builder().ticker(clock).scheduler(clock).store(new FileLimitStore(dir)).build();
    sync(first).setLimit(spec("openai"));
    clock.advance(Duration.ofMinutes(5));
    assertThat(sync(first).stats("openai").available()).containsEntry("tokens", 4000.0);

    MemoryEngine second =
        MemoryEngine.builder().ticker(clock).scheduler(clock).store(new FileLimitStore(dir)).build();
    assertThat(sync(second).getLimit("openai")).contains(spec("openai"));
    assertThat(sync(second).stats("openai").available()).containsEntry("tokens", 0.0).containsEntry("requests", 0.0);
  }

  /**
   * A coordinator restart on the embedded store forgets who holds a permit. For one lease
   * after it, a holder's renew brings its permit back, so the concurrency cap does not count
   * from zero; a permit not renewed within that lease is gone, as on the Redis store after it
   * lost its data (StoreLossTest).
   */
  @Test
  void afterARestartTheHoldersRenewsKeepTheirSlotsForOneLease() throws IOException {
    FakeClock clock = new FakeClock();
    MemoryEngine first =
        MemoryEngine.builder().ticker(clock).scheduler(clock).store(new FileLimitStore(dir)).build();
    sync(first).setLimit(new LimitSpec("c", List.of(), 4, 0, Duration.ofSeconds(10)));
    String p1 = sync(first).acquire("c", Map.of(), Lane.DEFAULT, 0).future().join().permitId();
    String p2 = sync(first).acquire("c", Map.of(), Lane.DEFAULT, 0).future().join().permitId();
    String p3 = sync(first).acquire("c", Map.of(), Lane.DEFAULT, 0).future().join().permitId();
    String p4 = sync(first).acquire("c", Map.of(), Lane.DEFAULT, 0).future().join().permitId();

    MemoryEngine second =
        MemoryEngine.builder().ticker(clock).scheduler(clock).store(new FileLimitStore(dir)).build();
    assertThat(sync(second).renew("c", List.of(p1, p2))).as("adopted, not expired").isEmpty();
    assertThat(sync(second).stats("c").inFlight()).isEqualTo(2);
    String fresh = sync(second).acquire("c", Map.of(), Lane.DEFAULT, 0).future().join().permitId();
    sync(second).acquire("c", Map.of(), Lane.DEFAULT, 0).future().join();
    assertThat(sync(second).acquire("c", Map.of(), Lane.DEFAULT, 0).future())
        .as("the cap counts the adopted permits").isCompletedExceptionally();
    assertThat(sync(second).release("c", p1, Map.of("requests", 5L), true, false)).isTrue();
    assertThat(sync(second).stats("c").inFlight()).isEqualTo(3);
    // A renew sent before that release and arriving after it (another node, a slower path)
    // must not adopt the permit again: it would hold a slot for nobody until its lease ran out
    // (the fault campaign saw that lease expire).
    assertThat(sync(second).renew("c", List.of(p1))).as("released once adopted: not adopted again").containsExactly(p1);
    assertThat(sync(second).stats("c").inFlight()).isEqualTo(3);
    assertThat(sync(second).release("c", fresh, Map.of(), false, false)).isTrue();
    assertThat(sync(second).renew("c", List.of(fresh))).as("its own ids are never adopted").containsExactly(fresh);
    // Released before its renew came: that renew, arriving after, must not hold a slot for nobody.
    assertThat(sync(second).release("c", p4, Map.of(), false, false)).isFalse();
    assertThat(sync(second).renew("c", List.of(p4))).containsExactly(p4);

    clock.advance(Duration.ofSeconds(11));
    assertThat(sync(second).renew("c", List.of(p3))).as("one lease after the restart").containsExactly(p3);
  }
}
