package dev.sluice.client;

import io.grpc.ClientInterceptor;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;

/**
 * An in-process server running a {@link FakeCoordinator}, a channel to it and a client on that
 * channel. With {@code direct}, server and client run calls on the calling thread, so by the time
 * a client method returns the fake has recorded the request.
 */
final class Fixture implements AutoCloseable {

  final FakeCoordinator fake = new FakeCoordinator();
  final Server server;
  final ManagedChannel channel;
  final SluiceClient client;

  Fixture() {
    this(true, b -> b);
  }

  Fixture(UnaryOperator<SluiceClient.Builder> config) {
    this(true, config);
  }

  Fixture(boolean direct, UnaryOperator<SluiceClient.Builder> config, ClientInterceptor... interceptors) {
    String name = InProcessServerBuilder.generateName();
    InProcessServerBuilder serverBuilder = InProcessServerBuilder.forName(name).addService(fake);
    InProcessChannelBuilder channelBuilder = InProcessChannelBuilder.forName(name).intercept(interceptors);
    if (direct) {
      serverBuilder.directExecutor();
      channelBuilder.directExecutor();
    }
    try {
      server = serverBuilder.build().start();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    channel = channelBuilder.build();
    client = config.apply(SluiceClient.builder().channel(channel)).build();
  }

  @Override
  public void close() throws InterruptedException {
    client.close();
    channel.shutdownNow();
    server.shutdownNow();
    channel.awaitTermination(5, TimeUnit.SECONDS);
    server.awaitTermination(5, TimeUnit.SECONDS);
  }
}
