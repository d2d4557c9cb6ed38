package dev.sluice.buffers;

import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/** The buffers' own threads: named {@code sluice-buffer-*}, daemons, and waited for when stopped. */
final class Threads {

  /** How long a close waits for one of its threads to end. */
  private static final long STOP_MILLIS = 5_000;

  private Threads() {}

  /** A daemon thread named {@code name}, not started. */
  static Thread thread(Runnable run, String name) {
    Thread t = new Thread(run, name);
    t.setDaemon(true);
    return t;
  }

  /** A pool of up to {@code size} threads named {@code name-N}; idle ones end after a minute. */
  static ExecutorService pool(String name, int size) {
    AtomicInteger n = new AtomicInteger();
    var pool = new java.util.concurrent.ThreadPoolExecutor(size, size, 60, TimeUnit.SECONDS,
        new java.util.concurrent.LinkedBlockingQueue<>(), r -> thread(r, name + "-" + n.incrementAndGet()));
    pool.allowCoreThreadTimeOut(true);
    return pool;
  }

  /** A pool that grows with the work and shrinks when idle (the HTTP client's, as its default is). */
  static ExecutorService cached(String name) {
    AtomicInteger n = new AtomicInteger();
    return Executors.newCachedThreadPool(r -> thread(r, name + "-" + n.incrementAndGet()));
  }

  /** Interrupts what runs on {@code pool} and waits for its threads to end. */
  static void stop(ExecutorService pool) {
    pool.shutdownNow();
    try {
      pool.awaitTermination(STOP_MILLIS, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Interrupts {@code t} and waits for it to end. */
  static void stop(Thread t) {
    t.interrupt();
    join(t);
  }

  static void join(Thread t) {
    try {
      t.join(STOP_MILLIS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
