package dev.sluice.buffers;

import java.net.InetAddress;
import java.net.NetworkInterface;
import java.net.SocketException;
import java.net.URI;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * Where buffers may deliver: every address a buffer's host resolves to is checked when the
 * buffer is created and again before each attempt (a host name that resolved to a public
 * address at creation may point elsewhere later: DNS rebinding).
 *
 * <p>An address is refused when it is
 * <ol>
 *   <li>in a {@code --buffer-deny} network;
 *   <li>outside every {@code --buffer-allow} network, when that list is given;
 *   <li>link-local ({@code 169.254.0.0/16}, {@code fe80::/10}: cloud metadata services), unless
 *       a {@code --buffer-allow} network inside the link-local range covers it (a broad entry
 *       such as {@code 0.0.0.0/0} does not lift this default);
 *   <li>a local address (loopback, unspecified, or one of this machine's interfaces) on one of
 *       this coordinator's own ports: a buffer may not deliver to its own coordinator.
 * </ol>
 * The check and the HTTP client resolve through the JVM's address cache ({@code
 * networkaddress.cache.ttl}, 30 s by default), so they see the same answer.
 */
public final class TargetPolicy {

  private static final Pattern IPV4 = Pattern.compile("[0-9]{1,3}(\\.[0-9]{1,3}){3}");
  private static final Cidr LINK_LOCAL_V4 = Cidr.parse("169.254.0.0/16", "default");
  private static final Cidr LINK_LOCAL_V6 = Cidr.parse("fe80::/10", "default");

  /** Resolves a host name to every address it has (tests pass a fake one). */
  public interface Resolver {
    InetAddress[] resolve(String host) throws UnknownHostException;
  }

  private final List<Cidr> allow;
  private final List<Cidr> deny;
  private final Resolver resolver;
  private final Set<Integer> ownPorts = ConcurrentHashMap.newKeySet();

  private TargetPolicy(List<Cidr> allow, List<Cidr> deny, Resolver resolver) {
    this.allow = List.copyOf(allow);
    this.deny = List.copyOf(deny);
    this.resolver = resolver;
  }

  /** The defaults: no allow list, no deny list beyond link-local and the coordinator's own ports. */
  public static TargetPolicy defaults() {
    return of(List.of(), List.of());
  }

  /**
   * A policy from the {@code --buffer-allow} and {@code --buffer-deny} networks: CIDRs such as
   * {@code 10.0.0.0/8} or {@code fd00::/8}, or single addresses.
   *
   * @throws IllegalArgumentException naming the flag and the entry that is not a network
   */
  public static TargetPolicy of(List<String> allow, List<String> deny) {
    return new TargetPolicy(parse(allow, "--buffer-allow"), parse(deny, "--buffer-deny"), InetAddress::getAllByName);
  }

  /** The same networks, resolving with {@code resolver}. */
  public TargetPolicy withResolver(Resolver resolver) {
    TargetPolicy p = new TargetPolicy(allow, deny, resolver);
    p.ownPorts.addAll(ownPorts);
    return p;
  }

  private static List<Cidr> parse(List<String> entries, String flag) {
    List<Cidr> out = new ArrayList<>();
    for (String e : entries) {
      for (String one : e.split(",")) {
        if (!one.isBlank()) {
          out.add(Cidr.parse(one.trim(), flag));
        }
      }
    }
    return out;
  }

  /** Marks a port this coordinator listens on (gRPC, HTTP): local addresses on it are refused. */
  public void ownPort(int port) {
    if (port > 0) {
      ownPorts.add(port);
    }
  }

  /** One line for the start-up log. */
  public String describe() {
    return "buffers may deliver to " + (allow.isEmpty() ? "any address" : "only " + texts(allow))
        + (deny.isEmpty() ? "" : " except " + texts(deny))
        + "; link-local and this coordinator's own ports are refused";
  }

  private static String texts(List<Cidr> list) {
    return list.stream().map(Cidr::text).collect(Collectors.joining(", "));
  }

  /** Whether checking {@code url} looks a name up (and may block), rather than reading an address. */
  boolean looksUp(URI url) {
    String host = url.getHost();
    return host != null && !(host.startsWith("[") || IPV4.matcher(host).matches());
  }

  /**
   * Checks where {@code url} leads now.
   *
   * @throws BufferException INVALID naming the address, the rule and the flag that decides it
   */
  public void check(URI url) {
    String host = url.getHost();
    if (host == null) {
      throw BufferSpec.invalid("url '" + BufferSpec.maskUrl(url.toString()) + "' has no host a delivery could reach:"
          + " give a name or an address, e.g. https://api.example.com/orders");
    }
    checkHostForm(host);
    int port = url.getPort() != -1 ? url.getPort() : "https".equalsIgnoreCase(url.getScheme()) ? 443 : 80;
    if (port == 0) {
      throw BufferSpec.invalid("url port 0: no endpoint listens there; give the endpoint's port");
    }
    String bare = host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;
    InetAddress[] addresses;
    try {
      addresses = resolver.resolve(bare);
    } catch (UnknownHostException | RuntimeException e) {
      throw BufferSpec.invalid("url host '" + host + "' does not resolve (" + e.getClass().getSimpleName() + "):"
          + " check the name; a buffer's host is checked against --buffer-allow/--buffer-deny when it is created"
          + " and before every attempt");
    }
    if (addresses.length == 0) {
      throw BufferSpec.invalid("url host '" + host + "' resolves to no address: check the name");
    }
    for (InetAddress a : addresses) {
      String why = refusal(a, port);
      if (why != null) {
        boolean literal = bare.contains(":") || bare.equals(a.getHostAddress());
        throw BufferSpec.invalid("url host '" + host + "' " + (literal ? "is" : "resolves to " + a.getHostAddress()
            + ", which is") + " " + why);
      }
    }
  }

  /** Why {@code a} on {@code port} is refused, or null. */
  private String refusal(InetAddress a, int port) {
    for (Cidr d : deny) {
      if (d.contains(a)) {
        return "in --buffer-deny " + d.text() + ": buffers may not deliver there (the coordinator was started"
            + " with that flag)";
      }
    }
    if (!allow.isEmpty() && allow.stream().noneMatch(c -> c.contains(a))) {
      return "outside --buffer-allow (" + texts(allow) + "): add its network to --buffer-allow if buffers may"
          + " deliver there";
    }
    Cidr linkLocal = LINK_LOCAL_V4.contains(a) ? LINK_LOCAL_V4 : LINK_LOCAL_V6.contains(a) ? LINK_LOCAL_V6 : null;
    if (linkLocal != null && allow.stream().noneMatch(c -> c.contains(a) && linkLocal.covers(c))) {
      return "link-local (" + linkLocal.text() + "), refused by default: cloud metadata services answer there. If"
          + " a buffer really must, start the coordinator with --buffer-allow naming that network";
    }
    if (ownPorts.contains(port) && local(a)) {
      return "this machine, and port " + port + " is this coordinator's own: a buffer may not deliver to its own"
          + " coordinator (no flag lifts this)";
    }
    return null;
  }

  private static boolean local(InetAddress a) {
    if (a.isLoopbackAddress() || a.isAnyLocalAddress()) {
      return true;
    }
    try {
      return NetworkInterface.getByInetAddress(a) != null;
    } catch (SocketException e) {
      return false;
    }
  }

  private static final Pattern NUMERIC_LABEL = Pattern.compile("(?i)[0-9]+|0x[0-9a-f]*");
  private static final Pattern OCTET = Pattern.compile("0|[1-9][0-9]{0,2}");

  /**
   * Refuses an IPv4 address written other than as four decimal octets ({@code 0x7f000001},
   * {@code 2130706433}, {@code 127.1}, {@code 0177.0.0.1}): resolvers read those forms
   * differently (Java reads {@code 0177} as decimal, the C library as octal), so what is checked
   * could differ from what is reached.
   */
  static void checkHostForm(String host) {
    if (host == null || host.startsWith("[")) {
      return;
    }
    String[] labels = host.split("\\.", -1);
    if (!NUMERIC_LABEL.matcher(labels[labels.length - 1]).matches()) {
      return; // a name: top-level domains are never numeric
    }
    boolean canonical = labels.length == 4;
    for (String l : labels) {
      canonical &= OCTET.matcher(l).matches() && Integer.parseInt(l) <= 255;
    }
    if (!canonical) {
      String as = inetAton(labels);
      throw BufferSpec.invalid("url host '" + host + "' is an IPv4 address in a non-standard form (hexadecimal, octal"
          + " or fewer than four parts), which resolvers read differently: write it as four decimal numbers"
          + (as != null ? ", e.g. " + as + " (as the C library reads it)" : ", such as 192.0.2.10"));
    }
  }

  /** The address the C library's inet_aton reads, or null where it reads none. */
  private static String inetAton(String[] labels) {
    if (labels.length > 4) {
      return null;
    }
    long[] parts = new long[labels.length];
    for (int i = 0; i < labels.length; i++) {
      String l = labels[i].toLowerCase(Locale.ROOT);
      try {
        parts[i] = l.startsWith("0x") ? Long.parseLong(l.substring(2), 16)
            : l.length() > 1 && l.startsWith("0") ? Long.parseLong(l.substring(1), 8) : Long.parseLong(l);
      } catch (NumberFormatException e) {
        return null;
      }
    }
    long value = 0;
    for (int i = 0; i < parts.length - 1; i++) {
      if (parts[i] > 255) {
        return null;
      }
      value |= parts[i] << (8 * (3 - i));
    }
    long last = parts[parts.length - 1];
    if (last >= 1L << (8 * (5 - parts.length))) {
      return null;
    }
    value |= last;
    return (value >>> 24) + "." + ((value >>> 16) & 255) + "." + ((value >>> 8) & 255) + "." + (value & 255);
  }

  /** A network: an address and a prefix length. */
  record Cidr(byte[] network, int prefix, String text) {

    static Cidr parse(String text, String flag) {
      int slash = text.indexOf('/');
      String address = slash < 0 ? text : text.substring(0, slash);
      boolean v6 = address.contains(":");
      if (!v6 && !IPV4.matcher(address).matches()) {
        throw new IllegalArgumentException(flag + " '" + text + "' is not a network: give a CIDR such as 10.0.0.0/8"
            + " or fd00::/8, or one address");
      }
      byte[] bytes;
      try {
        // A literal (checked above, or holding ':'): no name lookup happens.
        bytes = InetAddress.getByName(address).getAddress();
      } catch (UnknownHostException | RuntimeException e) {
        throw new IllegalArgumentException(flag + " '" + text + "' is not a network: give a CIDR such as 10.0.0.0/8"
            + " or fd00::/8, or one address");
      }
      int max = bytes.length * 8;
      int prefix = max;
      if (slash >= 0) {
        try {
          prefix = Integer.parseInt(text.substring(slash + 1));
        } catch (NumberFormatException e) {
          prefix = -1;
        }
        if (prefix < 0 || prefix > max) {
          throw new IllegalArgumentException(flag + " '" + text + "': the prefix length must be 0 to " + max);
        }
      }
      return new Cidr(bytes, prefix, text);
    }

    boolean contains(InetAddress a) {
      byte[] b = a.getAddress();
      if (b.length != network.length) {
        return false;
      }
      for (int bit = 0; bit < prefix; bit++) {
        int mask = 0x80 >>> (bit % 8);
        if ((b[bit / 8] & mask) != (network[bit / 8] & mask)) {
          return false;
        }
      }
      return true;
    }

    /** Whether {@code inner} lies wholly inside this network. */
    boolean covers(Cidr inner) {
      if (inner.network.length != network.length || inner.prefix < prefix) {
        return false;
      }
      try {
        return contains(InetAddress.getByAddress(inner.network));
      } catch (UnknownHostException e) {
        return false;
      }
    }
  }
}
