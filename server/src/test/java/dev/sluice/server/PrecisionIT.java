package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.RateSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The precision test of issue 2: limit {@code requests=200/s} burst 20; 4 separate JVM
 * processes x 8 threads acquire for 10 s; each worker timestamps its grants as it receives them
 * (see {@link PrecisionWorker}). In every 1-second window at most 220 grants; in total at least
 * 99 % of what the limit allows (2 000 from the empty bucket the run starts with). The
 * resource is paused until the start and resumed, empty, with all 32 threads already waiting.
 */
class PrecisionIT {

  static final int PROCESSES = 4;
  static final int THREADS = 8;
  static final long RATE = 200;
  static final long BURST = 20;
  static final Duration RUN = Duration.ofSeconds(10);

  @TempDir Path dir;

  @Test
  void fourProcessesShareOneLimitPrecisely() throws Exception {
    try (SluiceServer server =
        SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve("data")).build().start()) {
      sync(server.engine())
          .setLimit(
              new LimitSpec(
                  "precise",
                  List.of(new RateSpec("requests", RATE, Duration.ofSeconds(1), BURST)),
                  0,
                  0,
                  null));
      sync(server.engine())
          .setLimit(
              new LimitSpec(
                  "warmup",
                  // Below the workers' demand, so warm-up also runs the queued path: park,
                  // computed wake-up, grant from the timer thread, deadline cancel.
                  List.of(new RateSpec("requests", 2_000, Duration.ofSeconds(1), 10)),
                  0,
                  0,
                  null));
      // Far enough ahead for four JVMs to start on two cores, connect and warm up.
      long startAt = System.nanoTime() + TimeUnit.SECONDS.toNanos(9);
      String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
      String cp = System.getProperty("java.class.path");
      List<Process> procs = new ArrayList<>();
      List<Path> outs = new ArrayList<>();
      for (int i = 0; i < PROCESSES; i++) {
        Path out = dir.resolve("worker-" + i + ".txt");
        outs.add(out);
        procs.add(
            new ProcessBuilder(
                    java, "-Xmx128m", "-XX:TieredStopAtLevel=1", "-cp", cp,
                    PrecisionWorker.class.getName(),
                    "127.0.0.1:" + server.port(), "precise", "warmup", String.valueOf(THREADS),
                    String.valueOf(startAt), String.valueOf(RUN.toNanos()), out.toString())
                .redirectErrorStream(true)
                .redirectOutput(dir.resolve("worker-" + i + ".log").toFile())
                .start());
      }
      // The quota opens at startAt, with every worker thread already waiting.
      sync(server.engine()).pause("precise", -1);
      while (System.nanoTime() < startAt) {
        LockSupport.parkNanos(Math.min(1_000_000, startAt - System.nanoTime()));
      }
      long resumedAt = System.nanoTime();
      // The quota opens empty (a throttle report with no wait empties the buckets): the run
      // measures the steady rate. The burst case (amount + burst in a window) is asserted
      // exactly on the fake clock in EndToEndTest.g1; delivered at once to 32 parked threads on
      // two cores it mostly measures the machine's wake-up jitter.
      sync(server.engine()).report("precise", true, 0, Map.of());
      sync(server.engine()).resume("precise");
      long resumeDone = System.nanoTime();
      for (int i = 0; i < PROCESSES; i++) {
        assertThat(procs.get(i).waitFor(90, TimeUnit.SECONDS)).as("worker %d finished", i).isTrue();
        assertThat(procs.get(i).exitValue())
            .as("worker %d exit; log:%n%s", i, Files.readString(dir.resolve("worker-" + i + ".log")))
            .isZero();
      }
      List<Long> stamps = new ArrayList<>();
      for (Path out : outs) {
        for (String line : Files.readAllLines(out)) {
          if (!line.isBlank()) {
            stamps.add(Long.parseLong(line.trim()));
          }
        }
      }
      Collections.sort(stamps);
      System.out.printf("  resumed %.3f ms after start, resume call took %.3f ms; first stamps (ms after resume): %s%n",
          (resumedAt - startAt) / 1e6, (resumeDone - resumedAt) / 1e6,
          stamps.stream().limit(26).map(t -> String.format("%.1f", (t - resumedAt) / 1e6)).toList());
      long end = startAt + RUN.toNanos();
      List<Long> inRun = stamps.stream().filter(t -> t >= startAt && t < end).toList();
      long second = TimeUnit.SECONDS.toNanos(1);
      // Every 1-second window that starts at a grant: the densest windows all start at one.
      int worst = 0;
      long worstAt = 0;
      int j = 0;
      for (int i = 0; i < stamps.size(); i++) {
        while (stamps.get(i) - stamps.get(j) >= second) {
          j++;
        }
        if (i - j + 1 > worst) {
          worst = i - j + 1;
          worstAt = stamps.get(j) - startAt;
        }
      }
      StringBuilder fine = new StringBuilder();
      for (long t = worstAt - 200_000_000L; t < worstAt + 1_200_000_000L; t += 50_000_000L) {
        long from = startAt + t;
        long to = from + 50_000_000L;
        fine.append(stamps.stream().filter(x -> x >= from && x < to).count()).append(' ');
      }
      System.out.printf("  densest window starts at %.3f s; per 50 ms around it: %s%n", worstAt / 1e9, fine);
      StringBuilder perSecond = new StringBuilder();
      for (int s = 0; s < RUN.toSeconds(); s++) {
        long from = startAt + s * second;
        long to = from + second;
        perSecond.append(stamps.stream().filter(t -> t >= from && t < to).count()).append(' ');
      }
      long allowed = RATE * RUN.toSeconds(); // from an empty bucket
      System.out.printf(
          "precision: %d processes x %d threads, limit %d/s burst %d, %d s%n"
              + "  grants in run: %d of %d allowed (%.2f %%); per second: %s%n"
              + "  densest 1 s window: %d (limit %d)%n",
          PROCESSES, THREADS, RATE, BURST, RUN.toSeconds(),
          inRun.size(), allowed, 100.0 * inRun.size() / allowed, perSecond.toString().trim(),
          worst, RATE + BURST);
      assertThat(worst).as("grants in the densest 1 s window").isLessThanOrEqualTo((int) (RATE + BURST));
      assertThat(inRun.size()).as("grants in the run").isGreaterThanOrEqualTo((int) Math.ceil(0.99 * allowed));
    }
  }
}
