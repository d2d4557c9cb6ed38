package dev.sluice.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * How much CPU other processes took during a window: the machine's busy time (from
 * {@code /proc/stat}) minus this JVM's and its children's (the redis-server it started), as a
 * fraction of all cores. A figure measured while another session compiled or ran its tests is
 * marked by it; NaN where {@code /proc/stat} does not exist.
 */
final class CpuShare {

  /** USER_HZ: the unit of /proc/stat, 100 on every Linux we run on. */
  private static final long NANOS_PER_TICK = 10_000_000L;

  record Sample(long wallNanos, long machineBusyNanos, long ownNanos) {}

  private CpuShare() {}

  static Sample sample() {
    return new Sample(System.nanoTime(), machineBusy(), own());
  }

  /** Others' share of all cores between two samples, 0..1, or NaN if unknown. */
  static double others(Sample a, Sample b) {
    if (a.machineBusyNanos() < 0 || b.machineBusyNanos() < 0) {
      return Double.NaN;
    }
    long wall = b.wallNanos() - a.wallNanos();
    long busy = b.machineBusyNanos() - a.machineBusyNanos();
    long own = b.ownNanos() - a.ownNanos();
    int cores = Runtime.getRuntime().availableProcessors();
    return wall <= 0 ? Double.NaN : Math.max(0, Math.min(1, (double) (busy - own) / ((double) wall * cores)));
  }

  private static long machineBusy() {
    try {
      String cpu = Files.readAllLines(Path.of("/proc/stat")).get(0);
      String[] f = cpu.trim().split("\\s+");
      // cpu user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
      long busy = 0;
      for (int i = 1; i < f.length && i <= 8; i++) {
        if (i != 4 && i != 5) {
          busy += Long.parseLong(f[i]);
        }
      }
      return busy * NANOS_PER_TICK;
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }

  private static long own() {
    ProcessHandle self = ProcessHandle.current();
    long total = cpu(self);
    for (ProcessHandle child : (Iterable<ProcessHandle>) self.descendants()::iterator) {
      total += cpu(child);
    }
    return total;
  }

  private static long cpu(ProcessHandle p) {
    return p.info().totalCpuDuration().map(Duration::toNanos).orElse(0L);
  }
}
