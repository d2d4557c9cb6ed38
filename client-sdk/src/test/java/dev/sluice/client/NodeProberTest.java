package dev.sluice.client;

import static org.assertj.core.api.Assertions.assertThat;

import dev.sluice.client.Targets.HostPort;
import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

/** The prober's up/down rule on a fake clock, with probes the test answers. */
class NodeProberTest {

  private static final HostPort A = new HostPort("a", 7420);
  private static final HostPort B = new HostPort("b", 7420);

  private final ManualScheduler scheduler = new ManualScheduler();
  private final FakeProbe probe = new FakeProbe();
  private final List<String> events = new ArrayList<>();
  private final NodeProber prober = new NodeProber(List.of(A, B), probe, scheduler, scheduler::nanoTime,
      new NodeProber.Listener() {
        @Override
        public void down(HostPort node, String why) {
          events.add(node + " down: " + why);
        }

        @Override
        public void up(HostPort node) {
          events.add(node + " up at " + Duration.ofNanos(scheduler.nanoTime()).toMillis() + " ms");
        }
      });

  @Test
  void probesEveryNodeAtStartThenEverySecond() {
    prober.start();
    scheduler.advance(Duration.ZERO);
    assertThat(probe.sentTo()).containsExactly(A, B);

    probe.answer(A, null);
    probe.answer(B, null);
    scheduler.advance(NodeProber.INTERVAL.minusMillis(1));
    assertThat(probe.sentTo()).hasSize(2);
    scheduler.advance(Duration.ofMillis(1));
    assertThat(probe.sentTo()).containsExactly(A, B, A, B);
  }

  @Test
  void oneFailedProbeMarksDownOnceAndOnePassedProbeMarksUp() {
    prober.start();
    scheduler.advance(Duration.ZERO);
    probe.answer(A, null);
    probe.answer(B, null);
    scheduler.advance(Duration.ZERO);
    assertThat(events).isEmpty();
    assertThat(prober.isUp(A)).isTrue();

    scheduler.advance(NodeProber.INTERVAL);
    probe.answer(A, "did not answer a health probe within 1 s");
    probe.answer(B, null);
    scheduler.advance(Duration.ZERO);
    assertThat(events).containsExactly("a:7420 down: did not answer a health probe within 1 s");
    assertThat(prober.isUp(A)).isFalse();
    assertThat(prober.isUp(B)).isTrue();

    scheduler.advance(NodeProber.INTERVAL);
    probe.answer(A, "did not answer a health probe within 1 s");
    scheduler.advance(Duration.ZERO);
    assertThat(events).as("still down: no second event").hasSize(1);

    scheduler.advance(NodeProber.INTERVAL);
    probe.answer(A, null);
    scheduler.advance(Duration.ZERO);
    assertThat(events).containsExactly("a:7420 down: did not answer a health probe within 1 s", "a:7420 up at 3000 ms");
    assertThat(prober.isUp(A)).isTrue();
  }

  @Test
  void aNodeWhoseProbeIsUnansweredIsNotProbedAgainUntilItIs() {
    prober.start();
    scheduler.advance(Duration.ZERO);
    probe.answer(B, null);
    scheduler.advance(NodeProber.INTERVAL);
    assertThat(probe.sentTo()).containsExactly(A, B, B);

    probe.answer(A, "did not answer a health probe within 1 s");
    scheduler.advance(NodeProber.INTERVAL);
    assertThat(probe.sentTo()).containsExactly(A, B, B, A);
    assertThat(events).containsExactly("a:7420 down: did not answer a health probe within 1 s");
  }

  @Test
  void everyNodeAnsweredOnceEveryNodePassedAProbe() {
    prober.start();
    scheduler.advance(Duration.ZERO);
    probe.answer(A, null);
    probe.answer(B, "did not answer a health probe within 3 s");
    scheduler.advance(Duration.ZERO);
    assertThat(prober.everyNodeAnswered()).isFalse();

    scheduler.advance(NodeProber.INTERVAL);
    probe.answer(B, null);
    scheduler.advance(Duration.ZERO);
    assertThat(prober.everyNodeAnswered()).isTrue();
  }

  @Test
  void closingStopsTheProbesAndClosesTheirChannels() {
    prober.start();
    scheduler.advance(Duration.ZERO);
    Consumer<String> inFlight = probe.take(A);
    prober.close();
    inFlight.accept("did not answer a health probe within 1 s");
    scheduler.advance(Duration.ofSeconds(5));

    assertThat(probe.closed).isTrue();
    assertThat(probe.sentTo()).as("only the first round").containsExactly(A, B);
    assertThat(events).isEmpty();
  }

  @Test
  void onlyNoAnswerOrUnavailableOrNotServingIsDown() {
    Duration second = Duration.ofSeconds(1);
    assertThat(NodeProber.HealthProbe.verdict(Status.DEADLINE_EXCEEDED, second))
        .isEqualTo("did not answer a health probe within 1 s");
    assertThat(NodeProber.HealthProbe.verdict(Status.DEADLINE_EXCEEDED, Duration.ofSeconds(3)))
        .isEqualTo("did not answer a health probe within 3 s");
    assertThat(NodeProber.HealthProbe.verdict(Status.UNAVAILABLE.withDescription("io exception"), second))
        .isEqualTo("did not pass its health probe (UNAVAILABLE: io exception)");
    // The node answered, if only to say it has no health service or no such service name.
    assertThat(NodeProber.HealthProbe.verdict(Status.UNIMPLEMENTED, second)).isNull();
    assertThat(NodeProber.HealthProbe.verdict(Status.NOT_FOUND, second)).isNull();
  }

  /** Records each check; the test answers them. */
  private static final class FakeProbe implements NodeProber.Probe {
    record Check(HostPort node, Consumer<String> done) {}

    final List<Check> pending = new ArrayList<>();
    private final List<HostPort> sent = new ArrayList<>();
    boolean closed;

    @Override
    public synchronized void check(HostPort node, Consumer<String> done) {
      pending.add(new Check(node, done));
      sent.add(node);
    }

    synchronized List<HostPort> sentTo() {
      return List.copyOf(sent);
    }

    /** The oldest pending check of {@code node}, removed. */
    synchronized Consumer<String> take(HostPort node) {
      Check c = pending.stream().filter(p -> p.node().equals(node)).findFirst().orElseThrow();
      pending.remove(c);
      return c.done();
    }

    void answer(HostPort node, String why) {
      take(node).accept(why);
    }

    @Override
    public void close() {
      closed = true;
    }
  }
}
