package dev.sluice.client;

import java.time.Duration;

/**
 * Capacity granted by the coordinator for one call. Use it with try-with-resources:
 *
 * <pre>{@code
 * try (Permit permit = client.acquire("openai", Load.of("requests", 1, "tokens", 1200))) {
 *   Response r = callUpstream();
 *   permit.settle(Load.of("requests", 1, "tokens", r.usage().totalTokens()));
 * }
 * }</pre>
 *
 * <p>While it is open, the client renews the permit's lease (if the resource has a concurrency
 * cap) in the background. Thread-safe.
 */
public interface Permit extends AutoCloseable {

  /** The coordinator's opaque id of this permit. */
  String id();

  /** The resource this permit was granted on. */
  String resource();

  /**
   * The resource whose limit granted this permit: {@link #resource()} itself, or for a pool the
   * member that granted, whose own upstream (API key, project, deployment) the call should use.
   * Report that upstream's 429s on the member, so only it pauses. Release and settle need
   * nothing more: the permit finds its member.
   */
  default String member() {
    return resource();
  }

  /** The load the coordinator charged, including its {@code requests = 1} default. */
  Load granted();

  /** How long the acquire waited in the coordinator's queue. */
  Duration waited();

  /**
   * Records what the call really used; applied when the permit is closed. The coordinator refunds
   * what was over-estimated and charges what was under-estimated; dimensions {@code actual} does
   * not name stay as granted. A second call replaces the first.
   *
   * @throws IllegalStateException if the permit is already closed
   */
  void settle(Load actual);

  /**
   * Releases the permit: frees its concurrency slot, stops its lease renewal and applies
   * {@link #settle} if it was called. Idempotent; throws nothing. Returns without waiting for the
   * coordinator; a failed release is logged at WARN (the lease then runs out on its own).
   */
  @Override
  void close();
}
