package dev.sluice.client;

import io.grpc.ClientInterceptor;
import java.util.function.LongSupplier;

/**
 * Reaches the SDK builder's package-private test hooks from the server's end-to-end tests (same
 * package, other module). Test code only: the SDK's public API has no such knobs.
 */
public final class ClientTestHooks {

  private ClientTestHooks() {}

  /** The client's nanosecond clock: timeouts, retries, degraded mode and the local limiter. */
  public static SluiceClient.Builder ticker(SluiceClient.Builder builder, LongSupplier nanoTime) {
    return builder.ticker(nanoTime);
  }

  /** The margin added to an acquire's timeout for its gRPC deadline (default 5 s). */
  public static SluiceClient.Builder deadlineMargin(SluiceClient.Builder builder, java.time.Duration margin) {
    return builder.deadlineMargin(margin);
  }

  /** Whether every node of the client's list target has passed a health probe since it started. */
  public static boolean everyNodeAnswered(SluiceClient client) {
    return client.everyNodeAnswered();
  }

  /** Watches every call on the channel the client builds from its target. */
  public static SluiceClient.Builder intercept(SluiceClient.Builder builder, ClientInterceptor interceptor) {
    return builder.intercept(interceptor);
  }

  /** Grants that reached the client later than their freshness and were confirmed (AcquireCall). */
  public static long lateGrants(SluiceClient client) {
    return client.lateGrants();
  }
}
