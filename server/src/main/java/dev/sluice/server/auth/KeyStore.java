package dev.sluice.server.auth;

import java.io.IOException;
import java.util.List;
import java.util.Optional;

/** Where the coordinator keeps its API keys (hashed): the data directory, or the shared Redis. */
public interface KeyStore extends AutoCloseable {

  Optional<StoredKey> get(String id);

  List<StoredKey> all();

  boolean isEmpty();

  void add(StoredKey key) throws IOException;

  /** False if there was no such key. */
  boolean remove(String id) throws IOException;

  /** For logs: where the keys live. */
  String describe();

  @Override
  default void close() {}
}
