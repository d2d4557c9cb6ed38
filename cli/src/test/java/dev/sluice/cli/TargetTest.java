package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Issue 14: a bad target is one line naming it, before any connection is tried (it was a stack
 * trace after 10.8 s, "Invalid DNS name", a raw exception); an UNAVAILABLE the coordinator itself
 * answered is not blamed on a coordinator that is not running.
 */
class TargetTest {

  @ParameterizedTest(name = "--target {0}")
  @CsvSource(delimiter = '|', value = {
      "127.0.0.1:99999 | --target '127.0.0.1:99999' has port 99999, out of 1..65535; give HOST:PORT",
      "h:1,            | --target 'h:1,' is a list: the CLI talks to one coordinator; give HOST:PORT",
      "!!@@##          | --target '!!@@##' is not HOST:PORT (a host name or IP address, then a port)",
      "host:          | --target 'host:' is not HOST:PORT",
      "h:0             | --target 'h:0' has port 0, out of 1..65535",
  })
  void aBadTargetIsOneLineAtOnce(String target, String message) {
    CliRun run = CliRun.of("limit", "list", "--target", target);
    assertThat(run.exit()).as(run.err()).isEqualTo(2);
    assertThat(run.err()).hasLineCount(1).startsWith("error: " + message).doesNotContain("Exception")
        .doesNotContain("is the coordinator running");
  }

  @Test
  void theEnvironmentVariableIsNamedWhenTheValueCameFromIt() {
    assertThatThrownBy(() -> ClientOptions.checkTarget("!!@@##", "SLUICE_TARGET"))
        .hasMessageStartingWith("SLUICE_TARGET '!!@@##' is not HOST:PORT");
  }

  @ParameterizedTest(name = "{0} -> {1}")
  @CsvSource({
      "localhost, localhost:7420",
      "sluice-1.internal:7421, sluice-1.internal:7421",
      "[::1]:7420, [::1]:7420",
      "10.0.0.5, 10.0.0.5:7420",
      "dns:///sluice.internal:7420, dns:///sluice.internal:7420",
  })
  void goodTargetsPass(String target, String dialed) {
    assertThat(ClientOptions.checkTarget(target, "--target")).isEqualTo(dialed);
  }

  @Test
  void anUnavailableTheCoordinatorAnsweredKeepsItsOwnWords() {
    // Answered by the coordinator (the channel is connected).
    String full = CliFailure.of(Status.UNAVAILABLE.withDescription("not stored: the disk holding the buffer store"
        + " /d/buffers.db is full (SQLITE_FULL); free space there and retry").asRuntimeException(), "h:1", true)
        .getMessage();
    assertThat(full).startsWith("UNAVAILABLE: not stored: the disk").doesNotContain("is the coordinator running");
    // Not reached: this side's own failure.
    String down = CliFailure.of(Status.UNAVAILABLE.withDescription("io exception")
        .withCause(new java.net.ConnectException("Connection refused")).asRuntimeException(), "h:1", false)
        .getMessage();
    assertThat(down).contains("Connection refused").contains("is the coordinator running at h:1?");
  }
}
