package dev.sluice.server.limits;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * The last changes of each resource's limit, newest first: what {@code sluice limit history}
 * shows. Two caps bound it: {@link #PER_RESOURCE} changes a resource, and the histories of the
 * {@link #RESOURCES} most recently changed resources (an older resource's history is dropped
 * whole). So a million resources applied from a file cost at most {@code RESOURCES ×
 * PER_RESOURCE} entries, on either store.
 */
public interface LimitHistory {

  /** Changes kept per resource. */
  int PER_RESOURCE = 50;

  /** Resources whose histories are kept: the most recently changed. */
  int RESOURCES = 10_000;

  /**
   * One change.
   *
   * @param atMillis when, Unix epoch milliseconds
   * @param who a key ("key 1a2b3c4d5e6f"), a file ("file limits.yaml sha256:0123456789ab") or "local"
   * @param action created, changed or deleted
   * @param changes each field, {@code name before → after} (created: {@code name value})
   */
  record Entry(long atMillis, String who, String action, List<String> changes) {
    public Entry {
      changes = List.copyOf(changes);
    }
  }

  /** Adds a change of {@code resource}, dropping what the caps leave out. */
  CompletableFuture<Void> add(String resource, Entry entry);

  /** The last {@code n} changes of {@code resource}, newest first; empty if none are kept. */
  CompletableFuture<List<Entry>> recent(String resource, int n);

  /** Kept in this process only (tests; the embedded store keeps its own in a file, {@link FileLimitHistory}). */
  static LimitHistory inMemory() {
    return new InMemory(PER_RESOURCE, RESOURCES);
  }

  /** In this process, with other caps (tests). */
  static LimitHistory inMemory(int perResource, int resources) {
    return new InMemory(perResource, resources);
  }

  /** The in-process history: resources in order of their last change, each a capped deque. */
  final class InMemory implements LimitHistory {
    private final int perResource;
    private final int resources;
    private final LinkedHashMap<String, ArrayDeque<Entry>> byResource; // guarded by this

    InMemory(int perResource, int resources) {
      if (perResource < 1 || resources < 1) {
        throw new IllegalArgumentException("history caps must be at least 1");
      }
      this.perResource = perResource;
      this.resources = resources;
      // Insertion order, and add moves a resource to the end: the eldest is the one changed longest ago.
      this.byResource = new LinkedHashMap<>() {
        @Override
        protected boolean removeEldestEntry(Map.Entry<String, ArrayDeque<Entry>> eldest) {
          return size() > InMemory.this.resources;
        }
      };
    }

    @Override
    public synchronized CompletableFuture<Void> add(String resource, Entry entry) {
      ArrayDeque<Entry> d = byResource.remove(resource);
      if (d == null) {
        d = new ArrayDeque<>();
      }
      byResource.put(resource, d);
      d.addFirst(entry);
      while (d.size() > perResource) {
        d.removeLast();
      }
      return CompletableFuture.completedFuture(null);
    }

    @Override
    public synchronized CompletableFuture<List<Entry>> recent(String resource, int n) {
      ArrayDeque<Entry> d = byResource.get(resource);
      List<Entry> out = new ArrayList<>();
      if (d != null) {
        for (Iterator<Entry> it = d.iterator(); it.hasNext() && out.size() < n; ) {
          out.add(it.next());
        }
      }
      return CompletableFuture.completedFuture(out);
    }

    /**
     * Every change kept, resources from the one changed longest ago and each resource's changes
     * oldest first: adding them in this order to an empty history gives this one back.
     */
    synchronized List<Map.Entry<String, Entry>> oldestFirst() {
      List<Map.Entry<String, Entry>> out = new ArrayList<>();
      byResource.forEach((resource, d) -> d.descendingIterator().forEachRemaining(e -> out.add(Map.entry(resource, e))));
      return out;
    }

    /** How many resources have a history (tests of the cap). */
    public synchronized int resources() {
      return byResource.size();
    }
  }
}
