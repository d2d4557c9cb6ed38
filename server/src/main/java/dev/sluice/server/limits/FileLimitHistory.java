package dev.sluice.server.limits;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.engine.DataFiles;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The embedded store's history, kept in its data directory as its limits are: one JSON line per
 * change appended to {@value #FILE_NAME} (forced to disk: limit changes are rare), read back at
 * start under the same caps as {@link LimitHistory.InMemory}. The file is rewritten from what the
 * caps keep (atomically, {@link DataFiles#writeAtomically}) once it holds more than twice that
 * plus {@value #SLACK} lines, so it stays bounded too. A line a crash left torn, or one that does
 * not parse, is skipped with a warning naming its line.
 */
public final class FileLimitHistory implements LimitHistory {

  /** The file in the data directory. */
  public static final String FILE_NAME = "limit-history.jsonl";

  /** Lines beyond twice what the caps keep before the file is rewritten. */
  static final int SLACK = 1_024;

  private static final Logger log = LoggerFactory.getLogger(FileLimitHistory.class);
  private static final ObjectMapper JSON = new ObjectMapper();

  /** One line of the file. */
  record Line(String resource, long at, String who, String action, List<String> changes) {}

  private final Path dir;
  private final Path file;
  private final LimitHistory.InMemory kept;
  private final int perResource;
  private final int resources;
  private FileChannel out; // guarded by this
  private long lines; // guarded by this

  private FileLimitHistory(Path dir, int perResource, int resources) {
    this.dir = dir;
    this.file = dir.resolve(FILE_NAME);
    this.perResource = perResource;
    this.resources = resources;
    this.kept = new LimitHistory.InMemory(perResource, resources);
  }

  /** The history kept in {@code dataDir}, read back now; caps as {@link LimitHistory}'s. */
  public static FileLimitHistory inDataDir(Path dataDir) throws IOException {
    return inDataDir(dataDir, PER_RESOURCE, RESOURCES);
  }

  /** With other caps (tests). */
  static FileLimitHistory inDataDir(Path dataDir, int perResource, int resources) throws IOException {
    FileLimitHistory h = new FileLimitHistory(dataDir.toAbsolutePath().normalize(), perResource, resources);
    h.load();
    return h;
  }

  private synchronized void load() throws IOException {
    DataFiles.createDir(dir);
    for (Path left : DataFiles.removeLeftovers(file)) {
      log.info("removed {}, left by a rewrite that was interrupted (the history is in {})", left, file);
    }
    String content;
    try {
      DataFiles.ownerOnly(file);
      content = Files.readString(file, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      content = "";
    }
    // A crash mid-append may leave a last line without its end: the next line must not join it.
    boolean tornTail = !content.isEmpty() && !content.endsWith("\n");
    List<String> text = content.isEmpty() ? List.of() : List.of(content.split("\n", -1));
    int n = 0;
    for (String s : text) {
      n++;
      if (s.isBlank()) {
        continue;
      }
      try {
        Line l = JSON.readValue(s, Line.class);
        if (l.resource() == null || l.who() == null || l.action() == null || l.changes() == null) {
          throw new IllegalArgumentException("a field is missing");
        }
        kept.add(l.resource(), new Entry(l.at(), l.who(), l.action(), l.changes()));
      } catch (JsonProcessingException | IllegalArgumentException e) {
        log.warn("{} line {} is not a limit change (torn by a crash, or edited by hand): skipped; the rest of the"
            + " history is kept", file, n);
      }
    }
    lines = n;
    if (lines > bound()) {
      rewrite();
    } else {
      open();
      if (tornTail) {
        write("\n".getBytes(StandardCharsets.UTF_8));
      }
    }
  }

  private void write(byte[] bytes) throws IOException {
    ByteBuffer buf = ByteBuffer.wrap(bytes);
    while (buf.hasRemaining()) {
      out.write(buf);
    }
    out.force(false);
  }

  /** Lines the file may hold before it is rewritten. */
  private long bound() {
    return 2L * perResource * Math.min(resources, Math.max(1, kept.resources())) + SLACK;
  }

  private void open() throws IOException {
    if (!Files.exists(file)) {
      DataFiles.createOwnerOnly(file);
    }
    out = FileChannel.open(file, StandardOpenOption.WRITE, StandardOpenOption.APPEND);
  }

  private void rewrite() throws IOException {
    if (out != null) {
      out.close();
    }
    StringBuilder b = new StringBuilder();
    long n = 0;
    for (var e : kept.oldestFirst()) {
      Entry x = e.getValue();
      b.append(JSON.writeValueAsString(new Line(e.getKey(), x.atMillis(), x.who(), x.action(), x.changes())))
          .append('\n');
      n++;
    }
    DataFiles.writeAtomically(dir, file, b.toString().getBytes(StandardCharsets.UTF_8));
    lines = n;
    open();
  }

  @Override
  public synchronized CompletableFuture<Void> add(String resource, Entry entry) {
    kept.add(resource, entry);
    try {
      if (out == null) {
        throw new IOException("the history file is closed (the node is stopping)");
      }
      byte[] line = (JSON.writeValueAsString(new Line(resource, entry.atMillis(), entry.who(), entry.action(),
          entry.changes())) + "\n").getBytes(StandardCharsets.UTF_8);
      write(line);
      if (++lines > bound()) {
        rewrite();
      }
      return CompletableFuture.completedFuture(null);
    } catch (IOException e) {
      return CompletableFuture.failedFuture(new UncheckedIOException("could not write the limit history to " + file
          + " (" + e.getMessage() + "): the change itself is made; free space or fix the data directory's"
          + " permissions", e));
    }
  }

  @Override
  public CompletableFuture<List<Entry>> recent(String resource, int n) {
    return kept.recent(resource, n);
  }

  /** Lines in the file now (tests of the bound). */
  synchronized long lines() {
    return lines;
  }

  /** Closes the file; the history stays in it. */
  public synchronized void close() throws IOException {
    if (out != null) {
      out.close();
      out = null;
    }
  }
}
