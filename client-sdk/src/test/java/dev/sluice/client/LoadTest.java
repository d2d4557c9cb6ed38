package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class LoadTest {

  @Test
  void factoriesNameEachDimension() {
    assertThat(Load.requests(3).asMap()).containsExactly(Map.entry("requests", 3L));
    assertThat(Load.of("tokens", 1200).asMap()).containsExactly(Map.entry("tokens", 1200L));
    assertThat(Load.of("requests", 1, "tokens", 1200).asMap())
        .containsExactly(Map.entry("requests", 1L), Map.entry("tokens", 1200L));
    assertThat(Load.of("c", 3, "a", 1, "b", 2).asMap())
        .containsExactly(Map.entry("a", 1L), Map.entry("b", 2L), Map.entry("c", 3L));
    assertThat(Load.of(Map.of("tokens", 5L)).get("tokens")).isEqualTo(5);
  }

  @Test
  void unnamedDimensionCostsZero() {
    assertThat(Load.of("tokens", 10).get("requests")).isZero();
  }

  @Test
  void zeroIsAllowed() {
    assertThat(Load.of("tokens", 0).get("tokens")).isZero();
  }

  @Test
  void valueSemantics() {
    Load a = Load.of("requests", 1, "tokens", 2);
    Load b = Load.of(Map.of("tokens", 2L, "requests", 1L));
    assertThat(a).isEqualTo(b).hasSameHashCodeAs(b).isNotEqualTo(Load.of("requests", 1));
    assertThat(a).hasToString("requests=1, tokens=2");
    assertThat(Load.of(Map.of())).hasToString("nothing");
  }

  @Test
  void isImmutable() {
    Map<String, Long> source = new HashMap<>(Map.of("tokens", 1L));
    Load load = Load.of(source);
    source.put("tokens", 99L);
    assertThat(load.get("tokens")).isEqualTo(1);
    assertThatThrownBy(() -> load.asMap().put("x", 1L)).isInstanceOf(UnsupportedOperationException.class);
  }

  @Test
  void negativeAmountIsRefusedWithTheFix() {
    assertThatThrownBy(() -> Load.of("tokens", -5))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("'tokens'")
        .hasMessageContaining("-5")
        .hasMessageContaining(">= 0");
    assertThatThrownBy(() -> Load.requests(-1)).isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> Load.of(Map.of("tokens", -1L))).isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void emptyDimensionNameIsRefused() {
    assertThatThrownBy(() -> Load.of("", 1))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("dimension name is empty");
    assertThatThrownBy(() -> Load.of("requests", 1, " ", 2)).isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void sameDimensionTwiceIsRefused() {
    assertThatThrownBy(() -> Load.of("tokens", 1, "tokens", 2))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("twice");
  }

  @Test
  void nullAmountInMapIsRefused() {
    Map<String, Long> withNull = new HashMap<>();
    withNull.put("tokens", null);
    assertThatThrownBy(() -> Load.of(withNull))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("null");
  }
}
