package dev.sluice.server.price;

import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.Validation;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.regex.Pattern;

/**
 * What one model's tokens cost, in US dollars per million tokens. A dollar per million tokens is
 * a micro-dollar per token, so a call's cost in micro-dollars (the unit of the {@code usd}
 * dimension) is {@code tokens × price}, summed and rounded up: exact, in {@link BigDecimal}.
 *
 * @param model the model's name, e.g. {@code gpt-4o-mini}
 * @param input per million input tokens, &gt;= 0
 * @param output per million output tokens, &gt;= 0
 * @param cachedInput per million cached input tokens, &gt;= 0
 */
public record Price(String model, BigDecimal input, BigDecimal output, BigDecimal cachedInput) {

  /** The highest price accepted: a dollar a token, far above any model's. */
  static final BigDecimal MAX = BigDecimal.valueOf(1_000_000);

  private static final Pattern MODEL = Pattern.compile("[A-Za-z0-9._:/@+-]{1,200}");
  private static final Pattern AMOUNT = Pattern.compile("\\$?(\\d+(\\.\\d{1,9})?|\\.\\d{1,9})(/1?M)?");
  static final String FORM = "DOLLARS/M, e.g. 0.15/M (US dollars per million tokens)";

  public Price {
    model = model(model);
    input = checked(input, "input");
    output = checked(output, "output");
    cachedInput = checked(cachedInput, "cached input");
  }

  /**
   * A price from its text: {@code 0.15/M}, {@code 0.15} or {@code $0.15/M}, dollars per million
   * tokens. An empty {@code cachedInput} means the input price (a cached token is never charged
   * less than the table says).
   */
  public static Price parse(String model, String input, String output, String cachedInput) {
    BigDecimal in = amount(model, input, "input");
    return new Price(model, in, amount(model, output, "output"),
        cachedInput == null || cachedInput.isEmpty() ? in : amount(model, cachedInput, "cached input"));
  }

  /** Checks a model name; answers it. */
  public static String model(String model) {
    if (model == null || !MODEL.matcher(model).matches()) {
      throw invalid("model name '" + Validation.shown(model == null ? "" : model, 200) + "' must be 1-200"
          + " characters of [A-Za-z0-9._:/@+-], such as gpt-4o-mini");
    }
    return model;
  }

  private static BigDecimal amount(String model, String text, String what) {
    String t = text == null ? "" : text.trim();
    if (t.isEmpty()) {
      throw invalid("the " + what + " price of model '" + model + "' is missing: give it as " + FORM);
    }
    if (t.startsWith("-")) {
      throw invalid("the " + what + " price of model '" + model + "' is negative (" + t + "): prices are 0 or"
          + " more, as " + FORM);
    }
    if (!AMOUNT.matcher(t).matches()) {
      throw invalid("the " + what + " price of model '" + model + "' is '" + Validation.shown(t, 40)
          + "', not a price: give " + FORM + ", with at most 9 decimals");
    }
    String digits = t.replace("$", "");
    int slash = digits.indexOf('/');
    return new BigDecimal(slash < 0 ? digits : digits.substring(0, slash));
  }

  private static BigDecimal checked(BigDecimal v, String what) {
    if (v == null || v.signum() < 0 || v.compareTo(MAX) > 0) {
      throw invalid("the " + what + " price " + (v == null ? "is missing" : v.toPlainString() + " is out of range")
          + ": give 0 to " + MAX.toPlainString() + " US dollars per million tokens");
    }
    return v.stripTrailingZeros();
  }

  /**
   * The cost of a call's tokens in micro-dollars, rounded up.
   *
   * @throws EngineException INVALID if it does not fit a load value
   */
  public long microDollars(long inputTokens, long outputTokens, long cachedInputTokens) {
    BigDecimal cost = input.multiply(BigDecimal.valueOf(inputTokens))
        .add(output.multiply(BigDecimal.valueOf(outputTokens)))
        .add(cachedInput.multiply(BigDecimal.valueOf(cachedInputTokens)))
        .setScale(0, RoundingMode.CEILING);
    if (cost.compareTo(BigDecimal.valueOf(Validation.MAX_UNITS)) > 0) {
      throw invalid("the tokens of this call cost " + cost.movePointLeft(6).toPlainString() + " USD at the prices of"
          + " model '" + model + "', more than any load can hold: split the call");
    }
    return cost.longValueExact();
  }

  /** A price as text: {@code 0.15}. */
  public static String text(BigDecimal v) {
    return v.toPlainString();
  }

  private static EngineException invalid(String message) {
    return new EngineException(EngineException.Reason.INVALID, message);
  }
}
