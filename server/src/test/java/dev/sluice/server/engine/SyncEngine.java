package dev.sluice.server.engine;

import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * For tests: an {@link Engine}'s calls, waited for, each answer as the value it completes with
 * and each refusal thrown as the {@link EngineException} it failed with. Tests read like the
 * steps they check; the engine itself never blocks.
 *
 * <p>{@link #acquire} waits until the store took the acquire in (queued, granted or refused,
 * as the synchronous acquire of old did), and throws a refusal; the ticket it returns waits
 * for the store on {@link Ticket#cancel()} too, so the next step sees the waiter gone.
 */
public final class SyncEngine {

  private final Engine engine;

  private SyncEngine(Engine engine) {
    this.engine = engine;
  }

  /** Wraps an engine; cheap, so tests may call it on every step: {@code sync(engine).stats(r)}. */
  public static SyncEngine sync(Engine engine) {
    return new SyncEngine(engine);
  }

  public Engine engine() {
    return engine;
  }

  /** The answer of an engine future; its refusal thrown as the EngineException it is. */
  public static <T> T await(CompletableFuture<T> answer) {
    try {
      return answer.join();
    } catch (CompletionException e) {
      Throwable t = EngineException.unwrap(e);
      if (t instanceof RuntimeException r) {
        throw r;
      }
      if (t instanceof Error err) {
        throw err;
      }
      throw e;
    }
  }

  public Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant) {
    return pass(engine.acquire(resource, load, lane, timeoutNanos, requestId, tenant));
  }

  /** A ticket once admitted, or its refusal thrown. */
  private static Ticket pass(Ticket t) {
    if (t instanceof RefusedTicket r) {
      throw r.refusal;
    }
    if (t instanceof RedisWaiters.AsyncTicket a) {
      await(a.op.admitted);
      return a.op.w;
    }
    if (t instanceof PoolEngine.PoolTicket p) {
      List<Ticket> placed = await(p.placed);
      if (p.plain) {
        // Not a pool after all (its limit was not cached): the store's own ticket, as without pools.
        return pass(placed.get(0));
      }
      // Routed once its members' tickets are in their waiting rooms (a try-once may end before).
      for (Ticket inner : placed) {
        if (inner instanceof RedisWaiters.AsyncTicket a) {
          a.op.admitted.handle((v, e) -> null).join();
        }
      }
    }
    return t;
  }

  public Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId) {
    return acquire(resource, load, lane, timeoutNanos, requestId, null);
  }

  public Ticket acquire(String resource, Map<String, Long> load, Lane lane, long timeoutNanos) {
    return acquire(resource, load, lane, timeoutNanos, null, null);
  }

  public boolean cancel(String resource, String requestId) {
    return await(engine.cancel(resource, requestId));
  }

  public boolean release(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    return await(engine.release(resource, permitId, actual, settle, unused));
  }

  public List<String> renew(String resource, List<String> permitIds) {
    return await(engine.renew(resource, permitIds));
  }

  public long leaseTtlNanos(String resource) {
    return await(engine.leaseTtlNanos(resource));
  }

  public long report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    return await(engine.report(resource, throttled, retryAfterNanos, remaining));
  }

  public boolean setLimit(LimitSpec limit) {
    return await(engine.setLimit(limit));
  }

  public Optional<LimitSpec> getLimit(String resource) {
    return await(engine.getLimit(resource));
  }

  public List<LimitSpec> listLimits(String prefix) {
    return await(engine.listLimits(prefix));
  }

  public void deleteLimit(String resource) {
    await(engine.deleteLimit(resource));
  }

  public boolean setTemplate(LimitSpec template) {
    return await(engine.setTemplate(template));
  }

  public List<LimitSpec> listTemplates() {
    return await(engine.listTemplates());
  }

  public void deleteTemplate(String pattern) {
    await(engine.deleteTemplate(pattern));
  }

  public Optional<LimitSpec> templateFor(String resource) {
    return await(engine.templateFor(resource));
  }

  public long pause(String resource, long nanos) {
    return await(engine.pause(resource, nanos));
  }

  public void resume(String resource) {
    await(engine.resume(resource));
  }

  public ResourceSnapshot stats(String resource) {
    return await(engine.stats(resource));
  }

  public long estimate(String resource, Map<String, Long> load, Lane lane, String tenant) {
    return await(engine.estimate(resource, load, lane, tenant));
  }

  public List<ResourceSnapshot> stats() {
    return await(engine.stats());
  }
}
