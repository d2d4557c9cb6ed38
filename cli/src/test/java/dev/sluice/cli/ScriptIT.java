package dev.sluice.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.util.JsonFormat;
import dev.sluice.proto.v1.GetStatsResponse;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.ListLimitsResponse;
import dev.sluice.server.SluiceServer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The real {@code bin/sluice} against a coordinator in this JVM. */
class ScriptIT {

  @TempDir
  static Path dataDir;
  static SluiceServer server;
  static Map<String, String> env;

  @BeforeAll
  static void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).dataDir(dataDir).build().start();
    env = Map.of("SLUICE_TARGET", "127.0.0.1:" + server.port());
  }

  @AfterAll
  static void stop() {
    server.close();
  }

  @Test
  void limitLifecycleWithExitCodes() throws Exception {
    Script.Result set = Script.run(env, "limit", "set", "it:openai",
        "--rate", "requests=500/min", "--rate", "tokens=200000/min:4000", "--concurrency", "50");
    assertThat(set.exit()).as(set.err()).isZero();
    assertThat(set.out()).startsWith("created limit it:openai").contains("tokens=200000/min:4000");
    assertThat(set.err()).isEmpty();

    Script.Result get = Script.run(env, "limit", "get", "it:openai");
    assertThat(get.exit()).isZero();
    assertThat(get.out()).containsPattern("concurrency +50");

    Script.Result getJson = Script.run(env, "limit", "get", "it:openai", "--json");
    Limit.Builder limit = Limit.newBuilder();
    JsonFormat.parser().merge(getJson.out(), limit);
    assertThat(limit.getRatesList()).hasSize(2);
    assertThat(limit.getConcurrency()).isEqualTo(50);

    Script.Result list = Script.run(env, "limit", "list", "--prefix", "it:", "--json");
    assertThat(list.exit()).isZero();
    ListLimitsResponse.Builder limits = ListLimitsResponse.newBuilder();
    JsonFormat.parser().merge(list.out(), limits);
    assertThat(limits.getLimitsList()).extracting(Limit::getResource).containsExactly("it:openai");
    assertThat(Script.run(env, "limit", "list").out()).contains("it:openai");

    Script.Result pause = Script.run(env, "pause", "it:openai", "--for", "30s");
    assertThat(pause.exit()).isZero();
    assertThat(pause.out()).startsWith("paused it:openai for ");
    Script.Result stats = Script.run(env, "stats", "it:openai", "--json");
    assertThat(stats.exit()).isZero();
    GetStatsResponse.Builder response = GetStatsResponse.newBuilder();
    JsonFormat.parser().merge(stats.out(), response);
    assertThat(response.getResources(0).getPaused()).isTrue();

    Script.Result resume = Script.run(env, "resume", "it:openai");
    assertThat(resume.exit()).isZero();
    Script.Result statsText = Script.run(env, "stats");
    assertThat(statsText.exit()).isZero();
    assertThat(statsText.out()).contains("RESOURCE").containsPattern("it:openai .* no\\R");

    Script.Result delete = Script.run(env, "limit", "delete", "it:openai");
    assertThat(delete.exit()).isZero();
    assertThat(delete.out()).isEqualTo("deleted limit it:openai\n");

    Script.Result gone = Script.run(env, "limit", "get", "it:openai");
    assertThat(gone.exit()).isEqualTo(1);
    assertThat(gone.out()).isEmpty();
    assertThat(gone.err()).hasLineCount(1).startsWith("error: NOT_FOUND: ").contains("it:openai");
  }

  @Test
  void badRateIsExitTwoWithOneLine() {
    Script.Result run = Script.run(env, "limit", "set", "it:bad", "--rate", "requests=500/fortnight");
    assertThat(run.exit()).isEqualTo(2);
    assertThat(run.out()).isEmpty();
    assertThat(run.err()).hasLineCount(1)
        .startsWith("error: invalid value for --rate: bad rate 'requests=500/fortnight': unknown period")
        .contains("e.g. requests=500/min or tokens=200000/min:4000");
  }

  @Test
  void targetOptionBeatsTheEnvironmentAndUnreachableIsExitOne() {
    Script.Result run = Script.run(env, "limit", "list", "--target", "127.0.0.1:1");
    assertThat(run.exit()).isEqualTo(1);
    assertThat(run.err()).hasLineCount(1).startsWith("error: UNAVAILABLE: ")
        .contains("is the coordinator running at 127.0.0.1:1? start it with `bin/sluice serve`");
  }

  @Test
  void followsSymlinksToFindTheJar(@TempDir Path dir) throws Exception {
    Path link = Files.createSymbolicLink(dir.resolve("sluice"), Script.PATH);
    Script.Result run;
    try {
      run = Script.run(link, env, "--version");
    } finally {
      Files.delete(link); // before @TempDir's cleanup, which warns about links leaving it
    }
    assertThat(run.exit()).as(run.err()).isZero();
    assertThat(run.out()).startsWith("sluice 0.1.0-SNAPSHOT");
  }

  @Test
  void missingJarIsOneLineAndExitTwo(@TempDir Path dir) throws Exception {
    Path copy = Script.copyTo(dir); // dir/bin/sluice, with no dir/cli/target/sluice.jar
    Script.Result run = Script.run(copy, env, "limit", "list");
    assertThat(run.exit()).isEqualTo(2);
    assertThat(run.err()).isEqualTo("sluice.jar not built: run ./mvnw -q -DskipTests package\n");
  }
}
