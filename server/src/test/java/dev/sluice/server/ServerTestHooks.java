package dev.sluice.server;

import dev.sluice.server.engine.Engine;

/** Reaches a server's package-private parts from test packages (the fault harness). */
public final class ServerTestHooks {

  private ServerTestHooks() {}

  /** Runs the server on a fake clock: its ticker and its scheduler (the engine's time). */
  public static SluiceServer.Builder clock(SluiceServer.Builder builder, dev.sluice.server.engine.FakeClock clock) {
    return builder.clock(clock, clock);
  }

  /** The engine the server runs on. */
  public static Engine engine(SluiceServer server) {
    return server.engine();
  }
}
