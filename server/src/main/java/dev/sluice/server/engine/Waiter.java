package dev.sluice.server.engine;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/** One acquire: queued, then granted (and claimed or given back), or ended without a grant. */
final class Waiter implements Ticket {

  static final int WAITING = 0;
  static final int GRANTED = 1;
  static final int CLAIMED = 2;
  static final int RETURNED = 3;
  static final int ENDED = 4;

  final MemoryEngine engine;
  final ResourceState state;
  final Map<String, Long> load;
  final Lane lane;
  /** Whose share it draws on ({@link TenantPolicy#DEFAULT_TENANT} when the caller named none). */
  final String tenant;
  final String requestId;
  final long arrival;
  final CompletableFuture<Grant> future = new CompletableFuture<>();
  /**
   * {@link #WAITING} until granted or ended; then claimed or returned once. A field with a
   * VarHandle rather than an AtomicInteger: one object less per acquire, and one load less on
   * the grant of a waiter the cache has lost (many waiters served out of their arrival order).
   */
  private volatile int status = WAITING;

  private static final VarHandle STATUS;

  static {
    try {
      STATUS = MethodHandles.lookup().findVarHandle(Waiter.class, "status", int.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  int status() {
    return status;
  }

  void status(int to) {
    status = to;
  }

  boolean compareAndSetStatus(int from, int to) {
    return STATUS.compareAndSet(this, from, to);
  }

  long[] vector; // guarded by state
  Scheduler.Cancellable timeout; // guarded by state
  Grant grant; // written under state before status leaves WAITING
  /** The waiter this one took over (a retry of its request id), until it is told. */
  Waiter replaced;
  /** The retry of a grant that came too late ({@link ResourceState#late}): at its lane's head. */
  boolean forfeited;
  /** Its tenant's part of the waiting room while it is queued there, else null. */
  Fair.TRoom part; // guarded by state

  Waiter(
      MemoryEngine engine,
      ResourceState state,
      Map<String, Long> load,
      Lane lane,
      String tenant,
      String requestId,
      long arrival) {
    this.engine = engine;
    this.requestId = requestId;
    this.state = state;
    this.load = load;
    this.lane = lane;
    this.tenant = tenant;
    this.arrival = arrival;
    this.vector = state.vector(load);
  }

  @Override
  public CompletableFuture<Grant> future() {
    return future;
  }

  @Override
  public boolean claim() {
    return compareAndSetStatus(GRANTED, CLAIMED);
  }

  @Override
  public void cancel() {
    engine.cancel(this);
  }
}
