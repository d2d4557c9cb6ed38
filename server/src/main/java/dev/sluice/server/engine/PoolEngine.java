package dev.sluice.server.engine;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;

/**
 * Pools over either store: a pool ({@link LimitSpec#isPool()}) names member resources, each with
 * its own limit, that other workers may also use directly. Everything else passes through.
 *
 * <p>An acquire on a pool asks each member's {@linkplain Engine#estimate estimate} and tries
 * the soonest member once, at once, when it says now. Otherwise it waits in every member's
 * waiting room at once, in the caller's tenant and lane, with the same request id and deadline:
 * the first member to grant wins, and the others are cancelled (a grant that raced with the
 * cancel is given back whole, by the {@link Ticket} protocol). So an earlier arrival is ahead
 * of a later one in every member's line: the pool has one FIFO, each member keeps its own
 * order with its direct users, and a paused member simply grants nothing while the others
 * carry the traffic. The grant names its member ({@link Grant#resource()}) and its permit id
 * carries it ({@code ID@MEMBER}: each store numbers permits per resource), so release, settle
 * and renew reach that member given either name; reports go to the member.
 *
 * <p>The routing is the same code on both stores, over the stores' own operations, so the
 * engine's differential test holds pools to the same behaviour as everything else.
 */
public final class PoolEngine extends ForwardingEngine {


  public PoolEngine(Engine store) {
    super(store);
  }

  /** The slice mode engine under the pools, or null when this node slices nothing. */
  public static SliceEngine sliced(Engine engine) {
    Engine e = engine instanceof PoolEngine p ? p.store : engine;
    return e instanceof SliceEngine s ? s : null;
  }

  /** The store's engine under the pools (and slices), e.g. for a store's own meters. */
  public static Engine unwrap(Engine engine) {
    Engine e = engine instanceof PoolEngine p ? p.store : engine;
    return e instanceof SliceEngine s ? s.store() : e;
  }

  /** The pool's limit, or empty for a resource of its own or none; without waiting when cached. */
  private CompletableFuture<Optional<LimitSpec>> pool(String resource) {
    return store.cachedLimit(resource)
        .handle((spec, error) -> error == null && spec.isPresent() && spec.get().isPool() ? spec : Optional.empty());
  }

  // ---------------------------------------------------------------------------------- worker

  @Override
  public Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant) {
    CompletableFuture<Optional<LimitSpec>> lookup = pool(resource);
    if (lookup.isDone() && lookup.join().isEmpty()) {
      return store.acquire(resource, load, lane, timeoutNanos, requestId, tenant); // the common case
    }
    PoolTicket ticket = new PoolTicket(resource);
    lookup.thenAccept(spec -> {
      if (spec.isEmpty()) {
        ticket.follow(List.of(store.acquire(resource, load, lane, timeoutNanos, requestId, tenant)), true);
      } else {
        route(ticket, spec.get(), load, lane, timeoutNanos, requestId, tenant);
      }
    });
    return ticket;
  }

  /** Estimates, then a try at the soonest member if it says now, then a wait at every member. */
  private void route(
      PoolTicket ticket, LimitSpec pool, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId,
      String tenant) {
    List<String> members = pool.members();
    List<CompletableFuture<Long>> estimates = new ArrayList<>(members.size());
    for (String m : members) {
      estimates.add(store.estimate(m, load, lane, tenant));
    }
    CompletableFuture.allOf(estimates.stream().map(f -> f.handle((v, e) -> null)).toArray(CompletableFuture[]::new))
        .thenRun(() -> {
          List<Integer> order = new ArrayList<>();
          List<Throwable> errors = new ArrayList<>();
          for (int i = 0; i < members.size(); i++) {
            CompletableFuture<Long> f = estimates.get(i);
            if (f.isCompletedExceptionally()) {
              errors.add(EngineException.unwrap(f.handle((v, e) -> e).join()));
            } else {
              order.add(i);
            }
          }
          if (order.isEmpty()) {
            ticket.fail(noMember(pool, errors));
            return;
          }
          // Soonest first; -1 (paused until resumed) last; ties in the pool's order.
          order.sort(Comparator.comparingLong((Integer i) -> {
            long e = estimates.get(i).join();
            return e < 0 ? Long.MAX_VALUE : e;
          }).thenComparingInt(i -> i));
          List<String> candidates = order.stream().map(members::get).toList();
          boolean now = estimates.get(order.get(0)).join() == 0;
          if (timeoutNanos == 0) {
            tryEach(ticket, pool, candidates, 0, load, lane, requestId, tenant, errors);
          } else if (now) {
            Ticket first = store.acquire(candidates.get(0), load, lane, 0, requestId, tenant);
            first.future().whenComplete((g, e) -> {
              if (e == null) {
                ticket.follow(List.of(first), false);
              } else {
                waitAtAll(ticket, pool, candidates, load, lane, timeoutNanos, requestId, tenant);
              }
            });
          } else {
            waitAtAll(ticket, pool, candidates, load, lane, timeoutNanos, requestId, tenant);
          }
        });
  }

  /** A try-once on a pool: each member once, soonest first, until one grants. */
  private void tryEach(
      PoolTicket ticket, LimitSpec pool, List<String> candidates, int i, Map<String, Long> load, Lane lane,
      String requestId, String tenant, List<Throwable> errors) {
    if (i == candidates.size()) {
      ticket.fail(errors.stream().anyMatch(PoolEngine::isDeadline)
          ? new EngineException(EngineException.Reason.DEADLINE, "pool '" + pool.resource()
              + "': no member could grant at once (" + String.join(", ", candidates) + "): wait (a timeout above 0)"
              + " or come back later")
          : noMember(pool, errors));
      return;
    }
    Ticket t = store.acquire(candidates.get(i), load, lane, 0, requestId, tenant);
    t.future().whenComplete((g, e) -> {
      if (e == null) {
        ticket.follow(List.of(t), false);
      } else {
        errors.add(EngineException.unwrap(e));
        tryEach(ticket, pool, candidates, i + 1, load, lane, requestId, tenant, errors);
      }
    });
  }

  private void waitAtAll(
      PoolTicket ticket, LimitSpec pool, List<String> candidates, Map<String, Long> load, Lane lane,
      long timeoutNanos, String requestId, String tenant) {
    List<Ticket> each = new ArrayList<>(candidates.size());
    for (String m : candidates) {
      each.add(store.acquire(m, load, lane, timeoutNanos, requestId, tenant));
    }
    ticket.follow(each, false);
  }

  private static boolean isDeadline(Throwable t) {
    return t instanceof EngineException e && e.reason() == EngineException.Reason.DEADLINE;
  }

  private static EngineException noMember(LimitSpec pool, List<Throwable> errors) {
    if (!errors.isEmpty() && errors.stream().allMatch(
        t -> t instanceof EngineException e && e.reason() == EngineException.Reason.NOT_FOUND)) {
      return new EngineException(EngineException.Reason.NOT_FOUND, "pool '" + pool.resource()
          + "' has no member left (" + String.join(", ", pool.members()) + " were deleted): set a limit on a member"
          + " again, or give the pool other members (sluice pool create " + pool.resource() + " --member ...)");
    }
    Throwable first = errors.isEmpty() ? null : errors.get(0);
    if (first instanceof EngineException e) {
      return new EngineException(e.reason(), "pool '" + pool.resource() + "': " + e.getMessage(), e.retryAfterNanos());
    }
    return new EngineException(EngineException.Reason.UNAVAILABLE,
        "pool '" + pool.resource() + "': no member answered (" + first + "): retry");
  }

  /**
   * One pool acquire: follows the tickets it has at its members. The first to grant wins; the
   * others are cancelled, which gives back a grant made meanwhile. It fails when every member's
   * ticket has failed, with the most telling error (the deadline, else the first).
   */
  static final class PoolTicket implements Ticket {
    private final String pool;
    private final CompletableFuture<Grant> future = new CompletableFuture<>();
    /** Done once the acquire waits at its members (or has failed): for tests that step a clock. */
    final CompletableFuture<List<Ticket>> placed = new CompletableFuture<>();
    private List<Ticket> inner = List.of();
    private Ticket winner;
    private boolean cancelled;
    /** A resource of its own after all: the one ticket followed is the store's own. */
    volatile boolean plain;

    PoolTicket(String pool) {
      this.pool = pool;
    }

    /**
     * Follows these tickets; {@code plain}: a resource of its own after all (the lookup was not
     * cached), whose errors pass through unchanged.
     */
    void follow(List<Ticket> tickets, boolean plain) {
      this.plain = plain;
      boolean cancelNow;
      synchronized (this) {
        inner = List.copyOf(tickets);
        cancelNow = cancelled;
      }
      placed.complete(inner);
      if (cancelNow) {
        tickets.forEach(Ticket::cancel);
        return;
      }
      AtomicInteger left = new AtomicInteger(tickets.size());
      List<Throwable> errors = new ArrayList<>();
      for (Ticket t : tickets) {
        t.future().whenComplete((grant, error) -> {
          if (error == null) {
            boolean won;
            synchronized (this) {
              won = winner == null && !cancelled;
              if (won) {
                winner = t;
              }
            }
            if (!won) {
              t.cancel(); // unclaimed: given back whole
              return;
            }
            for (Ticket other : tickets) {
              if (other != t) {
                other.cancel();
              }
            }
            future.complete(plain ? grant : memberGrant(grant));
          } else {
            Throwable why = EngineException.unwrap(error);
            synchronized (errors) {
              errors.add(why);
            }
            if (left.decrementAndGet() == 0) {
              synchronized (errors) {
                Throwable pick = errors.stream().filter(PoolEngine::isDeadline).findFirst().orElse(errors.get(0));
                if (plain || why instanceof CancellationException || tickets.size() == 1) {
                  future.completeExceptionally(pick);
                } else if (pick instanceof EngineException e) {
                  future.completeExceptionally(new EngineException(e.reason(),
                      "pool '" + pool + "': " + e.getMessage(), e.retryAfterNanos()));
                } else {
                  future.completeExceptionally(pick);
                }
              }
            }
            return;
          }
        });
      }
    }

    void fail(EngineException e) {
      future.completeExceptionally(e);
      placed.complete(List.of());
    }

    @Override
    public CompletableFuture<Grant> future() {
      return future;
    }

    @Override
    public boolean claim() {
      Ticket w;
      synchronized (this) {
        w = winner;
      }
      return w != null && w.claim();
    }

    @Override
    public void cancel() {
      List<Ticket> all;
      synchronized (this) {
        if (cancelled) {
          return;
        }
        cancelled = true;
        all = inner;
      }
      // The caller's own ending first: a member's ticket may end as it is cancelled, synchronously.
      future.completeExceptionally(new CancellationException("acquire on " + pool + " cancelled"));
      all.forEach(Ticket::cancel);
    }
  }

  /** A member's grant as the pool hands it over: its permit id names the member. */
  private static Grant memberGrant(Grant g) {
    return new Grant(g.permitId() + MEMBER_MARK + g.resource(), g.resource(), g.load(), g.leaseTtlNanos(),
        g.waitedNanos(), g.freshNanos());
  }

  /** Between a member's own permit id and its name, in a pool permit's id. */
  static final char MEMBER_MARK = '@';

  /**
   * The member and its own permit id of a pool permit asked of {@code resource} (the member, or
   * a pool it is in), or null for a permit of the resource's own.
   */
  private CompletableFuture<String[]> memberPermit(String resource, String permitId) {
    int at = permitId == null ? -1 : permitId.lastIndexOf(MEMBER_MARK);
    if (at < 0) {
      return CompletableFuture.completedFuture(null);
    }
    String member = permitId.substring(at + 1);
    String[] out = {member, permitId.substring(0, at)};
    if (member.equals(resource)) {
      return CompletableFuture.completedFuture(out);
    }
    // Only through a pool that has it: a key for one resource reaches no other resource's permits.
    return pool(resource).thenApply(p -> p.isPresent() && p.get().members().contains(member) ? out : null);
  }

  @Override
  public CompletableFuture<Boolean> cancel(String resource, String requestId) {
    return pool(resource).thenCompose(p -> {
      if (p.isEmpty()) {
        return store.cancel(resource, requestId);
      }
      List<CompletableFuture<Boolean>> each = p.get().members().stream()
          .map(m -> store.cancel(m, requestId).exceptionally(e -> false)).toList();
      return CompletableFuture.allOf(each.toArray(CompletableFuture[]::new))
          .thenApply(done -> each.stream().anyMatch(CompletableFuture::join));
    });
  }

  @Override
  public CompletableFuture<Boolean> release(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    return memberPermit(resource, permitId).thenCompose(m -> m == null
        ? store.release(resource, permitId, actual, settle, unused)
        : store.release(m[0], m[1], actual, settle, unused));
  }

  @Override
  public CompletableFuture<List<String>> renew(String resource, List<String> permitIds) {
    if (permitIds.stream().noneMatch(id -> id != null && id.indexOf(MEMBER_MARK) >= 0)) {
      return store.renew(resource, permitIds); // the common case
    }
    // Each permit at its own resource: pool permits at their members, the rest here.
    List<CompletableFuture<String[]>> where = permitIds.stream().map(id -> memberPermit(resource, id)).toList();
    return CompletableFuture.allOf(where.toArray(CompletableFuture[]::new)).thenCompose(done -> {
      Map<String, List<String>> byResource = new java.util.LinkedHashMap<>();
      Map<String, String> asked = new java.util.HashMap<>(); // resource + own id -> the id as given
      for (int i = 0; i < permitIds.size(); i++) {
        String[] m = where.get(i).join();
        String r = m == null ? resource : m[0];
        String own = m == null ? permitIds.get(i) : m[1];
        byResource.computeIfAbsent(r, k -> new ArrayList<>()).add(own);
        asked.put(r + "\n" + own, permitIds.get(i));
      }
      List<CompletableFuture<List<String>>> each = new ArrayList<>();
      List<String> names = new ArrayList<>(byResource.keySet());
      for (String r : names) {
        each.add(store.renew(r, byResource.get(r)).exceptionally(e -> byResource.get(r)));
      }
      return CompletableFuture.allOf(each.toArray(CompletableFuture[]::new)).thenApply(all -> {
        Set<String> lost = new HashSet<>();
        for (int i = 0; i < names.size(); i++) {
          for (String own : each.get(i).join()) {
            lost.add(asked.get(names.get(i) + "\n" + own));
          }
        }
        return permitIds.stream().filter(lost::contains).toList();
      });
    });
  }

  @Override
  public CompletableFuture<Long> leaseTtlNanos(String resource) {
    return pool(resource).thenCompose(p -> {
      if (p.isEmpty()) {
        return store.leaseTtlNanos(resource);
      }
      // The shortest member lease: a renewal in time for it is in time for all.
      return overMembers(p.get(), m -> store.leaseTtlNanos(m))
          .thenApply(v -> v.stream().mapToLong(Long::longValue).min().orElseThrow());
    });
  }

  @Override
  public CompletableFuture<Long> report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    return pool(resource).thenCompose(p -> p.isEmpty()
        ? store.report(resource, throttled, retryAfterNanos, remaining)
        : CompletableFuture.failedFuture(reportOnPool(p.get())));
  }

  @Override
  public CompletableFuture<Learned> reportLearning(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining,
      Map<String, Long> limits, long wallMillis) {
    return pool(resource).thenCompose(p -> p.isEmpty()
        ? store.reportLearning(resource, throttled, retryAfterNanos, remaining, limits, wallMillis)
        : CompletableFuture.failedFuture(reportOnPool(p.get())));
  }

  private static EngineException reportOnPool(LimitSpec pool) {
    return EngineException.invalid("'" + pool.resource() + "' is a pool of " + String.join(", ", pool.members())
        + ": report on the member that granted the permit (the grant names it: permit.member()), so only that"
        + " member pauses");
  }

  @Override
  public CompletableFuture<Long> estimate(String resource, Map<String, Long> load, Lane lane, String tenant) {
    return pool(resource).thenCompose(p -> {
      if (p.isEmpty()) {
        return store.estimate(resource, load, lane, tenant);
      }
      return overMembers(p.get(), m -> store.estimate(m, load, lane, tenant)).thenApply(v -> {
        long best = -1;
        for (long e : v) {
          if (e >= 0 && (best < 0 || e < best)) {
            best = e;
          }
        }
        return best;
      });
    });
  }

  /**
   * Asks every member; the answers of the members that gave one (a deleted member gives none).
   * Fails as {@link #noMember} when none did.
   */
  private <T> CompletableFuture<List<T>> overMembers(
      LimitSpec pool, java.util.function.Function<String, CompletableFuture<T>> ask) {
    List<CompletableFuture<T>> each = pool.members().stream().map(ask).toList();
    return CompletableFuture.allOf(each.stream().map(f -> f.handle((v, e) -> null)).toArray(CompletableFuture[]::new))
        .thenApply(done -> {
          List<T> out = new ArrayList<>();
          List<Throwable> errors = new ArrayList<>();
          for (CompletableFuture<T> f : each) {
            if (f.isCompletedExceptionally()) {
              errors.add(EngineException.unwrap(f.handle((v, e) -> e).join()));
            } else {
              out.add(f.join());
            }
          }
          if (out.isEmpty()) {
            throw new CompletionException(noMember(pool, errors));
          }
          return out;
        });
  }

  // ----------------------------------------------------------------------------------- admin

  /**
   * A pool is checked against the store: its members exist, none is a pool, they share one
   * tenant policy (a pool acquire waits in each of their rooms under it), and its name is not a
   * resource's. A resource's limit cannot take a pool's name.
   */
  @Override
  public CompletableFuture<Boolean> setLimit(LimitSpec limit) {
    if (!limit.isPool()) {
      return store.getLimit(limit.resource()).thenCompose(existing -> {
        if (existing.isPresent() && existing.get().isPool()) {
          throw new CompletionException(EngineException.invalid("'" + limit.resource() + "' is a pool of "
              + String.join(", ", existing.get().members()) + ": delete the pool first (sluice pool delete "
              + limit.resource() + "), or give the limit another name"));
        }
        TenantPolicy next;
        try {
          next = Validation.limit(limit, 1, java.time.Duration.ofSeconds(1)).tenants(); // as it would be stored
        } catch (EngineException e) {
          return store.setLimit(limit); // the store refuses it, with its own message
        }
        if (existing.isEmpty() || existing.get().tenants().equals(next)) {
          return store.setLimit(limit);
        }
        return poolsWith(limit.resource()).thenCompose(pools -> {
          for (LimitSpec p : pools) {
            if (p.members().size() > 1) {
              throw new CompletionException(EngineException.invalid("'" + limit.resource() + "' is a member of pool '"
                  + p.resource() + "', whose members share one tenant policy (its acquires wait at each under it):"
                  + " to change it, delete the pool (sluice pool delete " + p.resource() + "), give every member ("
                  + String.join(", ", p.members()) + ") the same --share, --floor and --cap, and create the pool"
                  + " again"));
            }
          }
          return store.setLimit(limit);
        });
      });
    }
    LimitSpec pool;
    try {
      pool = Validation.limit(limit, 1, java.time.Duration.ofSeconds(1));
    } catch (EngineException e) {
      return CompletableFuture.failedFuture(e);
    }
    CompletableFuture<Optional<LimitSpec>> self = store.getLimit(pool.resource());
    List<CompletableFuture<Optional<LimitSpec>>> members = pool.members().stream().map(store::getLimit).toList();
    List<CompletableFuture<?>> all = new ArrayList<>(members);
    all.add(self);
    return CompletableFuture.allOf(all.toArray(CompletableFuture[]::new)).thenCompose(done -> {
      if (self.join().isPresent() && !self.join().get().isPool()) {
        throw new CompletionException(EngineException.invalid("'" + pool.resource() + "' is a resource with a limit"
            + " of its own: give the pool another name, or delete that limit first (sluice limit delete "
            + pool.resource() + ")"));
      }
      TenantPolicy shared = null;
      String sharedBy = null;
      for (int i = 0; i < members.size(); i++) {
        String name = pool.members().get(i);
        Optional<LimitSpec> m = members.get(i).join();
        if (m.isEmpty()) {
          throw new CompletionException(new EngineException(EngineException.Reason.NOT_FOUND, "pool '"
              + pool.resource() + "': member '" + name + "' has no limit: set one first (sluice limit set " + name
              + " --rate ...), since each member grants from its own limit"));
        }
        if (m.get().isPool()) {
          throw new CompletionException(EngineException.invalid("pool '" + pool.resource() + "': member '" + name
              + "' is itself a pool: a pool cannot be nested; list its members instead ("
              + String.join(", ", m.get().members()) + ")"));
        }
        if (shared == null) {
          shared = m.get().tenants();
          sharedBy = name;
        } else if (!shared.equals(m.get().tenants())) {
          throw new CompletionException(EngineException.invalid("pool '" + pool.resource() + "': members '"
              + sharedBy + "' and '" + name + "' share tenants differently: give them the same --share, --floor"
              + " and --cap, since a pool's acquires wait at every member under its tenant policy"));
        }
      }
      return store.setLimit(pool);
    });
  }

  /** The pools that list {@code member}. */
  private CompletableFuture<List<LimitSpec>> poolsWith(String member) {
    return store.listLimits("").thenApply(all -> all.stream()
        .filter(l -> l.isPool() && l.members().contains(member)).toList());
  }

  @Override
  public CompletableFuture<Long> pause(String resource, long nanos) {
    return pool(resource).thenCompose(p -> p.isEmpty()
        ? store.pause(resource, nanos)
        : overMembers(p.get(), m -> store.pause(m, nanos)).thenApply(v -> v.get(0)));
  }

  @Override
  public CompletableFuture<Void> resume(String resource) {
    return pool(resource).thenCompose(p -> p.isEmpty()
        ? store.resume(resource)
        : overMembers(p.get(), m -> store.resume(m).thenApply(x -> Boolean.TRUE)).thenApply(v -> null));
  }

  @Override
  public CompletableFuture<ResourceSnapshot> stats(String resource) {
    return pool(resource).thenCompose(p -> p.isEmpty()
        ? store.stats(resource)
        : CompletableFuture.failedFuture(EngineException.invalid("'" + resource + "' is a pool of "
            + String.join(", ", p.get().members()) + ": its state is its members' (sluice stats MEMBER)")));
  }

  /** Every resource's state; pools are left out (their state is their members'). */
  /** For logs: a pool as its members. */
  static String describe(LimitSpec pool) {
    return "pool of " + pool.members().stream().collect(Collectors.joining(", "));
  }
}
