package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/**
 * The heap of tenants with waiters walks them in exactly the order the sorted set it replaced
 * did (virtual time, ties by name): the engine differential has only a few tenants, this has
 * hundreds, with many ties, re-keyed up and down and removed from the middle.
 */
class FairHeapTest {

  @Test
  void walksInTheSortedSetsOrderThroughRandomAddsRekeysAndRemoves() {
    Random rnd = new Random(42);
    for (int round = 0; round < 200; round++) {
      Fair.ActiveHeap heap = new Fair.ActiveHeap();
      TreeSet<Fair.TRoom> set = new TreeSet<>(Fair::byVirtualTime);
      List<Fair.TRoom> rooms = new ArrayList<>();
      int n = 1 + rnd.nextInt(300);
      for (int i = 0; i < n; i++) {
        rooms.add(new Fair.TRoom("t" + rnd.nextInt(1000) + "-" + i));
      }
      for (int step = 0; step < 2_000; step++) {
        Fair.TRoom r = rooms.get(rnd.nextInt(n));
        double vt = rnd.nextInt(4) == 0 ? rnd.nextInt(5) : rnd.nextDouble() * 10; // ties too
        if (r.heapIndex < 0) {
          r.vt = vt;
          heap.add(r);
          set.add(r);
        } else if (rnd.nextInt(3) == 0) {
          heap.remove(r);
          set.remove(r);
          assertThat(r.heapIndex).isEqualTo(-1);
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

  @Test
  void idleHeapKeepsTheSortedSetsLowestAndHighest() {
    Random rnd = new Random(7);
    for (int round = 0; round < 200; round++) {
      Fair.IdleHeap heap = new Fair.IdleHeap();
      TreeSet<Fair.Idle> set = new TreeSet<>(Fair::byKey);
      List<Fair.Idle> nodes = new ArrayList<>();
      int n = 1 + rnd.nextInt(300);
      for (int i = 0; i < n; i++) {
        nodes.add(new Fair.Idle("t" + rnd.nextInt(1000) + "-" + i, 0));
      }
      for (int step = 0; step < 2_000; step++) {
        Fair.Idle x = nodes.get(rnd.nextInt(n));
        double key = rnd.nextInt(4) == 0 ? rnd.nextInt(5) : rnd.nextDouble() * 10; // ties too
        int op = rnd.nextInt(6);
        if (x.index < 0) {
          x.key = key;
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
