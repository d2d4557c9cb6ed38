package dev.sluice.examples.mock;

import com.fasterxml.jackson.databind.JsonNode;
import dev.sluice.examples.TokenEstimator;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The parts of a {@code POST /v1/chat/completions} body the mock needs, validated the way OpenAI
 * validates them. Other fields (temperature, tools, …) are accepted and ignored. {@code endUser}
 * is the request's {@code safety_identifier}, else its older {@code user}, else null: the stats
 * count calls per end user with it.
 */
record ChatRequest(
    String model,
    List<TokenEstimator.Message> messages,
    int maxTokens,
    int n,
    boolean stream,
    boolean includeUsage,
    String endUser) {

  /** Used when neither {@code max_tokens} nor {@code max_completion_tokens} is given. */
  static final int DEFAULT_MAX_TOKENS = 256;

  private static final int MAX_N = 128;
  private static final int MAX_SAFETY_IDENTIFIER = 64;
  private static final Set<String> ROLES =
      Set.of("system", "developer", "user", "assistant", "tool", "function");

  /** What OpenAI charges at admission: prompt tokens plus n × the completion budget. */
  long charge() {
    return TokenEstimator.admissionCharge(messages, n, maxTokens);
  }

  static ChatRequest parse(JsonNode body) throws InvalidRequest {
    if (body == null || !body.isObject()) {
      throw new InvalidRequest(
          "Invalid type for request body: expected an object.", null, "invalid_type");
    }
    JsonNode model = present(body, "model");
    if (model == null) {
      throw missing("model");
    }
    if (!model.isTextual() || model.asText().isBlank()) {
      throw invalidType("model", "a string", model);
    }
    List<TokenEstimator.Message> messages = messages(body);
    Integer maxCompletionTokens = positiveInt(body, "max_completion_tokens", Integer.MAX_VALUE);
    Integer maxTokens = positiveInt(body, "max_tokens", Integer.MAX_VALUE);
    int budget =
        maxCompletionTokens != null
            ? maxCompletionTokens
            : maxTokens != null ? maxTokens : DEFAULT_MAX_TOKENS;
    Integer n = positiveInt(body, "n", MAX_N);
    boolean stream = bool(body, "stream", body);
    boolean includeUsage = false;
    JsonNode options = present(body, "stream_options");
    if (options != null) {
      if (!stream) {
        throw new InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
            "invalid_value");
      }
      if (!options.isObject()) {
        throw invalidType("stream_options", "an object", options);
      }
      includeUsage = bool(options, "include_usage", body);
    }
    String safetyIdentifier = string(body, "safety_identifier", MAX_SAFETY_IDENTIFIER);
    String user = string(body, "user", Integer.MAX_VALUE);
    return new ChatRequest(
        model.asText(), messages, budget, n == null ? 1 : n, stream, includeUsage,
        safetyIdentifier != null ? safetyIdentifier : user);
  }

  /** An optional string field, or null; OpenAI refuses another type and, where it has one, a longer value. */
  private static String string(JsonNode body, String field, int maxLength) throws InvalidRequest {
    JsonNode node = present(body, field);
    if (node == null) {
      return null;
    }
    if (!node.isTextual()) {
      throw invalidType(field, "a string", node);
    }
    String value = node.asText();
    if (value.length() > maxLength) {
      throw new InvalidRequest(
          "Invalid '" + field + "': string too long. Expected a string with maximum length "
              + maxLength + ", but got a string with length " + value.length() + " instead.",
          field,
          "string_above_max_length");
    }
    return value;
  }

  private static List<TokenEstimator.Message> messages(JsonNode body) throws InvalidRequest {
    JsonNode array = present(body, "messages");
    if (array == null) {
      throw missing("messages");
    }
    if (!array.isArray()) {
      throw invalidType("messages", "an array", array);
    }
    if (array.isEmpty()) {
      throw new InvalidRequest(
          "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an"
              + " empty array instead.",
          "messages",
          "empty_array");
    }
    List<TokenEstimator.Message> out = new ArrayList<>(array.size());
    for (int i = 0; i < array.size(); i++) {
      String param = "messages[" + i + "]";
      JsonNode message = array.get(i);
      if (!message.isObject()) {
        throw invalidType(param, "an object", message);
      }
      JsonNode role = present(message, "role");
      if (role == null) {
        throw missing(param + ".role");
      }
      if (!role.isTextual() || !ROLES.contains(role.asText())) {
        throw new InvalidRequest(
            "Invalid value: '"
                + role.asText()
                + "'. Supported values are: 'system', 'assistant',"
                + " 'user', 'function', 'tool', and 'developer'.",
            param + ".role",
            "invalid_value");
      }
      out.add(new TokenEstimator.Message(role.asText(), content(message, param, role.asText())));
    }
    return out;
  }

  private static String content(JsonNode message, String param, String role) throws InvalidRequest {
    JsonNode content = present(message, "content");
    if (content == null) {
      if (role.equals("assistant")) {
        return ""; // an assistant turn that only called tools
      }
      throw missing(param + ".content");
    }
    if (content.isTextual()) {
      return content.asText();
    }
    if (!content.isArray()) {
      throw invalidType(param + ".content", "one of a string or array of objects", content);
    }
    StringBuilder text = new StringBuilder();
    for (int j = 0; j < content.size(); j++) {
      String partParam = param + ".content[" + j + "]";
      JsonNode part = content.get(j);
      JsonNode type = part.isObject() ? part.get("type") : null;
      if (type == null || !type.isTextual()) {
        throw missing(partParam + ".type");
      }
      if (!type.asText().equals("text")) {
        throw new InvalidRequest(
            "Invalid value: '" + type.asText() + "'. The mock supports only 'text' parts.",
            partParam + ".type",
            "invalid_value");
      }
      JsonNode partText = part.get("text");
      if (partText == null || !partText.isTextual()) {
        throw missing(partParam + ".text");
      }
      text.append(partText.asText());
    }
    return text.toString();
  }

  /** The field, or null when absent or JSON null (OpenAI treats null as absent). */
  private static JsonNode present(JsonNode object, String field) {
    JsonNode node = object.get(field);
    return node == null || node.isNull() ? null : node;
  }

  private static Integer positiveInt(JsonNode body, String field, int max) throws InvalidRequest {
    JsonNode node = present(body, field);
    if (node == null) {
      return null;
    }
    if (!node.isIntegralNumber() || !node.canConvertToInt()) {
      throw invalidType(field, "an integer", node);
    }
    int value = node.asInt();
    if (value < 1) {
      throw new InvalidRequest(
          "Invalid '"
              + field
              + "': integer below minimum value. Expected a value >= 1, but got "
              + value
              + " instead.",
          field,
          "integer_below_min_value");
    }
    if (value > max) {
      throw new InvalidRequest(
          "Invalid '"
              + field
              + "': integer above maximum value. Expected a value <= "
              + max
              + ", but got "
              + value
              + " instead.",
          field,
          "integer_above_max_value");
    }
    return value;
  }

  private static boolean bool(JsonNode object, String field, JsonNode body) throws InvalidRequest {
    JsonNode node = present(object, field);
    if (node == null) {
      return false;
    }
    if (!node.isBoolean()) {
      throw invalidType(object == body ? field : "stream_options." + field, "a boolean", node);
    }
    return node.asBoolean();
  }

  private static InvalidRequest missing(String param) {
    return new InvalidRequest(
        "Missing required parameter: '" + param + "'.", param, "missing_required_parameter");
  }

  private static InvalidRequest invalidType(String param, String expected, JsonNode got) {
    return new InvalidRequest(
        "Invalid type for '"
            + param
            + "': expected "
            + expected
            + ", but got "
            + jsonType(got)
            + " instead.",
        param,
        "invalid_type");
  }

  private static String jsonType(JsonNode node) {
    return switch (node.getNodeType()) {
      case STRING -> "a string";
      case NUMBER -> node.isIntegralNumber() ? "an integer" : "a decimal";
      case BOOLEAN -> "a boolean";
      case ARRAY -> "an array";
      case OBJECT -> "an object";
      default -> "null";
    };
  }
}
