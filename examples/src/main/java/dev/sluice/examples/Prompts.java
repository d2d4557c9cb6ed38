package dev.sluice.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Loads prompts from JSONL ({@code {"id": …, "prompt": …}} per line) or CSV ({@code id,prompt}). */
final class Prompts {

  record Prompt(String id, String text) {}

  private Prompts() {}

  static List<Prompt> load(Path file) throws IOException {
    List<String> lines = Files.readAllLines(file);
    List<Prompt> out = new ArrayList<>();
    boolean csv = file.getFileName().toString().toLowerCase().endsWith(".csv");
    ObjectMapper json = new ObjectMapper();
    for (int i = 0; i < lines.size(); i++) {
      String line = lines.get(i).strip();
      if (line.isEmpty() || (csv && i == 0 && line.toLowerCase().startsWith("id,"))) {
        continue;
      }
      if (csv) {
        int comma = line.indexOf(',');
        if (comma < 0) {
          throw new IOException(file + " line " + (i + 1) + ": expected id,prompt");
        }
        String text = line.substring(comma + 1).strip();
        if (text.startsWith("\"") && text.endsWith("\"") && text.length() >= 2) {
          text = text.substring(1, text.length() - 1).replace("\"\"", "\"");
        }
        out.add(new Prompt(line.substring(0, comma).strip(), text));
      } else {
        JsonNode node;
        try {
          node = json.readTree(line);
        } catch (IOException e) {
          throw new IOException(file + " line " + (i + 1) + " is not JSON: " + e.getMessage(), e);
        }
        JsonNode prompt = node.get("prompt");
        if (prompt == null || !prompt.isTextual()) {
          throw new IOException(file + " line " + (i + 1) + " has no \"prompt\" string");
        }
        String id = node.hasNonNull("id") ? node.get("id").asText() : "line-" + (i + 1);
        out.add(new Prompt(id, prompt.asText()));
      }
    }
    if (out.isEmpty()) {
      throw new IOException(file + " holds no prompts");
    }
    return out;
  }
}
