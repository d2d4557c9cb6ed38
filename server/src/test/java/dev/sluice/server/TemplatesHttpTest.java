package dev.sluice.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.Role;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code /v1/templates} on a real coordinator: put, read, list and delete a template; a name it
 * matches serves acquires and says which template it uses; a worker key scoped to a glob reaches
 * the template's names and no others; bad patterns are a 400 with the fix; admin keys only.
 */
class TemplatesHttpTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String LIMIT = "{\"rates\": [{\"dimension\": \"requests\", \"amount\": 600, \"period\": \"1m\"}]}";

  private static SluiceServer node(Path dir) throws Exception {
    return SluiceServer.builder().host("127.0.0.1").port(0).httpPort(0).dataDir(dir)
        .shutdownGrace(Duration.ZERO).build().start();
  }

  private static JsonNode ok(HttpResponse<String> r) throws Exception {
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return JSON.readTree(r.body());
  }

  @Test
  void putATemplateThenItsNamesServeAcquires(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      JsonNode put = ok(HttpCalls.call(node, "PUT", "/v1/templates/customer:*", LIMIT, null));
      assertThat(put.get("pattern").asText()).isEqualTo("customer:*");
      assertThat(put.get("created").asBoolean()).isTrue();
      assertThat(put.at("/limit/rates/0/burst").asLong()).isEqualTo(10);
      assertThat(ok(HttpCalls.call(node, "PUT", "/v1/templates/customer:%3F", LIMIT, null)).get("pattern").asText())
          .isEqualTo("customer:?");

      JsonNode granted = ok(HttpCalls.call(node, "POST", "/v1/resources/customer:42/acquire", "{}", null));
      assertThat(granted.get("resource").asText()).isEqualTo("customer:42");
      JsonNode read = ok(HttpCalls.call(node, "GET", "/v1/resources/customer:42", null, null));
      assertThat(read.get("template").asText()).isEqualTo("customer:*");
      assertThat(ok(HttpCalls.call(node, "GET", "/v1/resources/customer:4", null, null)).get("template").asText())
          .as("the most specific wins").isEqualTo("customer:?");

      JsonNode list = ok(HttpCalls.call(node, "GET", "/v1/templates", null, null));
      assertThat(list.get("templates")).hasSize(2);
      assertThat(ok(HttpCalls.call(node, "GET", "/v1/templates/customer:*", null, null)).at("/limit/rates/0/amount")
          .asLong()).isEqualTo(600);

      HttpResponse<String> bad = HttpCalls.call(node, "PUT", "/v1/templates/*", LIMIT, null);
      assertThat(bad.statusCode()).isEqualTo(400);
      assertThat(bad.body()).contains("starts with '*'").contains("customer:*");

      assertThat(ok(HttpCalls.call(node, "DELETE", "/v1/templates/customer:%3F", null, null)).get("deleted")
          .asBoolean()).isTrue();
      assertThat(HttpCalls.call(node, "GET", "/v1/templates/customer:%3F", null, null).statusCode()).isEqualTo(404);
      assertThat(HttpCalls.call(node, "POST", "/v1/resources/vendor:1/acquire", "{}", null).statusCode())
          .isEqualTo(404);
    }
  }

  @Test
  void aKeyScopedToAGlobReachesTheTemplatesNamesOnly(@TempDir Path dir) throws Exception {
    try (SluiceServer node = node(dir)) {
      HttpCalls.Keys keys = HttpCalls.keys(node);
      ok(HttpCalls.call(node, "PUT", "/v1/templates/customer:*", LIMIT, keys.admin()));
      ok(HttpCalls.call(node, "PUT", "/v1/templates/vendor:*", LIMIT, keys.admin()));
      String scoped = scopedKey(node, keys.admin(), "customer:*");
      ok(HttpCalls.call(node, "POST", "/v1/resources/customer:7/acquire", "{}", scoped));
      assertThat(HttpCalls.call(node, "POST", "/v1/resources/vendor:7/acquire", "{}", scoped).statusCode())
          .isEqualTo(403);
      assertThat(HttpCalls.call(node, "PUT", "/v1/templates/x:*", LIMIT, keys.worker()).statusCode()).isEqualTo(403);
      assertThat(HttpCalls.call(node, "GET", "/v1/templates", null, null).statusCode()).isEqualTo(401);
    }
  }

  private static String scopedKey(SluiceServer node, String admin, String resources) {
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", node.port()).usePlaintext().build();
    try {
      Metadata h = new Metadata();
      h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + admin);
      return AdminGrpc.newBlockingStub(ch).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h))
          .createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER).setResources(resources).build()).getKey();
    } finally {
      ch.shutdownNow();
    }
  }
}
