package dev.sluice.client;

import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.LongSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads the rate-limit response headers of OpenAI, Azure OpenAI and Anthropic, per dimension:
 * the provider's limit, what remains, when it resets, and the pause it asked for.
 *
 * <ul>
 *   <li><b>OpenAI</b>: {@code x-ratelimit-limit|remaining|reset-<dimension>} (requests, tokens),
 *       resets as Go durations: {@code 6m0s}, {@code 1s}, {@code 20ms}, {@code 1h2m3.5s};
 *   <li><b>Azure OpenAI</b>: {@code x-ratelimit-remaining-<dimension>} (same names, no limit),
 *       {@code retry-after-ms} and {@code x-ms-retry-after-ms};
 *   <li><b>Anthropic</b>: {@code anthropic-ratelimit-<dimension>-limit|remaining|reset}
 *       (requests, tokens, input-tokens, output-tokens), resets as RFC 3339 times;
 *   <li>{@code retry-after} in seconds (the HTTP-date form is not read).
 * </ul>
 *
 * <p>Header names are case-insensitive. A value that does not parse (not a non-negative integer
 * up to 10<sup>15</sup>, an unreadable reset) is dropped, and a dimension whose headers
 * contradict each other (remaining above the limit, two families that disagree) is dropped
 * whole: a bad header must never turn into a bucket level or a learned limit. What was dropped
 * is listed in {@link Parsed#problems()}; {@link #warnOnce} logs it once per resource per
 * {@link #WARN_EVERY}, not once per call.
 */
final class ReportHeaders {

  private static final Logger log = LoggerFactory.getLogger(ReportHeaders.class);

  /** Larger counts are garbage: the coordinator's own ceiling on any amount. */
  static final long MAX_COUNT = 1_000_000_000_000_000L;
  /** Longer resets or pauses are garbage. */
  static final Duration MAX_WAIT = Duration.ofDays(7);
  /** One WARN per resource this often at most. */
  static final Duration WARN_EVERY = Duration.ofMinutes(5);

  private static final Pattern DIMENSION = Pattern.compile("[a-z0-9._-]{1,64}");
  private static final Pattern OPENAI = Pattern.compile("x-ratelimit-(limit|remaining|reset)-(.+)");
  private static final Pattern ANTHROPIC =
      Pattern.compile("anthropic-ratelimit-(.+)-(limit|remaining|reset)");
  /** A Go duration as OpenAI writes it: {@code 1h2m3.5s}, {@code 20ms}, {@code 0s}. */
  private static final Pattern GO_DURATION =
      Pattern.compile("(?:(\\d+)h)?(?:(\\d+)m(?!s))?(?:(\\d+(?:\\.\\d+)?)s)?(?:(\\d+(?:\\.\\d+)?)ms)?");

  /** What one dimension's headers say; a field is null when its header was absent or dropped. */
  record Dimension(Long limit, Long remaining, Duration reset) {}

  /**
   * The headers read.
   *
   * @param dimensions by lower-case dimension name
   * @param retryAfter the pause asked for, or null
   * @param problems what was dropped and why, one line each
   */
  record Parsed(Map<String, Dimension> dimensions, Duration retryAfter, List<String> problems) {

    /** Remaining counts, by dimension. */
    Map<String, Long> remaining() {
      Map<String, Long> out = new TreeMap<>();
      dimensions.forEach((d, v) -> {
        if (v.remaining() != null) {
          out.put(d, v.remaining());
        }
      });
      return out;
    }

    /** The provider's limits, by dimension. */
    Map<String, Long> limits() {
      Map<String, Long> out = new TreeMap<>();
      dimensions.forEach((d, v) -> {
        if (v.limit() != null) {
          out.put(d, v.limit());
        }
      });
      return out;
    }
  }

  private final LongSupplier ticker;
  private final Map<String, Long> lastWarned = new ConcurrentHashMap<>();

  /** @param ticker nanoseconds, for spacing the warnings */
  ReportHeaders(LongSupplier ticker) {
    this.ticker = ticker;
  }

  /**
   * Logs {@code parsed}'s problems as one WARN line, unless one was logged for this resource
   * within {@link #WARN_EVERY}. True if it logged.
   */
  boolean warnOnce(String resource, Parsed parsed) {
    if (parsed.problems().isEmpty()) {
      return false;
    }
    long now = ticker.getAsLong();
    boolean[] due = {false};
    lastWarned.compute(resource, (k, last) -> {
      if (last == null || now - last >= WARN_EVERY.toNanos()) {
        due[0] = true;
        return now;
      }
      return last;
    });
    if (due[0]) {
      log.warn("ignoring rate-limit headers for '{}' (the next such WARN for it comes after {} at the earliest): {}",
          resource, WARN_EVERY, String.join("; ", parsed.problems()));
    }
    return due[0];
  }

  /** Reads every known header; {@code now} is the wall clock, for RFC 3339 resets. */
  static Parsed parse(Map<String, String> headers, Instant now) {
    List<String> problems = new ArrayList<>();
    Map<String, Long[]> openai = new TreeMap<>();
    Map<String, Long[]> anthropic = new TreeMap<>();
    Map<String, Duration> resets = new TreeMap<>();
    Map<String, String> plain = new TreeMap<>();
    headers.forEach((name, value) -> {
      if (name == null || value == null) {
        return;
      }
      String lower = name.toLowerCase(Locale.ROOT).trim();
      String v = value.trim();
      Matcher o = OPENAI.matcher(lower);
      Matcher a = ANTHROPIC.matcher(lower);
      boolean isOpenAi = o.matches();
      boolean isAnthropic = !isOpenAi && a.matches();
      if (!isOpenAi && !isAnthropic) {
        plain.put(lower, v);
        return;
      }
      String dimension = isOpenAi ? o.group(2) : a.group(1);
      String field = isOpenAi ? o.group(1) : a.group(2);
      if (!DIMENSION.matcher(dimension).matches()) {
        problems.add(name + ": '" + shown(dimension) + "' is not a dimension name");
        return;
      }
      if (field.equals("reset")) {
        Duration reset = isOpenAi ? goDuration(v) : untilTime(v, now);
        if (reset == null) {
          problems.add(name + ": '" + shown(v) + "' is not a reset "
              + (isOpenAi ? "duration such as 6m0s" : "time in RFC 3339"));
        } else {
          resets.merge(dimension, reset, (x, y) -> x.compareTo(y) >= 0 ? x : y);
        }
        return;
      }
      Long count = count(v);
      if (count == null) {
        problems.add(name + ": '" + shown(v) + "' is not a count from 0 to " + MAX_COUNT);
        return;
      }
      Long[] slot = (isOpenAi ? openai : anthropic).computeIfAbsent(dimension, k -> new Long[2]);
      slot[field.equals("limit") ? 0 : 1] = count;
    });

    Map<String, Dimension> dimensions = new TreeMap<>();
    java.util.Set<String> names = new java.util.TreeSet<>(openai.keySet());
    names.addAll(anthropic.keySet());
    names.addAll(resets.keySet());
    for (String d : names) {
      Long[] x = openai.get(d);
      Long[] y = anthropic.get(d);
      Long limit = agree(x, y, 0);
      Long remaining = agree(x, y, 1);
      if (limit != null && limit < 0 || remaining != null && remaining < 0) {
        problems.add(d + ": the OpenAI-style and Anthropic headers disagree");
        continue;
      }
      if (limit != null && remaining != null && remaining > limit) {
        problems.add(d + ": remaining " + remaining + " is above the limit " + limit);
        continue;
      }
      if (limit != null && limit == 0) {
        problems.add(d + ": a limit of 0 allows nothing, so it is not a limit");
        limit = null;
      }
      if (limit != null || remaining != null || resets.containsKey(d)) {
        dimensions.put(d, new Dimension(limit, remaining, resets.get(d)));
      }
    }
    return new Parsed(Collections.unmodifiableMap(dimensions), retryAfter(plain, problems), List.copyOf(problems));
  }

  /** Both families' value for one field; -1 when they disagree. */
  private static Long agree(Long[] x, Long[] y, int i) {
    Long a = x == null ? null : x[i];
    Long b = y == null ? null : y[i];
    if (a == null) {
      return b;
    }
    return b == null || a.equals(b) ? a : Long.valueOf(-1);
  }

  private static Duration retryAfter(Map<String, String> plain, List<String> problems) {
    Duration ms = millis(plain, "retry-after-ms", problems);
    Duration msAzure = millis(plain, "x-ms-retry-after-ms", problems);
    if (ms != null && msAzure != null && !ms.equals(msAzure)) {
      problems.add("retry-after-ms " + ms.toMillis() + " and x-ms-retry-after-ms " + msAzure.toMillis()
          + " disagree: the longer is used");
      return ms.compareTo(msAzure) >= 0 ? ms : msAzure;
    }
    if (ms != null || msAzure != null) {
      return ms != null ? ms : msAzure;
    }
    String seconds = plain.get("retry-after");
    if (seconds == null) {
      return null;
    }
    Duration d = delay(seconds, 1_000_000_000L);
    if (d == null && !seconds.contains(",")) { // an HTTP-date is valid, just not read
      problems.add("retry-after: '" + shown(seconds) + "' is not a number of seconds");
    }
    return d;
  }

  private static Duration millis(Map<String, String> plain, String name, List<String> problems) {
    String v = plain.get(name);
    if (v == null) {
      return null;
    }
    Duration d = delay(v, 1_000_000L);
    if (d == null) {
      problems.add(name + ": '" + shown(v) + "' is not a number of milliseconds");
    }
    return d;
  }

  /** A non-negative, finite delay up to {@link #MAX_WAIT}, possibly fractional; else null. */
  private static Duration delay(String value, long nanosPerUnit) {
    if (value.isEmpty() || !(Character.isDigit(value.charAt(0)) || value.charAt(0) == '.')) {
      return null; // also refuses NaN, Infinity, signs and hex floats
    }
    try {
      double nanos = Double.parseDouble(value) * nanosPerUnit;
      if (!Double.isFinite(nanos) || nanos > MAX_WAIT.toNanos()) {
        return null;
      }
      return Duration.ofNanos(Math.round(nanos));
    } catch (NumberFormatException e) {
      return null;
    }
  }

  private static Long count(String value) {
    // 19 digits can pass Long.MAX_VALUE (the fuzz target found 9999999999999999999): anything
    // that long is above MAX_COUNT (1e18) anyway, so it is dropped before parsing.
    if (value.isEmpty() || value.length() > 18 || !value.chars().allMatch(c -> c >= '0' && c <= '9')) {
      return null;
    }
    long n = Long.parseLong(value);
    return n > MAX_COUNT ? null : n;
  }

  /** OpenAI's reset durations, also a bare number of seconds; null if unreadable. */
  static Duration goDuration(String value) {
    if (value.isEmpty() || value.length() > 40) {
      return null;
    }
    Matcher m = GO_DURATION.matcher(value);
    if (!m.matches()) {
      return delay(value, 1_000_000_000L);
    }
    if (m.group(1) == null && m.group(2) == null && m.group(3) == null && m.group(4) == null) {
      return null;
    }
    try {
      double seconds = 0;
      seconds += m.group(1) == null ? 0 : Double.parseDouble(m.group(1)) * 3600;
      seconds += m.group(2) == null ? 0 : Double.parseDouble(m.group(2)) * 60;
      seconds += m.group(3) == null ? 0 : Double.parseDouble(m.group(3));
      seconds += m.group(4) == null ? 0 : Double.parseDouble(m.group(4)) / 1000;
      if (seconds > MAX_WAIT.toSeconds()) {
        return null;
      }
      return Duration.ofNanos(Math.round(seconds * 1e9));
    } catch (NumberFormatException e) {
      return null;
    }
  }

  /** From {@code now} to an RFC 3339 time, zero if it passed; null if unreadable or too far. */
  static Duration untilTime(String value, Instant now) {
    try {
      Instant at = OffsetDateTime.parse(value).toInstant();
      Duration d = Duration.between(now, at);
      if (d.compareTo(MAX_WAIT) > 0) {
        return null;
      }
      return d.isNegative() ? Duration.ZERO : d;
    } catch (DateTimeParseException | ArithmeticException e) {
      return null;
    }
  }

  private static String shown(String s) {
    return s.length() <= 40 ? s : s.substring(0, 40) + "…";
  }

  // The forms the SDK used before the provider headers; kept for its callers.

  /** Remaining counts by lower-case dimension. */
  static Map<String, Long> remaining(Map<String, String> headers) {
    return parse(headers, Instant.EPOCH).remaining();
  }

  /** The pause the upstream asked for, or null. */
  static Duration retryAfter(Map<String, String> headers) {
    return parse(headers, Instant.EPOCH).retryAfter();
  }
}
