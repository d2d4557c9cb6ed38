package dev.sluice.server.engine;

import java.util.ArrayDeque;
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

  /** One tenant's part of the waiting room: three lanes and its own aging turn. */
  static final class TRoom {
    /** Its tenant; changes only while the part is spare (out of every set and map). */
    String name;
    @SuppressWarnings("unchecked")
    final ArrayDeque<Waiter>[] lanes =
        // Small to start: most tenants have a waiter or two; a long lane grows as it needs.
        new ArrayDeque[] {new ArrayDeque<>(1), new ArrayDeque<>(1), new ArrayDeque<>(1)};
    /** Whether its next grant goes to an aged lower-lane waiter, if there is one. */
    boolean promoteNext = true;
    int waiting;
    /** Its virtual time while it has waiters. */
    double vt;
    /** Its place in {@link Fair#active} (a heap), or -1 while it has no waiters. */
    int heapIndex = -1;
    /** The load queued in each lane, aligned with the resource's dimensions (wait estimates). */
    long[][] queuedLoad;

    void addQueued(int lane, long[] vector, int sign, int dims) {
      if (queuedLoad == null || queuedLoad[0].length != dims) {
        queuedLoad = new long[3][dims];
      }
      for (int i = 0; i < dims && i < vector.length; i++) {
        queuedLoad[lane][i] += sign * vector[i];
      }
    }

    TRoom(String name) {
      this.name = name;
    }

    /** An emptied part of the room taken by another tenant: as new, its arrays kept (all zero). */
    void reuse(String tenant) {
      name = tenant;
      promoteNext = true;
      waiting = 0;
      vt = 0;
    }
  }

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

  double vsys;
  /** Sum of the weights of the tenants with waiters. */
  double activeWeight;
  final ActiveHeap active = new ActiveHeap();

  /** Lowest virtual time first, ties by name (as the script's sorted set orders them). */
  static int byVirtualTime(TRoom a, TRoom b) {
    int c = Double.compare(a.vt, b.vt);
    return c != 0 ? c : a.name.compareTo(b.name);
  }

  /**
   * The tenants with waiters, as a binary heap in {@link #byVirtualTime} order: the first is at
   * hand, a charge re-keys its tenant in place (no node to allocate), and iteration walks them in
   * order lazily (the pick rarely looks past the first).
   */
  static final class ActiveHeap implements Iterable<TRoom> {
    private TRoom[] heap = new TRoom[16];
    private int size;
    /**
     * A tenant re-keyed but not yet moved to its place: a grant charges its tenant while the
     * waiter still waits, and when that was its last waiter the tenant leaves at once, so the
     * move would be wasted. Any other look at the heap places it first.
     */
    private TRoom pending;

    private void settle() {
      TRoom p = pending;
      if (p != null) {
        pending = null;
        if (!up(p.heapIndex)) {
          down(p.heapIndex);
        }
      }
    }

    int size() {
      return size;
    }

    boolean isEmpty() {
      return size == 0;
    }

    TRoom first() {
      settle();
      return size == 0 ? null : heap[0];
    }

    void add(TRoom r) {
      settle();
      if (r.heapIndex >= 0) {
        if (!up(r.heapIndex)) {
          down(r.heapIndex);
        }
        return;
      }
      if (size == heap.length) {
        heap = java.util.Arrays.copyOf(heap, size * 2);
      }
      heap[size] = r;
      r.heapIndex = size;
      size++;
      up(r.heapIndex);
    }

    void remove(TRoom r) {
      if (pending == r) {
        pending = null; // only its own place was out of order: the rest is a heap
      } else {
        settle();
      }
      int i = r.heapIndex;
      if (i < 0) {
        return;
      }
      r.heapIndex = -1;
      TRoom last = heap[--size];
      heap[size] = null;
      if (i == size) {
        return;
      }
      heap[i] = last;
      last.heapIndex = i;
      if (!up(i)) {
        down(i);
      }
    }

    /** Sets {@code r}'s virtual time and restores the order around it. */
    void rekey(TRoom r, double vt) {
      if (pending != r) {
        settle();
      }
      r.vt = vt;
      if (r.heapIndex < 0) {
        add(r);
        return;
      }
      pending = r;
    }

    private boolean up(int i) {
      TRoom x = heap[i];
      int start = i;
      while (i > 0) {
        int p = (i - 1) >>> 1;
        TRoom parent = heap[p];
        if (byVirtualTime(x, parent) >= 0) {
          break;
        }
        heap[i] = parent;
        parent.heapIndex = i;
        i = p;
      }
      heap[i] = x;
      x.heapIndex = i;
      return i != start;
    }

    private void down(int i) {
      TRoom x = heap[i];
      int half = size >>> 1;
      while (i < half) {
        int c = 2 * i + 1;
        TRoom child = heap[c];
        int rc = c + 1;
        if (rc < size && byVirtualTime(heap[rc], child) < 0) {
          c = rc;
          child = heap[c];
        }
        if (byVirtualTime(x, child) <= 0) {
          break;
        }
        heap[i] = child;
        child.heapIndex = i;
        i = c;
      }
      heap[i] = x;
      x.heapIndex = i;
    }

    /** In order, lazily: a frontier of the heap's nodes whose parents were already handed out. */
    @Override
    public java.util.Iterator<TRoom> iterator() {
      settle();
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
          if (2 * i + 1 < size) {
            frontier.add(2 * i + 1);
          }
          if (2 * i + 2 < size) {
            frontier.add(2 * i + 2);
          }
        }
      };
    }
  }
  /**
   * Tenants without waiters that may be ahead of the system's virtual time, as {@code vt + t}
   * where {@code t} is when they were last charged (us): an idle tenant's lead shrinks by the
   * time it stays away, one microsecond of quota per microsecond, so {@code vt + t - now} is what
   * it starts from (at least the system's). One that fell behind is forgotten: the same key in
   * both stores, so they forget alike (pruning never changes a pick, see {@link #startOf}).
   */
  final HashMap<String, Idle> idle = new HashMap<>();
  private final IdleHeap idleByKey = new IdleHeap();

  /** An idle tenant's key ({@code vt + t}), changed only through {@link IdleHeap#rekey}. */
  static final class Idle {
    final String name;
    double key;
    /** Its place in {@link IdleHeap}, -1 once out. */
    int index = -1;

    Idle(String name, double key) {
      this.name = name;
      this.key = key;
    }
  }

  /** Lowest key first, ties by name (as the script's sorted set orders them). */
  static int byKey(Idle a, Idle b) {
    int c = Double.compare(a.key, b.key);
    return c != 0 ? c : a.name.compareTo(b.name);
  }

  /**
   * The idle tenants as a binary heap by {@link #byKey}: pruning takes the lowest; a tenant
   * going idle lands near the bottom (its key is about now, above most) in a step or two; the
   * highest ({@link #spent}) is kept on the side and found again by a scan only after it left.
   */
  static final class IdleHeap {
    private Idle[] heap = new Idle[16];
    private int size;
    private Idle max;
    private boolean maxKnown = true;
    /**
     * While the highest is not known: every node left is below this (key, name), the highest
     * that left. A node that comes at or above it is the highest again, without a scan (a tenant
     * that waited and went idle again comes back with a key about now, above the rest).
     */
    private double ceilKey;
    private String ceilName;

    private void lost(Idle n) {
      if (n == max) {
        max = null;
        maxKnown = false;
        ceilKey = n.key;
        ceilName = n.name;
      }
    }

    /** {@code n} came or rose: is it now the highest? */
    private void rose(Idle n) {
      if (maxKnown) {
        if (max == null || byKey(n, max) > 0) {
          max = n;
        }
      } else {
        int c = Double.compare(n.key, ceilKey);
        if (c > 0 || (c == 0 && n.name.compareTo(ceilName) >= 0)) {
          max = n;
          maxKnown = true;
        }
      }
    }

    boolean isEmpty() {
      return size == 0;
    }

    int size() {
      return size;
    }

    Idle first() {
      return size == 0 ? null : heap[0];
    }

    Idle last() {
      if (!maxKnown) {
        max = null;
        for (int i = 0; i < size; i++) {
          if (max == null || byKey(heap[i], max) > 0) {
            max = heap[i];
          }
        }
        maxKnown = true;
      }
      return max;
    }

    void add(Idle n) {
      if (size == heap.length) {
        heap = java.util.Arrays.copyOf(heap, size * 2);
      }
      heap[size] = n;
      n.index = size;
      size++;
      up(n.index);
      rose(n);
    }

    Idle pollFirst() {
      Idle f = heap[0];
      remove(f);
      return f;
    }

    void remove(Idle n) {
      int i = n.index;
      if (i < 0) {
        return;
      }
      n.index = -1;
      lost(n);
      Idle last = heap[--size];
      heap[size] = null;
      if (i == size) {
        return;
      }
      heap[i] = last;
      last.index = i;
      if (!up(i)) {
        down(i);
      }
    }

    void rekey(Idle n, double key) {
      int c = Double.compare(key, n.key);
      if (c < 0) {
        lost(n); // the ceiling is its old key: everything else is below that
      }
      n.key = key;
      if (c > 0) {
        down(n.index);
        rose(n);
      } else if (c < 0) {
        up(n.index);
      }
    }

    private boolean up(int i) {
      Idle x = heap[i];
      int start = i;
      while (i > 0) {
        int p = (i - 1) >>> 1;
        Idle parent = heap[p];
        if (byKey(x, parent) >= 0) {
          break;
        }
        heap[i] = parent;
        parent.index = i;
        i = p;
      }
      heap[i] = x;
      x.index = i;
      return i != start;
    }

    private void down(int i) {
      Idle x = heap[i];
      int half = size >>> 1;
      while (i < half) {
        int c = 2 * i + 1;
        Idle child = heap[c];
        int rc = c + 1;
        if (rc < size && byKey(heap[rc], child) < 0) {
          c = rc;
          child = heap[c];
        }
        if (byKey(x, child) <= 0) {
          break;
        }
        heap[i] = child;
        child.index = i;
        i = c;
      }
      heap[i] = x;
      x.index = i;
    }
  }

  /** What an idle tenant's virtual time is now ({@code nowMicros}), before the system's floor. */
  private double idleVt(String tenant, long nowMicros) {
    Idle k = idle.get(tenant);
    return k == null ? Double.NEGATIVE_INFINITY : k.key - nowMicros;
  }

  private void putIdle(String tenant, double vt, long nowMicros) {
    if (vt > vsys) {
      double k = vt + nowMicros;
      Idle node = idle.get(tenant);
      if (node == null) {
        node = new Idle(tenant, k);
        idle.put(tenant, node);
        idleByKey.add(node);
      } else if (Double.compare(node.key, k) != 0) {
        idleByKey.rekey(node, k);
      }
    } else {
      removeIdle(tenant);
    }
  }

  private void removeIdle(String tenant) {
    Idle k = idle.remove(tenant);
    if (k != null) {
      idleByKey.remove(k);
    }
  }

  /** Forgets idle tenants that fell behind the system's virtual time (the script's test, to the bit). */
  void prune(long nowMicros) {
    while (!idleByKey.isEmpty() && idleByKey.first().key <= vsys + nowMicros) {
      idle.remove(idleByKey.pollFirst().name);
    }
  }

  /**
   * Whether nothing here matters any more: nobody waits and every idle tenant fell behind. The
   * state is then dropped (both stores, at the start of an operation), so a resource whose
   * tenants went away starts over as one that never had any.
   */
  boolean spent(long nowMicros) {
    return active.isEmpty() && (idleByKey.isEmpty() || idleByKey.last().key <= vsys + nowMicros);
  }

  /** Microseconds until {@link #spent}, once nobody waits; 0 if already. */
  long spentIn(long nowMicros) {
    if (idleByKey.isEmpty()) {
      return 0;
    }
    double left = idleByKey.last().key - vsys - nowMicros;
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

  /** The virtual time {@code tenant} stands at now: its own while waiting, else at least the system's. */
  double startOf(String tenant, TRoom room, long nowMicros) {
    if (room != null && room.waiting > 0) {
      return room.vt;
    }
    return Math.max(idleVt(tenant, nowMicros), vsys);
  }

  void activate(TRoom room, double weight, long nowMicros) {
    Idle k = idle.remove(room.name); // one look-up: its idle time, then forgotten
    room.vt = Math.max(k == null ? Double.NEGATIVE_INFINITY : k.key - nowMicros, vsys);
    if (k != null) {
      idleByKey.remove(k);
    }
    active.add(room);
    activeWeight += weight;
  }

  void deactivate(TRoom room, double weight, long nowMicros) {
    active.remove(room);
    activeWeight -= weight;
    if (active.isEmpty()) {
      activeWeight = 0; // no drift left over from the running sum
    }
    putIdle(room.name, room.vt, nowMicros);
  }

  /** The weight {@code tenant} is charged with now: its own, raised by its floor (see class). */
  double effectiveWeight(TenantPolicy policy, String tenant, boolean waiting) {
    double w = policy.weight(tenant);
    double f = policy.floor(tenant);
    if (f <= 0) {
      return w;
    }
    double others = activeWeight - (waiting ? w : 0);
    double floorWeight = f >= 1 ? MAX_EFFECTIVE_WEIGHT : Math.min(MAX_EFFECTIVE_WEIGHT, others * f / (1 - f));
    return Math.max(w, floorWeight);
  }

  /** Charges a grant of {@code cost} to {@code tenant}, divided by {@code weight}. */
  void charge(String tenant, TRoom room, double cost, double weight, long nowMicros) {
    double start = startOf(tenant, room, nowMicros);
    if (start > vsys) {
      vsys = start;
    }
    setVt(tenant, room, start + cost / weight, nowMicros);
    prune(nowMicros);
  }

  /** Adds {@code delta} (negative for a refund) to a tenant's virtual time. */
  void adjust(String tenant, TRoom room, double delta, long nowMicros) {
    setVt(tenant, room, startOf(tenant, room, nowMicros) + delta, nowMicros);
  }

  private void setVt(String tenant, TRoom room, double vt, long nowMicros) {
    if (room != null && room.waiting > 0) {
      active.rekey(room, vt);
      return;
    }
    putIdle(tenant, vt, nowMicros);
  }

  /** Tenants remembered (with waiters, or ahead of the system's virtual time): tests, memory. */
  int remembered() {
    return active.size() + idle.size();
  }
}
