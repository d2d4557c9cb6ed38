package dev.sluice.buffers;

import java.time.Duration;

/**
 * The coordinator's own rules that a buffer spec follows: its resource names and its one
 * duration syntax, so a buffer's {@code timeout} reads exactly as a limit's period does, with
 * the same words when refused. The server hands in its rules ({@code BufferWiring}).
 */
public interface BufferSyntax {

  /**
   * Checks a resource name as the coordinator's limits take it.
   *
   * @throws IllegalArgumentException naming the problem and the fix
   */
  void checkResource(String name);

  /**
   * Reads {@code text} as a duration for {@code field}, from {@code min} to {@code max}; a plain
   * number means seconds.
   *
   * @throws IllegalArgumentException naming the field, the value, the range and {@code example}
   */
  Duration duration(String field, String text, Duration min, Duration max, String example);

  /** The shortest period a limit's rate may have. */
  Duration minPeriod();

  /** The longest period a limit's rate may have. */
  Duration maxPeriod();
}
