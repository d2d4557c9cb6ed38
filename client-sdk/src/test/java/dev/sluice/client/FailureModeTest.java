package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class FailureModeTest {

  @ParameterizedTest
  @ValueSource(doubles = {0, -0.5, 1.0001, 2, Double.NaN, Double.POSITIVE_INFINITY})
  void shareOutsideZeroToOneIsRefused(double share) {
    assertThatThrownBy(() -> FailureMode.local(share))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("(0, 1]")
        .hasMessageContaining("e.g. 0.25 for one of four worker processes");
  }

  @Test
  void localModeKeepsItsShare() {
    assertThat(FailureMode.local(1)).hasToString("LOCAL(1)");
    assertThat(FailureMode.local(0.25)).hasToString("LOCAL(0.25)").isEqualTo(FailureMode.local(0.25));
    assertThat(FailureMode.local(0.25).share()).isEqualTo(0.25);
    assertThat(FailureMode.FAIL_OPEN).hasToString("FAIL_OPEN").isNotEqualTo(FailureMode.FAIL_CLOSED);
  }

  @Test
  void builderTakesOneModeAndNoNull() {
    assertThatThrownBy(() -> SluiceClient.builder().failureMode(FailureMode.FAIL_OPEN).failureMode(FailureMode.FAIL_OPEN))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("failureMode was already set");
    assertThatThrownBy(() -> SluiceClient.builder().failureMode(null))
        .isInstanceOf(NullPointerException.class)
        .hasMessageContaining("FailureMode.FAIL_CLOSED");
  }
}
