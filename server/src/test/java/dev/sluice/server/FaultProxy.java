package dev.sluice.server;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * A TCP forwarder that misbehaves on request, for the fault-injection and silent-node tests:
 * every chunk it forwards can be held for a random latency; {@link #resetAll()} aborts every
 * connection with an RST (SO_LINGER 0) in both directions, {@link #dropAll()} closes them with a
 * FIN, both while calls are in flight; {@link #blackhole()} stops forwarding without closing
 * anything (a host gone silent) until {@link #restore()}. The upstream port can be changed
 * ({@link #upstream(int)}), so a server restarted on another port is reached at the same address.
 *
 * <p>Two threads per connection, each copying one direction: a thread holding a chunk waits
 * while the proxy is blackholed and does not read more, so the rest waits in the kernel's socket
 * buffers. A connection opened while blackholed is accepted (the kernel does that anyway) but
 * carries nothing. An end closed by either side is passed on only while not blackholed.
 *
 * <p>One direction can be held alone: {@link #holdReplies()} holds what the upstream sends (a
 * node's commands still run in Redis, their answers are lost to it), {@link #holdRequests()}
 * what the client sends. Held bytes are delivered on {@link #restore()}, as TCP retransmission
 * would deliver them when a path that dropped packets heals; a {@link #resetAll()} before the
 * restore loses them instead. {@link #delay(int)} holds every chunk for a fixed time.
 */
public final class FaultProxy implements AutoCloseable {

  private record Link(Socket client, Socket upstream) {}

  private final ServerSocket listener;
  private final ExecutorService threads = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "fault-proxy");
    t.setDaemon(true);
    return t;
  });
  private final List<Link> links = new CopyOnWriteArrayList<>();
  private volatile int upstreamPort;
  private volatile int maxLatencyMillis;
  private volatile int delayMillis;
  private boolean requestsHeld; // guarded by this
  private boolean repliesHeld; // guarded by this
  private volatile boolean closed;

  public FaultProxy(int upstreamPort) throws IOException {
    this.upstreamPort = upstreamPort;
    this.listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    threads.execute(this::accept);
  }

  /** The port clients connect to. */
  public int port() {
    return listener.getLocalPort();
  }

  /** Where new connections go from now on. */
  public void upstream(int port) {
    this.upstreamPort = port;
  }

  /** Holds every forwarded chunk for a random 0..{@code millis} ms; 0 forwards at once. */
  public void latency(int millis) {
    this.maxLatencyMillis = millis;
  }

  /** Holds every forwarded chunk for {@code millis} ms (added to {@link #latency}); 0 for none. */
  public void delay(int millis) {
    this.delayMillis = millis;
  }

  /** Stops forwarding in both directions; sockets stay open. */
  public synchronized void blackhole() {
    requestsHeld = true;
    repliesHeld = true;
  }

  /** Stops forwarding what the upstream sends; what the client sends still goes through. */
  public synchronized void holdReplies() {
    repliesHeld = true;
  }

  /** Stops forwarding what the client sends; what the upstream sends still goes through. */
  public synchronized void holdRequests() {
    requestsHeld = true;
  }

  /** Forwards again in both directions, starting with what was held. */
  public synchronized void restore() {
    requestsHeld = false;
    repliesHeld = false;
    notifyAll();
  }

  private synchronized void awaitOpen(boolean reply) throws InterruptedException {
    while ((reply ? repliesHeld : requestsHeld) && !closed) {
      wait();
    }
  }

  /** Aborts every open connection with an RST to both ends; returns how many. */
  public int resetAll() {
    return cut(true);
  }

  /** Closes every open connection with a FIN to both ends; returns how many. */
  public int dropAll() {
    return cut(false);
  }

  private int cut(boolean reset) {
    int n = 0;
    for (Link link : links) {
      links.remove(link);
      for (Socket s : List.of(link.client(), link.upstream())) {
        try {
          if (reset) {
            s.setSoLinger(true, 0);
          }
        } catch (IOException e) {
          // already closed
        }
        closeQuietly(s);
      }
      n++;
    }
    return n;
  }

  private void accept() {
    while (!closed) {
      try {
        Socket client = listener.accept();
        Socket upstream = new Socket();
        try {
          upstream.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), upstreamPort), 1_000);
        } catch (IOException e) {
          closeQuietly(client); // the server is down: the client sees a refused connection
          closeQuietly(upstream);
          continue;
        }
        client.setTcpNoDelay(true);
        upstream.setTcpNoDelay(true);
        links.add(new Link(client, upstream));
        threads.execute(() -> copy(client, upstream, false));
        threads.execute(() -> copy(upstream, client, true));
      } catch (IOException e) {
        // closed
      }
    }
  }

  private void copy(Socket from, Socket to, boolean reply) {
    byte[] buffer = new byte[16 * 1024];
    try {
      InputStream in = from.getInputStream();
      OutputStream out = to.getOutputStream();
      for (int n; (n = in.read(buffer)) >= 0; ) {
        awaitOpen(reply);
        int latency = maxLatencyMillis;
        int hold = delayMillis + (latency > 0 ? ThreadLocalRandom.current().nextInt(latency + 1) : 0);
        if (hold > 0) {
          TimeUnit.MILLISECONDS.sleep(hold);
        }
        out.write(buffer, 0, n);
        out.flush();
      }
      awaitOpen(reply);
      to.shutdownOutput();
    } catch (IOException | InterruptedException e) {
      closeQuietly(from);
      closeQuietly(to);
    }
  }

  private static void closeQuietly(Socket s) {
    try {
      s.close();
    } catch (IOException e) {
      // already closed
    }
  }

  @Override
  public void close() throws IOException {
    closed = true;
    listener.close();
    cut(false);
    synchronized (this) {
      notifyAll(); // the waiting copiers find their sockets closed
    }
    threads.shutdownNow();
  }
}
