package dev.sluice.client;

import io.grpc.Attributes;
import io.grpc.ClientInterceptor;
import io.grpc.EquivalentAddressGroup;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
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
import java.util.List;
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
 * node that goes silent (host down, network cut) is found by keepalive pings. grpc-java clamps the
 * client keepalive interval to at least 10 s ({@code KeepAliveManager.MIN_KEEPALIVE_TIME_NANOS}),
 * so the pings are sent every 10 s with a 1 s timeout: a silent node is dropped within ~11 s.
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
   */
  static ManagedChannel channel(String target, ClientInterceptor interceptor) {
    ManagedChannelBuilder<?> builder;
    if (target.contains(",")) {
      NameResolverRegistry registry = new NameResolverRegistry();
      registry.register(new ListResolverProvider(parseList(target)));
      builder = Grpc.newChannelBuilder(LIST_SCHEME + ":///nodes", InsecureChannelCredentials.create(), registry);
    } else {
      builder = Grpc.newChannelBuilder(target, InsecureChannelCredentials.create());
    }
    builder.defaultLoadBalancingPolicy("round_robin")
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

  record HostPort(String host, int port) {
    @Override
    public String toString() {
      return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
    }
  }

  /** Serves the {@code sluice-list} scheme of one channel: its nodes are fixed at build time. */
  static final class ListResolverProvider extends NameResolverProvider {
    private final List<HostPort> nodes;

    ListResolverProvider(List<HostPort> nodes) {
      this.nodes = List.copyOf(nodes);
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
   */
  static final class ListResolver extends NameResolver {
    private final List<HostPort> nodes;
    private final NameResolver.Args args;
    private Listener2 listener;
    private boolean resolving;
    private boolean shutdown;

    ListResolver(List<HostPort> nodes, NameResolver.Args args) {
      this.nodes = nodes;
      this.args = args;
    }

    @Override
    public String getServiceAuthority() {
      return nodes.get(0).toString();
    }

    @Override
    public void start(Listener2 listener) {
      this.listener = listener;
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
        StatusOr<List<EquivalentAddressGroup>> result = lookUp(nodes);
        args.getSynchronizationContext().execute(() -> {
          resolving = false;
          if (shutdown) {
            return;
          }
          listener.onResult2(ResolutionResult.newBuilder()
              .setAddressesOrError(result)
              .setAttributes(Attributes.EMPTY)
              .build());
        });
      });
    }

    static StatusOr<List<EquivalentAddressGroup>> lookUp(List<HostPort> nodes) {
      List<EquivalentAddressGroup> groups = new ArrayList<>();
      List<String> failed = new ArrayList<>();
      for (HostPort node : nodes) {
        try {
          List<SocketAddress> addresses = new ArrayList<>();
          for (InetAddress a : InetAddress.getAllByName(node.host())) {
            addresses.add(new InetSocketAddress(a, node.port()));
          }
          groups.add(new EquivalentAddressGroup(addresses));
        } catch (UnknownHostException e) {
          failed.add(node.toString());
        }
      }
      if (groups.isEmpty()) {
        return StatusOr.fromStatus(Status.UNAVAILABLE.withDescription("no coordinator node of "
            + nodes + " resolves (unknown hosts " + failed + "); check the host names of the target"));
      }
      return StatusOr.fromValue(groups);
    }

    @Override
    public void shutdown() {
      shutdown = true;
    }

    @Override
    public String toString() {
      return "ListResolver" + Arrays.toString(nodes.toArray());
    }
  }
}
