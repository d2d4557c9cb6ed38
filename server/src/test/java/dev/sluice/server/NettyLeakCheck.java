package dev.sluice.server;

import static org.assertj.core.api.Assertions.fail;

import io.netty.buffer.AbstractByteBuf;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.util.ResourceLeakDetector;
import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Runs a test class under Netty's paranoid leak detection and fails a test after which Netty
 * reports a LEAK: a pooled buffer that became garbage without being released (the HTTP port
 * once lost its direct memory that way, on errors and hang-ups).
 *
 * <p>Netty reports a leak when the garbage collector has cleared the buffer and the next buffer
 * is tracked; after each test this collects and allocates a few times so that leaks show there.
 * The report reaches us through the {@link ResourceLeakDetector.LeakListener} of the detector
 * every {@code ByteBuf} shares, whatever ran in this JVM before.
 */
public final class NettyLeakCheck implements BeforeAllCallback, AfterEachCallback, AfterAllCallback {

  private static final List<String> leaks = new CopyOnWriteArrayList<>();
  private static ResourceLeakDetector.Level before;

  @Override
  public void beforeAll(ExtensionContext context) {
    start();
  }

  @Override
  public void afterEach(ExtensionContext context) {
    List<String> found = collect();
    if (!found.isEmpty()) {
      fail("Netty reported " + found.size() + " LEAK(s) of pooled buffers (never released) during "
          + context.getDisplayName() + ":\n" + String.join("\n\n", found));
    }
  }

  @Override
  public void afterAll(ExtensionContext context) {
    stop();
  }

  /** Paranoid detection from now on, leaks recorded. */
  static synchronized void start() {
    before = ResourceLeakDetector.getLevel();
    ResourceLeakDetector.setLevel(ResourceLeakDetector.Level.PARANOID);
    detector().setLeakListener((type, records) -> leaks.add("LEAK: " + type + "\n" + records));
  }

  /** The level as it was, no listener. */
  static synchronized void stop() {
    detector().setLeakListener(null);
    ResourceLeakDetector.setLevel(before);
  }

  /** Lets the collector find dropped buffers, and answers (and forgets) the leaks reported so far. */
  static List<String> collect() {
    for (int i = 0; i < 5; i++) {
      System.gc();
      try {
        Thread.sleep(20); // the reference handler enqueues what the collector cleared
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
      ByteBuf probe = ByteBufAllocator.DEFAULT.directBuffer(1); // tracking one drains the queue
      probe.release();
    }
    List<String> found = new ArrayList<>(leaks);
    leaks.removeAll(found);
    return found;
  }

  @SuppressWarnings("unchecked")
  private static ResourceLeakDetector<ByteBuf> detector() {
    try {
      Field f = AbstractByteBuf.class.getDeclaredField("leakDetector");
      f.setAccessible(true);
      return (ResourceLeakDetector<ByteBuf>) f.get(null);
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("Netty's buffer leak detector moved: update NettyLeakCheck", e);
    }
  }
}
