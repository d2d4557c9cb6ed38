package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.proto.v1.ReleaseRequest;
import io.grpc.Status;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class PermitTest {

  private Fixture f;

  @BeforeEach
  void setUp() {
    f = new Fixture();
  }

  @AfterEach
  void tearDown() throws InterruptedException {
    f.close();
  }

  @Test
  void closeReleasesExactlyOnce() throws InterruptedException {
    Permit permit = f.client.acquire("openai", Load.of("requests", 1, "tokens", 500));

    permit.close();
    permit.close();

    assertThat(f.fake.releases).hasSize(1);
    ReleaseRequest sent = f.fake.releases.get(0);
    assertThat(sent.getResource()).isEqualTo("openai");
    assertThat(sent.getPermitId()).isEqualTo(permit.id());
    assertThat(sent.getSettle()).isFalse();
    assertThat(sent.getUnused()).isFalse();
    assertThat(sent.getActualMap()).isEmpty();
  }

  @Test
  void toStringReadsAsAPersonWritesIt() throws InterruptedException {
    try (Permit permit = f.client.acquire("openai", Load.of("requests", 1, "tokens", 500))) {
      assertThat(permit).hasToString(
          "permit " + permit.id() + " on 'openai': requests=1, tokens=500, granted after 150 ms");
    }
  }

  @Test
  void settledUsageIsSentOnClose() throws InterruptedException {
    try (Permit permit = f.client.acquire("openai", Load.of("requests", 1, "tokens", 4000))) {
      permit.settle(Load.of("tokens", 9999));
      permit.settle(Load.of("requests", 1, "tokens", 1234)); // replaces the first
      assertThat(f.fake.releases).as("applied on close, not before").isEmpty();
    }

    ReleaseRequest sent = f.fake.releases.get(0);
    assertThat(sent.getSettle()).isTrue();
    assertThat(sent.getUnused()).isFalse();
    assertThat(sent.getActualMap()).containsExactlyInAnyOrderEntriesOf(Map.of("requests", 1L, "tokens", 1234L));
  }

  @Test
  void aSettleSendsTheModelTheAcquireNamed() throws InterruptedException {
    try (Permit permit = f.client.acquire("openai", Load.tokens(1000, 500),
        AcquireOptions.builder().model("gpt-4o-mini").build())) {
      assertThat(f.fake.acquires.get(0).getModel()).isEqualTo("gpt-4o-mini");
      assertThat(f.fake.acquires.get(0).getLoadMap())
          .containsExactlyInAnyOrderEntriesOf(Map.of("input_tokens", 1000L, "output_tokens", 500L));
      permit.settle(Load.tokens(1000, 42));
    }
    ReleaseRequest sent = f.fake.releases.get(0);
    assertThat(sent.getModel()).isEqualTo("gpt-4o-mini");
    assertThat(sent.getActualMap()).containsEntry("output_tokens", 42L);

    try (Permit plain = f.client.acquire("openai")) {
      plain.settle(Load.requests(1));
    }
    assertThat(f.fake.releases.get(1).getModel()).as("no model named, none sent").isEmpty();
  }

  @Test
  void settleAfterCloseIsRefused() throws InterruptedException {
    Permit permit = f.client.acquire("openai");
    permit.close();
    assertThatThrownBy(() -> permit.settle(Load.of("tokens", 1)))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("before close()");
  }

  @Test
  void failedReleaseDoesNotThrow() throws InterruptedException {
    f.fake.releaseFailure = Status.UNAVAILABLE.withDescription("node shutting down").asRuntimeException();
    Permit permit = f.client.acquire("openai");

    assertThatCode(permit::close).doesNotThrowAnyException();
    assertThat(f.fake.releases).hasSize(1);
  }

  @Test
  void refusedSettleStillReleasesTheSlot() throws InterruptedException {
    f.fake.settleFailure =
        Status.INVALID_ARGUMENT.withDescription("settle names dimension 'tokenz'").asRuntimeException();
    Permit permit = f.client.acquire("openai");
    permit.settle(Load.of("tokenz", 5));

    assertThatCode(permit::close).doesNotThrowAnyException();
    org.awaitility.Awaitility.await().until(() -> f.fake.releases.size() == 2);
    assertThat(f.fake.releases.get(0).getSettle()).isTrue();
    assertThat(f.fake.releases.get(1).getSettle()).as("retried as a plain release").isFalse();
    assertThat(f.fake.releases.get(1).getActualMap()).isEmpty();
  }

  @Test
  void closeAfterTheClientIsClosedDoesNotThrow() throws InterruptedException {
    Permit permit = f.client.acquire("openai");
    f.client.close();
    assertThatCode(permit::close).doesNotThrowAnyException();
    assertThat(f.fake.releases).as("the caller's channel is still open").hasSize(1);
  }
}
