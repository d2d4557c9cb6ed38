package dev.sluice.server;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.config.MeterFilter;
import io.micrometer.core.instrument.config.NamingConvention;
import io.micrometer.core.instrument.distribution.DistributionStatisticConfig;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;

/**
 * What {@code /metrics} needs so that {@code promtool check metrics} finds nothing to say (its
 * lint is the Prometheus naming guide made executable), installed on the registry before any
 * meter is registered:
 *
 * <ul>
 *   <li>tag keys in snake_case: Micrometer's gRPC binder tags {@code statusCode} and
 *       {@code methodType}, and the Prometheus convention only replaces dots;
 *   <li>the wait timer as a histogram of a few service-level buckets
 *       ({@code --metrics-wait-buckets}) instead of Micrometer's 85 percentile buckets, which
 *       made 87 000 series at 1 000 resources;
 *   <li>two JVM meters whose Prometheus names the lint refuses, replaced:
 *       {@code process_cpu_time_ns_total} (a unit abbreviation) by the usual
 *       {@code process_cpu_seconds_total}, and the gauge {@code system_cpu_count} (the
 *       {@code _count} suffix belongs to histograms and summaries) by {@code system_cpus}.
 * </ul>
 */
final class PrometheusConventions {

  static final String WAIT_TIMER = "sluice.acquire.wait";
  private static final Pattern CAMEL_HUMP = Pattern.compile("([a-z0-9])([A-Z])");

  private PrometheusConventions() {}

  /** Installs the naming convention and the filters; {@code waitBuckets} are already checked. */
  static void install(MeterRegistry registry, List<Duration> waitBuckets) {
    registry.config()
        .namingConvention(snakeCaseTagKeys(registry.config().namingConvention()))
        .meterFilter(MeterFilter.deny(id -> id.getName().equals("process.cpu.time") && "ns".equals(id.getBaseUnit())))
        .meterFilter(new MeterFilter() {
          @Override
          public Meter.Id map(Meter.Id id) {
            return id.getName().equals("system.cpu.count") ? id.withName("system.cpus") : id;
          }
        })
        .meterFilter(waitHistogram(waitBuckets));
  }

  /** {@code process_cpu_seconds_total}, in place of the denied nanosecond counter; absent off HotSpot. */
  static void bindProcessCpuSeconds(MeterRegistry registry) {
    if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os
        && os.getProcessCpuTime() >= 0) {
      FunctionCounter.builder("process.cpu", os, o -> o.getProcessCpuTime() / 1e9).baseUnit("seconds")
          .description("CPU time used by the coordinator's JVM process").register(registry);
    }
  }

  /** {@code delegate}, with camelCase tag keys split into snake_case first. */
  static NamingConvention snakeCaseTagKeys(NamingConvention delegate) {
    return new NamingConvention() {
      @Override
      public String name(String name, Meter.Type type, String baseUnit) {
        return delegate.name(name, type, baseUnit);
      }

      @Override
      public String tagKey(String key) {
        return delegate.tagKey(CAMEL_HUMP.matcher(key).replaceAll("$1_$2").toLowerCase(Locale.ROOT));
      }

      @Override
      public String tagValue(String value) {
        return delegate.tagValue(value);
      }
    };
  }

  /** The wait timer's buckets: exactly {@code bounds} (and +Inf), so Prometheus can aggregate waits. */
  private static MeterFilter waitHistogram(List<Duration> bounds) {
    double[] nanos = bounds.stream().mapToDouble(Duration::toNanos).toArray();
    return new MeterFilter() {
      @Override
      public DistributionStatisticConfig configure(Meter.Id id, DistributionStatisticConfig config) {
        if (!id.getName().equals(WAIT_TIMER)) {
          return config;
        }
        return DistributionStatisticConfig.builder().serviceLevelObjectives(nanos).build().merge(config);
      }
    };
  }
}
