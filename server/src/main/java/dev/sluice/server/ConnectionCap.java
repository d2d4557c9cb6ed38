package dev.sluice.server;

import io.netty.channel.ChannelFactory;
import io.netty.channel.ChannelOption;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.ServerChannel;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The cap on open connections of the gRPC port, kept where the port accepts them: grpc-java has
 * no such limit and no hook into its child pipeline, so its listening channel is ours
 * ({@link io.grpc.netty.NettyServerBuilder#channelFactory}). A connection beyond the cap is
 * closed with a reset the moment it is accepted, before grpc-java builds a transport for it:
 * refusing costs one accept and one close. {@link GrpcLimits#LOOPBACK_RESERVE} connections
 * beyond the cap are left to loopback peers, which a remote attacker cannot be, so an operator on
 * the host (or {@code kubectl exec}) can still reach the admin service while the cap is full.
 *
 * <p>A listening channel of our own needs event loops of the same kind, so this owns them too
 * (NIO, as grpc-java's defaults on a JVM without native epoll).
 */
final class ConnectionCap {

  private final int cap;
  private final Refusals refusals;
  private final AtomicInteger open = new AtomicInteger();
  final MultiThreadIoEventLoopGroup boss =
      new MultiThreadIoEventLoopGroup(1, new DefaultThreadFactory("sluice-grpc-accept", true), NioIoHandler.newFactory());
  final MultiThreadIoEventLoopGroup workers =
      new MultiThreadIoEventLoopGroup(0, new DefaultThreadFactory("sluice-grpc", true), NioIoHandler.newFactory());

  ConnectionCap(int cap, Refusals refusals) {
    this.cap = cap;
    this.refusals = refusals;
  }

  ChannelFactory<? extends ServerChannel> channelFactory() {
    return Capped::new;
  }

  /** Connections open now (every accepted socket, HTTP/2 or not yet). */
  int open() {
    return open.get();
  }

  int cap() {
    return cap;
  }

  void shutdown() {
    boss.shutdownGracefully(0, 1, TimeUnit.SECONDS);
    workers.shutdownGracefully(0, 1, TimeUnit.SECONDS);
  }

  private boolean admit(SocketChannel child) {
    InetSocketAddress peer = child.remoteAddress();
    int limit = peer != null && peer.getAddress().isLoopbackAddress() ? cap + GrpcLimits.LOOPBACK_RESERVE : cap;
    while (true) {
      int n = open.get();
      if (n >= limit) {
        return false;
      }
      if (open.compareAndSet(n, n + 1)) {
        return true;
      }
    }
  }

  private final class Capped extends NioServerSocketChannel {
    @Override
    protected int doReadMessages(List<Object> buf) throws Exception {
      int from = buf.size();
      int read = super.doReadMessages(buf);
      for (int i = buf.size() - 1; i >= from; i--) {
        SocketChannel child = (SocketChannel) buf.get(i);
        if (admit(child)) {
          child.closeFuture().addListener(f -> open.decrementAndGet());
        } else {
          buf.remove(i);
          read--;
          child.config().setOption(ChannelOption.SO_LINGER, 0); // a reset: no TIME_WAIT left here
          child.unsafe().closeForcibly();
          refusals.refuse("connection_cap", "a connection from " + child.remoteAddress() + " was closed at once: "
              + cap + " are open, the most --max-connections allows (" + GrpcLimits.LOOPBACK_RESERVE
              + " more are kept for loopback)");
        }
      }
      return read;
    }
  }
}
