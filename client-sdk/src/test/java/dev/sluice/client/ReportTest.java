package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.proto.v1.ReportRequest;
import dev.sluice.proto.v1.ReportResponse;
import io.grpc.Status;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
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

    Duration paused = f.client.reportThrottled("openai", null, headers);

    ReportRequest sent = f.fake.reports.get(0);
    assertThat(sent.getResource()).isEqualTo("openai");
    assertThat(sent.getThrottled()).isTrue();
    assertThat(sent.getRemainingMap()).containsExactlyInAnyOrderEntriesOf(Map.of("tokens", 1500L, "requests", 12L));
    assertThat(Protos.toJava(sent.getRetryAfter())).isEqualTo(Duration.ofMillis(250));
    assertThat(paused).isEqualTo(Duration.ofMillis(250));
  }

  @Test
  void retryAfterInFractionalSecondsIsUsedWithoutTheMillisHeader() {
    f.client.reportThrottled("openai", null, Map.of("RETRY-AFTER", "1.5"));
    assertThat(Protos.toJava(f.fake.reports.get(0).getRetryAfter())).isEqualTo(Duration.ofMillis(1500));
  }

  @Test
  void explicitRetryAfterWinsOverHeaders() {
    f.client.reportThrottled("openai", Duration.ofSeconds(7), Map.of("retry-after", "1"));
    assertThat(Protos.toJava(f.fake.reports.get(0).getRetryAfter())).isEqualTo(Duration.ofSeconds(7));
  }

  @Test
  void headersReportSendsNoPause() {
    Duration paused = f.client.reportHeaders("openai",
        Map.of("retry-after", "5", "x-ratelimit-remaining-tokens", "10"));
    ReportRequest sent = f.fake.reports.get(0);
    assertThat(sent.getThrottled()).isFalse();
    assertThat(sent.hasRetryAfter()).isFalse();
    assertThat(sent.getRemainingMap()).containsExactly(Map.entry("tokens", 10L));
    assertThat(paused).isZero();
  }

  @Test
  void throttledWithoutAnyHintLeavesThePauseToTheCoordinator() {
    f.client.reportThrottled("openai", null, Map.of());
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
    assertThatThrownBy(() -> f.client.reportThrottled("openai", Duration.ofSeconds(-1), Map.of()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(">= 0");
    assertThat(f.fake.reports).isEmpty();
  }

  @Test
  void failureIsMapped() {
    f.fake.onReport = request -> {
      throw Status.NOT_FOUND.withDescription("no limit named 'openai'").asRuntimeException();
    };
    assertThatThrownBy(() -> f.client.reportThrottled("openai", null, Map.of()))
        .isInstanceOf(ResourceNotFoundException.class)
        .hasMessageContaining("no limit named 'openai'")
        .hasMessageStartingWith("report on resource 'openai'");
  }

  @Test
  void asyncFormsCompleteWithThePause() throws Exception {
    CompletableFuture<Duration> throttled = f.client.reportThrottledAsync("openai", Duration.ofSeconds(2), Map.of());
    CompletableFuture<Duration> headers = f.client.reportHeadersAsync("openai",
        Map.of("x-ratelimit-remaining-requests", "3"));
    assertThat(throttled.get(10, TimeUnit.SECONDS)).isEqualTo(Duration.ofSeconds(2));
    assertThat(headers.get(10, TimeUnit.SECONDS)).isZero();
    assertThat(f.fake.reports).extracting(ReportRequest::getThrottled).containsExactly(true, false);
    assertThat(f.fake.reports.get(1).getRemainingMap()).containsExactly(Map.entry("requests", 3L));
  }

  @Test
  void asyncFailureIsMappedInTheFuture() {
    f.fake.onReport = request -> {
      throw Status.NOT_FOUND.withDescription("no limit named 'openai'").asRuntimeException();
    };
    assertThat(f.client.reportHeadersAsync("openai", Map.of()))
        .failsWithin(Duration.ofSeconds(10))
        .withThrowableOfType(ExecutionException.class)
        .withCauseInstanceOf(ResourceNotFoundException.class);
  }

  @Test
  void nullHeadersAreRefusedWithTheFix() {
    assertThatThrownBy(() -> f.client.reportHeaders("openai", null))
        .isInstanceOf(NullPointerException.class)
        .hasMessageContaining("Map.of()");
    assertThatThrownBy(() -> f.client.reportThrottledAsync("openai", null, null))
        .isInstanceOf(NullPointerException.class);
    assertThat(f.fake.reports).isEmpty();
  }

  @Test
  @SuppressWarnings("deprecation")
  void deprecatedBooleanFormDelegates() {
    assertThat(f.client.report("openai", true, Duration.ofSeconds(4), null)).isEqualTo(Duration.ofSeconds(4));
    f.client.report("openai", false, Duration.ofSeconds(4), Map.of("retry-after", "9"));
    assertThat(f.fake.reports).extracting(ReportRequest::getThrottled).containsExactly(true, false);
    assertThat(f.fake.reports.get(1).hasRetryAfter()).as("a pause only with a throttle").isFalse();
  }
}
