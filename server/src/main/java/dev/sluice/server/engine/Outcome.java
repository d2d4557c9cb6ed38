package dev.sluice.server.engine;

/**
 * What the memory engine counts per resource: the exact figures {@code stats} reports, kept as
 * plain longs whether or not the resource also has meters of its own (see {@link Metering}).
 */
enum Outcome {
  GRANTED("sluice.acquire.granted", null, "Acquires granted"),
  TIMED_OUT("sluice.acquire.timed.out", null, "Acquires that reached their deadline before a grant"),
  CANCELLED("sluice.acquire.cancelled", null, "Acquires cancelled by their caller while waiting"),
  GIVEN_BACK("sluice.acquire.given.back", null, "Grants returned in full because their caller was gone"),
  FORFEITED("sluice.acquire.forfeited", null,
      "Grants whose caller came back for them too late, not handed over"),
  LEASE_EXPIRED("sluice.permits.expired", null, "Permits whose lease ran out before they were released"),
  THROTTLE_REPORTED("sluice.upstream.throttled", null, "Upstream throttling (429) reports from workers"),
  REJECTED_INVALID("sluice.acquire.rejected", "invalid", Outcome.REJECTED),
  REJECTED_WAITING_ROOM_FULL("sluice.acquire.rejected", "waiting_room_full", Outcome.REJECTED),
  REJECTED_DELETED("sluice.acquire.rejected", "deleted", Outcome.REJECTED),
  REJECTED_SHUTDOWN("sluice.acquire.rejected", "shutdown", Outcome.REJECTED);

  static final Outcome[] ALL = values();

  /** The Micrometer counter it is also counted on. */
  final String meter;
  /** The {@code reason} tag and stats key of a rejection; null for the other outcomes. */
  final String reason;
  /** The counter's description: the HELP line of its Prometheus family. */
  final String help;

  Outcome(String meter, String reason, String help) {
    this.meter = meter;
    this.reason = reason;
    this.help = help;
  }

  private static final String REJECTED = "Acquires refused, by reason";
}
