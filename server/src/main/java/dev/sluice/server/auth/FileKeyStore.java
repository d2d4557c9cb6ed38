package dev.sluice.server.auth;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.sluice.server.engine.DataFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keys in {@code <data-dir>/keys.json} (0600 where the file system has POSIX permissions),
 * written atomically like the limits, read as strictly. Read once at start; changes go through
 * this store, so memory and file agree.
 */
public final class FileKeyStore implements KeyStore {

  static final String FILE_NAME = "keys.json";
  private static final int FORMAT_VERSION = 1;
  private static final Logger log = LoggerFactory.getLogger(FileKeyStore.class);

  record FileContent(int version, List<StoredKey> keys) {}

  private final Path dir;
  private final Path file;
  private final Map<String, StoredKey> keys = new ConcurrentHashMap<>();
  private final ObjectMapper json = new ObjectMapper()
      .enable(SerializationFeature.INDENT_OUTPUT)
      .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
      .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
      .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION);

  /**
   * Reads the key file, refusing anything it would not have written itself.
   *
   * @throws IOException naming the file and the line if it is not a valid key file, or if it
   *     cannot be read
   */
  public FileKeyStore(Path dataDir) throws IOException {
    this.dir = dataDir.toAbsolutePath().normalize();
    this.file = dir.resolve(FILE_NAME);
    DataFiles.ownerOnly(file);
    for (Path left : DataFiles.removeLeftovers(file)) {
      log.info("removed {}, left by a save that was interrupted (the keys are in {})", left, file);
    }
    byte[] bytes;
    try {
      bytes = Files.readAllBytes(file);
    } catch (NoSuchFileException e) {
      return;
    }
    try (JsonParser p = json.createParser(bytes)) {
      read(p);
    } catch (JsonProcessingException e) {
      throw invalid(e.getLocation() == null ? 0 : e.getLocation().getLineNr(), e.getOriginalMessage(), e);
    } catch (IOException e) {
      // Bytes that are not text at all (Jackson guesses UTF-16/32 from zero bytes): not JSON.
      throw invalid(0, "unreadable bytes (" + e.getMessage() + ")", e);
    }
  }

  /** {@code {"version": 1, "keys": [...]}}, nothing before or after, each key whole and usable. */
  private void read(JsonParser p) throws IOException {
    if (p.nextToken() != JsonToken.START_OBJECT) {
      throw invalid(line(p), "it must be one JSON object: {\"version\": " + FORMAT_VERSION + ", \"keys\": [...]}", null);
    }
    Integer version = null;
    boolean listed = false;
    while (p.nextToken() == JsonToken.FIELD_NAME) {
      String field = p.currentName();
      int fieldLine = line(p);
      JsonToken t = p.nextToken();
      if (field.equals("version")) {
        if (t != JsonToken.VALUE_NUMBER_INT || p.getLongValue() != FORMAT_VERSION) {
          throw invalid(fieldLine, "format version " + p.getText() + ", this server reads version " + FORMAT_VERSION
              + " (run a matching Sluice version)", null);
        }
        version = FORMAT_VERSION;
      } else if (field.equals("keys")) {
        if (t != JsonToken.START_ARRAY) {
          throw invalid(fieldLine, "\"keys\" must be a list", null);
        }
        listed = true;
        Map<String, Integer> lines = new HashMap<>();
        for (int i = 0; p.nextToken() != JsonToken.END_ARRAY; i++) {
          int keyLine = line(p);
          if (p.currentToken() != JsonToken.START_OBJECT) {
            throw invalid(keyLine, "keys[" + i + "] is " + p.getText() + ", not a key object", null);
          }
          com.fasterxml.jackson.databind.JsonNode node = json.readTree(p);
          StoredKey k;
          try {
            k = StoredKey.read(json, node);
          } catch (JsonProcessingException e) {
            // Bound from the tree, which has no lines: the key's own line says where.
            throw invalid(keyLine, "keys[" + i + "] " + e.getOriginalMessage(), e);
          }
          String problem = k.problem();
          if (problem != null) {
            throw invalid(keyLine, "keys[" + i + "] " + problem, null);
          }
          Integer before = lines.put(k.id(), keyLine);
          if (before != null) {
            throw invalid(keyLine, "keys[" + i + "] repeats the id " + k.id() + " of the key on line " + before, null);
          }
          keys.put(k.id(), k);
        }
      } else {
        throw invalid(fieldLine, "unknown field \"" + field + "\" (a key file holds \"version\" and \"keys\")",
            null);
      }
    }
    if (version == null || !listed) {
      throw invalid(line(p), "it lacks " + (version == null ? "\"version\"" : "the \"keys\" list"), null);
    }
    if (p.nextToken() != null) {
      throw invalid(line(p), "content after the end of the key object", null);
    }
  }

  private static int line(JsonParser p) {
    return p.currentTokenLocation().getLineNr();
  }

  private IOException invalid(int line, String what, Throwable cause) {
    keys.clear();
    return new IOException("key file " + file + " is not valid" + (line > 0 ? " at line " + line : "") + ": " + what
        + "; restore it from a backup, or stop the coordinator and delete it (every key is lost; the coordinator is"
        + " open until you create an admin key again)", cause);
  }

  @Override
  public Map<String, StoredKey> byId() {
    return keys;
  }

  @Override
  public synchronized void add(StoredKey key) throws IOException {
    keys.put(key.id(), key);
    try {
      save();
    } catch (IOException e) {
      keys.remove(key.id());
      throw e;
    }
  }

  @Override
  public synchronized boolean remove(String id) throws IOException {
    StoredKey gone = keys.remove(id);
    if (gone == null) {
      return false;
    }
    try {
      save();
    } catch (IOException e) {
      keys.put(id, gone);
      throw e;
    }
    return true;
  }

  private void save() throws IOException {
    byte[] bytes = json.writeValueAsBytes(new FileContent(FORMAT_VERSION, all()));
    DataFiles.writeAtomically(dir, file, bytes);
  }

  @Override
  public String describe() {
    return file.toString();
  }
}
