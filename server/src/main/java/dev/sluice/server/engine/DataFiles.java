package dev.sluice.server.engine;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileAttribute;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The files of the data dir ({@code limits.json}, {@code keys.json}, {@code buffers.db} and its
 * {@code -wal} and {@code -shm}): owner read/write only (0600) and the dir 0700 when Sluice
 * creates it, whatever the umask, since they hold key hashes and buffer header secrets in clear;
 * atomic rewrites; leftovers of an interrupted rewrite removed at start.
 *
 * <p>On a file system without POSIX permissions the dir's own protection applies.
 */
public final class DataFiles {

  private static final Set<PosixFilePermission> FILE = PosixFilePermissions.fromString("rw-------");
  private static final Set<PosixFilePermission> DIR = PosixFilePermissions.fromString("rwx------");

  private DataFiles() {}

  /** Creates {@code dir} (and missing parents) 0700; an existing dir is left as it is. */
  public static void createDir(Path dir) throws IOException {
    if (Files.isDirectory(dir)) {
      return;
    }
    if (Files.exists(dir, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(dir)) {
      throw new IOException("data dir " + dir + " exists and is not a directory: choose another --data-dir");
    }
    try {
      Files.createDirectories(dir, posix() ? new FileAttribute<?>[] {PosixFilePermissions.asFileAttribute(DIR)}
          : new FileAttribute<?>[0]);
    } catch (FileAlreadyExistsException e) {
      // Created meanwhile by someone else: fine if it is a directory.
      if (!Files.isDirectory(dir)) {
        throw e;
      }
    }
  }

  /**
   * Creates {@code file} empty and 0600 if it is missing. SQLite creates a database's {@code -wal}
   * and {@code -shm} with the database file's own mode, so an empty database file made 0600
   * before SQLite opens it covers all three.
   */
  public static void createOwnerOnly(Path file) throws IOException {
    mustNotBeDirectory(file);
    if (posix() && !Files.exists(file, LinkOption.NOFOLLOW_LINKS)) {
      try {
        Files.createFile(file, PosixFilePermissions.asFileAttribute(FILE));
      } catch (FileAlreadyExistsException e) {
        // made meanwhile: narrowed below like any existing file
      }
    }
    ownerOnly(file);
  }

  /**
   * Narrows each existing file to 0600 (a file of an older version, or made under a lax umask);
   * refuses one that is a directory.
   */
  public static void ownerOnly(Path... files) throws IOException {
    for (Path p : files) {
      mustNotBeDirectory(p);
      if (posix() && Files.isRegularFile(p) && !Files.getPosixFilePermissions(p).equals(FILE)) {
        Files.setPosixFilePermissions(p, FILE);
      }
    }
  }

  /**
   * Refuses a data file that is a directory, naming it (otherwise reads fail with a bare
   * "Is a directory").
   */
  public static void mustNotBeDirectory(Path file) throws IOException {
    if (Files.isDirectory(file)) {
      throw new IOException(file + " is a directory, where Sluice keeps a data file: move it out of the data dir"
          + " (or choose another --data-dir)");
    }
  }

  /**
   * Writes {@code bytes} to {@code file} (0600) so that a crash at any point leaves the old
   * content or the new, never a mix: a temporary file in the same directory, forced to disk,
   * renamed over the old one, then the directory forced. A crash may leave the temporary file
   * ({@code <name><digits>.tmp}); {@link #removeLeftovers} removes it at the next start.
   */
  public static void writeAtomically(Path dir, Path file, byte[] bytes) throws IOException {
    createDir(dir);
    mustNotBeDirectory(file);
    // createTempFile makes the file 0600 on POSIX, so the renamed file is 0600 too.
    Path tmp = Files.createTempFile(dir, file.getFileName().toString(), ".tmp");
    try {
      try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE)) {
        var buf = java.nio.ByteBuffer.wrap(bytes);
        while (buf.hasRemaining()) {
          ch.write(buf);
        }
        ch.force(true);
      }
      try {
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException e) {
        throw new IOException(
            "data dir " + dir + " does not support atomic rename; put it on a local file system", e);
      }
    } finally {
      Files.deleteIfExists(tmp);
    }
    forceDirectory(dir);
  }

  /**
   * Removes the temporary files {@link #writeAtomically} leaves when the process is killed
   * mid-write ({@code <name>*.tmp} beside {@code file}); returns those removed. Call it at start,
   * before anything writes {@code file}.
   */
  public static List<Path> removeLeftovers(Path file) throws IOException {
    List<Path> removed = new ArrayList<>();
    Path dir = file.getParent();
    if (!Files.isDirectory(dir)) {
      return removed;
    }
    String name = file.getFileName().toString();
    try (DirectoryStream<Path> s = Files.newDirectoryStream(dir, p -> {
      String n = p.getFileName().toString();
      return n.startsWith(name) && n.endsWith(".tmp") && n.length() > name.length() + 4
          && n.substring(name.length(), n.length() - 4).chars().allMatch(Character::isDigit)
          && Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS);
    })) {
      for (Path p : s) {
        Files.deleteIfExists(p);
        removed.add(p);
      }
    }
    return removed;
  }

  private static void forceDirectory(Path dir) {
    // Makes the rename durable. Not every platform can open a directory; Linux can.
    try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
      ch.force(true);
    } catch (IOException ignored) {
      // Best effort: the rename itself is atomic either way.
    }
  }

  private static boolean posix() {
    return java.nio.file.FileSystems.getDefault().supportedFileAttributeViews().contains("posix");
  }
}
