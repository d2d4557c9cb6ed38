package dev.sluice.server.engine;

/** Reaches the memory engine's package-private test figures from other test packages. */
public final class EngineTestHooks {

  private EngineTestHooks() {}

  /**
   * The most permits {@code resource} has held at once on a memory engine, taken by the engine at
   * every grant.
   */
  public static int peakInFlight(Engine engine, String resource) {
    if (!(PoolEngine.unwrap(engine) instanceof MemoryEngine memory)) {
      throw new IllegalArgumentException("peakInFlight reads the memory store's live state; this engine is "
          + engine.getClass().getSimpleName() + ": run the server on the memory store");
    }
    return memory.peakInFlight(resource);
  }
}
