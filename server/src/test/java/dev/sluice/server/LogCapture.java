package dev.sluice.server;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * Everything logged while it is open: java.util.logging records (grpc-java logs there) and the
 * lines slf4j-simple writes to {@code System.err} (Netty's and ours), which it still passes on.
 * Test classes run one at a time, so swapping {@code System.err} is safe.
 */
final class LogCapture implements AutoCloseable {

  private final Logger root = Logger.getLogger("");
  private final List<LogRecord> records = new CopyOnWriteArrayList<>();
  private final ByteArrayOutputStream err = new ByteArrayOutputStream();
  private final PrintStream originalErr = System.err;
  private final Handler handler = new Handler() {
    @Override
    public void publish(LogRecord r) {
      records.add(r);
    }

    @Override
    public void flush() {}

    @Override
    public void close() {}
  };

  LogCapture() {
    handler.setLevel(Level.ALL);
    root.addHandler(handler);
    OutputStream tee = new OutputStream() {
      @Override
      public void write(int b) {
        synchronized (err) {
          err.write(b);
        }
        originalErr.write(b);
      }

      @Override
      public void write(byte[] b, int off, int len) {
        synchronized (err) {
          err.write(b, off, len);
        }
        originalErr.write(b, off, len);
      }
    };
    System.setErr(new PrintStream(tee, true, StandardCharsets.UTF_8));
  }

  /** The slf4j lines written so far. */
  String text() {
    synchronized (err) {
      return err.toString(StandardCharsets.UTF_8);
    }
  }

  /** java.util.logging records at WARNING or above, or that carry an exception. */
  List<LogRecord> warnings() {
    return records.stream().filter(r -> r.getLevel().intValue() >= Level.WARNING.intValue()
        || r.getThrown() != null).toList();
  }

  /** How many stack frames or thrown-exception headers were logged (of either kind). */
  long exceptionLines() {
    java.util.regex.Pattern thrown = java.util.regex.Pattern.compile("^([a-z][\\w$]*\\.)+[A-Z][\\w$]*(Exception|Error)\\b.*");
    long slf4j = text().lines().filter(l -> l.startsWith("\tat ") || thrown.matcher(l).matches()).count();
    return slf4j + records.stream().filter(r -> r.getThrown() != null).count();
  }

  /** The java.util.logging warnings, one line each, for an assertion's description. */
  String describeWarnings() {
    return warnings().stream().map(r -> r.getLoggerName() + ": " + r.getMessage() + " " + r.getThrown())
        .collect(java.util.stream.Collectors.joining("\n"));
  }

  @Override
  public void close() {
    root.removeHandler(handler);
    System.setErr(originalErr);
  }
}
