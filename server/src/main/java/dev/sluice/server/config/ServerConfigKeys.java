package dev.sluice.server.config;

import dev.sluice.server.engine.Durations;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * Every coordinator setting with its default and its range, in one place (after Apache Ratis's
 * {@code RaftServerConfigKeys}: a final class of key groups, each key beside its default). The
 * server's builder, the engines' builders, the limit checks and {@code sluice serve} all read
 * them here, so a default or a bound cannot drift between them, and a value out of range gets
 * the same message from every path: what is wrong and the range to use.
 *
 * <p>Defaults of duration keys are kept as text ({@code "30s"}, the syntax of the {@code serve}
 * flags) so that the command line can name them in its annotations; {@link Key#defaultValue()}
 * is that text parsed.
 *
 * <p>GrpcLimits and HttpApi.Limits stay the immutable configs of their ports; their defaults
 * and ranges are here too.
 */
public final class ServerConfigKeys {

  private ServerConfigKeys() {}

  /** The gRPC port and the server's lifecycle. */
  public static final class Grpc {
    private Grpc() {}

    /** {@code --port}. */
    public static final int PORT_DEFAULT = 7420;
    public static final Key<Integer> PORT = Key.ofInt("port", PORT_DEFAULT, 0, 65535, "");

    /** {@code --max-waiting-per-connection}. */
    public static final int MAX_WAITING_PER_CONNECTION_DEFAULT = 100_000;
    public static final Key<Integer> MAX_WAITING_PER_CONNECTION =
        Key.ofInt("max waiting per connection", MAX_WAITING_PER_CONNECTION_DEFAULT, 1, 10_000_000, "");

    /** {@code --shutdown-grace}; no upper bound. */
    public static final String SHUTDOWN_GRACE_DEFAULT = "10s";
    public static final Key<Duration> SHUTDOWN_GRACE =
        Key.ofDuration("shutdown grace", SHUTDOWN_GRACE_DEFAULT, "0s", null, "");

    // What one client may hold on the port (GrpcLimits); the connection cap's default depends
    // on the process's descriptors, so GrpcLimits keeps it.

    /** {@code --grpc-handshake-timeout} (grpc-java's own default is 2 minutes). */
    public static final String HANDSHAKE_TIMEOUT_DEFAULT = "10s";
    public static final Key<Duration> HANDSHAKE_TIMEOUT = Key.ofDuration("handshake timeout",
        HANDSHAKE_TIMEOUT_DEFAULT, "100ms", "2m", " (--grpc-handshake-timeout)");

    /** {@code --max-connection-idle}. */
    public static final String MAX_CONNECTION_IDLE_DEFAULT = "2m";
    public static final Key<Duration> MAX_CONNECTION_IDLE = Key.ofDuration("max connection idle",
        MAX_CONNECTION_IDLE_DEFAULT, "100ms", "1d", " (--max-connection-idle)");

    /** {@code --max-connection-age}. */
    public static final String MAX_CONNECTION_AGE_DEFAULT = "1h";
    public static final Key<Duration> MAX_CONNECTION_AGE = Key.ofDuration("max connection age",
        MAX_CONNECTION_AGE_DEFAULT, "1s", "30d", " (--max-connection-age)");

    /** {@code --max-connection-age-grace}: the default max wait, so a parked acquire ends on its own terms. */
    public static final String MAX_CONNECTION_AGE_GRACE_DEFAULT = "5m";
    public static final Key<Duration> MAX_CONNECTION_AGE_GRACE = Key.ofDuration("max connection age grace",
        MAX_CONNECTION_AGE_GRACE_DEFAULT, "0s", "1d", " (--max-connection-age-grace)");

    /** {@code --max-calls-per-connection}. */
    public static final int MAX_CALLS_PER_CONNECTION_DEFAULT = 10_000;
    public static final Key<Integer> MAX_CALLS_PER_CONNECTION = Key.ofInt("max calls per connection",
        MAX_CALLS_PER_CONNECTION_DEFAULT, 1, 1_000_000, " (--max-calls-per-connection)");

    /** {@code --max-resets-per-10s}. */
    public static final int MAX_RESETS_PER_10S_DEFAULT = 10_000;
    public static final Key<Integer> MAX_RESETS_PER_10S = Key.ofInt("max resets per 10s",
        MAX_RESETS_PER_10S_DEFAULT, 1, 1_000_000, " (--max-resets-per-10s)");

    /** {@code --max-health-watches}. */
    public static final int MAX_HEALTH_WATCHES_DEFAULT = 1_000;
    public static final Key<Integer> MAX_HEALTH_WATCHES = Key.ofInt("max health watches",
        MAX_HEALTH_WATCHES_DEFAULT, 1, 1_000_000, " (--max-health-watches)");
  }

  /** The HTTP port (metrics, health, dashboard, JSON API). */
  public static final class Http {
    private Http() {}

    /**
     * {@code --http-port}: {@code sluice serve} opens it by default; a server built in code has
     * none unless {@code httpPort(n)} is called.
     */
    public static final int PORT_DEFAULT = 7421;
    public static final Key<Integer> PORT = Key.ofInt("http port", PORT_DEFAULT, 0, 65535, "");

    // What clients may hold on the port (HttpApi.Limits); the connection cap's default depends
    // on the process's descriptors, so HttpApi.Limits keeps it.

    /** {@code --http-idle-timeout}: longer than the 60 s of common load balancers. */
    public static final String IDLE_TIMEOUT_DEFAULT = "75s";
    public static final Key<Duration> IDLE_TIMEOUT =
        Key.ofDuration("--http-idle-timeout", IDLE_TIMEOUT_DEFAULT, "100ms", "1d", "");

    /** {@code --http-read-timeout}. */
    public static final String READ_TIMEOUT_DEFAULT = "20s";
    public static final Key<Duration> READ_TIMEOUT =
        Key.ofDuration("--http-read-timeout", READ_TIMEOUT_DEFAULT, "100ms", "1d", "");

    /** {@code --http-max-pipelined}. */
    public static final int MAX_PIPELINED_DEFAULT = 8;
    public static final Key<Integer> MAX_PIPELINED =
        Key.ofInt("--http-max-pipelined", MAX_PIPELINED_DEFAULT, 0, 1000, "");
  }

  /** Where state lives. */
  public static final class Store {
    private Store() {}

    /** {@code --store}: this node alone, limits in the data dir. */
    public static final String STORE_DEFAULT = "memory";

    /** {@code --data-dir}, relative to the working directory. */
    public static final String DATA_DIR_DEFAULT = "sluice-data";
  }

  /** Defaults of limits that do not set their own, and the bounds of every limit's value. */
  public static final class Limits {
    private Limits() {}

    /** {@code --max-waiting}; a limit's own waiting room has the same bounds. */
    public static final int MAX_WAITING_DEFAULT = 10_000;
    public static final Key<Integer> MAX_WAITING = Key.ofInt("max waiting", MAX_WAITING_DEFAULT, 1, 1_000_000, "");

    /** {@code --lease-ttl}; a limit's own lease has the same bounds. */
    public static final String LEASE_TTL_DEFAULT = "30s";
    public static final Key<Duration> LEASE_TTL = Key.ofDuration("lease TTL", LEASE_TTL_DEFAULT, "1s", "1h", "");

    /** {@code --max-wait}: the longest an acquire may wait, whatever the caller asks. */
    public static final String MAX_WAIT_DEFAULT = "5m";
    public static final Key<Duration> MAX_WAIT = Key.ofDuration("max wait", MAX_WAIT_DEFAULT, "1ms", "24h", "");

    /** {@code --aging}: a lower-lane waiter this old gets every other grant (0: lanes alternate). */
    public static final String AGING_DEFAULT = "10s";
    public static final Key<Duration> AGING = Key.ofDuration("aging", AGING_DEFAULT, "0s", "1h", "");

    /** {@code --metrics-max-resources}. */
    public static final int METRICS_MAX_RESOURCES_DEFAULT = 1_000;
    public static final Key<Integer> METRICS_MAX_RESOURCES = Key.ofInt("metrics max resources",
        METRICS_MAX_RESOURCES_DEFAULT, 0, 1_000_000, " (0 puts every resource under resource=\"_other\");"
            + " each tagged resource holds ~3 KB of meters and a series per meter in the monitoring system");

    /**
     * {@code --metrics-wait-buckets}: the upper bounds of the wait histogram's buckets. Each
     * metered resource exports one series per bound, plus {@code +Inf}, {@code _sum},
     * {@code _count} and {@code _max}: 9 with the default.
     */
    public static final String METRICS_WAIT_BUCKETS_DEFAULT = "10ms,100ms,1s,10s,1m";
    /** At most this many bounds: each is a series per resource. */
    public static final int METRICS_WAIT_BUCKETS_MAX = 20;

    /**
     * Returns {@code bounds} if they are 1 to {@link #METRICS_WAIT_BUCKETS_MAX} durations above
     * zero, in increasing order.
     *
     * @throws IllegalArgumentException naming what is wrong and the fix
     */
    public static List<Duration> checkWaitBuckets(List<Duration> bounds) {
      String fix = ": give 1 to " + METRICS_WAIT_BUCKETS_MAX + " increasing durations above 0, such as "
          + METRICS_WAIT_BUCKETS_DEFAULT;
      if (bounds == null || bounds.isEmpty() || bounds.size() > METRICS_WAIT_BUCKETS_MAX) {
        throw new IllegalArgumentException("metrics wait buckets: "
            + (bounds == null || bounds.isEmpty() ? "none given" : bounds.size() + " given") + fix);
      }
      Duration previous = Duration.ZERO;
      for (Duration d : bounds) {
        if (d == null || d.compareTo(previous) <= 0) {
          throw new IllegalArgumentException("metrics wait buckets: "
              + (d == null ? "a missing value" : Durations.format(d) + (d.isZero() || d.isNegative()
                  ? " is not above 0" : " does not follow " + Durations.format(previous))) + fix);
        }
        previous = d;
      }
      return List.copyOf(bounds);
    }

    /** {@link #METRICS_WAIT_BUCKETS_DEFAULT} as durations. */
    public static List<Duration> defaultWaitBuckets() {
      List<Duration> out = new ArrayList<>();
      for (String part : METRICS_WAIT_BUCKETS_DEFAULT.split(",")) {
        out.add(Key.parse(part));
      }
      return checkWaitBuckets(out);
    }
  }

  /** Buffers. */
  public static final class Buffer {
    private Buffer() {}

    /** {@code --buffer-fsync always}: every group commit is fsynced. */
    public static final boolean FSYNC_DEFAULT = true;

    /** {@code --buffer-lease}: renewed every second, so at least twice that. */
    public static final String LEASE_DEFAULT = "10s";
    public static final Key<Duration> LEASE = Key.ofDuration("buffer lease", LEASE_DEFAULT, "2s", "10m",
        " (renewed every second, so at least twice that)");
  }

  /**
   * One setting: its name in messages, its default and its inclusive range (no maximum if
   * null), with the one check every path uses.
   *
   * @param <T> {@code Integer} or {@code Duration}
   */
  public static final class Key<T extends Comparable<? super T>> {
    private final String name;
    private final T defaultValue;
    private final T min;
    private final T max;
    private final String hint;
    private final String kind;
    private final Function<T, String> format;

    private Key(String name, T defaultValue, T min, T max, String hint, String kind, Function<T, String> format) {
      this.name = name;
      this.defaultValue = defaultValue;
      this.min = min;
      this.max = max;
      this.hint = hint;
      this.kind = kind;
      this.format = format;
      if (problem(defaultValue) != null) {
        throw new AssertionError(problem(defaultValue));
      }
    }

    static Key<Integer> ofInt(String name, int defaultValue, int min, int max, String hint) {
      return new Key<>(name, defaultValue, min, max, hint, "a number", n -> Integer.toString(n));
    }

    /** Duration texts in the {@code serve} flags' syntax; {@code max} null for no maximum. */
    static Key<Duration> ofDuration(String name, String defaultText, String min, String max, String hint) {
      return new Key<>(name, parse(defaultText), parse(min), max == null ? null : parse(max), hint, "a duration",
          Durations::format);
    }

    private static Duration parse(String text) {
      return Durations.parse("", text, Durations.ANY, false);
    }

    public String name() {
      return name;
    }

    public T defaultValue() {
      return defaultValue;
    }

    public T min() {
      return min;
    }

    /** The largest value accepted, or null if there is none. */
    public T max() {
      return max;
    }

    /** What is wrong with {@code value}, naming the range; null when it is in range. */
    public String problem(T value) {
      if (value == null) {
        return name + " is missing: give " + kind + " such as " + format.apply(defaultValue);
      }
      if (value.compareTo(min) >= 0 && (max == null || value.compareTo(max) <= 0)) {
        return null;
      }
      return name + " " + format.apply(value) + " is out of range: use " + format.apply(min)
          + (max == null ? " or more" : " to " + format.apply(max)) + hint;
    }

    /**
     * Returns {@code value} if in range.
     *
     * @throws IllegalArgumentException naming the value and the range
     */
    public T check(T value) {
      String problem = problem(value);
      if (problem != null) {
        throw new IllegalArgumentException(problem);
      }
      return value;
    }

    /** {@code value}, or the default when null. */
    public T orDefault(T value) {
      return value == null ? defaultValue : value;
    }
  }
}
