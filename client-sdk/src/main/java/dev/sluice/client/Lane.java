package dev.sluice.client;

/**
 * Priority lane of an acquire. The coordinator serves a higher lane first; within a lane it
 * is strictly first-in, first-out across every worker, and aging makes sure a lower lane is
 * never starved for ever.
 */
public enum Lane {
  /** User-facing traffic: served first. */
  INTERACTIVE,
  /** Ordinary traffic; the default lane of a client unless {@code defaultLane} says otherwise. */
  DEFAULT,
  /** Background work: served last, but never starved. */
  BATCH
}
