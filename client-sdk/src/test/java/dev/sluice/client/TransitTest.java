package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class TransitTest {

  private static final long MS = 1_000_000L;

  @Test
  void theFirstAnswerSetsTheBaselineAndLaterOnesAreMeasuredAgainstTheLeast() {
    Transit t = new Transit();
    assertThat(t.excess(40 * MS, 0)).isZero(); // a far node is not late, only far
    assertThat(t.excess(42 * MS, 100 * MS)).isEqualTo(2 * MS);
    assertThat(t.excess(30 * MS, 200 * MS)).isZero(); // a new least
    assertThat(t.excess(530 * MS, 300 * MS)).isEqualTo(500 * MS); // held back on the way
  }

  @Test
  void theBaselineFollowsAPathThatGotSlowerWithinTwoWindows() {
    Transit t = new Transit();
    t.excess(5 * MS, 0);
    // The path now takes 80 ms: measured against the old least while it is remembered...
    assertThat(t.excess(80 * MS, 11_000 * MS)).isEqualTo(75 * MS);
    // ...and no longer once two windows have passed without it.
    assertThat(t.excess(80 * MS, 22_000 * MS)).isZero();
    assertThat(t.excess(81 * MS, 23_000 * MS)).isEqualTo(MS);
  }
}
