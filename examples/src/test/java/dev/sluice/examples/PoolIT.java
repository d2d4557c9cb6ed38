package dev.sluice.examples;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import dev.sluice.examples.mock.MockOpenAi;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.SetLimitRequest;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pools end to end: three OpenAI projects at the strict mock, each with its own key and limits,
 * one Sluice resource per project (its member) and a pool over them, and three {@link OpenAiBatch}
 * worker JVMs with {@code --pool} and the members' keys. Each call acquires on the pool and goes
 * upstream with the key of the member that granted; everything is measured where the calls
 * arrive, by the mock's clock and its per-project counts ({@link MockOpenAi.Stats#byProject}).
 *
 * <p>Sluice's bursts are half the mock's one-second bucket, as in {@link TenantSharesIT}.
 */
class PoolIT {

  static final String POOL = "openai-pool";

  @TempDir Path dir;

  /**
   * Projects a, b, c of 20 000, 30 000 and 50 000 TPM (600 RPM each: tokens bind) and 3 workers
   * x 8 threads, more than the pool can serve: 0 upstream 429s over the whole run, and at least
   * 95 % of the summed limits admitted over the steady window (from 1.5 s after every project's
   * first admission, read once a second, at most 8 s, ended two reads early when a project's
   * calls stop).
   */
  @Test
  void threeProjectsOfDifferentLimitsFillTheSummedLimitsWithoutA429() throws Exception {
    Map<String, Long> tpm = new LinkedHashMap<>(Map.of("a", 20_000L, "b", 30_000L, "c", 50_000L));
    tpm = new java.util.TreeMap<>(tpm);
    MockOpenAi.Builder mock = MockOpenAi.builder().burstSeconds(1.0)
        .latency(Duration.ofMillis(20), Duration.ofMillis(80)).seed(20);
    tpm.forEach((p, t) -> mock.project(p, "sk-" + p, 600, t));
    try (QuotaFixture f = new QuotaFixture(dir, mock)) {
      members(f, tpm, List.of("a", "b", "c"));
      CompletableFuture<List<JsonNode>> run = workers(f, "--threads", "8", "--duration", "22s");
      Map<String, Long> limits = tpm;
      await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(100)).until(() -> {
        if (run.isDone()) {
          run.join();
        }
        MockOpenAi.Stats s = f.mock.stats();
        return limits.keySet().stream().allMatch(p -> s.project(p).admitted() > 0);
      });
      Thread.sleep(1_500); // every worker's threads are waiting
      List<MockOpenAi.Stats> reads = QuotaFixture.steadyReads(f.mock, 8, limits.keySet(),
          (s, p) -> s.project(p).admitted());
      List<JsonNode> summaries = run.join();
      MockOpenAi.Stats whole = f.mock.stats();
      MockOpenAi.Stats first = reads.get(0);
      MockOpenAi.Stats last = reads.get(reads.size() - 1);
      double seconds = (last.lastAdmittedAtMs() - first.lastAdmittedAtMs()) / 1000.0;
      long summed = tpm.values().stream().mapToLong(Long::longValue).sum();
      long total = last.estimatedTokens() - first.estimatedTokens();
      double utilization = total / (summed / 60.0 * seconds);
      StringBuilder line = new StringBuilder();
      tpm.forEach((p, t) -> line.append(String.format(" %s (%d TPM): %.1f %% of its limit;", p, t,
          100.0 * (last.project(p).estimatedTokens() - first.project(p).estimatedTokens()) / (t / 60.0 * seconds))));
      System.out.printf("pool: 3 procs x 8 threads on a pool of 3 projects (%d TPM summed); steady %.1f s:%s"
              + " utilization %.1f %% of the summed limits; upstream 429s %d over the whole run; %d calls done%n",
          summed, seconds, line, utilization * 100, whole.rateLimited(), QuotaFixture.sum(summaries, "done"));
    if (whole.rateLimited() > 0) {
      StringBuilder where = new StringBuilder();
      tpm.keySet().forEach(p -> where.append(' ').append(p).append('=').append(whole.project(p).rateLimited())
          .append(" first at ").append(whole.project(p).firstRateLimitedAtMs()).append(" ms"));
      System.out.printf("pool: 429s by reason %s; by project%s%n", whole.rejected(), where);
    }

      assertThat(reads.size() - 1).as("seconds of steady state (start-up took too long)").isGreaterThanOrEqualTo(5);
      assertThat(whole.rateLimited()).as("upstream 429s, whole run").isZero();
      assertThat(QuotaFixture.sum(summaries, "worker_429s")).as("429s the workers saw").isZero();
      assertThat(utilization).as("share of the summed TPM admitted in the steady window").isGreaterThanOrEqualTo(0.95);
      for (JsonNode s : summaries) {
        assertThat(s.get("done_by_member").size()).as("a worker used every member's key: %s", s).isEqualTo(3);
      }
    }
  }

  /**
   * Projects c, a, b of 100 000, 40 000 and 60 000 TPM (the pool prefers c, its first member, when
   * several can grant at once) and workers asking about 70 000 TPM, steadily (3 x 2 threads on
   * calls of 500-700 ms: a think time would send each worker's threads in waves, and a second's
   * window would catch a wave or a gap): c carries most. Mid-run the mock cuts c to 10 000 TPM and
   * the coordinator is not told.
   * c's 429s are reported on c, so c pauses (the coordinator's stats of c: paused, throttle
   * reports) while a and b are never paused and never answered 429; and within 1 s of c's first
   * 429, by the mock's clock, a and b together admit at least 60 % of what the whole pool admitted
   * per second in the 2 s before (calls c admitted just before the cut still run their 500-700 ms
   * there), and more than they did themselves.
   */
  @Test
  void aProjectCutUpstreamPausesOnlyItsMemberAndTheOthersCarryTheTrafficWithinASecond() throws Exception {
    Map<String, Long> tpm = new LinkedHashMap<>();
    tpm.put("c", 100_000L);
    tpm.put("a", 40_000L);
    tpm.put("b", 60_000L);
    MockOpenAi.Builder mock = MockOpenAi.builder().burstSeconds(1.0)
        .latency(Duration.ofMillis(500), Duration.ofMillis(700)).seed(21);
    tpm.forEach((p, t) -> mock.project(p, "sk-" + p, 3_000, t));
    try (QuotaFixture f = new QuotaFixture(dir, mock);
        Admin admin = new Admin(f)) {
      members(f, tpm, List.of("c", "a", "b"));
      CompletableFuture<List<JsonNode>> run =
          workers(f, "--threads", "2", "--duration", "22s");
      await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(100)).until(() -> {
        if (run.isDone()) {
          run.join();
        }
        return f.mock.stats().project("c").admitted() > 0;
      });
      Thread.sleep(3_000); // every worker runs: its first call alone, then its threads
      HttpResponse<String> cut = HttpClient.newHttpClient().send(
          HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + f.mock.port() + "/mock/projects/c/limits"))
              .PUT(HttpRequest.BodyPublishers.ofString("{\"tpm\": 10000}")).build(),
          HttpResponse.BodyHandlers.ofString());
      assertThat(cut.statusCode()).as(cut.body()).isEqualTo(200);
      boolean sawPaused = false;
      boolean othersPaused = false;
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
      while (System.nanoTime() < until) {
        sawPaused |= admin.stats("c").getPaused();
        othersPaused |= admin.stats("a").getPaused() || admin.stats("b").getPaused();
        Thread.sleep(20);
      }
      List<JsonNode> summaries = run.join();
      MockOpenAi.Stats s = f.mock.stats();
      System.out.println("pool cut: the mock's projects " + s.byProject().entrySet().stream().map(e -> e.getKey()
          + "=" + e.getValue().admitted() + " admitted, " + e.getValue().rateLimited() + " 429s, first at "
          + e.getValue().firstRateLimitedAtMs() + " ms").toList()
          + "; workers " + summaries);
      Long firstMs = s.project("c").firstRateLimitedAtMs();
      assertThat(firstMs).as("the cut project answered 429").isNotNull();
      long t429 = firstMs;
      double poolBefore = (tokens(s, List.of("a", "b", "c"), t429 - 2_000, t429)) / 2.0;
      double othersBefore = tokens(s, List.of("a", "b"), t429 - 2_000, t429) / 2.0;
      double othersAfter = tokens(s, List.of("a", "b"), t429, t429 + 1_000);
      double cAfter = tokens(s, List.of("c"), t429, t429 + 1_000);
      System.out.printf("pool cut: c cut from 100000 to 10000 TPM at the mock; before its first 429 (mock t=%.1f s)"
              + " the pool admitted %.0f tokens/s, a+b %.0f/s; in the second after it a+b admitted %.0f tokens"
              + " (%.0f %% of the pool's rate before), c %.0f; 429s: c %d, a %d, b %d; coordinator: c paused %s,"
              + " %d throttle reports on c, %d on a, %d on b; %d calls done%n",
          t429 / 1000.0, poolBefore, othersBefore, othersAfter, 100 * othersAfter / poolBefore, cAfter,
          s.project("c").rateLimited(), s.project("a").rateLimited(), s.project("b").rateLimited(), sawPaused,
          admin.stats("c").getThrottleReports(), admin.stats("a").getThrottleReports(),
          admin.stats("b").getThrottleReports(), QuotaFixture.sum(summaries, "done"));

      assertThat(s.project("a").rateLimited() + s.project("b").rateLimited()).as("429s of a and b").isZero();
      assertThat(admin.stats("c").getThrottleReports()).as("c's 429s reported on c").isPositive();
      assertThat(admin.stats("a").getThrottleReports() + admin.stats("b").getThrottleReports())
          .as("reports on a and b").isZero();
      assertThat(sawPaused).as("c was seen paused").isTrue();
      assertThat(othersPaused).as("a or b was seen paused").isFalse();
      assertThat(othersAfter).as("a+b's tokens in the second after c's first 429").isGreaterThan(othersBefore)
          .isGreaterThanOrEqualTo(0.6 * poolBefore);
      assertThat(poolBefore).as("the pool's tokens per second before the cut (~1 160 asked)").isGreaterThan(500);
      assertThat(QuotaFixture.sum(summaries, "failed")).as("prompts failed").isZero();
    }
  }

  private static long tokens(MockOpenAi.Stats s, List<String> projects, long fromMs, long toMs) {
    return projects.stream().mapToLong(p -> s.project(p).tokensBetween(fromMs, toMs)).sum();
  }

  /**
   * One resource per project, its limit the project's with Sluice's bursts half the mock's
   * one-second bucket, and the pool over them in {@code order}, set through the admin service.
   */
  private static void members(QuotaFixture f, Map<String, Long> tpm, List<String> order) throws Exception {
    for (String p : order) {
      long t = tpm.get(p);
      f.cli("limit", "set", p, "--rate", "requests=" + rpmOf(f, p) + "/min:" + Math.max(1, rpmOf(f, p) / 120),
          "--rate", "tokens=" + t + "/min:" + t / 120);
    }
    try (Admin admin = new Admin(f)) {
      Limit.Builder pool = Limit.newBuilder().setResource(POOL);
      order.forEach(pool::addMembers);
      admin.stub.setLimit(SetLimitRequest.newBuilder().setLimit(pool).build());
    }
  }

  private static long rpmOf(QuotaFixture f, String project) throws Exception {
    JsonNode listed = new com.fasterxml.jackson.databind.ObjectMapper().readTree(HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + f.mock.port() + "/mock/projects")).build(),
        HttpResponse.BodyHandlers.ofString()).body());
    return listed.get(project).get("limits").get("rpm").asLong();
  }

  /** Three worker JVMs on the pool, each with every member's key. */
  private static CompletableFuture<List<JsonNode>> workers(QuotaFixture f, String... args) {
    List<String> common = new ArrayList<>(List.of("--pool", POOL, "--mode", "sluice", "--max-tokens", "100",
        "--member-key", "a=sk-a", "--member-key", "b=sk-b", "--member-key", "c=sk-c"));
    common.addAll(List.of(args));
    return CompletableFuture.supplyAsync(() -> {
      try {
        return f.runEach(List.of(List.of(), List.of(), List.of()), common.toArray(String[]::new));
      } catch (Exception e) {
        throw new IllegalStateException(e);
      }
    });
  }

  /** The coordinator's admin service over a real channel: pools and per-resource stats. */
  private static final class Admin implements AutoCloseable {
    final ManagedChannel channel;
    final AdminGrpc.AdminBlockingStub stub;

    Admin(QuotaFixture f) {
      channel = ManagedChannelBuilder.forAddress("127.0.0.1", f.sluice.port()).usePlaintext().build();
      stub = AdminGrpc.newBlockingStub(channel);
    }

    ResourceStats stats(String resource) {
      return stub.withDeadlineAfter(10, TimeUnit.SECONDS)
          .getStats(GetStatsRequest.newBuilder().setResource(resource).build()).getResources(0);
    }

    @Override
    public void close() {
      channel.shutdownNow();
    }
  }
}
