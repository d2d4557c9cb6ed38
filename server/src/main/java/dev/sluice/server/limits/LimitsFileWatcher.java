package dev.sluice.server.limits;

import dev.sluice.server.engine.Engine;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code serve --limits-file}: applies the file at start and again whenever its content changes
 * (checked every {@code poll}, which also sees a Kubernetes ConfigMap's symlink swap) or {@link
 * #reload} is called (SIGHUP). A file that cannot be read, parsed or applied leaves the running
 * limits as they are: the node logs the problem, with its line and column, once per version of
 * the file, and keeps serving. Without prune: limits the file does not name are left, and
 * counted in the log line.
 *
 * <p>Several nodes on one Redis store with the same file converge: each compares the file with
 * the store before writing, so after the first has applied it the others find no changes. A
 * node applies only when its file changes, never on a timer, so nodes whose files differ during
 * a rollout do not undo each other over and over.
 */
public final class LimitsFileWatcher implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(LimitsFileWatcher.class);

  private final Path file;
  private final Engine engine;
  private final LimitChanges changes;
  private final String nodeName;
  private final ScheduledExecutorService timer;
  /** The text last tried (applied or refused): the same text is not tried again until it changes. */
  private String lastTried;
  private Outcome last = new Outcome(false, "not read yet");

  /** What the last read of the file came to: applied (or unchanged), or why not. */
  public record Outcome(boolean ok, String text) {}

  public LimitsFileWatcher(Path file, Engine engine, String nodeName) {
    this(file, new LimitChanges(engine), nodeName);
  }

  /**
   * Applies through {@code changes} (its history, its audit lines). The limits it sets are
   * managed by the file's name ({@link LimitsApply#ownerName}); it never forces, so a limit
   * another file manages stops the apply, and the node logs which.
   */
  public LimitsFileWatcher(Path file, LimitChanges changes, String nodeName) {
    this.file = file.toAbsolutePath().normalize();
    this.engine = changes.engine();
    this.changes = changes;
    this.nodeName = nodeName;
    this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
      Thread t = new Thread(r, "sluice-limits-file");
      t.setDaemon(true);
      return t;
    });
  }

  /** Applies the file now, then checks it every {@code poll}. */
  public Outcome start(Duration poll) {
    Outcome first = reload("start");
    timer.scheduleWithFixedDelay(() -> {
      try {
        check("changed");
      } catch (RuntimeException e) {
        log.warn("limits file {}: checking it failed: {}", file, e.toString());
      }
    }, poll.toMillis(), poll.toMillis(), TimeUnit.MILLISECONDS);
    return first;
  }

  /** Reads and applies the file even if its text has not changed (SIGHUP, start). */
  public synchronized Outcome reload(String why) {
    lastTried = null;
    return check(why);
  }

  /** The last outcome. */
  public synchronized Outcome last() {
    return last;
  }

  private synchronized Outcome check(String why) {
    String text;
    try {
      text = Files.readString(file);
    } catch (NoSuchFileException e) {
      return refused(null, "the file does not exist: the running limits stay; create it, or fix --limits-file");
    } catch (CharacterCodingException e) {
      return refused(null, "the file is not UTF-8 text: the running limits stay; save it as UTF-8");
    } catch (IOException e) {
      return refused(null, "the file cannot be read (" + e.getMessage() + "): the running limits stay");
    }
    if (text.equals(lastTried)) {
      return last;
    }
    lastTried = text;
    LimitsDocument doc;
    try {
      doc = LimitsDocument.parse(text, file.getFileName().toString());
    } catch (LimitsFileException e) {
      return refused(text, e.getMessage() + " (the running limits stay; nothing was applied)");
    }
    try {
      List<LimitsApply.Change> plan = LimitsApply.plan(engine, doc, false, file.toString(), false).join();
      boolean any = plan.stream().anyMatch(c -> c.kind() != LimitsApply.Change.Kind.UNMANAGED);
      if (any) {
        LimitsApply.apply(changes, plan, LimitChanges.file(file.toString(), doc.hash()) + " on " + nodeName).join();
      }
      String summary = any ? "applied: " + LimitsApply.summary(plan) : "no changes"
          + (plan.isEmpty() ? "" : " (" + plan.size() + " limits not in the file, left as they are)");
      log.info("limits file {} (sha256 {}, {}): {}", file, doc.hash(), why, summary);
      last = new Outcome(true, summary);
      return last;
    } catch (CompletionException | IllegalArgumentException e) {
      // The store refused or could not be reached: tried again at the next check, not only
      // when the file changes (a store that is back applies it).
      Throwable cause = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
      if (cause instanceof dev.sluice.server.engine.EngineException ee
          && ee.reason() == dev.sluice.server.engine.EngineException.Reason.CONFLICT) {
        // A node never forces: taking a limit from another file is a person's decision.
        return refused(null, cause.getMessage() + " (a node following its file never forces: sluice limit apply -f "
            + file.getFileName() + " --force takes it over; nothing was applied)");
      }
      return refused(null, cause.getMessage() + " (tried again in a moment)");
    }
  }

  private Outcome refused(String text, String why) {
    if (last.ok() || !last.text().equals(why)) {
      log.error("limits file {}: {}", file, why);
    }
    lastTried = text;
    last = new Outcome(false, why);
    return last;
  }

  @Override
  public void close() {
    timer.shutdownNow();
  }
}
