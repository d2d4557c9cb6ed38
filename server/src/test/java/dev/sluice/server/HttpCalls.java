package dev.sluice.server;

import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.Role;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

/** Calls on a test node's HTTP port, and the keys an admin-only check needs. */
final class HttpCalls {

  private static final HttpClient HTTP = HttpClient.newHttpClient();

  private HttpCalls() {}

  /** {@code method path} with {@code body} (none when null), as {@code key} (none when null). */
  static HttpResponse<String> call(SluiceServer node, String method, String path, String body, String key)
      throws Exception {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + node.httpPort() + path))
        .method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body))
        .header("content-type", "application/json");
    if (key != null) {
      b.header("authorization", "Bearer " + key);
    }
    return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
  }

  /** An admin key and a worker key, made over gRPC: the node is open until the first exists. */
  record Keys(String admin, String worker) {}

  static Keys keys(SluiceServer node) {
    ManagedChannel ch = ManagedChannelBuilder.forAddress("127.0.0.1", node.port()).usePlaintext().build();
    try {
      String admin = AdminGrpc.newBlockingStub(ch).createKey(CreateKeyRequest.newBuilder()
          .setRole(Role.ROLE_ADMIN).build()).getKey();
      Metadata h = new Metadata();
      h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + admin);
      String worker = AdminGrpc.newBlockingStub(ch)
          .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(h))
          .createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER).build()).getKey();
      return new Keys(admin, worker);
    } finally {
      ch.shutdownNow();
    }
  }
}
