package dev.sluice.server.price;

import dev.sluice.server.engine.Engine;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LaterTicket;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.Ticket;
import dev.sluice.server.engine.Validation;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.function.Function;

/**
 * Prices calls in money, in front of the engine, the same for the gRPC and the HTTP port: when a
 * resource's limit has a {@code usd} dimension and a load gives token counts ({@code
 * input_tokens}, {@code output_tokens}, {@code cached_input_tokens}) for a named model, the load
 * charged is {@code usd} in micro-dollars from the {@link Prices} table; a settle prices its
 * actual token counts the same way. The token counts are then dropped from the load unless the
 * limit counts them itself, so the engine never sees a dimension it does not limit.
 *
 * <p>A call that names no model and no token counts goes to the engine untouched, without a
 * look at the limit.
 */
public final class Costs {

  /** The one cost dimension: micro-dollars (US). */
  public static final String USD = "usd";
  public static final String INPUT = "input_tokens";
  public static final String OUTPUT = "output_tokens";
  public static final String CACHED_INPUT = "cached_input_tokens";
  static final List<String> TOKENS = List.of(INPUT, OUTPUT, CACHED_INPUT);

  private final Engine engine;
  private final Prices prices;

  /** @param prices the price table, or null for none (every model unpriced) */
  public Costs(Engine engine, Prices prices) {
    this.engine = engine;
    this.prices = prices;
  }

  /**
   * Starts an acquire of {@code load} for {@code model} (empty or null: none): {@code start}
   * receives the load to charge and starts the engine's acquire. Never throws: a refusal fails
   * the ticket's future, as the engine's own do.
   */
  public Ticket acquire(String resource, Map<String, Long> load, String model, Function<Map<String, Long>, Ticket> start) {
    if (!priced(load, model)) {
      return start.apply(load);
    }
    CompletableFuture<Optional<LimitSpec>> limit = engine.getLimit(resource);
    if (limit.isDone() && !limit.isCompletedExceptionally()) {
      Map<String, Long> charged;
      try {
        charged = charge(limit.join(), resource, load, model, "load");
      } catch (EngineException e) {
        return LaterTicket.failed(e);
      }
      return start.apply(charged);
    }
    LaterTicket later = new LaterTicket();
    limit.whenComplete((spec, error) -> {
      if (error != null) {
        later.fail(error);
        return;
      }
      Map<String, Long> charged;
      try {
        charged = charge(spec, resource, load, model, "load");
      } catch (EngineException e) {
        later.fail(e);
        return;
      }
      later.start(start.apply(charged));
    });
    return later;
  }

  /**
   * What a settle of {@code actual} for {@code model} applies: its token counts priced, as on
   * acquire. Completes at once when nothing is priced.
   */
  public CompletableFuture<Map<String, Long>> actual(String resource, Map<String, Long> actual, String model) {
    if (!priced(actual, model)) {
      return CompletableFuture.completedFuture(actual);
    }
    return engine.getLimit(resource).thenApply(spec -> charge(spec, resource, actual, model, "settle"));
  }

  /** Whether a call needs the limit and the price table: it names a model or a token count. */
  private static boolean priced(Map<String, Long> load, String model) {
    if (model != null && !model.isEmpty()) {
      return true;
    }
    for (String t : TOKENS) {
      if (load.containsKey(t)) {
        return true;
      }
    }
    return false;
  }

  /** The load to hand the engine; the limit's own checks come after, in the engine. */
  private Map<String, Long> charge(Optional<LimitSpec> limit, String resource, Map<String, Long> load, String model,
      String what) {
    if (limit.isEmpty()) {
      return load; // the engine answers NOT_FOUND
    }
    LimitSpec spec = limit.get();
    boolean named = model != null && !model.isEmpty();
    if (named) {
      Price.model(model);
    }
    boolean tokens = TOKENS.stream().anyMatch(load::containsKey);
    boolean needsUsd = spec.rate(USD) != null && !load.containsKey(USD) && tokens;
    if (!named) {
      if (needsUsd) {
        throw invalid(what + " for '" + resource + "' gives token counts (" + given(load) + ") but no model, and the"
            + " resource counts usd: name the model (AcquireOptions.model, \"model\" over HTTP) so the coordinator"
            + " can price them, or give usd in the " + what + " itself");
      }
      return load; // no model, no usd: the engine judges the token dimensions as any other
    }
    Map<String, Long> out = new LinkedHashMap<>(load);
    if (needsUsd) {
      Optional<Price> known = prices == null ? Optional.empty() : prices.get(model);
      Price price = known.orElseThrow(() -> invalid("model '" + model + "' has no price, and resource '"
          + resource + "' counts usd: an admin sets one with `sluice price set " + model
          + " --input 0.15/M --output 0.60/M` (US dollars per million tokens), or the call gives usd in its "
          + what + " itself"));
      out.put(USD, price.microDollars(tokens(load, INPUT, what), tokens(load, OUTPUT, what),
          tokens(load, CACHED_INPUT, what)));
    }
    for (String t : TOKENS) {
      if (spec.rate(t) == null) {
        out.remove(t); // priced, not limited
      }
    }
    return out;
  }

  private static long tokens(Map<String, Long> load, String dim, String what) {
    long v = load.getOrDefault(dim, 0L);
    if (v < 0 || v > Validation.MAX_UNITS) {
      throw invalid(what + " " + dim + "=" + v + " is out of range: use 0 to " + Validation.MAX_UNITS);
    }
    return v;
  }

  private static String given(Map<String, Long> load) {
    return String.join(", ", TOKENS.stream().filter(load::containsKey).toList());
  }

  private static EngineException invalid(String message) {
    return new EngineException(EngineException.Reason.INVALID, message);
  }
}
