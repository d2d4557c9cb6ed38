package dev.sluice.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The peers' targets: the memory store against 2× Sentinel, the Redis store against 1× Bucket4j. */
class ReportTest {

  private static Result peer(String name, double rate, double p99) {
    Result r = new Result("peer." + name + ".n", "peers", name, "permits/s");
    r.rounds.add(new Result.Round(1, (long) rate, rate, p99 / 2, p99 / 1.5, p99, p99, p99, Double.NaN, Double.NaN,
        0, 0));
    return r;
  }

  private static List<String> targets(Result... results) {
    Options o = Options.parse(new String[] {"--quick"});
    Machine m = new Machine(2, "test", 1, "os", "jvm", 1, "gc", 0, "abc1234");
    return new Report(o, m, Instant.now(), Duration.ofSeconds(1), List.of(results), Map.of(), null, null, null,
        List.of()).targetLines();
  }

  private static String line(List<String> lines, String peer) {
    return lines.stream().filter(l -> l.contains(peer)).findFirst().orElseThrow();
  }

  @Test
  void theRedisStoreIsHeldToOnceBucket4jAndTheMemoryStoreToTwiceSentinel() {
    List<String> lines = targets(
        peer("sluice-redis-session", 1_100, 900), peer("bucket4j-lettuce-batched", 1_000, 1_000),
        peer("sluice-memory-session", 1_500, 900), peer("sentinel-cluster", 1_000, 1_000));
    assertThat(line(lines, "Bucket4j")).contains("≥ 1.00× the permits/s of Bucket4j-Lettuce").contains("PASS");
    assertThat(line(lines, "Sentinel")).contains("≥ 2.00× the permits/s of Sentinel")
        .contains("MISS").contains("throughput short by 25.0 % (needs 2.00×)");
  }

  @Test
  void aPeerTargetQuotesTheBarAgainstTheBareTransportOnTheSameDriver() {
    Result echo = new Result(LoadGen.ECHO_BATCHED_THREADS, "ceiling", "echo bidi stream, batched as the SDK's session",
        "ops/s");
    echo.rounds.add(new Result.Round(1, 2_500, 2_500, 100, 150, 200, 200, 200, Double.NaN, Double.NaN, 0, 0));
    List<String> lines = targets(echo, peer("sluice-memory-session", 1_500, 900), peer("sentinel-cluster", 1_000,
        1_000));
    // 2 x 1 000 = 2 000/s is 0.80x the 2 500 ops/s the echo carries; Sluice's 1 500 is 0.60x.
    assertThat(line(lines, "Sentinel")).contains("the bar, 2\u2009000/s, is 0.80× the bare transport on this driver")
        .contains("2\u2009500 ops/s), Sluice 0.60×");
    assertThat(line(targets(peer("sluice-memory-session", 1_500, 900), peer("sentinel-cluster", 1_000, 1_000)),
        "Sentinel")).doesNotContain("bare transport");
  }

  @Test
  void aFastEnoughRedisStoreWithAWorseP99StillMisses() {
    List<String> lines = targets(peer("sluice-redis-session", 1_100, 1_200), peer("bucket4j-lettuce-batched", 1_000,
        1_000));
    assertThat(line(lines, "Bucket4j")).contains("MISS").contains("p99 worse by 20.0 %")
        .doesNotContain("throughput short");
  }

  @Test
  void aJmhRowNamesItsParameters() throws Exception {
    com.fasterxml.jackson.databind.ObjectMapper json = new com.fasterxml.jackson.databind.ObjectMapper();
    assertThat(Report.jmhName(json.readTree(
        "{\"benchmark\": \"dev.sluice.bench.jmh.TenantBench.queueThenDrain\", \"params\": {\"tenants\": \"1000\"}}")))
        .isEqualTo("TenantBench.queueThenDrain (tenants=1000)");
    assertThat(Report.jmhName(json.readTree("{\"benchmark\": \"dev.sluice.bench.jmh.EngineBench.hotKey_1thread\"}")))
        .isEqualTo("EngineBench.hotKey_1thread");
  }
}
