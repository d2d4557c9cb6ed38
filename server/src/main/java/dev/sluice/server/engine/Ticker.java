package dev.sluice.server.engine;

/**
 * A monotonic source of nanoseconds. All engine time flows through one, so tests can
 * advance a fake clock instead of sleeping (the Caffeine {@code Ticker} idea).
 */
@FunctionalInterface
public interface Ticker {

  /** Nanoseconds from an arbitrary origin; only differences mean anything. */
  long read();

  /** The JVM's monotonic clock ({@link System#nanoTime()}). */
  static Ticker system() {
    return System::nanoTime;
  }
}
