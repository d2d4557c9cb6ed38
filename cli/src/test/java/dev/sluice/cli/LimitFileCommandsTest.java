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
 * {@code sluice limit apply -f} and {@code sluice limit export} against a real coordinator: the
 * diff, dry run, idempotence, prune, exit codes for scripts, and export read back unchanged.
 */
class LimitFileCommandsTest {

  @TempDir Path dir;
  private SluiceServer server;
  private String target;

  private static final String FILE = """
      # the quotas of our two keys, and a pool over them
      resources:
        openai-a:
          rates:
            - {dimension: requests, amount: 500, period: 1m}
            - {dimension: tokens, amount: 200000, period: 1m}
        openai-b:
          rates: [{dimension: requests, amount: 500, period: 1m}]
        shop:
          concurrency: 10
      pools:
        openai: [openai-a, openai-b]
      """;

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

  private Path file(String name, String text) throws Exception {
    Path p = dir.resolve(name);
    Files.writeString(p, text);
    return p;
  }

  @Test
  void dryRunThenApplyThenNoChanges() throws Exception {
    Path f = file("limits.yaml", FILE);
    assertThat(sluice("limit", "set", "manual", "--concurrency", "3").exit()).isZero();

    CliRun dry = sluice("limit", "apply", "-f", f.toString(), "--dry-run");
    assertThat(dry.exit()).as(dry.err()).isZero();
    assertThat(dry.out()).contains("+ openai-a").contains("    rates.requests 500/1m burst")
        .contains("+ openai").contains("    members openai-a,openai-b")
        .contains("? manual (not in limits.yaml: left as it is; --prune removes it)")
        .contains("dry run, nothing applied: 4 added, 0 changed, 0 removed, 1 not in the file");
    assertThat(sluice("limit", "list").out()).doesNotContain("openai-a");

    CliRun applied = sluice("limit", "apply", "-f", f.toString());
    assertThat(applied.exit()).as(applied.err()).isZero();
    assertThat(applied.out()).containsPattern("applied limits.yaml \\(sha256 [0-9a-f]{12}\\): 4 added");
    assertThat(sluice("pool", "get", "openai").out()).contains("2 members");

    CliRun again = sluice("limit", "apply", "-f", f.toString());
    assertThat(again.exit()).isZero();
    assertThat(again.out()).endsWith("no changes (1 not in the file, left as they are)" + System.lineSeparator());

    Files.writeString(f, FILE.replace("concurrency: 10", "concurrency: 20"));
    CliRun pruned = sluice("limit", "apply", "--file", f.toString(), "--prune");
    assertThat(pruned.exit()).as(pruned.err()).isZero();
    assertThat(pruned.out()).contains("~ shop").contains("    concurrency 10 → 20").contains("- manual")
        .contains("1 changed, 1 removed");
    assertThat(sluice("limit", "list").out()).doesNotContain("manual");
  }

  @Test
  void exportThenApplyChangesNothing() throws Exception {
    assertThat(sluice("limit", "apply", "-f", file("limits.yaml", FILE).toString()).exit()).isZero();
    assertThat(sluice("limit", "set", "tier", "--rate", "requests=60/min:1", "--share", "search=3",
        "--floor", "search=40%").exit()).isZero();
    Path out = dir.resolve("exported.yaml");
    CliRun export = sluice("limit", "export", "-o", out.toString());
    assertThat(export.exit()).as(export.err()).isZero();
    assertThat(Files.readString(out)).contains("tier:").contains("period: 1m").contains("search: 0.4")
        .contains("openai:");
    CliRun back = sluice("limit", "apply", "-f", out.toString(), "--prune");
    assertThat(back.exit()).as(back.err()).isZero();
    assertThat(back.out()).isEqualTo("no changes" + System.lineSeparator());
    assertThat(sluice("limit", "export").out()).isEqualTo(Files.readString(out));
  }

  @Test
  void aBadFileExitsTwoWithItsLineAndColumnAndChangesNothing() throws Exception {
    Path bad = file("bad.yaml", "resources:\n  shop:\n    concurrency: 10\n    leese: 30s\n");
    CliRun r = sluice("limit", "apply", "-f", bad.toString());
    assertThat(r.exit()).isEqualTo(2);
    assertThat(r.err()).startsWith("error: bad.yaml:4:5: resource 'shop': unknown field 'leese'");
    assertThat(sluice("limit", "list").out()).doesNotContain("shop");

    CliRun missing = sluice("limit", "apply", "-f", dir.resolve("nope.yaml").toString());
    assertThat(missing.exit()).isEqualTo(2);
    assertThat(missing.err()).contains("does not exist");
  }

  @Test
  void aChangeTheCoordinatorRefusesExitsOne() throws Exception {
    Path f = file("pool.yaml", "resources:\n  a: {concurrency: 1}\npools:\n  p: [a, missing]\n");
    CliRun r = sluice("limit", "apply", "-f", f.toString());
    assertThat(r.exit()).as(r.out()).isEqualTo(1);
    assertThat(r.err()).contains("1 of 2 changes applied, then:").contains("missing");
  }

  @Test
  void aLimitTheFileManagesIsRefusedByHandUnlessForcedThenTheApplyReportsDriftAndTheHistoryShowsAll()
      throws Exception {
    Path f = file("limits.yaml", FILE);
    assertThat(sluice("limit", "apply", "-f", f.toString()).exit()).isZero();
    CliRun get = sluice("limit", "get", "shop");
    assertThat(get.out()).containsPattern("managed by +limits file limits.yaml \\(sha256 [0-9a-f]{12}\\)");

    CliRun refused = sluice("limit", "set", "shop", "--concurrency", "12");
    assertThat(refused.exit()).isEqualTo(1);
    assertThat(refused.err()).contains("FAILED_PRECONDITION").contains("resource 'shop' is managed by limits file"
        + " limits.yaml").contains("edit limits.yaml and apply it, or pass --force");
    CliRun delete = sluice("limit", "delete", "shop");
    assertThat(delete.exit()).isEqualTo(1);
    assertThat(delete.err()).contains("pass --force to delete it");

    CliRun forced = sluice("limit", "set", "shop", "--concurrency", "12", "--force");
    assertThat(forced.exit()).as(forced.err()).isZero();
    assertThat(forced.out()).contains("hand, since forced; before: limits file limits.yaml");

    CliRun dry = sluice("limit", "apply", "-f", f.toString(), "--dry-run");
    assertThat(dry.out()).contains("! shop").contains("    drifted: changed by hand since the file was applied")
        .contains("    concurrency 12 → 10").contains("1 drifted (changed by hand, put back)");
    assertThat(sluice("limit", "apply", "-f", f.toString()).out()).contains("1 drifted");

    CliRun other = sluice("limit", "apply", "-f", file("team.yaml", "resources:\n  shop: {concurrency: 3}\n")
        .toString());
    assertThat(other.exit()).isEqualTo(1);
    assertThat(other.err()).contains("resource 'shop' is managed by limits file limits.yaml").contains("not by team.yaml");
    assertThat(sluice("limit", "apply", "-f", dir.resolve("team.yaml").toString(), "--force").exit()).isZero();
    assertThat(sluice("limit", "delete", "shop", "--force").exit()).isZero();

    CliRun history = sluice("limit", "history", "shop");
    assertThat(history.exit()).as(history.err()).isZero();
    assertThat(history.out().lines().filter(l -> !l.startsWith(" ")).toList()).satisfiesExactly(
        l -> assertThat(l).matches("20\\d\\d-.*Z  deleted by local"),
        l -> assertThat(l).matches(".*  changed by local, file team.yaml sha256:[0-9a-f]{12}"),
        l -> assertThat(l).matches(".*  changed by local, file limits.yaml sha256:[0-9a-f]{12}"),
        l -> assertThat(l).endsWith("  changed by local"),
        l -> assertThat(l).matches(".*  created by local, file limits.yaml sha256:[0-9a-f]{12}"));
    assertThat(history.out()).contains("    concurrency 10 → 12");
    assertThat(sluice("limit", "history", "shop", "-n", "1").out().lines().filter(l -> !l.startsWith(" ")))
        .hasSize(1);
    assertThat(sluice("limit", "history", "shop", "--json").out()).contains("\"who\": \"local\"");
    assertThat(sluice("limit", "history", "never-set").out()).startsWith("no changes of 'never-set' kept");
    CliRun bad = sluice("limit", "history", "shop", "-n", "0");
    assertThat(bad.exit()).isEqualTo(2);
    assertThat(bad.err()).contains("-n 0 is out of range: use 1 to 50");
    CliRun badName = sluice("limit", "history", "no way");
    assertThat(badName.exit()).isEqualTo(1);
    assertThat(badName.err()).contains("INVALID_ARGUMENT");
  }

  @Test
  void aPoolTheFileManagesIsChangedOrDeletedOnlyWithForce() throws Exception {
    assertThat(sluice("limit", "apply", "-f", file("limits.yaml", FILE).toString()).exit()).isZero();
    CliRun create = sluice("pool", "create", "openai", "--member", "openai-a");
    assertThat(create.exit()).isEqualTo(1);
    assertThat(create.err()).contains("resource 'openai' is managed by limits file limits.yaml");
    CliRun delete = sluice("pool", "delete", "openai");
    assertThat(delete.exit()).isEqualTo(1);
    assertThat(delete.err()).contains("pass --force to delete it");
    assertThat(sluice("pool", "create", "openai", "--member", "openai-a", "--force").exit()).isZero();
    assertThat(sluice("pool", "delete", "openai", "--force").exit()).isZero();
    assertThat(sluice("limit", "history", "openai").out()).contains("deleted by local")
        .contains("changed by local").contains("members openai-a,openai-b → openai-a");
  }
}
