package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.client.SluiceClient;
import dev.sluice.examples.mock.MockOpenAi;
import dev.sluice.server.SluiceServer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.IntFunction;

/**
 * A coordinator, a strict mock upstream and worker processes: the real pieces, really started.
 * Workers are separate JVMs running {@link OpenAiBatch} with the official openai-java client.
 */
final class QuotaFixture implements AutoCloseable {

  static final Path PROMPTS = Path.of(System.getProperty("sluice.prompts", "data/prompts.jsonl"));

  final Path dir;
  final SluiceServer sluice;
  final MockOpenAi mock;

  QuotaFixture(Path dir, MockOpenAi.Builder mock) throws IOException {
    this.dir = dir;
    this.sluice =
        SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve("sluice-data")).build().start();
    this.mock = mock.port(0).build().start();
  }

  /** Sets the Sluice limit with the CLI's own syntax, through the real admin service. */
  void limit(String resource, String... rates) throws Exception {
    List<String> args = new ArrayList<>(List.of("limit", "set", resource, "--target", "127.0.0.1:" + sluice.port()));
    for (String r : rates) {
      args.add("--rate");
      args.add(r);
    }
    var out = new java.io.ByteArrayOutputStream();
    var err = new java.io.ByteArrayOutputStream();
    int code =
        dev.sluice.cli.SluiceCli.run(
            new java.io.PrintStream(out, true), new java.io.PrintStream(err, true), args.toArray(String[]::new));
    assertThat(code).as("limit set: %s", err).isZero();
  }

  /** Runs one {@code sluice} command against this coordinator; its standard output. */
  String cli(String... command) throws Exception {
    List<String> args = new ArrayList<>(List.of(command));
    args.add("--target=127.0.0.1:" + sluice.port());
    var out = new java.io.ByteArrayOutputStream();
    var err = new java.io.ByteArrayOutputStream();
    int code =
        dev.sluice.cli.SluiceCli.run(
            new java.io.PrintStream(out, true), new java.io.PrintStream(err, true), args.toArray(String[]::new));
    assertThat(code).as("sluice %s: %s", args, err).isZero();
    return out.toString(java.nio.charset.StandardCharsets.UTF_8);
  }

  SluiceClient client() {
    return SluiceClient.builder().target("127.0.0.1:" + sluice.port()).build();
  }

  /** Worker JVMs that all start now; returns their summaries once every one has exited 0. */
  List<JsonNode> runWorkers(int processes, String... extraArgs) throws Exception {
    return run(processes, false, extraArgs);
  }

  /** As {@link #runWorkers}, but a worker may exit 1 (some prompts failed: expected without Sluice). */
  List<JsonNode> runWorkersAllowingFailures(int processes, String... extraArgs) throws Exception {
    return run(processes, true, extraArgs);
  }

  /**
   * One worker JVM per entry of {@code perWorker}, each with its own arguments after {@code common},
   * all started now; their summaries, in that order, once every one has exited 0.
   */
  List<JsonNode> runEach(List<List<String>> perWorker, String... common) throws Exception {
    return run(perWorker.size(), false, i -> {
      List<String> args = new ArrayList<>(List.of(common));
      args.addAll(perWorker.get(i));
      return args;
    });
  }

  private List<JsonNode> run(int processes, boolean failuresAllowed, String... extraArgs) throws Exception {
    return run(processes, failuresAllowed, i -> List.of(extraArgs));
  }

  private List<JsonNode> run(int processes, boolean failuresAllowed, IntFunction<List<String>> extraArgs)
      throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    String cp = System.getProperty("java.class.path");
    List<Process> procs = new ArrayList<>();
    List<Path> summaries = new ArrayList<>();
    List<Path> logs = new ArrayList<>();
    String tag = Long.toString(System.nanoTime(), 36);
    for (int i = 0; i < processes; i++) {
      Path summary = dir.resolve("summary-" + tag + "-" + i + ".json");
      Path log = dir.resolve("worker-" + tag + "-" + i + ".log");
      summaries.add(summary);
      logs.add(log);
      List<String> cmd =
          new ArrayList<>(
              List.of(
                  java, "-Xmx192m", "-XX:TieredStopAtLevel=1", "-cp", cp, OpenAiBatch.class.getName(),
                  "--input", PROMPTS.toString(),
                  "--base-url", mock.baseUrl(),
                  "--api-key", "sk-test-shared-key",
                  "--sluice", "127.0.0.1:" + sluice.port(),
                  "--summary", summary.toString(),
                  "--no-progress"));
      cmd.addAll(extraArgs.apply(i));
      procs.add(new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start());
    }
    List<JsonNode> out = new ArrayList<>();
    ObjectMapper json = new ObjectMapper();
    for (int i = 0; i < processes; i++) {
      assertThat(procs.get(i).waitFor(180, TimeUnit.SECONDS)).as("worker %d finished", i).isTrue();
      assertThat(procs.get(i).exitValue())
          .as("worker %d exit; log:%n%s", i, Files.readString(logs.get(i)))
          .isBetween(0, failuresAllowed ? 1 : 0);
      out.add(json.readTree(summaries.get(i).toFile()));
    }
    return out;
  }

  /**
   * The mock's stats once a second for up to {@code seconds} seconds, while every one of {@code
   * parts} has calls admitted ({@code admitted}: a part's count in a read): once one has none in a
   * second (its worker stopped, or stalled), the reads end two seconds before that read, the last
   * instant all of them are sure to have been running.
   */
  static List<MockOpenAi.Stats> steadyReads(MockOpenAi mock, int seconds, java.util.Collection<String> parts,
      java.util.function.ToLongBiFunction<MockOpenAi.Stats, String> admitted) throws InterruptedException {
    List<MockOpenAi.Stats> reads = new java.util.ArrayList<>();
    reads.add(mock.stats());
    while (reads.size() <= seconds) {
      Thread.sleep(1_000); // the mock's counters, read once a second on its own clock
      MockOpenAi.Stats now = mock.stats();
      MockOpenAi.Stats before = reads.get(reads.size() - 1);
      if (parts.stream().anyMatch(p -> admitted.applyAsLong(now, p) == admitted.applyAsLong(before, p))) {
        return reads.subList(0, Math.max(1, reads.size() - 1));
      }
      reads.add(now);
    }
    return reads;
  }

  static long sum(List<JsonNode> summaries, String field) {
    return summaries.stream().mapToLong(s -> s.get(field).asLong()).sum();
  }

  static Duration secondsOf(long millis) {
    return Duration.ofMillis(millis);
  }

  @Override
  public void close() {
    mock.close();
    sluice.close();
  }
}
