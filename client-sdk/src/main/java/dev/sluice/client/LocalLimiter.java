package dev.sluice.client;

import dev.sluice.proto.v1.Limit;
import dev.sluice.proto.v1.RateDimension;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * The local limiter of one resource while the client is degraded in {@link FailureMode#local}
 * mode: {@code share} of the resource's last known limit.
 *
 * <p>One token bucket per rate dimension, refilled continuously at {@code amount x share} per
 * period up to {@code burst x share}, starting empty like the coordinator's (a fallback must not
 * hand out a burst it has not earned). Reservations are all-or-nothing across dimensions: a load
 * is charged to every bucket at once or to none. A reservation may leave a bucket negative; the
 * caller then waits for the returned delay, by which time the refill has paid the debt, so later
 * callers queue behind it and the rate holds over any window. A load above a bucket's local
 * capacity waits until that bucket is full, then takes it into debt for the rest (it would never
 * fit otherwise).
 *
 * <p>The concurrency cap is {@code concurrency x share} rounded down, at least 1; slots are
 * taken and given back explicitly. Thread-safe (one monitor); time comes from an injected
 * nanosecond ticker, so tests advance a fake clock instead of sleeping. Bucket4j was considered:
 * its buckets consume one amount across all their bandwidths, while a Sluice load charges a
 * different amount per dimension, all-or-nothing.
 */
final class LocalLimiter {

  private final String resource;
  private final double share;
  private final LongSupplier ticker;
  private final List<Bucket> buckets = new ArrayList<>();
  private final long concurrencyCap; // 0: no cap
  private final long limitConcurrency;
  private long held;

  LocalLimiter(Limit limit, double share, LongSupplier ticker) {
    this.resource = limit.getResource();
    this.share = share;
    this.ticker = ticker;
    long now = ticker.getAsLong();
    for (RateDimension d : limit.getRatesList()) {
      long periodNanos = Protos.saturatedNanos(Protos.toJava(d.getPeriod()));
      if (d.getAmount() <= 0 || periodNanos <= 0) {
        continue; // not a valid limit; the coordinator never stores one
      }
      long burst = d.getBurst() > 0 ? d.getBurst() : Math.max(1, d.getAmount() * 1_000_000_000L / periodNanos);
      buckets.add(new Bucket(d.getName(), d.getAmount(), periodNanos, burst, share, now));
    }
    this.limitConcurrency = limit.getConcurrency();
    this.concurrencyCap = limitConcurrency > 0 ? Math.max(1, (long) Math.floor(limitConcurrency * share)) : 0;
  }

  /**
   * Charges {@code load} to every bucket if it can be granted within {@code maxWaitNanos}.
   *
   * @param load per dimension; {@code requests} counts 1 when not named (as at the coordinator);
   *     dimensions the limit lacks cost nothing here
   * @return the delay after which the load is granted (0: now), or -1 if that would be later than
   *     {@code maxWaitNanos} (then nothing was charged)
   */
  synchronized long reserve(Map<String, Long> load, long maxWaitNanos) {
    long now = ticker.getAsLong();
    long wait = 0;
    for (Bucket b : buckets) {
      b.refill(now);
      long amount = amount(load, b.name);
      if (amount > 0) {
        wait = Math.max(wait, b.waitFor(amount));
      }
    }
    if (wait > maxWaitNanos) {
      return -1;
    }
    for (Bucket b : buckets) {
      b.available -= amount(load, b.name);
    }
    return wait;
  }

  /**
   * Puts tokens back (a reservation the caller gave up, or a settle that used less) or takes more
   * (a settle that used more: a debt later reservations wait for). Never above a bucket's capacity.
   */
  synchronized void adjust(Map<String, Long> refund) {
    long now = ticker.getAsLong();
    for (Bucket b : buckets) {
      Long delta = refund.get(b.name);
      if (delta != null) {
        b.refill(now);
        b.available = Math.min(b.capacity, b.available + delta);
      }
    }
  }

  /** Takes a concurrency slot if one is free (always, when the limit has no cap). */
  synchronized boolean tryTakeSlot() {
    if (concurrencyCap > 0 && held >= concurrencyCap) {
      return false;
    }
    held++;
    return true;
  }

  synchronized void releaseSlot() {
    if (held > 0) {
      held--;
    }
  }

  synchronized long slotsHeld() {
    return held;
  }

  /** E.g. {@code requests 300/s x 0.25 = 75/s, concurrency 50 x 0.25 = 12}. */
  String describe() {
    List<String> parts = new ArrayList<>();
    String s = FailureMode.formatShare(share);
    for (Bucket b : buckets) {
      String per = per(b.periodNanos);
      parts.add(b.name + " " + b.amount + per + " x " + s + " = " + number(b.amount * share) + per);
    }
    if (concurrencyCap > 0) {
      parts.add("concurrency " + limitConcurrency + " x " + s + " = " + concurrencyCap);
    }
    return resource + ": " + (parts.isEmpty() ? "no rates" : String.join(", ", parts));
  }

  private static long amount(Map<String, Long> load, String dimension) {
    Long a = load.get(dimension);
    if (a != null) {
      return a;
    }
    return "requests".equals(dimension) ? 1 : 0;
  }

  private static String per(long periodNanos) {
    if (periodNanos == 1_000_000_000L) {
      return "/s";
    }
    if (periodNanos == 60_000_000_000L) {
      return "/min";
    }
    if (periodNanos == 3_600_000_000_000L) {
      return "/h";
    }
    if (periodNanos == 86_400_000_000_000L) {
      return "/d";
    }
    return " per " + java.time.Duration.ofNanos(periodNanos).toString().substring(2).toLowerCase(Locale.ROOT);
  }

  private static String number(double d) {
    if (d == Math.rint(d) && Math.abs(d) < 1e15) {
      return Long.toString((long) d);
    }
    String s = String.format(Locale.ROOT, "%.2f", d).replaceAll("0+$", "");
    return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
  }

  private static final class Bucket {
    final String name;
    final long amount;
    final long periodNanos;
    final double capacity;
    final double perNano;
    double available; // may be negative: reserved ahead
    long refilledAt;

    Bucket(String name, long amount, long periodNanos, long burst, double share, long now) {
      this.name = name;
      this.amount = amount;
      this.periodNanos = periodNanos;
      this.capacity = burst * share;
      this.perNano = amount * share / periodNanos;
      this.refilledAt = now;
    }

    void refill(long now) {
      long elapsed = now - refilledAt;
      if (elapsed > 0) {
        available = Math.min(capacity, available + elapsed * perNano);
        refilledAt = now;
      }
    }

    /** Nanoseconds until {@code amount} (at most the capacity) is available. */
    long waitFor(long amount) {
      double need = Math.min(amount, capacity) - available;
      if (need <= 1e-9) {
        return 0;
      }
      double nanos = Math.ceil(need / perNano);
      return nanos >= Long.MAX_VALUE ? Long.MAX_VALUE : (long) nanos;
    }
  }
}
