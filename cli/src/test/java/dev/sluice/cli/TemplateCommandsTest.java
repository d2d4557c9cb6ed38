package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.SluiceServer;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Templates from the command line against a real coordinator: {@code limit set} with a glob
 * sets a template, {@code limit get NAME} says which template applies, {@code limit list}
 * shows templates apart, {@code limit delete} takes the pattern, and a file's templates apply,
 * export and survive a restart.
 */
class TemplateCommandsTest {

  @TempDir Path dir;
  private SluiceServer server;
  private String target;

  @BeforeEach
  void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dir.resolve("data")).build().start();
    target = "127.0.0.1:" + server.port();
  }

  @AfterEach
  void stop() {
    server.close();
  }

  private CliRun sluice(String... args) {
    return CliRun.at(target, args);
  }

  @Test
  void aGlobNameSetsATemplateThatLimitGetNames() throws Exception {
    CliRun set = sluice("limit", "set", "customer:*", "--rate", "requests=60/min");
    assertThat(set.exit()).as(set.err()).isZero();
    assertThat(set.out()).startsWith("created template customer:*");
    assertThat(sluice("limit", "set", "customer:gold:*", "--rate", "requests=600/min").exit()).isZero();
    assertThat(sluice("limit", "set", "customer:vip", "--concurrency", "3").exit()).isZero();

    CliRun get = sluice("limit", "get", "customer:42");
    assertThat(get.exit()).as(get.err()).isZero();
    assertThat(get.out()).contains("customer:42: no limit of its own, from template 'customer:*'")
        .contains("requests=60/min");
    assertThat(sluice("limit", "get", "customer:gold:1").out()).contains("from template 'customer:gold:*'");
    assertThat(sluice("limit", "get", "customer:vip").out()).doesNotContain("template");
    CliRun none = sluice("limit", "get", "vendor:1");
    assertThat(none.exit()).isNotZero();
    assertThat(none.err()).contains("has no limit and no template matches it");

    CliRun list = sluice("limit", "list");
    assertThat(list.out()).contains("customer:vip").contains("TEMPLATE").contains("customer:gold:*");

    CliRun bad = sluice("limit", "set", "*", "--rate", "requests=1/s");
    assertThat(bad.exit()).isNotZero();
    assertThat(bad.err()).contains("starts with '*'").contains("customer:*");

    assertThat(sluice("limit", "delete", "customer:gold:*").out()).contains("deleted template customer:gold:*");
    assertThat(sluice("limit", "get", "customer:gold:1").out()).contains("from template 'customer:*'");
    CliRun gone = sluice("limit", "delete", "customer:gold:*");
    assertThat(gone.exit()).isNotZero();
    assertThat(gone.err()).contains("no template 'customer:gold:*'");

    // Stored durably: a restart on the same data directory has it.
    int port = server.port();
    server.close();
    server = SluiceServer.builder().host("127.0.0.1").port(port).dataDir(dir.resolve("data")).build().start();
    assertThat(sluice("limit", "get", "customer:7").out()).contains("from template 'customer:*'");
  }

  @Test
  void aFilesTemplatesApplyAndExportBack() throws Exception {
    Path f = dir.resolve("limits.yaml");
    Files.writeString(f, """
        resources:
          customer:vip: {concurrency: 3}
        templates:
          "customer:*":
            rates: [{dimension: requests, amount: 60, period: 1m}]
        """);
    CliRun applied = sluice("limit", "apply", "-f", f.toString());
    assertThat(applied.exit()).as(applied.err()).isZero();
    assertThat(applied.out()).contains("+ customer:*").contains("2 added");
    assertThat(sluice("limit", "apply", "-f", f.toString()).out()).contains("no changes");

    CliRun export = sluice("limit", "export");
    assertThat(export.out()).contains("templates:").contains("customer:*");
    Path back = dir.resolve("export.yaml");
    Files.writeString(back, export.out());
    assertThat(sluice("limit", "apply", "-f", back.toString(), "--prune").out()).contains("no changes");

    Files.writeString(f, "templates:\n  \"*\": {concurrency: 1}\n");
    CliRun bad = sluice("limit", "apply", "-f", f.toString());
    assertThat(bad.exit()).isEqualTo(2);
    assertThat(bad.err()).contains("limits.yaml:2:3").contains("starts with '*'");
  }
}
