package dev.sluice.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.sluice.client.Permit;
import dev.sluice.client.SluiceClient;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The coordinator as its own process: ports from the ready line, and a child that never outlives
 * the load generator (closed, failed start, start timed out, JVM exit). Stand-in children are
 * {@code sh} scripts; the last test runs the real {@code sluice serve} of the CLI.
 */
class CoordinatorProcessTest {

  private static final String READY_LINE = "[main] INFO dev.sluice.server.SluiceServer - Sluice coordinator ready on"
      + " port 4321 (bind 127.0.0.1, plaintext, open: no API keys), HTTP (metrics, dashboard, JSON API) on"
      + " http://127.0.0.1:4322/ (at most 1024 connections), data dir /tmp/x, store memory, 0 limits loaded";

  @Test
  void readsBothPortsFromTheReadyLineAndStopsTheProcessOnClose() throws Exception {
    CoordinatorProcess p = CoordinatorProcess.start(sh("echo starting; echo '" + READY_LINE + "'; exec sleep 60"),
        Duration.ofSeconds(20));
    ProcessHandle child = ProcessHandle.of(p.pid()).orElseThrow();
    assertThat(p.port()).isEqualTo(4321);
    assertThat(p.httpPort()).isEqualTo(4322);
    assertThat(p.lastOutput()).contains("starting", "ready on port 4321");

    p.close();
    p.close(); // idempotent

    assertThat(child.isAlive()).isFalse();
  }

  @Test
  void aCoordinatorWithoutHttpPortHasHttpPortMinusOne() throws Exception {
    try (CoordinatorProcess p = CoordinatorProcess.start(sh("echo 'Sluice coordinator ready on port 4321 (bind"
        + " 127.0.0.1, plaintext, open: no API keys), no HTTP port, data dir /tmp/x, store memory, 0 limits loaded';"
        + " exec sleep 60"), Duration.ofSeconds(20))) {
      assertThat(p.port()).isEqualTo(4321);
      assertThat(p.httpPort()).isEqualTo(-1);
    }
  }

  @Test
  void aProcessThatExitsBeforeItIsReadyFailsWithItsExitCodeAndOutput() {
    assertThatThrownBy(() -> CoordinatorProcess.start(sh("echo 'sluice.jar not built' >&2; exit 2"),
        Duration.ofSeconds(20)))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("exited with code 2 before it was ready")
        .hasMessageContaining("sluice.jar not built")
        .hasMessageContaining("./mvnw -q -DskipTests package");
  }

  @Test
  void aProcessNeverReadyIsStoppedWhenTheWaitRunsOut() throws Exception {
    Set<Long> before = children();
    assertThatThrownBy(() -> CoordinatorProcess.start(sh("echo warming; exec sleep 60"), Duration.ofMillis(500)))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("did not log its ready line within 500 ms, so it was stopped")
        .hasMessageContaining("warming");
    Set<Long> left = children();
    left.removeAll(before);
    assertThat(left).as("children of this JVM started by the failed start and still alive").isEmpty();
  }

  /** A JVM that exits (System.exit) with a coordinator running: the shutdown hook stops the coordinator. */
  @Test
  void theCoordinatorDoesNotOutliveTheJvmThatStartedIt() throws Exception {
    Process jvm = new ProcessBuilder(java(), "-Xmx64m", "-cp", System.getProperty("java.class.path"),
        ExitsWithACoordinatorRunning.class.getName()).redirectErrorStream(true).start();
    long coordinatorPid;
    try (BufferedReader r = new BufferedReader(new InputStreamReader(jvm.getInputStream(), StandardCharsets.UTF_8))) {
      String line = r.readLine();
      while (line != null && !line.startsWith("coordinator pid ")) {
        line = r.readLine();
      }
      assertThat(line).as("the child JVM's report").isNotNull();
      coordinatorPid = Long.parseLong(line.substring("coordinator pid ".length()).trim());
    }
    assertThat(jvm.waitFor(20, TimeUnit.SECONDS)).isTrue();
    Optional<ProcessHandle> coordinator = ProcessHandle.of(coordinatorPid);
    if (coordinator.isPresent()) {
      coordinator.get().onExit().get(10, TimeUnit.SECONDS);
    }
    assertThat(ProcessHandle.of(coordinatorPid).map(ProcessHandle::isAlive)).isIn(Optional.empty(),
        Optional.of(false));
  }

  /** Runs in the child JVM of the test above. */
  static final class ExitsWithACoordinatorRunning {
    public static void main(String[] args) throws Exception {
      CoordinatorProcess p = CoordinatorProcess.start(sh("echo '" + READY_LINE + "'; exec sleep 60"),
          Duration.ofSeconds(20));
      System.out.println("coordinator pid " + p.pid());
      System.out.flush();
      System.exit(0);
    }
  }

  /**
   * The real thing: {@code sluice serve} of the CLI in its own process (through a launcher script
   * like bin/sluice), placed by {@link SluiceRig}: limits, SDK acquires, API keys and the HTTP
   * port all work on the ports read from its ready line, and closing the rig ends the process.
   */
  @Test
  void aRealCoordinatorInItsOwnProcessServesOnTheParsedPortsAndIsGoneAfterClose(@TempDir Path dir)
      throws Exception {
    Path launcher = dir.resolve("sluice");
    // The server's test jar on this classpath sets WARN; sluice.jar logs at INFO, the ready line's level.
    Files.writeString(launcher, "#!/bin/sh\nexec '" + java() + "' -Xmx256m -XX:TieredStopAtLevel=1"
        + " -Dorg.slf4j.simpleLogger.defaultLogLevel=info -cp '" + System.getProperty("java.class.path")
        + "' dev.sluice.cli.SluiceCli \"$@\"\n");
    Files.setPosixFilePermissions(launcher, PosixFilePermissions.fromString("rwx------"));
    Set<Long> before = children();
    Set<Long> during;
    try (SluiceRig rig = SluiceRig.memory(SluiceRig.Placement.process(launcher), true)) {
      during = children();
      during.removeAll(before);
      assertThat(during).as("the coordinator's process").hasSize(1);
      rig.setLimit(SluiceRig.rate("hot", 1_000_000, 10_000));
      try (SluiceClient client = rig.client(); Permit p = client.acquire("hot")) {
        assertThat(p.resource()).isEqualTo("hot");
      }
      String worker = rig.createWorkerKey("hot*");
      try (SluiceClient keyed = rig.client(worker); Permit p = keyed.acquire("hot")) {
        assertThat(p.resource()).isEqualTo("hot");
      }
      rig.revokeAllKeys();
      HttpResponse<String> health = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
          URI.create("http://127.0.0.1:" + rig.httpPort() + "/healthz")).build(), HttpResponse.BodyHandlers.ofString());
      assertThat(health.statusCode()).isEqualTo(200);
    }
    for (long pid : during) {
      ProcessHandle.of(pid).ifPresent(h -> assertThat(h.isAlive()).as("coordinator process " + pid).isFalse());
    }
  }

  private static List<String> sh(String script) {
    return List.of("/bin/sh", "-c", script);
  }

  private static String java() {
    return Path.of(System.getProperty("java.home"), "bin", "java").toString();
  }

  private static Set<Long> children() {
    return ProcessHandle.current().children().filter(ProcessHandle::isAlive).map(ProcessHandle::pid)
        .collect(Collectors.toSet());
  }
}
