package dev.sluice.server;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.netty.handler.codec.http2.Http2Exception;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArraySet;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;
import java.util.logging.Filter;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the gRPC port refused, and why: a counter per reason ({@code sluice.grpc.refused}, in
 * Prometheus {@code sluice_grpc_refused_total{reason=...}}) and at most one log line per reason
 * a minute, never a stack trace. A client can make the port refuse things as fast as it can
 * send them; the log must not grow with it (issue 26: 100 000 oversized headers wrote 330 MB).
 *
 * <p>grpc-netty logs each bad stream itself, through java.util.logging, as a WARNING with the
 * whole stack ({@code io.grpc.netty.NettyServerHandler}: "Stream Error" for an oversized header
 * block, "Expected header TE", "unexpected ping ack"), and each connection it ends for a
 * protocol error at INFO with the stack ({@code io.grpc.netty.NettyServerTransport.connections}:
 * a bad preface, too many resets). {@link #tameGrpcNetty} puts a filter on those loggers which
 * turns each such record into a refusal counted here.
 */
final class Refusals {

  private static final Logger log = LoggerFactory.getLogger(Refusals.class);
  private static final long LOG_EVERY_NANOS = TimeUnit.MINUTES.toNanos(1);
  /** Held strongly: java.util.logging keeps loggers weakly, and the filter lives on the logger. */
  private static final java.util.logging.Logger GRPC_NETTY =
      java.util.logging.Logger.getLogger("io.grpc.netty.NettyServerHandler");
  /** grpc-netty's "Transport failed", at INFO with a stack trace, for each connection ended by an error. */
  private static final java.util.logging.Logger GRPC_NETTY_CONNECTIONS =
      java.util.logging.Logger.getLogger("io.grpc.netty.NettyServerTransport.connections");
  /** Servers in this JVM; grpc-netty's logger is one for all, so each of them counts its records. */
  private static final Set<Refusals> LISTENING = new CopyOnWriteArraySet<>();

  private final MeterRegistry registry;
  private final LongSupplier nanos;
  private final ConcurrentHashMap<String, Kind> kinds = new ConcurrentHashMap<>();

  private final class Kind {
    final Counter counter;
    final AtomicLong nextLog = new AtomicLong(Long.MIN_VALUE);
    final AtomicLong quiet = new AtomicLong();

    Kind(String reason) {
      counter = Counter.builder("sluice.grpc.refused").tag("reason", reason)
          .description("what the gRPC port refused or cut, by reason").register(registry);
    }
  }

  Refusals(MeterRegistry registry, LongSupplier nanos) {
    this.registry = registry;
    this.nanos = nanos;
  }

  /** Counts one refusal; logs {@code detail} unless this reason was logged less than a minute ago. */
  void refuse(String reason, String detail) {
    Kind k = kinds.computeIfAbsent(reason, Kind::new);
    k.counter.increment();
    long now = nanos.getAsLong();
    long next = k.nextLog.get();
    if ((next == Long.MIN_VALUE || now - next >= 0) && k.nextLog.compareAndSet(next, now + LOG_EVERY_NANOS)) {
      long more = k.quiet.getAndSet(0);
      log.warn("gRPC port refused ({}): {}{}", reason, detail, more == 0 ? ""
          : " (and " + more + " more since the last such line; all counted in sluice_grpc_refused_total)");
    } else {
      k.quiet.incrementAndGet();
    }
  }

  /** Counts grpc-netty's per-stream warnings here from now on, instead of logging each. */
  void listen() {
    tameGrpcNetty();
    LISTENING.add(this);
  }

  void stopListening() {
    LISTENING.remove(this);
  }

  private static synchronized void tameGrpcNetty() {
    if (GRPC_NETTY.getFilter() instanceof GrpcNettyFilter) {
      return;
    }
    GRPC_NETTY.setFilter(new GrpcNettyFilter(Level.WARNING));
    GRPC_NETTY_CONNECTIONS.setFilter(new GrpcNettyFilter(Level.INFO));
  }

  /** The reason a grpc-netty record stands for, in a word a counter can carry. */
  static String reason(LogRecord r) {
    String msg = String.valueOf(r.getMessage());
    Throwable t = r.getThrown();
    String thrown = t == null ? "" : String.valueOf(t.getMessage());
    if (thrown.contains("too_many_rststreams")) {
      return "too_many_resets";
    }
    if (thrown.contains("client preface")) {
      return "bad_preface";
    }
    if (t instanceof Http2Exception.HeaderListSizeException) {
      return "headers_too_large";
    }
    if (t instanceof Http2Exception e) {
      return "http2_" + e.error().name().toLowerCase();
    }
    if (msg.startsWith("Expected header TE")) {
      return "missing_te_header";
    }
    if (msg.contains("ping")) {
      return "unexpected_ping";
    }
    return msg.startsWith("Stream Error") || msg.startsWith("Exception in") ? "bad_stream" : "protocol_error";
  }

  private static final class GrpcNettyFilter implements Filter {
    private final Level from;

    GrpcNettyFilter(Level from) {
      this.from = from;
    }

    @Override
    public boolean isLoggable(LogRecord r) {
      if (r.getLevel().intValue() < from.intValue() || (from == Level.INFO && r.getThrown() == null)) {
        return true;
      }
      String reason = reason(r);
      Throwable t = r.getThrown();
      String detail = "grpc-netty: " + r.getMessage() + (t == null ? "" : ": " + oneLine(t));
      for (Refusals each : LISTENING) {
        each.refuse(reason, detail);
      }
      return LISTENING.isEmpty();
    }
  }

  private static String oneLine(Throwable t) {
    String s = t.getClass().getSimpleName() + ": " + t.getMessage();
    s = s.replaceAll("\\s+", " ");
    return s.length() > 300 ? s.substring(0, 300) + "..." : s;
  }
}
