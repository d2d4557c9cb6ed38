package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import picocli.CommandLine.TypeConversionException;

class DurationsTest {

  @ParameterizedTest(name = "{0} = {1}")
  @CsvSource({
      "500ms, PT0.5S",
      "1msec, PT0.001S",
      "30s, PT30S",
      "30sec, PT30S",
      "2secs, PT2S",
      "1second, PT1S",
      "10seconds, PT10S",
      "5m, PT5M",
      "5min, PT5M",
      "5mins, PT5M",
      "1minute, PT1M",
      "2minutes, PT2M",
      "1h, PT1H",
      "1hr, PT1H",
      "1hour, PT1H",
      "3hours, PT3H",
      "1d, PT24H",
      "2days, PT48H",
      "1.5s, PT1.5S",
      "0.25ms, PT0.00025S",
      "' 30S ', PT30S",
      "0, PT0S",
      "0s, PT0S",
      "PT1M30S, PT1M30S",
  })
  void parses(String text, String iso) {
    assertThat(Durations.parse(text)).isEqualTo(Duration.parse(iso));
  }

  @ParameterizedTest(name = "{0}: {1}")
  @CsvSource(delimiter = '|', value = {
      "''       | '' is empty: give a duration from 0s to 3650d, e.g. 30s",
      "30       | '30' has no unit (write 30s or 30ms)",
      "5 weeks  | '5 weeks' has an unknown unit 'weeks' (use ms, s, m or min, h, d)",
      "-5s      | '-5s' is negative: give a duration from 0s to 3650d",
      "soon     | 'soon' is not a duration: give a duration from 0s to 3650d, e.g. 30s",
      "1.5.2s   | '1.5.2s' is not a duration",
      "99999d   | '99999d' is too long: give a duration from 0s to 3650d",
      "99999999999999999999s | is too long",
      "PT2562047H | 'PT2562047H' is too long",
      "0.1ns    | unknown unit 'ns'",
      "PT-1S    | 'PT-1S' is negative",
      "Pxyz     | 'Pxyz' is not a duration",
  })
  void refusesWithAMessageThatShowsTheRightForm(String text, String message) {
    assertThatThrownBy(() -> Durations.parse(text))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(message);
  }

  @Test
  void refusesSubNanosecondPrecision() {
    assertThatThrownBy(() -> Durations.parse("0.0000001ms"))
        .hasMessageContaining("finer than a nanosecond");
  }

  /** {@code pause --for}: the server's pause bounds, checked before any call. */
  @ParameterizedTest(name = "pause --for {0}: {1}")
  @CsvSource(delimiter = '|', value = {
      "0s         | '0s' is 0: a pause of 0 does nothing: leave the duration out to pause until resumed",
      "0          | '0' is 0",
      "PT-5S      | 'PT-5S' is negative: give a duration from 1ms to 1d, e.g. 30s",
      "PT2562047H | 'PT2562047H' is too long: give a duration from 1ms to 1d",
      "2d         | '2d' is too long",
  })
  void pauseForRefusesWhatThePauseBoundsRefuse(String text, String message) {
    assertThatThrownBy(() -> new Durations.PauseConverter().convert(text))
        .isInstanceOf(TypeConversionException.class).hasMessageContaining(message);
  }

  @Test
  void converterRaisesPicocliTypeConversionException() {
    assertThatThrownBy(() -> new Durations.Converter().convert("10 parsecs"))
        .isInstanceOf(TypeConversionException.class)
        .hasMessageContaining("unknown unit 'parsecs'");
  }

  @ParameterizedTest(name = "{0} -> {1}")
  @CsvSource({
      "PT0S, 0s",
      "PT0.25S, 250ms",
      "PT0.0015S, 1.5ms",
      "PT1.5S, 1.5s",
      "PT30S, 30s",
      "PT90S, 90s",
      "PT5M, 5m",
      "PT90M, 90m",
      "PT2H, 2h",
      "PT24H, 1d",
      "PT-30S, -30s",
  })
  void formatsInTheLargestExactUnitAndRoundTrips(String iso, String text) {
    Duration d = Duration.parse(iso);
    assertThat(Durations.format(d)).isEqualTo(text);
    if (!d.isNegative()) {
      assertThat(Durations.parse(text)).isEqualTo(d);
    }
  }

  @Test
  void formatsTimeLeftRoundedUp() {
    // As a person writes it (HumanDurations), rounded up: time left is never shown shorter.
    assertThat(Durations.formatLeft(Durations.toProto(Duration.ofMillis(29_001)))).isEqualTo("30 s");
    assertThat(Durations.formatLeft(Durations.toProto(Duration.ofSeconds(60)))).isEqualTo("1m");
    assertThat(Durations.formatLeft(Durations.toProto(Duration.ofNanos(1_500_000)))).isEqualTo("2 ms");
  }
}
