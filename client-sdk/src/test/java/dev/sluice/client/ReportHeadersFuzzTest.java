package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.Map;

/**
 * The provider header parser on arbitrary header sets (known names with fuzzed values, and
 * fuzzed names): it never throws, and whatever it keeps is a bucket-safe value: counts from 0
 * to {@link ReportHeaders#MAX_COUNT}, a limit of at least 1 and never below what remains,
 * resets and pauses from 0 to {@link ReportHeaders#MAX_WAIT}.
 */
class ReportHeadersFuzzTest {

  private static final String[] NAMES = {
    "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
    "retry-after", "retry-after-ms", "x-ms-retry-after-ms",
    "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-output-tokens-reset",
  };

  @FuzzTest(maxDuration = "20s")
  void parsesOrDrops(FuzzedDataProvider data) {
    Map<String, String> headers = new HashMap<>();
    int n = data.consumeInt(0, 12);
    for (int i = 0; i < n; i++) {
      String name = data.consumeBoolean() ? data.pickValue(NAMES) : data.consumeString(60);
      headers.put(data.consumeBoolean() ? name.toUpperCase() : name, data.consumeString(60));
    }
    ReportHeaders.Parsed p = ReportHeaders.parse(headers, Instant.ofEpochSecond(data.consumeLong(0, 4_000_000_000L)));
    p.dimensions().forEach((d, v) -> {
      assertThat(d).matches("[a-z0-9._-]{1,64}");
      if (v.limit() != null) {
        assertThat(v.limit()).isBetween(1L, ReportHeaders.MAX_COUNT);
      }
      if (v.remaining() != null) {
        assertThat(v.remaining()).isBetween(0L, v.limit() == null ? ReportHeaders.MAX_COUNT : v.limit());
      }
      if (v.reset() != null) {
        assertThat(v.reset()).isBetween(Duration.ZERO, ReportHeaders.MAX_WAIT);
      }
    });
    if (p.retryAfter() != null) {
      assertThat(p.retryAfter()).isBetween(Duration.ZERO, ReportHeaders.MAX_WAIT);
    }
  }
}
