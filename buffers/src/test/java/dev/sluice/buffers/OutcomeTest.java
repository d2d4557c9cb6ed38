package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import org.junit.jupiter.api.Test;

/** What an attempt's outcome means for its item: the rules, one status at a time. */
class OutcomeTest {

  private static final long NOW = 1_800_000_000_000L;
  private final BufferSpec spec;

  OutcomeTest() throws IOException {
    spec = BufferSpec.parse(BufferSpec.JSON.readTree("{\"name\": \"o\", \"url\": \"http://192.0.2.1/x\", \"rate\":"
        + " {\"amount\": 1}, \"maxRetries\": 2, \"backoff\": \"fixed\", \"backoffBase\": \"10s\"}"),
        TestSyntax.INSTANCE);
  }

  private static Outcome status(int s) {
    return new Outcome(s, "", null, s == 429 ? 3000 : 0, false, true);
  }

  private Outcome.Verdict judge(Outcome o, int retriesUsed) {
    return o.judge(spec, retriesUsed, NOW, () -> 0.5);
  }

  @Test
  void twoHundredsAreDeliveredAndKeepTheBudget() {
    Outcome.Verdict v = judge(status(204), 1);
    assertThat(v.state()).isEqualTo("completed");
    assertThat(v.verdict()).isEqualTo("delivered");
    assertThat(v.retries()).isEqualTo(1);
  }

  @Test
  void a429WaitsForItsRetryAfterWithoutSpendingTheBudget() {
    Outcome.Verdict v = judge(status(429), 2);
    assertThat(v.state()).isEqualTo("pending");
    assertThat(v.verdict()).isEqualTo("throttled");
    assertThat(v.nextAt()).isEqualTo(NOW + 3000);
    assertThat(v.retries()).as("even with the budget spent").isEqualTo(2);
    assertThat(v.note()).contains("Retry-After", "untouched");
  }

  @Test
  void noAnswer408And5xxBackOffWhileTheBudgetLasts() {
    for (Outcome o : new Outcome[] {status(500), status(503), status(408), Outcome.error(new IOException("reset")),
        Outcome.refused("in --buffer-deny 10.0.0.0/8")}) {
      Outcome.Verdict v = judge(o, 1);
      assertThat(v.state()).as(o.toString()).isEqualTo("pending");
      assertThat(v.verdict()).isEqualTo("retried");
      assertThat(v.retries()).isEqualTo(2);
      assertThat(v.nextAt()).as("fixed backoff").isEqualTo(NOW + 10_000);
      assertThat(v.note()).contains("retry 2 of 2");
      Outcome.Verdict spent = judge(o, 2);
      assertThat(spent.state()).isEqualTo("failed");
      assertThat(spent.note()).contains("retry budget of 2 spent");
    }
  }

  @Test
  void otherStatusesAndUnbuildableRequestsFailAtOnce() {
    Outcome.Verdict bad = judge(status(400), 0);
    assertThat(bad.state()).isEqualTo("failed");
    assertThat(bad.note()).contains("400 is not retried");
    Outcome unbuildable = Outcome.unbuildable(new IllegalArgumentException("header X-P"));
    assertThat(unbuildable.sent()).isFalse();
    Outcome.Verdict never = judge(unbuildable, 0);
    assertThat(never.state()).isEqualTo("failed");
    assertThat(never.note()).contains("not retried");
    assertThat(Outcome.refused("x").sent()).as("a refused target is not sent to").isFalse();
  }
}
