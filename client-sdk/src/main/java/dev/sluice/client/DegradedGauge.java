package dev.sluice.client;

import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;

/**
 * The gauge {@code sluice.client.degraded}. The only class of the SDK that names a Micrometer
 * type in its code, so that Micrometer is an optional dependency: the JVM loads this class, and
 * with it Micrometer's, only when {@link SluiceClient.Builder#meterRegistry} was given a registry.
 */
final class DegradedGauge {

  private DegradedGauge() {}

  /** Registers the gauge of {@code client}; the returned action removes it again. */
  static Runnable register(MeterRegistry registry, ClientRuntime client, String mode) {
    Gauge gauge = Gauge.builder("sluice.client.degraded", client, c -> c.isDegraded() ? 1 : 0)
        .description("1 while no Sluice coordinator node answers and the client runs in its failure mode,"
            + " 0 otherwise")
        .tag("mode", mode)
        .register(registry);
    return () -> registry.remove(gauge);
  }
}
