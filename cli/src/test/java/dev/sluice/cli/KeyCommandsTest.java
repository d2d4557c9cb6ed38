package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.SluiceServer;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code sluice key ...} and {@code --api-key} against a real coordinator. */
class KeyCommandsTest {

  @TempDir Path dataDir;
  private SluiceServer server;
  private String target;

  @BeforeEach
  void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).build().start();
    target = "--target=127.0.0.1:" + server.port();
  }

  @AfterEach
  void stop() {
    server.close();
  }

  @Test
  void createPrintsTheKeyOnceThenEveryCommandNeedsIt() {
    CliRun created = CliRun.of("key", "create", "--role", "admin", "--description", "ops laptop", target);
    assertThat(created.exit()).as(created.err()).isZero();
    String adminKey = created.out().trim();
    assertThat(adminKey).startsWith("slk_").doesNotContain("\n");
    assertThat(created.err()).contains("shown only this once");

    CliRun refused = CliRun.of("limit", "list", target);
    assertThat(refused.exit()).isEqualTo(1);
    assertThat(refused.err()).contains("UNAUTHENTICATED").contains("SLUICE_API_KEY");

    CliRun worker = CliRun.of("key", "create", "--role", "worker", "--resources", "openai:*", target,
        "--api-key=" + adminKey);
    assertThat(worker.exit()).as(worker.err()).isZero();
    String workerKey = worker.out().trim();

    CliRun list = CliRun.of("key", "list", target, "--api-key=" + adminKey);
    assertThat(list.exit()).as(list.err()).isZero();
    assertThat(list.out()).contains("admin", "ops laptop", "worker", "openai:*")
        .doesNotContain(adminKey).doesNotContain(workerKey);

    CliRun denied = CliRun.of("key", "list", target, "--api-key=" + workerKey);
    assertThat(denied.exit()).isEqualTo(1);
    assertThat(denied.err()).contains("PERMISSION_DENIED").contains("admin key");

    String workerId = workerKey.substring(4, 16);
    CliRun revoked = CliRun.of("key", "revoke", workerId, target, "--api-key=" + adminKey);
    assertThat(revoked.exit()).as(revoked.err()).isZero();
    assertThat(revoked.out()).contains("revoked key " + workerId);
    CliRun again = CliRun.of("key", "revoke", workerId, target, "--api-key=" + adminKey);
    assertThat(again.exit()).isEqualTo(1);
    assertThat(again.err()).contains("no key with id");
  }

  /** Issue 14: a first worker key is refused (it would lock every admin call out). */
  @Test
  void aFirstWorkerKeyIsRefused() {
    CliRun first = CliRun.of("key", "create", "--role", "worker", "--resources", "team1:*", target);
    assertThat(first.exit()).isEqualTo(1);
    assertThat(first.err()).hasLineCount(1).contains("FAILED_PRECONDITION", "create an admin key first");
    assertThat(dataDir.resolve("keys.json")).doesNotExist();
  }

  /**
   * Issue 14: a coordinator that cannot write its data dir answers UNAVAILABLE with its reason; the
   * CLI must not add "is the coordinator running?" to an answer the coordinator gave.
   */
  @Test
  void aDataDirTheCoordinatorCannotWriteIsNotBlamedOnAStoppedCoordinator() throws Exception {
    java.nio.file.Files.createDirectories(dataDir.resolve("keys.json")); // in the way of the next save
    CliRun run = CliRun.of("key", "create", "--role", "admin", target);
    assertThat(run.exit()).isEqualTo(1);
    assertThat(run.err()).hasLineCount(1).startsWith("error: UNAVAILABLE: cannot store the new key in")
        .contains("keys.json is a directory").doesNotContain("is the coordinator running");
  }

  /** Every admin key lost: stop the coordinator, write a new admin key into its data dir, start it again. */
  @Test
  void aLostAdminKeyIsRecoveredOfflineThroughTheDataDir() throws Exception {
    CliRun lost = CliRun.of("key", "create", "--role", "admin", "--description", "lost", target);
    assertThat(lost.exit()).as(lost.err()).isZero();
    server.close();

    CliRun offline = CliRun.of("key", "create", "--role", "admin", "--description", "recovery", "--data-dir",
        dataDir.toString());
    assertThat(offline.exit()).as(offline.err()).isZero();
    String recovered = offline.out().trim();
    assertThat(recovered).startsWith("slk_");
    assertThat(offline.err()).contains("Written to " + dataDir.resolve("keys.json"));

    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).build().start();
    target = "--target=127.0.0.1:" + server.port();
    CliRun list = CliRun.of("key", "list", target, "--api-key=" + recovered);
    assertThat(list.exit()).as(list.err()).isZero();
    assertThat(list.out()).contains("lost", "recovery");

    CliRun nowhere = CliRun.of("key", "create", "--role", "admin", "--data-dir", dataDir.resolve("typo").toString());
    assertThat(nowhere.exit()).isEqualTo(2);
    assertThat(nowhere.err()).contains("is not a directory");
  }

  @Test
  void aRoleIsRequiredAndMustBeKnown() {
    CliRun none = CliRun.of("key", "create", target);
    assertThat(none.exit()).isEqualTo(2);
    assertThat(none.err()).contains("--role");
    CliRun bad = CliRun.of("key", "create", "--role", "root", target);
    assertThat(bad.exit()).isEqualTo(2);
    assertThat(bad.err()).contains("worker").contains("admin");
  }
}
