package dev.sluice.server.engine;

import java.io.IOException;
import java.util.Collection;
import java.util.List;

/** Where limits live durably. Buckets are never stored: after a restart they start empty. */
public interface LimitStore {

  /** Every stored limit. */
  List<LimitSpec> load() throws IOException;

  /** Replaces the stored set, atomically: a crash leaves either the old set or the new one. */
  void save(Collection<LimitSpec> limits) throws IOException;

  /** False for a store that keeps nothing: the engine then skips building what it would save. */
  default boolean durable() {
    return true;
  }

  /** A store that keeps nothing: for tests and throwaway servers. */
  static LimitStore none() {
    return new LimitStore() {
      @Override
      public boolean durable() {
        return false;
      }

      @Override
      public List<LimitSpec> load() {
        return List.of();
      }

      @Override
      public void save(Collection<LimitSpec> limits) {}
    };
  }
}
