package dev.sluice.examples.mock;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Projects registered with the mock, each with its own API key and limits (as OpenAI projects
 * are). With none registered every key is its own project on the shared limits; with some, only
 * their keys are accepted. Immutable once built; the limits themselves live in the {@link
 * RateLimiter} under the name {@code project:<name>}, so a control call can change them mid-run.
 */
final class Projects {

  /** A project as registered: its name, key and starting limits per minute. */
  record Project(String name, String key, long rpm, long tpm) {}

  private final Map<String, Project> byName;
  private final Map<String, Project> byKey;

  Projects(Map<String, Project> byName) {
    this.byName = Collections.unmodifiableMap(new LinkedHashMap<>(byName));
    Map<String, Project> keys = new LinkedHashMap<>();
    byName.values().forEach(p -> keys.put(p.key(), p));
    this.byKey = Collections.unmodifiableMap(keys);
  }

  boolean any() {
    return !byName.isEmpty();
  }

  /** The limiter's name of a registered project. */
  static String id(String name) {
    return "project:" + name;
  }

  Project byKey(String key) {
    return byKey.get(key);
  }

  Project byName(String name) {
    return byName.get(name);
  }

  Map<String, Project> all() {
    return byName;
  }
}
