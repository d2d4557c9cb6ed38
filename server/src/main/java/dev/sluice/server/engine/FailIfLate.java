package dev.sluice.server.engine;

import dev.sluice.client.HumanDurations;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * An acquire that asked to fail at once if it would be late ({@code fail_if_late} on the gRPC
 * port, {@code failIfLate} over HTTP and in the SDKs). Before it is queued the engine's
 * {@linkplain Engine#estimate estimate} is asked for; when that is past the acquire's timeout, or
 * the resource is paused until resumed, the acquire fails with {@link EngineException.Reason#DEADLINE}
 * carrying the estimate ({@link EngineException#late}): nothing queued, nothing taken. Otherwise it
 * is queued as any acquire, with the same timeout: an estimate is no promise, so it may still time
 * out. One place for both ports, so their refusals read the same.
 */
public final class FailIfLate {

  private FailIfLate() {}

  /**
   * {@link Engine#acquire(String, Map, Lane, long, String, String)}, failing at once when the
   * estimated wait is past {@code timeoutNanos}. Never throws: a refusal, or the estimate's own
   * failure (NOT_FOUND, a bad load), fails the ticket's future, as the engine's own refusals do.
   */
  public static Ticket acquire(Engine engine, String resource, Map<String, Long> load, Lane lane, long timeoutNanos,
      String requestId, String tenant) {
    CompletableFuture<Long> estimate;
    try {
      estimate = engine.estimate(resource, load, lane, tenant);
    } catch (RuntimeException e) {
      return LaterTicket.failed(e);
    }
    LaterTicket later = new LaterTicket();
    estimate.whenComplete((nanos, error) -> {
      if (error != null) {
        later.fail(error);
      } else if (nanos < 0 || nanos > timeoutNanos) {
        later.fail(EngineException.late(message(resource, nanos, timeoutNanos), nanos));
      } else {
        later.start(engine.acquire(resource, load, lane, timeoutNanos, requestId, tenant));
      }
    });
    return later;
  }

  /** The refusal: the estimate, the timeout it is past, and the two ways out. */
  static String message(String resource, long estimateNanos, long timeoutNanos) {
    if (estimateNanos < 0) {
      return "not granted in time: resource '" + resource + "' is paused until an admin resumes it, so only a"
          + " resume can help (sluice resume " + resource + "); nothing was queued. Drop failIfLate to wait for"
          + " the resume within the timeout";
    }
    String timeout = timeoutNanos == 0 ? "the single try (timeout 0)" : "the " + HumanDurations.formatNanos(timeoutNanos)
        + " timeout";
    return "not granted in time: the estimated wait on '" + resource + "' is "
        + HumanDurations.formatNanos(estimateNanos) + ", past " + timeout + "; nothing was queued. Raise the"
        + " timeout to at least " + HumanDurations.formatNanos(estimateNanos) + ", or drop failIfLate to queue"
        + " anyway (the estimate is no promise either way)";
  }
}
