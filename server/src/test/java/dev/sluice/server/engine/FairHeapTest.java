package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/**
 * The heap of tenants with waiters walks them in exactly the order the sorted set it replaced
 * did (virtual time, ties by name): the engine differential has only a few tenants, this has
 * hundreds, with many ties, re-keyed up and down and removed from the middle. The sets here
 * order by {@link String#compareTo} itself, not the heaps' shortcut ({@link Fair#prefix}).
 */
class FairHeapTest {

  /** Names with ties in their first eight characters and characters around the prefix's byte limit. */
  private static String name(Random rnd, int i) {
    switch (rnd.nextInt(3)) {
      case 0:
        return "t" + rnd.nextInt(1000) + "-" + i;
      case 1:
        return "tenant-of-team-" + rnd.nextInt(1000) + "-" + i; // the same first eight: by name
      default:
        return odd(rnd, 1 + rnd.nextInt(10)) + "-" + i;
    }
  }

  private static final char[] ODD =
      {0, 'a', 'b', 0xfe, 0xff, 0x100, 0xd83d, 0xde00, 0xffff}; // a lone surrogate half, too

  private static String odd(Random rnd, int length) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < length; i++) {
      b.append(ODD[rnd.nextInt(ODD.length)]);
    }
    return b.toString();
  }

  @Test
  void aPrefixThatDiffersOrdersAsTheNamesDo() {
    Random rnd = new Random(3);
    int decided = 0;
    for (int i = 0; i < 200_000; i++) {
      String a = odd(rnd, rnd.nextInt(11));
      String b = rnd.nextInt(4) == 0 ? a + odd(rnd, rnd.nextInt(3)) : odd(rnd, rnd.nextInt(11));
      int byPrefix = Long.signum(Long.compareUnsigned(Fair.prefix(a), Fair.prefix(b)));
      if (byPrefix != 0) {
        decided++;
        assertThat(byPrefix).as("%s vs %s", a.chars().boxed().toList(), b.chars().boxed().toList())
            .isEqualTo(Integer.signum(a.compareTo(b)));
      }
    }
    assertThat(decided).isGreaterThan(100_000); // most pairs are settled by the prefix alone
    assertThat(Long.compareUnsigned(Fair.prefix("t10"), Fair.prefix("t9"))).isNegative();
    assertThat(Fair.prefix("tenant-a")).isEqualTo(Fair.prefix("tenant-ab")); // eight alike: names decide
  }

  private static final Comparator<Fair.TRoom> BY_VT =
      Comparator.comparingDouble((Fair.TRoom r) -> r.vt).thenComparing(r -> r.name);
  private static final Comparator<Fair.TRoom> BY_IDLE_KEY =
      Comparator.comparingDouble((Fair.TRoom r) -> r.idleKey).thenComparing(r -> r.name);

  @Test
  void walksInTheSortedSetsOrderThroughRandomAddsRekeysAndRemoves() {
    Random rnd = new Random(42);
    for (int round = 0; round < 200; round++) {
      Fair.ActiveHeap heap = new Fair.ActiveHeap();
      TreeSet<Fair.TRoom> set = new TreeSet<>(BY_VT);
      List<Fair.TRoom> rooms = new ArrayList<>();
      int n = 1 + rnd.nextInt(300);
      for (int i = 0; i < n; i++) {
        rooms.add(new Fair.TRoom(name(rnd, i)));
      }
      for (int step = 0; step < 2_000; step++) {
        Fair.TRoom r = rooms.get(rnd.nextInt(n));
        double vt = rnd.nextInt(4) == 0 ? rnd.nextInt(5) : rnd.nextDouble() * 10; // ties too
        if (!heap.contains(r)) {
          r.vt = vt;
          heap.add(r);
          set.add(r);
        } else if (rnd.nextInt(3) == 0) {
          heap.remove(r);
          set.remove(r);
          assertThat(heap.contains(r)).isFalse();
          assertThat(r.heapIndex).isEqualTo(-1);
          assertThat(r.runIndex).isEqualTo(-1);
        } else {
          set.remove(r);
          heap.rekey(r, vt);
          set.add(r);
          if (rnd.nextInt(4) == 0) { // a grant's tenant charged, then leaving with its last waiter
            heap.remove(r);
            set.remove(r);
          }
        }
        assertThat(heap.size()).isEqualTo(set.size());
        assertThat(heap.first()).isSameAs(set.isEmpty() ? null : set.first());
        if (step % 97 == 0) {
          List<Fair.TRoom> walked = new ArrayList<>();
          heap.forEach(walked::add);
          assertThat(walked).containsExactlyElementsOf(set);
        }
      }
    }
  }

  /**
   * Tenants served in turn, each charged past the others (the run's case), mixed with charges
   * that land in the middle, refunds, tenants leaving from anywhere and coming back: the same
   * order as the sorted set, and the run keeps its slots from growing without bound.
   */
  @Test
  void tenantsServedInTurnWalkInTheSortedSetsOrder() {
    Random rnd = new Random(11);
    for (int round = 0; round < 100; round++) {
      Fair.ActiveHeap heap = new Fair.ActiveHeap();
      TreeSet<Fair.TRoom> set = new TreeSet<>(BY_VT);
      List<Fair.TRoom> rooms = new ArrayList<>();
      int n = 1 + rnd.nextInt(200);
      for (int i = 0; i < n; i++) {
        Fair.TRoom r = new Fair.TRoom(name(rnd, i));
        r.vt = rnd.nextInt(3);
        rooms.add(r);
        heap.add(r);
        set.add(r);
      }
      for (int step = 0; step < 5_000; step++) {
        int op = rnd.nextInt(20);
        if (set.isEmpty() || op == 0) { // one comes back (or first)
          Fair.TRoom r = rooms.get(rnd.nextInt(n));
          if (!heap.contains(r)) {
            r.vt = set.isEmpty() ? rnd.nextInt(5) : set.first().vt + rnd.nextInt(2);
            heap.add(r);
            set.add(r);
          }
          continue;
        }
        Fair.TRoom first = heap.first();
        assertThat(first).isSameAs(set.first());
        Fair.TRoom r = op == 1 ? rooms.get(rnd.nextInt(n)) : first;
        if (!heap.contains(r)) {
          continue;
        }
        if (op == 2) { // leaves, from wherever it is
          heap.remove(r);
          set.remove(r);
          continue;
        }
        double vt = op == 3 ? r.vt - rnd.nextDouble() // a refund
            : op == 4 ? set.first().vt + rnd.nextDouble() // lands in the middle
            : set.last().vt + (rnd.nextInt(3) == 0 ? 0 : 1); // its turn is over: past the others, or tied
        set.remove(r);
        heap.rekey(r, vt);
        set.add(r);
        if (rnd.nextInt(5) == 0) { // its last waiter went with the grant
          heap.remove(r);
          set.remove(r);
        }
        assertThat(heap.size()).isEqualTo(set.size());
        if (step % 53 == 0) {
          List<Fair.TRoom> walked = new ArrayList<>();
          heap.forEach(walked::add);
          assertThat(walked).containsExactlyElementsOf(set);
        }
      }
      assertThat(heap.first()).isSameAs(set.isEmpty() ? null : set.first());
      assertThat(heap.runSlots()).as("the run's slots after 5 000 turns of %d tenants", n)
          .isLessThanOrEqualTo(Math.max(16, 4 * n));
    }
  }

  @Test
  void idleHeapKeepsTheSortedSetsLowestAndHighest() {
    Random rnd = new Random(7);
    for (int round = 0; round < 200; round++) {
      Fair.IdleHeap heap = new Fair.IdleHeap();
      TreeSet<Fair.TRoom> set = new TreeSet<>(BY_IDLE_KEY);
      List<Fair.TRoom> nodes = new ArrayList<>();
      int n = 1 + rnd.nextInt(300);
      for (int i = 0; i < n; i++) {
        nodes.add(new Fair.TRoom(name(rnd, i)));
      }
      for (int step = 0; step < 2_000; step++) {
        Fair.TRoom x = nodes.get(rnd.nextInt(n));
        double key = rnd.nextInt(4) == 0 ? rnd.nextInt(5) : rnd.nextDouble() * 10; // ties too
        int op = rnd.nextInt(6);
        if (x.idleIndex < 0) {
          x.idleKey = key;
          heap.add(x);
          set.add(x);
        } else if (op == 0) {
          heap.remove(x);
          set.remove(x);
        } else if (op == 1 && !set.isEmpty()) {
          assertThat(heap.pollFirst()).isSameAs(set.pollFirst());
        } else {
          set.remove(x);
          heap.rekey(x, key);
          set.add(x);
        }
        assertThat(heap.size()).isEqualTo(set.size());
        assertThat(heap.first()).isSameAs(set.isEmpty() ? null : set.first());
        if (rnd.nextInt(3) == 0) { // not every step: the highest is also found again lazily
          assertThat(heap.last()).isSameAs(set.isEmpty() ? null : set.last());
        }
      }
    }
  }
}
