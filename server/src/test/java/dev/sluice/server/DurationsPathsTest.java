package dev.sluice.server;

import static dev.sluice.server.engine.SyncEngine.sync;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.PauseRequest;
import dev.sluice.server.engine.LimitSpec;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * One duration syntax and one set of bounds on every path (issue 14): the HTTP pause, acquire
 * and buffer definitions, and the gRPC pause refuse zero where it means nothing, negative,
 * overflowing and over-cap durations with a 400 / INVALID_ARGUMENT naming the field, the value
 * and the range, never a 500 and never an indefinite pause.
 */
class DurationsPathsTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  @TempDir static Path dataDir;
  private static SluiceServer server;
  private static ManagedChannel channel;
  private static final HttpClient http = HttpClient.newHttpClient();

  @BeforeAll
  static void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).build().start();
    sync(server.engine()).setLimit(new LimitSpec("r", List.of(), 5, 0, Duration.ofSeconds(30)));
    channel = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
  }

  @AfterAll
  static void stop() {
    channel.shutdownNow();
    server.close();
  }

  private static HttpResponse<String> post(String path, String body) throws Exception {
    return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.httpPort() + path))
        .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
  }

  private static void refused(String path, String body, String... words) throws Exception {
    HttpResponse<String> r = post(path, body);
    assertThat(r.statusCode()).as(path + " " + body + ": " + r.body()).isEqualTo(400);
    assertThat(JSON.readTree(r.body()).get("error").get("message").asText()).as(body).contains(words);
  }

  @Test
  void httpPauseRefusesEveryBadDurationAndPausesNothing() throws Exception {
    String range = "give a duration from 1ms to 1d, e.g. 30s";
    refused("/v1/resources/r/pause", "{\"for\": \"PT-5S\"}", "for 'PT-5S' is negative", range);
    refused("/v1/resources/r/pause", "{\"for\": \"PT2562047H\"}", "for 'PT2562047H' is too long", range);
    refused("/v1/resources/r/pause", "{\"for\": \"0s\"}", "for '0s' is 0: a pause of 0 does nothing", range);
    refused("/v1/resources/r/pause", "{\"seconds\": 0}", "seconds '0' is 0", range);
    refused("/v1/resources/r/pause", "{\"seconds\": -5}", "seconds '-5' is negative", range);
    refused("/v1/resources/r/pause", "{\"seconds\": 86401}", "seconds '86401' is too long", range);
    refused("/v1/resources/r/pause", "{\"for\": \"99999999999999999999s\"}", "is too long", range);
    refused("/v1/resources/r/pause", "{\"seconds\": 99999999999999999999}", "is too long", range);
    refused("/v1/resources/r/pause", "{\"seconds\": 1, \"for\": \"1s\"}", "not both");
    assertThat(sync(server.engine()).stats("r").paused()).isFalse();
    HttpResponse<String> ok = post("/v1/resources/r/pause", "{\"for\": \"1.5s\"}");
    assertThat(ok.statusCode()).as(ok.body()).isEqualTo(200);
    sync(server.engine()).resume("r");
  }

  @Test
  void httpAcquireTimeoutsHaveTheSameSyntax() throws Exception {
    refused("/v1/resources/r/acquire?timeout=99999999999999999999s", "{}", "timeout '99999999999999999999s' is too"
        + " long", "give a duration from 0s to 1d");
    refused("/v1/resources/r/acquire", "{\"timeout\": \"PT-1S\"}", "timeout 'PT-1S' is negative");
    refused("/v1/resources/r/acquire", "{\"timeout\": 1e2147483648}", "timeout");
  }

  @Test
  void bufferDurationsAreRefusedNotA500() throws Exception {
    String url = "\"url\": \"http://127.0.0.1:9/x\", \"resource\": \"r\"";
    refused("/v1/buffers", "{\"name\": \"b1\", " + url + ", \"timeout\": \"99999999999999999999s\"}",
        "timeout '99999999999999999999s' is too long");
    refused("/v1/buffers", "{\"name\": \"b2\", " + url + ", \"backoffBase\": \"PT-5S\"}",
        "backoffBase 'PT-5S' is negative");
    refused("/v1/buffers", "{\"name\": \"b3\", " + url + ", \"timeout\": \"PT-5S\"}", "timeout 'PT-5S' is negative");
    refused("/v1/buffers", "{\"name\": \"b4\", " + url + ", \"timeout\": -1}", "timeout '-1' is negative");
  }

  @Test
  void grpcPauseHasThePauseBounds() {
    var admin = AdminGrpc.newBlockingStub(channel);
    for (var d : List.of(com.google.protobuf.Duration.newBuilder().build(),
        com.google.protobuf.Duration.newBuilder().setSeconds(-5).build(),
        com.google.protobuf.Duration.newBuilder().setSeconds(2562047L * 3600).build())) {
      assertThatThrownBy(() -> admin.pause(PauseRequest.newBuilder().setResource("r").setDuration(d).build()))
          .as("%s", d).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
            assertThat(e.getStatus().getDescription()).startsWith("duration '").contains("give a duration from 1ms"
                + " to 1d");
          });
    }
    assertThat(sync(server.engine()).stats("r").paused()).isFalse();
    assertThat(admin.pause(PauseRequest.newBuilder().setResource("r").setDuration(
        com.google.protobuf.Duration.newBuilder().setSeconds(30)).build()).getPausedFor().getSeconds()).isEqualTo(30);
    sync(server.engine()).resume("r");
  }
}
