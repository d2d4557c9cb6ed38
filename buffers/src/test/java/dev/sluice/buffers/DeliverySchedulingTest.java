package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Delivery sleeps when there is nothing to deliver: an idle buffer set arms no timer, a retry
 * waits for its instant on the buffers' clock (a fake one here), and a delivered item leaves
 * only the clean-up of its record, due when its retention passes. Items go to a real endpoint.
 */
class DeliverySchedulingTest {

  @TempDir Path dir;
  private final FakeClock clock = new FakeClock();
  private final FakePermits permits = new FakePermits();
  private Endpoint endpoint;
  private Buffers buffers;

  @BeforeEach
  void open() throws Exception {
    endpoint = new Endpoint();
    buffers = open(clock);
  }

  private Buffers open(BufferClock c) throws Exception {
    return Buffers.builder(permits, TestSyntax.INSTANCE).clock(c).sqlite(dir.resolve("buffers.db"), false).open();
  }

  @AfterEach
  void close() {
    buffers.close();
    endpoint.close();
  }

  private static JsonNode json(String s) throws Exception {
    return BufferSpec.JSON.readTree(s);
  }

  private BufferSpec create(String name, String more) throws Exception {
    return buffers.create(json("{\"name\": \"" + name + "\", \"url\": \"" + endpoint.url("127.0.0.1") + "\","
        + " \"rate\": {\"amount\": 100}" + more + "}"));
  }

  private long push(String name, String body) throws Exception {
    return buffers.push(name, List.of(new NewItem(body.getBytes(StandardCharsets.UTF_8), null, Map.of(), null,
        null))).get().get(0);
  }

  private String state(String name, long id) {
    return buffers.item(name, id).get("state").asText();
  }

  @Test
  void anIdleBufferSetArmsNoTimerAndWakesNothing() throws Exception {
    create("idle", "");
    buffers.pause("idle");
    buffers.resume("idle");
    clock.advance(Duration.ofHours(1));
    assertThat(buffers.deliveryWakeups()).as("delivery wake-ups").isZero();
    assertThat(clock.ran()).as("timers run").isZero();
    assertThat(clock.pending()).as("timers armed").isZero();

    // After a restart: one look at finished items of before, then nothing.
    buffers.close();
    FakeClock later = new FakeClock();
    buffers = open(later);
    later.advance(Duration.ofHours(1));
    assertThat(later.ran()).as("timers run after the restart").isEqualTo(1);
    assertThat(later.pending()).isZero();
    assertThat(buffers.deliveryWakeups()).isZero();
  }

  @Test
  void aRetryWaitsForItsInstantOnTheClockAndADeliveredItemLeavesOnlyItsCleanUp() throws Exception {
    endpoint.answer(500);
    create("r", ", \"maxRetries\": 3, \"backoff\": \"fixed\", \"backoffBase\": \"30s\", \"retention\": \"1d\"");
    long id = push("r", "one");
    // The 500 recorded and the retry armed on the clock.
    await().atMost(Duration.ofSeconds(10)).until(() -> clock.pending() == 1 && state("r", id).equals("pending"));
    assertThat(endpoint.bodies).containsExactly("one");

    clock.advance(Duration.ofSeconds(29));
    assertThat(endpoint.bodies).as("not before its backoff").hasSize(1);
    assertThat(buffers.deliveryWakeups()).isZero();
    clock.advance(Duration.ofSeconds(1));
    assertThat(buffers.deliveryWakeups()).isEqualTo(1);
    await().atMost(Duration.ofSeconds(10)).until(() -> state("r", id).equals("completed"));
    assertThat(endpoint.bodies).containsExactly("one", "one");
    assertThat(buffers.item("r", id).get("history").toString()).contains("HTTP 500", "retry 1 of 3", "HTTP 200");

    // Delivered: nothing left to deliver, only the record's clean-up once its retention passes.
    await().atMost(Duration.ofSeconds(10)).until(() -> clock.pending() == 1);
    int ran = clock.ran();
    clock.advance(Duration.ofHours(23));
    assertThat(clock.ran()).as("nothing runs within the retention").isEqualTo(ran);
    clock.advance(Duration.ofHours(1).plusSeconds(1));
    assertThatThrownBy(() -> buffers.item("r", id)).isInstanceOf(BufferException.class)
        .hasMessageContaining("removed after its retention");
    assertThat(clock.pending()).as("no finished item left: no clean-up armed").isZero();
    assertThat(buffers.deliveryWakeups()).isEqualTo(1);
    assertThat(permits.released).as("both permits used").containsExactly("permit-1", "permit-2");
  }
}
