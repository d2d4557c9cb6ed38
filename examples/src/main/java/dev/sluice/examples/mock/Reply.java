package dev.sluice.examples.mock;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * A generated answer to one admitted chat completion: for each of the n choices a seeded-random
 * length in [1, max_tokens] and that many tokens of text, rendered as OpenAI's {@code
 * chat.completion} object or as its {@code chat.completion.chunk} stream. Every word of the
 * vocabulary is one {@code o200k_base} token alone and after a space, so the text really is as many
 * tokens as {@code usage.completion_tokens} says.
 */
final class Reply {

  static final List<String> WORDS =
      List.of(
          "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "on",
          "be", "at", "by", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they",
          "which", "one", "you", "were", "all", "we", "her", "she", "there", "would", "their",
          "will", "when", "who", "him", "been", "has", "more", "if", "no", "out", "so", "said",
          "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new",
          "some", "could", "time", "these");

  private static final String ID_ALPHABET =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

  final String id;
  final String model;
  final long created;
  final int promptTokens;
  final int maxTokens;

  /** Per choice, the pieces of text, one token each. */
  final List<List<String>> choices;

  Reply(ChatRequest request, int promptTokens, long created, SplittableRandom random) {
    StringBuilder id = new StringBuilder("chatcmpl-");
    for (int i = 0; i < 29; i++) {
      id.append(ID_ALPHABET.charAt(random.nextInt(ID_ALPHABET.length())));
    }
    this.id = id.toString();
    this.model = request.model();
    this.created = created;
    this.promptTokens = promptTokens;
    this.maxTokens = request.maxTokens();
    this.choices = new ArrayList<>(request.n());
    for (int c = 0; c < request.n(); c++) {
      int length = 1 + random.nextInt(request.maxTokens());
      List<String> pieces = new ArrayList<>(length);
      for (int i = 0; i < length; i++) {
        String word = WORDS.get(random.nextInt(WORDS.size()));
        pieces.add(i == 0 ? word : " " + word);
      }
      choices.add(pieces);
    }
  }

  int completionTokens() {
    return choices.stream().mapToInt(List::size).sum();
  }

  int totalTokens() {
    return promptTokens + completionTokens();
  }

  private String finishReason(int choice) {
    return choices.get(choice).size() == maxTokens ? "length" : "stop";
  }

  ObjectNode completion(ObjectMapper json) {
    ObjectNode root = header(json, "chat.completion");
    ArrayNode array = root.putArray("choices");
    for (int c = 0; c < choices.size(); c++) {
      ObjectNode choice = array.addObject();
      choice.put("index", c);
      ObjectNode message = choice.putObject("message");
      message.put("role", "assistant");
      message.put("content", String.join("", choices.get(c)));
      message.putNull("refusal");
      message.putArray("annotations");
      choice.putNull("logprobs");
      choice.put("finish_reason", finishReason(c));
    }
    root.set("usage", usage(json));
    root.put("service_tier", "default");
    root.put("system_fingerprint", "fp_mock");
    return root;
  }

  /** The stream's events, each a JSON object, without the closing {@code [DONE]}. */
  List<ObjectNode> chunks(ObjectMapper json, boolean includeUsage) {
    List<ObjectNode> out = new ArrayList<>();
    for (int c = 0; c < choices.size(); c++) {
      ObjectNode delta = json.createObjectNode().put("role", "assistant").put("content", "");
      delta.putNull("refusal");
      out.add(chunk(json, c, delta, null, includeUsage));
      for (String piece : choices.get(c)) {
        out.add(chunk(json, c, json.createObjectNode().put("content", piece), null, includeUsage));
      }
      out.add(chunk(json, c, json.createObjectNode(), finishReason(c), includeUsage));
    }
    if (includeUsage) {
      ObjectNode last = header(json, "chat.completion.chunk");
      last.put("service_tier", "default");
      last.put("system_fingerprint", "fp_mock");
      last.putArray("choices");
      last.set("usage", usage(json));
      out.add(last);
    }
    return out;
  }

  private ObjectNode chunk(
      ObjectMapper json, int index, ObjectNode delta, String finishReason, boolean usageField) {
    ObjectNode chunk = header(json, "chat.completion.chunk");
    chunk.put("service_tier", "default");
    chunk.put("system_fingerprint", "fp_mock");
    ObjectNode choice = chunk.putArray("choices").addObject();
    choice.put("index", index);
    choice.set("delta", delta);
    choice.putNull("logprobs");
    if (finishReason == null) {
      choice.putNull("finish_reason");
    } else {
      choice.put("finish_reason", finishReason);
    }
    if (usageField) {
      chunk.putNull("usage");
    }
    return chunk;
  }

  private ObjectNode header(ObjectMapper json, String object) {
    ObjectNode root = json.createObjectNode();
    root.put("id", id);
    root.put("object", object);
    root.put("created", created);
    root.put("model", model);
    return root;
  }

  private ObjectNode usage(ObjectMapper json) {
    ObjectNode usage = json.createObjectNode();
    usage.put("prompt_tokens", promptTokens);
    usage.put("completion_tokens", completionTokens());
    usage.put("total_tokens", totalTokens());
    usage.putObject("prompt_tokens_details").put("cached_tokens", 0).put("audio_tokens", 0);
    usage
        .putObject("completion_tokens_details")
        .put("reasoning_tokens", 0)
        .put("audio_tokens", 0)
        .put("accepted_prediction_tokens", 0)
        .put("rejected_prediction_tokens", 0);
    return usage;
  }
}
