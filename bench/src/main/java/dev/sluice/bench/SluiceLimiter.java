package dev.sluice.bench;

import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;

/**
 * Sluice through the peers' interface, so the comparison uses the identical driver: acquire is
 * the SDK's blocking {@code acquire}, release is {@code Permit.close()}.
 */
final class SluiceLimiter implements Limiter {

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

  @Override
  public void release(Object permit) {
    ((Permit) permit).close();
  }

  @Override
  public void close() {
    client.close();
  }
}
