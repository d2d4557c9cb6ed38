package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.proto.v1.ReportRequest;
import dev.sluice.proto.v1.ReportResponse;
import io.grpc.Status;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class ReportTest {

  private Fixture f;

  @BeforeEach
  void setUp() {
    f = new Fixture();
    // Echo the requested pause, as a coordinator that applied it would.
    f.fake.onReport = request -> ReportResponse.newBuilder().setPausedFor(request.getRetryAfter()).build();
  }

  @AfterEach
  void tearDown() throws InterruptedException {
    f.close();
  }

  @Test
  void throttledReportCarriesRemainingCountersAndRetryAfterMs() {
    Map<String, String> headers = new HashMap<>();
    headers.put("X-RateLimit-Remaining-Tokens", "1500");
    headers.put("x-ratelimit-remaining-requests", "12");
    headers.put("x-ratelimit-remaining-images", "lots"); // unparsable: skipped
    headers.put("x-ratelimit-limit-tokens", "90000"); // not a remaining counter
    headers.put("Retry-After-Ms", "250");
    headers.put("Retry-After", "3");

    Duration paused = f.client.report("openai", true, null, headers);

    ReportRequest sent = f.fake.reports.get(0);
    assertThat(sent.getResource()).isEqualTo("openai");
    assertThat(sent.getThrottled()).isTrue();
    assertThat(sent.getRemainingMap()).containsExactlyInAnyOrderEntriesOf(Map.of("tokens", 1500L, "requests", 12L));
    assertThat(Protos.toJava(sent.getRetryAfter())).isEqualTo(Duration.ofMillis(250));
    assertThat(paused).isEqualTo(Duration.ofMillis(250));
  }

  @Test
  void retryAfterInFractionalSecondsIsUsedWithoutTheMillisHeader() {
    f.client.report("openai", true, null, Map.of("RETRY-AFTER", "1.5"));
    assertThat(Protos.toJava(f.fake.reports.get(0).getRetryAfter())).isEqualTo(Duration.ofMillis(1500));
  }

  @Test
  void explicitRetryAfterWinsOverHeaders() {
    f.client.report("openai", true, Duration.ofSeconds(7), Map.of("retry-after", "1"));
    assertThat(Protos.toJava(f.fake.reports.get(0).getRetryAfter())).isEqualTo(Duration.ofSeconds(7));
  }

  @Test
  void notThrottledSendsNoPause() {
    Duration paused = f.client.report("openai", false, null,
        Map.of("retry-after", "5", "x-ratelimit-remaining-tokens", "10"));
    ReportRequest sent = f.fake.reports.get(0);
    assertThat(sent.getThrottled()).isFalse();
    assertThat(sent.hasRetryAfter()).isFalse();
    assertThat(sent.getRemainingMap()).containsExactly(Map.entry("tokens", 10L));
    assertThat(paused).isZero();
  }

  @Test
  void throttledWithoutAnyHintLeavesThePauseToTheCoordinator() {
    f.client.report("openai", true, null, null);
    assertThat(f.fake.reports.get(0).hasRetryAfter()).isFalse();
  }

  @Test
  void unusableHeaderValuesAreSkipped() {
    Map<String, String> headers = Map.of(
        "retry-after-ms", "soon",
        "retry-after", "Wed, 21 Oct 2015 07:28:00 GMT",
        "x-ratelimit-remaining-tokens", "-3",
        "x-ratelimit-remaining-", "4");
    assertThat(ReportHeaders.retryAfter(headers)).isNull();
    assertThat(ReportHeaders.remaining(headers)).isEmpty();
    assertThat(ReportHeaders.retryAfter(Map.of("retry-after-ms", "NaN", "retry-after", "2"))).isEqualTo(Duration.ofSeconds(2));
  }

  @Test
  void negativeRetryAfterIsRefused() {
    assertThatThrownBy(() -> f.client.report("openai", true, Duration.ofSeconds(-1), Map.of()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(">= 0");
    assertThat(f.fake.reports).isEmpty();
  }

  @Test
  void failureIsMapped() {
    f.fake.onReport = request -> {
      throw Status.NOT_FOUND.withDescription("no limit named 'openai'").asRuntimeException();
    };
    assertThatThrownBy(() -> f.client.report("openai", true, null, Map.of()))
        .isInstanceOf(ResourceNotFoundException.class)
        .hasMessageContaining("no limit named 'openai'")
        .hasMessageStartingWith("report on resource 'openai'");
  }
}
