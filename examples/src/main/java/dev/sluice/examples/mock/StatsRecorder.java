package dev.sluice.examples.mock;

import dev.sluice.examples.mock.MockOpenAi.Stats;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * Counters behind {@link Stats}. Not thread-safe; {@link Engine} serializes calls.
 *
 * <p>The 60 s peaks keep every admission of the last 60 s as a (time, charge) pair in a ring
 * buffer, drop pairs at least 60 s older than each new admission, and take the maximum of the
 * running sums. A window ending at an admission is where a maximum is reached, so this is the exact
 * maximum over all half-open windows {@code (t − 60 s, t]}. Memory is one pair per admission in the
 * last minute.
 */
final class StatsRecorder {

  private static final long WINDOW_NANOS = 60_000_000_000L;
  static final String[] REASONS = {
    "requests", "tokens", "requests_per_day", "tokens_per_day",
    "too_large", "insufficient_quota", "unauthorized", "bad_request",
    "input_tokens", "output_tokens"
  };

  private long epochNanos;
  private long admitted;
  private final Map<String, Long> rejected = new LinkedHashMap<>();
  private long estimatedTokens;
  private long actualTokens;
  private long inFlight;
  private long peakInFlight;
  private long peakTokens;
  private long peakRequests;
  private long firstAdmitted = -1;
  private long lastAdmitted = -1;
  /** Per end user named in the request: admitted, estimated tokens, rate-limited. */
  private final Map<String, long[]> users = new TreeMap<>();
  /** Per registered project ({@code project:NAME}): its counters and its tokens per slot. */
  private final Map<String, ProjectCounts> projects = new TreeMap<>();

  private long[] times = new long[1024];
  private long[] charges = new long[1024];
  private int head;
  private int size;
  private long windowTokens;

  StatsRecorder(long now) {
    reset(now);
  }

  /** An admitted request; {@code user} is the end user it names, or null. */
  void admitted(long charge, long now, String user) {
    if (user != null) {
      long[] u = users.computeIfAbsent(user, k -> new long[3]);
      u[0]++;
      u[1] += charge;
    }
    admitted++;
    estimatedTokens += charge;
    inFlight++;
    peakInFlight = Math.max(peakInFlight, inFlight);
    if (firstAdmitted < 0) {
      firstAdmitted = now;
    }
    lastAdmitted = now;
    while (size > 0 && times[head] <= now - WINDOW_NANOS) {
      windowTokens -= charges[head];
      head = (head + 1) % times.length;
      size--;
    }
    if (size == times.length) {
      grow();
    }
    int tail = (head + size) % times.length;
    times[tail] = now;
    charges[tail] = charge;
    size++;
    windowTokens += charge;
    peakTokens = Math.max(peakTokens, windowTokens);
    peakRequests = Math.max(peakRequests, size);
  }

  private void grow() {
    long[] t = new long[times.length * 2];
    long[] c = new long[times.length * 2];
    for (int i = 0; i < size; i++) {
      t[i] = times[(head + i) % times.length];
      c[i] = charges[(head + i) % times.length];
    }
    times = t;
    charges = c;
    head = 0;
  }

  void finished(long totalTokens) {
    actualTokens += totalTokens;
    inFlight--;
  }

  void rejected(String reason) {
    if (!rejected.containsKey(reason)) {
      throw new IllegalArgumentException("unknown reason " + reason);
    }
    rejected.merge(reason, 1L, Long::sum);
  }

  /** A request answered 429 for a rate limit that named {@code user} (null: none). */
  void rateLimited(String user) {
    if (user != null) {
      users.computeIfAbsent(user, k -> new long[3])[2]++;
    }
  }

  /** An admitted request of a registered project (ids {@code project:NAME}; others are not kept). */
  void projectAdmitted(String id, long charge, long now) {
    ProjectCounts p = project(id);
    if (p != null) {
      p.admitted++;
      p.tokens += charge;
      long slot = (now - epochNanos) / Stats.Project.SLOT_NANOS;
      if (slot < Stats.Project.MAX_SLOTS) {
        while (p.slots.size() <= slot) {
          p.slots.add(0L);
        }
        p.slots.set((int) slot, p.slots.get((int) slot) + charge);
      }
    }
  }

  /** A rate-limit 429 of a registered project. */
  void projectRateLimited(String id, long now) {
    ProjectCounts p = project(id);
    if (p != null) {
      p.rateLimited++;
      if (p.firstRateLimited < 0) {
        p.firstRateLimited = now;
      }
    }
  }

  private ProjectCounts project(String id) {
    return id.startsWith("project:") ? projects.computeIfAbsent(id.substring(8), k -> new ProjectCounts()) : null;
  }

  private static final class ProjectCounts {
    long admitted;
    long tokens;
    long rateLimited;
    long firstRateLimited = -1;
    final java.util.List<Long> slots = new java.util.ArrayList<>();
  }

  /** Zeroes everything but the requests still in flight, and restarts the clock at {@code now}. */
  void reset(long now) {
    epochNanos = now;
    admitted = 0;
    for (String reason : REASONS) {
      rejected.put(reason, 0L);
    }
    estimatedTokens = 0;
    actualTokens = 0;
    peakInFlight = inFlight;
    peakTokens = 0;
    peakRequests = 0;
    firstAdmitted = -1;
    lastAdmitted = -1;
    users.clear();
    projects.clear();
    Arrays.fill(times, 0);
    head = 0;
    size = 0;
    windowTokens = 0;
  }

  Stats snapshot(Stats.Limits limits) {
    return new Stats(
        admitted,
        new LinkedHashMap<>(rejected),
        estimatedTokens,
        actualTokens,
        inFlight,
        peakInFlight,
        peakTokens,
        peakRequests,
        sinceEpochMillis(firstAdmitted),
        sinceEpochMillis(lastAdmitted),
        limits,
        byUser(),
        byProject());
  }

  private Map<String, Stats.Project> byProject() {
    Map<String, Stats.Project> out = new LinkedHashMap<>();
    projects.forEach((name, p) -> out.put(name, new Stats.Project(
        p.admitted, p.tokens, p.rateLimited, sinceEpochMillis(p.firstRateLimited), p.slots)));
    return out;
  }

  private Map<String, Stats.User> byUser() {
    Map<String, Stats.User> out = new LinkedHashMap<>();
    users.forEach((name, u) -> out.put(name, new Stats.User(u[0], u[1], u[2])));
    return out;
  }

  private Long sinceEpochMillis(long nanos) {
    return nanos < 0 ? null : (nanos - epochNanos) / 1_000_000;
  }
}
