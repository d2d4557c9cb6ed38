package dev.sluice.bench;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import java.util.concurrent.CompletableFuture;

/**
 * Sluice through the peers' interface, so the comparison uses the identical driver: acquire is
 * the SDK's blocking {@code acquire}, release is {@code Permit.close()}; its own users' driver is
 * the SDK's {@code acquireAsync}.
 */
final class SluiceLimiter implements Limiter {

  private static final Load ONE = Load.requests(1);

  private final String name;
  private final SluiceClient client;
  private final String resource;
  private final String notes;

  /** Takes ownership of {@code client}: {@link #close()} closes it. */
  SluiceLimiter(String name, SluiceClient client, String resource, String notes) {
    this.name = name;
    this.client = client;
    this.resource = resource;
    this.notes = notes;
  }

  @Override
  public String name() {
    return name;
  }

  @Override
  public String notes() {
    return notes;
  }

  @Override
  public Object acquire() throws Exception {
    return client.acquire(resource);
  }

  /** The SDK's own asynchronous acquire: how a service on an event loop uses Sluice. */
  @Override
  public boolean async() {
    return true;
  }

  @Override
  public CompletableFuture<Object> acquireAsync() {
    return client.acquireAsync(resource, ONE, AcquireOptions.defaults()).thenApply(p -> p);
  }

  @Override
  public void release(Object permit) {
    ((Permit) permit).close();
  }

  @Override
  public void close() {
    client.close();
  }
}
