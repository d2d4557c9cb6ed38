package dev.sluice.server.auth;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * The resources a worker key may use: comma-separated globs where {@code *} matches any run of
 * characters ({@code openai:*}, {@code shop:42,shop:43}); {@code *} alone, or empty, is every
 * resource.
 */
public final class ResourcePattern {

  public static final ResourcePattern ALL = new ResourcePattern("*", null);

  private final String text;
  private final Pattern regex; // null: all

  private ResourcePattern(String text, Pattern regex) {
    this.text = text;
    this.regex = regex;
  }

  /**
   * @throws IllegalArgumentException if a glob is empty or has characters no resource name can
   *     have
   */
  public static ResourcePattern parse(String text) {
    String t = text == null ? "" : text.trim();
    if (t.isEmpty() || t.equals("*")) {
      return ALL;
    }
    if (t.length() > 1000) {
      throw new IllegalArgumentException("resource pattern is " + t.length() + " characters long: keep it"
          + " under 1000 (use globs such as openai:*)");
    }
    List<String> parts = new ArrayList<>();
    StringBuilder regex = new StringBuilder();
    for (String raw : t.split(",", -1)) {
      String glob = raw.trim();
      if (glob.isEmpty()) {
        throw new IllegalArgumentException("resource pattern '" + t + "' has an empty entry: separate globs"
            + " with single commas, e.g. openai:*,shop:42");
      }
      for (int i = 0; i < glob.length(); i++) {
        char c = glob.charAt(i);
        boolean ok = c == '*' || c == '.' || c == '_' || c == ':' || c == '/' || c == '-'
            || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!ok) {
          throw new IllegalArgumentException("resource pattern '" + glob + "' has '" + c + "': use resource"
              + " name characters [A-Za-z0-9._:/-] and * as a wildcard");
        }
      }
      if (glob.equals("*")) {
        return ALL;
      }
      parts.add(glob);
      if (regex.length() > 0) {
        regex.append('|');
      }
      for (String literal : glob.split("\\*", -1)) {
        regex.append(Pattern.quote(literal)).append(".*");
      }
      regex.setLength(regex.length() - 2); // the last literal has no * after it
    }
    return new ResourcePattern(String.join(",", parts), Pattern.compile(regex.toString()));
  }

  public boolean matches(String resource) {
    return regex == null || regex.matcher(resource).matches();
  }

  public boolean all() {
    return regex == null;
  }

  @Override
  public String toString() {
    return text;
  }
}
