package dev.sluice.buffers;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/** An engine that grants every acquire at once on a resource with a limit, and remembers what it was told. */
final class FakePermits implements BufferPermits {

  final Map<String, BufferSpec.Rate> limits = new ConcurrentHashMap<>();
  final AtomicInteger acquired = new AtomicInteger();
  final List<String> released = new CopyOnWriteArrayList<>();
  final List<String> throttled = new CopyOnWriteArrayList<>();

  @Override
  public CompletableFuture<Optional<String>> acquire(String resource, Duration timeout, String requestId) {
    if (!limits.containsKey(resource)) {
      return CompletableFuture.failedFuture(new IllegalStateException("no limit on " + resource));
    }
    return CompletableFuture.completedFuture(Optional.of("permit-" + acquired.incrementAndGet()));
  }

  @Override
  public void release(String resource, String permitId, boolean unused) {
    released.add(permitId + (unused ? " unused" : ""));
  }

  @Override
  public CompletableFuture<?> throttled(String resource, Duration retryAfter) {
    throttled.add(resource + " " + retryAfter);
    return CompletableFuture.completedFuture(null);
  }

  @Override
  public CompletableFuture<Boolean> hasLimit(String resource) {
    return CompletableFuture.completedFuture(limits.containsKey(resource));
  }

  @Override
  public CompletableFuture<?> setRate(String resource, BufferSpec.Rate rate, Duration lease) {
    limits.put(resource, rate);
    return CompletableFuture.completedFuture(null);
  }

  @Override
  public CompletableFuture<?> deleteLimit(String resource) {
    limits.remove(resource);
    return CompletableFuture.completedFuture(null);
  }
}
