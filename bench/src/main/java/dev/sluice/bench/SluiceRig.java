package dev.sluice.bench;

import com.google.protobuf.Duration;
import dev.sluice.client.SluiceClient;
import dev.sluice.proto.v1.AdminGrpc;
import dev.sluice.proto.v1.ApiKeyInfo;
import dev.sluice.proto.v1.CreateKeyRequest;
import dev.sluice.proto.v1.CreateKeyResponse;
import dev.sluice.proto.v1.ListKeysRequest;
import dev.sluice.proto.v1.RevokeKeyRequest;
import dev.sluice.proto.v1.Role;
import dev.sluice.proto.v1.GetLimitRequest;
import dev.sluice.proto.v1.GetStatsRequest;
import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import dev.sluice.proto.v1.ResourceStats;
import dev.sluice.proto.v1.SetLimitRequest;
import dev.sluice.server.SluiceServer;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
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
 * Real Sluice coordinators (memory store, or N nodes on one Redis), in this JVM or each in its own
 * process started by {@code bin/sluice serve} (see {@link Placement}), the admin calls the
 * scenarios need, and SDK clients pointed at them.
 */
final class SluiceRig implements AutoCloseable {

  /**
   * Where the coordinators run: in the load generator's JVM ({@link #JVM}), or each in its own
   * process started by {@code sluiceBin serve}, as users run it.
   */
  record Placement(boolean process, Path sluiceBin) {

    static final Placement JVM = new Placement(false, null);

    static Placement process(Path sluiceBin) {
      return new Placement(true, sluiceBin);
    }

    /** For tables: {@code same JVM} or {@code own process}. */
    String label() {
      return process ? "own process" : "same JVM";
    }

    /** For the run's header: how the coordinators are started. */
    String describe() {
      return process ? "each coordinator in its own process (`" + sluiceBin + " serve --port 0 ...`)"
          : "coordinators in the load generator's JVM (`SluiceServer` in-process)";
    }
  }

  /** A coordinator's ready line must come within this (a cold JVM on two busy cores). */
  static final java.time.Duration PROCESS_READY_WITHIN = java.time.Duration.ofSeconds(60);

  /** One node: its ports and how to stop it. */
  private record Node(int port, int httpPort, AutoCloseable stop) {}

  private final List<Node> nodes = new ArrayList<>();
  private final List<ManagedChannel> adminChannels = new ArrayList<>();
  private final Path dataRoot;
  private final boolean http;
  private final Placement placement;
  private volatile String adminKey;
  /** Slice mode of every node ({@code GLOB=HOLD}), or null. */
  private String slice;

  private SluiceRig(Path dataRoot, boolean http, Placement placement) {
    this.dataRoot = dataRoot;
    this.http = http;
    this.placement = placement;
  }

  /** One node on the memory store in this JVM, with its HTTP port on as `sluice serve` runs it. */
  static SluiceRig memory() throws IOException {
    return memory(true);
  }

  /**
   * One node on the memory store in this JVM; {@code http} false leaves out the HTTP port and with
   * it the gRPC metrics interceptor and the once-a-second sampler (to measure what they cost).
   */
  static SluiceRig memory(boolean http) throws IOException {
    try {
      return memory(Placement.JVM, http);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted", e);
    }
  }

  /** One node on the memory store, placed as {@code placement} says. */
  static SluiceRig memory(Placement placement, boolean http) throws IOException, InterruptedException {
    return open(placement, http, null, 1);
  }

  /** {@code nodes} nodes in this JVM sharing the Redis at {@code uri}. */
  static SluiceRig redis(String uri, int nodes) throws IOException, InterruptedException {
    return redis(Placement.JVM, uri, nodes);
  }

  /** {@code nodes} nodes sharing the Redis at {@code uri}, placed as {@code placement} says. */
  static SluiceRig redis(Placement placement, String uri, int nodes) throws IOException, InterruptedException {
    return open(placement, true, uri, nodes, null);
  }

  /**
   * The same, every node in slice mode by {@code slice} ({@code GLOB=HOLD}, as {@code sluice serve
   * --slice} takes it).
   */
  static SluiceRig redis(Placement placement, String uri, int nodes, String slice) throws IOException,
      InterruptedException {
    return open(placement, true, uri, nodes, slice);
  }

  private static SluiceRig open(Placement placement, boolean http, String store, int nodes) throws IOException,
      InterruptedException {
    return open(placement, http, store, nodes, null);
  }

  private static SluiceRig open(Placement placement, boolean http, String store, int nodes, String slice)
      throws IOException, InterruptedException {
    SluiceRig rig = new SluiceRig(Files.createTempDirectory("sluice-bench-"), http, placement);
    rig.slice = slice;
    try {
      for (int i = 0; i < nodes; i++) {
        rig.add(store);
      }
    } catch (IOException | InterruptedException | RuntimeException e) {
      rig.close();
      throw e;
    }
    return rig;
  }

  private void add(String store) throws IOException, InterruptedException {
    Path dataDir = dataRoot.resolve("node" + nodes.size());
    Node node;
    if (placement.process()) {
      List<String> command = command(placement.sluiceBin(), dataDir, http, store);
      if (slice != null) {
        command.addAll(List.of("--slice", slice));
      }
      node = started(command);
    } else {
      SluiceServer.Builder b = SluiceServer.builder()
          .host("127.0.0.1")
          .port(0)
          .dataDir(dataDir)
          .shutdownGrace(java.time.Duration.ofSeconds(2));
      if (http) {
        b.httpPort(0);
      }
      if (store != null) {
        b.store(store);
      }
      if (slice != null) {
        b.slices(List.of(dev.sluice.server.engine.SliceEngine.Rule.parse(slice)));
      }
      SluiceServer server = b.build().start();
      node = new Node(server.port(), http ? server.httpPort() : -1, server::close);
    }
    nodes.add(node);
    adminChannels.add(ManagedChannelBuilder.forAddress("127.0.0.1", node.port()).usePlaintext().build());
  }

  private static Node started(List<String> command) throws IOException, InterruptedException {
    CoordinatorProcess p = CoordinatorProcess.start(command, PROCESS_READY_WITHIN);
    return new Node(p.port(), p.httpPort(), p);
  }

  /**
   * The command line of one node in its own process: {@code bin/sluice serve} on free loopback
   * ports, the rest at the defaults users get.
   */
  static List<String> command(Path sluiceBin, Path dataDir, boolean http, String store) {
    List<String> c = new ArrayList<>(List.of(sluiceBin.toString(), "serve", "--bind", "127.0.0.1", "--port", "0",
        "--http-port", http ? "0" : "-1", "--data-dir", dataDir.toString(), "--shutdown-grace", "2s"));
    if (store != null) {
      c.addAll(List.of("--store", store));
    }
    return c;
  }

  Placement placement() {
    return placement;
  }

  /** Every node, as the SDK's target list. */
  String target() {
    return nodes.stream().map(n -> "127.0.0.1:" + n.port()).collect(Collectors.joining(","));
  }

  int nodes() {
    return nodes.size();
  }

  /** The first node's HTTP port; -1 when started without one. */
  int httpPort() {
    return nodes.get(0).httpPort();
  }

  SluiceClient client() {
    return SluiceClient.builder().target(target()).build();
  }

  /** A client that sends {@code apiKey} with every call. */
  SluiceClient client(String apiKey) {
    return SluiceClient.builder().target(target()).apiKey(apiKey).build();
  }

  /** A client whose acquires and releases ride {@code streams} session streams. */
  SluiceClient sessionClient(int streams) {
    return SluiceClient.builder().target(target()).session(streams).build();
  }

  /**
   * Ends open mode: creates an admin key (which this rig's admin calls use from now on), then a
   * worker key limited to {@code resources} (comma-separated globs), and returns the worker key.
   */
  String createWorkerKey(String resources) {
    CreateKeyResponse admin = admin(0).createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_ADMIN)
        .setDescription("sluice-bench admin").build());
    adminKey = admin.getKey();
    return admin(0).createKey(CreateKeyRequest.newBuilder().setRole(Role.ROLE_WORKER).setResources(resources)
        .setDescription("sluice-bench worker").build()).getKey();
  }

  /** Revokes every key, the admin key last: the coordinator is open again. */
  void revokeAllKeys() {
    List<ApiKeyInfo> keys = admin(0).listKeys(ListKeysRequest.getDefaultInstance()).getKeysList();
    for (ApiKeyInfo k : keys.stream().sorted(Comparator.comparing(k -> k.getRole() == Role.ROLE_ADMIN)).toList()) {
      admin(0).revokeKey(RevokeKeyRequest.newBuilder().setId(k.getId()).build());
    }
    adminKey = null;
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
    for (int i = 1; i < nodes.size(); i++) {
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
    AdminGrpc.AdminBlockingStub stub = AdminGrpc.newBlockingStub(adminChannels.get(node))
        .withDeadlineAfter(10, TimeUnit.SECONDS);
    String key = adminKey;
    if (key != null) {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + key);
      stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    return stub;
  }

  @Override
  public void close() {
    for (ManagedChannel c : adminChannels) {
      c.shutdownNow();
    }
    for (Node n : nodes) {
      try {
        n.stop().close();
      } catch (Exception e) {
        // keep stopping the others; a coordinator process is also stopped by its shutdown hook
      }
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
