package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class LoadValidationTest {

  /**
   * Ten dimensions at the largest accepted burst, each loaded to it: every value is legal, but
   * their sum overflowed a long and the load was refused as "zero".
   */
  @Test
  void aLoadOfManyHugeValuesIsNotMistakenForZero() {
    List<RateSpec> rates = new ArrayList<>();
    Map<String, Long> load = new LinkedHashMap<>();
    load.put("requests", 1L);
    for (int i = 0; i < 10; i++) {
      rates.add(new RateSpec("d" + i, Validation.MAX_UNITS, Duration.ofDays(1), Validation.MAX_UNITS));
      load.put("d" + i, Validation.MAX_UNITS);
    }
    LimitSpec limit = new LimitSpec("big", rates, 0, 10, Duration.ofSeconds(30));
    assertThat(Validation.load(limit, load)).containsAllEntriesOf(Map.of("d0", Validation.MAX_UNITS, "d9", Validation.MAX_UNITS));
  }
}
