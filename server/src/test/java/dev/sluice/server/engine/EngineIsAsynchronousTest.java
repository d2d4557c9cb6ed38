package dev.sluice.server.engine;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/**
 * The guard that replaced OffloadInterceptor's list of method names: every {@link Engine} method
 * that may reach a store answers with a future (or a {@link Ticket}), so the gRPC and HTTP layers
 * call them on their event loops. A method added later with a plain return type fails here.
 */
class EngineIsAsynchronousTest {

  /**
   * Lifecycle, a local flag and pure computations on the node's own defaults ({@code
   * normalized}, {@code normalizedTemplate}: no store call): the only methods that return plain
   * values.
   */
  private static final Set<String> PLAIN = Set.of("close", "closeStore", "storeReachable", "normalized",
      "normalizedTemplate");

  @Test
  void everyEngineMethodButLifecycleAnswersWithAFutureOrATicket() {
    List<String> blocking =
        Arrays.stream(Engine.class.getMethods())
            .filter(m -> !Modifier.isStatic(m.getModifiers()))
            .filter(m -> !PLAIN.contains(m.getName()))
            .filter(m -> !CompletableFuture.class.equals(m.getReturnType()))
            .filter(m -> !Ticket.class.equals(m.getReturnType()))
            .map(Method::toGenericString)
            .toList();
    assertThat(blocking).as("Engine methods that would block a caller's thread").isEmpty();
  }
}
