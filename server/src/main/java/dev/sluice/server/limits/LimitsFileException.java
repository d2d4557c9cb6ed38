package dev.sluice.server.limits;

/**
 * A limits document that cannot be applied: its source, the line and column (1-based) of the
 * value at fault, and what to change. Nothing was applied.
 */
public final class LimitsFileException extends IllegalArgumentException {

  private static final long serialVersionUID = 1L;

  private final String source;
  private final int line;
  private final int column;
  private final String problem;

  public LimitsFileException(String source, int line, int column, String problem) {
    super(source + ":" + line + ":" + column + ": " + problem);
    this.source = source;
    this.line = line;
    this.column = column;
    this.problem = problem;
  }

  public String source() {
    return source;
  }

  public int line() {
    return line;
  }

  public int column() {
    return column;
  }

  public String problem() {
    return problem;
  }
}
