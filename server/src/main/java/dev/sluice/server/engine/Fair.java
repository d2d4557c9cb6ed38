package dev.sluice.server.engine;

import java.util.ArrayDeque;
import java.util.Collection;
import java.util.HashMap;

/**
 * Fair queuing between the tenants of one resource ({@link TenantPolicy}), part of {@link
 * ResourceState} and guarded by its monitor. The Redis store's script keeps the same state and
 * does the same arithmetic in the same order, so both stores pick alike (the engine's
 * differential test holds them to it).
 *
 * <h2>Virtual time</h2>
 * Each tenant has a virtual time: what it has used of the quota divided by its weight. A
 * grant's use is its cost, the microseconds of quota its load takes on its binding dimension
 * ({@code max(load / rate)} over the dimensions it charges; 1 for a limit without rates).
 * Settles charge the difference between the actual and the granted cost, and a give-back takes
 * its cost back, so the shares follow what tenants really used, not their estimates. Among the
 * tenants with waiters the one with the lowest virtual time goes next (ties by name); its head
 * is picked by lane and aging as on a resource without tenants.
 *
 * <p>The system virtual time is the highest virtual time a grant started from. A tenant that
 * starts waiting starts from at least it, so time spent idle earns no credit: a tenant that
 * arrives late gets its share from then on, not a burst to catch up. A tenant without waiters
 * whose virtual time is behind the system's is forgotten (it would start from the system's
 * anyway), so a million tenants used once hold no memory.
 *
 * <h2>Floors</h2>
 * A tenant with a floor {@code f} weighs, while it has demand, at least what gives it {@code f}
 * of the quota against the weight of the other tenants waiting: {@code f / (1 - f)} times their
 * sum. With several floors each is held against all the others, which is exact for one floor
 * and close for several (their sum is at most 100 %).
 *
 * <h2>Caps</h2>
 * A tenant with a cap has its own token buckets inside the quota (full when first used). Its
 * head waits for them as for the shared buckets, but the other tenants do not wait for it: the
 * pick passes over a tenant whose own cap holds its head.
 */
final class Fair {

  /**
   * One tenant's part of the waiting room: three lanes and its own aging turn; and, while it has
   * no waiters but is ahead of the system's virtual time, its idle key ({@link #idle}).
   */
  static final class TRoom {
    /** Its tenant; changes only while the part is spare (out of every heap and map). */
    String name;
    /** {@link #prefix} of its name: most ties between tenants are settled by it alone. */
    long prefix;
    /**
     * Its lanes, by {@link Lane} ordinal: {@link #NO_LANE} until a waiter comes to one ({@link
     * #lane}), then small to start (most tenants have a waiter or two, in one lane).
     */
    @SuppressWarnings("unchecked")
    final ArrayDeque<Waiter>[] lanes = new ArrayDeque[] {NO_LANE, NO_LANE, NO_LANE};
    /** Whether its next grant goes to an aged lower-lane waiter, if there is one. */
    boolean promoteNext = true;
    int waiting;
    /** Its virtual time while it has waiters. */
    double vt;
    /** Its place in {@link Fair#active}'s heap, or -1 while it has no waiters or is in its run. */
    int heapIndex = -1;
    /** Its place in {@link Fair#active}'s run ({@link ActiveHeap}), or -1 while it is not there. */
    int runIndex = -1;
    /** While idle and remembered: {@code vt + t}, see {@link Fair#idle}. */
    double idleKey;
    /** Its place in {@link Fair#idle}, or -1 while it is not there. */
    int idleIndex = -1;
    /**
     * The load queued in each lane, lane by lane, each aligned with the resource's dimensions
     * (wait estimates); null until a waiter came.
     */
    long[] queuedLoad;

    /** Lane {@code l}, to add to (made on first use). */
    ArrayDeque<Waiter> lane(int l) {
      ArrayDeque<Waiter> q = lanes[l];
      if (q == NO_LANE) {
        q = new ArrayDeque<>(1);
        lanes[l] = q;
      }
      return q;
    }

    void addQueued(int lane, long[] vector, int sign, int dims) {
      if (queuedLoad == null || queuedLoad.length != 3 * dims) {
        queuedLoad = new long[3 * dims];
      }
      for (int i = 0; i < dims && i < vector.length; i++) {
        queuedLoad[lane * dims + i] += sign * vector[i];
      }
    }

    /** Adds the load queued in lanes 0 to {@code lane} into {@code into} (aligned with the dimensions). */
    void queuedUpTo(int lane, long[] into) {
      if (queuedLoad == null || queuedLoad.length != 3 * into.length) {
        return; // nothing queued since the dimensions changed
      }
      for (int l = 0; l <= lane; l++) {
        for (int i = 0; i < into.length; i++) {
          into[i] += queuedLoad[l * into.length + i];
        }
      }
    }

    /** The policy its tenant's terms below were read from (the policy's maps are trees: read once). */
    private TenantPolicy terms;
    private double weight;
    private double floor;
    private String statsKey;

    private void read(TenantPolicy policy) {
      if (policy != terms) {
        weight = policy.weight(name);
        floor = policy.floor(name);
        statsKey = policy.statsKey(name);
        terms = policy;
      }
    }

    /** {@link TenantPolicy#weight} of its tenant. */
    double weight(TenantPolicy policy) {
      read(policy);
      return weight;
    }

    /** {@link TenantPolicy#floor} of its tenant. */
    double floor(TenantPolicy policy) {
      read(policy);
      return floor;
    }

    /** {@link TenantPolicy#statsKey} of its tenant. */
    String statsKey(TenantPolicy policy) {
      read(policy);
      return statsKey;
    }

    TRoom(String name) {
      this.name = name;
      this.prefix = prefix(name);
    }

    /** An emptied part of the room taken by another tenant: as new, its arrays kept (all zero). */
    void reuse(String tenant) {
      name = tenant;
      prefix = prefix(tenant);
      terms = null;
      promoteNext = true;
      waiting = 0;
      vt = 0;
    }
  }

  /**
   * The lane of every part of the room that no waiter came to: empty, shared, so it refuses to
   * be added to ({@link TRoom#lane} makes a lane of its own first).
   */
  static final ArrayDeque<Waiter> NO_LANE = new ArrayDeque<>(0) {
    @Override
    public void addFirst(Waiter w) {
      throw new IllegalStateException("the shared empty lane is read-only: add through TRoom.lane");
    }

    @Override
    public void addLast(Waiter w) {
      throw new IllegalStateException("the shared empty lane is read-only: add through TRoom.lane");
    }
  };

  /** A tenant's own buckets (its cap): levels aligned with its cap's rates. */
  static final class CapState {
    final double[] level;
    long lastRefill;

    CapState(java.util.List<RateSpec> rates, long now) {
      level = new double[rates.size()];
      for (int i = 0; i < level.length; i++) {
        level[i] = rates.get(i).burst();
      }
      lastRefill = now;
    }
  }

  /** The weight a floor may raise a tenant to, at most: far above any real ratio. */
  static final double MAX_EFFECTIVE_WEIGHT = 1e12;

  /** How many emptied parts of the room are kept for later tenants. */
  static final int SPARE = 64;

  double vsys;
  /** Sum of the weights of the tenants with waiters. */
  double activeWeight;
  final ActiveHeap active = new ActiveHeap();
  /** The default tenant's part of the room (the resource's own lanes). */
  final TRoom def;
  /** The other tenants' parts while they have waiters or are idle and remembered. */
  private final HashMap<String, TRoom> rooms = new HashMap<>();
  /**
   * Parts emptied and forgotten, kept for the next tenant that comes (at most {@link #SPARE}):
   * many tenants with a waiter or two each would otherwise allocate a part of the room per acquire.
   */
  private final ArrayDeque<TRoom> spare = new ArrayDeque<>();

  /** Fair queuing over the resource whose default tenant's lanes are {@code def}. */
  Fair(TRoom def) {
    this.def = def;
    def.heapIndex = -1; // a state dropped before (spent) may have left its places behind
    def.runIndex = -1;
    def.idleIndex = -1;
  }

  /**
   * A name's first eight characters as an unsigned number that orders like the names do
   * ({@link String#compareTo}): each a byte, the rest zero; a character of 0xFF or more ends it
   * as 0xFF. Equal prefixes say nothing (compare the names); different ones decide: a shorter
   * name that is the start of the other has a zero where the other has a character, and the
   * ending 0xFF is at least every byte below it.
   */
  static long prefix(String name) {
    long p = 0;
    int n = Math.min(8, name.length());
    int i = 0;
    while (i < n) {
      int c = name.charAt(i++);
      if (c >= 0xFF) {
        p = (p << 8) | 0xFF;
        break;
      }
      p = (p << 8) | c;
    }
    return i == 0 ? 0 : p << (8 * (8 - i));
  }

  /** Key first, ties by name (as the script's sorted sets order them: names are ASCII, so bytes). */
  private static int order(double ka, long pa, String na, double kb, long pb, String nb) {
    if (ka < kb) { // plain comparisons, as Redis compares scores (-0.0 ties 0.0; keys are never NaN)
      return -1;
    }
    if (ka > kb) {
      return 1;
    }
    int c = Long.compareUnsigned(pa, pb);
    return c != 0 ? c : na.compareTo(nb);
  }

  /** Lowest virtual time first, ties by name (as the script's sorted set orders them). */
  static int byVirtualTime(TRoom a, TRoom b) {
    return order(a.vt, a.prefix, a.name, b.vt, b.prefix, b.name);
  }

  /** Lowest idle key first, ties by name (as the script's sorted set orders them). */
  static int byIdleKey(TRoom a, TRoom b) {
    return order(a.idleKey, a.prefix, a.name, b.idleKey, b.prefix, b.name);
  }

  /**
   * Tenants' parts of the room as a four-ary heap, each knowing its place (so one leaves or moves
   * without a search): {@link ActiveHeap} by virtual time, {@link IdleHeap} by idle key. Four
   * children a node: half the levels of a binary heap, and a node's children are side by side in
   * {@link #keys}, so a sift reads a cache line a level and moves half as many nodes.
   */
  abstract static class RoomHeap {
    TRoom[] heap = new TRoom[16];
    /**
     * Each node's key and name prefix beside it, so the sifts compare numbers in two arrays and
     * read a node only for its name when the prefixes tie (tenants that start together tie on
     * the key: the prefix settles most of them).
     */
    double[] keys = new double[16];
    long[] prefixes = new long[16];
    int size;

    /** The key {@code r} is ordered by: its virtual time or its idle key. */
    abstract double key(TRoom r);

    abstract int indexOf(TRoom r);

    abstract void setIndex(TRoom r, int i);

    int size() {
      return size;
    }

    boolean isEmpty() {
      return size == 0;
    }

    /** {@link #order} of a node (its key, prefix and part) against the node at {@code j}. */
    private int compareAt(double k, long p, TRoom r, int j) {
      double kj = keys[j];
      long pj = prefixes[j];
      // Only a tie on both reads the names (and so the node at j).
      return k == kj && p == pj ? r.name.compareTo(heap[j].name) : order(k, p, null, kj, pj, null);
    }

    private void put(int i, TRoom r, double k, long p) {
      heap[i] = r;
      keys[i] = k;
      prefixes[i] = p;
      setIndex(r, i);
    }

    /** The node at {@code from} moves to {@code to}. */
    private void move(int from, int to) {
      put(to, heap[from], keys[from], prefixes[from]);
    }

    void push(TRoom r) {
      if (size == heap.length) {
        heap = java.util.Arrays.copyOf(heap, size * 2);
        keys = java.util.Arrays.copyOf(keys, size * 2);
        prefixes = java.util.Arrays.copyOf(prefixes, size * 2);
      }
      put(size, r, key(r), r.prefix);
      size++;
      up(size - 1);
    }

    /** Takes {@code r} out: the last node takes its place and moves to where it belongs. */
    void delete(TRoom r) {
      int i = indexOf(r);
      if (i < 0) {
        return;
      }
      setIndex(r, -1);
      int last = --size;
      if (i != last) {
        move(last, i);
      }
      heap[last] = null;
      if (i != last) {
        moved(i);
      }
    }

    /** Moves the node at {@code i} towards the root while it is below its parent; whether it moved. */
    boolean up(int i) {
      TRoom x = heap[i];
      double k = keys[i];
      long pre = prefixes[i];
      int start = i;
      while (i > 0) {
        int p = (i - 1) >>> 2;
        if (compareAt(k, pre, x, p) >= 0) {
          break;
        }
        move(p, i);
        i = p;
      }
      if (i != start) {
        put(i, x, k, pre);
      }
      return i != start;
    }

    /**
     * Moves the node at {@code i}, not below its parent, to its place in the subtree under it:
     * its hole sinks along the least children to a leaf, then it rises from there (the node is
     * not compared on the way down: a node whose key went up, or the last one put in a hole,
     * usually belongs near the bottom).
     */
    void down(int i) {
      TRoom x = heap[i];
      double k = keys[i];
      long pre = prefixes[i];
      int start = i;
      while (true) {
        int c = 4 * i + 1;
        if (c >= size) {
          break;
        }
        int end = Math.min(c + 4, size);
        for (int j = c + 1; j < end; j++) {
          if (compareAt(keys[j], prefixes[j], heap[j], c) < 0) {
            c = j;
          }
        }
        move(c, i);
        i = c;
      }
      while (i > start) {
        int p = (i - 1) >>> 2;
        if (compareAt(k, pre, x, p) >= 0) {
          break;
        }
        move(p, i);
        i = p;
      }
      put(i, x, k, pre);
    }

    /** The node at {@code i} changed its key: restores the order around it. */
    void moved(int i) {
      keys[i] = key(heap[i]);
      if (!up(i)) {
        down(i);
      }
    }
  }

  /**
   * The tenants with waiters, in {@link #byVirtualTime} order: the first is at hand, a charge
   * re-keys its tenant in place (no node to allocate), and iteration walks them in order lazily
   * (the pick rarely looks past the first).
   *
   * <p>Beside the heap, a run: tenants in order in an array, each at or above the one before. A
   * tenant re-keyed at or above the run's last joins its end in one step instead of sinking
   * through the heap; the first is the lower of the heap's first and the run's. Tenants served in
   * turn, each charged past all the others (many tenants, each with a backlog), so move from the
   * run's head to its end without a sift; a tenant re-keyed below the run's last goes to the heap.
   * A tenant leaving the run's middle leaves an empty slot, skipped and compacted away.
   */
  static final class ActiveHeap extends RoomHeap implements Iterable<TRoom> {
    /**
     * A tenant re-keyed but not yet moved to its place: a grant charges its tenant while the
     * waiter still waits, and when that was its last waiter the tenant leaves at once, so the
     * move would be wasted. Any other look at the heap places it first.
     */
    private TRoom pending;
    /** The run: live tenants in {@code [runHead, runEnd)} in order, empty slots null. */
    private TRoom[] run = new TRoom[16];
    private int runHead;
    private int runEnd;
    private int runLive;

    @Override
    double key(TRoom r) {
      return r.vt;
    }

    @Override
    int indexOf(TRoom r) {
      return r.heapIndex;
    }

    @Override
    void setIndex(TRoom r, int i) {
      r.heapIndex = i;
    }

    @Override
    int size() {
      return size + runLive;
    }

    @Override
    boolean isEmpty() {
      return size + runLive == 0;
    }

    /** The run's slots, empty ones included (tests: the run compacts rather than grow). */
    int runSlots() {
      return run.length;
    }

    /** Whether {@code r} is here (in the heap or the run). */
    boolean contains(TRoom r) {
      return r.heapIndex >= 0 || r.runIndex >= 0;
    }

    private TRoom runFirst() {
      while (runHead < runEnd && run[runHead] == null) {
        runHead++;
      }
      return runHead < runEnd ? run[runHead] : null;
    }

    private TRoom runLast() {
      while (runEnd > runHead && run[runEnd - 1] == null) {
        runEnd--;
      }
      return runEnd > runHead ? run[runEnd - 1] : null;
    }

    private void runAppend(TRoom r) {
      if (runEnd == run.length) {
        if (runLive <= run.length / 2) { // half empty slots or more: close the gaps
          int to = 0;
          for (int i = runHead; i < runEnd; i++) {
            TRoom x = run[i];
            if (x != null) {
              run[i] = null;
              run[to] = x;
              x.runIndex = to++;
            }
          }
          runHead = 0;
          runEnd = to;
        } else {
          run = java.util.Arrays.copyOf(run, run.length * 2);
        }
      }
      run[runEnd] = r;
      r.runIndex = runEnd++;
      runLive++;
    }

    private void runRemove(TRoom r) {
      run[r.runIndex] = null;
      r.runIndex = -1;
      if (--runLive == 0) {
        java.util.Arrays.fill(run, runHead, runEnd, null);
        runHead = 0;
        runEnd = 0;
      }
    }

    /** Whether {@code r} (not in the run) may join the run's end: not below its last. */
    private boolean fitsRunEnd(TRoom r) {
      TRoom last = runLast();
      return last == null || byVirtualTime(r, last) >= 0;
    }

    /** Puts {@code r}, in neither part, where it belongs: the run's end if not below its last, else the heap. */
    private void insert(TRoom r) {
      if (fitsRunEnd(r)) {
        runAppend(r);
      } else {
        push(r);
      }
    }

    /** {@code r}, here, changed its key: puts it where it belongs. */
    private void place(TRoom r) {
      if (r.runIndex >= 0) {
        runRemove(r);
        insert(r);
        return;
      }
      if (fitsRunEnd(r)) {
        delete(r); // from the heap to the run's end: later turns of it cost no sift
        runAppend(r);
      } else {
        moved(r.heapIndex);
      }
    }

    private void settle() {
      TRoom p = pending;
      if (p != null) {
        pending = null;
        place(p);
      }
    }

    TRoom first() {
      settle();
      TRoom h = size == 0 ? null : heap[0];
      TRoom r = runLive == 0 ? null : runFirst();
      return h == null ? r : r == null || byVirtualTime(h, r) < 0 ? h : r;
    }

    void add(TRoom r) {
      settle();
      if (contains(r)) {
        place(r);
      } else {
        insert(r);
      }
    }

    void remove(TRoom r) {
      if (pending == r) {
        pending = null; // only its own place was out of order: the rest is in order
      } else {
        settle();
      }
      if (r.runIndex >= 0) {
        runRemove(r);
      } else {
        delete(r);
      }
    }

    /** Sets {@code r}'s virtual time and restores the order around it. */
    void rekey(TRoom r, double vt) {
      if (pending != r) {
        settle();
      }
      r.vt = vt;
      if (!contains(r)) {
        add(r);
        return;
      }
      pending = r;
    }

    /** In order, lazily: the heap's walk and the run merged. */
    @Override
    public java.util.Iterator<TRoom> iterator() {
      settle();
      java.util.Iterator<TRoom> heapWalk = heapIterator();
      return new java.util.Iterator<>() {
        private TRoom fromHeap = heapWalk.hasNext() ? heapWalk.next() : null;
        private int at = runHead;

        private TRoom fromRun() {
          while (at < runEnd && run[at] == null) {
            at++;
          }
          return at < runEnd ? run[at] : null;
        }

        @Override
        public boolean hasNext() {
          return fromHeap != null || fromRun() != null;
        }

        @Override
        public TRoom next() {
          TRoom r = fromRun();
          if (fromHeap != null && (r == null || byVirtualTime(fromHeap, r) < 0)) {
            TRoom h = fromHeap;
            fromHeap = heapWalk.hasNext() ? heapWalk.next() : null;
            return h;
          }
          if (r == null) {
            throw new java.util.NoSuchElementException();
          }
          at++;
          return r;
        }
      };
    }

    /** The heap's part in order, lazily: a frontier of nodes whose parents were already handed out. */
    private java.util.Iterator<TRoom> heapIterator() {
      return new java.util.Iterator<>() {
        private int firstLeft = size > 0 ? 1 : 0; // 1: the root is still to hand out; 2: its children
        private java.util.PriorityQueue<Integer> frontier;

        @Override
        public boolean hasNext() {
          return firstLeft != 0 || (frontier != null && !frontier.isEmpty());
        }

        @Override
        public TRoom next() {
          if (firstLeft == 1) {
            firstLeft = 0;
            if (size > 1) { // its children join the frontier when the walk goes on (rarely)
              firstLeft = 2;
            }
            return heap[0];
          }
          if (firstLeft == 2) {
            firstLeft = 0;
            frontier = new java.util.PriorityQueue<>((a, b) -> byVirtualTime(heap[a], heap[b]));
            push(0);
          }
          if (frontier == null || frontier.isEmpty()) {
            throw new java.util.NoSuchElementException();
          }
          int i = frontier.poll();
          push(i);
          return heap[i];
        }

        private void push(int i) {
          for (int c = 4 * i + 1; c <= 4 * i + 4 && c < size; c++) {
            frontier.add(c);
          }
        }
      };
    }
  }

  /**
   * Tenants without waiters that may be ahead of the system's virtual time, keyed {@code vt + t}
   * where {@code t} is when they were last charged (us): an idle tenant's lead shrinks by the
   * time it stays away, one microsecond of quota per microsecond, so {@code vt + t - now} is what
   * it starts from (at least the system's). One that fell behind is forgotten: the same key in
   * both stores, so they forget alike (pruning never changes a pick, see {@link #startOf}).
   */
  final IdleHeap idle = new IdleHeap();

  /**
   * The idle tenants as a heap by {@link #byIdleKey}: pruning takes the lowest; a tenant
   * going idle lands near the bottom (its key is about now, above most) in a step or two; the
   * highest ({@link #spent}) is kept on the side and found again by a scan only after it left.
   */
  static final class IdleHeap extends RoomHeap {
    private TRoom max;
    private boolean maxKnown = true;
    /**
     * While the highest is not known: every node left is below this (key, name), the highest
     * that left. A node that comes at or above it is the highest again, without a scan (a tenant
     * that waited and went idle again comes back with a key about now, above the rest).
     */
    private double ceilKey;
    private long ceilPrefix;
    private String ceilName;

    @Override
    double key(TRoom r) {
      return r.idleKey;
    }

    @Override
    int indexOf(TRoom r) {
      return r.idleIndex;
    }

    @Override
    void setIndex(TRoom r, int i) {
      r.idleIndex = i;
    }

    private void lost(TRoom n) {
      if (n == max) {
        max = null;
        maxKnown = false;
        ceilKey = n.idleKey;
        ceilPrefix = n.prefix;
        ceilName = n.name;
      }
    }

    /** {@code n} came or rose: is it now the highest? */
    private void rose(TRoom n) {
      if (maxKnown) {
        if (max == null || byIdleKey(n, max) > 0) {
          max = n;
        }
      } else if (order(n.idleKey, n.prefix, n.name, ceilKey, ceilPrefix, ceilName) >= 0) {
        max = n;
        maxKnown = true;
      }
    }

    TRoom first() {
      return size == 0 ? null : heap[0];
    }

    TRoom last() {
      if (!maxKnown) {
        max = null;
        for (int i = 0; i < size; i++) {
          if (max == null || byIdleKey(heap[i], max) > 0) {
            max = heap[i];
          }
        }
        maxKnown = true;
      }
      return max;
    }

    void add(TRoom n) {
      push(n);
      rose(n);
    }

    TRoom pollFirst() {
      TRoom f = heap[0];
      remove(f);
      return f;
    }

    void remove(TRoom n) {
      if (n.idleIndex >= 0) {
        lost(n);
        delete(n);
        if (size == 0) { // nothing left to scan for: as a new heap
          max = null;
          maxKnown = true;
        }
      }
    }

    void rekey(TRoom n, double key) {
      int c = Double.compare(key, n.idleKey);
      if (c < 0) {
        lost(n); // the ceiling is its old key: everything else is below that
      }
      n.idleKey = key;
      keys[n.idleIndex] = key;
      if (c > 0) {
        down(n.idleIndex);
        rose(n);
      } else if (c < 0) {
        up(n.idleIndex);
      }
    }
  }

  /**
   * The part of the room of {@code tenant}: the default's, or another's while it waits or is
   * remembered idle; with {@code create}, a fresh one otherwise (the caller makes it wait).
   */
  TRoom room(String tenant, boolean create) {
    if (TenantPolicy.DEFAULT_TENANT.equals(tenant)) {
      return def;
    }
    TRoom r = rooms.get(tenant);
    if (r == null && create) {
      r = spare.pollFirst();
      if (r == null) {
        r = new TRoom(tenant);
      } else {
        r.reuse(tenant);
      }
      rooms.put(tenant, r);
    }
    return r;
  }

  /** The other tenants' parts it holds: those with waiters, and idle ones remembered. */
  Collection<TRoom> others() {
    return rooms.values();
  }

  /** {@code r} has no waiters and is not remembered: out of the map, kept for a later tenant. */
  private void forget(TRoom r) {
    if (r != def && rooms.remove(r.name, r) && spare.size() < SPARE) {
      spare.addFirst(r); // empty: every lane and its queued load
    }
  }

  /** Sets the idle key of {@code r} (no waiters) from {@code vt}, or forgets it if it fell behind. */
  private void putIdle(TRoom r, double vt, long nowMicros) {
    if (vt > vsys) {
      double k = vt + nowMicros;
      if (r.idleIndex < 0) {
        r.idleKey = k;
        idle.add(r);
      } else if (Double.compare(r.idleKey, k) != 0) {
        idle.rekey(r, k);
      }
    } else {
      idle.remove(r);
      forget(r);
    }
  }

  /** Forgets idle tenants that fell behind the system's virtual time (the script's test, to the bit). */
  void prune(long nowMicros) {
    while (!idle.isEmpty() && idle.first().idleKey <= vsys + nowMicros) {
      forget(idle.pollFirst());
    }
  }

  /**
   * Whether nothing here matters any more: nobody waits and every idle tenant fell behind. The
   * state is then dropped (both stores, at the start of an operation), so a resource whose
   * tenants went away starts over as one that never had any.
   */
  boolean spent(long nowMicros) {
    return active.isEmpty() && (idle.isEmpty() || idle.last().idleKey <= vsys + nowMicros);
  }

  /** Microseconds until {@link #spent}, once nobody waits; 0 if already. */
  long spentIn(long nowMicros) {
    if (idle.isEmpty()) {
      return 0;
    }
    double left = idle.last().idleKey - vsys - nowMicros;
    return left <= 0 ? 0 : (long) Math.ceil(left);
  }

  /** The weights changed: the running sum starts again, in name order (as the script sums it). */
  void reweigh(TenantPolicy policy) {
    java.util.List<String> names = new java.util.ArrayList<>();
    for (TRoom r : active) {
      names.add(r.name);
    }
    java.util.Collections.sort(names);
    double sum = 0;
    for (String n : names) {
      sum += policy.weight(n);
    }
    activeWeight = sum;
  }

  /**
   * The virtual time the tenant of {@code room} stands at now: its own while waiting, else at
   * least the system's ({@code room} null: a tenant it does not know, at the system's).
   */
  double startOf(TRoom room, long nowMicros) {
    if (room == null) {
      return vsys;
    }
    if (room.waiting > 0) {
      return room.vt;
    }
    return room.idleIndex < 0 ? vsys : Math.max(room.idleKey - nowMicros, vsys);
  }

  void activate(TRoom room, double weight, long nowMicros) {
    room.vt = room.idleIndex < 0 ? vsys : Math.max(room.idleKey - nowMicros, vsys);
    idle.remove(room);
    active.add(room);
    activeWeight += weight;
  }

  void deactivate(TRoom room, double weight, long nowMicros) {
    active.remove(room);
    activeWeight -= weight;
    if (active.isEmpty()) {
      activeWeight = 0; // no drift left over from the running sum
    }
    putIdle(room, room.vt, nowMicros);
  }

  /** The weight {@code tenant} is charged with now: its own, raised by its floor (see class). */
  double effectiveWeight(TenantPolicy policy, String tenant, boolean waiting) {
    return effectiveWeight(policy.weight(tenant), policy.floor(tenant), waiting);
  }

  /** The same from the tenant's weight {@code w} and floor {@code f}. */
  double effectiveWeight(double w, double f, boolean waiting) {
    if (f <= 0) {
      return w;
    }
    double others = activeWeight - (waiting ? w : 0);
    double floorWeight = f >= 1 ? MAX_EFFECTIVE_WEIGHT : Math.min(MAX_EFFECTIVE_WEIGHT, others * f / (1 - f));
    return Math.max(w, floorWeight);
  }

  /**
   * Charges a grant of {@code cost} to {@code tenant}, divided by {@code weight}; {@code room}
   * is its part ({@link #room}, null if it has none).
   */
  void charge(String tenant, TRoom room, double cost, double weight, long nowMicros) {
    double start = startOf(room, nowMicros);
    if (start > vsys) {
      vsys = start;
    }
    setVt(tenant, room, start + cost / weight, nowMicros);
    prune(nowMicros);
  }

  /** Adds {@code delta} (negative for a refund) to a tenant's virtual time. */
  void adjust(String tenant, TRoom room, double delta, long nowMicros) {
    setVt(tenant, room, startOf(room, nowMicros) + delta, nowMicros);
  }

  private void setVt(String tenant, TRoom room, double vt, long nowMicros) {
    if (room != null && room.waiting > 0) {
      active.rekey(room, vt);
      return;
    }
    if (room == null) {
      if (vt <= vsys) {
        return; // not remembered, and nothing to remember
      }
      room = room(tenant, true);
    }
    putIdle(room, vt, nowMicros);
  }

  /** Tenants remembered (with waiters, or ahead of the system's virtual time): tests, memory. */
  int remembered() {
    return active.size() + idle.size();
  }
}
