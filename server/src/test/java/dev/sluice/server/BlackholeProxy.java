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

/**
 * A TCP forwarder from a local port to a server's port that can go silent: {@link #blackhole()}
 * stops every byte in both directions without closing anything, so to the client the server is
 * a host cut off the network (no FIN, no RST, just nothing); {@link #restore()} lets the bytes
 * flow again, the held ones included, as TCP would retransmit them after a short cut.
 *
 * <p>Two threads per connection, each copying one direction: a thread holding a chunk waits
 * while the proxy is blackholed and does not read more, so the rest waits in the kernel's socket
 * buffers. A connection opened while blackholed is accepted (the kernel does that anyway) but
 * carries nothing. An end closed by either side is passed on only while not blackholed.
 */
final class BlackholeProxy implements AutoCloseable {

  private final ServerSocket listener;
  private final InetSocketAddress server;
  private final ExecutorService threads = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "blackhole-proxy");
    t.setDaemon(true);
    return t;
  });
  private final List<Socket> sockets = new CopyOnWriteArrayList<>();
  private boolean blackholed; // guarded by this
  private volatile boolean closed;

  BlackholeProxy(int serverPort) throws IOException {
    this.server = new InetSocketAddress(InetAddress.getLoopbackAddress(), serverPort);
    this.listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    threads.execute(this::accept);
  }

  /** The port clients connect to. */
  int port() {
    return listener.getLocalPort();
  }

  /** Stops forwarding in both directions; sockets stay open. */
  synchronized void blackhole() {
    blackholed = true;
  }

  /** Forwards again, starting with what was held. */
  synchronized void restore() {
    blackholed = false;
    notifyAll();
  }

  private synchronized void awaitOpen() throws InterruptedException {
    while (blackholed && !closed) {
      wait();
    }
  }

  private void accept() {
    while (!closed) {
      try {
        Socket client = listener.accept();
        Socket upstream = new Socket();
        sockets.add(client);
        sockets.add(upstream);
        upstream.connect(server);
        client.setTcpNoDelay(true);
        upstream.setTcpNoDelay(true);
        threads.execute(() -> copy(client, upstream));
        threads.execute(() -> copy(upstream, client));
      } catch (IOException e) {
        // closed, or the server is gone: the client sees its connection fail
      }
    }
  }

  private void copy(Socket from, Socket to) {
    byte[] buffer = new byte[16 * 1024];
    try {
      InputStream in = from.getInputStream();
      OutputStream out = to.getOutputStream();
      for (int n; (n = in.read(buffer)) >= 0; ) {
        awaitOpen();
        out.write(buffer, 0, n);
        out.flush();
      }
      awaitOpen();
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
    sockets.forEach(BlackholeProxy::closeQuietly);
    synchronized (this) {
      notifyAll(); // the waiting copiers find their sockets closed
    }
    threads.shutdownNow();
  }
}
