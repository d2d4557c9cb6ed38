package dev.sluice.server.engine;

import java.util.Map;

/**
 * A granted acquire.
 *
 * @param permitId opaque id for release and renew
 * @param resource the resource
 * @param load what was charged, per dimension, including the {@code requests} default
 * @param leaseTtlNanos how long the permit's lease lasts without renewal
 * @param waitedNanos time spent in the waiting room
 */
public record Grant(
    String permitId, String resource, Map<String, Long> load, long leaseTtlNanos, long waitedNanos) {}
