package dev.sluice.client;

import dev.sluice.proto.v1.ReleaseRequest;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** A permit granted over gRPC. Ends exactly once: by {@link #close} or {@link #releaseUnused}. */
final class GrpcPermit implements Permit {

  private static final Logger log = LoggerFactory.getLogger(GrpcPermit.class);

  private final ClientRuntime client;
  private final String id;
  private final String resource;
  private final String member;
  private final Load granted;
  private final Duration waited;
  private final Duration leaseTtl;
  private final String model;
  private final AtomicBoolean ended = new AtomicBoolean();
  private volatile Load actual;

  GrpcPermit(ClientRuntime client, String id, String resource, String member, Load granted, Duration waited,
      Duration leaseTtl, String model) {
    this.model = model;
    this.client = client;
    this.id = id;
    this.resource = resource;
    this.member = member == null || member.isEmpty() ? resource : member;
    this.granted = granted;
    this.waited = waited;
    this.leaseTtl = leaseTtl;
  }

  @Override
  public String id() {
    return id;
  }

  @Override
  public String resource() {
    return resource;
  }

  @Override
  public String member() {
    return member;
  }

  @Override
  public Load granted() {
    return granted;
  }

  @Override
  public Duration waited() {
    return waited;
  }

  /** Zero when the resource has no concurrency cap, so there is no lease to renew. */
  Duration leaseTtl() {
    return leaseTtl;
  }

  @Override
  public void settle(Load actual) {
    Objects.requireNonNull(actual, "actual must not be null; to settle nothing, do not call settle");
    if (ended.get()) {
      throw new IllegalStateException("permit " + id + " on '" + resource + "' is already closed; call settle() before close()");
    }
    this.actual = actual;
  }

  @Override
  public void close() {
    if (!ended.compareAndSet(false, true)) {
      return;
    }
    Load settled = actual;
    ReleaseRequest.Builder request = ReleaseRequest.newBuilder().setResource(resource).setPermitId(id);
    if (settled != null) {
      // The model the acquire named: the coordinator prices the actual tokens with it.
      request.putAllActual(settled.asMap()).setSettle(true).setModel(model);
    }
    end(request.build());
  }

  /**
   * Gives the whole grant back: the caller never got the permit (it cancelled, was interrupted or
   * timed out while the grant was on its way), so the call was never made.
   */
  void releaseUnused() {
    if (ended.compareAndSet(false, true)) {
      log.debug("giving back permit {} on '{}': the caller stopped waiting before the grant arrived", id, resource);
      end(ReleaseRequest.newBuilder().setResource(resource).setPermitId(id).setUnused(true).build());
    }
  }

  private void end(ReleaseRequest request) {
    try {
      client.release(this, request);
    } catch (RuntimeException e) {
      // close() promises to throw nothing; the lease (if any) runs out on its own.
      log.warn("releasing permit {} on '{}' failed; its lease, if any, will expire on its own", id, resource, e);
    }
  }

  @Override
  public String toString() {
    return "permit " + id + " on '" + resource + "': " + granted + ", granted after " + HumanDurations.format(waited);
  }
}
