package dev.sluice.cli;

import dev.sluice.proto.v1.LearnSettings;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/** {@code limit set --learn}: the providers, their conservative starting limits, and how a learned limit reads. */
final class Learning {

  /**
   * Where a learning limit starts when no {@code --rate} is given: below any paid tier of the
   * provider, so the first calls cannot overshoot; the first report with limit headers replaces
   * it. Every dimension the provider's headers name is there (a dimension a call does not name
   * costs it nothing). Bursts follow the sub-window rule: half of one second's worth, at least 1.
   */
  static final Map<String, List<String>> STARTING = Map.of(
      "openai", List.of("requests=60/min:1", "tokens=10000/min:83"),
      "azure", List.of("requests=60/min:1", "tokens=10000/min:83"),
      "anthropic", List.of("requests=50/min:1", "tokens=24000/min:200",
          "input-tokens=20000/min:166", "output-tokens=4000/min:33"));

  private Learning() {}

  /** The starting rates of a provider; null if it is unknown. */
  static List<RateDimension> starting(String provider) {
    List<String> rates = STARTING.get(provider);
    return rates == null ? null : rates.stream().map(Rates::parse).toList();
  }

  /** The fix for an unknown provider. */
  static String unknown(String provider) {
    return "--learn " + provider + " is not a provider Sluice reads: use --learn openai, --learn azure"
        + " or --learn anthropic";
  }

  /** What {@code limit get} says about a learned limit. */
  static String describe(LearnSettings l) {
    if (l.getLearnedAtUnixMillis() == 0) {
      return "from " + l.getProvider() + ": no " + l.getProvider() + " limit headers reported yet;"
          + " the starting limit is in place";
    }
    return "learned from " + l.getProvider() + " at " + Instant.ofEpochMilli(l.getLearnedAtUnixMillis())
        + ", was " + l.getWas();
  }

  /** The ceilings, as {@code --learn-ceiling} takes them; "-" for none. */
  static String ceilings(Limit limit) {
    List<RateDimension> c = limit.getLearn().getCeilingsList();
    return c.isEmpty() ? "none" : c.stream().map(Rates::format).collect(Collectors.joining(" "));
  }
}
