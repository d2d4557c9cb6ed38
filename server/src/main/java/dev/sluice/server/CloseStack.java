package dev.sluice.server;

import java.util.ArrayDeque;
import java.util.Deque;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What a server has opened, closed in reverse order: each resource is pushed the moment it is
 * open, so a start that fails at any step closes exactly what it opened (a Redis connection,
 * executors, event loops), and a stop closes the same list. Each step runs at most once, so a
 * stop may close a resource early (the engine, before the transport drains) and the unwinding
 * then passes over it.
 */
final class CloseStack implements AutoCloseable {

  private static final Logger log = LoggerFactory.getLogger(CloseStack.class);

  /** Closes one resource. */
  @FunctionalInterface
  interface Step {
    void close() throws Exception;
  }

  /** A pushed step: {@link #close()} runs it now, once; the stack then skips it. */
  static final class Entry {
    private final String what;
    private final Step step;
    private boolean done;

    private Entry(String what, Step step) {
      this.what = what;
      this.step = step;
    }

    /** Runs the step unless it ran already; a failure is logged, not thrown. */
    void close() {
      Exception failure = run();
      if (failure != null) {
        log.warn("closing {} failed: {}", what, failure.toString());
      }
    }

    private Exception run() {
      synchronized (this) {
        if (done) {
          return null;
        }
        done = true;
      }
      try {
        step.close();
        return null;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return e;
      } catch (Exception e) {
        return e;
      }
    }
  }

  private final Deque<Entry> entries = new ArrayDeque<>();

  /** Registers {@code step} to close {@code what} (named in a log line if it fails). */
  synchronized Entry push(String what, Step step) {
    Entry e = new Entry(what, step);
    entries.push(e);
    return e;
  }

  /** Closes everything pushed, last first; failures are logged and the rest still close. */
  @Override
  public void close() {
    unwind(null);
  }

  /**
   * Closes everything pushed, last first, after a failed start: what fails to close is added
   * to {@code failure} as suppressed, so the start's own error stays the one reported.
   */
  void closeAfter(Throwable failure) {
    unwind(failure);
  }

  private void unwind(Throwable failure) {
    while (true) {
      Entry e;
      synchronized (this) {
        e = entries.poll();
      }
      if (e == null) {
        return;
      }
      Exception problem = e.run();
      if (problem != null) {
        if (failure != null) {
          failure.addSuppressed(problem);
        } else {
          log.warn("closing {} failed: {}", e.what, problem.toString());
        }
      }
    }
  }
}
