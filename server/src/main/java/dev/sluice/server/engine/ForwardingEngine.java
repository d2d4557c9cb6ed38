package dev.sluice.server.engine;

import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;

/**
 * An {@link Engine} in front of another, the store's: every call goes through to it unless a
 * subclass takes it over. {@link PoolEngine} (pools) and {@link SliceEngine} (slice mode) are
 * two; each overrides only what it changes.
 */
abstract class ForwardingEngine implements Engine {

  /** The engine behind this one. */
  protected final Engine store;

  ForwardingEngine(Engine store) {
    this.store = store;
  }

  @Override
  public Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant) {
    return store.acquire(resource, load, lane, timeoutNanos, requestId, tenant);
  }

  @Override
  public CompletableFuture<Boolean> cancel(String resource, String requestId) {
    return store.cancel(resource, requestId);
  }

  @Override
  public CompletableFuture<Boolean> release(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    return store.release(resource, permitId, actual, settle, unused);
  }

  @Override
  public CompletableFuture<List<String>> renew(String resource, List<String> permitIds) {
    return store.renew(resource, permitIds);
  }

  @Override
  public CompletableFuture<Long> leaseTtlNanos(String resource) {
    return store.leaseTtlNanos(resource);
  }

  @Override
  public CompletableFuture<Long> report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    return store.report(resource, throttled, retryAfterNanos, remaining);
  }

  @Override
  public CompletableFuture<Learned> reportLearning(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining,
      Map<String, Long> limits, long wallMillis) {
    return store.reportLearning(resource, throttled, retryAfterNanos, remaining, limits, wallMillis);
  }

  @Override
  public CompletableFuture<Long> estimate(String resource, Map<String, Long> load, Lane lane, String tenant) {
    return store.estimate(resource, load, lane, tenant);
  }

  @Override
  public CompletableFuture<Boolean> setLimit(LimitSpec limit) {
    return store.setLimit(limit);
  }

  @Override
  public LimitSpec normalized(LimitSpec limit) {
    return store.normalized(limit);
  }

  @Override
  public CompletableFuture<Optional<LimitSpec>> getLimit(String resource) {
    return store.getLimit(resource);
  }

  @Override
  public CompletableFuture<Optional<LimitSpec>> cachedLimit(String resource) {
    return store.cachedLimit(resource);
  }

  @Override
  public CompletableFuture<List<LimitSpec>> listLimits(String prefix) {
    return store.listLimits(prefix);
  }

  @Override
  public CompletableFuture<List<LimitSpec>> cachedLimits(String prefix) {
    return store.cachedLimits(prefix);
  }

  @Override
  public CompletableFuture<Void> deleteLimit(String resource) {
    return store.deleteLimit(resource);
  }

  @Override
  public CompletableFuture<Boolean> setTemplate(LimitSpec template) {
    return store.setTemplate(template);
  }

  @Override
  public LimitSpec normalizedTemplate(LimitSpec template) {
    return store.normalizedTemplate(template);
  }

  @Override
  public CompletableFuture<List<LimitSpec>> listTemplates() {
    return store.listTemplates();
  }

  @Override
  public CompletableFuture<Void> deleteTemplate(String pattern) {
    return store.deleteTemplate(pattern);
  }

  @Override
  public CompletableFuture<Optional<LimitSpec>> templateFor(String resource) {
    return store.templateFor(resource);
  }

  @Override
  public CompletableFuture<Long> pause(String resource, long nanos) {
    return store.pause(resource, nanos);
  }

  @Override
  public CompletableFuture<Void> resume(String resource) {
    return store.resume(resource);
  }

  @Override
  public CompletableFuture<ResourceSnapshot> stats(String resource) {
    return store.stats(resource);
  }

  @Override
  public CompletableFuture<List<ResourceSnapshot>> stats() {
    return store.stats();
  }

  @Override
  public void close() {
    store.close();
  }

  @Override
  public void closeStore() {
    store.closeStore();
  }

  @Override
  public boolean storeReachable() {
    return store.storeReachable();
  }
}
