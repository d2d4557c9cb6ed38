package dev.sluice.bench;

import com.google.protobuf.Duration;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.server.SluiceServer;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * Real Sluice coordinators in this JVM (memory store, or N nodes on one Redis), the admin calls
 * the scenarios need, and SDK clients pointed at them.
 */
final class SluiceRig implements AutoCloseable {

  private final List<SluiceServer> servers = new ArrayList<>();
  private final List<ManagedChannel> adminChannels = new ArrayList<>();
  private final Path dataRoot;
  private final boolean http;

  private SluiceRig(Path dataRoot, boolean http) {
    this.dataRoot = dataRoot;
    this.http = http;
  }

  /** One node on the memory store, with its HTTP port on as `sluice serve` runs it. */
  static SluiceRig memory() throws IOException {
    return memory(true);
  }

  /**
   * One node on the memory store; {@code http} false leaves out the HTTP port and with it the
   * gRPC metrics interceptor and the once-a-second sampler (to measure what they cost).
   */
  static SluiceRig memory(boolean http) throws IOException {
    SluiceRig rig = new SluiceRig(Files.createTempDirectory("sluice-bench-"), http);
    rig.add(null);
    return rig;
  }

  /** {@code nodes} nodes sharing the Redis at {@code uri}. */
  static SluiceRig redis(String uri, int nodes) throws IOException {
    SluiceRig rig = new SluiceRig(Files.createTempDirectory("sluice-bench-"), true);
    try {
      for (int i = 0; i < nodes; i++) {
        rig.add(uri);
      }
    } catch (IOException | RuntimeException e) {
      rig.close();
      throw e;
    }
    return rig;
  }

  private void add(String store) throws IOException {
    SluiceServer.Builder b = SluiceServer.builder()
        .host("127.0.0.1")
        .port(0)
        .dataDir(dataRoot.resolve("node" + servers.size()))
        .shutdownGrace(java.time.Duration.ofSeconds(2));
    if (http) {
      b.httpPort(0);
    }
    if (store != null) {
      b.store(store);
    }
    SluiceServer server = b.build().start();
    servers.add(server);
    adminChannels.add(ManagedChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build());
  }

  /** Every node, as the SDK's target list. */
  String target() {
    return servers.stream().map(s -> "127.0.0.1:" + s.port()).collect(Collectors.joining(","));
  }

  int nodes() {
    return servers.size();
  }

  SluiceClient client() {
    return SluiceClient.builder().target(target()).build();
  }

  /** A client whose acquires and releases ride {@code streams} session streams. */
  SluiceClient sessionClient(int streams) {
    return SluiceClient.builder().target(target()).session(streams).build();
  }

  /** A limit of {@code perSecond} requests per second (burst one second's worth). */
  static Limit rate(String resource, long perSecond, int maxWaiting) {
    return rate(resource, perSecond, perSecond, maxWaiting);
  }

  static Limit rate(String resource, long perSecond, long burst, int maxWaiting) {
    return Limit.newBuilder()
        .setResource(resource)
        .addRates(RateDimension.newBuilder().setName("requests").setAmount(perSecond)
            .setPeriod(Duration.newBuilder().setSeconds(1)).setBurst(burst))
        .setMaxWaiting(maxWaiting)
        .build();
  }

  /** A concurrency cap alone, no rate. */
  static Limit concurrency(String resource, long cap, int maxWaiting) {
    return Limit.newBuilder().setResource(resource).setConcurrency(cap).setMaxWaiting(maxWaiting).build();
  }

  /** Sets the limit on the first node and waits until every node knows it. */
  void setLimit(Limit limit) throws InterruptedException {
    admin(0).setLimit(SetLimitRequest.newBuilder().setLimit(limit).build());
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    for (int i = 1; i < servers.size(); i++) {
      while (true) {
        try {
          admin(i).getLimit(GetLimitRequest.newBuilder().setResource(limit.getResource()).build());
          break;
        } catch (StatusRuntimeException e) {
          if (System.nanoTime() > deadline) {
            throw new IllegalStateException("node " + i + " did not learn the limit of " + limit.getResource(), e);
          }
          Thread.sleep(20);
        }
      }
    }
  }

  /** Live state of a resource as the first node sees it. */
  ResourceStats stats(String resource) {
    return admin(0).getStats(GetStatsRequest.newBuilder().setResource(resource).build()).getResources(0);
  }

  private AdminGrpc.AdminBlockingStub admin(int node) {
    return AdminGrpc.newBlockingStub(adminChannels.get(node)).withDeadlineAfter(10, TimeUnit.SECONDS);
  }

  @Override
  public void close() {
    for (ManagedChannel c : adminChannels) {
      c.shutdownNow();
    }
    for (SluiceServer s : servers) {
      s.close();
    }
    try (Stream<Path> files = Files.walk(dataRoot)) {
      for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
