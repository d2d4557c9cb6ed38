package dev.sluice.examples.mock;

import java.io.PrintStream;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * Runs {@link MockOpenAi} until killed: prints one line, {@code mock-openai listening on
 * http://127.0.0.1:PORT/v1 (rpm=…, tpm=…, …)}, and closes the mock on SIGTERM.
 *
 * <pre>
 * java -cp sluice-examples.jar dev.sluice.examples.mock.MockOpenAiMain --rpm 600 --tpm 40000
 * </pre>
 */
@Command(
    name = "mock-openai",
    mixinStandardHelpOptions = true,
    description =
        "A strict OpenAI-compatible mock upstream enforcing OpenAI's rate limits, with"
            + " Anthropic's /v1/messages and its limits beside.")
public final class MockOpenAiMain implements Callable<Integer> {

  @Option(
      names = "--port",
      description = "Port on 127.0.0.1, 0 for any (default ${DEFAULT-VALUE}).")
  int port = 0;

  @Option(
      names = "--rpm",
      description = "Requests per minute per project (default ${DEFAULT-VALUE}).")
  long rpm = 600;

  @Option(
      names = "--tpm",
      description = "Tokens per minute per project (default ${DEFAULT-VALUE}).")
  long tpm = 40_000;

  @Option(
      names = "--rpd",
      description = "Requests per day per project, 0 = off (default ${DEFAULT-VALUE}).")
  long rpd = 0;

  @Option(
      names = "--tpd",
      description = "Tokens per day per project, 0 = off (default ${DEFAULT-VALUE}).")
  long tpd = 0;

  @Option(
      names = "--burst-seconds",
      description =
          "Seconds of the per-minute rate a full bucket holds (default ${DEFAULT-VALUE}).")
  double burstSeconds = 1.0;

  @Option(names = "--quantized", description = "Fixed 1 s windows of limit/60 instead of buckets.")
  boolean quantized;

  @Option(
      names = "--latency-ms",
      description = "Answer latency range MIN..MAX or a fixed MS (default ${DEFAULT-VALUE}).")
  String latencyMs = "50..200";

  @Option(
      names = "--seed",
      description = "Seed of latencies and answers (default ${DEFAULT-VALUE}).")
  long seed = 42;

  @Option(
      names = "--insufficient-quota",
      description = "Answer every completion with 429 insufficient_quota.")
  boolean insufficientQuota;

  @Option(
      names = "--anthropic",
      paramLabel = "RPM,ITPM,OTPM",
      description =
          "Limits of Anthropic's /v1/messages per x-api-key: requests, input and output tokens a"
              + " minute (default ${DEFAULT-VALUE}).")
  String anthropic = "50,30000,8000";

  @Option(
      names = "--project",
      paramLabel = "NAME=KEY:RPM:TPM",
      description = "A project with its own key and limits, repeatable; then only these keys are accepted.")
  java.util.List<String> projects = new java.util.ArrayList<>();

  @Option(names = "--azure", description = "Send Azure OpenAI's rate-limit headers instead of OpenAI's.")
  boolean azure;

  private final PrintStream out;
  private final CountDownLatch stopped = new CountDownLatch(1);
  private final CountDownLatch closed = new CountDownLatch(1);

  MockOpenAiMain(PrintStream out) {
    this.out = out;
  }

  public static void main(String[] args) {
    int code = new CommandLine(new MockOpenAiMain(System.out)).execute(args);
    if (code != 0) {
      System.exit(code);
    }
    // 0: --help, or stopped by a signal while the JVM is already shutting down.
  }

  /** The mock these options describe, not started. */
  MockOpenAi build() {
    Duration[] latency = parseLatency(latencyMs);
    long[] limits = parseAnthropic(anthropic);
    MockOpenAi.Builder b = MockOpenAi.builder();
    for (String p : projects) {
      String[] nameRest = p.split("=", 2);
      String[] parts = nameRest.length == 2 ? nameRest[1].split(":") : new String[0];
      if (parts.length != 3) {
        throw new IllegalArgumentException("--project " + p + ": use NAME=KEY:RPM:TPM, e.g. a=sk-a:500:40000");
      }
      b.project(nameRest[0], parts[0], Long.parseLong(parts[1]), Long.parseLong(parts[2]));
    }
    return b.azure(azure)
        .port(port)
        .rpm(rpm)
        .tpm(tpm)
        .rpd(rpd)
        .tpd(tpd)
        .burstSeconds(burstSeconds)
        .quantized(quantized)
        .latency(latency[0], latency[1])
        .seed(seed)
        .insufficientQuota(insufficientQuota)
        .anthropic(limits[0], limits[1], limits[2])
        .build();
  }

  static long[] parseAnthropic(String text) {
    String[] parts = text.strip().split(",", -1);
    try {
      if (parts.length == 3) {
        return new long[] {
          Long.parseLong(parts[0].strip()), Long.parseLong(parts[1].strip()), Long.parseLong(parts[2].strip())
        };
      }
    } catch (NumberFormatException e) {
      // fall through
    }
    throw new IllegalArgumentException(
        "--anthropic must be RPM,ITPM,OTPM (three whole numbers, e.g. 50,30000,8000), got: " + text);
  }

  static Duration[] parseLatency(String text) {
    String[] parts = text.strip().split("\\.\\.", -1);
    try {
      if (parts.length == 1) {
        Duration d = Duration.ofMillis(Long.parseLong(parts[0].strip()));
        return new Duration[] {d, d};
      }
      if (parts.length == 2) {
        return new Duration[] {
          Duration.ofMillis(Long.parseLong(parts[0].strip())),
          Duration.ofMillis(Long.parseLong(parts[1].strip()))
        };
      }
    } catch (NumberFormatException e) {
      // fall through
    }
    throw new IllegalArgumentException("--latency-ms must be MIN..MAX or MS, got: " + text);
  }

  /** Serves until {@link #stop()} or SIGTERM. */
  @Override
  public Integer call() throws Exception {
    Thread hook = new Thread(this::stopAndWait, "mock-openai-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    try (MockOpenAi mock = build().start()) {
      out.println("mock-openai listening on " + mock.baseUrl() + " (" + mock.describe() + ")");
      out.flush();
      stopped.await();
    } finally {
      closed.countDown();
      try {
        Runtime.getRuntime().removeShutdownHook(hook);
      } catch (IllegalStateException shuttingDown) {
        // the hook is what stopped us
      }
    }
    return 0;
  }

  /** Makes {@link #call()} close the mock and return. */
  void stop() {
    stopped.countDown();
  }

  /** On SIGTERM: the JVM halts when the hook returns, so let the mock close first. */
  private void stopAndWait() {
    stop();
    try {
      closed.await(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
