package dev.sluice.server.auth;

/** What a key may do. */
public enum Role {
  /** Acquire, release, renew, report, cancel, describe, session: on the key's resources. */
  WORKER,
  /** Everything, on every resource. */
  ADMIN
}
