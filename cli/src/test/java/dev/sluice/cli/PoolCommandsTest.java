package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.server.SluiceServer;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code sluice pool create|get|list|delete} against a real coordinator (memory store), the limit
 * commands on a pool's name, and each bad input refused with its fix.
 */
class PoolCommandsTest {

  @TempDir Path dataDir;
  private SluiceServer server;
  private String target;

  @BeforeEach
  void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).build().start();
    target = "127.0.0.1:" + server.port();
    for (String m : new String[] {"proj-a", "proj-b", "proj-c"}) {
      ok("limit", "set", m, "--rate", "requests=500/min");
    }
  }

  @AfterEach
  void stop() {
    server.close();
  }

  private CliRun sluice(String... args) {
    return CliRun.at(target, args);
  }

  private CliRun ok(String... args) {
    CliRun r = sluice(args);
    assertThat(r.exit()).as(r.err()).isZero();
    return r;
  }

  @Test
  void createGetListChangeAndDeleteAPoolWhoseMembersStay() {
    assertThat(ok("pool", "create", "openai", "--member", "proj-a", "--member", "proj-b").out())
        .isEqualTo("created pool openai: proj-a, proj-b" + System.lineSeparator());
    ok("pause", "proj-b");

    String get = ok("pool", "get", "openai").out();
    assertThat(get).startsWith("pool openai: 2 members")
        .containsPattern("proj-a +requests=500/min:\\d+ +- +no ")
        .containsPattern("proj-b +requests=500/min:\\d+ +- +until resumed ");
    assertThat(ok("pool", "get", "openai", "--json").out())
        .contains("\"members\": [{\"resource\":\"proj-a\"").contains("\"paused\":true").contains("\"missing\": []");

    assertThat(ok("pool", "list").out()).containsPattern("POOL +MEMBERS").containsPattern("openai +proj-a, proj-b")
        .doesNotContain("proj-c ");
    assertThat(ok("limit", "list").out()).containsPattern("openai +pool of proj-a, proj-b")
        .containsPattern("proj-c +requests=500/min");
    assertThat(ok("limit", "get", "openai").out())
        .contains("'openai' is a pool of proj-a, proj-b").contains("sluice pool get openai");

    assertThat(ok("pool", "create", "openai", "--member", "proj-c", "--member", "proj-a").out())
        .isEqualTo("changed pool openai: proj-c, proj-a" + System.lineSeparator());
    assertThat(ok("pool", "delete", "openai").out()).contains("deleted pool openai")
        .contains("its members keep their limits: proj-c, proj-a");
    assertThat(ok("pool", "list").out()).startsWith("no pools");
    assertThat(ok("limit", "list").out()).contains("proj-a").contains("proj-b").contains("proj-c");
  }

  @Test
  void aPoolWithoutMembersIsAUsageErrorBeforeAnyCall() {
    CliRun r = CliRun.of("pool", "create", "openai", "--target=127.0.0.1:1");
    assertThat(r.exit()).isEqualTo(2);
    assertThat(r.err()).contains("a pool needs at least one --member").contains("--member openai-proj-a");
  }

  @Test
  void badMembersAreRefusedNamingTheFix() {
    CliRun unknown = sluice("pool", "create", "openai", "--member", "proj-a", "--member", "nope");
    assertThat(unknown.exit()).isEqualTo(1);
    assertThat(unknown.err()).startsWith("error: NOT_FOUND: pool 'openai': member 'nope' has no limit")
        .contains("sluice limit set nope");

    ok("pool", "create", "inner", "--member", "proj-a");
    CliRun nested = sluice("pool", "create", "outer", "--member", "inner");
    assertThat(nested.exit()).isEqualTo(1);
    assertThat(nested.err()).contains("member 'inner' is itself a pool: a pool cannot be nested")
        .contains("list its members instead (proj-a)");

    ok("limit", "set", "shared", "--rate", "requests=500/min", "--share", "search=3");
    CliRun tenants = sluice("pool", "create", "mixed", "--member", "proj-a", "--member", "shared");
    assertThat(tenants.exit()).isEqualTo(1);
    assertThat(tenants.err()).contains("members 'proj-a' and 'shared' share tenants differently")
        .contains("give them the same --share, --floor and --cap");

    CliRun twice = sluice("pool", "create", "dup", "--member", "proj-a", "--member", "proj-a");
    assertThat(twice.exit()).isEqualTo(1);
    assertThat(twice.err()).contains("lists member 'proj-a' twice");

    CliRun overLimit = sluice("pool", "create", "proj-a", "--member", "proj-b");
    assertThat(overLimit.exit()).isEqualTo(1);
    assertThat(overLimit.err()).contains("'proj-a' is a resource with a limit of its own")
        .contains("sluice limit delete proj-a");
    assertThat(ok("pool", "list").out()).containsPattern("inner +proj-a").doesNotContain("outer")
        .doesNotContain("mixed").doesNotContain("dup");
  }

  @Test
  void limitCommandsOnAPoolNamePointToThePoolCommands() {
    ok("pool", "create", "openai", "--member", "proj-a", "--member", "proj-b");

    CliRun set = sluice("limit", "set", "openai", "--rate", "requests=10/s");
    assertThat(set.exit()).isEqualTo(1);
    assertThat(set.err()).startsWith("error: INVALID_ARGUMENT: 'openai' is a pool of proj-a, proj-b: delete the pool"
        + " first (sluice pool delete openai)");

    CliRun stats = sluice("stats", "openai");
    assertThat(stats.exit()).isEqualTo(1);
    assertThat(stats.err()).contains("'openai' is a pool of proj-a, proj-b")
        .contains("sluice pool get openai shows every member");

    CliRun getPlain = sluice("pool", "get", "proj-a");
    assertThat(getPlain.exit()).isEqualTo(1);
    assertThat(getPlain.err()).contains("'proj-a' is a resource with a limit of its own, not a pool")
        .contains("sluice limit get proj-a");
    CliRun deletePlain = sluice("pool", "delete", "proj-a");
    assertThat(deletePlain.exit()).isEqualTo(1);
    assertThat(ok("limit", "get", "proj-a").out()).contains("requests=500/min");
    CliRun missing = sluice("pool", "get", "nope");
    assertThat(missing.exit()).isEqualTo(1);
    assertThat(missing.err()).contains("no pool 'nope'").contains("sluice pool create nope --member");
  }

  @Test
  void aMemberDeletedSinceShowsAsMissing() {
    ok("pool", "create", "openai", "--member", "proj-a", "--member", "proj-b");
    ok("limit", "delete", "proj-b");
    assertThat(ok("pool", "get", "openai").out()).containsPattern("proj-b +no limit \\(deleted\\?\\)");
  }
}
