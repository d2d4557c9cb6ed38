package dev.sluice.buffers;

import java.time.Duration;
import java.util.PriorityQueue;

/**
 * A manual {@link BufferClock}: time only moves in {@link #advance}, which runs every timer that
 * falls due, in order, at its own instant, on the caller's thread.
 */
final class FakeClock implements BufferClock {

  private long millis = 1_800_000_000_000L;
  private long seq;
  private int ran;
  private final PriorityQueue<Task> tasks =
      new PriorityQueue<>((a, b) -> a.at != b.at ? Long.compare(a.at, b.at) : Long.compare(a.seq, b.seq));

  private static final class Task implements Timer {
    final long at;
    final long seq;
    final Runnable run;
    volatile boolean cancelled;

    Task(long at, long seq, Runnable run) {
      this.at = at;
      this.seq = seq;
      this.run = run;
    }

    @Override
    public void cancel() {
      cancelled = true;
    }
  }

  @Override
  public synchronized long millis() {
    return millis;
  }

  @Override
  public synchronized long nanos() {
    return millis * 1_000_000L;
  }

  @Override
  public synchronized Timer schedule(Runnable task, long delayMillis) {
    Task t = new Task(millis + Math.max(0, delayMillis), seq++, task);
    tasks.add(t);
    return t;
  }

  /** Moves time forward, running due tasks at their own instants (outside this lock). */
  void advance(Duration d) {
    long target;
    synchronized (this) {
      target = millis + d.toMillis();
    }
    while (true) {
      Task next;
      synchronized (this) {
        next = tasks.peek();
        if (next == null || next.at > target) {
          millis = target;
          return;
        }
        tasks.poll();
        millis = Math.max(millis, next.at);
        if (!next.cancelled) {
          ran++;
        }
      }
      if (!next.cancelled) {
        next.run.run();
      }
    }
  }

  /** Timers armed and not called off. */
  synchronized int pending() {
    return (int) tasks.stream().filter(t -> !t.cancelled).count();
  }

  /** Timers that ran since the start. */
  synchronized int ran() {
    return ran;
  }
}
