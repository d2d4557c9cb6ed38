package dev.sluice.server.auth;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.server.engine.SharedHash;
import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keys in the shared Redis ({@code sluice:keys}, one JSON field per key id), so every node knows
 * every key. Each node checks calls against a local copy, refreshed by {@link #refresh()} (the
 * server calls it every second) and at once after its own changes: a key created or revoked on one
 * node takes effect on the others within about a second. While Redis is away the last copy stays
 * in force.
 */
public final class RedisKeyStore implements KeyStore {

  private static final Logger log = LoggerFactory.getLogger(RedisKeyStore.class);

  private final SharedHash hash;
  private final String where;
  private final ObjectMapper json = new ObjectMapper();
  private volatile Map<String, StoredKey> keys = Map.of();
  private volatile boolean warned;

  /** Loads the keys once. @throws IOException if Redis cannot be read or holds a bad key */
  public RedisKeyStore(SharedHash hash, String where) throws IOException {
    this.hash = hash;
    this.where = where;
    try {
      keys = load();
    } catch (RuntimeException e) {
      throw new IOException("cannot read the API keys from " + where + ": " + e.getMessage(), e);
    }
  }

  private Map<String, StoredKey> load() throws IOException {
    Map<String, StoredKey> out = new HashMap<>();
    for (Map.Entry<String, String> e : hash.all().entrySet()) {
      StoredKey k;
      try {
        k = StoredKey.read(json, json.readTree(e.getValue()));
      } catch (JsonProcessingException ex) {
        throw new IOException("API key " + e.getKey() + " in " + where + " is not valid JSON ("
            + ex.getOriginalMessage() + "): revoke it with `sluice key revoke " + e.getKey() + "`", ex);
      }
      String problem = k.id() != null && !k.id().equals(e.getKey()) ? "is stored under another id" : k.problem();
      if (problem != null) {
        throw new IOException("API key " + e.getKey() + " in " + where + " " + problem + ": revoke it with"
            + " `sluice key revoke " + e.getKey() + "`");
      }
      out.put(k.id(), k);
    }
    return Map.copyOf(out);
  }

  /** Re-reads the keys; on failure keeps the last copy and logs once until it works again. */
  public void refresh() {
    try {
      keys = load();
      if (warned) {
        warned = false;
        log.info("API keys readable again in {}", where);
      }
    } catch (IOException | RuntimeException e) {
      if (!warned) {
        warned = true;
        log.warn("cannot refresh the API keys from {} ({}); the {} keys last read stay in force", where,
            e.getMessage(), keys.size());
      }
    }
  }

  @Override
  public Map<String, StoredKey> byId() {
    return keys;
  }

  @Override
  public synchronized void add(StoredKey key) throws IOException {
    try {
      hash.put(key.id(), json.writeValueAsString(key));
    } catch (RuntimeException e) {
      throw new IOException(e.getMessage(), e);
    }
    Map<String, StoredKey> next = new HashMap<>(keys);
    next.put(key.id(), key);
    keys = Map.copyOf(next);
  }

  @Override
  public synchronized boolean remove(String id) throws IOException {
    boolean removed;
    try {
      removed = hash.delete(id);
    } catch (RuntimeException e) {
      throw new IOException(e.getMessage(), e);
    }
    Map<String, StoredKey> next = new HashMap<>(keys);
    removed |= next.remove(id) != null;
    keys = Map.copyOf(next);
    return removed;
  }

  @Override
  public String describe() {
    return where;
  }
}
