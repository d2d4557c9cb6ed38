package dev.sluice.server.engine;

import java.util.Locale;

/** Priority lanes, highest first. Within a lane the order is strictly first come, first served. */
public enum Lane {
  INTERACTIVE,
  DEFAULT,
  BATCH;

  /** The lane's name as used in stats and on the command line. */
  public String label() {
    return name().toLowerCase(Locale.ROOT);
  }
}
