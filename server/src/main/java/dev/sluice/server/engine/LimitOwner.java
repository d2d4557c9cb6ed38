package dev.sluice.server.engine;

/**
 * Which limits file manages a limit: set by an apply of that file, kept with the limit in the
 * store. {@code limit set} and {@code limit delete} refuse a managed limit unless forced; a
 * forced change marks it {@code overridden}, which the file's next apply reports as drift and
 * puts back.
 *
 * @param file the file's name as the apply gave it ({@code limits.yaml})
 * @param sha256 the first 12 hex digits of the SHA-256 of the version that last set the limit
 * @param overridden changed by hand (forced) since the file set it
 */
public record LimitOwner(String file, String sha256, boolean overridden) {

  public LimitOwner {
    if (file == null || file.isEmpty() || sha256 == null) {
      throw new IllegalArgumentException("a limit's owner needs a file name and a hash");
    }
  }

  /** This owner, marked changed by hand. */
  public LimitOwner overriddenByHand() {
    return new LimitOwner(file, sha256, true);
  }

  /** "limits file limits.yaml (sha256 0123456789ab)", with ", changed by hand since" when overridden. */
  public String describe() {
    return "limits file " + file + " (sha256 " + sha256 + ")" + (overridden ? ", changed by hand since" : "");
  }
}
