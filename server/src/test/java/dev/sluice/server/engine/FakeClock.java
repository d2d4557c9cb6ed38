package dev.sluice.server.engine;

import java.time.Duration;
import java.util.PriorityQueue;

/**
 * A manual clock that is both the engine's {@link Ticker} and its {@link Scheduler}: time only
 * moves in {@link #advance}, which runs every task that falls due, in order, at its own instant.
 */
public final class FakeClock implements Ticker, Scheduler {

  private long now = 1_000_000_000L;
  /**
   * Run after each task that {@link #advance} runs, before time moves on: a store whose timers
   * start calls it answers asynchronously (Redis) waits for them here, so their answers are
   * handled at the instant they were made, as an embedded store's would be.
   */
  private volatile Runnable afterTask = () -> {};

  /** See {@link #afterTask}. */
  public void afterEachTask(Runnable hook) {
    afterTask = hook;
  }
  private long seq;
  private final PriorityQueue<Task> tasks =
      new PriorityQueue<>((a, b) -> a.at != b.at ? Long.compare(a.at, b.at) : Long.compare(a.seq, b.seq));

  private static final class Task implements Cancellable {
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
  public synchronized long read() {
    return now;
  }

  @Override
  public synchronized Cancellable schedule(Runnable task, long delayNanos) {
    Task t = new Task(now + Math.max(0, delayNanos), seq++, task);
    tasks.add(t);
    return t;
  }

  /** Moves time forward, running due tasks at their own instants (outside this lock). */
  public void advance(Duration d) {
    long target;
    synchronized (this) {
      target = now + d.toNanos();
    }
    while (true) {
      Task next;
      synchronized (this) {
        next = tasks.peek();
        if (next == null || next.at > target) {
          now = target;
          return;
        }
        tasks.poll();
        now = Math.max(now, next.at);
      }
      if (!next.cancelled) {
        next.run.run();
        afterTask.run();
      }
    }
  }

  /** Runs tasks already due without moving time. */
  public void runDue() {
    advance(Duration.ZERO);
  }

  /** When the next pending task falls due, or {@link Long#MAX_VALUE} when none is pending. */
  public synchronized long nextTaskAt() {
    return tasks.stream().filter(t -> !t.cancelled).mapToLong(t -> t.at).min().orElse(Long.MAX_VALUE);
  }

  public synchronized int pendingTasks() {
    return (int) tasks.stream().filter(t -> !t.cancelled).count();
  }
}
