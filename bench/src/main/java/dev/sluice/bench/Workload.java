package dev.sluice.bench;

/**
 * A closed-loop load: started once, it keeps its operations going (each one starts when the
 * previous one of the same worker or slot ends) and reports every one to the {@link Meter}
 * until stopped.
 */
interface Workload {

  /** How the load is driven, for the tables: "1 thread", "64 async in flight", ... */
  String driver();

  void start(Meter meter) throws Exception;

  /** Stops issuing and waits (bounded) for what is in flight. Returns a note if it could not. */
  String stop() throws InterruptedException;
}
