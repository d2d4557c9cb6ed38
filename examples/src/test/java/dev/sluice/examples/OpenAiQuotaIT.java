package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.errors.RateLimitException;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import dev.sluice.examples.mock.MockOpenAi;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The headline claim, end to end: coordinator + strict mock upstream + worker processes using
 * the official openai-java client. Limits are chosen so TPM binds (about 125 tokens a call at
 * 30 000 TPM is 4 calls/s, well under 600 RPM).
 *
 * <p>Sluice's bursts are set at half the mock's one-second sub-window (250 of 500 tokens, 5 of
 * 10 requests): the other half absorbs up to half a second of jitter between a grant at the
 * coordinator and its arrival upstream (four JVMs starting on two cores make plenty). The
 * docs/clients.md ("A worker in front of OpenAI") explains the rule.
 */
class OpenAiQuotaIT {

  static final long RPM = 600;
  static final long TPM = 30_000;
  static final double TOKENS_PER_SECOND = TPM / 60.0;

  @TempDir Path dir;

  private static MockOpenAi.Builder strictMock() {
    return MockOpenAi.builder()
        .rpm(RPM)
        .tpm(TPM)
        .burstSeconds(1.0)
        .latency(Duration.ofMillis(20), Duration.ofMillis(80))
        .seed(7);
  }

  private static void setStandardLimit(QuotaFixture f) throws Exception {
    f.limit("openai", "requests=600/min:5", "tokens=30000/min:250");
  }

  /** Admitted tokens over what the mock's limit allowed between its first and last admission. */
  private static double utilization(MockOpenAi.Stats s) {
    double seconds = (s.lastAdmittedAtMs() - s.firstAdmittedAtMs()) / 1000.0;
    double allowed = TOKENS_PER_SECOND * 1.0 /* one-second sub-window */ + TOKENS_PER_SECOND * seconds;
    return s.estimatedTokens() / allowed;
  }

  private static long rateLimitRejections(MockOpenAi.Stats s) {
    return s.rejected().getOrDefault("requests", 0L) + s.rejected().getOrDefault("tokens", 0L);
  }

  @Test
  void withSluiceZero429sAndFullQuotaWithoutSluice429s() throws Exception {
    try (QuotaFixture f = new QuotaFixture(dir, strictMock())) {
      setStandardLimit(f);
      List<JsonNode> with = f.runWorkers(3, "--threads", "8", "--mode", "sluice", "--duration", "20s", "--max-tokens", "100");
      MockOpenAi.Stats s = f.mock.stats();
      double util = utilization(s);
      System.out.printf(
          "with Sluice:    3 procs x 8 threads, 20 s: %d calls done, upstream 429s %d, admitted %d tokens,"
              + " utilization %.1f %% of TPM, peak 60 s window %d tokens%n",
          QuotaFixture.sum(with, "done"), rateLimitRejections(s), s.estimatedTokens(), util * 100, s.peakTokens60s());
      assertThat(rateLimitRejections(s)).as("upstream rate-limit rejections with Sluice: %s", s.rejected()).isZero();
      assertThat(QuotaFixture.sum(with, "worker_429s")).isZero();
      assertThat(util).as("TPM utilization with Sluice").isGreaterThanOrEqualTo(0.95);

      f.mock.reset();
      List<JsonNode> without = f.runWorkersAllowingFailures(3, "--threads", "8", "--mode", "local", "--duration", "20s", "--max-tokens", "100");
      MockOpenAi.Stats t = f.mock.stats();
      System.out.printf(
          "without Sluice: 3 procs x 8 threads, 20 s: %d calls done, upstream 429s %d, admitted %d tokens,"
              + " utilization %.1f %% of TPM%n",
          QuotaFixture.sum(without, "done"), rateLimitRejections(t), t.estimatedTokens(), utilization(t) * 100);
      assertThat(rateLimitRejections(t)).as("the mock is strict: pacing by hand gets 429s").isPositive();
    }
  }

  @Test
  void aReported429PausesEveryWorkerAndThenNoMoreRejections() throws Exception {
    try (QuotaFixture f = new QuotaFixture(dir, strictMock())) {
      setStandardLimit(f);
      // A rogue client on the same key, outside Sluice, hammers the upstream for 1.5 s, 429s
      // and all, as a misbehaving neighbour would.
      Thread rogue =
          new Thread(
              () -> {
                OpenAIClient direct =
                    OpenAIOkHttpClient.builder().baseUrl(f.mock.baseUrl()).apiKey("sk-test-shared-key").maxRetries(0).build();
                try {
                  // Strike once the workers are running.
                  org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(60)).until(() -> f.mock.stats().admitted() >= 10);
                  // At least 1.5 s, and on until a worker has hit the drained upstream and reported it
                  // (a loaded machine may need longer for that), at most 10 s.
                  long start = System.nanoTime();
                  long nextCheck = start;
                  boolean reported = false;
                  while (System.nanoTime() - start < 10_000_000_000L
                      && !(reported && System.nanoTime() - start >= 1_500_000_000L)) {
                    if (System.nanoTime() >= nextCheck) {
                      reported = throttleReports(f) > 0;
                      nextCheck = System.nanoTime() + 200_000_000L;
                    }
                    try {
                      direct.chat().completions().create(
                          ChatCompletionCreateParams.builder().model("gpt-4o-mini").addUserMessage("rogue").maxCompletionTokens(200).build());
                    } catch (RateLimitException e) {
                      // ignored: that is what makes it a rogue
                    }
                  }
                } finally {
                  direct.close();
                }
              });
      rogue.start();
      // Workers run 16 s; the rogue strikes once they are going.
      var workers = new java.util.concurrent.CompletableFuture<List<JsonNode>>();
      Thread runner =
          new Thread(
              () -> {
                try {
                  workers.complete(f.runWorkers(2, "--threads", "8", "--mode", "sluice", "--duration", "16s", "--max-tokens", "100"));
                } catch (Throwable t) {
                  workers.completeExceptionally(t);
                }
              });
      runner.start();
      rogue.join(60_000);
      long rogueDone = System.nanoTime();
      // Let the feedback loop settle (reports, pauses, emptied buckets): wait until the upstream
      // has seen no new rejection for 2 s.
      java.util.concurrent.atomic.AtomicLong last = new java.util.concurrent.atomic.AtomicLong(-1);
      org.awaitility.Awaitility.await()
          .pollInterval(Duration.ofMillis(100))
          .during(Duration.ofSeconds(2))
          .atMost(Duration.ofSeconds(12))
          .until(() -> {
            long now = rateLimitRejections(f.mock.stats());
            return last.getAndSet(now) == now;
          });
      long settled = rateLimitRejections(f.mock.stats());
      List<JsonNode> summaries = workers.get();
      long end = rateLimitRejections(f.mock.stats());
      long workerSaw = QuotaFixture.sum(summaries, "worker_429s");
      System.out.printf(
          "feedback: rogue hammered until a worker reported a 429; workers saw %d 429s and reported them;"
              + " upstream rejections %d once settled, %d at the end (%.1f s after the rogue)%n",
          workerSaw, settled, end, (System.nanoTime() - rogueDone) / 1e9);
      assertThat(workerSaw).as("the rogue's drain reached the workers").isPositive();
      long reports = throttleReports(f);
      assertThat(reports).as("every 429 a worker saw was reported to the coordinator").isEqualTo(workerSaw);
      assertThat(end).as("no further rejections once the pause is over").isEqualTo(settled);
    }
  }

  /** The coordinator's count of upstream 429 reports on "openai", read with the real CLI. */
  private static long throttleReports(QuotaFixture f) {
    var out = new java.io.ByteArrayOutputStream();
    assertThat(dev.sluice.cli.SluiceCli.run(new java.io.PrintStream(out, true), System.err,
            "stats", "openai", "--json", "--target", "127.0.0.1:" + f.sluice.port()))
        .isZero();
    try {
      return new com.fasterxml.jackson.databind.ObjectMapper().readTree(out.toString())
          .findValue("throttleReports").asLong();
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  @Test
  void settleRefundsOverEstimatesAndDebtCoversUnderEstimates() throws Exception {
    try (QuotaFixture f = new QuotaFixture(dir, strictMock())) {
      // Estimates twice too high: settle refunds, the real TPM is still used fully.
      f.limit("openai", "requests=600/min:5", "tokens=30000/min:250");
      f.runWorkers(2, "--threads", "8", "--mode", "sluice", "--duration", "20s", "--max-tokens", "100", "--estimate-factor", "2.0");
      MockOpenAi.Stats high = f.mock.stats();
      System.out.printf(
          "settle, estimates x2: upstream 429s %d, utilization %.1f %%%n", rateLimitRejections(high), utilization(high) * 100);
      assertThat(rateLimitRejections(high)).isZero();
      assertThat(utilization(high)).isGreaterThanOrEqualTo(0.95);

      // Estimates half of the real charge: settle charges the rest as debt, which delays the
      // next grants. The burst leaves room for what is in flight before its settle lands.
      f.mock.reset();
      f.limit("openai-low", "requests=600/min:5", "tokens=30000/min:120");
      f.runWorkers(
          2, "--threads", "8", "--mode", "sluice", "--duration", "15s", "--max-tokens", "100",
          "--estimate-factor", "0.5", "--resource", "openai-low");
      MockOpenAi.Stats low = f.mock.stats();
      System.out.printf(
          "settle, estimates x0.5: upstream 429s %d, utilization %.1f %%%n", rateLimitRejections(low), utilization(low) * 100);
      assertThat(rateLimitRejections(low)).as("debt keeps the upstream under its limit").isZero();
    }
  }
}
