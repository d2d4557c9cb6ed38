package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.sluice.proto.v1.RateDimension;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * The {@code DIM=AMOUNT/PERIOD[:BURST]} parser on arbitrary text (any bytes, read as UTF-8):
 * it either returns a rate within the documented ranges that {@link Rates#format} writes back
 * to the same rate, or throws an {@link IllegalArgumentException} that quotes the input and
 * shows the form. Any other exception is a crash.
 */
class RatesFuzzTest {

  @FuzzTest(maxDuration = "20s")
  void parsesOrExplains(byte[] input) {
    String text = new String(input, StandardCharsets.UTF_8);
    RateDimension r;
    try {
      r = Rates.parse(text);
    } catch (IllegalArgumentException e) {
      assertThat(e.getMessage()).startsWith("bad rate '" + text + "': ").contains(Rates.FORM);
      return;
    }
    assertThat(r.getName()).matches("[A-Za-z0-9._-]{1,64}");
    assertThat(r.getAmount()).isPositive();
    assertThat(r.getBurst()).isNotNegative();
    Duration period = Duration.ofSeconds(r.getPeriod().getSeconds(), r.getPeriod().getNanos());
    assertThat(period).isBetween(Duration.ofMillis(1), Duration.ofDays(1));
    // What `limit show` prints must be accepted back by `limit set` as the same rate.
    assertThat(Rates.parse(Rates.format(r))).as("round trip of %s", Rates.format(r)).isEqualTo(r);
  }
}
