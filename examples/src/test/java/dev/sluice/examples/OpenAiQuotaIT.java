package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.errors.RateLimitException;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import dev.sluice.examples.mock.MockOpenAi;
import dev.sluice.server.GrantSampler;
import dev.sluice.server.ServerTestHooks;
import dev.sluice.server.engine.RateSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The headline claim, end to end: coordinator + strict mock upstream + worker processes using
 * the official openai-java client. Limits are chosen so TPM binds (about 125 tokens a call at
 * 30 000 TPM is 4 calls/s, well under 600 RPM).
 *
 * <p>What is asserted is counted by the coordinator ({@link GrantSampler}: its stats read every
 * 10 ms): between any two reads no more requests and tokens taken than burst + rate x time
 * allow, and its books hold what the upstream really charged. The upstream's 429s and the share
 * of the TPM used are measured where the calls arrive, after a hop through a worker JVM on two
 * shared cores: they are printed (the demo, {@code examples/run-demo.sh}, reports them side by
 * side), and asserted only without Sluice, where the upstream must say 429.
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

  private static final RateSpec REQUESTS = new RateSpec("requests", RPM, Duration.ofMinutes(1), 5);
  private static final RateSpec TOKENS = new RateSpec("tokens", TPM, Duration.ofMinutes(1), 250);

  private static void setStandardLimit(QuotaFixture f) throws Exception {
    f.limit("openai", "requests=600/min:5", "tokens=30000/min:250");
  }

  /**
   * The coordinator's reads taken while {@code run} runs: never more requests or tokens taken
   * than the limit allows between two of them (tokens a settle charged above the estimates are
   * owed, and paid back before the next grant).
   */
  private static List<GrantSampler.Sample> withinLimit(QuotaFixture f, String resource, RateSpec requests,
      RateSpec tokens, Callable<?> run) throws Exception {
    List<GrantSampler.Sample> samples;
    try (GrantSampler sampler = GrantSampler.start(ServerTestHooks.engine(f.sluice), resource)) {
      run.call();
      samples = sampler.stop();
    }
    GrantSampler.Densest req = GrantSampler.assertWithinLimit(samples, requests, s -> s.used("requests"), s -> 0);
    GrantSampler.Densest tok = GrantSampler.assertWithinLimit(samples, tokens, s -> s.used("tokens"), s -> s.debt("tokens"));
    System.out.printf("  coordinator, densest stretch of at most 1 s: %s requests, %s tokens; %d reads%n",
        req, tok, samples.size());
    return samples;
  }

  /**
   * The coordinator's books hold what the upstream charged: every real charge (a settle above
   * the estimate is charged as debt), and far less than estimates twice too high (a settle below
   * the estimate is refunded; the cap on refunds may keep a little of it, and a call answered
   * 429 keeps its estimate, at most the burst). Without refunds the books would hold twice the
   * charges, without debt half.
   */
  private static void assertBooksHoldTheCharges(List<GrantSampler.Sample> samples, List<JsonNode> workers, long burst) {
    double booked = samples.get(samples.size() - 1).used("tokens") - samples.get(0).used("tokens");
    long charged = QuotaFixture.sum(workers, "tokens_charged");
    long unsettled = QuotaFixture.sum(workers, "worker_429s");
    System.out.printf("  coordinator booked %.0f tokens; the upstream charged %d; %d calls answered 429%n",
        booked, charged, unsettled);
    assertThat(booked).as("tokens on the coordinator's books").isGreaterThanOrEqualTo(charged - 1e-6)
        .isLessThan(1.5 * charged + burst * unsettled);
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
  void withSluiceGrantsStayWithinTheLimitAndWithoutSluiceTheUpstreamSays429() throws Exception {
    try (QuotaFixture f = new QuotaFixture(dir, strictMock())) {
      setStandardLimit(f);
      List<List<JsonNode>> with = new ArrayList<>();
      withinLimit(f, "openai", REQUESTS, TOKENS, () -> with.add(
          f.runWorkers(3, "--threads", "8", "--mode", "sluice", "--duration", "12s", "--max-tokens", "100")));
      MockOpenAi.Stats s = f.mock.stats();
      System.out.printf(
          "with Sluice:    3 procs x 8 threads, 12 s: %d calls done, upstream 429s %d, admitted %d tokens,"
              + " utilization %.1f %% of TPM, peak 60 s window %d tokens%n",
          QuotaFixture.sum(with.get(0), "done"), rateLimitRejections(s), s.estimatedTokens(), utilization(s) * 100,
          s.peakTokens60s());

      f.mock.reset();
      List<JsonNode> without = f.runWorkersAllowingFailures(3, "--threads", "8", "--mode", "local", "--duration", "8s", "--max-tokens", "100");
      MockOpenAi.Stats t = f.mock.stats();
      System.out.printf(
          "without Sluice: 3 procs x 8 threads, 8 s:  %d calls done, upstream 429s %d, admitted %d tokens,"
              + " utilization %.1f %% of TPM%n",
          QuotaFixture.sum(without, "done"), rateLimitRejections(t), t.estimatedTokens(), utilization(t) * 100);
      assertThat(rateLimitRejections(t)).as("the mock is strict: pacing by hand gets 429s").isPositive();
    }
  }

  @Test
  void every429AWorkerSeesIsReportedAndTheCoordinatorStaysWithinTheLimit() throws Exception {
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
      // The rogue drains the upstream, not the coordinator: its grants stay within the limit.
      withinLimit(f, "openai", REQUESTS, TOKENS, () -> {
        runner.start();
        rogue.join(60_000);
        return workers.get();
      });
      List<JsonNode> summaries = workers.get();
      long workerSaw = QuotaFixture.sum(summaries, "worker_429s");
      System.out.printf(
          "feedback: rogue hammered until a worker reported a 429; workers saw %d 429s and reported them;"
              + " upstream rejections %d in all%n",
          workerSaw, rateLimitRejections(f.mock.stats()));
      assertThat(workerSaw).as("the rogue's drain reached the workers").isPositive();
      long reports = throttleReports(f);
      assertThat(reports).as("every 429 a worker saw was reported to the coordinator").isEqualTo(workerSaw);
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
      // Estimates twice too high: settle refunds the difference, so the books hold the real
      // charges (without the refunds they would hold twice as much).
      f.limit("openai", "requests=600/min:5", "tokens=30000/min:250");
      List<List<JsonNode>> high = new ArrayList<>();
      List<GrantSampler.Sample> highBooks = withinLimit(f, "openai", REQUESTS, TOKENS, () -> high.add(
          f.runWorkers(2, "--threads", "8", "--mode", "sluice", "--duration", "12s", "--max-tokens", "100",
              "--estimate-factor", "2.0")));
      MockOpenAi.Stats highStats = f.mock.stats();
      System.out.printf("settle, estimates x2: upstream 429s %d, utilization %.1f %%%n",
          rateLimitRejections(highStats), utilization(highStats) * 100);
      assertBooksHoldTheCharges(highBooks, high.get(0), TOKENS.burst());

      // Estimates half of the real charge: settle charges the rest as debt, which delays the
      // next grants. The burst leaves room for what is in flight before its settle lands.
      f.mock.reset();
      f.limit("openai-low", "requests=600/min:5", "tokens=30000/min:120");
      RateSpec lowTokens = new RateSpec("tokens", TPM, Duration.ofMinutes(1), 120);
      List<List<JsonNode>> low = new ArrayList<>();
      List<GrantSampler.Sample> lowBooks = withinLimit(f, "openai-low", REQUESTS, lowTokens, () -> low.add(f.runWorkers(
          2, "--threads", "8", "--mode", "sluice", "--duration", "10s", "--max-tokens", "100",
          "--estimate-factor", "0.5", "--resource", "openai-low")));
      MockOpenAi.Stats lowStats = f.mock.stats();
      System.out.printf("settle, estimates x0.5: upstream 429s %d, utilization %.1f %%%n",
          rateLimitRejections(lowStats), utilization(lowStats) * 100);
      assertBooksHoldTheCharges(lowBooks, low.get(0), lowTokens.burst());
    }
  }
}
