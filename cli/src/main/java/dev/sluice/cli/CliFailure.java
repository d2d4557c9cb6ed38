package dev.sluice.cli;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/**
 * A command failed for a reason outside the user's command line (the server said no, it is
 * unreachable, a port is taken). Its message is the one line printed after {@code error: };
 * the exit code is 1.
 */
final class CliFailure extends RuntimeException {
  private static final long serialVersionUID = 1L;

  CliFailure(String message, Throwable cause) {
    super(oneLine(message), cause);
  }

  /**
   * {@code <STATUS>: <server message>}, with a hint where the status has an obvious next step.
   *
   * @param answered whether the coordinator was reached (the channel is connected): its own
   *     UNAVAILABLE (a full disk, a read-only data dir) already says what is wrong there, and
   *     is not blamed on a coordinator that is not running
   */
  static CliFailure of(StatusRuntimeException e, String target, boolean answered) {
    Status status = e.getStatus();
    StringBuilder sb = new StringBuilder(status.getCode().name());
    String description = status.getDescription();
    if (description != null && !description.isBlank()) {
      sb.append(": ").append(description);
    }
    Throwable cause = status.getCause();
    if (cause != null && cause.getMessage() != null) {
      sb.append(" (").append(cause.getMessage()).append(')');
    }
    switch (status.getCode()) {
      case UNAVAILABLE -> {
        if (!answered) {
          sb.append("; is the coordinator running at ").append(target)
              .append("? start it with `bin/sluice serve` or set --target/SLUICE_TARGET");
        }
      }
      case DEADLINE_EXCEEDED -> sb.append("; the coordinator at ").append(target)
          .append(" did not answer in time");
      default -> { }
    }
    return new CliFailure(sb.toString(), e);
  }

  static String oneLine(String s) {
    return s == null ? "" : s.strip().replaceAll("\\s*\\R\\s*", " ");
  }
}
