package dev.sluice.server.http;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.netty.channel.Channel;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.LongSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The HTTP port's open connections, held under {@code --http-max-connections} so that a flood of
 * connections cannot take the file descriptors the gRPC port and the stores need.
 *
 * <p>At the cap a new connection is not simply turned away: that would let a few hundred idle or
 * slowloris sockets lock every prober and dashboard out until their timeouts. Instead the
 * connection that has been <em>waiting</em> longest (no request being answered: idle between
 * requests, or still sending one) is closed to make room. Only when every connection has a
 * request being answered (long polls, event streams) is the new one closed at once. Either way
 * the count of open sockets never passes the cap by more than the one being closed.
 *
 * <p>Everything here runs on the port's single event-loop thread (acceptor and connections share
 * it), so the tables need no locks; the gauge reads a mirror.
 */
final class HttpConnections {

  private static final Logger log = LoggerFactory.getLogger(HttpConnections.class);
  private static final long WARN_EVERY_NANOS = TimeUnit.MINUTES.toNanos(1);

  /** Why the port closed a connection itself; the {@code reason} tag of the counter. */
  enum Reason {
    IDLE("idle"), READ_TIMEOUT("read_timeout"), EVICTED("evicted"), REFUSED("refused"),
    OUT_OF_MEMORY("out_of_memory");

    final String tag;

    Reason(String tag) {
      this.tag = tag;
    }
  }

  private final int max;
  private final Set<Channel> open = new HashSet<>();
  /** Connections with no request being answered, longest waiting first. */
  private final LinkedHashSet<Channel> waiting = new LinkedHashSet<>();
  private final AtomicInteger openCount = new AtomicInteger();
  private final Counter[] closed = new Counter[Reason.values().length];
  private final Counter pausedReads;
  private final RateLimitedWarning capWarning;
  private final RateLimitedWarning memoryWarning;

  HttpConnections(int max, MeterRegistry registry, LongSupplier nanoTime) {
    this.max = max;
    Gauge.builder("sluice.http.connections", openCount, AtomicInteger::get)
        .description("open connections on the HTTP port (at most --http-max-connections)").register(registry);
    for (Reason r : Reason.values()) {
      closed[r.ordinal()] = Counter.builder("sluice.http.connections.closed").tag("reason", r.tag)
          .description("connections the HTTP port closed itself: idle, read_timeout (slowloris), evicted or"
              + " refused at the cap, out_of_memory").register(registry);
    }
    pausedReads = Counter.builder("sluice.http.reads.paused")
        .description("times a connection stopped being read: its pipelined requests reached --http-max-pipelined")
        .register(registry);
    capWarning = new RateLimitedWarning(WARN_EVERY_NANOS, nanoTime);
    memoryWarning = new RateLimitedWarning(WARN_EVERY_NANOS, nanoTime);
  }

  /**
   * A connection was accepted: true to serve it. At the cap, closes the longest-waiting
   * connection to make room, or, when every connection is busy, refuses this one (the caller
   * closes it).
   */
  boolean admit(Channel ch) {
    if (open.size() >= max) {
      Iterator<Channel> oldest = waiting.iterator();
      if (!oldest.hasNext()) {
        count(Reason.REFUSED);
        atCap("refused a new connection: all of them have a request being answered");
        return false;
      }
      Channel evicted = oldest.next();
      oldest.remove();
      forget(evicted);
      count(Reason.EVICTED);
      atCap("closed the connection that had waited longest without a request, to make room");
      evicted.close();
    }
    open.add(ch);
    waiting.add(ch);
    openCount.set(open.size());
    ch.closeFuture().addListener(f -> forget(ch));
    return true;
  }

  /** The connection has a request being answered: it is not closed to make room. */
  void busy(Channel ch) {
    waiting.remove(ch);
  }

  /** The connection waits for its next request: the last in line to be closed to make room. */
  void waiting(Channel ch) {
    if (open.contains(ch)) {
      waiting.remove(ch);
      waiting.add(ch);
    }
  }

  void count(Reason reason) {
    closed[reason.ordinal()].increment();
  }

  void pausedReading() {
    pausedReads.increment();
  }

  /**
   * A connection failed with {@code cause}. Running out of direct memory is logged at WARN (at
   * most once a minute, with how often it happened meanwhile): the port answers nothing while it
   * lasts. Anything else is one client's broken connection, at DEBUG.
   */
  void failed(Channel ch, Throwable cause) {
    if (cause instanceof OutOfMemoryError) {
      count(Reason.OUT_OF_MEMORY);
      long times = memoryWarning.due();
      if (times > 0) {
        log.warn("the HTTP port ran out of memory ({}) and dropped a connection ({} time(s) in the last minute):"
            + " raise -XX:MaxDirectMemorySize, or lower --http-max-connections or --http-max-pipelined",
            cause.getMessage(), times);
      }
      return;
    }
    log.debug("HTTP connection from {} failed: {}", ch.remoteAddress(), cause.toString());
  }

  private void atCap(String what) {
    long times = capWarning.due();
    if (times > 0) {
      log.warn("the HTTP port is at its cap of {} connections and {} ({} time(s) in the last minute): a flood of"
          + " connections, or raise --http-max-connections", max, what, times);
    }
  }

  private void forget(Channel ch) {
    open.remove(ch);
    waiting.remove(ch);
    openCount.set(open.size());
  }

  /**
   * One WARN per period at most: {@link #due()} counts each occurrence and answers how many there
   * were since the last WARN when one is due, else 0.
   */
  static final class RateLimitedWarning {
    private final long periodNanos;
    private final LongSupplier nanoTime;
    private long last;
    private boolean warned;
    private long since;

    RateLimitedWarning(long periodNanos, LongSupplier nanoTime) {
      this.periodNanos = periodNanos;
      this.nanoTime = nanoTime;
    }

    synchronized long due() {
      since++;
      long now = nanoTime.getAsLong();
      if (warned && now - last < periodNanos) {
        return 0;
      }
      warned = true;
      last = now;
      long n = since;
      since = 0;
      return n;
    }
  }
}
