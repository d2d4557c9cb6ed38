package dev.sluice.server.auth;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/** Where the coordinator keeps its API keys (hashed): the data directory, or the shared Redis. */
public interface KeyStore extends AutoCloseable {

  /** The keys by id as this node knows them now (read on every call: no I/O). */
  Map<String, StoredKey> byId();

  default Optional<StoredKey> get(String id) {
    return Optional.ofNullable(byId().get(id));
  }

  /** Oldest first. */
  default List<StoredKey> all() {
    List<StoredKey> out = new ArrayList<>(byId().values());
    out.sort(Comparator.comparingLong(StoredKey::createdUnixMs).thenComparing(StoredKey::id));
    return out;
  }

  default boolean isEmpty() {
    return byId().isEmpty();
  }

  void add(StoredKey key) throws IOException;

  /** False if there was no such key. */
  boolean remove(String id) throws IOException;

  /** For logs: where the keys live. */
  String describe();

  @Override
  default void close() {}
}
