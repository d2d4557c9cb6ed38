package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** How many items stay in line for a wait estimate and a threshold (the rest move). */
class OverflowTest {

  private static final long SECOND = TimeUnit.SECONDS.toNanos(1);

  @Test
  void theItemsWhoseWaitStaysWithinTheThresholdStay() {
    // 5 requests/s: each item behind the first waits 200 ms more; the first waits 1 s.
    BufferPermits.Wait w = new BufferPermits.Wait(SECOND, SECOND / 5);
    assertThat(Overflow.kept(w, 10 * SECOND)).as("positions 0..45 wait at most 10 s").isEqualTo(46);
    assertThat(Overflow.kept(w, SECOND)).as("only the first").isEqualTo(1);
  }

  @Test
  void everythingMovesWhenTheFirstAlreadyWaitsTooLongOrOnlyAResumeHelps() {
    assertThat(Overflow.kept(new BufferPermits.Wait(11 * SECOND, SECOND / 5), 10 * SECOND)).isZero();
    assertThat(Overflow.kept(new BufferPermits.Wait(-1, SECOND / 5), 10 * SECOND)).as("paused until resumed").isZero();
  }

  @Test
  void nothingMovesWithoutARequestsRateToCountBy() {
    assertThat(Overflow.kept(new BufferPermits.Wait(0, 0), SECOND)).isEqualTo(Long.MAX_VALUE);
  }
}
