package dev.sluice.bench;

import com.sun.management.UnixOperatingSystemMXBean;
import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.SluiceClient;
import java.io.IOException;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The soak run: a real coordinator (memory store) in this JVM and an SDK client offering a fixed
 * rate of acquire+release for a long time (default 10 min at 15 000 permits/s, half the unary
 * maximum of the committed benchmark run). Every 30 s it forces a GC and samples the heap after
 * it, the open file descriptors and the threads. It passes when there were no errors, the floor
 * of the heap after GC did not rise (see {@link #verdict}) and the descriptors did not grow. Writes the soak section
 * of BENCHMARKS.md (between its markers), so the full benchmark keeps it.
 *
 * <pre>java -jar bench/target/sluice-bench.jar soak [--duration 10m] [--rate 15000] [--out .]</pre>
 */
final class Soak {

  static final String BEGIN = "<!-- soak:begin -->";
  static final String END = "<!-- soak:end -->";
  private static final Duration SAMPLE = Duration.ofSeconds(30);
  static final long DEFAULT_RATE = 15_000;
  /** Acquires in flight at most: a stall shows up as a missed rate, not as unbounded memory. */
  private static final int MAX_IN_FLIGHT = 2_000;

  private record Sample(double minutes, long permits, long errors, double heapMiB, long fds, int threads,
      double ratePerSecond) {}

  private Soak() {}

  /** {@code args}: the soak command line, "soak" first. */
  static boolean run(String[] args, PrintStream out) throws Exception {
    Duration duration = Duration.ofMinutes(10);
    long rate = DEFAULT_RATE;
    Path dir = Path.of(".");
    for (int i = 1; i < args.length; i++) {
      switch (args[i]) {
        case "--duration" -> duration = Options.duration(Options.value(args, ++i, "--duration"));
        case "--rate" -> rate = Options.positive(Options.value(args, ++i, "--rate"), "--rate");
        case "--out" -> dir = Path.of(Options.value(args, ++i, "--out"));
        default -> throw new IllegalArgumentException("soak: unknown option '" + args[i]
            + "'; use --duration D, --rate N, --out DIR");
      }
    }
    return run(duration, rate, dir, out);
  }

  static boolean run(Duration duration, long rate, Path dir, PrintStream out) throws Exception {
    Instant started = Instant.now();
    List<Sample> samples = new ArrayList<>();
    AtomicLong permits = new AtomicLong();
    AtomicLong errors = new AtomicLong();
    AtomicReference<Throwable> firstError = new AtomicReference<>();
    out.printf(Locale.ROOT, "soak: %s at %,d permits/s offered (memory store, unary SDK, acquire+release)%n",
        duration, rate);
    try (SluiceRig rig = SluiceRig.memory(); SluiceClient client = rig.client()) {
      rig.setLimit(SluiceRig.rate(LoadGen.HOT, 1_000_000_000L, 10_000));
      Semaphore inFlight = new Semaphore(MAX_IN_FLIGHT);
      AcquireOptions options = AcquireOptions.builder().timeout(Duration.ofSeconds(30)).build();
      long t0 = System.nanoTime();
      long end = t0 + duration.toNanos();
      long interval = TimeUnit.SECONDS.toNanos(1) / rate;
      long next = t0;
      long nextSample = t0 + SAMPLE.toNanos();
      long lastPermits = 0;
      long lastSampleAt = t0;
      samples.add(sample(0, 0, 0, 0));
      while (true) {
        long now = System.nanoTime();
        if (now - end >= 0) {
          break;
        }
        if (now - nextSample >= 0) {
          long p = permits.get();
          double perSecond = (p - lastPermits) / ((now - lastSampleAt) / 1e9);
          Sample s = sample((now - t0) / 60e9, p, errors.get(), perSecond);
          samples.add(s);
          out.printf(Locale.ROOT, "  %5.1f min  %,12d permits  %,9.0f/s  errors %d  heap after GC %7.1f MiB  fds %d"
              + "  threads %d%n", s.minutes(), s.permits(), s.ratePerSecond(), s.errors(), s.heapMiB(), s.fds(),
              s.threads());
          lastPermits = p;
          lastSampleAt = System.nanoTime();
          nextSample += SAMPLE.toNanos();
          next = Math.max(next, System.nanoTime() - TimeUnit.MILLISECONDS.toNanos(100)); // the GC pause is not owed
          continue;
        }
        if (now - next < 0) {
          long gap = next - now;
          if (gap > 200_000) {
            TimeUnit.NANOSECONDS.sleep(gap - 100_000);
          } else {
            Thread.onSpinWait();
          }
          continue;
        }
        next += interval;
        if (!inFlight.tryAcquire()) {
          continue; // the coordinator is behind: this permit is not offered (shows as a lower rate)
        }
        client.acquireAsync(LoadGen.HOT, Load.requests(1), options).whenComplete((p, e) -> {
          inFlight.release();
          if (e != null) {
            errors.incrementAndGet();
            firstError.compareAndSet(null, e);
            return;
          }
          p.close();
          permits.incrementAndGet();
        });
      }
      inFlight.acquire(MAX_IN_FLIGHT); // everything answered
      inFlight.release(MAX_IN_FLIGHT);
    }
    Verdict v = verdict(samples, errors.get());
    out.println("soak: " + v.summary());
    if (firstError.get() != null) {
      out.println("soak: first error: " + firstError.get());
    }
    writeSection(dir.resolve("BENCHMARKS.md"), section(samples, v, duration, rate, started, firstError.get()));
    out.println("soak: wrote the soak section of " + dir.resolve("BENCHMARKS.md"));
    return v.pass();
  }

  private static Sample sample(double minutes, long permits, long errors, double perSecond) {
    System.gc();
    System.gc();
    double heap = ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed() / 1024.0 / 1024.0;
    long fds = -1;
    if (ManagementFactory.getOperatingSystemMXBean() instanceof UnixOperatingSystemMXBean unix) {
      fds = unix.getOpenFileDescriptorCount();
    }
    return new Sample(minutes, permits, errors, heap, fds, Thread.activeCount(), perSecond);
  }

  record Verdict(boolean pass, long errors, double floorEarlyMiB, double floorLateMiB, long fdGrowth,
      double meanRate) {
    String summary() {
      return String.format(Locale.ROOT, "%s: %d errors, heap floor after GC %.1f MiB early -> %.1f MiB late (%+.1f),"
          + " file descriptors %+d, %,.0f permits/s on average", pass ? "PASS" : "FAIL", errors, floorEarlyMiB,
          floorLateMiB, floorLateMiB - floorEarlyMiB, fdGrowth, meanRate);
    }
  }

  /**
   * A leak raises the floor of the heap after GC; permits in flight at the instant of a sample
   * only add spikes (they are gone at the next). So the lowest sample of the last third of the
   * steady state (after minute 2) is compared with the lowest of its first third: it passes if it
   * grew by less than 1 MiB, with no error and no more open files at the end than at minute 2.
   */
  static Verdict verdict(List<Sample> samples, long errors) {
    List<Sample> steady = samples.stream().filter(s -> s.minutes() >= 2).toList();
    if (steady.size() < 3) {
      steady = samples.subList(Math.min(1, samples.size() - 1), samples.size());
    }
    int third = Math.max(1, steady.size() / 3);
    double early = steady.subList(0, third).stream().mapToDouble(Sample::heapMiB).min().orElse(0);
    double late = steady.subList(steady.size() - third, steady.size()).stream().mapToDouble(Sample::heapMiB).min()
        .orElse(0);
    long fdGrowth = steady.isEmpty() ? 0 : steady.get(steady.size() - 1).fds() - steady.get(0).fds();
    double mean = samples.stream().skip(1).mapToDouble(Sample::ratePerSecond).average().orElse(0);
    boolean pass = errors == 0 && late - early < 1.0 && fdGrowth <= 0;
    return new Verdict(pass, errors, early, late, fdGrowth, mean);
  }

  private static String section(List<Sample> samples, Verdict v, Duration duration, long rate, Instant started,
      Throwable firstError) {
    StringBuilder b = new StringBuilder();
    b.append(BEGIN).append('\n');
    b.append("## Soak\n\n");
    b.append("Written by `java -jar bench/target/sluice-bench.jar soak` on ")
        .append(DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm 'UTC'").withZone(ZoneOffset.UTC).format(started))
        .append(": ").append(duration.toMinutes()).append(" min at ").append(String.format(Locale.ROOT, "%,d", rate))
        .append(" permits/s offered").append(rate == DEFAULT_RATE
            ? " (half the unary memory-store maximum of the committed benchmark run)" : "")
        .append(", one SDK client, acquire+release on one resource, memory store, in one JVM on this machine. Every 30 s: a forced"
            + " GC, then the heap used, the open file descriptors and the threads. Pass: no error; the floor of"
            + " the heap after GC (the lowest sample of the last third of the run after minute 2, against the"
            + " lowest of its first third) grew by under 1 MiB (acquires in flight at a sample only add"
            + " spikes, a leak raises the floor); no more open descriptors at the end than at minute 2.\n\n");
    b.append("**").append(v.summary()).append("**");
    if (firstError != null) {
      b.append(" (first error: `").append(firstError.toString().replace('`', '\'')).append("`)");
    }
    b.append("\n\n| minute | permits | permits/s | errors | heap after GC | open fds | threads |\n");
    b.append("|---:|---:|---:|---:|---:|---:|---:|\n");
    for (Sample s : samples) {
      b.append(String.format(Locale.ROOT, "| %.1f | %,d | %,.0f | %d | %.1f MiB | %d | %d |%n", s.minutes(),
          s.permits(), s.ratePerSecond(), s.errors(), s.heapMiB(), s.fds(), s.threads()));
    }
    b.append(END).append('\n');
    return b.toString();
  }

  /** Replaces the soak section of {@code report} (or appends it), keeping everything else. */
  static void writeSection(Path report, String section) throws IOException {
    String md = Files.exists(report) ? Files.readString(report, StandardCharsets.UTF_8) : "";
    int a = md.indexOf(BEGIN);
    int z = md.indexOf(END);
    String next = a >= 0 && z > a
        ? md.substring(0, a) + section + md.substring(z + END.length() + (md.startsWith("\n", z + END.length()) ? 1 : 0))
        : md + (md.isEmpty() || md.endsWith("\n\n") ? "" : "\n") + section;
    Files.writeString(report, next, StandardCharsets.UTF_8);
  }

  /** The soak section of an existing report, for the full benchmark to carry over; "" if none. */
  static String existingSection(Path report) {
    try {
      String md = Files.readString(report, StandardCharsets.UTF_8);
      int a = md.indexOf(BEGIN);
      int z = md.indexOf(END);
      return a >= 0 && z > a ? md.substring(a, z + END.length()) + "\n" : "";
    } catch (IOException e) {
      return "";
    }
  }
}
