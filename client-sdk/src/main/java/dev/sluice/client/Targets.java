package dev.sluice.client;

import io.grpc.Attributes;
import io.grpc.ClientInterceptor;
import io.grpc.EquivalentAddressGroup;
import io.grpc.Grpc;
import io.grpc.ChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.NameResolver;
import io.grpc.NameResolverProvider;
import io.grpc.NameResolverRegistry;
import io.grpc.Status;
import io.grpc.StatusOr;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.channel.ChannelOption;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.URI;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Coordinator targets: parsing what {@link SluiceClient.Builder#target} accepts, and the channel
 * that spreads calls over every node.
 *
 * <p>Three forms: {@code host:port}; a comma-separated list {@code h1:7420,h2:7421} (resolved by
 * {@link ListResolver}, registered in a registry of this channel only, never in gRPC's global
 * one); or a gRPC target URI such as {@code dns:///sluice.internal:7420}, passed through to gRPC's
 * own resolvers. Every channel balances with {@code round_robin}: each call goes to the next node
 * whose connection is READY, so a lost node simply stops being picked.
 *
 * <p>Dead-node detection. A node that exits or restarts closes its connections, which gRPC sees at
 * once (FIN/RST or GOAWAY): its calls fail with UNAVAILABLE and round_robin stops picking it. A
 * node that goes silent (host down, network cut, process stopped) closes nothing, and its
 * connection looks READY:
 *
 * <ul>
 *   <li>for a list target, {@link NodeProber} sends each node a health check every second with a
 *       1 s deadline, on a channel of its own ({@link #probeChannel}); a node that fails one is
 *       marked down within 2 s: the resolver stops publishing it and the calls in flight on it
 *       are cut off and retried on another node ({@link ListNodes}). It is published again after
 *       one check it passes;
 *   <li>for a {@code dns:///} (or any other URI) target, whose nodes gRPC's own resolver owns, and
 *       for a single {@code host:port}, only keepalive finds it. grpc-java clamps the client
 *       keepalive interval to at least 10 s ({@code KeepAliveManager.MIN_KEEPALIVE_TIME_NANOS}),
 *       so the pings are sent every 10 s with a 1 s timeout: a silent node is dropped within
 *       ~11 s. Keepalive stays on for list targets too, as the fallback.
 * </ul>
 *
 * Reconnection attempts to a dead host give up after {@link #CONNECT_TIMEOUT}.
 */
final class Targets {

  /** Smallest interval grpc-java accepts; smaller values are silently raised to it. */
  static final Duration KEEPALIVE_TIME = Duration.ofSeconds(10);
  static final Duration KEEPALIVE_TIMEOUT = Duration.ofSeconds(1);
  static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(2);
  static final String LIST_SCHEME = "sluice-list";

  // host:port or [v6]:port.
  private static final Pattern HOST_PORT = Pattern.compile("(\\[[^\\]]+\\]|[^:\\[\\]]+):(\\d{1,5})");

  private Targets() {}

  /**
   * Checks a target in any of the three forms.
   *
   * @param source where it came from, for the message ("target", "environment variable ...")
   * @throws IllegalArgumentException naming the problem and the fix
   */
  static void check(String target, String source) {
    if (target.isBlank() || target.chars().anyMatch(Character::isWhitespace)) {
      throw new IllegalArgumentException(source + " '" + target + "' is empty or has spaces; give host:port,"
          + " e.g. localhost:7420, or several as h1:7420,h2:7420");
    }
    if (target.contains(",")) {
      String[] elements = target.split(",", -1);
      for (int i = 0; i < elements.length; i++) {
        if (elements[i].isEmpty()) {
          throw new IllegalArgumentException(source + " '" + target + "' has an empty element at position "
              + (i + 1) + "; give host:port,host:port without empty entries, e.g. h1:7420,h2:7420");
        }
        if (elements[i].contains(":/")) {
          throw new IllegalArgumentException(source + " '" + target + "' mixes a gRPC URI into a list; give"
              + " either one URI such as dns:///sluice:7420 or host:port,host:port, e.g. h1:7420,h2:7420");
        }
        checkHostPort(elements[i], source + " '" + target + "' element " + (i + 1));
      }
      return;
    }
    if (target.contains(":/")) {
      return; // a gRPC target URI; its name resolver validates it
    }
    checkHostPort(target, source + " '" + target + "'");
  }

  private static void checkHostPort(String hostPort, String what) {
    Matcher m = HOST_PORT.matcher(hostPort);
    int port = m.matches() ? Integer.parseInt(m.group(2)) : -1;
    if (port < 1 || port > 65_535) {
      String detail = what.endsWith("'") ? "" : " ('" + hostPort + "')";
      throw new IllegalArgumentException(what + detail + " is not host:port with a port in 1..65535; give e.g."
          + " localhost:7420, or several as h1:7420,h2:7420");
    }
  }

  /** The nodes of a comma-separated list, in order; a checked target is assumed. */
  static List<HostPort> parseList(String target) {
    List<HostPort> nodes = new ArrayList<>();
    for (String element : target.split(",")) {
      Matcher m = HOST_PORT.matcher(element);
      if (!m.matches()) {
        throw new IllegalArgumentException("'" + element + "' is not host:port");
      }
      String host = m.group(1);
      if (host.startsWith("[")) {
        host = host.substring(1, host.length() - 1);
      }
      nodes.add(new HostPort(host, Integer.parseInt(m.group(2))));
    }
    return nodes;
  }

  /**
   * A plaintext, round-robin channel to a checked target in any of the three forms.
   *
   * @param interceptor for tests; null for none
   * @param nodes the nodes of a list target, null for the other forms; its resolver leaves out the
   *     nodes marked down and its interceptor cuts off their calls
   */
  static ManagedChannel channel(String target, ChannelCredentials credentials, ClientInterceptor interceptor,
      ListNodes nodes) {
    ManagedChannelBuilder<?> builder;
    if (nodes != null) {
      NameResolverRegistry registry = new NameResolverRegistry();
      registry.register(new ListResolverProvider(nodes));
      builder = Grpc.newChannelBuilder(LIST_SCHEME + ":///nodes", credentials, registry);
      builder.intercept(nodes.interceptor()); // innermost: the test's interceptor sees what the SDK sees
    } else {
      builder = Grpc.newChannelBuilder(target, credentials);
    }
    // Answers are handled on the network thread: the SDK's callbacks only hand results over and
    // never block (a hop to gRPC's callback pool cost 2.5x the throughput at 64 calls in flight,
    // BENCHMARKS.md). What user code may run there is guarded in AcquireCall#deliver.
    builder.directExecutor()
        .defaultLoadBalancingPolicy("round_robin")
        .keepAliveTime(KEEPALIVE_TIME.toNanos(), TimeUnit.NANOSECONDS)
        .keepAliveTimeout(KEEPALIVE_TIMEOUT.toNanos(), TimeUnit.NANOSECONDS)
        .keepAliveWithoutCalls(true);
    if (interceptor != null) {
      builder.intercept(interceptor);
    }
    if (builder instanceof NettyChannelBuilder netty) {
      netty.withOption(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) CONNECT_TIMEOUT.toMillis());
    }
    return builder.build();
  }

  /**
   * The channel {@link NodeProber} checks one node on: no load balancing (pick_first over the
   * node's addresses), callbacks on the network thread (they only hand the result over), and
   * keepalive, so a connection that went stale while the node was away is replaced.
   */
  static ManagedChannel probeChannel(HostPort node, ChannelCredentials credentials) {
    ManagedChannelBuilder<?> builder =
        Grpc.newChannelBuilderForAddress(node.host(), node.port(), credentials)
            .directExecutor()
            .keepAliveTime(KEEPALIVE_TIME.toNanos(), TimeUnit.NANOSECONDS)
            .keepAliveTimeout(KEEPALIVE_TIMEOUT.toNanos(), TimeUnit.NANOSECONDS);
    if (builder instanceof NettyChannelBuilder netty) {
      netty.withOption(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) CONNECT_TIMEOUT.toMillis());
    }
    return builder.build();
  }

  record HostPort(String host, int port) {
    @Override
    public String toString() {
      return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
    }
  }

  /** Serves the {@code sluice-list} scheme of one channel: its nodes are fixed at build time. */
  static final class ListResolverProvider extends NameResolverProvider {
    private final ListNodes nodes;

    ListResolverProvider(ListNodes nodes) {
      this.nodes = nodes;
    }

    @Override
    protected boolean isAvailable() {
      return true;
    }

    @Override
    protected int priority() {
      return 5;
    }

    @Override
    public String getScheme() {
      return LIST_SCHEME;
    }

    @Override
    public String getDefaultScheme() {
      return LIST_SCHEME;
    }

    @Override
    public Collection<Class<? extends SocketAddress>> getProducedSocketAddressTypes() {
      return List.of(InetSocketAddress.class);
    }

    @Override
    public NameResolver newNameResolver(URI targetUri, NameResolver.Args args) {
      return LIST_SCHEME.equals(targetUri.getScheme()) ? new ListResolver(nodes, args) : null;
    }
  }

  /**
   * Resolves each node of the list to its addresses: one address group per node, so
   * round_robin treats a node with several addresses (say IPv4 and IPv6) as one. Lookups can
   * block, so they run on the channel's offload executor; results are delivered in its
   * synchronization context. A node that does not resolve is left out (and logged by gRPC); if
   * none resolves the channel sees UNAVAILABLE and round_robin asks again later via
   * {@link #refresh}.
   *
   * <p>What is published leaves out the nodes {@link ListNodes} has marked down (unless all are),
   * and is published again, without a new lookup, each time a node is marked down or up.
   */
  static final class ListResolver extends NameResolver {
    private final ListNodes nodes;
    private final NameResolver.Args args;
    private Listener2 listener;
    private Runnable unwatch;
    // The last lookup, in list order: the nodes that resolved. Synchronization context only.
    private Map<HostPort, EquivalentAddressGroup> resolved;
    private boolean resolving;
    private boolean shutdown;

    ListResolver(ListNodes nodes, NameResolver.Args args) {
      this.nodes = nodes;
      this.args = args;
    }

    @Override
    public String getServiceAuthority() {
      return nodes.nodes().get(0).toString();
    }

    @Override
    public void start(Listener2 listener) {
      this.listener = listener;
      unwatch = nodes.watch(() -> args.getSynchronizationContext().execute(this::publish));
      resolve();
    }

    @Override
    public void refresh() {
      resolve();
    }

    // Called in the synchronization context only.
    private void resolve() {
      if (resolving || shutdown || listener == null) {
        return;
      }
      resolving = true;
      Executor offload = args.getOffloadExecutor() != null ? args.getOffloadExecutor() : Runnable::run;
      offload.execute(() -> {
        Map<HostPort, EquivalentAddressGroup> found = lookUpEach(nodes.nodes());
        args.getSynchronizationContext().execute(() -> {
          resolving = false;
          if (shutdown) {
            return;
          }
          found.forEach((node, group) -> nodes.resolved(node, group.getAddresses()));
          resolved = found;
          publish();
        });
      });
    }

    // Called in the synchronization context only.
    private void publish() {
      if (shutdown || resolved == null) {
        return;
      }
      StatusOr<List<EquivalentAddressGroup>> result = resolved.isEmpty()
          ? StatusOr.fromStatus(unresolvable(nodes.nodes()))
          : StatusOr.fromValue(nodes.usable(resolved));
      listener.onResult2(ResolutionResult.newBuilder()
          .setAddressesOrError(result)
          .setAttributes(Attributes.EMPTY)
          .build());
    }

    static StatusOr<List<EquivalentAddressGroup>> lookUp(List<HostPort> nodes) {
      Map<HostPort, EquivalentAddressGroup> found = lookUpEach(nodes);
      return found.isEmpty()
          ? StatusOr.fromStatus(unresolvable(nodes))
          : StatusOr.fromValue(List.copyOf(found.values()));
    }

    /** The nodes that resolve, in list order, each with its addresses. */
    static Map<HostPort, EquivalentAddressGroup> lookUpEach(List<HostPort> nodes) {
      Map<HostPort, EquivalentAddressGroup> groups = new LinkedHashMap<>();
      for (HostPort node : nodes) {
        try {
          List<SocketAddress> addresses = new ArrayList<>();
          for (InetAddress a : InetAddress.getAllByName(node.host())) {
            addresses.add(new InetSocketAddress(a, node.port()));
          }
          groups.put(node, new EquivalentAddressGroup(addresses));
        } catch (UnknownHostException e) {
          // left out; named in the error if no node resolves
        }
      }
      return groups;
    }

    private static Status unresolvable(List<HostPort> nodes) {
      return Status.UNAVAILABLE.withDescription("no coordinator node of " + nodes
          + " resolves (unknown hosts " + nodes + "); check the host names of the target");
    }

    @Override
    public void shutdown() {
      shutdown = true;
      if (unwatch != null) {
        unwatch.run();
      }
    }

    @Override
    public String toString() {
      return "ListResolver" + Arrays.toString(nodes.nodes().toArray());
    }
  }
}
