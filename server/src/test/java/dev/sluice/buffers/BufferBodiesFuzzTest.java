package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.databind.JsonNode;
import dev.sluice.server.BufferWiring;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.Scheduler;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Buffer create bodies and push bodies from the fuzzer's bytes ({@code create NUL push}), against
 * real buffers on SQLite. The invariant: each is accepted, or refused with INVALID (a 400 naming
 * the field), never another exception (a 500). And what is accepted can be sent: every accepted
 * item builds its request against the buffer it was pushed to, and every accepted buffer builds
 * one, so no body can freeze a buffer.
 *
 * <p>In the server module, so the buffers run on the coordinator's own engine and duration
 * syntax; in the buffers' package, so it builds requests with their own code.
 */
class BufferBodiesFuzzTest {

  private static final Pattern LITERAL = Pattern.compile("[0-9.]+|.*:.*");
  private static Buffers buffers;
  private static BufferSpec target;
  private static int created;

  /** One set of buffers for every input: a fuzz run makes tens of thousands of calls. */
  private static synchronized Buffers buffers() throws IOException {
    if (buffers == null) {
      Path dir = Files.createTempDirectory("sluice-buffer-fuzz");
      dir.toFile().deleteOnExit();
      // Names resolve to a documentation address: no lookup leaves the machine.
      TargetPolicy targets = TargetPolicy.defaults().withResolver(host -> LITERAL.matcher(host).matches()
          ? InetAddress.getAllByName(host) : new InetAddress[] {InetAddress.getByName("192.0.2.1")});
      java.util.concurrent.ScheduledExecutorService timers = java.util.concurrent.Executors
          .newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "fuzz-engine-timer");
            t.setDaemon(true);
            return t;
          });
      buffers = BufferWiring.builder(MemoryEngine.builder().scheduler(Scheduler.of(timers)).build())
          .registry(new SimpleMeterRegistry()).targets(targets).sqlite(dir.resolve("buffers.db"), false).open();
      target = buffers.create(BufferSpec.JSON.readTree("{\"name\": \"fz\", \"url\": \"http://192.0.2.1/hook\","
          + " \"rate\": {\"amount\": 1}, \"headers\": {\"Authorization\": \"Bearer admin\", \"X-Tenant\": \"t1\"}}"));
      buffers.pause("fz"); // stored, never sent
    }
    return buffers;
  }

  @FuzzTest(maxDuration = "20s")
  void createAndPushBodiesAreAcceptedOrRefusedCleanly(byte[] input) throws Exception {
    check(input);
  }

  /** The attack run's reproductions and their neighbours, in every build. */
  @Test
  void knownHostileBodies() throws Exception {
    String[] cases = {
        "{\"name\": \"a\", \"url\": \"http://192.0.2.7/x\", \"rate\": {\"amount\": 1}, \"timeout\": \"PT-5S\"}",
        "{\"name\": \"a\", \"url\": \"http://192.0.2.7/x\", \"rate\": {\"amount\": 1}, \"timeout\": \"99999999999999999999s\"}",
        "{\"name\": \"a\", \"url\": \"http://192.0.2.7/x\", \"rate\": {\"amount\": 1}, \"headers\": {\"X-P\": \"\u20ac\"}}",
        "{\"name\": \"a\", \"url\": \"http://0x7f000001:1/\", \"rate\": {\"amount\": 1}}",
        "{\"name\": \"a\", \"url\": \"http://[::1]:0/\", \"rate\": {\"amount\": 1}}",
        "{\"name\": \"a\", \"url\": \"http://169.254.169.254/\", \"rate\": {\"amount\": 1}}",
        "{\"name\": \"ok\", \"url\": \"https://api.example.test/x?token=1\", \"rate\": {\"amount\": 1}, \"headers\":"
            + " {\"X-A\": \"b\"}, \"excerptsVisibleToWorkers\": true}",
    };
    String[] pushes = {
        "{\"body\": \"x\", \"headers\": {\"X-P\": \"\u20ac\"}}",
        "{\"body\": \"x\", \"headers\": {\"Transfer-Encoding\": \"chunked\"}}",
        "{\"body\": \"x\", \"headers\": {\"authorization\": \"Bearer mine\"}}",
        "{\"items\": [{\"body\": {\"n\": 1}}, {\"body\": \"y\", \"headers\": {\"X-Q\": \"a\\u0000b\"}}]}",
        "{\"body\": \"x\", \"headers\": {\"X-Ok\": \"fine\"}, \"idempotencyKey\": \"k\"}",
    };
    for (int i = 0; i < Math.max(cases.length, pushes.length); i++) {
      check((cases[i % cases.length] + "\0" + pushes[i % pushes.length]).getBytes(StandardCharsets.UTF_8));
    }
    assertThat(created).as("the valid body above was accepted").isPositive();
  }

  private static void check(byte[] input) throws Exception {
    Buffers b = buffers();
    int nul = indexOf(input, (byte) 0);
    byte[] createBytes = nul < 0 ? input : Arrays.copyOf(input, nul);
    byte[] pushBytes = nul < 0 ? new byte[0] : Arrays.copyOfRange(input, nul + 1, input.length);
    JsonNode create = json(createBytes);
    if (create != null) {
      BufferSpec spec = null;
      try {
        spec = b.create(create);
      } catch (EngineException | BufferException e) {
        assertInvalid(e);
      }
      if (spec != null) {
        created++;
        b.pause(spec.name());
        Dispatch.request(spec, new byte[0], "{}", "idem"); // a buffer accepted can be sent
        b.delete(spec.name());
      }
    }
    JsonNode push = json(pushBytes);
    if (push != null) {
      List<NewItem> items;
      try {
        items = NewItem.parsePush(push);
        b.push("fz", items).get(30, TimeUnit.SECONDS);
      } catch (EngineException | BufferException e) {
        assertInvalid(e);
        return;
      }
      for (NewItem it : items) {
        Dispatch.request(target, it.body(), it.storedHeaders(), "idem"); // an item accepted can be sent
      }
    }
  }

  /** A refusal from the buffers or from the engine beneath them: INVALID, with a message. */
  private static void assertInvalid(RuntimeException e) {
    Object reason = e instanceof EngineException ee ? ee.reason() : ((BufferException) e).reason();
    assertThat(reason).as(e.getMessage()).hasToString("INVALID");
    assertThat(e.getMessage()).isNotBlank();
  }

  /** The bytes as a JSON document, or null where the HTTP port would refuse them before buffers see them. */
  private static JsonNode json(byte[] bytes) {
    if (bytes.length == 0) {
      return null;
    }
    try {
      JsonNode n = BufferSpec.JSON.readTree(new String(bytes, StandardCharsets.UTF_8));
      return n != null && n.isObject() ? n : null;
    } catch (IOException e) {
      return null;
    }
  }

  private static int indexOf(byte[] a, byte b) {
    for (int i = 0; i < a.length; i++) {
      if (a[i] == b) {
        return i;
      }
    }
    return -1;
  }
}
