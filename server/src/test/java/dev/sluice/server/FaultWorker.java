package dev.sluice.server;

import dev.sluice.client.AcquireOptions;
import dev.sluice.client.Load;
import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A worker process of {@link FaultInjectionIT} that takes {@code permits} concurrency permits,
 * prints {@code HELD}, and holds them (its SDK renewing their leases) until it is killed.
 *
 * <p>Arguments: target resource permits
 */
public final class FaultWorker {

  public static void main(String[] args) throws Exception {
    SluiceClient client = SluiceClient.builder().target(args[0]).build();
    List<Permit> held = new ArrayList<>();
    for (int i = 0; i < Integer.parseInt(args[2]); i++) {
      held.add(client.acquire(args[1], Load.requests(1), AcquireOptions.builder().timeout(Duration.ofSeconds(30)).build()));
    }
    System.out.println("HELD " + held.size());
    System.out.flush();
    Thread.sleep(Long.MAX_VALUE); // until kill -9
  }
}
