package dev.sluice.bench;

import java.io.IOException;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

/** The facts a reader needs to weigh the figures: CPU, memory, OS, JVM, load, commit. */
record Machine(int cores, String cpu, long ramBytes, String os, String jvm, long maxHeap, String gc,
    double loadAverage, String commit) {

  static Machine describe(Path dir) {
    var os = ManagementFactory.getOperatingSystemMXBean();
    long ram = -1;
    if (os instanceof com.sun.management.OperatingSystemMXBean sun) {
      ram = sun.getTotalMemorySize();
    }
    return new Machine(
        Runtime.getRuntime().availableProcessors(),
        cpuModel(),
        ram,
        System.getProperty("os.name") + " " + System.getProperty("os.version") + " " + System.getProperty("os.arch"),
        System.getProperty("java.vm.name") + " " + System.getProperty("java.runtime.version"),
        Runtime.getRuntime().maxMemory(),
        ManagementFactory.getGarbageCollectorMXBeans().stream().map(GarbageCollectorMXBean::getName)
            .collect(Collectors.joining(", ")),
        os.getSystemLoadAverage(),
        gitCommit(dir));
  }

  String summary() {
    return String.format(Locale.ROOT, "%d cores (%s), %s RAM; %s; %s, max heap %s, GC %s", cores, cpu,
        ramBytes < 0 ? "?" : Fmt.mib(ramBytes).replace(" MiB", "") + " MiB", os, jvm, Fmt.mib(maxHeap), gc);
  }

  private static String cpuModel() {
    try {
      return Files.readAllLines(Path.of("/proc/cpuinfo"), StandardCharsets.UTF_8).stream()
          .filter(l -> l.startsWith("model name"))
          .map(l -> l.substring(l.indexOf(':') + 1).trim())
          .findFirst()
          .orElse(System.getProperty("os.arch"));
    } catch (IOException | RuntimeException e) {
      return System.getProperty("os.arch");
    }
  }

  /** {@code git describe}-like: short commit, "+dirty" with local changes; "unknown" without git. */
  private static String gitCommit(Path dir) {
    try {
      String head = git(dir, "rev-parse", "--short", "HEAD");
      if (head == null) {
        return "unknown";
      }
      String status = git(dir, "status", "--porcelain", "--untracked-files=no");
      return status == null || status.isBlank() ? head : head + " + local changes";
    } catch (RuntimeException e) {
      return "unknown";
    }
  }

  private static String git(Path dir, String... args) {
    try {
      String[] cmd = new String[args.length + 1];
      cmd[0] = "git";
      System.arraycopy(args, 0, cmd, 1, args.length);
      Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
      if (!p.waitFor(5, TimeUnit.SECONDS) || p.exitValue() != 0) {
        return null;
      }
      return out;
    } catch (IOException e) {
      return null;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return null;
    }
  }
}
