package dev.sluice.server.engine;

import java.util.Map;

/**
 * A hash in the shared store for data that is not the engine's own (the API keys): every node
 * reads and writes the same one. Calls wait for a round trip: not for a transport thread.
 */
public interface SharedHash {

  Map<String, String> all();

  void put(String field, String value);

  /** False if the field was not there. */
  boolean delete(String field);
}
