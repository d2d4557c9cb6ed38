package dev.sluice.bench;

import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;

/**
 * {@code sluice-bench.jar first}: what a fresh process's first acquire costs against the p50 of
 * the ones after it, with the client only built and with {@link SluiceClient#warmUp} after
 * building. Each run is a new JVM (the cost is class loading and connecting, which a warm JVM has
 * paid already) against one memory-store coordinator in this JVM: {@code threads} threads are
 * released together for their first acquire, as a worker pool starting up is, then each makes
 * 100 more. Prints one line per run; asserts nothing.
 */
final class FirstAcquire {

  private static final String RESOURCE = "first";
  private static final int AFTER = 100;

  private FirstAcquire() {}

  static void run(String[] args, PrintStream out) throws Exception {
    int threads = 32;
    int runs = 3;
    for (int i = 1; i < args.length; i++) {
      switch (args[i]) {
        case "--threads" -> threads = Integer.parseInt(args[++i]);
        case "--runs" -> runs = Integer.parseInt(args[++i]);
        default -> throw new IllegalArgumentException("unknown option " + args[i] + ": first [--threads 32] [--runs 3]");
      }
    }
    out.printf(Locale.ROOT, "first: a fresh JVM per run, %d threads released together for their first acquire, then"
        + " %d more each; a concurrency-only limit on a memory-store coordinator in the bench JVM%n", threads, AFTER);
    out.printf(Locale.ROOT, "%-16s %9s %9s %22s %14s %14s%n", "client", "build", "warmUp", "first: median / max",
        "then: p50", "then: p99");
    try (SluiceRig rig = SluiceRig.memory(false)) {
      rig.setLimit(SluiceRig.concurrency(RESOURCE, 100_000, 100_000));
      for (boolean warm : new boolean[] {false, true}) {
        for (int r = 0; r < runs; r++) {
          out.println(child(rig.target(), warm, threads));
        }
      }
    }
  }

  /** Runs one measurement in a new JVM on this JVM's classpath; returns its table row. */
  private static String child(String target, boolean warm, int threads) throws Exception {
    Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", System.getProperty("java.class.path"),
        FirstAcquire.class.getName(), target, Boolean.toString(warm), Integer.toString(threads))
        .redirectErrorStream(true)
        .start();
    List<String> lines = new ArrayList<>();
    try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      for (String line; (line = r.readLine()) != null; ) {
        lines.add(line);
      }
    }
    int exit = p.waitFor();
    String row = lines.stream().filter(l -> l.startsWith("ROW ")).findFirst().orElse(null);
    return exit == 0 && row != null ? row.substring(4) : "failed (exit " + exit + "): " + String.join(" | ", lines);
  }

  /** The child: {@code <target> <warm> <threads>}; prints {@code ROW <table row>}. */
  public static void main(String[] args) throws Exception {
    String target = args[0];
    boolean warm = Boolean.parseBoolean(args[1]);
    int threads = Integer.parseInt(args[2]);
    long t0 = System.nanoTime();
    try (SluiceClient client = SluiceClient.builder().target(target).build()) {
      long built = System.nanoTime();
      if (warm && !client.warmUp(Duration.ofSeconds(10))) {
        throw new IllegalStateException("no coordinator at " + target + " answered within 10 s");
      }
      long warmed = System.nanoTime();
      long[] first = new long[threads];
      long[] then = new long[threads * AFTER];
      CountDownLatch start = new CountDownLatch(1);
      List<Thread> workers = new ArrayList<>();
      Throwable[] failure = new Throwable[1];
      for (int t = 0; t < threads; t++) {
        int id = t;
        Thread w = new Thread(() -> {
          try {
            start.await();
            first[id] = timedAcquire(client);
            for (int i = 0; i < AFTER; i++) {
              then[id * AFTER + i] = timedAcquire(client);
            }
          } catch (Throwable e) {
            failure[0] = e;
          }
        });
        w.start();
        workers.add(w);
      }
      start.countDown();
      for (Thread w : workers) {
        w.join();
      }
      if (failure[0] != null) {
        throw new IllegalStateException("an acquire failed", failure[0]);
      }
      Arrays.sort(first);
      Arrays.sort(then);
      System.out.printf(Locale.ROOT, "ROW %-16s %7.1fms %7.1fms %10.1f / %6.1f ms %11.2f ms %11.2f ms%n",
          warm ? "build + warmUp" : "build only", ms(built - t0), warm ? ms(warmed - built) : 0.0,
          ms(first[first.length / 2]), ms(first[first.length - 1]), ms(then[then.length / 2]),
          ms(then[(int) (then.length * 0.99)]));
    }
    System.exit(0);
  }

  private static long timedAcquire(SluiceClient client) throws InterruptedException {
    long start = System.nanoTime();
    try (Permit p = client.acquire(RESOURCE)) {
      return System.nanoTime() - start;
    }
  }

  private static double ms(long nanos) {
    return nanos / 1e6;
  }
}
