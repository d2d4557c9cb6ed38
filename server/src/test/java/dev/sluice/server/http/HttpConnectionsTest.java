package dev.sluice.server.http;

import static org.assertj.core.api.Assertions.assertThat;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.netty.channel.embedded.EmbeddedChannel;
import java.io.IOException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The connection table's choices, and how often running out of memory is logged. */
class HttpConnectionsTest {

  private final SimpleMeterRegistry registry = new SimpleMeterRegistry();
  private final AtomicLong now = new AtomicLong();

  private double closed(String reason) {
    return registry.get("sluice.http.connections.closed").tag("reason", reason).counter().count();
  }

  private double open() {
    return registry.get("sluice.http.connections").gauge().value();
  }

  @Test
  void atTheCapTheLongestWaitingMakesRoomAndBusyOnesAreKept() {
    HttpConnections table = new HttpConnections(3, registry, now::get);
    EmbeddedChannel a = new EmbeddedChannel();
    EmbeddedChannel b = new EmbeddedChannel();
    EmbeddedChannel c = new EmbeddedChannel();
    assertThat(table.admit(a) && table.admit(b) && table.admit(c)).isTrue();
    table.busy(a); // a long poll
    table.waiting(b); // b answered a request just now: c has waited longer

    EmbeddedChannel d = new EmbeddedChannel();
    assertThat(table.admit(d)).isTrue();
    assertThat(c.isOpen()).as("waited longest").isFalse();
    assertThat(a.isOpen() && b.isOpen()).isTrue();
    assertThat(open()).isEqualTo(3);

    table.busy(b);
    table.busy(d);
    EmbeddedChannel e = new EmbeddedChannel();
    assertThat(table.admit(e)).as("every connection busy: refused").isFalse();
    assertThat(a.isOpen() && b.isOpen() && d.isOpen()).isTrue();
    assertThat(closed("evicted")).isEqualTo(1);
    assertThat(closed("refused")).isEqualTo(1);

    b.close();
    assertThat(table.admit(e)).as("a closed connection frees its place").isTrue();
    assertThat(open()).isEqualTo(3);
  }

  @Test
  void runningOutOfMemoryIsCountedEachTimeAndWarnedAtMostOnceAMinute() {
    HttpConnections table = new HttpConnections(3, registry, now::get);
    EmbeddedChannel ch = new EmbeddedChannel();
    table.failed(ch, new IOException("Connection reset by peer"));
    assertThat(closed("out_of_memory")).isZero();
    table.failed(ch, new OutOfMemoryError("failed to allocate 4194304 byte(s) of direct memory")); // Netty's kind
    table.failed(ch, new OutOfMemoryError("Cannot reserve 4194304 bytes of direct buffer memory"));
    assertThat(closed("out_of_memory")).isEqualTo(2);

    HttpConnections.RateLimitedWarning w = new HttpConnections.RateLimitedWarning(TimeUnit.MINUTES.toNanos(1),
        now::get);
    assertThat(w.due()).as("the first at once").isEqualTo(1);
    now.addAndGet(TimeUnit.SECONDS.toNanos(59));
    assertThat(w.due()).isZero();
    assertThat(w.due()).isZero();
    now.addAndGet(TimeUnit.SECONDS.toNanos(1));
    assertThat(w.due()).as("a minute on: with the two held back").isEqualTo(3);
    assertThat(w.due()).isZero();
  }
}
