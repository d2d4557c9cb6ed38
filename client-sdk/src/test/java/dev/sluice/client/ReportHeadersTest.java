package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** Recorded header sets of each provider, the usual ones and the odd ones. */
class ReportHeadersTest {

  private static final Instant NOW = Instant.parse("2026-12-05T06:00:00Z");

  private static ReportHeaders.Parsed parse(String... nameValue) {
    Map<String, String> h = new LinkedHashMap<>();
    for (int i = 0; i < nameValue.length; i += 2) {
      h.put(nameValue[i], nameValue[i + 1]);
    }
    return ReportHeaders.parse(h, NOW);
  }

  @Test
  void openAiChatCompletion() {
    // As api.openai.com sends them on a 200 (tier 1, gpt-4o-mini).
    ReportHeaders.Parsed p = parse(
        "x-ratelimit-limit-requests", "500",
        "x-ratelimit-limit-tokens", "200000",
        "x-ratelimit-remaining-requests", "499",
        "x-ratelimit-remaining-tokens", "199913",
        "x-ratelimit-reset-requests", "120ms",
        "x-ratelimit-reset-tokens", "26ms");
    assertThat(p.dimensions()).containsEntry("requests",
        new ReportHeaders.Dimension(500L, 499L, Duration.ofMillis(120)));
    assertThat(p.dimensions()).containsEntry("tokens",
        new ReportHeaders.Dimension(200000L, 199913L, Duration.ofMillis(26)));
    assertThat(p.limits()).containsExactlyInAnyOrderEntriesOf(Map.of("requests", 500L, "tokens", 200000L));
    assertThat(p.problems()).isEmpty();
    assertThat(p.retryAfter()).isNull();
  }

  @Test
  void openAiResetDurations() {
    assertThat(ReportHeaders.goDuration("6m0s")).isEqualTo(Duration.ofMinutes(6));
    assertThat(ReportHeaders.goDuration("1s")).isEqualTo(Duration.ofSeconds(1));
    assertThat(ReportHeaders.goDuration("20ms")).isEqualTo(Duration.ofMillis(20));
    assertThat(ReportHeaders.goDuration("1h2m3.5s")).isEqualTo(Duration.ofMillis(3_723_500));
    assertThat(ReportHeaders.goDuration("0s")).isZero();
    assertThat(ReportHeaders.goDuration("2.5")).isEqualTo(Duration.ofMillis(2500));
    assertThat(ReportHeaders.goDuration("")).isNull();
    assertThat(ReportHeaders.goDuration("6m0")).isNull();
    assertThat(ReportHeaders.goDuration("-1s")).isNull();
    assertThat(ReportHeaders.goDuration("9999999h")).isNull();
    // 19 digits above Long.MAX_VALUE: dropped, not a NumberFormatException (found by the fuzz target).
    assertThat(ReportHeaders.parse(java.util.Map.of("x-ratelimit-remaining-requests", "9999999999999999999"),
        java.time.Instant.EPOCH)).isNotNull();
  }

  @Test
  void openAiOddOnes() {
    // 0s resets, a missing limit, a negative and a huge count, a garbled reset.
    ReportHeaders.Parsed p = parse(
        "X-RateLimit-Remaining-Requests", "0",
        "x-ratelimit-reset-requests", "0s",
        "x-ratelimit-limit-tokens", "-40000",
        "x-ratelimit-remaining-tokens", "99999999999999999999",
        "x-ratelimit-reset-tokens", "soon");
    assertThat(p.dimensions()).containsOnlyKeys("requests");
    assertThat(p.dimensions().get("requests")).isEqualTo(new ReportHeaders.Dimension(null, 0L, Duration.ZERO));
    assertThat(p.limits()).isEmpty();
    assertThat(p.problems()).hasSize(3)
        .anySatisfy(s -> assertThat(s).contains("x-ratelimit-limit-tokens").contains("-40000"))
        .anySatisfy(s -> assertThat(s).contains("x-ratelimit-remaining-tokens"))
        .anySatisfy(s -> assertThat(s).contains("soon").contains("6m0s"));
  }

  @Test
  void contradictoryDimensionIsDroppedWhole() {
    ReportHeaders.Parsed p = parse(
        "x-ratelimit-limit-requests", "500",
        "x-ratelimit-remaining-requests", "900",
        "x-ratelimit-limit-tokens", "0",
        "x-ratelimit-remaining-tokens", "0");
    assertThat(p.dimensions()).doesNotContainKey("requests");
    assertThat(p.limits()).isEmpty();
    assertThat(p.remaining()).containsExactly(Map.entry("tokens", 0L));
    assertThat(p.problems()).anySatisfy(s -> assertThat(s).contains("remaining 900 is above the limit 500"))
        .anySatisfy(s -> assertThat(s).contains("limit of 0"));
  }

  @Test
  void azureOpenAi() {
    // Azure sends what remains, no limit, and its pause in milliseconds twice.
    ReportHeaders.Parsed p = parse(
        "x-ratelimit-remaining-requests", "119",
        "x-ratelimit-remaining-tokens", "119480",
        "retry-after-ms", "1500",
        "x-ms-retry-after-ms", "1500",
        "retry-after", "2");
    assertThat(p.remaining()).containsExactlyInAnyOrderEntriesOf(Map.of("requests", 119L, "tokens", 119480L));
    assertThat(p.limits()).isEmpty();
    assertThat(p.retryAfter()).isEqualTo(Duration.ofMillis(1500));
    assertThat(p.problems()).isEmpty();
  }

  @Test
  void azureOddOnes() {
    assertThat(parse("x-ms-retry-after-ms", "250").retryAfter()).isEqualTo(Duration.ofMillis(250));
    ReportHeaders.Parsed disagree = parse("retry-after-ms", "100", "x-ms-retry-after-ms", "900");
    assertThat(disagree.retryAfter()).isEqualTo(Duration.ofMillis(900));
    assertThat(disagree.problems()).singleElement().asString().contains("disagree");
    ReportHeaders.Parsed bad = parse("x-ms-retry-after-ms", "-5", "retry-after", "3");
    assertThat(bad.retryAfter()).isEqualTo(Duration.ofSeconds(3));
    assertThat(parse("retry-after-ms", "1e300").retryAfter()).isNull();
    assertThat(parse("retry-after-ms", "Infinity").retryAfter()).isNull();
  }

  @Test
  void anthropicMessages() {
    ReportHeaders.Parsed p = parse(
        "anthropic-ratelimit-requests-limit", "50",
        "anthropic-ratelimit-requests-remaining", "49",
        "anthropic-ratelimit-requests-reset", "2026-12-05T06:00:01Z",
        "anthropic-ratelimit-input-tokens-limit", "40000",
        "anthropic-ratelimit-input-tokens-remaining", "39000",
        "anthropic-ratelimit-input-tokens-reset", "2026-12-05T06:00:01.5+00:00",
        "anthropic-ratelimit-output-tokens-limit", "8000",
        "anthropic-ratelimit-output-tokens-remaining", "8000",
        "anthropic-ratelimit-output-tokens-reset", "2026-12-05T05:59:00Z",
        "anthropic-ratelimit-tokens-limit", "48000",
        "anthropic-ratelimit-tokens-remaining", "47000",
        "anthropic-ratelimit-tokens-reset", "2026-12-05T07:00:00+01:00",
        "retry-after", "4");
    assertThat(p.limits()).containsExactlyInAnyOrderEntriesOf(Map.of(
        "requests", 50L, "input-tokens", 40000L, "output-tokens", 8000L, "tokens", 48000L));
    assertThat(p.dimensions().get("requests").reset()).isEqualTo(Duration.ofSeconds(1));
    assertThat(p.dimensions().get("input-tokens").reset()).isEqualTo(Duration.ofMillis(1500));
    assertThat(p.dimensions().get("output-tokens").reset()).isZero(); // in the past
    assertThat(p.dimensions().get("tokens").reset()).isZero(); // the same instant, another offset
    assertThat(p.retryAfter()).isEqualTo(Duration.ofSeconds(4));
    assertThat(p.problems()).isEmpty();
  }

  @Test
  void anthropicOddOnes() {
    ReportHeaders.Parsed p = parse(
        "anthropic-ratelimit-requests-remaining", "3",
        "anthropic-ratelimit-requests-reset", "tomorrow",
        "anthropic-ratelimit-tokens-limit", "1000000000000000000",
        "anthropic-ratelimit-tokens-reset", "2030-01-01T00:00:00Z",
        "anthropic-ratelimit-Bad Name!-limit", "5");
    assertThat(p.dimensions()).containsOnlyKeys("requests");
    assertThat(p.dimensions().get("requests")).isEqualTo(new ReportHeaders.Dimension(null, 3L, null));
    assertThat(p.problems()).hasSize(4);
  }

  @Test
  void familiesThatDisagreeOnADimensionAreBothDropped() {
    ReportHeaders.Parsed p = parse(
        "x-ratelimit-limit-requests", "500", "anthropic-ratelimit-requests-limit", "50",
        "x-ratelimit-remaining-tokens", "10", "anthropic-ratelimit-tokens-remaining", "10");
    assertThat(p.dimensions()).doesNotContainKey("requests");
    assertThat(p.remaining()).containsExactly(Map.entry("tokens", 10L));
    assertThat(p.problems()).singleElement().asString().contains("disagree");
  }

  @Test
  void warnsOncePerResourceThenAgainAfterTheInterval() {
    AtomicLong now = new AtomicLong();
    ReportHeaders headers = new ReportHeaders(now::get);
    ReportHeaders.Parsed bad = parse("x-ratelimit-remaining-tokens", "lots");
    assertThat(headers.warnOnce("openai", bad)).isTrue();
    assertThat(headers.warnOnce("openai", bad)).isFalse();
    assertThat(headers.warnOnce("anthropic", bad)).isTrue();
    assertThat(headers.warnOnce("openai", parse())).isFalse();
    now.addAndGet(ReportHeaders.WARN_EVERY.toNanos() - 1);
    assertThat(headers.warnOnce("openai", bad)).isFalse();
    now.addAndGet(1);
    assertThat(headers.warnOnce("openai", bad)).isTrue();
  }
}
