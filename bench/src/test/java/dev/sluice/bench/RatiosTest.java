package dev.sluice.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The side-by-side lines of the new rows, on figures made up here (no measurement involved). */
class RatiosTest {

  @Test
  void spreadIsTheGapOverTheSmallerFigureWhicheverComesFirst() {
    assertThat(Ratios.spread(100, 110)).isCloseTo(0.10, within(1e-9));
    assertThat(Ratios.spread(110, 100)).isCloseTo(0.10, within(1e-9));
    assertThat(Ratios.spread(50, 50)).isZero();
  }

  @Test
  void echoSpreadSaysWhetherTheWarmUpWasLongEnough() {
    Result start = row("echo.unary.n.direct", "calls/s", 100_000, 1000, Double.NaN);
    assertThat(Ratios.echoSpread(start, row("echo.unary.n.direct.end", "calls/s", 108_000, 1000, Double.NaN)))
        .contains("at the start", "at the end of the run", "spread 8.0 %", "within 10.0 %")
        .doesNotContain("lengthen");
    assertThat(Ratios.echoSpread(start, row("echo.unary.n.direct.end", "calls/s", 125_000, 1000, Double.NaN)))
        .contains("spread 25.0 %", "over 10.0 %, faster at the end", "lengthen --jvm-warmup and --warmup");
    assertThat(Ratios.echoSpread(start, row("echo.unary.n.direct.end", "calls/s", 80_000, 1000, Double.NaN)))
        .contains("spread 25.0 %", "slower at the end: not the warm-up")
        .doesNotContain("lengthen");
  }

  @Test
  void versusComparesThroughputAndTheAcquireLatencyWhenBothRowsHaveIt() {
    Result keyed = row("keys.worker", "permits/s", 27_000, 2200, 2000);
    Result open = row("keys.open", "permits/s", 30_000, 2000, 1000);
    assertThat(Ratios.versus("worker key vs open", keyed, open))
        .startsWith("worker key vs open: 0.90× the permits/s")
        .contains("acquire p50 2.00×");
  }

  @Test
  void keysRatioNeedsTheKeyedAndTheOpenRowAndNamesTheSecondOpenRowToo() {
    Result open = row("keys.open", "permits/s", 30_000, 2000, 1000);
    Result keyed = row("keys.worker", "permits/s", 15_000, 2000, 1000);
    Result again = row("keys.open.again", "permits/s", 20_000, 2000, 1000);
    assertThat(LoadGen.keysRatio(List.of(open, keyed))).hasValueSatisfying(l ->
        assertThat(l).startsWith("worker key vs open: 0.50×").doesNotContain("open again"));
    assertThat(LoadGen.keysRatio(List.of(open, keyed, again))).hasValueSatisfying(l ->
        assertThat(l).contains("vs open again: 0.75× the permits/s"));
    assertThat(LoadGen.keysRatio(List.of(open))).isEmpty();
  }

  @Test
  void httpRatioCountsPermitsAndBothRequestsOfEach() {
    Result health = row("http.healthz", "requests/s", 40_000, 1500, Double.NaN);
    Result acquire = row("http.acquire", "permits/s", 10_000, 6000, 3000);
    assertThat(LoadGen.httpRatio(List.of(health, acquire))).hasValueSatisfying(l -> assertThat(l)
        .startsWith("HTTP acquire+release vs GET /healthz: 0.25× the requests/s")
        .endsWith("counting both requests of a permit, 0.50× the requests/s"));
    assertThat(LoadGen.httpRatio(List.of(health))).isEmpty();
  }

  @Test
  void theAcquireAnswersPermitIdIsRead() {
    assertThat(HttpLoad.permitId("{\"permitId\":\"aG90.4fz1c-1\",\"resource\":\"hot\",\"granted\":{}}"))
        .isEqualTo("aG90.4fz1c-1");
    assertThatThrownBy(() -> HttpLoad.permitId("{\"error\":{\"code\":\"NOT_FOUND\"}}"))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("no permitId")
        .hasMessageContaining("NOT_FOUND");
  }

  /** One window of {@code rate}; p50 {@code p50} µs, the acquire's p50 {@code firstP50} (NaN: none). */
  private static Result row(String id, String unit, double rate, double p50, double firstP50) {
    Result r = new Result(id, "test", id, unit);
    r.driver = "64 async in flight";
    r.rounds.add(new Result.Round(1.0, (long) rate, rate, p50, p50, p50 * 2, p50 * 3, p50 * 4, firstP50,
        firstP50 * 2, 0, 0));
    if (!Double.isNaN(firstP50)) {
      r.firstName = "acquire";
    }
    return r;
  }
}
