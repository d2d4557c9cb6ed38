package dev.sluice.examples.mock;

import com.fasterxml.jackson.databind.JsonNode;
import dev.sluice.examples.TokenEstimator;
import java.util.Set;

/**
 * The parts of an Anthropic {@code POST /v1/messages} body the mock needs, validated the way
 * Anthropic validates them (its messages name the field: {@code max_tokens: Field required}).
 * Other fields (temperature, metadata, …) are accepted and ignored.
 *
 * @param inputTokens what the mock counts as the prompt: the {@code o200k_base} tokens of the
 *     system prompt, plus 3 of framing and the content's tokens per message (Anthropic's own
 *     tokenizer is not public; any fixed rule serves a mock whose {@code usage} states it)
 */
record MessagesRequest(String model, int maxTokens, boolean stream, int inputTokens) {

  private static final Set<String> ROLES = Set.of("user", "assistant");

  static MessagesRequest parse(JsonNode body) throws InvalidRequest {
    if (body == null || !body.isObject()) {
      throw invalid("body: Input should be a valid dictionary");
    }
    JsonNode model = body.get("model");
    if (model == null) {
      throw invalid("model: Field required");
    }
    if (!model.isTextual() || model.asText().isBlank()) {
      throw invalid("model: Input should be a valid string");
    }
    JsonNode maxTokens = body.get("max_tokens");
    if (maxTokens == null) {
      throw invalid("max_tokens: Field required");
    }
    if (!maxTokens.isIntegralNumber() || !maxTokens.canConvertToInt()) {
      throw invalid("max_tokens: Input should be a valid integer");
    }
    if (maxTokens.asInt() < 1) {
      throw invalid("max_tokens: Input should be greater than or equal to 1");
    }
    JsonNode stream = body.get("stream");
    if (stream != null && !stream.isNull() && !stream.isBoolean()) {
      throw invalid("stream: Input should be a valid boolean");
    }
    int tokens = TokenEstimator.tokens(text(body.get("system"), "system"));
    JsonNode messages = body.get("messages");
    if (messages == null) {
      throw invalid("messages: Field required");
    }
    if (!messages.isArray()) {
      throw invalid("messages: Input should be a valid list");
    }
    if (messages.isEmpty()) {
      throw invalid("messages: at least one message is required");
    }
    for (int i = 0; i < messages.size(); i++) {
      JsonNode m = messages.get(i);
      String where = "messages." + i;
      if (!m.isObject()) {
        throw invalid(where + ": Input should be a valid dictionary");
      }
      JsonNode role = m.get("role");
      if (role == null) {
        throw invalid(where + ".role: Field required");
      }
      if (!role.isTextual() || !ROLES.contains(role.asText())) {
        throw invalid(where + ".role: Input should be 'user' or 'assistant'");
      }
      JsonNode content = m.get("content");
      if (content == null) {
        throw invalid(where + ".content: Field required");
      }
      tokens += 3 + TokenEstimator.tokens(text(content, where + ".content"));
    }
    return new MessagesRequest(
        model.asText(), maxTokens.asInt(), stream != null && stream.asBoolean(), tokens);
  }

  /** A string, or the text of an array of {@code text} blocks (the only blocks the mock serves). */
  private static String text(JsonNode node, String where) throws InvalidRequest {
    if (node == null || node.isNull()) {
      return "";
    }
    if (node.isTextual()) {
      return node.asText();
    }
    if (!node.isArray()) {
      throw invalid(where + ": Input should be a valid string or a list of content blocks");
    }
    StringBuilder text = new StringBuilder();
    for (int j = 0; j < node.size(); j++) {
      JsonNode block = node.get(j);
      JsonNode type = block.isObject() ? block.get("type") : null;
      if (type == null || !type.isTextual()) {
        throw invalid(where + "." + j + ".type: Field required");
      }
      if (!type.asText().equals("text")) {
        throw invalid(
            where + "." + j + ".type: '" + type.asText() + "': the mock serves only 'text' blocks");
      }
      JsonNode blockText = block.get("text");
      if (blockText == null || !blockText.isTextual()) {
        throw invalid(where + "." + j + ".text: Field required");
      }
      text.append(blockText.asText());
    }
    return text.toString();
  }

  private static InvalidRequest invalid(String message) {
    return new InvalidRequest(message, null, null);
  }
}
