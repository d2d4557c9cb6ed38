package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.proto.v1.RateDimension;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import picocli.CommandLine.TypeConversionException;

class RatesTest {

  private static final String FORM_AND_EXAMPLE =
      "; expected DIM=AMOUNT/PERIOD[:BURST], e.g. requests=500/min or tokens=200000/min:4000";

  @Test
  void parsesDimensionAmountPeriodAndBurst() {
    RateDimension r = Rates.parse("tokens=200000/min:4000");
    assertThat(r.getName()).isEqualTo("tokens");
    assertThat(r.getAmount()).isEqualTo(200_000);
    assertThat(period(r)).isEqualTo(Duration.ofMinutes(1));
    assertThat(r.getBurst()).isEqualTo(4000);
  }

  @Test
  void missingBurstIsSentAsZeroForTheServerDefault() {
    assertThat(Rates.parse("requests=500/min").getBurst()).isZero();
  }

  @ParameterizedTest(name = "{0} = {1}")
  @CsvSource({
      "s, PT1S", "sec, PT1S", "second, PT1S", "seconds, PT1S",
      "min, PT1M", "minute, PT1M", "minutes, PT1M", "m, PT1M",
      "h, PT1H", "hour, PT1H", "hours, PT1H",
      "d, PT24H", "day, PT24H", "days, PT24H",
      "ms, PT0.001S", "MIN, PT1M",
      "10s, PT10S", "5min, PT5M", "15m, PT15M", "12h, PT12H", "250ms, PT0.25S", "1.5s, PT1.5S",
  })
  void parsesEveryPeriodUnitWithOrWithoutANumber(String unit, String iso) {
    assertThat(period(Rates.parse("requests=10/" + unit))).isEqualTo(Duration.parse(iso));
  }

  @Test
  void acceptsUnderscoresInNumbersAndNamesWithDotsDashes() {
    RateDimension r = Rates.parse("gpt-4o.tokens=2_000_000/min:40_000");
    assertThat(r.getName()).isEqualTo("gpt-4o.tokens");
    assertThat(r.getAmount()).isEqualTo(2_000_000);
    assertThat(r.getBurst()).isEqualTo(40_000);
  }

  @ParameterizedTest(name = "{0}")
  @CsvSource(delimiter = '|', value = {
      "requests500/min      | bad rate 'requests500/min': missing '=' between the dimension and the amount",
      "=500/min             | bad rate '=500/min': missing dimension name before '='",
      "req uests=500/min    | bad rate 'req uests=500/min': dimension name 'req uests' must be 1-64 characters of [A-Za-z0-9._-]",
      "requests=500         | bad rate 'requests=500': missing '/PERIOD' after the amount",
      "requests=/min        | bad rate 'requests=/min': missing amount",
      "requests=lots/min    | bad rate 'requests=lots/min': amount 'lots' is not a whole number",
      "requests=1.5/min     | bad rate 'requests=1.5/min': amount '1.5' is not a whole number",
      "requests=0/min       | bad rate 'requests=0/min': amount must be at least 1, got 0",
      "requests=-5/min      | bad rate 'requests=-5/min': amount must be at least 1, got -5",
      "requests=99999999999999999999/min | amount '99999999999999999999' is too large",
      "requests=500/        | bad rate 'requests=500/': missing period after '/'",
      "requests=500/fortnight | bad rate 'requests=500/fortnight': unknown period 'fortnight'; use s, sec, second, min, minute, h, hour, d or day, optionally with a number in front (10s, 5min)",
      "requests=500/2d      | bad rate 'requests=500/2d': period '2d' must be between 1ms and 1d",
      "requests=500/0s      | bad rate 'requests=500/0s': period '0s' must be between 1ms and 1d",
      "requests=500/min:    | bad rate 'requests=500/min:': missing burst",
      "requests=500/min:big | bad rate 'requests=500/min:big': burst 'big' is not a whole number",
      "requests=500/min:0   | bad rate 'requests=500/min:0': burst must be at least 1, got 0 (leave out ':BURST' for the server default)",
      "requests=500/min:-1  | bad rate 'requests=500/min:-1': burst must be at least 1, got -1",
  })
  void refusesWithWhatIsWrongTheFormAndAnExample(String text, String problem) {
    assertThatThrownBy(() -> Rates.parse(text))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(problem)
        .hasMessageEndingWith(FORM_AND_EXAMPLE)
        .hasMessageNotContaining("\n");
  }

  @Test
  void converterRaisesPicocliTypeConversionException() {
    assertThatThrownBy(() -> new Rates.Converter().convert("x"))
        .isInstanceOf(TypeConversionException.class)
        .hasMessageContaining("missing '='");
  }

  @ParameterizedTest
  @CsvSource({
      "requests=500/min:10", "tokens=200000/min", "requests=1/s", "requests=60/h:10",
      "requests=1000/d", "requests=100/10s:5", "requests=5/250ms", "requests=7/5m",
  })
  void formatRoundTrips(String text) {
    assertThat(Rates.format(Rates.parse(text))).isEqualTo(text);
  }

  @ParameterizedTest
  @CsvSource({
      "usd=50/day, 50000000, 0", "usd=0.25/min:0.05, 250000, 50000", "usd=$10/d:1, 10000000, 1000000",
      "usd=0.000001/s, 1, 0", "usd=1_000/d, 1000000000, 0",
  })
  void usdIsTypedInDollarsAndSentInMicroDollars(String text, long amount, long burst) {
    RateDimension r = Rates.parse(text);
    assertThat(r.getAmount()).isEqualTo(amount);
    assertThat(r.getBurst()).isEqualTo(burst);
  }

  @ParameterizedTest
  @CsvSource({"usd=50/d", "usd=0.25/min:0.05", "usd=0.000001/s:1"})
  void usdFormatsInDollars(String text) {
    assertThat(Rates.format(Rates.parse(text))).isEqualTo(text);
  }

  @ParameterizedTest
  @CsvSource(delimiter = '|', value = {
      "usd=0.0000001/d | has more than six decimals",
      "usd=0/d | at least 0.000001",
      "usd=ten/d | 'ten' is not an amount of US dollars",
      "usd=-5/d | '-5' is not an amount of US dollars",
      "usd=1/d:0.0000001 | burst '0.0000001' has more than six decimals",
  })
  void badDollarAmountsAreRefused(String text, String problem) {
    assertThatThrownBy(() -> Rates.parse(text)).isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(problem);
  }

  @Test
  void otherDimensionsStayWholeNumbers() {
    assertThatThrownBy(() -> Rates.parse("tokens=0.5/s")).hasMessageContaining("not a whole number");
  }

  private static Duration period(RateDimension r) {
    return Duration.ofSeconds(r.getPeriod().getSeconds(), r.getPeriod().getNanos());
  }
}
