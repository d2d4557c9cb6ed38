package dev.sluice.server.engine;

/**
 * What the memory engine counts per resource: the exact figures {@code stats} reports, kept as
 * plain longs whether or not the resource also has meters of its own (see {@link Metering}).
 */
enum Outcome {
  GRANTED("sluice.acquire.granted", null),
  TIMED_OUT("sluice.acquire.timed.out", null),
  CANCELLED("sluice.acquire.cancelled", null),
  GIVEN_BACK("sluice.acquire.given.back", null),
  FORFEITED("sluice.acquire.forfeited", null),
  LEASE_EXPIRED("sluice.permits.expired", null),
  THROTTLE_REPORTED("sluice.upstream.throttled", null),
  REJECTED_INVALID("sluice.acquire.rejected", "invalid"),
  REJECTED_WAITING_ROOM_FULL("sluice.acquire.rejected", "waiting_room_full"),
  REJECTED_DELETED("sluice.acquire.rejected", "deleted"),
  REJECTED_SHUTDOWN("sluice.acquire.rejected", "shutdown");

  static final Outcome[] ALL = values();

  /** The Micrometer counter it is also counted on. */
  final String meter;
  /** The {@code reason} tag and stats key of a rejection; null for the other outcomes. */
  final String reason;

  Outcome(String meter, String reason) {
    this.meter = meter;
    this.reason = reason;
  }
}
