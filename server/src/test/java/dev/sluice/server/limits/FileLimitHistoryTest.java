package dev.sluice.server.limits;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.limits.LimitHistory.Entry;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The embedded store's limit history: kept across a restart, under its caps, in a bounded file. */
class FileLimitHistoryTest {

  @TempDir Path dir;

  private static Entry change(long at, String who) {
    return new Entry(at, who, "changed", List.of("concurrency " + at + " → " + (at + 1)));
  }

  @Test
  void aRestartReadsTheHistoryBackNewestFirst() throws Exception {
    FileLimitHistory h = FileLimitHistory.inDataDir(dir);
    h.add("shop", change(1, "local")).join();
    h.add("openai", change(2, "key 1a2b3c4d5e6f")).join();
    h.add("shop", change(3, "file limits.yaml sha256:0123456789ab")).join();
    h.close();

    FileLimitHistory again = FileLimitHistory.inDataDir(dir);
    assertThat(again.recent("shop", 10).join()).extracting(Entry::atMillis).containsExactly(3L, 1L);
    assertThat(again.recent("shop", 1).join().get(0).who()).isEqualTo("file limits.yaml sha256:0123456789ab");
    assertThat(again.recent("openai", 10).join()).containsExactly(change(2, "key 1a2b3c4d5e6f"));
    assertThat(again.recent("nothing", 10).join()).isEmpty();
    again.add("shop", change(4, "local")).join();
    again.close();
    assertThat(FileLimitHistory.inDataDir(dir).recent("shop", 10).join()).extracting(Entry::atMillis)
        .containsExactly(4L, 3L, 1L);
    assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(dir.resolve(FileLimitHistory.FILE_NAME))))
        .as("a history names keys and files: the owner's only").isEqualTo("rw-------");
  }

  @Test
  void theCapsHoldAfterARestartAndTheFileIsRewrittenToWhatTheyKeep() throws Exception {
    FileLimitHistory h = FileLimitHistory.inDataDir(dir, 3, 2);
    for (int i = 0; i < 3_000; i++) {
      h.add(i % 2 == 0 ? "a" : "b", change(i, "local")).join();
    }
    h.add("c", change(3_000, "local")).join(); // a was changed longest ago: dropped
    // 2 resources x 3 changes are kept; the file may hold twice that plus the slack, never more.
    assertThat(h.lines()).isLessThanOrEqualTo(2 * 3 * 2 + FileLimitHistory.SLACK);
    assertThat(Files.readAllLines(dir.resolve(FileLimitHistory.FILE_NAME))).hasSize((int) h.lines());
    h.close();

    FileLimitHistory again = FileLimitHistory.inDataDir(dir, 3, 2);
    assertThat(again.recent("b", 10).join()).extracting(Entry::atMillis).containsExactly(2_999L, 2_997L, 2_995L);
    assertThat(again.recent("c", 10).join()).extracting(Entry::atMillis).containsExactly(3_000L);
    assertThat(again.recent("a", 10).join()).as("changed longest ago of three: dropped").isEmpty();
    again.close();
  }

  @Test
  void aTornOrForeignLineIsSkippedAndTheRestKept() throws Exception {
    FileLimitHistory h = FileLimitHistory.inDataDir(dir);
    h.add("shop", change(1, "local")).join();
    h.add("shop", change(2, "local")).join();
    h.close();
    Path file = dir.resolve(FileLimitHistory.FILE_NAME);
    Files.writeString(file, "{\"resource\": \"shop\", \"at\": 3}\nnot json at all\n{\"resource\":\"shop\",\"at\":4,\"who\":\"lo",
        StandardCharsets.UTF_8, StandardOpenOption.APPEND);

    FileLimitHistory again = FileLimitHistory.inDataDir(dir);
    assertThat(again.recent("shop", 10).join()).extracting(Entry::atMillis).containsExactly(2L, 1L);
    again.add("shop", change(5, "local")).join();
    again.close();
    assertThat(FileLimitHistory.inDataDir(dir).recent("shop", 10).join()).as("written after the torn line")
        .extracting(Entry::atMillis).containsExactly(5L, 2L, 1L);
  }

  @Test
  void aChangeThatCannotBeWrittenFailsItsFutureNamingTheFileAndTheFix() throws Exception {
    FileLimitHistory h = FileLimitHistory.inDataDir(dir);
    h.close();
    assertThat(h.add("shop", change(1, "local"))).failsWithin(java.time.Duration.ofSeconds(1))
        .withThrowableThat().withMessageContaining(FileLimitHistory.FILE_NAME).withMessageContaining("the change itself is made");
  }
}
