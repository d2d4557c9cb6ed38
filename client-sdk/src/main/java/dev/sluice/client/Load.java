package dev.sluice.client;

import java.util.Collections;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * What one call costs, per rate dimension, e.g. {@code Load.of("requests", 1, "tokens", 1200)}.
 *
 * <p>Immutable. A dimension the load does not name costs 0; when {@code requests} is not named
 * the coordinator charges 1 request. This class only checks what is wrong in any state (empty
 * names, negative amounts); whether a load fits the resource's limit is the coordinator's call.
 */
public final class Load {

  /** No dimension named: the coordinator applies its {@code requests = 1} default. */
  static final Load DEFAULT = new Load(new TreeMap<>());

  private static final String REQUESTS = "requests";

  // Sorted so that toString and the order sent on the wire are stable.
  private final Map<String, Long> amounts;

  private Load(TreeMap<String, Long> amounts) {
    this.amounts = Collections.unmodifiableMap(amounts);
  }

  /** What the coordinator reported it granted: taken as is, since checking it is the server's job. */
  static Load fromServer(Map<String, Long> amounts) {
    return new Load(new TreeMap<>(amounts));
  }

  /** A load of {@code n} on the {@code requests} dimension only. */
  public static Load requests(long n) {
    return of(REQUESTS, n);
  }

  /**
   * A call's tokens for a model, which the coordinator prices when the resource counts {@code usd}
   * (name the model with {@link AcquireOptions.Builder#model}): {@code input_tokens} and {@code
   * output_tokens}. To acquire, give the estimate (prompt tokens and {@code max_tokens}); to
   * settle, the response's usage. Add {@code cached_input_tokens} with {@link #of(Map)}.
   */
  public static Load tokens(long input, long output) {
    return of("input_tokens", input, "output_tokens", output);
  }

  /** A load on one dimension. */
  public static Load of(String dimension, long amount) {
    return build(new Object[] {dimension, amount});
  }

  /** A load on two distinct dimensions. */
  public static Load of(String d1, long a1, String d2, long a2) {
    return build(new Object[] {d1, a1, d2, a2});
  }

  /** A load on three distinct dimensions. */
  public static Load of(String d1, long a1, String d2, long a2, String d3, long a3) {
    return build(new Object[] {d1, a1, d2, a2, d3, a3});
  }

  /** A load with the given amount per dimension; the map is copied. */
  public static Load of(Map<String, Long> amounts) {
    Objects.requireNonNull(amounts, "amounts must not be null; use Load.requests(1) for a plain call");
    TreeMap<String, Long> copy = new TreeMap<>();
    amounts.forEach((dimension, amount) -> put(copy, dimension, amount));
    return new Load(copy);
  }

  /** The amount on {@code dimension}, 0 when this load does not name it. */
  public long get(String dimension) {
    Objects.requireNonNull(dimension, "dimension");
    return amounts.getOrDefault(dimension, 0L);
  }

  /** The named dimensions and their amounts: an unmodifiable map sorted by dimension name. */
  public Map<String, Long> asMap() {
    return amounts;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Load other && amounts.equals(other.amounts);
  }

  @Override
  public int hashCode() {
    return amounts.hashCode();
  }

  /** The amounts as a person writes them, e.g. {@code requests=1, tokens=1200} ({@code nothing} when empty). */
  @Override
  public String toString() {
    if (amounts.isEmpty()) {
      return "nothing";
    }
    StringBuilder b = new StringBuilder();
    amounts.forEach((k, v) -> b.append(b.length() == 0 ? "" : ", ").append(k).append('=').append(v));
    return b.toString();
  }

  private static Load build(Object[] pairs) {
    TreeMap<String, Long> map = new TreeMap<>();
    for (int i = 0; i < pairs.length; i += 2) {
      put(map, (String) pairs[i], (Long) pairs[i + 1]);
    }
    return new Load(map);
  }

  private static void put(TreeMap<String, Long> map, String dimension, Long amount) {
    if (dimension == null || dimension.isBlank()) {
      throw new IllegalArgumentException(
          "load dimension name is empty; name the dimension as in the limit, e.g. \"requests\" or \"tokens\"");
    }
    if (amount == null) {
      throw new IllegalArgumentException(
          "load amount for dimension '" + dimension + "' is null; give a number >= 0 or leave the dimension out");
    }
    if (amount < 0) {
      throw new IllegalArgumentException(
          "load amount for dimension '" + dimension + "' is " + amount
              + "; amounts must be >= 0 (to give back over-estimated usage, use Permit.settle)");
    }
    if (map.putIfAbsent(dimension, amount) != null) {
      throw new IllegalArgumentException(
          "load names dimension '" + dimension + "' twice; name each dimension once with the total amount");
    }
  }
}
