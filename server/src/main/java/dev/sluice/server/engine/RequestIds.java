package dev.sluice.server.engine;

import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * What one resource remembers of request ids (see {@link Engine#acquire}): the permits held
 * under an id, so a retry gets the same permit; and the ids whose permit was released or
 * expired, with when, so a reuse is refused for {@link #MEMORY} (at most {@link #MAX} per
 * resource, oldest forgotten first), as the Redis store's script does. Ids still waiting are
 * the waiting room's ({@code ResourceState.queued}). Created on a resource's first id.
 */
final class RequestIds<P> {

  static final long MEMORY = TimeUnit.SECONDS.toNanos(60);
  static final int MAX = 100_000;

  private final HashMap<String, P> held = new HashMap<>(2);
  /** Insertion order is end order: ends are stamped with a monotonic clock. */
  private final LinkedHashMap<String, Long> ended = new LinkedHashMap<>();
  private long lastEnded;

  P held(String id) {
    return held.get(id);
  }

  void hold(String id, P permit) {
    held.put(id, permit);
  }

  /**
   * The permit held under {@code id} ended at {@code at}: released or expired uses the id up;
   * given back (its grant never reached the caller) frees it.
   */
  void ended(String id, P permit, long at, boolean givenBack) {
    if (!held.remove(id, permit) || givenBack) {
      return;
    }
    ended.remove(id); // a reuse after it was free: re-inserted last, in end order
    ended.put(id, at);
    lastEnded = at;
    forget(at);
  }

  /** When the permit of {@code id} ended, while that is remembered; else null. */
  Long endedAt(String id, long now) {
    forget(now);
    return ended.get(id);
  }

  /** Whether nothing is left to remember (the resource's state may then be let go). */
  boolean isEmpty(long now) {
    forget(now);
    return held.isEmpty() && ended.isEmpty();
  }

  /** Until when an ended id is remembered: the resource's state is not idle before. */
  long rememberedUntil() {
    return ended.isEmpty() ? 0 : lastEnded + MEMORY;
  }

  private void forget(long now) {
    Iterator<Map.Entry<String, Long>> it = ended.entrySet().iterator();
    while (it.hasNext()) {
      Map.Entry<String, Long> e = it.next();
      if (now - e.getValue() < MEMORY && ended.size() <= MAX) {
        break;
      }
      it.remove();
    }
  }
}
