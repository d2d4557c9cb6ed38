package dev.sluice.server.auth;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.sluice.server.engine.FileLimitStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Keys in {@code <data-dir>/keys.json} (owner read/write only where the file system has POSIX
 * permissions), written atomically like the limits. Read once at start; changes go through
 * this store, so memory and file agree.
 */
public final class FileKeyStore implements KeyStore {

  static final String FILE_NAME = "keys.json";
  private static final int FORMAT_VERSION = 1;

  record FileContent(int version, List<StoredKey> keys) {}

  private final Path dir;
  private final Path file;
  private final Map<String, StoredKey> keys = new ConcurrentHashMap<>();
  private final ObjectMapper json = new ObjectMapper()
      .enable(SerializationFeature.INDENT_OUTPUT)
      .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES);

  /** @throws IOException if the file exists but cannot be read or is not a valid key file */
  public FileKeyStore(Path dataDir) throws IOException {
    this.dir = dataDir.toAbsolutePath().normalize();
    this.file = dir.resolve(FILE_NAME);
    byte[] bytes;
    try {
      bytes = Files.readAllBytes(file);
    } catch (NoSuchFileException e) {
      return;
    }
    FileContent content;
    try {
      content = json.readValue(bytes, FileContent.class);
    } catch (JsonProcessingException e) {
      throw new IOException("key file " + file + " is not valid: " + e.getOriginalMessage() + " (line "
          + (e.getLocation() == null ? "?" : e.getLocation().getLineNr()) + "); restore it from a backup, or"
          + " delete it (every key is lost; the coordinator is open until you create new ones)", e);
    }
    if (content == null || content.keys() == null || content.version() != FORMAT_VERSION) {
      throw new IOException("key file " + file + " has no \"keys\" list or a format version other than "
          + FORMAT_VERSION + "; restore it from a backup or run a matching Sluice version");
    }
    for (StoredKey k : content.keys()) {
      if (k.id() == null || k.role() == null || k.salt() == null || k.hash() == null) {
        throw new IOException("key file " + file + " holds a key without id, role, salt or hash; restore the"
            + " file from a backup");
      }
      try {
        k.pattern();
      } catch (IllegalArgumentException e) {
        throw new IOException("key file " + file + ": key " + k.id() + " has a bad resource pattern: "
            + e.getMessage(), e);
      }
      keys.put(k.id(), k);
    }
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
    FileLimitStore.writeAtomically(dir, file, bytes);
    try {
      Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-------"));
    } catch (UnsupportedOperationException e) {
      // Not a POSIX file system: the directory's own permissions protect it.
    }
  }

  @Override
  public String describe() {
    return file.toString();
  }
}
