package dev.sluice.client;

import io.grpc.Server;
import io.grpc.netty.NettyServerBuilder;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Run by {@link OptionalDependenciesTest} in a JVM without Micrometer and grpc-services: a client
 * of a host list does what a worker does against a coordinator on a real port. Prints {@code OK}
 * and the calls the coordinator saw; exits non-zero otherwise.
 */
final class OptionalDependenciesMain {

  private OptionalDependenciesMain() {}

  public static void main(String[] args) throws Exception {
    for (String absent : new String[] {"io.micrometer.core.instrument.MeterRegistry", "io.grpc.health.v1.HealthGrpc"}) {
      if (NodeProber.present(absent)) {
        System.out.println("FAIL: " + absent + " is on the classpath; the test must run without it");
        System.exit(3);
      }
    }
    FakeCoordinator fake = new FakeCoordinator();
    fake.onReport = request -> dev.sluice.proto.v1.ReportResponse.newBuilder()
        .setPausedFor(request.getRetryAfter()).build();
    Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
        .addService(fake).directExecutor().build().start();
    String node = "127.0.0.1:" + server.getPort();
    Duration paused;
    try (SluiceClient client = SluiceClient.builder().target(node + "," + node).build()) {
      if (!client.warmUp(Duration.ofSeconds(30))) {
        System.out.println("FAIL: warmUp found no node");
        System.exit(4);
      }
      client.acquire("openai").close();
      client.reportHeaders("openai", Map.of("x-ratelimit-remaining-requests", "1"));
      paused = client.reportThrottledAsync("openai", Duration.ofSeconds(2), Map.of()).get(30, TimeUnit.SECONDS);
    } finally {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.out.println("OK acquires=" + fake.acquires.size() + " reports=" + fake.reports.size() + " paused=" + paused);
    System.exit(0); // gRPC's shared event loops must not keep this JVM up
  }
}
