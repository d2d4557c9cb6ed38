package dev.sluice.examples;

import com.knuddels.jtokkit.Encodings;
import com.knuddels.jtokkit.api.Encoding;
import com.knuddels.jtokkit.api.EncodingType;
import java.util.List;

/**
 * Counts chat prompt tokens the way OpenAI's cookbook does for current chat models: the
 * {@code o200k_base} tokens of every message's role and content, 3 tokens of framing per
 * message, and 3 priming the reply. Used by the worker to estimate before it acquires and by
 * the mock to charge at admission, so both sides count alike.
 */
public final class TokenEstimator {

  private static final Encoding ENCODING =
      Encodings.newDefaultEncodingRegistry().getEncoding(EncodingType.O200K_BASE);

  private TokenEstimator() {}

  /** One chat message. */
  public record Message(String role, String content) {}

  /** Prompt tokens of a chat request. */
  public static int promptTokens(List<Message> messages) {
    int total = 3;
    for (Message m : messages) {
      total += 3 + ENCODING.countTokensOrdinary(m.role()) + ENCODING.countTokensOrdinary(m.content());
    }
    return total;
  }

  /** Tokens of a piece of text. */
  public static int tokens(String text) {
    return ENCODING.countTokensOrdinary(text);
  }

  /**
   * What OpenAI charges against TPM when it admits a request: prompt tokens plus n times the
   * completion budget. The unused part of the budget is not refunded.
   */
  public static long admissionCharge(List<Message> messages, int n, int maxTokens) {
    return promptTokens(messages) + (long) n * maxTokens;
  }
}
