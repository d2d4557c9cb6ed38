package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The data-dir loader on corrupt, truncated and hostile {@code limits.json} files: it returns
 * exactly the limits the file holds, each valid, or throws an {@link IOException} that names
 * the file (and the line, for a JSON error). Never another exception type, never a silently
 * empty or shortened configuration.
 */
class LimitsFileFuzzTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static Path dir;

  private static Path dir() throws IOException {
    if (dir == null) {
      dir = Files.createTempDirectory("sluice-limits-fuzz");
      dir.toFile().deleteOnExit();
    }
    return dir;
  }

  /**
   * The same bytes twice: as the data dir's {@code limits.json}, and as a limits document (what
   * {@code sluice limit apply}, {@code PUT /v1/limits} and {@code --limits-file} read), which
   * must be read or refused with a {@link dev.sluice.server.limits.LimitsFileException} naming a
   * line and column in the text, and once read, export back to the same limits.
   */
  @FuzzTest(maxDuration = "20s")
  void loadReturnsTheFileOrNamesIt(byte[] content) throws IOException {
    check(dir(), content);
    checkDocument(new String(content, java.nio.charset.StandardCharsets.UTF_8));
  }

  static void checkDocument(String text) {
    dev.sluice.server.limits.LimitsDocument doc;
    try {
      doc = dev.sluice.server.limits.LimitsDocument.parse(text, "fuzz.yaml");
    } catch (dev.sluice.server.limits.LimitsFileException e) {
      assertThat(e.getMessage()).startsWith("fuzz.yaml:" + e.line() + ":" + e.column() + ": ");
      assertThat(e.line()).isBetween(1, (int) text.lines().count() + 1);
      assertThat(e.column()).isPositive();
      return;
    }
    List<LimitSpec> stored = doc.limits().values().stream()
        .map(l -> Validation.limit(l, 1000, Duration.ofSeconds(30))).toList();
    dev.sluice.server.limits.LimitsDocument back = dev.sluice.server.limits.LimitsDocument.parse(
        dev.sluice.server.limits.LimitsDocument.export(stored), "export");
    assertThat(back.limits().values().stream().map(l -> Validation.limit(l, 1000, Duration.ofSeconds(30))).toList())
        .as("export of %s", text).isEqualTo(stored);
  }

  /** Every truncation of a real file: a clear error naming the file and the line, never a partial load. */
  @Test
  void everyTruncationIsAClearError(@TempDir Path tmp) throws IOException {
    FileLimitStore store = new FileLimitStore(tmp);
    store.save(
        List.of(
            new LimitSpec("openai", List.of(new RateSpec("requests", 500, Duration.ofMinutes(1), 10), new RateSpec("tokens", 200_000, Duration.ofMinutes(1), 4000)), 50, 1000, Duration.ofSeconds(30)),
            new LimitSpec("shop:1", List.of(new RateSpec("requests", 2, Duration.ofSeconds(1), 40)), 0, 10, Duration.ofSeconds(5)),
            new LimitSpec("db", List.of(), 8, 100, Duration.ofMinutes(1))));
    byte[] whole = Files.readAllBytes(store.file());
    for (int n = 0; n < whole.length; n++) {
      byte[] cut = Arrays.copyOf(whole, n);
      Files.write(store.file(), cut);
      assertThatThrownBy(store::load)
          .as("file cut at byte %d of %d", n, whole.length)
          .isInstanceOf(IOException.class)
          .hasMessageContaining(store.file().toString())
          .hasMessageContaining("line");
    }
  }

  @Test
  void nullEntriesAreNamedNotACrash(@TempDir Path tmp) throws IOException {
    FileLimitStore store = new FileLimitStore(tmp);
    Files.writeString(store.file(), "{\"version\":1,\"limits\":[null]}");
    assertThatThrownBy(store::load)
        .isInstanceOf(IOException.class)
        .hasMessageContaining(store.file().toString())
        .hasMessageContaining("limits[0]");
    Files.writeString(
        store.file(),
        "{\"version\":1,\"limits\":[{\"resource\":\"a\",\"rates\":[null],\"concurrency\":1,"
            + "\"maxWaiting\":10,\"leaseTtlMillis\":30000}]}");
    assertThatThrownBy(store::load)
        .isInstanceOf(IOException.class)
        .hasMessageContaining(store.file().toString())
        .hasMessageContaining("limits[0].rates[0]");
  }

  /** Found by the fuzzer in its first seconds: the error came without the file's name. */
  @Test
  void bytesThatAreNotTextAreNamed(@TempDir Path tmp) throws IOException {
    FileLimitStore store = new FileLimitStore(tmp);
    byte[] json = "{\"version\":1,\"limits\":[]}".getBytes(java.nio.charset.StandardCharsets.UTF_8);
    byte[] content = new byte[json.length + 4];
    System.arraycopy(json, 0, content, 4, json.length); // four zero bytes: Jackson guesses UTF-32
    Files.write(store.file(), content);
    assertThatThrownBy(store::load)
        .isInstanceOf(IOException.class)
        .hasMessageContaining(store.file().toString())
        .hasMessageContaining("unreadable bytes");
  }

  @Test
  void aResourceListedTwiceOrATrailingTailIsRefused(@TempDir Path tmp) throws IOException {
    FileLimitStore store = new FileLimitStore(tmp);
    String one =
        "{\"resource\":\"a\",\"rates\":[],\"concurrency\":1,\"maxWaiting\":10,\"leaseTtlMillis\":30000}";
    Files.writeString(store.file(), "{\"version\":1,\"limits\":[" + one + "," + one + "]}");
    assertThatThrownBy(store::load).isInstanceOf(IOException.class).hasMessageContaining("limits[1] sets 'a' a second time");
    Files.writeString(store.file(), "{\"version\":1,\"limits\":[" + one + "]}\n{\"version\":1,\"limits\":[]}");
    assertThatThrownBy(store::load)
        .isInstanceOf(IOException.class)
        .hasMessageContaining(store.file().toString())
        .hasMessageContaining("line 2");
  }

  static void check(Path dir, byte[] content) throws IOException {
    Path file = dir.resolve("limits.json");
    Files.write(file, content);
    FileLimitStore store = new FileLimitStore(dir);
    List<LimitSpec> loaded;
    try {
      loaded = store.load();
    } catch (IOException e) {
      assertThat(e.getMessage()).contains(file.toString());
      if (e.getCause() instanceof JsonProcessingException) {
        assertThat(e.getMessage()).contains("line");
      }
      return;
    }
    // Loaded: exactly as many limits as the file lists, so nothing was dropped on the way.
    JsonNode limits = JSON.readTree(content).get("limits");
    assertThat(limits).isNotNull();
    assertThat(limits.isArray()).as("limits is a list, not %s", limits.getNodeType()).isTrue();
    assertThat(loaded).hasSize(limits.size());
    for (LimitSpec l : loaded) {
      assertThat(Validation.limit(l, 1, l.leaseTtl())).isEqualTo(l);
    }
    // And what it loaded survives a save and a reload unchanged.
    store.save(loaded);
    assertThat(new FileLimitStore(dir).load())
        .containsExactlyInAnyOrderElementsOf(loaded);
    assertThat(loaded.stream().map(LimitSpec::resource).sorted(Comparator.naturalOrder()).distinct().count())
        .as("resource names are unique")
        .isEqualTo(loaded.size());
  }
}
