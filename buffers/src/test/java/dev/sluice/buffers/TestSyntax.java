package dev.sluice.buffers;

import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Enough of the coordinator's rules for these tests: plain resource names, durations as seconds,
 * {@code <n>ms|s|m|h|d} or ISO-8601. The coordinator's own are tested with it in the server.
 */
final class TestSyntax implements BufferSyntax {

  static final TestSyntax INSTANCE = new TestSyntax();
  private static final Pattern AMOUNT = Pattern.compile("(\\d+)(ms|s|m|h|d)?");

  @Override
  public void checkResource(String name) {
    if (!name.matches("[A-Za-z0-9._:/-]{1,200}")) {
      throw new IllegalArgumentException("resource name '" + name + "' is invalid");
    }
  }

  @Override
  public Duration duration(String field, String text, Duration min, Duration max, String example) {
    Duration d;
    Matcher m = AMOUNT.matcher(text);
    if (text.startsWith("P")) {
      d = Duration.parse(text);
    } else if (m.matches()) {
      long n = Long.parseLong(m.group(1));
      d = switch (m.group(2) == null ? "s" : m.group(2)) {
        case "ms" -> Duration.ofMillis(n);
        case "m" -> Duration.ofMinutes(n);
        case "h" -> Duration.ofHours(n);
        case "d" -> Duration.ofDays(n);
        default -> Duration.ofSeconds(n);
      };
    } else {
      throw new IllegalArgumentException(field + " '" + text + "' is not a duration, e.g. " + example);
    }
    if (d.compareTo(min) < 0 || d.compareTo(max) > 0) {
      throw new IllegalArgumentException(field + " '" + text + "' is out of range, e.g. " + example);
    }
    return d;
  }

  @Override
  public Duration minPeriod() {
    return Duration.ofMillis(1);
  }

  @Override
  public Duration maxPeriod() {
    return Duration.ofDays(7);
  }
}
