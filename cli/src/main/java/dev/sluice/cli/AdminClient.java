package dev.sluice.cli;

import dev.sluice.proto.v1.AdminGrpc;
import io.grpc.Grpc;
import io.grpc.ChannelCredentials;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/** One channel to a coordinator's Admin service, for the length of one command. */
final class AdminClient implements AutoCloseable {

  /** Deadline of every admin call. */
  static final Duration DEADLINE = Duration.ofSeconds(10);

  private final String target;
  private final ManagedChannel channel;
  private final AdminGrpc.AdminBlockingStub stub;

  AdminClient(String target, ChannelCredentials credentials, String apiKey) {
    this.target = target;
    this.channel = Grpc.newChannelBuilder(target, credentials).build();
    AdminGrpc.AdminBlockingStub s = AdminGrpc.newBlockingStub(channel);
    if (apiKey != null) {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + apiKey);
      s = s.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    this.stub = s;
  }

  /** Runs one call with a fresh deadline; a gRPC error becomes a {@link CliFailure}. */
  <T> T call(Function<AdminGrpc.AdminBlockingStub, T> rpc) {
    try {
      return rpc.apply(stub.withDeadlineAfter(DEADLINE.toMillis(), TimeUnit.MILLISECONDS));
    } catch (StatusRuntimeException e) {
      throw CliFailure.of(e, target, channel.getState(false) == ConnectivityState.READY);
    }
  }

  @Override
  public void close() {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
