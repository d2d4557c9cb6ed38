package dev.sluice.server.engine;

import dev.sluice.client.HumanDurations;
import java.util.ArrayList;
import java.util.List;

/**
 * Who holds a resource's pause and for how long: an admin ({@code sluice pause}), an upstream
 * throttle report (a worker's 429 with its retry-after), or both. A timeout on a paused resource
 * says so instead of calling it saturated, and the dashboard shows it.
 *
 * @param adminNanos time left on an admin's pause: 0 when none, -1 until resumed
 * @param upstreamNanos time left on the pause of the last upstream throttle report: 0 when none
 */
public record PauseState(long adminNanos, long upstreamNanos) {

  /** Not paused. */
  public static final PauseState NONE = new PauseState(0, 0);

  public boolean paused() {
    return adminNanos != 0 || upstreamNanos != 0;
  }

  /** Who holds the pause, in a fixed order: {@code admin}, {@code upstream}; empty when not paused. */
  public List<String> by() {
    List<String> by = new ArrayList<>(2);
    if (adminNanos != 0) {
      by.add("admin");
    }
    if (upstreamNanos != 0) {
      by.add("upstream");
    }
    return by;
  }

  /**
   * Why an acquire on {@code resource} was not granted within {@code timeoutNanos}: the pause,
   * who holds it and until when, or saturation; then what to do. The one message of every store.
   */
  static String notGrantedInTime(String resource, long timeoutNanos, PauseState pause) {
    String head = "not granted on '" + resource + "' "
        + (timeoutNanos == 0 ? "on its single try" : "within " + HumanDurations.formatNanos(timeoutNanos)) + ": ";
    if (!pause.paused()) {
      return head + "the resource is saturated; wait longer, lower the load or raise the limit";
    }
    List<String> why = new ArrayList<>(2);
    if (pause.adminNanos < 0) {
      why.add("by an admin until resumed");
    } else if (pause.adminNanos > 0) {
      why.add("by an admin for " + HumanDurations.formatNanos(pause.adminNanos) + " more");
    }
    if (pause.upstreamNanos > 0) {
      why.add("after an upstream throttle (429) report for " + HumanDurations.formatNanos(pause.upstreamNanos)
          + " more");
    }
    String advice = pause.adminNanos < 0
        ? "resume it (sluice resume " + resource + ") to grant again"
        : pause.adminNanos > 0
            ? "wait longer, or resume it (sluice resume " + resource + ")"
            : "wait longer: grants start again when the upstream's retry-after has passed";
    return head + "the resource is paused " + String.join(" and ", why) + "; " + advice;
  }
}
