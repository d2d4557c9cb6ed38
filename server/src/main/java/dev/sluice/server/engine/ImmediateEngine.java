package dev.sluice.server.engine;

import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.function.Supplier;

/**
 * The {@link Engine} face of a store whose answers are ready when its methods return (the
 * embedded store): each call runs at once and its answer, or refusal, is a completed future. A
 * limit change goes through {@link #write}, so a store that writes a file does so off the
 * caller's thread.
 */
abstract class ImmediateEngine implements Engine {

  abstract Ticket acquireNow(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant);

  abstract boolean cancelNow(String resource, String requestId);

  abstract boolean releaseNow(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused);

  abstract List<String> renewNow(String resource, List<String> permitIds);

  abstract long leaseTtlNanosNow(String resource);

  abstract long reportNow(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining);

  abstract boolean setLimitNow(LimitSpec limit);

  abstract Optional<LimitSpec> getLimitNow(String resource);

  abstract List<LimitSpec> listLimitsNow(String prefix);

  abstract void deleteLimitNow(String resource);

  abstract boolean setTemplateNow(LimitSpec template);

  abstract List<LimitSpec> listTemplatesNow();

  abstract void deleteTemplateNow(String pattern);

  abstract Optional<LimitSpec> templateForNow(String resource);

  abstract long pauseNow(String resource, long nanos);

  abstract void resumeNow(String resource);

  abstract ResourceSnapshot statsNow(String resource);

  /** Runs a limit change: here by default; a store that writes a file runs it elsewhere. */
  <T> CompletableFuture<T> write(Supplier<T> change) {
    return now(change);
  }

  static <T> CompletableFuture<T> now(Supplier<T> op) {
    try {
      return CompletableFuture.completedFuture(op.get());
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  @Override
  public final Ticket acquire(
      String resource, Map<String, Long> load, Lane lane, long timeoutNanos, String requestId, String tenant) {
    try {
      return acquireNow(resource, load, lane, timeoutNanos, requestId, tenant);
    } catch (EngineException e) {
      return new RefusedTicket(e);
    }
  }

  @Override
  public final CompletableFuture<Boolean> cancel(String resource, String requestId) {
    return now(() -> cancelNow(resource, requestId));
  }

  @Override
  public final CompletableFuture<Boolean> release(
      String resource, String permitId, Map<String, Long> actual, boolean settle, boolean unused) {
    return now(() -> releaseNow(resource, permitId, actual, settle, unused));
  }

  @Override
  public final CompletableFuture<List<String>> renew(String resource, List<String> permitIds) {
    return now(() -> renewNow(resource, permitIds));
  }

  @Override
  public final CompletableFuture<Long> leaseTtlNanos(String resource) {
    return now(() -> leaseTtlNanosNow(resource));
  }

  @Override
  public final CompletableFuture<Long> report(
      String resource, boolean throttled, long retryAfterNanos, Map<String, Long> remaining) {
    return now(() -> reportNow(resource, throttled, retryAfterNanos, remaining));
  }

  @Override
  public final CompletableFuture<Boolean> setLimit(LimitSpec limit) {
    return write(() -> setLimitNow(limit));
  }

  @Override
  public final CompletableFuture<Optional<LimitSpec>> getLimit(String resource) {
    return now(() -> getLimitNow(resource));
  }

  @Override
  public final CompletableFuture<List<LimitSpec>> listLimits(String prefix) {
    return now(() -> listLimitsNow(prefix));
  }

  @Override
  public final CompletableFuture<Void> deleteLimit(String resource) {
    return write(
        () -> {
          deleteLimitNow(resource);
          return null;
        });
  }

  @Override
  public final CompletableFuture<Boolean> setTemplate(LimitSpec template) {
    return write(() -> setTemplateNow(template));
  }

  @Override
  public final CompletableFuture<List<LimitSpec>> listTemplates() {
    return now(this::listTemplatesNow);
  }

  @Override
  public final CompletableFuture<Void> deleteTemplate(String pattern) {
    return write(
        () -> {
          deleteTemplateNow(pattern);
          return null;
        });
  }

  @Override
  public final CompletableFuture<Optional<LimitSpec>> templateFor(String resource) {
    return now(() -> templateForNow(resource));
  }

  @Override
  public final CompletableFuture<Long> pause(String resource, long nanos) {
    return now(() -> pauseNow(resource, nanos));
  }

  @Override
  public final CompletableFuture<Void> resume(String resource) {
    return now(
        () -> {
          resumeNow(resource);
          return null;
        });
  }

  @Override
  public final CompletableFuture<ResourceSnapshot> stats(String resource) {
    return now(() -> statsNow(resource));
  }

  abstract long estimateNow(String resource, Map<String, Long> load, Lane lane, String tenant);

  @Override
  public final CompletableFuture<Long> estimate(String resource, Map<String, Long> load, Lane lane, String tenant) {
    return now(() -> estimateNow(resource, load, lane, tenant));
  }
}
