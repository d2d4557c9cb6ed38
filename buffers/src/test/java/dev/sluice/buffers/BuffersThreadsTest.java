package dev.sluice.buffers;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The buffers' threads: every one ends with {@link Buffers#close()}, the HTTP client's included;
 * and a shared node that delivers no buffer keeps its stream follower asleep, not polling.
 */
class BuffersThreadsTest {

  @TempDir Path dir;
  private final FakePermits permits = new FakePermits();

  /** Live threads the buffers or their HTTP client could have started. */
  private static Set<Thread> bufferThreads() {
    return Thread.getAllStackTraces().keySet().stream()
        .filter(t -> t.isAlive() && (t.getName().startsWith("sluice-buffer") || t.getName().startsWith("HttpClient-")))
        .collect(Collectors.toCollection(HashSet::new));
  }

  private static Set<String> names(Set<Thread> threads) {
    return threads.stream().map(Thread::getName).collect(Collectors.toSet());
  }

  @Test
  void closeLeavesNoThreadBehind() throws Exception {
    Set<Thread> before = bufferThreads();
    try (Endpoint endpoint = new Endpoint()) {
      // The system clock (a timer thread), SQLite (its writer), a host name (a lookup thread) and
      // one delivery (the HTTP client's selector and executor).
      Buffers buffers = Buffers.builder(permits, TestSyntax.INSTANCE).sqlite(dir.resolve("buffers.db"), false).open();
      buffers.create(BufferSpec.JSON.readTree("{\"name\": \"t\", \"url\": \"" + endpoint.url("localhost") + "\","
          + " \"rate\": {\"amount\": 100}}"));
      long id = buffers.push("t", List.of(new NewItem("x".getBytes(StandardCharsets.UTF_8), null, Map.of(), null,
          null))).get().get(0);
      await().atMost(Duration.ofSeconds(10)).until(() -> buffers.item("t", id).get("state").asText()
          .equals("completed"));
      Set<Thread> running = bufferThreads();
      running.removeAll(before);
      assertThat(names(running)).as("threads while delivering").anyMatch(n -> n.endsWith("-SelectorManager"))
          .contains("sluice-buffer-timer", "sluice-buffer-store", "sluice-buffer-check-1", "sluice-buffer-http-1");

      buffers.close();
    }
    Set<Thread> left = bufferThreads();
    left.removeAll(before);
    assertThat(names(left)).as("threads left after close").isEmpty();
  }

  @Test
  void aSharedNodeThatDeliversNothingParksItsFollowerUntilItTakesABufferOver() throws Exception {
    FakeClock clock = new FakeClock();
    OtherNodesStore store = new OtherNodesStore();
    Buffers buffers = Buffers.builder(permits, TestSyntax.INSTANCE).clock(clock).backend(store).open();
    try {
      Thread follower = bufferThreads().stream().filter(t -> t.getName().equals("sluice-buffer-follower"))
          .findFirst().orElseThrow();
      for (int round = 1; round <= 10; round++) {
        int r = round;
        // Between rounds: the next one armed on the clock, the follower asleep without a timeout
        // (a follower that polled would be TIMED_WAITING, and would have read).
        await().atMost(Duration.ofSeconds(10)).until(() -> store.claims.get() == r && clock.pending() == 1
            && follower.getState() == Thread.State.WAITING);
        assertThat(buffers.streamReads()).as("stream reads after round %d", r).isZero();
        if (r == 10) {
          store.ours = true; // the other node's lease lapsed: the next round takes the buffer over
        }
        clock.advance(Duration.ofSeconds(1));
      }
      await().atMost(Duration.ofSeconds(10)).until(() -> store.follows.get() > 0);
      assertThat(buffers.stats("s").get("deliveredHere").asBoolean()).isTrue();
    } finally {
      buffers.close();
    }
    assertThat(names(bufferThreads())).doesNotContain("sluice-buffer-follower", "sluice-buffer-sync-1");
  }

  /** A shared store holding one buffer, delivered by another node until {@code ours} is set. */
  private static final class OtherNodesStore implements BufferBackend {
    final AtomicInteger claims = new AtomicInteger();
    final AtomicInteger follows = new AtomicInteger();
    volatile boolean ours;
    private final String spec;

    OtherNodesStore() throws Exception {
      spec = BufferSpec.parse(BufferSpec.JSON.readTree("{\"name\": \"s\", \"url\": \"http://192.0.2.1/x\","
          + " \"rate\": {\"amount\": 1}}"), TestSyntax.INSTANCE).toStoredJson().toString();
    }

    @Override
    public boolean shared() {
      return true;
    }

    @Override
    public List<StoredBuffer> buffers() {
      return List.of(new StoredBuffer("s", spec, false));
    }

    @Override
    public Claim claim(String name) {
      claims.incrementAndGet();
      return ours ? Claim.TAKEN : Claim.LOST;
    }

    @Override
    public Takeover takeOver(String name, long now) {
      return new Takeover(List.of(), 0, 0);
    }

    @Override
    public Map<String, List<OpenItem>> follow(Map<String, Long> after, long blockMillis) {
      follows.incrementAndGet();
      try {
        Thread.sleep(blockMillis); // as XREAD BLOCK with nothing new
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted");
      }
      return Map.of();
    }

    @Override
    public Counts counts(String name, long now) {
      return new Counts(0, 0, 0, 0, 0, 0);
    }

    @Override
    public long oldestFinished(String name) {
      return 0;
    }

    @Override
    public boolean create(String name, String spec, long now) {
      throw new UnsupportedOperationException();
    }

    @Override
    public void delete(String name) {
      throw new UnsupportedOperationException();
    }

    @Override
    public void setPaused(String name, boolean paused) {
      throw new UnsupportedOperationException();
    }

    @Override
    public CompletableFuture<List<Long>> push(String name, List<NewItem> items, long now) {
      throw new UnsupportedOperationException();
    }

    @Override
    public CompletableFuture<Send> startAttempt(String name, long id) {
      throw new UnsupportedOperationException();
    }

    @Override
    public CompletableFuture<Void> finishAttempt(String name, long id, Result r) {
      throw new UnsupportedOperationException();
    }

    @Override
    public ItemRecord item(String name, long id) {
      return null;
    }

    @Override
    public void expire(String name, long before) {}

    @Override
    public CompletableFuture<Void> moved(String name, Map<Long, String> lines, long now) {
      throw new UnsupportedOperationException();
    }

    @Override
    public CompletableFuture<BatchRecord> openBatch(String name, List<Long> ids, long now) {
      throw new UnsupportedOperationException();
    }

    @Override
    public Map<Long, byte[]> bodies(String name, List<Long> ids) {
      throw new UnsupportedOperationException();
    }

    @Override
    public CompletableFuture<Void> dropFromBatch(String name, long seq, List<Long> ids) {
      throw new UnsupportedOperationException();
    }

    @Override
    public CompletableFuture<Void> batchStage(String name, long seq, String stage, String inputFile,
        String providerId) {
      throw new UnsupportedOperationException();
    }

    @Override
    public List<BatchRecord> openBatches(String name) {
      return List.of();
    }

    @Override
    public CompletableFuture<Void> finishBatch(String name, long seq, Map<Long, Result> results, String requeued,
        long now) {
      throw new UnsupportedOperationException();
    }

    @Override
    public void close() {}
  }
}
