package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import org.junit.jupiter.api.Test;

class AcquireOptionsTest {

  @Test
  void defaultsSetNothing() {
    AcquireOptions d = AcquireOptions.defaults();
    assertThat(d.timeout()).isNull();
    assertThat(d.lane()).isNull();
    assertThat(d.requestId()).isNull();
  }

  @Test
  void keepsWhatWasSet() {
    AcquireOptions o = AcquireOptions.builder()
        .timeout(Duration.ZERO).lane(Lane.BATCH).requestId("job-7").build();
    assertThat(o.timeout()).isZero();
    assertThat(o.lane()).isEqualTo(Lane.BATCH);
    assertThat(o.requestId()).isEqualTo("job-7");
  }

  @Test
  void failIfLateIsOffByDefaultAndSetOnce() {
    assertThat(AcquireOptions.defaults().failIfLate()).isFalse();
    AcquireOptions o = AcquireOptions.builder().failIfLate().build();
    assertThat(o.failIfLate()).isTrue();
    assertThat(o.toString()).endsWith(", failIfLate}");
    assertThatThrownBy(() -> AcquireOptions.builder().failIfLate().failIfLate())
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("failIfLate was already set");
  }

  @Test
  void aModelIsCheckedAndSetOnce() {
    assertThat(AcquireOptions.builder().model("openai/gpt-4o-mini@2024").build().model())
        .isEqualTo("openai/gpt-4o-mini@2024");
    assertThat(AcquireOptions.defaults().model()).isNull();
    assertThatThrownBy(() -> AcquireOptions.builder().model("gpt 4o"))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("such as gpt-4o-mini");
    assertThatThrownBy(() -> AcquireOptions.builder().model(""))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> AcquireOptions.builder().model("a").model("b"))
        .isInstanceOf(IllegalStateException.class).hasMessageContaining("model was already set");
  }

  @Test
  void negativeTimeoutIsRefused() {
    assertThatThrownBy(() -> AcquireOptions.builder().timeout(Duration.ofMillis(-1)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(">= 0");
  }

  @Test
  void valueSetTwiceIsRefused() {
    AcquireOptions.Builder b = AcquireOptions.builder().lane(Lane.BATCH);
    assertThatThrownBy(() -> b.lane(Lane.INTERACTIVE))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("lane was already set");
  }

  @Test
  void requestIdCharactersAreCheckedBeforeSending() {
    assertThatThrownBy(() -> AcquireOptions.builder().requestId("order 7"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("' ' at 5").hasMessageContaining("A-Z a-z 0-9 . _ : -");
    assertThatThrownBy(() -> AcquireOptions.builder().requestId("ordre-\u00e9"))
        .hasMessageContaining("U+00E9 at 6");
    assertThatThrownBy(() -> AcquireOptions.builder().requestId("a\nb")).hasMessageContaining("U+000A");
    assertThat(AcquireOptions.builder().requestId("order:2026-12-04_7.a").build().requestId())
        .isEqualTo("order:2026-12-04_7.a");
  }

  @Test
  void requestIdLengthIsChecked() {
    assertThatThrownBy(() -> AcquireOptions.builder().requestId(""))
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> AcquireOptions.builder().requestId("x".repeat(65)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("1 to 64");
    assertThat(AcquireOptions.builder().requestId("x".repeat(64)).build().requestId()).hasSize(64);
  }
}
