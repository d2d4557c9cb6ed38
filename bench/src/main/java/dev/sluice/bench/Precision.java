package dev.sluice.bench;

import static dev.sluice.server.engine.SyncEngine.sync;

import dev.sluice.server.GrantSampler;
import dev.sluice.server.PrecisionWorker;
import dev.sluice.server.ServerTestHooks;
import dev.sluice.server.SluiceServer;
import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * {@code sluice-bench.jar precision}: how much of one shared rate several worker processes get,
 * and how it looks from where they stand: the figures the precision test ({@code PrecisionIT})
 * prints but does not assert, since on a shared machine they measure the machine too.
 *
 * <p>One memory-store coordinator in this JVM, limit {@code requests=200/s} burst 20;
 * {@code processes} JVMs x {@code threads} threads acquire one request at a time ({@link
 * PrecisionWorker}, from the server's test fixtures); the resource opens once every thread
 * waits on it, with its burst. Printed: from the coordinator's own counts, read every 10 ms,
 * the grants, the share of the rate used and the densest stretch of at most a second (and
 * whether the window bound held between every two reads); from the workers' receipt stamps
 * (CLOCK_MONOTONIC, one time line for every process), grants per second and the densest 1 s
 * window as they received them, which adds the machine's scheduling jitter. Asserts nothing.
 */
final class Precision {

  private static final long RATE = 200;
  private static final long BURST = 20;

  private Precision() {}

  static void run(String[] args, PrintStream out) throws Exception {
    int processes = 4;
    int threads = 8;
    Duration run = Duration.ofSeconds(10);
    Duration lead = Duration.ofSeconds(9);
    for (int i = 1; i < args.length; i++) {
      switch (args[i]) {
        case "--processes" -> processes = Integer.parseInt(args[++i]);
        case "--threads" -> threads = Integer.parseInt(args[++i]);
        case "--seconds" -> run = Duration.ofSeconds(Long.parseLong(args[++i]));
        case "--lead" -> lead = Duration.ofSeconds(Long.parseLong(args[++i]));
        default -> throw new IllegalArgumentException("unknown option " + args[i]
            + ": precision [--processes 4] [--threads 8] [--seconds 10] [--lead 9 (seconds for the JVMs to start"
            + " and warm up)]");
      }
    }
    RateSpec rate = new RateSpec("requests", RATE, Duration.ofSeconds(1), BURST);
    Path dir = Files.createTempDirectory("sluice-bench-precision-");
    try (SluiceServer server =
        SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve("data")).build().start()) {
      Engine engine = ServerTestHooks.engine(server);
      sync(engine).setLimit(new LimitSpec(PrecisionWorker.RESOURCE, List.of(rate), 0, 0, null));
      sync(engine).setLimit(new LimitSpec(PrecisionWorker.WARMUP,
          List.of(new RateSpec("requests", 2_000, Duration.ofSeconds(1), 10)), 0, 0, null));
      sync(engine).pause(PrecisionWorker.RESOURCE, -1);
      long startAt = System.nanoTime() + lead.toNanos();
      long end = startAt + run.toNanos();
      List<Process> procs = new ArrayList<>();
      List<Path> outs = new ArrayList<>();
      for (int i = 0; i < processes; i++) {
        outs.add(dir.resolve("worker-" + i + ".txt"));
        procs.add(PrecisionWorker.start(server.port(), threads, startAt, run, outs.get(i),
            dir.resolve("worker-" + i + ".log")));
      }
      long deadline = startAt + TimeUnit.SECONDS.toNanos(60);
      while (waiting(engine) < processes * threads && System.nanoTime() < deadline) {
        LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(20));
      }
      List<GrantSampler.Sample> samples;
      long opened;
      try (GrantSampler sampler = GrantSampler.start(engine, PrecisionWorker.RESOURCE)) {
        opened = System.nanoTime();
        sync(engine).resume(PrecisionWorker.RESOURCE);
        for (int i = 0; i < processes; i++) {
          if (!procs.get(i).waitFor(run.toSeconds() + lead.toSeconds() + 90, TimeUnit.SECONDS)
              || procs.get(i).exitValue() != 0) {
            procs.forEach(Process::destroyForcibly);
            out.println("precision: worker " + i + " failed; its log: "
                + Files.readString(dir.resolve("worker-" + i + ".log")));
            return;
          }
        }
        samples = sampler.stop();
      }
      out.printf(Locale.ROOT, "precision: %d processes x %d threads, limit %d/s burst %d, opened %.1f s before"
          + " the %d s run with every thread waiting%n", processes, threads, RATE, BURST,
          (startAt - opened) / 1e9, run.toSeconds());

      List<GrantSampler.Sample> inRun = GrantSampler.between(samples, startAt, end);
      double granted = inRun.get(inRun.size() - 1).net() - inRun.get(0).net();
      double seconds = (inRun.get(inRun.size() - 1).after() - inRun.get(0).before()) / 1e9;
      String over = GrantSampler.overLimit(samples, rate, GrantSampler.Sample::net, s -> 0);
      out.printf(Locale.ROOT, "  coordinator: %.0f grants in %.1f s of the run, %.2f %% of the rate; densest stretch"
          + " of at most 1 s: %s (bound %d); window bound between every two of %d reads: %s%n",
          granted, seconds, 100 * granted / (RATE * seconds), GrantSampler.densest(samples, GrantSampler.Sample::net),
          RATE + BURST, samples.size(), over == null ? "held" : "BROKEN, " + over);

      List<Long> stamps = new ArrayList<>();
      for (Path o : outs) {
        for (String line : Files.readAllLines(o)) {
          if (!line.isBlank()) {
            stamps.add(Long.parseLong(line.trim()));
          }
        }
      }
      Collections.sort(stamps);
      List<Long> received = stamps.stream().filter(t -> t >= startAt && t < end).toList();
      StringBuilder perSecond = new StringBuilder();
      long second = TimeUnit.SECONDS.toNanos(1);
      for (long from = startAt; from < end; from += second) {
        long f = from;
        perSecond.append(received.stream().filter(t -> t >= f && t < f + second).count()).append(' ');
      }
      int densest = 0;
      for (int i = 0, j = 0; i < stamps.size(); i++) {
        while (stamps.get(i) - stamps.get(j) >= second) {
          j++;
        }
        densest = Math.max(densest, i - j + 1);
      }
      out.printf(Locale.ROOT, "  workers, on receipt: %d grants in the run, %.2f %% of the rate; per second %s;"
          + " densest 1 s window %d%n", received.size(), 100.0 * received.size() / (RATE * run.toSeconds()),
          perSecond.toString().trim(), densest);
    }
  }

  private static int waiting(Engine engine) {
    return sync(engine).stats(PrecisionWorker.RESOURCE).waiting().values().stream().mapToInt(Integer::intValue).sum();
  }
}
