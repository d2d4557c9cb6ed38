package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.Role;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Tenants on the HTTP port: the {@code tenant} of an acquire, a key bound to a tenant (403 for
 * another), and a limit's shares, floors and caps set with {@code POST .../limit} and read back,
 * the engine's refusals answered 400 with its message.
 */
@ExtendWith(NettyLeakCheck.class)
class HttpTenantsTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String LIMIT = """
      {"rates": [{"dimension": "requests", "amount": 600, "period": "1m", "burst": 100},
                 {"dimension": "tokens", "amount": 6000, "periodSeconds": 60, "burst": 1000}],
       "shares": {"search": 3, "batch": 0.5},
       "floors": {"search": 0.4},
       "caps": {"research": [{"dimension": "tokens", "amount": 1000, "period": 60}]}}
      """;

  @TempDir Path dataDir;
  private SluiceServer server;
  private ManagedChannel channel;
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  @BeforeEach
  void start() throws Exception {
    server = SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dataDir)
        .shutdownGrace(Duration.ZERO).build().start();
    channel = ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
  }

  @AfterEach
  void stop() {
    channel.shutdownNow();
    server.close();
  }

  private HttpResponse<String> post(String path, String body, String key) throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.httpPort() + path))
        .timeout(Duration.ofSeconds(30)).header("Content-Type", "application/json")
        .POST(body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
    if (key != null) {
      b.header("Authorization", "Bearer " + key);
    }
    return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  private HttpResponse<String> get(String path, String key) throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.httpPort() + path))
        .timeout(Duration.ofSeconds(30));
    if (key != null) {
      b.header("Authorization", "Bearer " + key);
    }
    return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  private static void refused(HttpResponse<String> r, int status, String code, String... words) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(status);
    JsonNode e = JSON.readTree(r.body()).get("error");
    assertThat(e.get("code").asText()).isEqualTo(code);
    for (String w : words) {
      assertThat(e.get("message").asText()).contains(w);
    }
  }

  private AdminGrpc.AdminBlockingStub admin(String key) {
    var stub = AdminGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS);
    if (key == null) {
      return stub;
    }
    Metadata h = new Metadata();
    h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
    return stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h));
  }

  private static void assertPolicy(JsonNode limit) {
    assertThat(limit.get("shares").get("search").asDouble()).isEqualTo(3.0);
    assertThat(limit.get("shares").get("batch").asDouble()).isEqualTo(0.5);
    assertThat(limit.get("floors").get("search").asDouble()).isEqualTo(0.4);
    JsonNode cap = limit.get("caps").get("research");
    assertThat(cap.size()).isEqualTo(1);
    assertThat(cap.get(0).get("dimension").asText()).isEqualTo("tokens");
    assertThat(cap.get(0).get("amount").asLong()).isEqualTo(1000);
    assertThat(cap.get(0).get("periodSeconds").asDouble()).isEqualTo(60.0);
    assertThat(cap.get(0).get("burst").asLong()).as("the default: 1 s of the rate").isEqualTo(16);
  }

  @Test
  void aLimitWithItsPolicyIsSetOverHttpReadBackThereAndOverGrpcAndSentBackAsRead() throws Exception {
    HttpResponse<String> set = post("/v1/resources/teams/limit", LIMIT, null);
    assertThat(set.statusCode()).as(set.body()).isEqualTo(200);
    JsonNode answer = JSON.readTree(set.body());
    assertThat(answer.get("created").asBoolean()).isTrue();
    assertPolicy(answer.get("limit"));

    JsonNode read = JSON.readTree(get("/v1/resources/teams", null).body()).get("limit");
    assertPolicy(read);
    Limit grpc = admin(null).getLimit(GetLimitRequest.newBuilder().setResource("teams").build());
    assertThat(grpc.getSharesMap()).isEqualTo(Map.of("batch", 0.5, "search", 3.0));
    assertThat(grpc.getFloorsMap()).isEqualTo(Map.of("search", 0.4));

    // What a read answers can be sent back as it is (perSecond and all): the same limit, replaced.
    HttpResponse<String> again = post("/v1/resources/teams/limit", read.toString(), null);
    assertThat(again.statusCode()).as(again.body()).isEqualTo(200);
    assertThat(JSON.readTree(again.body()).get("created").asBoolean()).isFalse();
    assertPolicy(JSON.readTree(again.body()).get("limit"));

    // A learned limit with a jitter, read and sent back: the same settings, replaced.
    String learned = "{\"rates\": [{\"dimension\": \"requests\", \"amount\": 60, \"period\": \"1m\", \"burst\": 1}],"
        + " \"jitterSeconds\": 0.01, \"learn\": {\"provider\": \"openai\", \"ceilingsPerMinute\": {\"requests\": 500}}}";
    assertThat(post("/v1/resources/taught/limit", learned, null).statusCode()).isEqualTo(200);
    JsonNode back = JSON.readTree(get("/v1/resources/taught", null).body()).get("limit");
    HttpResponse<String> resent = post("/v1/resources/taught/limit", back.toString(), null);
    assertThat(resent.statusCode()).as(resent.body()).isEqualTo(200);
    JsonNode kept = JSON.readTree(resent.body()).get("limit");
    assertThat(kept.get("jitterSeconds").asDouble()).isEqualTo(0.01);
    assertThat(kept.get("learn").get("provider").asText()).isEqualTo("openai");
    assertThat(kept.get("learn").get("ceilingsPerMinute").get("requests").asDouble()).isEqualTo(500.0);
  }

  @Test
  void aHeldDimensionIsSetOverHttpReadBackWithWhatIsHeldAndSentBackAsRead() throws Exception {
    HttpResponse<String> set = post("/v1/resources/queue/limit",
        "{\"holds\": {\"enqueued_tokens\": 2000000}, \"lease\": \"10m\"}", null);
    assertThat(set.statusCode()).as(set.body()).isEqualTo(200);
    JsonNode read = JSON.readTree(get("/v1/resources/queue", null).body());
    assertThat(read.get("limit").get("holds").get("enqueued_tokens").asLong()).isEqualTo(2_000_000L);
    assertThat(read.get("held").get("enqueued_tokens").asDouble()).isEqualTo(0.0);
    assertThat(read.get("available").get("enqueued_tokens").asDouble()).isEqualTo(2_000_000.0);
    Limit grpc = admin(null).getLimit(GetLimitRequest.newBuilder().setResource("queue").build());
    assertThat(grpc.getHoldsMap()).isEqualTo(Map.of("enqueued_tokens", 2_000_000L));
    HttpResponse<String> again = post("/v1/resources/queue/limit", read.get("limit").toString(), null);
    assertThat(again.statusCode()).as(again.body()).isEqualTo(200);
    assertThat(JSON.readTree(again.body()).get("created").asBoolean()).isFalse();

    refused(post("/v1/resources/queue/limit", "{\"holds\": [5]}", null), 400, "INVALID_ARGUMENT",
        "holds must be an object of dimension");
    refused(post("/v1/resources/queue/limit", "{\"holds\": {\"q\": 1.5}}", null), 400, "INVALID_ARGUMENT",
        "holds.q is 1.5: give a whole number");
    refused(post("/v1/resources/queue/limit", "{\"holds\": {\"q\": 0}}", null), 400, "INVALID_ARGUMENT",
        "held q=0 on 'queue' is out of range");
  }

  @Test
  void theEnginesRangeChecksAndBadShapesAre400WithTheirMessage() throws Exception {
    String rates = "\"rates\": [{\"dimension\": \"tokens\", \"amount\": 6000, \"period\": \"1m\"}]";
    refused(post("/v1/resources/t/limit", "{" + rates + ", \"floors\": {\"a\": 0.7, \"b\": 0.6}}", null), 400,
        "INVALID_ARGUMENT", "the floors of 't' sum to 130.0 %", "lower some");
    refused(post("/v1/resources/t/limit", "{" + rates + ", \"shares\": {\"a\": -1}}", null), 400,
        "INVALID_ARGUMENT", "share a=-1.0 is out of range");
    refused(post("/v1/resources/t/limit", "{" + rates + ", \"caps\": {\"a\": [{\"dimension\": \"tokens\","
        + " \"amount\": 7000, \"period\": \"1m\"}]}}", null), 400, "INVALID_ARGUMENT", "is above the quota itself");
    refused(post("/v1/resources/t/limit", "{" + rates + ", \"shares\": {\"a\": \"3\"}}", null), 400,
        "INVALID_ARGUMENT", "shares.a is \"3\": give a number");
    refused(post("/v1/resources/t/limit", "{" + rates + ", \"floors\": [0.4]}", null), 400,
        "INVALID_ARGUMENT", "floors must be an object of tenant to number", "0.4 is 40 %");
    refused(post("/v1/resources/t/limit", "{" + rates + ", \"caps\": {\"a\": {\"tokens\": 5}}}", null), 400,
        "INVALID_ARGUMENT", "caps.a must be a list of rates");
    refused(post("/v1/resources/t/limit", "{\"rates\": [{\"dimension\": \"tokens\", \"amount\": 5}]}", null), 400,
        "INVALID_ARGUMENT", "rates[0] needs its period once");
    refused(post("/v1/resources/t/limit", "{\"rates\": [{\"dimension\": \"tokens\", \"amount\": 5, \"period\": 1,"
        + " \"per\": 2}]}", null), 400, "INVALID_ARGUMENT", "unknown field 'per' in rates[0]");
    refused(post("/v1/resources/t/limit", "{\"rate\": []}", null), 400, "INVALID_ARGUMENT",
        "unknown field 'rate'", "rates, concurrency");
    refused(post("/v1/resources/t/limit", "{" + rates + ", \"shares\": {\"a b\": 2}}", null), 400,
        "INVALID_ARGUMENT", "tenant name 'a b' is invalid");
    refused(get("/v1/resources/t", null), 404, "NOT_FOUND");
  }

  @ParameterizedTest
  @CsvSource(delimiter = '|', quoteCharacter = '`', value = {
      "{\"rates\": {}}|rates must be a list of rates",
      "{\"rates\": [3]}|rates[0] must be an object",
      "{\"rates\": [{\"amount\": 5, \"period\": 1}]}|rates[0].dimension is missing",
      "{\"rates\": [{\"dimension\": \"t\", \"period\": 1}]}|rates[0].amount is missing",
      "{\"rates\": [{\"dimension\": \"t\", \"amount\": 1.5, \"period\": 1}]}|rates[0].amount is 1.5: give a whole number",
      "{\"rates\": [{\"dimension\": \"t\", \"amount\": 5, \"periodSeconds\": \"1m\"}]}|rates[0].periodSeconds must be a number of seconds",
      "{\"rates\": [{\"dimension\": \"t\", \"amount\": 5, \"period\": 1, \"periodSeconds\": 1}]}|needs its period once",
      "{\"rates\": [{\"dimension\": \"t\", \"amount\": 5, \"period\": \"soon\"}]}|rates[0].period",
      "{\"concurrency\": 2, \"maxWaiting\": 3000000000}|maxWaiting 3000000000 is too large",
      "{\"concurrency\": \"2\"}|concurrency is \"2\": give a whole number",
      "{\"concurrency\": 2, \"leaseSeconds\": -1}|leaseSeconds",
      "{\"concurrency\": 2, \"caps\": [1]}|caps must be an object of tenant to a list of rates",
      "{\"concurrency\": 2, \"shares\": 3}|shares must be an object of tenant to number",
      "{\"concurrency\": 2, \"jitterSeconds\": -1}|jitterSeconds",
      "{\"concurrency\": 2, \"learn\": \"openai\"}|learn must be an object naming its provider",
      "{\"concurrency\": 2, \"learn\": {\"provider\": \"openai\", \"ceilingsPerMinute\": 5}}|learn.ceilingsPerMinute must be an object",
  })
  void aMalformedLimitBodyIs400NamingTheFieldAndTheFix(String body, String words) throws Exception {
    refused(post("/v1/resources/m/limit", body, null), 400, "INVALID_ARGUMENT", words);
    refused(get("/v1/resources/m", null), 404, "NOT_FOUND");
  }

  @Test
  void theTenantOfAnAcquireIsCheckedAndAKeyBoundToATenantRefusesAnotherWith403() throws Exception {
    assertThat(post("/v1/resources/teams/limit", LIMIT, null).statusCode()).isEqualTo(200);
    // Open coordinator: any valid tenant; a bad one is 400 naming the fix.
    HttpResponse<String> open = post("/v1/resources/teams/acquire", "{\"tenant\": \"ads\"}", null);
    assertThat(open.statusCode()).as(open.body()).isEqualTo(200);
    refused(post("/v1/resources/teams/acquire", "{\"tenant\": \"a b\"}", null), 400, "INVALID_ARGUMENT",
        "tenant name 'a b' is invalid", "e.g. 'search'");
    refused(post("/v1/resources/teams/acquire", "{\"tenant\": 3}", null), 400, "INVALID_ARGUMENT",
        "tenant must be a string");

    String adminKey = admin(null).createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN).build()).getKey();
    String bound = admin(adminKey).createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER)
        .setTenant("search").build()).getKey();
    assertThat(post("/v1/resources/teams/acquire", "{}", bound).statusCode()).isEqualTo(200);
    assertThat(post("/v1/resources/teams/acquire", "{\"tenant\": \"search\"}", bound).statusCode()).isEqualTo(200);
    refused(post("/v1/resources/teams/acquire", "{\"tenant\": \"ads\"}", bound), 403, "PERMISSION_DENIED",
        "is bound to tenant 'search' and cannot acquire as tenant 'ads'");

    // Setting a limit is an admin call.
    refused(post("/v1/resources/teams/limit", LIMIT, bound), 403, "PERMISSION_DENIED",
        "setting a limit is an admin call", "use an admin key");
    refused(post("/v1/resources/teams/limit", LIMIT, null), 401, "UNAUTHENTICATED");
    assertThat(post("/v1/resources/teams/limit", LIMIT, adminKey).statusCode()).isEqualTo(200);
  }
}
