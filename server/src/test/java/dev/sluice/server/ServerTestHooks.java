package dev.sluice.server;

import dev.sluice.server.engine.Engine;

/** Reaches a server's package-private parts from test packages (the fault harness). */
public final class ServerTestHooks {

  private ServerTestHooks() {}

  /** The engine the server runs on. */
  public static Engine engine(SluiceServer server) {
    return server.engine();
  }
}
