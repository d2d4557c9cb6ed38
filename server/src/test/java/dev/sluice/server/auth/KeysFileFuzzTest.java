package dev.sluice.server.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code keys.json} read as strictly as {@code limits.json}: a file Sluice did not write (cut,
 * damaged, hand-edited) stops the start with an {@link IOException} naming the file and the line,
 * never another exception, never a key that fails later at call time.
 */
class KeysFileFuzzTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static Path dir;

  private static Path dir() throws IOException {
    if (dir == null) {
      dir = Files.createTempDirectory("sluice-keys-fuzz");
      dir.toFile().deleteOnExit();
    }
    return dir;
  }

  @FuzzTest(maxDuration = "20s")
  void loadReturnsTheKeysOrNamesTheFile(byte[] content) throws IOException {
    check(dir(), content);
  }

  private static String key(String id, String salt) {
    StoredKey k = StoredKey.generate(Role.WORKER, ResourcePattern.parse("team1:*"), "ci", 1).stored();
    return "{\"id\":\"" + id + "\",\"role\":\"WORKER\",\"resources\":\"team1:*\",\"description\":\"ci\","
        + "\"createdUnixMs\":1,\"salt\":\"" + salt + "\",\"hash\":\"" + k.hash() + "\"}";
  }

  private static IOException refused(Path dir, String content) throws IOException {
    Files.writeString(dir.resolve("keys.json"), content);
    try {
      new FileKeyStore(dir);
    } catch (IOException e) {
      assertThat(e.getMessage()).contains(dir.resolve("keys.json").toString());
      return e;
    }
    throw new AssertionError("loaded: " + content);
  }

  @Test
  void aDamagedRecordIsRefusedNamingTheFileAndTheLine(@TempDir Path tmp) throws IOException {
    String good = key("0123456789ab", "c2FsdHNhbHQ=");
    Files.writeString(tmp.resolve("keys.json"), "{\"version\":1,\"keys\":[" + good + "]}");
    assertThat(new FileKeyStore(tmp).byId()).containsOnlyKeys("0123456789ab");
    assertThat(refused(tmp, "{\"version\":1,\"keys\":[\n" + key("0123456789ab", "not*base64") + "]}"))
        .hasMessageContaining("line 2").hasMessageContaining("keys[0]").hasMessageContaining("base64");
    assertThat(refused(tmp, "{\"version\":1,\"keys\":[null]}")).hasMessageContaining("keys[0] is null");
    assertThat(refused(tmp, "{\"version\":1,\"keys\":[" + good + "]}\ngarbage"))
        .hasMessageContaining("line 2");
    assertThat(refused(tmp, "{\"version\":1,\"keys\":[" + good + "]}\n{}"))
        .hasMessageContaining("line 2").hasMessageContaining("after the end");
    assertThat(refused(tmp, "{\"version\":1,\"keys\":[" + good.replace(",\"salt\":\"c2FsdHNhbHQ=\"", "") + "]}"))
        .hasMessageContaining("salt");
    assertThat(refused(tmp, "{\"version\":1,\"keys\":[\n" + good + ",\n" + good + "]}"))
        .hasMessageContaining("line 3").hasMessageContaining("repeats the id 0123456789ab of the key on line 2");
    assertThat(refused(tmp, "{\"version\":1,\"version\":1,\"keys\":[]}")).hasMessageContaining("version");
    assertThat(refused(tmp, "{\"keys\":[]}")).hasMessageContaining("lacks \"version\"");
    assertThat(refused(tmp, "{\"version\":2,\"keys\":[]}")).hasMessageContaining("format version 2");
    assertThat(refused(tmp, "{\"version\":1,\"keys\":[" + key("ZZ", "c2FsdA==") + "]}")).hasMessageContaining("'ZZ'");
  }

  /** Every truncation of a real file: an error naming the file, never a partial set of keys. */
  @Test
  void everyTruncationIsAClearError(@TempDir Path tmp) throws IOException {
    FileKeyStore store = new FileKeyStore(tmp);
    store.add(StoredKey.generate(Role.ADMIN, ResourcePattern.parse("*"), "ops", 1).stored());
    store.add(StoredKey.generate(Role.WORKER, ResourcePattern.parse("a:*,b"), "w", 2).stored());
    byte[] whole = Files.readAllBytes(tmp.resolve("keys.json"));
    for (int n = 0; n < whole.length; n++) {
      Files.write(tmp.resolve("keys.json"), Arrays.copyOf(whole, n));
      assertThatThrownBy(() -> new FileKeyStore(tmp)).as("cut at byte %d of %d", n, whole.length)
          .isInstanceOf(IOException.class).hasMessageContaining(tmp.resolve("keys.json").toString())
          .hasMessageContaining("line");
    }
  }

  @Test
  void aKeyFileThatIsADirectoryIsNamed(@TempDir Path tmp) throws IOException {
    Files.createDirectories(tmp.resolve("keys.json"));
    assertThatThrownBy(() -> new FileKeyStore(tmp)).isInstanceOf(IOException.class)
        .hasMessageContaining(tmp.resolve("keys.json") + " is a directory");
  }

  /** kill -9 during a save leaves {@code keys.json<digits>.tmp}: removed at the next start, the rest kept. */
  @Test
  void aSaveInterruptedByAKillLeavesNothingAfterTheNextStart(@TempDir Path tmp) throws IOException {
    FileKeyStore store = new FileKeyStore(tmp);
    store.add(StoredKey.generate(Role.ADMIN, ResourcePattern.parse("*"), "ops", 1).stored());
    Path left = Files.writeString(tmp.resolve("keys.json8812345.tmp"), "{\"version\":1,");
    Path mine = Files.writeString(tmp.resolve("keys.json.notes.tmp"), "not ours");
    assertThat(new FileKeyStore(tmp).all()).hasSize(1);
    assertThat(left).doesNotExist();
    assertThat(mine).exists();
  }

  static void check(Path dir, byte[] content) throws IOException {
    Path file = dir.resolve("keys.json");
    Files.write(file, content);
    FileKeyStore store;
    try {
      store = new FileKeyStore(dir);
    } catch (IOException e) {
      assertThat(e.getMessage()).contains(file.toString());
      if (e.getCause() instanceof JsonProcessingException) {
        assertThat(e.getMessage()).contains("line");
      }
      return;
    }
    // Loaded: every key the file lists, each usable, and a save and reload keeps them all.
    var listed = JSON.readTree(new String(content, StandardCharsets.UTF_8)).get("keys");
    assertThat(store.byId()).hasSize(listed.size());
    for (StoredKey k : store.all()) {
      assertThat(k.problem()).isNull();
      k.matches("secret");
    }
    List<StoredKey> all = store.all();
    if (!all.isEmpty()) {
      store.remove(all.get(0).id());
      store.add(all.get(0));
    }
    assertThat(new FileKeyStore(dir).all()).containsExactlyInAnyOrderElementsOf(all);
  }
}
