package dev.sluice.server.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowable;

import dev.sluice.server.SluiceServer;
import dev.sluice.server.config.ServerConfigKeys.Limits;
import dev.sluice.server.engine.EngineException;
import dev.sluice.server.engine.LimitSpec;
import dev.sluice.server.engine.MemoryEngine;
import dev.sluice.server.engine.RedisEngine;
import dev.sluice.server.engine.Validation;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * One check per setting: the server's builder, both engines' builders and the limit check
 * refuse the same values with the same message (issue 16: the server allowed a waiting room the
 * engine refused, and aging was checked in three places).
 */
class ServerConfigKeysTest {

  @Test
  void maxWaitingIsRefusedAloneAndAlikeEverywhere() {
    int tooMany = Limits.MAX_WAITING.max() + 1;
    String message = "max waiting " + tooMany + " is out of range: use 1 to 1000000";
    assertThatThrownBy(() -> SluiceServer.builder().maxWaiting(tooMany)).hasMessage(message);
    assertThatThrownBy(() -> MemoryEngine.builder().defaultMaxWaiting(tooMany)).hasMessage(message);
    assertThatThrownBy(() -> RedisEngine.builder().defaultMaxWaiting(tooMany)).hasMessage(message);
    // A limit's own waiting room: the same bounds; 0 means the server's default.
    LimitSpec limit = new LimitSpec("r", List.of(), 1, tooMany, null);
    assertThat(catchThrowable(() -> Validation.limit(limit, 10, Duration.ofSeconds(30))))
        .isInstanceOf(EngineException.class).hasMessage(message + ", or 0 for the server default");
    assertThat(Validation.limit(new LimitSpec("r", List.of(), 1, Limits.MAX_WAITING.max(), null), 10,
        Duration.ofSeconds(30)).maxWaiting()).isEqualTo(1_000_000);
  }

  @Test
  void leaseIsRefusedAloneAndAlikeEverywhere() {
    Duration half = Duration.ofMillis(500);
    String message = "lease TTL 500ms is out of range: use 1s to 1h";
    assertThatThrownBy(() -> SluiceServer.builder().leaseTtl(half)).hasMessage(message);
    assertThatThrownBy(() -> MemoryEngine.builder().defaultLease(half)).hasMessage(message);
    assertThatThrownBy(() -> RedisEngine.builder().defaultLease(half)).hasMessage(message);
    LimitSpec limit = new LimitSpec("r", List.of(), 1, 0, half);
    assertThat(catchThrowable(() -> Validation.limit(limit, 10, Duration.ofSeconds(30))))
        .isInstanceOf(EngineException.class).hasMessage(message);
  }

  @Test
  void agingIsRefusedAloneAndAlikeEverywhere() {
    Duration day = Duration.ofDays(1);
    String message = "aging 1d is out of range: use 0s to 1h";
    assertThatThrownBy(() -> SluiceServer.builder().aging(day)).hasMessage(message);
    assertThatThrownBy(() -> MemoryEngine.builder().aging(day)).hasMessage(message);
    assertThatThrownBy(() -> RedisEngine.builder().aging(day)).hasMessage(message);
    assertThatThrownBy(() -> SluiceServer.builder().aging(null)).hasMessage("aging is missing: give a duration"
        + " such as 10s");
  }

  @Test
  void waitBucketsAreAFewIncreasingDurationsAboveZero() {
    assertThat(Limits.defaultWaitBuckets()).containsExactly(Duration.ofMillis(10), Duration.ofMillis(100),
        Duration.ofSeconds(1), Duration.ofSeconds(10), Duration.ofMinutes(1));
    String fix = ": give 1 to 20 increasing durations above 0, such as 10ms,100ms,1s,10s,1m";
    assertThatThrownBy(() -> SluiceServer.builder().metricsWaitBuckets(List.of()))
        .hasMessage("metrics wait buckets: none given" + fix);
    assertThatThrownBy(() -> SluiceServer.builder().metricsWaitBuckets(List.of(Duration.ofSeconds(1),
        Duration.ofMillis(100)))).hasMessage("metrics wait buckets: 100ms does not follow 1s" + fix);
    assertThatThrownBy(() -> SluiceServer.builder().metricsWaitBuckets(List.of(Duration.ZERO)))
        .hasMessage("metrics wait buckets: 0s is not above 0" + fix);
    assertThatThrownBy(() -> SluiceServer.builder().metricsWaitBuckets(
        java.util.Collections.nCopies(21, Duration.ofSeconds(1)))).hasMessage("metrics wait buckets: 21 given" + fix);
  }

  @Test
  void messagesNameTheRangeAndAnyHint() {
    assertThat(ServerConfigKeys.Buffer.LEASE.problem(Duration.ofSeconds(1)))
        .isEqualTo("buffer lease 1s is out of range: use 2s to 10m (renewed every second, so at least twice that)");
    assertThat(ServerConfigKeys.Grpc.SHUTDOWN_GRACE.problem(Duration.ofSeconds(-1)))
        .isEqualTo("shutdown grace -1s is out of range: use 0s or more");
    assertThat(ServerConfigKeys.Grpc.SHUTDOWN_GRACE.problem(Duration.ofDays(400))).isNull();
    assertThat(ServerConfigKeys.Grpc.PORT.problem(65536)).isEqualTo("port 65536 is out of range: use 0 to 65535");
    assertThat(Limits.MAX_WAIT.problem(Duration.ZERO)).isEqualTo("max wait 0s is out of range: use 1ms to 1d");
  }

  @Test
  void defaultsAreTheDocumentedOnes() {
    assertThat(ServerConfigKeys.Grpc.PORT.defaultValue()).isEqualTo(7420);
    assertThat(Limits.MAX_WAITING.defaultValue()).isEqualTo(10_000);
    assertThat(Limits.LEASE_TTL.defaultValue()).isEqualTo(Duration.ofSeconds(30));
    assertThat(Limits.MAX_WAIT.defaultValue()).isEqualTo(Duration.ofMinutes(5));
    assertThat(Limits.AGING.defaultValue()).isEqualTo(Duration.ofSeconds(10));
    assertThat(ServerConfigKeys.Buffer.LEASE.defaultValue()).isEqualTo(Duration.ofSeconds(10));
    assertThat(ServerConfigKeys.Grpc.SHUTDOWN_GRACE.defaultValue()).isEqualTo(Duration.ofSeconds(10));
  }
}
