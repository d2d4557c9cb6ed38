package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/**
 * {@code sluice serve} takes its defaults from the server's keys (ServerConfigKeys), so a node
 * started from the command line and one built in code behave alike, and the help says so.
 */
class ServeDefaultsTest {

  @Test
  void helpShowsTheServerDefaults() {
    CliRun help = CliRun.of("help", "serve");
    assertThat(help.exit()).isZero();
    String text = help.out().replaceAll("\\s+", " ");
    assertThat(text).contains(
        "SLUICE_PORT, default 7420)",
        "SLUICE_HTTP_PORT, default 7421)",
        "SLUICE_DATA_DIR, default sluice-data)",
        "SLUICE_STORE, default memory)",
        "SLUICE_MAX_WAITING, default 10000)",
        "SLUICE_MAX_WAITING_PER_CONNECTION, default 100000)",
        "SLUICE_LEASE_TTL, default 30s)",
        "SLUICE_MAX_WAIT, default 5m)",
        "SLUICE_AGING, default 10s)",
        "SLUICE_METRICS_MAX_RESOURCES, default 1000)",
        "SLUICE_SHUTDOWN_GRACE, default 10s)",
        "SLUICE_BUFFER_LEASE, default 10s;",
        "SLUICE_HTTP_IDLE_TIMEOUT, default 75s)",
        "SLUICE_HTTP_READ_TIMEOUT, default 20s)",
        "SLUICE_HTTP_MAX_PIPELINED, default 8)",
        "SLUICE_GRPC_HANDSHAKE_TIMEOUT, default 10s)",
        "SLUICE_MAX_CONNECTION_IDLE, default 2m)",
        "SLUICE_MAX_CONNECTION_AGE, default 1h)",
        "SLUICE_MAX_CONNECTION_AGE_GRACE, default 5m)",
        "SLUICE_MAX_CALLS_PER_CONNECTION, default 10000)",
        "SLUICE_MAX_RESETS_PER_10S, default 10000)",
        "SLUICE_MAX_HEALTH_WATCHES, default 1000)");
    // A list: the help may wrap it after any comma.
    assertThat(text.replaceAll(",\\s+", ",")).contains("SLUICE_METRICS_WAIT_BUCKETS,default 10ms,100ms,1s,10s,1m)");
  }
}
