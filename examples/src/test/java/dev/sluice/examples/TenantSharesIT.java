package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import dev.sluice.examples.mock.MockOpenAi;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Tenants end to end: one quota shared 3:1:1 by three tenants, each a separate {@link OpenAiBatch}
 * worker JVM ({@code --tenant}) with more threads than its share needs, against the strict mock.
 * Every call names its tenant upstream ({@code safety_identifier}), so the shares are measured
 * where the calls arrive, by the mock's clock and counts ({@link MockOpenAi.Stats#byUser}), not by
 * the workers.
 *
 * <p>Limits: 120 000 TPM and 2 400 RPM at the mock; about 125 tokens a call makes 16 calls a
 * second, so tokens bind (requests would allow 40). Sluice's bursts are half the mock's one-second
 * sub-window, as in {@link OpenAiQuotaIT}.
 *
 * <p>The shares and the utilization are taken over 10 s of steady state, read from the mock once
 * a second: from 1.5 s after every tenant's first admitted call (start-up and warm-up left out),
 * ended early, two reads before, if a tenant's calls stop (its worker, started late on a busy
 * machine, ends late, and one started early ends early); at least 6 s. The tolerance, ±5 points of the total: the coordinator's
 * scheduler holds 3:1:1 within ±3 % in every 10 s window on a fake clock (the engine's tenant
 * tests); here about 160 calls of ~0.6 % of the window's tokens each arrive, and each edge of the
 * window cuts the calls granted but not yet arrived (a few per tenant), about 1.5 points more. The
 * 0 upstream 429s hold over the whole run, start-up included.
 */
class TenantSharesIT {

  static final long RPM = 2_400;
  static final long TPM = 120_000;
  static final double TOKENS_PER_SECOND = TPM / 60.0;
  static final Map<String, Integer> WEIGHTS = new java.util.TreeMap<>(Map.of("a", 3, "b", 1, "c", 1));
  static final double TOLERANCE_POINTS = 5.0;
  static final int WINDOW_SECONDS = 10;
  static final int MIN_WINDOW_SECONDS = 6;
  /** How long each worker runs: start-up (JVMs on a busy machine start seconds apart) and the window. */
  static final String RUN = "24s";

  @TempDir Path dir;

  @Test
  void threeTenantsGetTheirConfiguredSharesOfTheWholeQuotaWithoutA429() throws Exception {
    MockOpenAi.Builder mock = MockOpenAi.builder()
        .rpm(RPM)
        .tpm(TPM)
        .burstSeconds(1.0)
        .latency(Duration.ofMillis(20), Duration.ofMillis(80))
        .seed(19);
    try (QuotaFixture f = new QuotaFixture(dir, mock)) {
      f.cli("limit", "set", "openai", "--rate", "requests=2400/min:20", "--rate", "tokens=120000/min:1000",
          "--share", "a=3", "--share", "b=1", "--share", "c=1");
      List<List<String>> tenants = new ArrayList<>();
      WEIGHTS.keySet().forEach(t -> tenants.add(List.of("--tenant", t)));
      CompletableFuture<List<JsonNode>> run = CompletableFuture.supplyAsync(() -> {
        try {
          return f.runEach(tenants, "--threads", "8", "--mode", "sluice", "--duration", RUN, "--max-tokens", "100");
        } catch (Exception e) {
          throw new IllegalStateException(e);
        }
      });

      await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(100)).until(() -> {
        if (run.isDone()) {
          run.join(); // a worker failed before every tenant got going: its error
        }
        MockOpenAi.Stats s = f.mock.stats();
        return WEIGHTS.keySet().stream().allMatch(t -> s.user(t).admitted() > 0);
      });
      Thread.sleep(1_500); // the queues fill: every tenant has its threads waiting
      List<MockOpenAi.Stats> reads = QuotaFixture.steadyReads(f.mock, WINDOW_SECONDS, WEIGHTS.keySet(),
          (s, t) -> s.user(t).admitted());
      List<JsonNode> summaries = run.join();
      MockOpenAi.Stats whole = f.mock.stats();

      MockOpenAi.Stats first = reads.get(0);
      MockOpenAi.Stats last = reads.get(reads.size() - 1);
      long total = last.estimatedTokens() - first.estimatedTokens();
      double seconds = (last.lastAdmittedAtMs() - first.lastAdmittedAtMs()) / 1000.0;
      double utilization = total / (TOKENS_PER_SECOND * seconds);
      int weightSum = WEIGHTS.values().stream().mapToInt(Integer::intValue).sum();
      Map<String, Double> shares = new LinkedHashMap<>();
      StringBuilder line = new StringBuilder();
      for (Map.Entry<String, Integer> w : WEIGHTS.entrySet()) {
        MockOpenAi.Stats.User from = first.user(w.getKey());
        MockOpenAi.Stats.User to = last.user(w.getKey());
        double share = 100.0 * (to.estimatedTokens() - from.estimatedTokens()) / total;
        shares.put(w.getKey(), share);
        line.append(String.format(" %s=%d: %.1f %% of tokens (%d calls, wanted %.0f %%);", w.getKey(), w.getValue(),
            share, to.admitted() - from.admitted(), 100.0 * w.getValue() / weightSum));
      }
      System.out.printf(
          "tenants: 3 procs x 8 threads, one tenant each, " + RUN + " runs; steady window %.1f-%.1f s of the mock's"
              + " %.1f s of admissions:%s utilization %.1f %% of TPM (%d tokens in %.1f s); upstream 429s %d over"
              + " the whole run; %d calls done%n",
          first.lastAdmittedAtMs() / 1000.0, last.lastAdmittedAtMs() / 1000.0, whole.lastAdmittedAtMs() / 1000.0,
          line, utilization * 100, total, seconds, whole.rateLimited(), QuotaFixture.sum(summaries, "done"));

      assertThat(reads.size() - 1)
          .as("seconds of steady state: every worker ran at least %d s together (start-up took too long)",
              MIN_WINDOW_SECONDS)
          .isGreaterThanOrEqualTo(MIN_WINDOW_SECONDS);
      assertThat(whole.rateLimited()).as("upstream 429s, whole run").isZero();
      assertThat(QuotaFixture.sum(summaries, "worker_429s")).as("429s the workers saw").isZero();
      assertThat(utilization).as("share of the TPM admitted in the steady window").isGreaterThanOrEqualTo(0.95);
      for (Map.Entry<String, Integer> w : WEIGHTS.entrySet()) {
        assertThat(shares.get(w.getKey()))
            .as("tenant %s's share of the tokens at the mock, in points", w.getKey())
            .isCloseTo(100.0 * w.getValue() / weightSum, Offset.offset(TOLERANCE_POINTS));
      }
      assertThat(total).as("every admitted call named its tenant")
          .isEqualTo(WEIGHTS.keySet().stream()
              .mapToLong(t -> last.user(t).estimatedTokens() - first.user(t).estimatedTokens()).sum());
    }
  }
}
