package dev.sluice.server.price;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.sluice.server.engine.DataFiles;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.SharedHash;
import dev.sluice.server.engine.Validation;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The coordinator's price table: one {@link Price} per model. Acquires read a local copy (no
 * store round trip on the acquire path); changes write the store first, then the copy.
 *
 * <p>Embedded store: {@code <data-dir>/prices.json}, rewritten atomically by {@link DataFiles}.
 * Shared store: the Redis hash {@code sluice:prices}, one JSON field per model, re-read by
 * {@link #refresh()} (the server calls it every second, as for the API keys): a price set on
 * one node prices acquires on the others within about a second. While Redis is away the last
 * copy stays in force.
 *
 * <p>{@link #set} and {@link #delete} wait for the store: call them off the transport threads.
 */
public final class Prices {

  static final String FILE_NAME = "prices.json";
  private static final Logger log = LoggerFactory.getLogger(Prices.class);
  private static final ObjectMapper JSON = new ObjectMapper()
      .enable(SerializationFeature.INDENT_OUTPUT)
      .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

  /** Where the table is kept. */
  private interface Backing {
    Map<String, Price> load() throws IOException;

    /**
     * Writes {@code all}, in which {@code model} was just set ({@code price}) or deleted (null);
     * true if the store held {@code model} before (as far as it can tell).
     */
    boolean write(Map<String, Price> all, String model, Price price) throws IOException;
  }

  /** A price as stored: decimals as text, so that no digit is lost. */
  record Stored(String input, String output, String cachedInput) {
    static Stored of(Price p) {
      return new Stored(Price.text(p.input()), Price.text(p.output()), Price.text(p.cachedInput()));
    }

    Price price(String model) {
      return Price.parse(model, input, output, cachedInput);
    }
  }

  record StoredFile(int version, Map<String, Stored> prices) {}

  private final Backing backing;
  private final String where;
  private volatile Map<String, Price> prices;
  private volatile boolean warned;

  private Prices(Backing backing, String where) throws IOException {
    this.backing = backing;
    this.where = where;
    this.prices = backing.load();
  }

  /** The table of the embedded store, in {@code dataDir}; reads it if it exists. */
  public static Prices inDataDir(Path dataDir) throws IOException {
    Path dir = dataDir.toAbsolutePath().normalize();
    Path file = dir.resolve(FILE_NAME);
    return new Prices(new Backing() {
      @Override
      public Map<String, Price> load() throws IOException {
        DataFiles.ownerOnly(file);
        for (Path left : DataFiles.removeLeftovers(file)) {
          log.info("removed {}, left by a save that was interrupted (the prices are in {})", left, file);
        }
        byte[] bytes;
        try {
          bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
          return Map.of();
        }
        StoredFile content;
        try {
          content = JSON.readValue(bytes, StoredFile.class);
        } catch (JsonProcessingException e) {
          throw new IOException(file + " is not a price table (" + e.getOriginalMessage() + "): restore it from a"
              + " backup, or move it away and set the prices again with `sluice price set`", e);
        }
        return parsed(content.prices(), file.toString());
      }

      @Override
      public boolean write(Map<String, Price> all, String model, Price price) throws IOException {
        Map<String, Stored> out = new TreeMap<>();
        all.forEach((m, p) -> out.put(m, Stored.of(p)));
        DataFiles.writeAtomically(dir, file, JSON.writeValueAsBytes(new StoredFile(1, out)));
        return false; // this node's copy is the whole table
      }
    }, file.toString());
  }

  /** The table of a shared store, in {@code hash}; reads it once. */
  public static Prices shared(SharedHash hash, String where) throws IOException {
    return new Prices(new Backing() {
      @Override
      public Map<String, Price> load() throws IOException {
        Map<String, Stored> stored = new TreeMap<>();
        try {
          for (Map.Entry<String, String> e : hash.all().entrySet()) {
            stored.put(e.getKey(), JSON.readValue(e.getValue(), Stored.class));
          }
        } catch (JsonProcessingException e) {
          throw new IOException("a price in " + where + " is not valid JSON (" + e.getOriginalMessage() + "): set it"
              + " again with `sluice price set`", e);
        } catch (RuntimeException e) {
          throw new IOException("cannot read the prices from " + where + ": " + e.getMessage(), e);
        }
        return parsed(stored, where);
      }

      @Override
      public boolean write(Map<String, Price> all, String model, Price price) throws IOException {
        try {
          if (price == null) {
            return hash.delete(model);
          }
          hash.put(model, JSON.writeValueAsString(Stored.of(price)));
          return false;
        } catch (JsonProcessingException e) {
          throw new IOException(e.getMessage(), e);
        } catch (RuntimeException e) {
          throw new IOException("cannot write the price of '" + model + "' to " + where + ": " + e.getMessage(), e);
        }
      }
    }, where);
  }

  private static Map<String, Price> parsed(Map<String, Stored> stored, String where) throws IOException {
    Map<String, Price> out = new TreeMap<>();
    for (Map.Entry<String, Stored> e : stored == null ? Map.<String, Stored>of().entrySet() : stored.entrySet()) {
      try {
        out.put(e.getKey(), e.getValue().price(e.getKey()));
      } catch (EngineException ex) {
        throw new IOException("the price of '" + e.getKey() + "' in " + where + " is wrong (" + ex.getMessage()
            + "): set it again with `sluice price set`", ex);
      }
    }
    return java.util.Collections.unmodifiableMap(out);
  }

  /** The price of {@code model}, from the local copy. */
  public Optional<Price> get(String model) {
    return Optional.ofNullable(prices.get(model));
  }

  /** Every price, sorted by model. */
  public List<Price> list() {
    return List.copyOf(prices.values());
  }

  /**
   * Creates or replaces a price, durably, and logs the change.
   *
   * @param who who asked, for the log line
   * @throws EngineException UNAVAILABLE if the store cannot be written; the table is then unchanged
   */
  public synchronized void set(Price price, String who) {
    Map<String, Price> next = new TreeMap<>(prices);
    Price old = next.put(price.model(), price);
    write(next, price.model(), price);
    prices = java.util.Collections.unmodifiableMap(next);
    log.info("price of {} {}: input {} output {} cached input {} USD per million tokens ({})", price.model(),
        old == null ? "set" : "replaced", Price.text(price.input()), Price.text(price.output()),
        Price.text(price.cachedInput()), who);
  }

  /**
   * Deletes a model's price, durably.
   *
   * @throws EngineException NOT_FOUND if it had none, UNAVAILABLE if the store cannot be written
   */
  public synchronized void delete(String model, String who) {
    Map<String, Price> next = new TreeMap<>(prices);
    boolean had = next.remove(model) != null;
    // A shared store may hold a price set on another node since the last refresh.
    had |= write(next, model, null);
    prices = java.util.Collections.unmodifiableMap(next);
    if (!had) {
      throw new EngineException(EngineException.Reason.NOT_FOUND, "model '" + Validation.shown(model, 200)
          + "' has no price: list them with `sluice price list`");
    }
    log.info("price of {} deleted ({})", model, who);
  }

  private boolean write(Map<String, Price> all, String model, Price price) {
    try {
      return backing.write(all, model, price);
    } catch (IOException e) {
      log.warn("cannot store the price of {} in {}: {}", model, where, e.getMessage());
      throw new EngineException(EngineException.Reason.UNAVAILABLE, "cannot store the price of '" + model + "' in "
          + where + " (" + e.getMessage() + "): the table is unchanged; retry once the store is back");
    }
  }

  /** Re-reads the store; on failure keeps the last copy and logs once until it works again. */
  public void refresh() {
    try {
      synchronized (this) { // not between a change's write and its copy
        prices = backing.load();
      }
      if (warned) {
        warned = false;
        log.info("prices readable again in {}", where);
      }
    } catch (IOException | RuntimeException e) {
      if (!warned) {
        warned = true;
        log.warn("cannot refresh the prices from {} ({}); the {} prices last read stay in force", where,
            e.getMessage(), prices.size());
      }
    }
  }

  public String describe() {
    return where;
  }
}
