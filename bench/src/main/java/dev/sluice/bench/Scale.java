package dev.sluice.bench;

import dev.sluice.server.engine.FileLimitStore;
import dev.sluice.server.engine.Grant;
import dev.sluice.server.engine.Lane;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.LimitStore;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.RateSpec;
import dev.sluice.server.engine.Scheduler;
import dev.sluice.server.engine.Ticket;
import dev.sluice.server.engine.Validation;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.AbstractList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * How much the memory engine holds per resource and per parked waiter: heap after full GCs
 * before and after, on a {@link MemoryEngine} driven directly (no gRPC), in this JVM.
 *
 * <p>The resources are configured the way a restarted coordinator configures them, through the
 * {@link LimitStore} the engine loads at build time (one {@code setLimit} call per resource is
 * O(n) each with a durable store, so a million of them would be quadratic). What one more
 * {@code setLimit} costs at that size, with the server's own {@link FileLimitStore}, is measured
 * and reported.
 */
final class Scale {

  private static final Map<String, Long> ONE = Map.of("requests", 1L);
  private static final long MIB = 1 << 20;

  /** Bytes and instances of one class that the scenario added to the heap. */
  record ClassShare(String name, long instances, long bytes) {}

  /**
   * Figures of the resources scenario: {@code configured} resources loaded, the first {@code
   * live} of them then used once each (their live state built).
   */
  record Resources(int requested, int configured, int live, double loadSeconds, long heapBefore,
      long heapConfigured, long heapLive, double activateSeconds, double setLimitMillis, List<ClassShare> top,
      List<ClassShare> topLive, String note, String failure) {

    double bytesPerResource() {
      return (double) (heapConfigured - heapBefore) / configured;
    }

    /** A configured resource's bytes plus what its first use added. */
    double bytesPerLiveResource() {
      return live == 0 ? Double.NaN : bytesPerResource() + (double) (heapLive - heapConfigured) / live;
    }
  }

  /** Figures of the waiters scenario. */
  record Waiters(int requested, int parked, int resources, long heapBefore, long heapAfter, int threadsBefore,
      int threadsAfter, int stillWaiting, double parkSeconds, List<ClassShare> top, String failure) {

    double bytesPerWaiter() {
      return (double) (heapAfter - heapBefore) / parked;
    }

  }

  private Scale() {}

  /**
   * Configures {@code requested} resources (or as many as fit in 60 % of the free heap at the
   * cost a probe of 20 000 measures), then uses as many of them once as fit in half of what is
   * left; the report projects both to the requested count.
   */
  static Resources resources(int requested) throws Exception {
    int probeSize = Math.min(requested, 20_000);
    Resources probe = resources(probeSize, probeSize, probeSize, false);
    if (probeSize == requested || probe.failure() != null) {
      return probe;
    }
    long free = Runtime.getRuntime().maxMemory() - usedHeapAfterGc();
    int configured = (int) Math.min(requested, Math.max(probeSize, 0.6 * free / probe.bytesPerResource()));
    double liveExtra = probe.bytesPerLiveResource() - probe.bytesPerResource();
    double freeAfter = free - configured * probe.bytesPerResource();
    int live = (int) Math.min(configured, Math.max(probeSize, 0.5 * freeAfter / Math.max(1, liveExtra)));
    return resources(requested, configured, live, true);
  }

  private static Resources resources(int requested, int n, int live, boolean detail) throws Exception {
    ScheduledThreadPoolExecutor timers = timers();
    Path dir = Files.createTempDirectory("sluice-bench-scale-");
    Map<String, long[]> classesBefore = detail ? classHistogram() : Map.of();
    long before = usedHeapAfterGc();
    MemoryEngine engine = null;
    int configured = 0;
    int madeLive = 0;
    long heapConfigured = -1;
    long heapLive = -1;
    double loadSeconds = Double.NaN;
    double activateSeconds = Double.NaN;
    double setLimitMillis = Double.NaN;
    List<ClassShare> top = List.of();
    List<ClassShare> topLive = List.of();
    String failure = null;
    try {
      long t0 = System.nanoTime();
      engine = MemoryEngine.builder().scheduler(Scheduler.of(timers))
          .store(generated(n, 100, Duration.ofSeconds(1), new FileLimitStore(dir))).build();
      loadSeconds = (System.nanoTime() - t0) / 1e9;
      configured = n;
      Map<String, long[]> classesConfigured = detail ? classHistogram() : Map.of();
      heapConfigured = usedHeapAfterGc();
      if (detail) {
        top = grown(classesBefore, classesConfigured, 10);
      }

      t0 = System.nanoTime();
      for (int i = 0; i < live; i++) {
        String r = name(i);
        Ticket t = engine.acquire(r, ONE, Lane.DEFAULT, 0);
        Grant g = t.future().getNow(null);
        if (g != null && t.claim()) {
          engine.release(r, g.permitId(), Map.of(), false, false);
        }
        madeLive++;
      }
      activateSeconds = (System.nanoTime() - t0) / 1e9;
      heapLive = usedHeapAfterGc();
      if (detail) {
        topLive = grown(classesConfigured, classHistogram(), 10);
      }

      // What one more limit costs once there are n, stored the way the server stores them.
      if (detail) {
        double[] ms = new double[3];
        for (int i = 0; i < ms.length; i++) {
          LimitSpec extra = spec("extra-" + i, 100, Duration.ofSeconds(1));
          long s = System.nanoTime();
          engine.setLimit(extra).join();
          ms[i] = (System.nanoTime() - s) / 1e6;
        }
        java.util.Arrays.sort(ms);
        setLimitMillis = ms[1];
      }
    } catch (OutOfMemoryError e) {
      failure = "out of heap (max " + Runtime.getRuntime().maxMemory() / MIB + " MiB): rerun with a larger -Xmx";
    } finally {
      if (engine != null) {
        engine.close();
      }
      engine = null;
      timers.shutdownNow();
      try (var files = Files.walk(dir)) {
        for (Path p : files.sorted(java.util.Comparator.reverseOrder()).toList()) {
          Files.deleteIfExists(p);
        }
      }
    }
    String note = configured < requested || madeLive < configured
        ? Fmt.rate(configured) + " configured and " + Fmt.rate(madeLive) + " of them used once: what fits in the "
            + (Runtime.getRuntime().maxMemory() >> 20) + " MiB heap at the cost a probe of 20 000 measured. The"
            + " targets project " + (configured < requested ? "both figures" : "the used-once figure") + " to "
            + Fmt.rate(requested) + " from the cost per resource"
        : null;
    return new Resources(requested, configured, madeLive, loadSeconds, before, heapConfigured, heapLive,
        activateSeconds, setLimitMillis, top, topLive, note, failure);
  }

  /**
   * Parks {@code n} acquires spread evenly over {@code resources} resources whose buckets are
   * empty (1 request per hour, buckets start empty) with a 10-minute timeout.
   */
  static Waiters waiters(int n, int resources) throws Exception {
    ScheduledThreadPoolExecutor timers = timers();
    if ((n + resources - 1) / resources > 10_000) {
      throw new IllegalArgumentException("at most 10 000 waiters per resource (the waiting room)");
    }
    MemoryEngine engine = MemoryEngine.builder()
        .scheduler(Scheduler.of(timers))
        .store(generated(resources, 1, Duration.ofHours(1)))
        .build();
    Ticket[] tickets = new Ticket[n];
    int parked = 0;
    String failure = null;
    long before = -1;
    long after = -1;
    int threadsBefore = -1;
    int threadsAfter = -1;
    int stillWaiting = 0;
    double parkSeconds = Double.NaN;
    Map<String, long[]> classesBefore = Map.of();
    List<ClassShare> top = List.of();
    try {
      // Live state for every resource first: that is the resources' cost, not the waiters'.
      for (int r = 0; r < resources; r++) {
        engine.acquire(name(r), ONE, Lane.DEFAULT, 0);
      }
      // The scheduler's one thread exists once it ran a task: start it before counting.
      timers.schedule(() -> { }, 0, TimeUnit.NANOSECONDS).get();
      classesBefore = classHistogram();
      before = usedHeapAfterGc();
      threadsBefore = ManagementFactory.getThreadMXBean().getThreadCount();
      long timeout = TimeUnit.MINUTES.toNanos(10);
      long t0 = System.nanoTime();
      for (int i = 0; i < n; i++) {
        tickets[i] = engine.acquire(name(i % resources), ONE, Lane.DEFAULT, timeout);
        parked++;
      }
      parkSeconds = (System.nanoTime() - t0) / 1e9;
      after = usedHeapAfterGc();
      threadsAfter = ManagementFactory.getThreadMXBean().getThreadCount();
      top = grown(classesBefore, classHistogram(), 10);
      for (Ticket t : tickets) {
        if (!t.future().isDone()) {
          stillWaiting++;
        }
      }
    } catch (OutOfMemoryError e) {
      failure = "out of heap after " + parked + " waiters (max " + Runtime.getRuntime().maxMemory() / MIB + " MiB)";
    } finally {
      engine.close(); // every waiter fails with UNAVAILABLE
      timers.shutdownNow();
    }
    return new Waiters(n, parked, resources, before, after, threadsBefore, threadsAfter, stillWaiting, parkSeconds,
        top, failure);
  }

  static String name(int i) {
    return "res-" + i;
  }

  private static LimitSpec spec(String resource, long amount, Duration period) {
    // Validation fills in the server's defaults (waiting room, lease), as SetLimit does.
    LimitSpec raw = new LimitSpec(resource, List.of(new RateSpec("requests", amount, period,
        RateSpec.defaultBurst(amount, period))), 0, 0, null);
    return Validation.limit(raw, 10_000, Duration.ofSeconds(30));
  }

  /** A store that "loads" {@code n} limits generated on the fly, each with its own objects. */
  private static LimitStore generated(int n, long amount, Duration period) {
    return generated(n, amount, period, null);
  }

  /** Like {@link #generated(int, long, Duration)}; saves go to {@code saveTo} when given. */
  private static LimitStore generated(int n, long amount, Duration period, LimitStore saveTo) {
    return new LimitStore() {
      @Override
      public List<LimitSpec> load() {
        return new AbstractList<>() {
          @Override
          public LimitSpec get(int i) {
            return spec(name(i), amount, Duration.ofNanos(period.toNanos()));
          }

          @Override
          public int size() {
            return n;
          }
        };
      }

      @Override
      public void save(Collection<LimitSpec> limits) throws java.io.IOException {
        if (saveTo != null) {
          saveTo.save(limits);
        }
      }

      @Override
      public boolean durable() {
        return saveTo != null;
      }
    };
  }

  private static ScheduledThreadPoolExecutor timers() {
    ScheduledThreadPoolExecutor timers = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "bench-scale-timer");
      t.setDaemon(true);
      return t;
    });
    timers.setRemoveOnCancelPolicy(true);
    return timers;
  }

  /**
   * Live objects per class ({@code GC.class_histogram}, which collects first): class name to
   * {instances, bytes}. Empty when the diagnostic command is not available.
   */
  static Map<String, long[]> classHistogram() {
    try {
      javax.management.ObjectName name = new javax.management.ObjectName("com.sun.management:type=DiagnosticCommand");
      String text = (String) ManagementFactory.getPlatformMBeanServer().invoke(name, "gcClassHistogram",
          new Object[] {new String[0]}, new String[] {String[].class.getName()});
      Map<String, long[]> classes = new java.util.HashMap<>();
      java.util.regex.Pattern line = java.util.regex.Pattern.compile("^\\s*\\d+:\\s+(\\d+)\\s+(\\d+)\\s+(\\S+).*$");
      for (String l : text.split("\\R")) {
        java.util.regex.Matcher m = line.matcher(l);
        if (m.matches()) {
          classes.put(m.group(3), new long[] {Long.parseLong(m.group(1)), Long.parseLong(m.group(2))});
        }
      }
      return classes;
    } catch (Exception e) {
      return Map.of();
    }
  }

  /** The {@code k} classes whose live bytes grew most from {@code before} to {@code after}. */
  static List<ClassShare> grown(Map<String, long[]> before, Map<String, long[]> after, int k) {
    return after.entrySet().stream()
        .map(e -> {
          long[] b = before.getOrDefault(e.getKey(), new long[2]);
          return new ClassShare(e.getKey(), e.getValue()[0] - b[0], e.getValue()[1] - b[1]);
        })
        .filter(c -> c.bytes() > 0)
        .sorted((x, y) -> Long.compare(y.bytes(), x.bytes()))
        .limit(k)
        .toList();
  }

  /** Heap in use after full collections, once it stops shrinking. */
  static long usedHeapAfterGc() throws InterruptedException {
    var memory = ManagementFactory.getMemoryMXBean();
    long last = Long.MAX_VALUE;
    for (int i = 0; i < 5; i++) {
      System.gc();
      Thread.sleep(100);
      long used = memory.getHeapMemoryUsage().getUsed();
      if (used >= last - (1 << 16)) {
        return Math.min(used, last);
      }
      last = used;
    }
    return last;
  }
}
