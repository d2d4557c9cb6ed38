package dev.sluice.server.engine;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
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
}
