package dev.sluice.server.engine;

import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeSet;

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
  final TreeSet<TRoom> active = new TreeSet<>(Fair::byVirtualTime);

  /** Lowest virtual time first, ties by name (as the script's sorted set orders them). */
  private static int byVirtualTime(TRoom a, TRoom b) {
    int c = Double.compare(a.vt, b.vt);
    return c != 0 ? c : a.name.compareTo(b.name);
  }
  /**
   * Tenants without waiters that may be ahead of the system's virtual time, as {@code vt + t}
   * where {@code t} is when they were last charged (us): an idle tenant's lead shrinks by the
   * time it stays away, one microsecond of quota per microsecond, so {@code vt + t - now} is what
   * it starts from (at least the system's). One that fell behind is forgotten: the same key in
   * both stores, so they forget alike (pruning never changes a pick, see {@link #startOf}).
   */
  final HashMap<String, Double> idle = new HashMap<>();
  private final TreeSet<Map.Entry<String, Double>> idleByKey =
      new TreeSet<>(Map.Entry.<String, Double>comparingByValue().thenComparing(Map.Entry.comparingByKey()));

  /** What an idle tenant's virtual time is now ({@code nowMicros}), before the system's floor. */
  private double idleVt(String tenant, long nowMicros) {
    Double k = idle.get(tenant);
    return k == null ? Double.NEGATIVE_INFINITY : k - nowMicros;
  }

  private void putIdle(String tenant, double vt, long nowMicros) {
    removeIdle(tenant);
    if (vt > vsys) {
      double k = vt + nowMicros;
      idle.put(tenant, k);
      idleByKey.add(Map.entry(tenant, k));
    }
  }

  private void removeIdle(String tenant) {
    Double k = idle.remove(tenant);
    if (k != null) {
      idleByKey.remove(Map.entry(tenant, k));
    }
  }

  /** Forgets idle tenants that fell behind the system's virtual time (the script's test, to the bit). */
  void prune(long nowMicros) {
    while (!idleByKey.isEmpty() && idleByKey.first().getValue() <= vsys + nowMicros) {
      idle.remove(idleByKey.pollFirst().getKey());
    }
  }

  /**
   * Whether nothing here matters any more: nobody waits and every idle tenant fell behind. The
   * state is then dropped (both stores, at the start of an operation), so a resource whose
   * tenants went away starts over as one that never had any.
   */
  boolean spent(long nowMicros) {
    return active.isEmpty() && (idleByKey.isEmpty() || idleByKey.last().getValue() <= vsys + nowMicros);
  }

  /** Microseconds until {@link #spent}, once nobody waits; 0 if already. */
  long spentIn(long nowMicros) {
    if (idleByKey.isEmpty()) {
      return 0;
    }
    double left = idleByKey.last().getValue() - vsys - nowMicros;
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
    room.vt = Math.max(idleVt(room.name, nowMicros), vsys);
    removeIdle(room.name);
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
      active.remove(room);
      room.vt = vt;
      active.add(room);
      return;
    }
    putIdle(tenant, vt, nowMicros);
  }

  /** Tenants remembered (with waiters, or ahead of the system's virtual time): tests, memory. */
  int remembered() {
    return active.size() + idle.size();
  }
}
